//! Delivery guarantees: retries and backoff, timeouts, manual retry, duplicates, crashes,
//! concurrent workers, a broker outage, dead letters. Where timing matters the test drives
//! the worker's steps (`handle`, `sweep_once`) itself instead of sleeping on a schedule.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use entity::bus::{BusMessage, QueueNames};
use entity::{webhook_attempts, webhook_deliveries};
use payrail_tests::{AMQP_URL, Behavior, Options, Receiver, TcpProxy, TestApp};
use runtime::bus::EventBus;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use worker::Worker;
use worker::deliveries::{AttemptOutcome, claim_due};
use worker::worker::Handled;

const WAIT: Duration = Duration::from_secs(15);

fn manual(adjust: impl FnOnce(&mut Options)) -> Options {
    let mut o = Options {
        start_worker: false,
        ..Options::default()
    };
    adjust(&mut o);
    o
}

/// Takes the next message from this test's queue and lets `worker` handle it.
async fn handle_next(app: &TestApp, worker: &Worker) -> Handled {
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(1).await.expect("subscribe");
    let received = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message arrives")
        .expect("stream open")
        .expect("message");
    worker.handle(received).await
}

/// The next message `sub` receives, within [`WAIT`].
async fn next_message(sub: &mut runtime::bus::Subscription) -> runtime::bus::Received {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message arrives")
        .expect("stream open")
        .expect("message")
}

async fn deliveries(app: &TestApp) -> Vec<webhook_deliveries::Model> {
    webhook_deliveries::Entity::find()
        .order_by_asc(webhook_deliveries::Column::Id)
        .all(&app.db)
        .await
        .expect("query")
}

async fn attempts(app: &TestApp, delivery_id: &str) -> Vec<webhook_attempts::Model> {
    webhook_attempts::Entity::find()
        .filter(webhook_attempts::Column::DeliveryId.eq(delivery_id))
        .order_by_asc(webhook_attempts::Column::AttemptNumber)
        .all(&app.db)
        .await
        .expect("query")
}

async fn sleep_until_due(app: &TestApp) {
    if let Some(at) = deliveries(app)
        .await
        .iter()
        .filter_map(|d| d.next_retry_at)
        .min()
    {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_500_then_a_200_leaves_two_attempt_rows() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![500], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    let Handled::FannedOut {
        created,
        attempts: first,
        ..
    } = handle_next(&app, &worker).await
    else {
        panic!("fan-out expected")
    };
    assert_eq!(created, 1);
    assert!(
        matches!(first[..], [AttemptOutcome::WillRetry { attempts: 1, .. }]),
        "{first:?}"
    );
    sleep_until_due(&app).await;
    let sweep = worker.sweep_once().await.expect("sweep");
    assert_eq!((sweep.claimed, sweep.succeeded), (1, 1));
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d.status.as_str(), d.attempts, d.http_status),
        ("succeeded", 2, Some(200))
    );
    let rows = attempts(&app, &d.id).await;
    assert_eq!(
        rows.iter().map(|a| a.http_status).collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );
    assert_eq!(
        rows[0].response_body.as_deref(),
        Some("answer from the merchant")
    );
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn always_500_makes_exactly_the_configured_attempts_with_backoff_then_fails_and_a_manual_retry_delivers()
 {
    let app = TestApp::spawn_with(manual(|o| {
        o.webhook.max_attempts = 4;
        o.webhook.backoff_base = Duration::from_millis(50);
        o.webhook.backoff_max = Duration::from_millis(150);
    }))
    .await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 500)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    handle_next(&app, &worker).await;
    // Expected delays after attempts 1, 2, 3: 50, 100, 150 (capped) ms, plus up to 10 % jitter.
    for (n, expected_ms) in [(1, 50), (2, 100), (3, 150)] {
        let d = &deliveries(&app).await[0];
        assert_eq!((d.status.as_str(), d.attempts), ("pending", n));
        let gap =
            (d.next_retry_at.expect("next") - d.last_attempt_at.expect("last")).num_milliseconds();
        assert!(
            (expected_ms..=expected_ms + expected_ms / 10 + 2).contains(&gap),
            "after attempt {n}: {gap} ms, expected ~{expected_ms}"
        );
        sleep_until_due(&app).await;
        worker.sweep_once().await.expect("sweep");
    }
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d.status.as_str(), d.attempts, d.next_retry_at),
        ("failed", 4, None)
    );
    assert_eq!(attempts(&app, &d.id).await.len(), 4);
    sleep_until_due(&app).await;
    assert_eq!(
        worker.sweep_once().await.expect("sweep").claimed,
        0,
        "a failed delivery is not retried by itself"
    );
    assert_eq!(receiver.received().len(), 4);

    // The merchant fixes the server and retries by hand: a fresh round, history kept.
    receiver.behave(Behavior::Statuses(vec![], 200));
    let (s, body) = app
        .post_json(
            &app.api_key,
            &format!("/v1/webhook_deliveries/{}/retry", d.id),
            serde_json::json!({}),
        )
        .await;
    // Claimed and sent now by the gateway, not at the worker's next sweep.
    assert_eq!(
        (s, body["status"].as_str(), body["attempts"].as_i64()),
        (200, Some("processing"), Some(0)),
        "{body}"
    );
    app.eventually(WAIT, "the retry sent without a sweep", || async {
        (receiver.received().len() == 5).then_some(())
    })
    .await;
    let (_, detail) = app
        .eventually(WAIT, "the retry recorded", || async {
            let (s, d) = app
                .get_json(&app.api_key, &format!("/v1/webhook_deliveries/{}", d.id))
                .await;
            (d["status"] == "succeeded").then_some((s, d))
        })
        .await;
    assert_eq!(detail["attempts"], 1);
    assert_eq!(worker.sweep_once().await.expect("sweep").claimed, 0);
    let (_, detail) = app
        .get_json(&app.api_key, &format!("/v1/webhook_deliveries/{}", d.id))
        .await;
    assert_eq!(detail["status"], "succeeded");
    let history = detail["attempt_history"].as_array().expect("history");
    assert_eq!(history.len(), 5);
    assert_eq!(history[4]["http_status"], 200);
    let numbers: Vec<_> = history
        .iter()
        .map(|a| a["attempt_number"].clone())
        .collect();
    assert_eq!(
        numbers,
        (1..=5).map(|n| serde_json::json!(n)).collect::<Vec<_>>(),
        "numbering goes on after the retry: {history:?}"
    );
    let (s, again) = app
        .post_json(
            &app.api_key,
            &format!("/v1/webhook_deliveries/{}/retry", d.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (s, again["error"]["code"].as_str()),
        (409, Some("delivery_not_retryable"))
    );
}

#[tokio::test]
async fn a_hanging_receiver_times_out() {
    let app = TestApp::spawn_with(manual(|o| o.webhook.timeout = Duration::from_millis(500))).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Hang(Duration::from_secs(5))).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    let started = std::time::Instant::now();
    handle_next(&app, &worker).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the attempt must not wait for the receiver"
    );
    let d = &deliveries(&app).await[0];
    assert_eq!((d.status.as_str(), d.http_status), ("pending", None));
    let a = &attempts(&app, &d.id).await[0];
    assert!(
        a.error_message
            .as_deref()
            .is_some_and(|m| m.contains("timed out") || m.contains("timeout")),
        "{:?}",
        a.error_message
    );
    assert!((450..4000).contains(&a.duration_ms), "{}", a.duration_ms);
}

#[tokio::test]
async fn a_redelivered_message_creates_no_second_delivery() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let payment = app.create_payment(100).await;
    assert!(matches!(
        handle_next(&app, &worker).await,
        Handled::FannedOut {
            created: 1,
            already_present: 0,
            ..
        }
    ));
    let event: entity::events::Model = entity::events::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(event.payment_id.as_deref(), payment["id"].as_str());
    // Redelivered as the relay sends it (carrying the event) and as older relays did (naming it).
    let duplicates = [
        BusMessage::V2(event.clone().into()),
        BusMessage::V1 {
            event_id: event.id.clone(),
            merchant_id: event.merchant_id.clone(),
            event_type: event.event_type.clone(),
            request_id: None,
            traceparent: None,
        },
    ];
    for duplicate in duplicates {
        EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix))
            .publish(&[duplicate])
            .await
            .expect("publish");
        let again = handle_next(&app, &worker).await;
        assert_eq!(
            again,
            Handled::FannedOut {
                created: 0,
                already_present: 1,
                attempts: vec![]
            }
        );
    }
    let rows = deliveries(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(receiver.received().len(), 1);
    // One per pair because its id is the pair's, in its event's day partition.
    assert_eq!(
        rows[0].id,
        entity::ids::DeliveryId::for_event_endpoint(&event.id, &rows[0].endpoint_id)
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM {} WHERE id = '{}'",
            runtime::partitions::DELIVERIES.partition(
                entity::ids::created_at(&event.id)
                    .expect("a time")
                    .date_naive()
            ),
            rows[0].id
        ))
        .await,
        1
    );

    // A message naming an event that does not exist is dead-lettered, not dropped or retried forever.
    let bogus = BusMessage::V1 {
        event_id: entity::ids::EventId::from_trusted("evt_missing"),
        merchant_id: event.merchant_id.clone(),
        event_type: event.event_type.clone(),
        request_id: None,
        traceparent: None,
    };
    EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix))
        .publish(&[bogus])
        .await
        .expect("publish");
    assert_eq!(handle_next(&app, &worker).await, Handled::DeadLettered);
    // Dead-lettering is routed by the broker after the nack.
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    app.eventually(WAIT, "the message dead-lettered", || async {
        (bus.depths().await.expect("depths").dead_letters == 1).then_some(())
    })
    .await;
}

/// A relay killed between the broker's confirm and its mark publishes the event again, and
/// both messages can reach the worker in one batch: the row is made and sent once, and the
/// second message finds it already there. (Found by the fault suite: the insert returned the
/// row's id once and both messages claimed it, so the merchant got the webhook twice.)
#[tokio::test]
async fn an_event_published_twice_into_one_batch_is_sent_once() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(100).await.expect("subscribe");
    app.create_payment(100).await;
    let first = next_message(&mut sub).await;
    let event = entity::events::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("an event");
    bus.publish(&[BusMessage::V2(event.into())])
        .await
        .expect("publish again");
    let again = next_message(&mut sub).await;

    let handled = worker.handle_batch(vec![first, again]).await;
    assert_eq!(
        handled,
        vec![
            Handled::FannedOut {
                created: 1,
                already_present: 0,
                attempts: vec![AttemptOutcome::Succeeded]
            },
            Handled::FannedOut {
                created: 0,
                already_present: 1,
                attempts: vec![]
            }
        ]
    );
    assert_eq!(receiver.received().len(), 1, "the webhook was sent once");
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 1);
    assert_eq!(deliveries(&app).await[0].attempts, 1);
}

/// The relay publishes each event with its row (v2), and the worker fans out and sends what
/// the message carries without reading the event back: this one is in no table, and its
/// webhook still goes out, with the carried data.
#[tokio::test]
async fn a_v2_message_is_delivered_from_the_event_it_carries() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    assert!(matches!(
        handle_next(&app, &worker).await,
        Handled::FannedOut { created: 1, .. }
    ));
    let event: entity::events::Model = entity::events::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("event");
    let mut carried = entity::bus::EventOnBus::from(event.clone());
    carried.event_id = entity::ids::EventId::generate();
    carried.data["amount"] = serde_json::json!(4242);
    EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix))
        .publish(&[BusMessage::V2(carried.clone())])
        .await
        .expect("publish");
    assert!(matches!(
        handle_next(&app, &worker).await,
        Handled::FannedOut {
            created: 1,
            already_present: 0,
            ..
        }
    ));
    let body = app
        .eventually(WAIT, "the carried event's webhook", || async {
            receiver
                .received()
                .into_iter()
                .map(|r| r.json())
                .find(|body| body["id"] == carried.event_id.as_str())
        })
        .await;
    assert_eq!(body["type"], event.event_type.as_str());
    assert_eq!(body["data"]["amount"], 4242);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE id = '{}'",
            carried.event_id
        ))
        .await,
        0
    );
}

/// A merchant with one endpoint and three deliveries fanned out, due and unclaimed (immediate
/// delivery off), with a worker that only runs when the test drives it.
async fn three_due_deliveries() -> (TestApp, Worker, Receiver) {
    let app = TestApp::spawn_with(manual(|o| o.webhook.immediate = false)).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    for _ in 0..3 {
        app.create_payment(100).await;
        assert!(matches!(
            handle_next(&app, &worker).await,
            Handled::FannedOut { created: 1, .. }
        ));
    }
    (app, worker, receiver)
}

/// Claims up to `limit` due rows (a 30 s lease, as a sweep would) and loads their contexts, in
/// the claim's order.
async fn claim_and_load(app: &TestApp, limit: u64) -> Vec<worker::deliveries::AttemptContext> {
    let ids = claim_due(&app.db, limit, 10, Duration::from_secs(30), &[])
        .await
        .expect("claim")
        .ids;
    let contexts = worker::deliveries::load_contexts(&app.db, &ids)
        .await
        .expect("load");
    assert_eq!(
        contexts.iter().map(|c| &c.delivery.id).collect::<Vec<_>>(),
        ids.iter().collect::<Vec<_>>(),
        "every claimed row loaded, in order"
    );
    contexts
}

#[tokio::test]
async fn an_attempt_waiting_for_its_endpoints_slot_holds_little_memory_and_still_delivers() {
    let (app, worker, receiver) = three_due_deliveries().await;
    let ctx = claim_and_load(&app, 1).await.remove(0);
    let attempt = worker.attempt_one(ctx, std::time::Instant::now() + WAIT);
    // A lagging worker holds one of these per delivery waiting for a slot (thousands in the
    // closed-loop benchmark). With the send and the recording inline it is ~10 KB here.
    let size = std::mem::size_of_val(&attempt);
    assert!(size < 3 * 1024, "an attempt's future is {size} bytes");
    assert_eq!(attempt.await, AttemptOutcome::Succeeded);
    assert_eq!(receiver.received().len(), 1);
}

/// A recorder (group commit) on `db`, with the app's bus, cache and delivery rules.
fn start_recorder(
    app: &TestApp,
    db: sea_orm::DatabaseConnection,
) -> worker::deliveries::recorder::Recorder {
    worker::deliveries::recorder::Recorder::start(
        db,
        app.state.bus.clone(),
        app.state.cache.clone(),
        app.settings.worker.webhook.rules(),
    )
}

/// Claims the three due rows of [`three_due_deliveries`] (a 30 s lease); the claim and its token.
async fn claim_the_three(app: &TestApp) -> (worker::deliveries::Claim, String) {
    let claim = claim_due(&app.db, 50, 10, Duration::from_secs(30), &[])
        .await
        .expect("claim");
    let token = claim.token.clone().expect("a claim");
    assert_eq!(claim.ids.len(), 3);
    (claim, token)
}

/// Another transaction holding a delivery row locked, as the recorder does while it writes
/// the row's result; rolling it back lets go.
async fn hold_row(app: &TestApp, id: &entity::ids::DeliveryId) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let holder = app.db.begin().await.expect("begin");
    holder
        .execute_unprepared(&format!(
            "SELECT id FROM webhook_deliveries WHERE id = '{id}' FOR UPDATE"
        ))
        .await
        .expect("lock");
    holder
}

#[tokio::test]
async fn renewing_leases_skips_a_row_another_transaction_holds_instead_of_waiting_for_it() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let (claim, token) = claim_the_three(&app).await;
    // Another transaction (a recorder writing that row's result) holds one of the rows.
    let recorder = hold_row(&app, &claim.ids[0]).await;
    // Waiting for it is how the renewal and the recorder deadlocked (a 1 s stall each time).
    let renewed = tokio::time::timeout(
        Duration::from_secs(2),
        worker::deliveries::renew(&app.db, std::slice::from_ref(&token), WAIT),
    )
    .await
    .expect("the renewal does not wait for the locked row")
    .expect("renew");
    assert_eq!(renewed, 2, "the two free rows are renewed");
    recorder.rollback().await.expect("rollback");
    assert_eq!(
        worker::deliveries::renew(&app.db, &[token], WAIT)
            .await
            .expect("renew"),
        3,
        "once free, the third is renewed at the next turn"
    );
}

#[tokio::test]
async fn releasing_at_shutdown_hands_back_only_rows_still_held_and_free() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let (claim, token) = claim_the_three(&app).await;
    // Our lease on the first row ran out and another worker took it over.
    app.db
        .execute_unprepared(&format!(
            "UPDATE webhook_deliveries SET lease_token = 'another-workers-claim' WHERE id = '{}'",
            claim.ids[0]
        ))
        .await
        .expect("steal the lease");
    // The recorder is writing the second row's result.
    let recorder = hold_row(&app, &claim.ids[1]).await;
    let released = tokio::time::timeout(
        Duration::from_secs(2),
        worker::deliveries::release(&app.db, std::slice::from_ref(&token)),
    )
    .await
    .expect("the release does not wait for the locked row")
    .expect("release");
    assert_eq!(released, 1, "only the third row is ours and free");
    recorder.rollback().await.expect("rollback");
    let rows: HashMap<_, _> = deliveries(&app)
        .await
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let stolen = &rows[&claim.ids[0]];
    assert_eq!(
        (stolen.status, stolen.lease_token.as_deref()),
        (
            entity::status::DeliveryStatus::Processing,
            Some("another-workers-claim")
        ),
        "the other worker's claim stands"
    );
    assert_eq!(
        rows[&claim.ids[1]].status,
        entity::status::DeliveryStatus::Processing
    );
    let third = &rows[&claim.ids[2]];
    assert_eq!(
        (third.status, third.lease_token.as_deref()),
        (entity::status::DeliveryStatus::Pending, None),
        "released: due now, nobody's"
    );
}

#[tokio::test]
async fn results_committed_together_each_write_their_own_row() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let contexts = claim_and_load(&app, 50).await;
    let ids: Vec<_> = contexts.iter().map(|c| c.delivery.id.clone()).collect();
    let recorder = start_recorder(&app, app.db.clone());
    let failed = worker::sender::AttemptResult {
        http_status: Some(503),
        error: Some((worker::sender::ErrorClass::Http5xx, "HTTP 503".into())),
        ..answered_200()
    };
    // Two results the same, one different, in one batch: the two share a statement.
    let results = [answered_200(), failed, answered_200()];
    let outcomes =
        futures_util::future::join_all(contexts.into_iter().zip(results).map(|(ctx, result)| {
            recorder.record(ctx.delivery, ctx.endpoint.expect("endpoint"), result)
        }))
        .await;
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("recorded")).collect();
    assert_eq!(outcomes[0], AttemptOutcome::Succeeded);
    assert!(
        matches!(outcomes[1], AttemptOutcome::WillRetry { attempts: 1, .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], AttemptOutcome::Succeeded);
    let rows: HashMap<_, _> = deliveries(&app)
        .await
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    for id in [&ids[0], &ids[2]] {
        let row = &rows[id];
        assert_eq!(
            (
                row.status,
                row.attempts,
                row.http_status,
                row.error_message.as_deref()
            ),
            (
                entity::status::DeliveryStatus::Succeeded,
                1,
                Some(200),
                None
            )
        );
        assert!(row.delivered_at.is_some() && row.next_retry_at.is_none());
        assert!(row.lease_token.is_none() && row.locked_until.is_none());
    }
    let retrying = &rows[&ids[1]];
    assert_eq!(
        (
            retrying.status,
            retrying.attempts,
            retrying.http_status,
            retrying.error_message.as_deref()
        ),
        (
            entity::status::DeliveryStatus::Pending,
            1,
            Some(503),
            Some("HTTP 503")
        )
    );
    // Planned after the attempt by the backoff (10 ms here: later than the attempt, not
    // necessarily than the moment this line runs).
    let next = retrying.next_retry_at.expect("a retry is planned");
    let attempted = retrying.last_attempt_at.expect("an attempt time");
    assert!(next > attempted && retrying.delivered_at.is_none());
    assert!(retrying.lease_token.is_none() && retrying.locked_until.is_none());
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts WHERE http_status = 200")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts WHERE http_status = 503 AND error_class = 'http_5xx'")
            .await,
        1
    );
}

/// A result that comes while the recorder lingers after the first commits with it: one
/// transaction (one `now`) writes both attempts, where each alone would be its own commit.
#[tokio::test]
async fn results_within_the_recorders_linger_commit_together() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let mut contexts = claim_and_load(&app, 50).await.into_iter();
    let (first, second) = (
        contexts.next().expect("a claimed row"),
        contexts.next().expect("another"),
    );
    let recorder = worker::deliveries::recorder::Recorder::lingering(
        app.db.clone(),
        app.state.bus.clone(),
        app.state.cache.clone(),
        app.settings.worker.webhook.rules(),
        Duration::from_millis(400),
    );
    let early = recorder.record(
        first.delivery,
        first.endpoint.expect("endpoint"),
        answered_200(),
    );
    let late = async {
        // Well after the first reached a lane, well within the linger.
        tokio::time::sleep(Duration::from_millis(50)).await;
        recorder
            .record(
                second.delivery,
                second.endpoint.expect("endpoint"),
                answered_200(),
            )
            .await
    };
    let (early, late) = tokio::join!(early, late);
    assert_eq!(early.expect("recorded"), AttemptOutcome::Succeeded);
    assert_eq!(late.expect("recorded"), AttemptOutcome::Succeeded);
    let written: Vec<_> = webhook_attempts::Entity::find()
        .all(&app.db)
        .await
        .expect("attempts")
        .into_iter()
        .map(|a| a.created_at)
        .collect();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0], written[1], "one transaction wrote both");
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let (app, worker, receiver) = three_due_deliveries().await;
    // Worker A claims the batch and dies before sending anything.
    let claimed = claim_due(&app.db, 50, 10, Duration::from_millis(800), &[])
        .await
        .expect("claim")
        .ids;
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        worker.sweep_once().await.expect("sweep").claimed,
        0,
        "leased rows belong to A"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let sweep = worker.sweep_once().await.expect("sweep");
    assert_eq!(
        (sweep.claimed, sweep.succeeded),
        (3, 3),
        "after the lease, another worker takes over"
    );
    assert_eq!(receiver.received().len(), 3);
    // A may have sent before dying: each row it held got an attempt of unknown outcome
    // (counted), then B's, so attempts never undercount sends (issue 25).
    assert!(
        deliveries(&app)
            .await
            .iter()
            .all(|d| d.status == entity::status::DeliveryStatus::Succeeded && d.attempts == 2)
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts WHERE error_class = 'unknown' AND http_status IS NULL")
            .await,
        3
    );
    assert_eq!(worker.metrics().unknown_outcomes.get(), 3);
}

#[tokio::test]
async fn two_workers_side_by_side_never_send_the_same_attempt_twice() {
    let app = TestApp::spawn_with(manual(|o| {
        o.webhook.immediate = false;
        o.webhook.batch_size = 7;
    }))
    .await;
    let (a, b) = (app.standalone_worker(), app.standalone_worker());
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let n = 60;
    for _ in 0..n {
        app.create_payment(100).await;
    }
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(100).await.expect("subscribe");
    for _ in 0..n {
        let received = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("message")
            .expect("open")
            .expect("ok");
        a.handle(received).await;
    }
    let (ra, rb) = tokio::join!(a.sweep_once(), b.sweep_once());
    let (ra, rb) = (ra.expect("sweep a"), rb.expect("sweep b"));
    assert_eq!(ra.claimed + rb.claimed, n);
    assert!(
        ra.claimed > 0 && rb.claimed > 0,
        "both took part: {ra:?} {rb:?}"
    );
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *per_delivery
            .entry(
                r.header("x-payrail-delivery")
                    .expect("delivery header")
                    .to_string(),
            )
            .or_default() += 1;
    }
    assert_eq!(per_delivery.len(), n);
    assert!(
        per_delivery.values().all(|&c| c == 1),
        "some delivery was sent twice"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts").await,
        n as i64
    );
}

#[tokio::test]
async fn events_created_while_the_broker_is_unreachable_are_published_once_it_is_back() {
    let proxy = TcpProxy::start("127.0.0.1:5672", false).await;
    let app = TestApp::spawn_with(Options {
        gateway_amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port)),
        // The API's own publish fails; only its hand-over to the relay can get them out.
        relay_writer_grace: Duration::from_secs(3600),
        // The outbox alone: the express lane would deliver them without the broker.
        express_lane: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    for _ in 0..3 {
        app.create_payment(100).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE published_at IS NULL")
            .await,
        3,
        "kept in the outbox"
    );
    assert!(receiver.received().is_empty());
    proxy.set_enabled(true);
    app.eventually(WAIT, "three webhooks after the broker is back", || async {
        (receiver.of_type("payment.pending").len() == 3).then_some(())
    })
    .await;
    app.until_outbox_empty(WAIT).await;

    // Cut it again mid-run: the next event waits, then goes out after reconnecting.
    proxy.set_enabled(false);
    app.create_payment(100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_enabled(true);
    app.eventually(WAIT, "the fourth webhook", || async {
        (receiver.of_type("payment.pending").len() == 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn unparseable_messages_are_dead_lettered_and_metrics_show_the_queues() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    app.eventually(WAIT, "a delivery", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let EventBus::Amqp(bus) = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix)) else {
        unreachable!()
    };
    bus.publish_raw(b"{\"version\":\"v0\",\"garbage\":true}")
        .await
        .expect("publish");
    let worker_metrics = format!(
        "{}/metrics",
        app.worker_base.as_deref().expect("worker runs")
    );
    let text = app
        .eventually(WAIT, "a dead letter in queue_size", || async {
            let text = app
                .client
                .get(&worker_metrics)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("queue_size{queue=\"events_dead_letter\"} 1")
                .then_some(text)
        })
        .await;
    for line in [
        "queue_size{queue=\"events\"} 0",
        "queue_size{queue=\"deliveries_due\"} 0",
        "webhook_deliveries_total{status=\"succeeded\"} 1",
        "webhook_oldest_due_delivery_age_seconds",
        "webhook_delivery_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "worker /metrics lacks {line}:\n{text}");
    }
    assert!(
        text.contains("# TYPE webhook_deliveries_total counter") && !text.contains("# EOF"),
        "classic text by default"
    );
    let open_metrics = app
        .client
        .get(&worker_metrics)
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape");
    assert!(
        open_metrics.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/openmetrics-text")
    );
    assert!(
        open_metrics
            .text()
            .await
            .expect("text")
            .ends_with("# EOF\n"),
        "OpenMetrics when asked for"
    );
    let ready = app
        .client
        .get(format!(
            "{}/health/ready",
            app.worker_base.as_deref().unwrap_or("")
        ))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let gateway_metrics = app.metrics_text().await;
    assert!(
        gateway_metrics.contains("payments_total{gateway=\"simulated\",status=\"pending\"} 1"),
        "{gateway_metrics}"
    );
    assert!(
        gateway_metrics.contains(
            "http_requests_total{route=\"create_payment\",method=\"POST\",status_class=\"2xx\"} 1"
        ),
        "{gateway_metrics}"
    );
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 302)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    handle_next(&app, &worker).await;
    let d = &deliveries(&app).await[0];
    assert_eq!((d.status.as_str(), d.http_status), ("pending", Some(302)));
    let a = &attempts(&app, &d.id).await[0];
    assert!(
        a.error_message
            .as_deref()
            .is_some_and(|m| m.contains("redirects are not followed")),
        "{:?}",
        a.error_message
    );
    assert_eq!(
        receiver.received().len(),
        1,
        "one request, no follow-up to a Location"
    );
}

#[tokio::test]
async fn a_result_recorded_after_the_lease_ran_out_changes_nothing() {
    let app = TestApp::spawn_with(manual(|o| o.webhook.immediate = false)).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    handle_next(&app, &worker).await;
    // Worker A claims the delivery and is then stalled past its lease.
    let claimed = claim_due(&app.db, 10, 10, Duration::from_secs(60), &[])
        .await
        .expect("claim")
        .ids;
    assert_eq!(claimed.len(), 1);
    let stale = worker::deliveries::load_context(&app.db, &claimed[0])
        .await
        .expect("load")
        .expect("context");
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.db,
        "UPDATE webhook_deliveries SET locked_until = now() - interval '1 second'",
    )
    .await
    .expect("expire");
    // Worker B takes the expired claim over and delivers.
    let swept = worker.sweep_once().await.expect("sweep");
    assert_eq!(swept.succeeded, 1);
    // Worker A's late result must not turn it back into pending or count another attempt.
    let sender = worker::sender::WebhookSender::new(
        Duration::from_secs(2),
        worker::sender::WebhookTargets::Loopback,
        None,
    )
    .expect("sender");
    let (outcome, _) = worker::deliveries::attempt(
        &app.db,
        &app.state.bus,
        &sender,
        &app.state.webhook.rules(),
        stale,
    )
    .await
    .expect("attempt");
    assert_eq!(outcome, AttemptOutcome::Skipped);
    // A's late send is the attempt of unknown outcome recorded when B took the row over:
    // two sends, two attempts.
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d.status, d.attempts),
        (entity::status::DeliveryStatus::Succeeded, 2)
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts WHERE error_class = 'unknown'")
            .await,
        1
    );
}

/// Nine endpoints: the fan-out's insert is padded to twelve rows with copies of the last (one
/// statement text per few lengths, `runtime::db::padded`); the recorder pads its id lists
/// the same way whenever eight or more results commit together. Each row is still made, sent
/// and recorded once, and a redelivered message finds all nine there.
#[tokio::test]
async fn a_fan_out_padded_to_a_statement_length_makes_each_row_once() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    for _ in 0..9 {
        app.create_endpoint(&receiver.url).await;
    }
    app.create_payment(100).await;
    let handled = handle_next(&app, &worker).await;
    assert_eq!(
        handled,
        Handled::FannedOut {
            created: 9,
            already_present: 0,
            attempts: vec![AttemptOutcome::Succeeded; 9]
        }
    );
    assert_eq!(receiver.received().len(), 9);
    let rows = deliveries(&app).await;
    assert_eq!(rows.len(), 9);
    let endpoints: std::collections::HashSet<_> = rows.iter().map(|d| &d.endpoint_id).collect();
    assert_eq!(endpoints.len(), 9, "one row per endpoint");
    assert!(
        rows.iter()
            .all(|d| d.status == entity::status::DeliveryStatus::Succeeded && d.attempts == 1)
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 9);
    assert_eq!(
        app.count("SELECT count(DISTINCT delivery_id) FROM webhook_attempts")
            .await,
        9
    );
    let event: entity::events::Model = entity::events::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("event");
    EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix))
        .publish(&[BusMessage::V2(event.into())])
        .await
        .expect("publish");
    assert_eq!(
        handle_next(&app, &worker).await,
        Handled::FannedOut {
            created: 0,
            already_present: 9,
            attempts: vec![]
        }
    );
    assert_eq!(deliveries(&app).await.len(), 9);
    assert_eq!(receiver.received().len(), 9);
}

#[tokio::test]
async fn a_batch_of_messages_fans_out_together_and_each_gets_its_own_outcome() {
    let app = TestApp::spawn_with(manual(|_| {})).await;
    let worker = app.standalone_worker();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    // A second merchant with two endpoints, and a third with none.
    let other = app.create_merchant("Other").await;
    for _ in 0..2 {
        let (status, body) = app
            .post_json(
                &other,
                "/v1/webhook_endpoints",
                serde_json::json!({"url": receiver.url, "enabled_events": ["*"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let silent = app.create_merchant("Silent").await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(100).await.expect("subscribe");
    // One payment each, in a known order, each published before the next is made.
    let mut batch = Vec::new();
    for key in [&app.api_key, &other, &silent] {
        let (status, body) = app
            .post_json(
                key,
                "/v1/payments",
                serde_json::json!({"amount": 100, "currency": "usd", "provider": "simulated"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        batch.push(next_message(&mut sub).await);
    }
    // The first merchant's (it has an endpoint, so the missing event is looked for); rows have
    // no order of their own once marks have rewritten them.
    let event = entity::events::Entity::find()
        .order_by_asc(entity::events::Column::CreatedAt)
        .one(&app.db)
        .await
        .expect("query")
        .expect("an event");
    EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix))
        .publish(&[BusMessage::V1 {
            event_id: entity::ids::EventId::from_trusted("evt_missing"),
            merchant_id: event.merchant_id.clone(),
            event_type: event.event_type.clone(),
            request_id: None,
            traceparent: None,
        }])
        .await
        .expect("publish");
    batch.insert(1, next_message(&mut sub).await);

    let handled = worker.handle_batch(batch).await;
    let ok = |n: usize| Handled::FannedOut {
        created: n,
        already_present: 0,
        attempts: vec![AttemptOutcome::Succeeded; n],
    };
    assert_eq!(
        handled,
        vec![
            ok(1),
            Handled::DeadLettered,
            ok(2),
            Handled::FannedOut {
                created: 0,
                already_present: 0,
                attempts: vec![]
            }
        ],
        "the missing event does not hold back the others"
    );
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            .await,
        3
    );
    // Dead-lettering is routed by the broker after the nack.
    app.eventually(WAIT, "one message dead-lettered, none left", || async {
        let depths = bus.depths().await.expect("depths");
        ((depths.events, depths.dead_letters) == (0, 1)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn results_committed_together_stand_alone_when_one_of_them_lost_its_lease() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let contexts = claim_and_load(&app, 50).await;
    let ids: Vec<_> = contexts.iter().map(|c| c.delivery.id.clone()).collect();
    assert_eq!(ids.len(), 3);
    // Another worker took the second row over after our lease ran out.
    app.db
        .execute_unprepared(&format!(
            "UPDATE webhook_deliveries SET locked_until = now() + interval '1 hour', \
             lease_token = 'another-workers-claim' WHERE id = '{}'",
            ids[1]
        ))
        .await
        .expect("steal the lease");
    let recorder = start_recorder(&app, app.db.clone());
    let ok = answered_200();
    let outcomes = futures_util::future::join_all(
        contexts
            .into_iter()
            .map(|ctx| recorder.record(ctx.delivery, ctx.endpoint.expect("endpoint"), ok.clone())),
    )
    .await;
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("recorded")).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Succeeded,
            AttemptOutcome::Skipped,
            AttemptOutcome::Succeeded
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts").await,
        2,
        "the lost lease wrote no attempt"
    );
    // The recorder meters what it wrote, not what it was handed.
    let (s, usage) = app.get_json(&app.api_key, "/v1/usage").await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["webhook_attempts"], 2, "{usage}");
    let stolen = deliveries(&app)
        .await
        .into_iter()
        .find(|d| d.id == ids[1])
        .expect("row");
    assert_eq!(
        (stolen.status, stolen.attempts),
        (entity::status::DeliveryStatus::Processing, 0),
        "the other worker's row is untouched"
    );
}

/// The suite's guard, through the running worker: an endpoint off this machine (an address,
/// or a name that would need a DNS query) gets attempt rows that say `blocked`, each made
/// without a connection (an address that does not answer would take the whole 2 s timeout)
/// and without a lookup (a name would be `dns`), while a receiver on loopback is served.
#[tokio::test]
async fn webhooks_to_anywhere_but_this_machine_are_refused_without_dialling() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    for url in [
        "http://10.255.255.1:81/hook",
        "https://payrail-guard.example/hook",
        receiver.url.as_str(),
    ] {
        app.create_endpoint(url).await;
    }
    app.create_payment(1500).await;
    let failed = app
        .eventually(WAIT, "both far endpoints' deliveries failed", || async {
            let failed: Vec<_> = deliveries(&app)
                .await
                .into_iter()
                .filter(|d| d.status == entity::status::DeliveryStatus::Failed)
                .collect();
            (failed.len() == 2).then_some(failed)
        })
        .await;
    for delivery in failed {
        let tried = attempts(&app, &delivery.id).await;
        assert_eq!(tried.len(), 5, "every attempt is recorded");
        for attempt in tried {
            assert_eq!(
                attempt.error_class.as_deref(),
                Some("blocked"),
                "{attempt:?}"
            );
            assert!(attempt.duration_ms < 1000, "dialled: {attempt:?}");
            let message = attempt.error_message.unwrap_or_default();
            assert!(
                message.contains("not a loopback address") || message.contains("not localhost"),
                "{message}"
            );
        }
    }
    assert_eq!(receiver.received().len(), 1, "loopback is served");
}

#[tokio::test]
async fn a_sub_second_sweep_interval_really_retries_through_the_running_worker() {
    // The worker is started by TestApp through WorkerApplication::run_until_stopped; nothing
    // here calls sweep_once. With tokio-cron-scheduler a 300 ms period never fired.
    let mut options = Options::default();
    options.webhook.sweep_interval = Duration::from_millis(300);
    let app = TestApp::spawn_with(options).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![500, 500, 500], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "four attempts, the last one delivered",
        || async {
            (app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 4);
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_back_the_deliveries_behind_it() {
    // One row per claim, so every row is its own batch; the worker runs on its schedule.
    let mut options = Options::default();
    options.webhook.immediate = false;
    options.webhook.batch_size = 1;
    options.webhook.sweep_interval = Duration::from_millis(100);
    options.webhook.timeout = Duration::from_secs(3);
    let app = TestApp::spawn_with(options).await;
    let slow = Receiver::start(Behavior::Hang(Duration::from_secs(3))).await;
    let fast = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&slow.url).await;
    app.create_payment(100).await;
    app.create_payment(100).await;
    app.create_endpoint(&fast.url).await;
    let started = tokio::time::Instant::now();
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "the fast receiver's webhook",
        || async { (!fast.received().is_empty()).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the fast receiver waited {:?} behind the slow one",
        started.elapsed()
    );
}

/// A database cut shorter than the lease costs no resend (issue 25): the recorder keeps the
/// result and commits it once the database answers again, instead of dropping it and leaving
/// the row to be sent a second time after its lease.
#[tokio::test]
async fn a_result_recorded_during_a_database_cut_is_committed_once_it_is_back() {
    let (app, _worker, _receiver) = three_due_deliveries().await;
    let ctx = claim_and_load(&app, 1).await.remove(0);
    let ids = [ctx.delivery.id.clone()];
    // The recorder's database, through a proxy that can be cut; a short acquire timeout makes
    // each try during the cut fail fast rather than wait the cut out.
    let proxy = TcpProxy::start("127.0.0.1:5432", true).await;
    let mut options = sea_orm::ConnectOptions::new(format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, app.prefix
    ));
    options
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await.expect("connect");
    let recorder = start_recorder(&app, db);
    let ok = answered_200();
    proxy.set_enabled(false);
    let recording = tokio::spawn(async move {
        recorder
            .record(ctx.delivery, ctx.endpoint.expect("endpoint"), ok)
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!recording.is_finished(), "still trying during the cut");
    proxy.set_enabled(true);
    let outcome = tokio::time::timeout(Duration::from_secs(20), recording)
        .await
        .expect("recorded in time")
        .expect("the task");
    assert_eq!(outcome.expect("recorded"), AttemptOutcome::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts").await,
        1,
        "one attempt row for the one send"
    );
    let row = deliveries(&app)
        .await
        .into_iter()
        .find(|d| d.id == ids[0])
        .expect("row");
    assert_eq!(row.status, entity::status::DeliveryStatus::Succeeded);
}

/// What a receiver answering 200 at once makes of an attempt.
fn answered_200() -> worker::sender::AttemptResult {
    worker::sender::AttemptResult {
        http_status: Some(200),
        error: None,
        response_body: Some("ok".into()),
        duration: Duration::from_millis(3),
        retry_after: None,
        request_headers: vec![("webhook-id".into(), "evt_1".into())],
    }
}
