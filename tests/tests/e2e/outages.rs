//! What the API answers while its database is out of reach: a 503 in the Stripe shape with
//! `Retry-After`, saying nothing was changed, and the client's retry with the same
//! Idempotency-Key succeeds once the database is back (issue 25).

use std::time::Duration;

use entity::payments;
use payrail_tests::{Options, TcpProxy, TestApp};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

async fn create(app: &TestApp, key: &str) -> (u16, Option<String>, Value) {
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": 1200, "currency": "usd", "provider": "simulated"}))
        .send()
        .await
        .expect("the gateway answers");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_database_cut_is_a_503_to_retry_and_the_retry_with_its_key_succeeds_once() {
    let proxy = TcpProxy::start("127.0.0.1:5432", true).await;
    let app = TestApp::spawn_with(Options {
        gateway_database_port: Some(proxy.port),
        ..Options::default()
    })
    .await;
    // The key is authenticated (and cached) before the cut, as a client mid-integration is.
    let (status, _, _) = create(&app, "before-the-cut").await;
    assert_eq!(status, 201);

    proxy.set_enabled(false);
    let (status, retry_after, body) = create(&app, "during-the-cut").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "a 503 says when to retry"
    );

    proxy.set_enabled(true);
    let mut answer = (0, None, Value::Null);
    for _ in 0..40 {
        answer = create(&app, "during-the-cut").await;
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(answer.0, 201, "the retry succeeds: {}", answer.2);
    let (again, _, replay) = create(&app, "during-the-cut").await;
    assert_eq!(again, 201);
    assert_eq!(replay["id"], answer.2["id"], "one payment for the key");
    let made = payments::Entity::find()
        .count(&app.db)
        .await
        .expect("count payments");
    assert_eq!(
        made, 2,
        "the cut request changed nothing; its retry made one payment"
    );
}
