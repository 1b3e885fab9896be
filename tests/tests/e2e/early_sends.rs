//! A fresh event's first attempts go out while its delivery rows' insert commits, and are
//! recorded under the claim that insert made: a send whose row another fan-out made gets an
//! attempt row of its own and leaves that row alone, and a failing insert is tried again
//! (the next batch inserting before it sends) until it goes through, each webhook sent once.
//!
//! The insert is held back by a table lock taken in the test's own transaction, and made to
//! fail with a trigger: the worker runs through its production entry point throughout.

use std::time::Duration;

use entity::ids::{DeliveryId, EndpointId, EventId};
use payrail_tests::receiver::{Behavior, Receiver};
use payrail_tests::{Options, RunningWorker, TestApp, counter};
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};

const WAIT: Duration = Duration::from_secs(20);
const SENDS_EARLY_AFTER: Duration = Duration::from_millis(1_200);
const EARLY: &str = "webhook_express_early_sends_total";
const EXTRA: &str = "webhook_express_extra_sends_total";

/// A gateway, an endpoint at a receiver answering 200, and a worker started through its
/// production entry point and heard on the express lane; the worker stops when the returned
/// sender drops.
struct Scene {
    app: TestApp,
    receiver: Receiver,
    endpoint_id: String,
    worker: RunningWorker,
}

async fn scene() -> Scene {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (endpoint_id, _) = app.create_endpoint(&receiver.url).await;
    let worker = RunningWorker::start(app.settings.worker_process()).await;
    app.until_express_heard(WAIT).await;
    // A worker sends early only the events created over a second after it was first heard.
    tokio::time::sleep(SENDS_EARLY_AFTER).await;
    Scene {
        app,
        receiver,
        endpoint_id,
        worker,
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

/// A transaction holding `webhook_deliveries` so that inserts wait for it (reads do not),
/// until it ends.
async fn hold_delivery_inserts(app: &TestApp) -> sea_orm::DatabaseTransaction {
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    lock
}

async fn recorded_once(app: &TestApp, payment: &str) {
    app.eventually(WAIT, "the delivery recorded as succeeded", || async {
        (app.delivery_of_payment(payment).await == Some(("succeeded".into(), 1))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_webhook_goes_out_while_its_row_is_inserted_and_is_recorded_once_it_commits() {
    let Scene {
        app,
        receiver,
        worker,
        ..
    } = scene().await;
    let before = counter(&app.metrics_text_of(&worker.base).await, EARLY);

    let lock = hold_delivery_inserts(&app).await;
    let payment = new_payment(&app).await;
    webhook_heard(&app, &receiver, &payment, 1).await;
    assert_eq!(
        app.delivery_of_payment(&payment).await,
        None,
        "received before its row committed"
    );
    lock.rollback().await.expect("unlock");

    recorded_once(&app, &payment).await;
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(counter(&metrics, EARLY), before + 1.0, "{metrics}");
    assert_eq!(counter(&metrics, EXTRA), 0.0, "{metrics}");
    assert_eq!(receiver.pending_webhooks_of(&payment), 1, "sent once");
}

#[tokio::test]
async fn an_early_send_whose_row_another_fan_out_made_is_an_attempt_row_of_its_own_and_leaves_the_row_alone()
 {
    let Scene {
        app,
        receiver,
        endpoint_id,
        worker,
    } = scene().await;

    // While the worker's insert waits for the lock, "another fan-out" (this transaction) makes
    // the row, due in an hour so that no sweep takes it meanwhile.
    let lock = hold_delivery_inserts(&app).await;
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

    app.eventually(WAIT, "the early send counted as an extra one", || async {
        let metrics = app.metrics_text_of(&worker.base).await;
        (counter(&metrics, EXTRA) == 1.0).then_some(())
    })
    .await;
    // The request is an attempt row, numbered as the first it was, with what it got back...
    app.until_count(
        WAIT,
        "the extra send's attempt row",
        &format!(
            "SELECT count(*) FROM webhook_attempts WHERE delivery_id = '{delivery_id}'
             AND attempt_number = 1 AND http_status = 200"
        ),
        1,
    )
    .await;
    // ...and the row is as its maker left it: neither claimed nor rescheduled.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE id = '{delivery_id}' AND status = 'pending'
             AND attempts = 0 AND next_retry_at > now() + interval '50 minutes' AND lease_token IS NULL"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn a_failing_insert_is_tried_again_the_next_batch_sends_after_its_insert_and_each_webhook_goes_once()
 {
    let Scene {
        app,
        receiver,
        worker,
        ..
    } = scene().await;
    app.refuse_delivery_inserts(true).await;

    // The first event's webhook goes out early; its insert fails and is tried again.
    let early = counter(&app.metrics_text_of(&worker.base).await, EARLY);
    let first = new_payment(&app).await;
    webhook_heard(&app, &receiver, &first, 1).await;
    // Its insert has failed by now (an insert's round trip is far shorter).
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next one is inserted first: while the insert fails, nothing goes out.
    let second = new_payment(&app).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.pending_webhooks_of(&second),
        0,
        "nothing sent early"
    );
    assert_eq!(app.delivery_of_payment(&first).await, None, "no row yet");

    // Inserts back: both batches' rows go in. The first's send is recorded, the second is
    // sent now; neither is sent twice, even past the relay's grace (2 s: had it published the
    // events, this worker would have settled their broker messages with the batches).
    app.refuse_delivery_inserts(false).await;
    recorded_once(&app, &first).await;
    recorded_once(&app, &second).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.pending_webhooks_of(&first), 1);
    assert_eq!(receiver.pending_webhooks_of(&second), 1);
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(counter(&metrics, EARLY), early + 1.0, "{metrics}");
    assert_eq!(counter(&metrics, EXTRA), 0.0, "{metrics}");

    // With inserts going through again, the next event's first attempt goes out early.
    let third = new_payment(&app).await;
    recorded_once(&app, &third).await;
    assert_eq!(
        counter(&app.metrics_text_of(&worker.base).await, EARLY),
        early + 2.0
    );
}

/// No worker heard: the gateway publishes the event to the broker and pushes its copy too.
/// The worker started next takes both; the copy, of an event from before the worker was heard,
/// may be racing a broker message already sent, so it is not sent early: one webhook, one
/// attempt, whichever came first.
#[tokio::test]
async fn the_copy_of_an_event_from_before_the_worker_was_heard_is_not_sent_early() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let payment = new_payment(&app).await;
    let worker = RunningWorker::start(app.settings.worker_process()).await;
    recorded_once(&app, &payment).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.pending_webhooks_of(&payment), 1);
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(counter(&metrics, EARLY), 0.0, "{metrics}");
    assert_eq!(counter(&metrics, EXTRA), 0.0, "{metrics}");
}

/// A second worker stops cleanly: it deletes the key that says a worker pops the lane, and
/// the gateways publish to the broker as well until the first worker's next beat. The first
/// worker reads the count of such leaves with its next pop, so it sends nothing early from
/// that moment: the next payment's webhook goes out once, after its insert.
#[tokio::test]
async fn after_another_worker_leaves_the_lane_nothing_from_that_moment_is_sent_early() {
    let Scene {
        app,
        receiver,
        worker,
        ..
    } = scene().await;
    let second = RunningWorker::start(app.settings.worker_process()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.stop().await;

    let early = counter(&app.metrics_text_of(&worker.base).await, EARLY);
    let payment = new_payment(&app).await;
    recorded_once(&app, &payment).await;
    assert_eq!(receiver.pending_webhooks_of(&payment), 1);
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(counter(&metrics, EARLY), early, "{metrics}");
    assert_eq!(counter(&metrics, EXTRA), 0.0, "{metrics}");
}
