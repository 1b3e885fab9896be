//! The outbox's two publishers: the gateway that wrote a new payment publishes its event at
//! once, and the relay leaves such an event alone during its grace, then takes it over (its
//! writer crashed, or the broker failed the publish) — or at once when a stopping gateway
//! drains.

use std::time::Duration;

use entity::bus::QueueNames;
use entity::event::EventType;
use entity::ids::{EventId, Scope};
use gateway::core::relay::Relay;
use payrail_tests::{AMQP_URL, Behavior, Options, Receiver, TcpProxy, TestApp};
use runtime::bus::{EventBus, Received};
use runtime::outbox::Route;
use sea_orm::{ActiveModelTrait as _, EntityTrait as _};

const WAIT: Duration = Duration::from_secs(15);
/// A grace or interval that never runs out within a test.
const NEVER: Duration = Duration::from_secs(3600);

/// An event committed outside any gateway, as if its writer had died right after its commit.
async fn committed_event(app: &TestApp, route: Route) -> EventId {
    let merchant = entity::merchants::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("the test's merchant");
    let (id, row) = runtime::outbox::event(
        &Scope::new(merchant.id, false),
        EventType::PaymentPending,
        None,
        serde_json::json!({"object": "payment"}),
        None,
        route,
    );
    row.insert(&app.db).await.expect("insert the event");
    id
}

async fn event_row(app: &TestApp, id: &EventId) -> entity::events::Model {
    use sea_orm::{ColumnTrait as _, QueryFilter as _};
    entity::events::Entity::find()
        .filter(entity::events::Column::Id.eq(id.as_str()))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the event")
}

async fn unpublished(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM events WHERE published_at IS NULL")
        .await
}

/// The id of the next event `sub` receives.
async fn next_event(sub: &mut runtime::bus::Subscription) -> EventId {
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message arrives")
        .expect("stream open")
        .expect("message")
    {
        Received::Message(m, ack) => {
            // Settled like a worker's: an ack dropped unsettled sends its message back.
            ack.ack().await.expect("ack");
            m.event_id().clone()
        }
        Received::Unparseable(_) => panic!("an unparseable message"),
    }
}

/// A gateway whose own relay never takes a writer's event over and never runs by itself.
fn quiet_relay(adjust: impl FnOnce(&mut Options)) -> Options {
    let mut o = Options {
        relay_interval: NEVER,
        relay_writer_grace: NEVER,
        ..Options::default()
    };
    adjust(&mut o);
    o
}

#[tokio::test]
async fn the_relay_leaves_a_writers_event_alone_during_its_grace_and_takes_it_over_after() {
    let app = TestApp::spawn_with(quiet_relay(|o| o.start_worker = false)).await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(10).await.expect("subscribe");
    let relay = Relay::new(app.db.clone(), bus.clone(), Duration::from_millis(500));
    let writers = committed_event(&app, Route::Writer).await;
    let relays = committed_event(&app, Route::Bus).await;

    assert_eq!(relay.relay_once().await.expect("turn"), 1);
    assert_eq!(next_event(&mut sub).await, relays, "only its own event");
    assert_eq!(unpublished(&app).await, 1, "the writer's waits");

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(relay.relay_once().await.expect("turn"), 1);
    assert_eq!(
        next_event(&mut sub).await,
        writers,
        "taken over after the grace"
    );
    assert_eq!(unpublished(&app).await, 0);
}

#[tokio::test]
async fn a_stopping_gateway_publishes_writers_events_of_any_age() {
    let app = TestApp::spawn_with(quiet_relay(|o| o.start_worker = false)).await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(10).await.expect("subscribe");
    let relay = Relay::new(app.db.clone(), bus.clone(), NEVER);
    let writers = committed_event(&app, Route::Writer).await;

    assert_eq!(
        relay.relay_once().await.expect("turn"),
        0,
        "within its grace"
    );
    assert_eq!(relay.drain_before_stop().await.expect("drain"), 1);
    assert_eq!(next_event(&mut sub).await, writers);
    assert_eq!(unpublished(&app).await, 0);
}

/// Through the running gateway: neither its relay's interval nor its grace can publish the
/// payment's event here, so the webhook arrives only if the API's own publish sent it.
#[tokio::test]
async fn a_new_payments_event_is_published_by_the_gateway_that_wrote_it() {
    let app = TestApp::spawn_with(quiet_relay(|_| {})).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let payment = app.create_payment(100).await;
    app.eventually(WAIT, "the payment's webhook", || async {
        (receiver.of_type("payment.pending").len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        receiver.of_type("payment.pending")[0].json()["data"]["id"],
        payment["id"]
    );
    // Marked once the broker confirmed it, so no relay publishes it again.
    app.until_outbox_empty(WAIT).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE writer_publishes")
            .await,
        1
    );
}

/// Through the running gateway: an event its writer never published (it died after the
/// commit) is delivered once the relay's grace has passed.
#[tokio::test]
async fn a_dead_writers_event_is_delivered_after_the_relays_grace() {
    let app = TestApp::spawn_with(Options {
        relay_writer_grace: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let orphan = committed_event(&app, Route::Writer).await;
    app.eventually(WAIT, "the orphan's webhook", || async {
        (receiver.of_type("payment.pending").len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        receiver.of_type("payment.pending")[0].json()["id"].as_str(),
        Some(orphan.as_str())
    );
    app.until_outbox_empty(WAIT).await;
}

/// Writers at once, more than the places for batches awaiting confirms: every event is
/// published exactly once by its writer (the relay here takes nothing over) and marked.
#[tokio::test]
async fn concurrent_writers_publish_every_event_once() {
    let app = TestApp::spawn_with(quiet_relay(|o| o.start_worker = false)).await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(100).await.expect("subscribe");
    let created =
        futures_util::future::join_all((0..40).map(|i| app.create_payment(100 + i))).await;
    let mut published = Vec::new();
    for _ in 0..created.len() {
        published.push(next_event(&mut sub).await);
    }
    published.sort();
    published.dedup();
    assert_eq!(published.len(), 40, "each once");
    app.until_outbox_empty(WAIT).await;
    let nothing_more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(nothing_more.is_err(), "no event published twice");
}

/// With two batches awaiting their confirms, a writer's next events wait for a place, and go
/// out, together, as soon as a confirm frees one (no later payment needed to start them).
#[tokio::test]
async fn events_gathered_behind_two_unconfirmed_batches_go_out_when_a_confirm_frees_a_place() {
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let app = TestApp::spawn_with(quiet_relay(|o| {
        o.start_worker = false;
        o.gateway_amqp_url = Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port));
    }))
    .await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(100).await.expect("subscribe");
    // The gateway's publishing channel is open before the broker's answers are held.
    app.create_payment(100).await;
    next_event(&mut sub).await;
    app.until_outbox_empty(WAIT).await;

    proxy.hold_replies(true);
    for amount in 101..106 {
        app.create_payment(amount).await;
    }
    next_event(&mut sub).await;
    next_event(&mut sub).await;
    let third = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(third.is_err(), "the third waits for a confirm");
    assert_eq!(unpublished(&app).await, 5);

    proxy.hold_replies(false);
    for _ in 0..3 {
        next_event(&mut sub).await;
    }
    app.until_outbox_empty(WAIT).await;
}

/// Writers' events confirmed within the mark's linger are marked by one statement (one
/// `published_at`), and a stopping gateway waits for that mark rather than publish them again.
#[tokio::test]
async fn confirmed_writers_events_are_marked_together_and_a_stop_waits_for_the_mark() {
    let app = TestApp::spawn_with(quiet_relay(|o| o.start_worker = false)).await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&app.prefix));
    let mut sub = bus.subscribe(10).await.expect("subscribe");
    let relay =
        Relay::new(app.db.clone(), bus.clone(), NEVER).with_mark_linger(Duration::from_millis(400));
    let first = committed_event(&app, Route::Writer).await;
    let second = committed_event(&app, Route::Writer).await;
    relay.publish_now(event_row(&app, &first).await.into());
    assert_eq!(next_event(&mut sub).await, first);
    // Confirmed by now, and its mark lingering.
    tokio::time::sleep(Duration::from_millis(50)).await;
    relay.publish_now(event_row(&app, &second).await.into());
    assert_eq!(next_event(&mut sub).await, second);

    assert_eq!(
        relay.drain_before_stop().await.expect("drain"),
        0,
        "nothing left to publish once the marks are written"
    );
    assert_eq!(unpublished(&app).await, 0);
    let (a, b) = (
        event_row(&app, &first).await,
        event_row(&app, &second).await,
    );
    assert!(a.published_at.is_some());
    assert_eq!(a.published_at, b.published_at, "one statement marked both");
    let again = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(again.is_err(), "no event published twice");
}
