//! The worker's copies of merchants' endpoints: a fresh event is fanned out without reading
//! them, and a change to the endpoints (a new one, one disabled) reaches the very next
//! payment's webhooks, because the trigger bumps the merchant's version in the change's commit
//! and the payment's statement reads it.

use std::time::Duration;

use payrail_tests::receiver::{Behavior, Receiver};
use payrail_tests::{Options, RunningWorker, TestApp, counter};
use sea_orm::ConnectionTrait as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Creates a payment and waits for its webhook at `receiver`; the payment's id.
async fn paid_and_heard(app: &TestApp, receiver: &Receiver) -> String {
    let payment = app.create_payment(100).await;
    let id = payment["id"].as_str().expect("id").to_string();
    app.eventually(WAIT, "the payment's webhook", || async {
        (receiver.pending_webhooks_of(&id) == 1).then_some(())
    })
    .await;
    id
}

async fn endpoints_version(app: &TestApp) -> i64 {
    // Only this app's merchant's endpoints change here; the sum moves with its version.
    app.count("SELECT sum(endpoints_version)::bigint FROM merchants")
        .await
}

#[tokio::test]
async fn a_new_or_disabled_endpoint_is_seen_by_the_next_payment_while_others_use_the_copy() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let first = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (first_id, _) = app.create_endpoint(&first.url).await;
    let worker = RunningWorker::start(app.settings.worker_process()).await;

    // The first payment reads the endpoints; the next ones, at the same version, do not.
    paid_and_heard(&app, &first).await;
    let read = counter(
        &app.metrics_text_of(&worker.base).await,
        "webhook_fanout_endpoints_read_total",
    );
    for _ in 0..3 {
        paid_and_heard(&app, &first).await;
    }
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(
        counter(&metrics, "webhook_fanout_endpoints_read_total"),
        read,
        "no read at an unchanged version: {metrics}"
    );
    assert!(counter(&metrics, "webhook_fanout_endpoints_from_copy_total") >= 3.0);

    // A second endpoint: the very next payment goes to both.
    let second = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&second.url).await;
    let next = paid_and_heard(&app, &second).await;
    app.eventually(WAIT, "the first endpoint's webhook too", || async {
        (first.pending_webhooks_of(&next) == 1).then_some(())
    })
    .await;

    // The first disabled: the next payment makes one delivery, the second endpoint's.
    let (status, _) = app
        .patch_json(
            &app.api_key,
            &format!("/v1/webhook_endpoints/{first_id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(status, 200);
    let last = paid_and_heard(&app, &second).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
             WHERE e.payment_id = '{last}'"
        ))
        .await,
        1,
        "a delivery for the enabled endpoint only"
    );
    assert_eq!(first.pending_webhooks_of(&last), 0);

    worker.stop().await;
}

#[tokio::test]
async fn only_a_change_a_subscriber_sees_bumps_the_merchants_endpoints_version() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let before = endpoints_version(&app).await;
    let (id, _) = app.create_endpoint("http://127.0.0.1:9/a").await;
    let created = endpoints_version(&app).await;
    assert!(created > before, "a new endpoint bumps it");
    // A failing streak's bookkeeping, rewritten on every failed attempt, does not.
    app.db
        .execute_unprepared(&format!(
            "UPDATE webhook_endpoints SET consecutive_failures = 3, failing_since = now() WHERE id = '{id}'"
        ))
        .await
        .expect("update");
    assert_eq!(endpoints_version(&app).await, created);
    // Anything else does, written by any client.
    app.db
        .execute_unprepared(&format!(
            "UPDATE webhook_endpoints SET url = 'http://127.0.0.1:9/b' WHERE id = '{id}'"
        ))
        .await
        .expect("update");
    let changed = endpoints_version(&app).await;
    assert!(changed > created, "a new url bumps it");
    let r = app
        .client
        .delete(app.url(&format!("/v1/webhook_endpoints/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    assert!(
        endpoints_version(&app).await > changed,
        "a removal bumps it"
    );
}
