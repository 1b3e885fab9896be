//! The express lane: a worker fans out a fresh event from its Redis copy without waiting for
//! the broker, and the broker's message that follows sends nothing twice.

use std::time::Duration;

use payrail_tests::receiver::{Behavior, Receiver};
use payrail_tests::{Options, TcpProxy, TestApp};
use worker::app::WorkerApplication;

const WAIT: Duration = Duration::from_secs(20);

/// A worker started through its production entry point, its broker connection through
/// `proxy`, and the express lane as `express_lane` says; stops when the returned sender drops.
async fn worker_behind(
    app: &TestApp,
    proxy: &TcpProxy,
    express_lane: bool,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut settings = app.settings.worker_process();
    settings.runtime.amqp_url = Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port));
    settings.runtime.express_lane = express_lane;
    let worker = WorkerApplication::build(settings)
        .await
        .expect("worker builds");
    let base = format!("http://127.0.0.1:{}", worker.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A counter's value in a `/metrics` text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// A payment's webhooks, by the payment's id in their bodies.
fn webhooks_of(receiver: &Receiver, payment_id: &str) -> usize {
    receiver
        .of_type("payment.pending")
        .iter()
        .filter(|r| r.json()["data"]["id"] == payment_id)
        .count()
}

/// Holds the broker's deliveries to the worker (its consumer already running), creates a
/// payment, and returns the payment's id.
async fn payment_with_the_broker_held(
    app: &TestApp,
    receiver: &Receiver,
    proxy: &TcpProxy,
) -> String {
    // The consumer is up once a first webhook went out and the broker has nothing waiting.
    let first = app.create_payment(100).await;
    let first = first["id"].as_str().expect("id").to_string();
    app.eventually(WAIT, "the first webhook", || async {
        (webhooks_of(receiver, &first) == 1).then_some(())
    })
    .await;
    app.until_outbox_empty(WAIT).await;
    proxy.hold_replies(true);
    let second = app.create_payment(200).await;
    second["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn a_fresh_event_is_delivered_from_its_express_copy_while_the_broker_holds_it_and_once() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let (worker_base, _stop) = worker_behind(&app, &proxy, true).await;

    let held = payment_with_the_broker_held(&app, &receiver, &proxy).await;
    app.eventually(WAIT, "the webhook, the broker's delivery held", || async {
        (webhooks_of(&receiver, &held) == 1).then_some(())
    })
    .await;
    let metrics = app.metrics_text_of(&worker_base).await;
    assert!(
        counter(&metrics, "webhook_express_events_total") >= 1.0,
        "{metrics}"
    );
    let settled = counter(&metrics, "webhook_express_settled_total");

    // The broker's message comes: it is settled, and nothing goes out again.
    proxy.hold_replies(false);
    app.eventually(WAIT, "the broker's message settled", || async {
        let depths = runtime::bus::EventBus::amqp(
            payrail_tests::AMQP_URL,
            entity::bus::QueueNames::new(&app.prefix),
        )
        .depths()
        .await
        .ok()?;
        (depths.events == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(webhooks_of(&receiver, &held), 1, "sent once");
    // Settled by the worker that fanned its copy out, without a second fan-out.
    let metrics = app.metrics_text_of(&worker_base).await;
    assert_eq!(
        counter(&metrics, "webhook_express_settled_total"),
        settled + 1.0,
        "{metrics}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
             JOIN events e ON e.id = d.event_id WHERE e.payment_id = '{held}'"
        ))
        .await,
        1,
        "one attempt recorded"
    );
}

/// The same scenario with the lane off: the webhook waits for the broker, which shows that
/// holding its deliveries is what the test above goes around.
#[tokio::test]
async fn without_the_express_lane_a_webhook_waits_for_the_broker() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        express_lane: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let (_worker_base, _stop) = worker_behind(&app, &proxy, false).await;

    let held = payment_with_the_broker_held(&app, &receiver, &proxy).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(webhooks_of(&receiver, &held), 0, "waits for the broker");
    proxy.hold_replies(false);
    app.eventually(WAIT, "the webhook once the broker delivers", || async {
        (webhooks_of(&receiver, &held) == 1).then_some(())
    })
    .await;
}
