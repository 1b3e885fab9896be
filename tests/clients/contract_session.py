"""A merchant's session, every call held to the committed spec by openapi-core.

Run by `tests/tests/e2e/clients.rs`:
    python contract_session.py SPEC BASE_URL API_KEY RECEIVER_URL ADMIN_TOKEN
Each response (success or error) must validate against the spec; each request the server
accepted (2xx) must validate too, since a spec that refuses what the server takes makes
generated clients refuse it. The session also checks what the spec alone cannot: the
behaviour the findings of issue 21 were about. It prints a count and exits non-zero with
every failure listed.
"""

import json
import sys
import uuid

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

ERROR_CONTENT_TYPE = "application/json; charset=utf-8"
failures: list[str] = []
calls = 0


class Session:
    def __init__(self, spec_path: str, base: str, key: str):
        with open(spec_path) as f:
            spec = json.load(f)
        spec["servers"] = [{"url": base}]
        self.api = OpenAPI.from_dict(spec)
        self.base = base
        self.http = requests.Session()
        self.key = key

    def call(self, method: str, path: str, *, body=None, raw=None, headers=None,
             params=None, key=..., expect=None, validate_request=True, validate_response=True):
        """One call: sent, then checked against the spec and against `expect` (a status)."""
        global calls
        calls += 1
        h = {}
        key = self.key if key is ... else key
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        if body is not None:
            raw = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        request = requests.Request(method, self.base + path, data=raw, headers=h, params=params)
        prepared = self.http.prepare_request(request)
        response = self.http.send(prepared, timeout=30)
        what = f"{method} {path} -> {response.status_code}"
        if expect is not None and response.status_code != expect:
            failures.append(f"{what}: expected {expect}: {response.text[:300]}")
        openapi_request = RequestsOpenAPIRequest(prepared)
        if validate_request and 200 <= response.status_code < 300:
            try:
                self.api.validate_request(openapi_request)
            except Exception as e:  # noqa: BLE001 - every kind of mismatch is a finding
                failures.append(f"{what}: the server accepted a request the spec refuses: {detail(e)}")
        if validate_response:
            try:
                self.api.validate_response(openapi_request, RequestsOpenAPIResponse(response))
            except Exception as e:  # noqa: BLE001
                failures.append(f"{what}: the response does not fit the spec: {detail(e)}")
        if response.status_code >= 400:
            check(response.headers.get("Content-Type") == ERROR_CONTENT_TYPE,
                  f"{what}: an error is {ERROR_CONTENT_TYPE}, not {response.headers.get('Content-Type')}")
        return response


def detail(e: Exception) -> str:
    parts = [f"{type(e).__name__}: {e}"]
    cause = e.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        for sub in getattr(cause, "schema_errors", []) or []:
            parts.append(f"  - {sub.message[:300]}")
        cause = cause.__cause__
    return " / ".join(parts)[:1200]


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def idem() -> dict:
    return {"Idempotency-Key": str(uuid.uuid4())}


def main(spec: str, base: str, api_key: str, receiver: str, admin_token: str) -> None:
    s = Session(spec, base, api_key)
    ref = f"order_{uuid.uuid4().hex[:12]}"

    # Webhook endpoints.
    endpoint = s.call("POST", "/v1/webhook_endpoints", headers=idem(), expect=201, body={
        "url": receiver, "enabled_events": ["*"], "description": "contract session"}).json()
    s.call("GET", "/v1/webhook_endpoints", params={"limit": 5}, expect=200)
    s.call("GET", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200)
    s.call("PATCH", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200,
           body={"description": None, "enabled_events": ["payment.succeeded", "refund.created"]})
    s.call("PATCH", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200,
           body={"enabled_events": ["*"], "max_concurrency": 3})
    s.call("POST", f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=idem(), expect=200)
    s.call("POST", f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=idem(), expect=200)
    s.call("POST", "/v1/webhook_endpoints", expect=422, body={"url": "ftp://x", "enabled_events": ["*"]})
    s.call("POST", "/v1/webhook_endpoints", expect=422,
           body={"url": receiver, "enabled_events": ["payment.nothing"]})

    # Payments: a card that succeeds, one left pending, one with every optional field absent.
    paid = s.call("POST", "/v1/payments", headers=idem(), expect=201, body={
        "amount": 4999, "currency": "EUR", "provider": "simulated", "reference": ref,
        "description": "Order #1042", "customer": {"email": "ada@example.com", "name": "Ada"},
        "return_url": "https://shop.example.com/orders/1042", "metadata": {"order_id": "1042"},
        "payment_method": {"type": "card", "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}},
    }).json()
    check(paid.get("status") == "succeeded", f"a 4242 card succeeds: {paid.get('status')}")
    pending = s.call("POST", "/v1/payments", expect=201, body={
        "amount": 500000, "currency": "xaf", "provider": "simulated", "reference": ref}).json()
    check(pending.get("customer") is None and pending.get("payment_method") is None,
          "absent customer and payment_method are null")
    bare = s.call("POST", "/v1/payments", headers=idem(), expect=201,
                  body={"amount": 100, "currency": "usd", "provider": "simulated"}).json()
    key = idem()
    first = s.call("POST", "/v1/payments", headers=key, expect=201,
                   body={"amount": 250, "currency": "usd", "provider": "simulated"})
    replay = s.call("POST", "/v1/payments", headers=key, expect=201,
                    body={"amount": 250, "currency": "usd", "provider": "simulated"})
    check(first.json().get("id") == replay.json().get("id"), "an Idempotency-Key replays the payment")
    check(replay.headers.get("Idempotent-Replayed") == "true", "a replay says so")
    s.call("POST", "/v1/payments", headers=key, expect=409,
           body={"amount": 251, "currency": "usd", "provider": "simulated"})

    for p in (paid, pending, bare):
        s.call("GET", f"/v1/payments/{p['id']}", expect=200)
    s.call("GET", "/v1/payments", params={"limit": 2}, expect=200)
    page = s.call("GET", "/v1/payments", params={"limit": 1, "reference": ref}, expect=200).json()
    s.call("GET", "/v1/payments", params={"limit": 1, "starting_after": page["data"][0]["id"]}, expect=200)
    s.call("GET", "/v1/payments", params={"status": "pending"}, expect=200)
    s.call("GET", "/v1/payments", params={"created[gte]": 0}, expect=200)
    s.call("GET", "/v1/payments/recent", expect=200)
    s.call("PATCH", f"/v1/payments/{bare['id']}", expect=200,
           body={"description": "now described", "metadata": {"k": "v"}})
    s.call("PATCH", f"/v1/payments/{bare['id']}", expect=200, body={"description": None})
    s.call("GET", f"/v1/payments/{pending['id']}/qr", key=None, expect=200)
    s.call("GET", f"/v1/payments/{pending['id']}/qr", key=None, params={"format": "png"}, expect=200)

    # Refusals: each a 4xx in the Stripe shape, as the spec says.
    s.call("POST", "/v1/payments", expect=422, body={"amount": -1, "currency": "usd", "provider": "simulated"})
    s.call("POST", "/v1/payments", expect=422, body={"amount": 1, "currency": "zzz", "provider": "simulated"})
    s.call("POST", "/v1/payments", expect=400, body={"amount": 1, "currency": "usd", "provider": "simulated", "extra": 1})
    s.call("POST", "/v1/payments", expect=400, raw=b"{not json", headers={"Content-Type": "application/json"})
    s.call("POST", "/v1/payments", expect=415, raw=b"amount=1", headers={"Content-Type": "text/plain"})
    s.call("GET", "/v1/payments/pay_019ab3f0c1d27e8a9b4c5d6e7f801234", expect=404)
    s.call("GET", "/v1/payments", key=None, expect=401)
    s.call("GET", "/v1/payments", key="sk_test_nope", expect=401)
    # A method the path does not have: no operation to validate against, so its answer is
    # checked by hand (the error shape, its content type, and `Allow`).
    wrong = s.call("DELETE", "/v1/payments", expect=405, validate_response=False)
    check(wrong.headers.get("Allow") == "GET, POST", f"405 names the methods: {wrong.headers.get('Allow')}")
    check(wrong.json().get("error", {}).get("type") == "invalid_request_error", f"405 body: {wrong.text}")
    s.call("GET", "/v1/payments", params={"limit": 0}, expect=422)
    s.call("POST", "/v1/payments", headers={"Idempotency-Key": "k" * 300}, expect=400,
           body={"amount": 1, "currency": "usd", "provider": "simulated"})

    # The sandbox, cancel, refunds.
    pending2 = s.call("POST", "/v1/payments", expect=201, body={
        "amount": 7000, "currency": "usd", "provider": "simulated"}).json()
    s.call("POST", f"/v1/sandbox/payments/{pending2['id']}/complete", expect=200,
           body={"outcome": "succeeded"})
    s.call("POST", f"/v1/sandbox/payments/{pending2['id']}/complete", expect=409,
           body={"outcome": "failed"})
    s.call("POST", f"/v1/payments/{pending['id']}/cancel", expect=200)
    s.call("POST", f"/v1/payments/{pending['id']}/cancel", expect=409)
    refund = s.call("POST", f"/v1/payments/{paid['id']}/refunds", headers=idem(), expect=201,
                    body={"amount": 1000}).json()
    s.call("POST", f"/v1/payments/{paid['id']}/refunds", headers=idem(), expect=201, body={})
    s.call("POST", f"/v1/payments/{paid['id']}/refunds", headers=idem(), expect=409, body={"amount": 1})
    s.call("GET", f"/v1/payments/{paid['id']}/refunds", expect=200)
    check(refund.get("amount") == 1000, "a partial refund keeps its amount")

    # Events, with every filter, and the deliveries they made.
    events = s.call("GET", "/v1/events", params={"limit": 10}, expect=200).json()
    for e in events.get("data", [])[:3]:
        s.call("GET", f"/v1/events/{e['id']}", expect=200)
    s.call("GET", "/v1/events", params={"type": "payment.succeeded"}, expect=200)
    s.call("GET", "/v1/events", params={"types[]": ["payment.succeeded", "refund.created"]}, expect=200)
    s.call("GET", "/v1/events", params={"type": "payment.nothing"}, expect=422)
    deliveries = s.call("GET", "/v1/webhook_deliveries", params={"limit": 5}, expect=200).json()
    for d in deliveries.get("data", [])[:2]:
        s.call("GET", f"/v1/webhook_deliveries/{d['id']}", expect=200)
    s.call("GET", "/v1/webhook_deliveries", params={"endpoint_id": endpoint["id"]}, expect=200)
    s.call("GET", "/v1/webhook_deliveries", params={"status": "failed"}, expect=200)

    # Money: balance, its transactions, payouts, reconciliation.
    s.call("GET", "/v1/balance", expect=200)
    txns = s.call("GET", "/v1/balance_transactions", params={"limit": 5}, expect=200).json()
    for t in txns.get("data", [])[:2]:
        s.call("GET", f"/v1/balance_transactions/{t['id']}", expect=200)
    s.call("GET", "/v1/balance_transactions", params={"currency": "usd", "type": "charge"}, expect=200)
    payout = s.call("POST", "/v1/payouts", headers=idem(), expect=201, body={
        "amount": 500, "currency": "usd", "provider": "simulated",
        "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"},
        "reference": "payout-1"}).json()
    s.call("GET", f"/v1/payouts/{payout['id']}", expect=200)
    s.call("GET", "/v1/payouts", expect=200)
    if payout.get("status") == "processing":
        s.call("POST", f"/v1/sandbox/payouts/{payout['id']}/complete", expect=200,
               body={"outcome": "succeeded"})
    for provider in ("moneroo", "stripe"):
        s.call("POST", "/v1/payouts", headers=idem(), expect=422, body={
            "amount": 500, "currency": "usd", "provider": provider,
            "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}})
    s.call("POST", "/v1/payouts", headers=idem(), expect=422, body={
        "amount": 0, "currency": "usd", "provider": "simulated",
        "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}})
    s.call("GET", "/v1/reconciliation_items", expect=200)
    s.call("GET", "/v1/usage", expect=200)

    # Logs.
    s.call("POST", "/v1/logs", expect=201, body={
        "level": "error", "message": "card declined", "source": "checkout", "context": {"order": 1}})
    s.call("GET", "/v1/logs/recent", expect=200)
    s.call("GET", "/v1/logs/stats", params={"window": "24h"}, expect=200)

    # API keys: an Idempotency-Key retry mints no second secret.
    s.call("GET", "/v1/api_keys", expect=200)
    key = idem()
    made = s.call("POST", "/v1/api_keys", headers=key, expect=201, body={})
    again = s.call("POST", "/v1/api_keys", headers=key, expect=201, body={})
    check(made.json().get("id") == again.json().get("id"),
          "a retried POST /v1/api_keys with its Idempotency-Key answers the same key")
    listed = s.call("GET", "/v1/api_keys", params={"limit": 100}, expect=200).json()
    check(len([k for k in listed.get("data", []) if k["id"] == made.json().get("id")]) == 1,
          "the retried key exists once")
    check("secret" in made.json() and "secret" not in again.json(),
          "the secret is in the first answer only; a replay does not have it")
    check(again.headers.get("Idempotent-Replayed") == "true", "a replayed key creation says so")
    rolled = s.call("POST", f"/v1/api_keys/{made.json()['id']}/roll", expect=201, body={"expires_in": 0})
    s.call("POST", f"/v1/api_keys/{rolled.json()['id']}/revoke", expect=200)

    # Endpoint removal last, so deliveries above had somewhere to go.
    s.call("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200)

    # Operators.
    s.call("GET", "/v1/admin/ledger/check", key=admin_token, expect=200)
    s.call("GET", "/v1/admin/usage", key=admin_token, expect=200)
    s.call("GET", "/v1/admin/reconciliation_items", key=admin_token, expect=200)

    print(f"contract session: {calls} calls, {len(failures)} failures")
    for f in failures:
        print(" -", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(*sys.argv[1:6])
