//! The outbox's two publishers: the gateway that wrote a new payment publishes its event at
//! once, and the relay leaves such an event alone during its grace, then takes it over (its
//! writer crashed, or the broker failed the publish) — or at once when a stopping gateway
//! drains.

use std::time::Duration;

use entity::bus::QueueNames;
use entity::event::EventType;
use entity::ids::{EventId, Scope};
use gateway::core::relay::Relay;
use payrail_tests::{AMQP_URL, Behavior, Options, Receiver, TestApp};
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
        Received::Message(m, _) => m.event_id().clone(),
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
