//! Helpers several areas' tests share: a succeeded payment, a refund, a POST with a key,
//! a gateway with a Stripe mock and a Stripe payment.

use payrail_tests::{Options, TestApp, mocks};
use serde_json::{Value, json};

/// A succeeded sandbox payment (a test card succeeds at once) of `amount` cents.
pub(crate) async fn succeeded_payment(app: &TestApp, amount: i64) -> String {
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": amount, "currency": "usd", "provider": "simulated",
                "payment_method": {"type": "card", "card": {"number": "4242424242424242",
                "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (201, Some("succeeded")),
        "{p}"
    );
    p["id"].as_str().expect("id").to_string()
}

pub(crate) async fn refund(
    app: &TestApp,
    id: &str,
    amount: Option<i64>,
    key: Option<&str>,
) -> (u16, Value) {
    let body = match amount {
        Some(a) => json!({"amount": a}),
        None => json!({}),
    };
    let mut request = app
        .client
        .post(app.url(&format!("/v1/payments/{id}/refunds")))
        .bearer_auth(&app.api_key)
        .json(&body);
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn post_with_key(
    app: &TestApp,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn stripe_app() -> (mocks::Mock, TestApp) {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    (stripe, app)
}

pub(crate) async fn stripe_payment(app: &TestApp) -> (String, String) {
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    (
        p["id"].as_str().expect("id").to_string(),
        p["provider_reference"]
            .as_str()
            .expect("intent")
            .to_string(),
    )
}
