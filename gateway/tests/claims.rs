//! An `Idempotency-Key` claimed by a gateway that is killed mid-request is taken over by the
//! client's retry as soon as a gateway is back (issue 25 item 4), through the binary: the
//! claim names the process's advisory lock, which dies with its connections.

use std::time::{Duration, Instant};

use payrail_tests::{Process, TestApp, free_port, mocks, until_ready};
use serde_json::{Value, json};

#[tokio::test]
async fn a_retry_after_the_gateway_was_killed_mid_request_is_served_at_once() {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn().await;
    let bind = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{bind}");
    let gateway = || {
        let mut c = app.gateway_command(env!("CARGO_BIN_EXE_gateway"), &bind);
        c.env("STRIPE_SECRET_KEY", mocks::STRIPE_KEY)
            .env("STRIPE_WEBHOOK_SECRET", mocks::STRIPE_WEBHOOK_SECRET)
            .env("STRIPE_API_BASE", &stripe.base)
            .env("PAYRAIL_PROVIDER_TIMEOUT", "60s");
        Process::spawn_quiet(c)
    };
    let client = reqwest::Client::new();
    let create = || {
        client
            .post(format!("{base}/v1/payments"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "killed-mid-request")
            .json(&json!({"amount": 4200, "currency": "usd", "provider": "stripe"}))
            .send()
    };

    let mut first = gateway();
    until_ready(&client, &base).await;
    // Stripe hangs: the request holds its claim while the gateway is killed.
    stripe.delay(Some(Duration::from_secs(120)));
    let hanging = tokio::spawn(create());
    let started = Instant::now();
    while !stripe
        .seen()
        .iter()
        .any(|s| s.path == "/v1/payment_intents")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the request never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    assert!(
        hanging.await.expect("the request task").is_err(),
        "the killed gateway answered nothing"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'killed-mid-request' AND response_status = 0 AND owner IS NOT NULL")
            .await,
        1,
        "the dead gateway's claim is left, naming its owner"
    );

    stripe.delay(None);
    let _second = gateway();
    until_ready(&client, &base).await;
    let retried = Instant::now();
    let answer = create().await.expect("the retry");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert_eq!(
        status, 201,
        "the retry takes the dead gateway's claim over instead of 409: {body}"
    );
    assert!(
        retried.elapsed() < Duration::from_secs(1),
        "at once, not after the claim's heartbeat goes stale ({:?})",
        retried.elapsed()
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments").await,
        1,
        "one payment, the retry reusing the id the first noted"
    );
}
