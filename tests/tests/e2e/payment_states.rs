//! A payment's states: a final one never moves back, even from a stale read; cancel means
//! cancelled at the provider first; a failed attempt leaves the payment open.

use payrail_tests::{Options, TestApp, mocks};
use sea_orm::ConnectionTrait as _;
use serde_json::json;

use crate::support::*;

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
        gateway::ledger::FundsPolicy::default(),
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

async fn stripe_says(app: &TestApp, event_type: &str, intent: &str, status: &str) -> u16 {
    let object = json!({"id": intent, "object": "payment_intent", "amount": 2000, "currency": "usd",
        "status": status, "last_payment_error": {"code": "card_declined", "message": "Declined"}});
    let event = mocks::stripe_event(event_type, object);
    let now = chrono::Utc::now().timestamp();
    mocks::send_stripe_event(&app.base, &event, mocks::STRIPE_WEBHOOK_SECRET, now)
        .await
        .0
}

/// Asks to cancel `id`, expects the refusal, and checks the payment is still pending.
async fn cancel_is_refused(app: &TestApp, id: &str, status: u16, code: &str) {
    let (got, b) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (got, b["error"]["code"].as_str()),
        (status, Some(code)),
        "{b}"
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "pending", "a refused cancel changes nothing");
}

#[tokio::test]
async fn cancelling_a_stripe_payment_cancels_the_intent_first() {
    let (stripe, app) = stripe_app().await;
    let (id, intent) = stripe_payment(&app).await;
    let (status, p) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (200, Some("cancelled")),
        "{p}"
    );
    assert!(
        stripe
            .seen()
            .iter()
            .any(|s| s.path == format!("/v1/payment_intents/{intent}/cancel")),
        "the intent was cancelled at Stripe"
    );
    // An intent the customer already paid cannot be cancelled: nothing changes here.
    let (id, intent) = stripe_payment(&app).await;
    stripe.set(&intent, "status", json!("succeeded"));
    cancel_is_refused(&app, &id, 409, "payment_not_cancellable").await;
}

#[tokio::test]
async fn providers_without_a_cancel_api_refuse_to_cancel() {
    let moneroo = mocks::moneroo().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(None, Some(&moneroo), None),
        ..Options::default()
    })
    .await;
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 5000, "currency": "XOF", "provider": "moneroo",
                "customer": {"email": "a@example.com", "name": "Awa Diop"},
                "return_url": "https://shop.example/r"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().expect("id");
    cancel_is_refused(&app, id, 422, "cancel_not_supported").await;
}

#[tokio::test]
async fn a_failed_stripe_attempt_leaves_the_payment_open_and_a_late_success_is_flagged() {
    let (_stripe, app) = stripe_app().await;
    let (id, intent) = stripe_payment(&app).await;
    assert_eq!(
        stripe_says(
            &app,
            "payment_intent.payment_failed",
            &intent,
            "requires_payment_method"
        )
        .await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        p["status"], "pending",
        "the customer may retry the same intent: {p}"
    );
    assert_eq!(
        stripe_says(&app, "payment_intent.succeeded", &intent, "succeeded").await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "succeeded");

    // A payment we cancelled, then Stripe reports it succeeded (a race with the customer).
    let (id, intent) = stripe_payment(&app).await;
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET status = 'cancelled' WHERE id = '{id}'"
        ))
        .await
        .expect("cancel");
    assert_eq!(
        stripe_says(&app, "payment_intent.succeeded", &intent, "succeeded").await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        (p["status"].as_str(), p["requires_reconciliation"].as_bool()),
        (Some("cancelled"), Some(true)),
        "{p}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM logs WHERE level = 'critical' AND context->>'payment_id' = '{id}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM provider_events WHERE outcome = 'requires_reconciliation'")
            .await,
        1
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"payments_requiring_reconciliation_total{provider="stripe"} 1"#),
        "{metrics}"
    );
}
