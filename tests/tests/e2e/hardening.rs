//! Issue 8's defects, each shown by a test that failed before its fix: money under
//! concurrency, forged or hostile input, and configuration that used to be accepted silently.

use payrail_tests::TestApp;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

/// A succeeded sandbox payment (a test card succeeds at once) of `amount` cents.
async fn succeeded_payment(app: &TestApp, amount: i64) -> String {
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

async fn refund(app: &TestApp, id: &str, amount: Option<i64>, key: Option<&str>) -> (u16, Value) {
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

#[tokio::test]
async fn concurrent_refunds_never_refund_more_than_the_payment() {
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    let results =
        futures_util::future::join_all((0..10).map(|_| refund(&app, &id, Some(100), None))).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 10, "{results:?}");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        (p["amount_refunded"].as_i64(), p["status"].as_str()),
        (Some(1000), Some("refunded")),
        "ten refunds of 100 on 1,000: {p}"
    );
    let (status, body) = refund(&app, &id, Some(800), None).await;
    assert_eq!(status, 409, "nothing is left: {body}");
    assert_eq!(
        app.count(&format!(
            "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE payment_id = '{id}' AND status = 'succeeded'"
        ))
        .await,
        1000
    );
    let refunded_events = app
        .count(&format!(
            "SELECT count(*) FROM events WHERE payment_id = '{id}' AND event_type = 'payment.refunded'"
        ))
        .await;
    assert_eq!(refunded_events, 1, "one payment.refunded event");
}

#[tokio::test]
async fn a_refund_settled_after_the_providers_report_counts_once() {
    // The provider's own report (Stripe's charge.refunded total) and our settled refund
    // describe the same money: whichever lands first, it counts once.
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    // The provider already reported 300 refunded (as its webhook would).
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET amount_refunded = 300 WHERE id = '{id}'"
        ))
        .await
        .expect("provider report");
    let (status, body) = refund(&app, &id, Some(300), None).await;
    assert_eq!(status, 201, "{body}");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["amount_refunded"].as_i64(), Some(300), "{p}");
}

#[tokio::test]
async fn a_transition_from_a_stale_read_never_overwrites_a_final_status() {
    use entity::payment_status::PaymentStatus;
    use sea_orm::EntityTrait as _;
    let app = TestApp::spawn().await;
    let p = app.create_payment(500).await;
    let id = p["id"].as_str().expect("id");
    let stale = entity::payments::Entity::find_by_id(
        entity::ids::PaymentId::parse(id).expect("payment id"),
    )
    .one(&app.db)
    .await
    .expect("read")
    .expect("row");
    assert_eq!(stale.status, PaymentStatus::Pending);
    // Another writer cancels it after our read.
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET status = 'cancelled' WHERE id = '{id}'"
        ))
        .await
        .expect("cancel");
    let moved = gateway::payments::service::transition(
        &app.db,
        stale,
        PaymentStatus::Succeeded,
        None,
        None,
    )
    .await
    .expect("no database error");
    assert!(
        moved.is_err(),
        "the compare-and-set must refuse a stale move"
    );
    let (_, now) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(now["status"], "cancelled");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE payment_id = '{id}' AND event_type = 'payment.succeeded'"
        ))
        .await,
        0,
        "no event for a move that did not happen"
    );
}
