//! Local stand-ins for Stripe, Moneroo and eBilling that reproduce their documented requests,
//! responses and webhooks (shared/providers.md): Stripe's form bodies and signed events,
//! Moneroo's envelope and hex signature, eBilling's Basic auth, unwrapped bills and
//! form-encoded notifications. Each can be told to fail or hang, and records what it got.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Path};
use poem::{Body, EndpointExt, Request, Response, Route, Server, get, handler, post};
use serde_json::{Value, json};

pub const STRIPE_KEY: &str = "sk_test_mock";
/// The same account's live secret key: a real Stripe account has both.
pub const STRIPE_LIVE_KEY: &str = "sk_live_mock";
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_mock_stripe";
pub const MONEROO_KEY: &str = "test_mock_moneroo";
pub const MONEROO_WEBHOOK_SECRET: &str = "moneroo_webhook_secret";
pub const EBILLING_USER: &str = "merchant";
pub const EBILLING_KEY: &str = "a4e80739-61ea-430e-8ddc-db9eb7bf0783";

/// A request a mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
pub struct MockState {
    pub seen: Vec<Seen>,
    /// Answer this many calls with HTTP 500 before behaving.
    pub fail_next: u32,
    /// Sleep this long before answering.
    pub delay: Option<Duration>,
    /// Moneroo payouts: act on this many calls, then never answer them (the caller times
    /// out), as when a provider's answer is lost.
    pub lose_answers: u32,
    /// Objects by id (intents, payments, bills).
    pub objects: HashMap<String, Value>,
    /// Stripe: idempotency key → intent id.
    pub idempotency: HashMap<String, String>,
}

#[derive(Clone)]
pub struct Mock {
    pub state: Arc<Mutex<MockState>>,
    pub base: String,
}

impl Mock {
    async fn serve(route: Route) -> Mock {
        let state = Arc::new(Mutex::new(MockState::default()));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind mock");
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("tcp")
            .port();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(route.data(state.clone())));
        Mock {
            state,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, MockState> {
        self.state.lock().expect("mock lock")
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    pub fn delay(&self, d: Option<Duration>) {
        self.lock().delay = d;
    }

    pub fn set(&self, id: &str, field: &str, value: Value) {
        if let Some(o) = self.lock().objects.get_mut(id) {
            o[field] = value;
        }
    }

    /// Every object the provider made of `kind` (`refund`, …): what it moved.
    pub fn objects_where(&self, field: &str, value: &str) -> Vec<Value> {
        self.lock()
            .objects
            .values()
            .filter(|o| o[field] == value)
            .cloned()
            .collect()
    }

    pub fn object(&self, id: &str) -> Option<Value> {
        self.lock().objects.get(id).cloned()
    }
}

/// Records the request and applies the failure knobs; `Err` is the response to give instead.
async fn intake(
    req: &Request,
    body: Body,
    state: &Arc<Mutex<MockState>>,
) -> Result<String, Response> {
    let body = body.into_string().await.unwrap_or_default();
    let (fail, delay) = {
        let mut s = state.lock().expect("lock");
        s.seen.push(Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.clone(),
        });
        let fail = s.fail_next > 0;
        if fail {
            s.fail_next -= 1;
        }
        (fail, s.delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if fail {
        return Err(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal server error"}),
        ));
    }
    Ok(body)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn bearer_is(req: &Request, key: &str) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {key}"))
}

fn random(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_string()
}

// ---------------- Stripe ----------------

#[handler]
async fn stripe_create_intent(
    req: &Request,
    body: Body,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    let body = match intake(req, body, &state).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !bearer_is(req, STRIPE_KEY) && !bearer_is(req, STRIPE_LIVE_KEY) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut s = state.lock().expect("lock");
    if let Some(existing) = s.idempotency.get(&key).and_then(|id| s.objects.get(id)) {
        return json_response(StatusCode::OK, existing.clone());
    }
    let id = format!("pi_{}", random(24));
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_string(), json!(v)))
        })
        .collect();
    let intent = json!({
        "id": id, "object": "payment_intent",
        "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        "amount_received": 0, "automatic_payment_methods": {"enabled": true}, "capture_method": "automatic",
        "client_secret": format!("{id}_secret_{}", random(24)), "confirmation_method": "automatic",
        "created": chrono::Utc::now().timestamp(), "currency": form.get("currency"), "customer": null,
        "description": form.get("description"), "last_payment_error": null, "latest_charge": null,
        "livemode": false, "metadata": metadata, "next_action": null, "payment_method": null,
        "status": "requires_payment_method"
    });
    s.idempotency.insert(key, id.clone());
    s.objects.insert(id, intent.clone());
    json_response(StatusCode::OK, intent)
}

#[handler]
async fn stripe_get_intent(
    req: &Request,
    body: Body,
    Path(id): Path<String>,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    if let Err(r) = intake(req, body, &state).await {
        return r;
    }
    match state.lock().expect("lock").objects.get(&id) {
        Some(o) => json_response(StatusCode::OK, o.clone()),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
        ),
    }
}

#[handler]
async fn stripe_cancel_intent(
    req: &Request,
    body: Body,
    Path(id): Path<String>,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    if let Err(r) = intake(req, body, &state).await {
        return r;
    }
    let mut s = state.lock().expect("lock");
    let Some(intent) = s.objects.get_mut(&id) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
        );
    };
    // Stripe cancels an intent that has not succeeded (nor been cancelled) yet.
    match intent["status"].as_str() {
        Some("succeeded" | "canceled") => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                "message": format!("You cannot cancel this PaymentIntent because it has a status of {}.", intent["status"])}}),
        ),
        _ => {
            intent["status"] = json!("canceled");
            intent["cancellation_reason"] = json!("requested_by_customer");
            json_response(StatusCode::OK, intent.clone())
        }
    }
}

#[handler]
async fn stripe_refund(req: &Request, body: Body, state: Data<&Arc<Mutex<MockState>>>) -> Response {
    let body = match intake(req, body, &state).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // Stripe answers a retry with the same Idempotency-Key with the refund it made.
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut s = state.lock().expect("lock");
    if let Some(made) = key
        .as_ref()
        .and_then(|k| s.idempotency.get(k))
        .and_then(|id| s.objects.get(id))
    {
        return json_response(StatusCode::OK, made.clone());
    }
    let reason = form.get("reason");
    if reason.is_some_and(|r| {
        !["duplicate", "fraudulent", "requested_by_customer"].contains(&r.as_str())
    }) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid_string", "param": "reason", "message": "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer"}}),
        );
    }
    let refund = json!({"id": format!("re_{}", random(24)), "object": "refund", "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()), "payment_intent": form.get("payment_intent"), "reason": reason, "status": "succeeded"});
    let id = refund["id"].as_str().unwrap_or_default().to_string();
    s.objects.insert(id.clone(), refund.clone());
    if let Some(k) = key {
        s.idempotency.insert(k, id);
    }
    json_response(StatusCode::OK, refund)
}

/// `GET /v1/balance_transactions` as Stripe documents it (`limit`, `starting_after`,
/// `expand[]=data.source`): a `charge` for every PaymentIntent that succeeded and a `refund`
/// (negative) for every refund, oldest id first, paged.
#[handler]
async fn stripe_balance_transactions(
    req: &Request,
    body: Body,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    if let Err(r) = intake(req, body, &state).await {
        return r;
    }
    if !bearer_is(req, STRIPE_KEY) && !bearer_is(req, STRIPE_LIVE_KEY) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let s = state.lock().expect("lock");
    let mut all: Vec<Value> = s
        .objects
        .values()
        .filter_map(|o| match (o["object"].as_str(), o["status"].as_str()) {
            (Some("payment_intent"), Some("succeeded")) => {
                let id = o["id"].as_str().unwrap_or_default();
                Some(json!({"id": format!("txn_c{}", &id[3..]), "object": "balance_transaction",
                    "type": "charge", "amount": o["amount"], "currency": o["currency"],
                    "source": {"id": format!("ch_{}", &id[3..]), "object": "charge", "payment_intent": id}}))
            }
            (Some("refund"), _) => {
                let id = o["id"].as_str().unwrap_or_default();
                Some(json!({"id": format!("txn_r{}", &id[3..]), "object": "balance_transaction",
                    "type": "refund", "amount": -o["amount"].as_i64().unwrap_or(0),
                    "source": {"id": id, "object": "refund", "payment_intent": o["payment_intent"]}}))
            }
            _ => None,
        })
        .collect();
    all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let start = match query.get("starting_after") {
        Some(after) => all
            .iter()
            .position(|t| t["id"].as_str() == Some(after.as_str()))
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "url": "/v1/balance_transactions", "has_more": has_more, "data": page}),
    )
}

pub async fn stripe() -> Mock {
    Mock::serve(
        Route::new()
            .at("/v1/balance_transactions", get(stripe_balance_transactions))
            .at("/v1/payment_intents", post(stripe_create_intent))
            .at("/v1/payment_intents/:id", get(stripe_get_intent))
            .at("/v1/payment_intents/:id/cancel", post(stripe_cancel_intent))
            .at("/v1/refunds", post(stripe_refund)),
    )
    .await
}

/// A Stripe event envelope (fields as in stripe-dotnet's fixture).
pub fn stripe_event(event_type: &str, object: Value) -> Value {
    json!({"id": format!("evt_{}", random(24)), "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "data": {"object": object}, "livemode": false,
        "pending_webhooks": 1, "request": {"id": format!("req_{}", random(12)), "idempotency_key": null}, "type": event_type})
}

/// POSTs a Stripe event to the gateway, signed with `secret` at time `t`.
pub async fn send_stripe_event(gateway: &str, event: &Value, secret: &str, t: i64) -> (u16, Value) {
    let body = serde_json::to_vec_pretty(event).expect("json");
    let signature = gateway::providers::stripe::sign(secret, &body, t);
    let r = reqwest::Client::new()
        .post(format!("{gateway}/v1/providers/stripe/webhooks"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature)
        .body(body)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

// ---------------- Moneroo ----------------

/// A Moneroo POST: recorded, authenticated with the mock's key, its JSON body.
async fn moneroo_post(
    req: &Request,
    body: Body,
    state: &Arc<Mutex<MockState>>,
) -> Result<Value, Response> {
    let body = intake(req, body, state).await?;
    if !bearer_is(req, MONEROO_KEY) {
        return Err(json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Unauthenticated.", "data": null, "errors": null}),
        ));
    }
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Moneroo's checks common to payments and payouts: the `required` fields, the customer's
/// names and email, an integer amount.
fn moneroo_errors(v: &Value, required: &[&str]) -> Vec<String> {
    let mut errors: Vec<String> = required
        .iter()
        .filter(|k| v[**k].is_null())
        .map(|k| format!("The {k} field is required."))
        .collect();
    for k in ["email", "first_name", "last_name"] {
        if v["customer"][k].as_str().is_none_or(str::is_empty) {
            errors.push(format!("The customer.{k} field is required."));
        }
    }
    if !v["amount"].is_i64() {
        errors.push("The amount must be an integer.".into());
    }
    errors
}

fn moneroo_invalid(errors: Vec<String>) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"message": "The given data was invalid.", "data": null, "errors": errors}),
    )
}

#[handler]
async fn moneroo_initialize(
    req: &Request,
    body: Body,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    let v = match moneroo_post(req, body, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let errors = moneroo_errors(&v, &["amount", "currency", "description", "return_url"]);
    if !errors.is_empty() {
        return moneroo_invalid(errors);
    }
    let id = random(12);
    let payment = json!({"id": id, "status": "initiated", "is_processed": false, "processed_at": null,
        "amount": v["amount"], "amount_formatted": format!("{} {}", v["currency"].as_str().unwrap_or(""), v["amount"]),
        "currency": {"code": v["currency"], "symbol": v["currency"], "decimals": 2}, "description": v["description"],
        "environment": "sandbox", "metadata": v["metadata"], "customer": {"id": random(12), "first_name": v["customer"]["first_name"], "last_name": v["customer"]["last_name"], "email": v["customer"]["email"]},
        "capture": null, "created_at": chrono::Utc::now().to_rfc3339()});
    state
        .lock()
        .expect("lock")
        .objects
        .insert(id.clone(), payment);
    json_response(
        StatusCode::CREATED,
        json!({"message": "Transaction initialized successfully", "data": {"id": id, "checkout_url": format!("https://checkout.moneroo.io/{id}")}, "errors": null}),
    )
}

#[handler]
async fn moneroo_verify(
    req: &Request,
    body: Body,
    Path(id): Path<String>,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    if let Err(r) = intake(req, body, &state).await {
        return r;
    }
    match state.lock().expect("lock").objects.get(&id) {
        Some(p) => json_response(
            StatusCode::OK,
            json!({"message": "Payment transaction fetched successfully!", "data": p, "errors": null}),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"message": "Not found", "data": null, "errors": null}),
        ),
    }
}

/// `POST /v1/payouts/initialize` as Moneroo documents it: amount (major units), currency,
/// description, method, customer {email, first_name, last_name}, recipient (for mobile money
/// methods, `msisdn`). The payout starts `pending`; a test moves it with `Mock::set`.
#[handler]
async fn moneroo_payout_initialize(
    req: &Request,
    body: Body,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    let v = match moneroo_post(req, body, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut errors = moneroo_errors(&v, &["amount", "currency", "description", "method"]);
    if v["recipient"]["msisdn"].as_str().is_none_or(str::is_empty) {
        errors.push("The recipient.msisdn field is required for this method.".into());
    }
    if !errors.is_empty() {
        return moneroo_invalid(errors);
    }
    let id = random(12);
    let payout = json!({"id": id, "status": "pending", "amount": v["amount"],
        "currency": {"code": v["currency"], "symbol": v["currency"], "decimals": 0},
        "description": v["description"], "method": v["method"], "recipient": v["recipient"],
        "metadata": v["metadata"], "created_at": chrono::Utc::now().to_rfc3339()});
    let lose = {
        let mut s = state.lock().expect("lock");
        s.objects.insert(id.clone(), payout);
        let lose = s.lose_answers > 0;
        s.lose_answers = s.lose_answers.saturating_sub(1);
        lose
    };
    if lose {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    json_response(
        StatusCode::CREATED,
        json!({"success": true, "message": "Payout transaction initialized successfully", "data": {"id": id}}),
    )
}

pub async fn moneroo() -> Mock {
    Mock::serve(
        Route::new()
            .at("/v1/payouts/initialize", post(moneroo_payout_initialize))
            .at("/v1/payouts/:id/verify", get(moneroo_verify))
            .at("/v1/payments/initialize", post(moneroo_initialize))
            .at("/v1/payments/:id/verify", get(moneroo_verify))
            .at("/v1/payments/:id", get(moneroo_verify)),
    )
    .await
}

/// POSTs a Moneroo webhook (the docs' example shape) signed with `secret`.
pub async fn send_moneroo_webhook(
    gateway: &str,
    event: &str,
    id: &str,
    status: &str,
    secret: &str,
) -> (u16, Value, Duration) {
    let data = json!({"id": id, "amount": 100, "currency": "USD", "status": status,
        "customer": {"id": "123456", "email": "hello@example.com", "firstName": "John", "lastName": "Doe", "phone": "+1 555 555 5555"}});
    send_moneroo_event(gateway, event, data, secret).await
}

/// POSTs a Moneroo webhook carrying `data` (e.g. a payout object the mock holds, with the
/// metadata it was given), signed with `secret`.
pub async fn send_moneroo_event(
    gateway: &str,
    event: &str,
    data: Value,
    secret: &str,
) -> (u16, Value, Duration) {
    let body = serde_json::to_vec(&json!({"event": event, "data": data})).expect("json");
    let signature = gateway::providers::moneroo::sign(secret, &body);
    let started = std::time::Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{gateway}/v1/providers/moneroo/webhooks"))
        .header("content-type", "application/json")
        .header("X-Moneroo-Signature", signature)
        .body(body)
        .send()
        .await
        .expect("send");
    let elapsed = started.elapsed();
    (
        r.status().as_u16(),
        r.json().await.unwrap_or(Value::Null),
        elapsed,
    )
}

// ---------------- eBilling ----------------

fn basic_ok(req: &Request) -> bool {
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{EBILLING_USER}:{EBILLING_KEY}"));
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Basic {expected}"))
}

#[handler]
async fn ebilling_create(
    req: &Request,
    body: Body,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    let body = match intake(req, body, &state).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !basic_ok(req) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body("HTTP Basic: Access denied.\n");
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let bill_id = format!("555{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7]);
    let now = chrono::Utc::now();
    let bill = json!({"bill_id": bill_id, "payer_msisdn": v["payer_msisdn"], "payer_email": v["payer_email"], "payee_id": "9016529699",
        "payee_name": "merchant", "amount": v["amount"], "currency": "XAF", "state": "ready", "created_at": now.to_rfc3339(),
        "expire_at": (now + chrono::Duration::minutes(60)).to_rfc3339(), "updated_at": now.to_rfc3339(),
        "short_description": v["short_description"], "due_date": null, "external_reference": v["external_reference"],
        "additional_info": null, "description": null, "reason": null, "accept_partial_payment": false, "minimum_amount": 0});
    state
        .lock()
        .expect("lock")
        .objects
        .insert(bill_id, bill.clone());
    json_response(
        StatusCode::CREATED,
        json!({"client_transaction_id": null, "server_transaction_id": random(13), "e_bill": bill}),
    )
}

#[handler]
async fn ebilling_get(
    req: &Request,
    body: Body,
    Path(id): Path<String>,
    state: Data<&Arc<Mutex<MockState>>>,
) -> Response {
    if let Err(r) = intake(req, body, &state).await {
        return r;
    }
    if !basic_ok(req) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body("HTTP Basic: Access denied.\n");
    }
    match state.lock().expect("lock").objects.get(&id) {
        Some(b) => json_response(StatusCode::OK, b.clone()),
        None => json_response(StatusCode::NOT_FOUND, json!({"message": "not found"})),
    }
}

pub async fn ebilling() -> Mock {
    Mock::serve(
        Route::new()
            .at("/api/v1/merchant/e_bills", post(ebilling_create))
            .at("/api/v1/merchant/e_bills/:id", get(ebilling_get)),
    )
    .await
}

impl Mock {
    /// eBilling's test hook: the payer pays the bill.
    pub fn pay_bill(&self, bill_id: &str) {
        self.set(bill_id, "state", json!("processed"));
        self.set(bill_id, "ps_transaction_id", json!("MP210817.2353.A90673"));
        self.set(bill_id, "payment_system_name", json!("airtelmoney"));
    }
}

/// POSTs eBilling's form-encoded notification to the gateway.
pub async fn send_ebilling_notification(
    gateway: &str,
    reference: &str,
    billing_id: &str,
    amount: i64,
) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("reference", reference)
        .append_pair("amount", &amount.to_string())
        .append_pair("transactionid", "MP210817.2353.A90673")
        .append_pair("paymentsystem", "airtelmoney")
        .append_pair("billingid", billing_id)
        .finish();
    let r = reqwest::Client::new()
        .post(format!("{gateway}/v1/providers/ebilling/webhooks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Provider settings pointing at these mocks.
pub fn settings(
    stripe: Option<&Mock>,
    moneroo: Option<&Mock>,
    ebilling: Option<&Mock>,
) -> gateway::providers::settings::ProviderSettings {
    use gateway::providers::settings::{
        EbillingSettings, MonerooSettings, ProviderSettings, StripeSettings,
    };
    use runtime::settings::Secret;
    ProviderSettings {
        stripe: stripe.map(|m| StripeSettings {
            secret_key: Secret(STRIPE_KEY.into()),
            webhook_secret: Secret(STRIPE_WEBHOOK_SECRET.into()),
            api_base: m.base.clone(),
        }),
        moneroo: moneroo.map(|m| MonerooSettings {
            secret_key: Secret(MONEROO_KEY.into()),
            webhook_secret: Secret(MONEROO_WEBHOOK_SECRET.into()),
            api_base: m.base.clone(),
            livemode: false,
        }),
        ebilling: ebilling.map(|m| EbillingSettings {
            username: EBILLING_USER.into(),
            shared_key: Secret(EBILLING_KEY.into()),
            api_base: m.base.clone(),
            portal_base: "https://test.billing-easy.net".into(),
            livemode: false,
        }),
        timeout: Duration::from_millis(800),
        // Most tests send callbacks back to back; the throttle has its own test.
        requery_interval: Duration::ZERO,
        ..ProviderSettings::default()
    }
}
