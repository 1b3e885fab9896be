//! Webhook endpoints: updated, disabled, deleted; at most twenty per merchant, even when
//! created concurrently.

use payrail_tests::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn endpoints_can_be_updated_disabled_and_deleted() {
    let app = TestApp::spawn().await;
    let (id, secret) = app.create_endpoint("https://example.com/a").await;
    assert!(secret.starts_with("whsec_"));
    let (_, got) = app
        .get_json(&app.api_key, &format!("/v1/webhook_endpoints/{id}"))
        .await;
    assert!(
        got.get("secret").is_none(),
        "the secret is shown only at creation"
    );
    let r = app.client.patch(app.url(&format!("/v1/webhook_endpoints/{id}"))).bearer_auth(&app.api_key)
        .json(&json!({"url": "https://example.com/b", "enabled_events": ["payment.succeeded"], "status": "disabled"})).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.expect("json");
    assert_eq!(
        (b["url"].as_str(), b["status"].as_str()),
        (Some("https://example.com/b"), Some("disabled"))
    );
    assert_eq!(b["enabled_events"], json!(["payment.succeeded"]));
    let (status, _) = app
        .patch_json(
            &app.api_key,
            &format!("/v1/webhook_endpoints/{id}"),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, 422);
    let r = app
        .client
        .delete(app.url(&format!("/v1/webhook_endpoints/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("send");
    assert_eq!(r.json::<Value>().await.expect("json")["deleted"], true);
    let (s, _) = app
        .get_json(&app.api_key, &format!("/v1/webhook_endpoints/{id}"))
        .await;
    assert_eq!(s, 404);

    // Creating an endpoint is idempotent too: a retried request does not make a second one.
    let body = json!({"url": "https://example.com/c", "enabled_events": ["*"]});
    let create = |body: Value| {
        app.client
            .post(app.url("/v1/webhook_endpoints"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "ep-1")
            .json(&body)
            .send()
    };
    let first: Value = create(body.clone())
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let again = create(body.clone()).await.expect("send");
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(
        again.json::<Value>().await.expect("json")["id"],
        first["id"]
    );
    assert_eq!(
        create(json!({"url": "https://example.com/d", "enabled_events": ["*"]}))
            .await
            .expect("send")
            .status(),
        409
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 1);
}

#[tokio::test]
async fn a_merchant_has_at_most_twenty_endpoints_even_when_created_concurrently() {
    let app = TestApp::spawn().await;
    let results = futures_util::future::join_all((0..25).map(|i| {
        app.post_json(
            &app.api_key,
            "/v1/webhook_endpoints",
            json!({"url": format!("https://example.com/hook/{i}"), "enabled_events": ["*"]}),
        )
    }))
    .await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 20, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (422, Some("endpoint_limit_reached")),
            "{body}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_endpoints").await,
        20
    );
}
