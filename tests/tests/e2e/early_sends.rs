//! A fresh event's first attempts go out while its delivery rows' insert commits, and are
//! recorded only under the claim that insert made: a send whose row another fan-out made is
//! not recorded over that row, and after a failed insert the next batch inserts first.
//!
//! The insert is held back by a table lock taken in the test's own transaction, and made to
//! fail with a trigger: the worker runs through its production entry point throughout.

use std::time::Duration;

use entity::ids::{DeliveryId, EndpointId, EventId};
use payrail_tests::receiver::{Behavior, Receiver};
use payrail_tests::{Options, TestApp, counter};
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use worker::app::WorkerApplication;

const WAIT: Duration = Duration::from_secs(20);
const EARLY: &str = "webhook_express_early_sends_total";
const UNRECORDED: &str = "webhook_express_early_sends_unrecorded_total";

/// A gateway, an endpoint at a receiver answering 200, and a worker started through its
/// production entry point and heard on the express lane; the worker stops when the returned
/// sender drops.
struct Scene {
    app: TestApp,
    receiver: Receiver,
    endpoint_id: String,
    worker_base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn scene() -> Scene {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (endpoint_id, _) = app.create_endpoint(&receiver.url).await;
    let worker = WorkerApplication::build(app.settings.worker_process())
        .await
        .expect("worker builds");
    let worker_base = format!("http://127.0.0.1:{}", worker.port());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    app.until_express_heard(WAIT).await;
    Scene {
        app,
        receiver,
        endpoint_id,
        worker_base,
        _stop,
    }
}

async fn new_payment(app: &TestApp) -> String {
    let payment = app.create_payment(100).await;
    payment["id"].as_str().expect("id").to_string()
}

async fn webhook_heard(app: &TestApp, receiver: &Receiver, payment: &str, times: usize) {
    app.eventually(
        WAIT,
        &format!("{times} webhook(s) of {payment}"),
        || async { (receiver.pending_webhooks_of(payment) == times).then_some(()) },
    )
    .await;
}

/// `(status, attempts recorded)` of the payment's one delivery.
async fn delivery_of(app: &TestApp, payment: &str) -> Option<(String, i64)> {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT d.status::text, (SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id)
                 FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
                 WHERE e.payment_id = '{payment}'"
            ),
        ))
        .await
        .expect("query")?;
    Some((
        row.try_get_by_index(0).expect("status"),
        row.try_get_by_index(1).expect("attempts"),
    ))
}

async fn recorded_once(app: &TestApp, payment: &str) {
    app.eventually(WAIT, "the delivery recorded as succeeded", || async {
        (delivery_of(app, payment).await == Some(("succeeded".into(), 1))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_webhook_goes_out_while_its_row_is_inserted_and_is_recorded_once_it_commits() {
    let Scene {
        app,
        receiver,
        worker_base,
        _stop,
        ..
    } = scene().await;
    let before = counter(&app.metrics_text_of(&worker_base).await, EARLY);

    // Inserts into the deliveries wait for this transaction; reads do not.
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    let payment = new_payment(&app).await;
    webhook_heard(&app, &receiver, &payment, 1).await;
    assert_eq!(
        delivery_of(&app, &payment).await,
        None,
        "received before its row committed"
    );
    lock.rollback().await.expect("unlock");

    recorded_once(&app, &payment).await;
    let metrics = app.metrics_text_of(&worker_base).await;
    assert_eq!(counter(&metrics, EARLY), before + 1.0, "{metrics}");
    assert_eq!(counter(&metrics, UNRECORDED), 0.0, "{metrics}");
    assert_eq!(receiver.pending_webhooks_of(&payment), 1, "sent once");
}

#[tokio::test]
async fn an_early_send_whose_row_another_fan_out_made_records_nothing_over_it() {
    let Scene {
        app,
        receiver,
        endpoint_id,
        worker_base,
        _stop,
    } = scene().await;

    // While the worker's insert waits for the lock, "another fan-out" (this transaction) makes
    // the row, due in an hour so that no sweep takes it meanwhile.
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    let payment = new_payment(&app).await;
    webhook_heard(&app, &receiver, &payment, 1).await;
    let event_id: String = lock
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT id FROM events WHERE payment_id = '{payment}'"),
        ))
        .await
        .expect("query")
        .expect("event")
        .try_get_by_index(0)
        .expect("id");
    let delivery_id = DeliveryId::for_event_endpoint(
        &EventId::from_trusted(&event_id),
        &EndpointId::from_trusted(&endpoint_id),
    );
    lock.execute_unprepared(&format!(
        "INSERT INTO webhook_deliveries (id, merchant_id, livemode, event_id, endpoint_id, status,
           attempts, earlier_attempts, next_retry_at, created_at, updated_at)
         SELECT '{delivery_id}', merchant_id, livemode, id, '{endpoint_id}', 'pending', 0, 0,
                now() + interval '1 hour', now(), now()
         FROM events WHERE id = '{event_id}'"
    ))
    .await
    .expect("the other fan-out's row");
    lock.commit().await.expect("commit");

    app.eventually(WAIT, "the early send counted as unrecorded", || async {
        let metrics = app.metrics_text_of(&worker_base).await;
        (counter(&metrics, UNRECORDED) == 1.0).then_some(())
    })
    .await;
    // The worker's result went nowhere: the row is as its maker left it.
    assert_eq!(
        delivery_of(&app, &payment).await,
        Some(("pending".into(), 0))
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE id = '{delivery_id}'
             AND next_retry_at > now() + interval '50 minutes' AND lease_token IS NULL"
        ))
        .await,
        1,
        "neither claimed nor rescheduled by the worker"
    );
}

#[tokio::test]
async fn after_a_failed_insert_the_next_batch_inserts_before_it_sends_and_nothing_is_lost() {
    let Scene {
        app,
        receiver,
        worker_base,
        _stop,
        ..
    } = scene().await;
    app.db
        .execute_unprepared(
            "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'deliveries refused by the test'; END $$;
             CREATE TRIGGER refuse_deliveries BEFORE INSERT ON webhook_deliveries
               FOR EACH ROW EXECUTE FUNCTION refuse_deliveries();",
        )
        .await
        .expect("trigger");

    // The first event's webhook goes out early; its insert fails, so it is not recorded.
    let first = new_payment(&app).await;
    webhook_heard(&app, &receiver, &first, 1).await;
    app.eventually(WAIT, "the failed insert counted", || async {
        let metrics = app.metrics_text_of(&worker_base).await;
        (counter(&metrics, UNRECORDED) == 1.0).then_some(())
    })
    .await;
    // The next one is inserted first: with the insert failing, nothing goes out.
    let second = new_payment(&app).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.pending_webhooks_of(&second),
        0,
        "nothing sent early"
    );
    assert_eq!(
        counter(&app.metrics_text_of(&worker_base).await, UNRECORDED),
        1.0
    );

    // With inserts back, the relay publishes both unmarked events after its grace: the first
    // is sent a second time (its one extra send), the second for the first time, and both
    // are recorded once.
    app.db
        .execute_unprepared("DROP TRIGGER refuse_deliveries ON webhook_deliveries")
        .await
        .expect("drop trigger");
    webhook_heard(&app, &receiver, &first, 2).await;
    webhook_heard(&app, &receiver, &second, 1).await;
    recorded_once(&app, &first).await;
    recorded_once(&app, &second).await;

    // A fresh event whose insert goes through brings early sends back for the next.
    let third = new_payment(&app).await;
    recorded_once(&app, &third).await;
    let early = counter(&app.metrics_text_of(&worker_base).await, EARLY);
    let fourth = new_payment(&app).await;
    recorded_once(&app, &fourth).await;
    assert_eq!(
        counter(&app.metrics_text_of(&worker_base).await, EARLY),
        early + 1.0
    );
}
