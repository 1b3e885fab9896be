"""A merchant's integration through the client openapi-python-client generated from our spec.

Run by `tests/tests/e2e/clients.rs` with the generated package on PYTHONPATH:
    python python_flow.py BASE_URL API_KEY RECEIVER_URL
Every call goes through the generated, typed client: a response that does not fit the spec
raises here (that is what merchants hit when the spec lies), and each step checks what a
merchant relies on.
"""

import sys
import uuid

from payrail_client import AuthenticatedClient
from payrail_client.api.payments import (
    cancel_payment,
    create_payment,
    create_refund,
    get_payment,
    get_payment_qr,
    list_payments,
    list_refunds,
)
from payrail_client.api.webhook_endpoints import create_webhook_endpoint
from payrail_client.models import (
    CardInput,
    CreateEndpointRequest,
    CreateEndpointRequestEnabledEventsItem,
    CreatePaymentRequest,
    CreatePaymentRequestMetadataType0,
    CreatePaymentRequestProvider,
    CreateRefundRequest,
    Customer,
    ErrorBody,
    GetPaymentQrFormat,
    Payment,
    PaymentList,
    PaymentMethodInput,
    PaymentMethodInputType,
    PaymentStatus,
    Refund,
    RefundList,
    WebhookEndpoint,
)


def ok(response, model):
    assert isinstance(response.parsed, model), (
        f"{response.status_code}: expected {model.__name__}, got {response.parsed!r} "
        f"({response.content[:300]!r})"
    )
    return response.parsed


def main(base_url: str, api_key: str, receiver_url: str) -> None:
    client = AuthenticatedClient(base_url=base_url, token=api_key, raise_on_unexpected_status=True)
    reference = f"order_{uuid.uuid4().hex[:12]}"

    endpoint = ok(
        create_webhook_endpoint.sync_detailed(
            client=client,
            body=CreateEndpointRequest(
                url=receiver_url,
                enabled_events=[CreateEndpointRequestEnabledEventsItem.VALUE_0],
                description="python client",
            ),
            idempotency_key=str(uuid.uuid4()),
        ),
        WebhookEndpoint,
    )
    assert endpoint.secret and endpoint.secret.startswith("whsec_"), endpoint

    metadata = CreatePaymentRequestMetadataType0.from_dict({"order_id": "1042"})
    paid = ok(
        create_payment.sync_detailed(
            client=client,
            body=CreatePaymentRequest(
                amount=4999,
                currency="EUR",
                provider=CreatePaymentRequestProvider.SIMULATED,
                reference=reference,
                description="Order #1042",
                customer=Customer(email="ada@example.com", name="Ada Lovelace"),
                return_url="https://shop.example.com/orders/1042",
                metadata=metadata,
                payment_method=PaymentMethodInput(
                    type_=PaymentMethodInputType.CARD,
                    card=CardInput(number="4242424242424242", exp_month=12, exp_year=2030, cvc="123"),
                ),
            ),
            idempotency_key=str(uuid.uuid4()),
        ),
        Payment,
    )
    assert paid.status == PaymentStatus.SUCCEEDED, paid.status
    assert paid.amount == 4999 and paid.currency == "EUR"
    assert paid.payment_method.card.last4 == "4242"

    fetched = ok(get_payment.sync_detailed(paid.id, client=client), Payment)
    assert fetched.id == paid.id and fetched.metadata["order_id"] == "1042"
    assert fetched.failure_code is None

    pending = ok(
        create_payment.sync_detailed(
            client=client,
            body=CreatePaymentRequest(amount=500000, currency="xaf", provider=CreatePaymentRequestProvider.SIMULATED, reference=reference),
            idempotency_key=str(uuid.uuid4()),
        ),
        Payment,
    )
    assert pending.status == PaymentStatus.PENDING and pending.checkout_url
    assert pending.customer is None and pending.description is None
    assert pending.qr_code_url == f"{base_url}/v1/payments/{pending.id}/qr", pending.qr_code_url
    qr = get_payment_qr.sync_detailed(pending.id, client=client, format_=GetPaymentQrFormat.PNG)
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG"), qr.status_code

    listed = ok(list_payments.sync_detailed(client=client, reference=reference, limit=10), PaymentList)
    assert [p.id for p in listed.data] == [pending.id, paid.id], [p.id for p in listed.data]
    assert listed.has_more is False

    cancelled = ok(cancel_payment.sync_detailed(pending.id, client=client), Payment)
    assert cancelled.status == PaymentStatus.CANCELLED
    again = cancel_payment.sync_detailed(pending.id, client=client)
    assert again.status_code == 409 and isinstance(again.parsed, ErrorBody), again.content
    assert again.parsed.error.code

    refund = ok(
        create_refund.sync_detailed(
            paid.id,
            client=client,
            body=CreateRefundRequest(amount=1000),
            idempotency_key=str(uuid.uuid4()),
        ),
        Refund,
    )
    assert refund.amount == 1000 and refund.payment_id == paid.id
    refunds = ok(list_refunds.sync_detailed(paid.id, client=client), RefundList)
    assert [r.id for r in refunds.data] == [refund.id]
    after = ok(get_payment.sync_detailed(paid.id, client=client), Payment)
    assert after.amount_refunded == 1000, after.amount_refunded
    print("python client: endpoint, payment, get, qr, list, cancel, refund: ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
