//! The express lane: a worker fans out a fresh event from its Redis copy and marks it
//! published, so the broker never carries it; with no worker popping the lane the broker
//! carries it at once; a copy that nobody takes is published by the relay after the grace.

use std::time::Duration;

use payrail_tests::receiver::{Behavior, Receiver};
use payrail_tests::{Options, RunningWorker, TcpProxy, TestApp, counter};

const WAIT: Duration = Duration::from_secs(20);

/// A worker started through its production entry point, its broker connection through
/// `proxy`, and the express lane as `express_lane` says.
async fn worker_behind(app: &TestApp, proxy: &TcpProxy, express_lane: bool) -> RunningWorker {
    let mut settings = app.settings.worker_process();
    settings.runtime.amqp_url = Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port));
    settings.runtime.express_lane = express_lane;
    RunningWorker::start(settings).await
}

/// A gateway made with `options` (its own worker off), an endpoint at a receiver answering 200,
/// and a worker behind a broker proxy with its express lane as `worker_lane` says.
struct Scene {
    app: TestApp,
    receiver: Receiver,
    proxy: TcpProxy,
    worker: RunningWorker,
}

async fn scene(options: Options, worker_lane: bool) -> Scene {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..options
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let worker = worker_behind(&app, &proxy, worker_lane).await;
    Scene {
        app,
        receiver,
        proxy,
        worker,
    }
}

const PUSHED_FOR_A_WORKER: &str = r#"outbox_express_pushed_events_total{outcome="for_a_worker"}"#;
const PUSHED_UNHEARD: &str = r#"outbox_express_pushed_events_total{outcome="unheard"}"#;

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
        (receiver.pending_webhooks_of(&first) == 1).then_some(())
    })
    .await;
    app.until_outbox_empty(WAIT).await;
    proxy.hold_replies(true);
    let second = app.create_payment(200).await;
    second["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn a_fresh_event_goes_out_from_its_express_copy_once_and_never_through_the_broker() {
    let Scene {
        app,
        receiver,
        proxy,
        worker,
    } = scene(Options::default(), true).await;

    let held = payment_with_the_broker_held(&app, &receiver, &proxy).await;
    app.eventually(WAIT, "the webhook, the broker's delivery held", || async {
        (receiver.pending_webhooks_of(&held) == 1).then_some(())
    })
    .await;
    // The worker marked the event published: the relay has nothing to take over.
    app.until_count(
        WAIT,
        "the event marked published",
        &format!(
            "SELECT count(*) FROM events WHERE payment_id = '{held}' AND published_at IS NOT NULL"
        ),
        1,
    )
    .await;
    let metrics = app.metrics_text_of(&worker.base).await;
    assert!(
        counter(&metrics, "webhook_express_events_total") >= 1.0,
        "{metrics}"
    );
    let settled = counter(&metrics, "webhook_express_settled_total");
    // The gateway counted that push as one a worker takes.
    let gateway = app.metrics_text().await;
    assert!(counter(&gateway, PUSHED_FOR_A_WORKER) >= 1.0, "{gateway}");

    // Past the relay's grace (2 s) with the broker flowing again, no broker message came for
    // it: neither the gateway nor the relay published it.
    proxy.hold_replies(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.pending_webhooks_of(&held), 1, "sent once");
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(
        counter(&metrics, "webhook_express_settled_total"),
        settled,
        "no broker message to settle: {metrics}"
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

/// A push slower than its 20 ms (the gateway's Redis replies held) is not taken for a failed
/// one: its copy is in the list, and the worker heard may already be sending it, so publishing
/// the event to the broker as well could have another worker fan that out and send it too.
/// The gateway awaits the push's answer instead, and the broker never carries the event.
#[tokio::test]
async fn a_slow_push_is_awaited_and_the_broker_does_not_carry_its_event_too() {
    let redis = TcpProxy::start("127.0.0.1:6379", true).await;
    let Scene {
        app,
        receiver,
        proxy: _proxy,
        worker,
    } = scene(
        Options {
            gateway_redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
            ..Options::default()
        },
        true,
    )
    .await;
    app.until_express_heard(WAIT).await;
    let settled = counter(
        &app.metrics_text_of(&worker.base).await,
        "webhook_express_settled_total",
    );

    redis.hold_replies(true);
    let release = async {
        app.eventually(WAIT, "a slow push", || async {
            let gateway = app.metrics_text().await;
            gateway
                .lines()
                .find_map(|l| l.strip_prefix("outbox_express_slow_pushes_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|n| n >= 1.0)
                .then_some(())
        })
        .await;
        // The copy reached Redis before its reply was held back: the worker sends it meanwhile.
        redis.hold_replies(false);
    };
    let (payment, ()) = tokio::join!(app.create_payment(100), release);
    let payment = payment["id"].as_str().expect("id").to_string();
    app.eventually(WAIT, "the webhook, from the copy", || async {
        (receiver.pending_webhooks_of(&payment) == 1).then_some(())
    })
    .await;
    let gateway = app.metrics_text().await;
    assert_eq!(counter(&gateway, PUSHED_FOR_A_WORKER), 1.0, "{gateway}");
    // Past the relay's grace (2 s), no broker message came for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.pending_webhooks_of(&payment), 1, "sent once");
    let metrics = app.metrics_text_of(&worker.base).await;
    assert_eq!(
        counter(&metrics, "webhook_express_settled_total"),
        settled,
        "no broker message to settle: {metrics}"
    );
}

/// A gateway with the lane on and a worker with it off: no worker pops the list, so the
/// gateway publishes to the broker at once (the grace is far longer than the wait here, so
/// the relay cannot be what carries it).
#[tokio::test]
async fn with_no_worker_popping_the_lane_the_broker_carries_the_event_at_once() {
    let Scene {
        app,
        receiver,
        // Held, not used: the worker's broker connection goes through it.
        proxy: _proxy,
        worker: _worker,
    } = scene(
        Options {
            relay_writer_grace: Duration::from_secs(600),
            ..Options::default()
        },
        false,
    )
    .await;

    let payment = app.create_payment(100).await;
    let payment = payment["id"].as_str().expect("id").to_string();
    app.eventually(WAIT, "the webhook, through the broker", || async {
        (receiver.pending_webhooks_of(&payment) == 1).then_some(())
    })
    .await;
    // Operators see why the broker carried it.
    let gateway = app.metrics_text().await;
    assert_eq!(counter(&gateway, PUSHED_UNHEARD), 1.0, "{gateway}");
    assert!(!gateway.contains(PUSHED_FOR_A_WORKER), "{gateway}");
}

/// A copy pushed while a worker was heard, which no worker then takes (here the key that
/// says a worker pops is set by the test, and the worker consumes the broker only): the event
/// stays unpublished, and the relay publishes it once its grace (2 s) is past, flagged so that
/// its fan-out records an attempt of unknown outcome first.
#[tokio::test]
async fn a_copy_no_worker_takes_is_published_by_the_relay_after_the_grace() {
    let Scene {
        app,
        receiver,
        // Held, not used: the worker's broker connection goes through it.
        proxy: _proxy,
        worker: _worker,
    } = scene(Options::default(), false).await;
    let mut redis = redis::Client::open(payrail_tests::REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let heard = runtime::bus::express::heard_key(&app.prefix);
    let _: () = redis::cmd("SET")
        .arg(&heard)
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .expect("set");

    let created = std::time::Instant::now();
    let payment = app.create_payment(100).await;
    let payment = payment["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.pending_webhooks_of(&payment),
        0,
        "nothing carries it before the grace"
    );
    app.eventually(WAIT, "the webhook, once the relay publishes it", || async {
        (receiver.pending_webhooks_of(&payment) == 1).then_some(())
    })
    .await;
    assert!(
        created.elapsed() >= Duration::from_secs(2),
        "after the grace"
    );
    // The relay cannot tell whether a worker sent it from the copy before dying, so its
    // fan-out records an attempt of unknown outcome before the one it makes.
    app.eventually(WAIT, "the delivery recorded", || async {
        (app.delivery_of_payment(&payment).await == Some(("succeeded".into(), 2))).then_some(())
    })
    .await;
    assert_eq!(
        app.attempts_of_payment(&payment, 1, "a.error_class = 'unknown'")
            .await,
        1
    );
    assert_eq!(
        app.attempts_of_payment(&payment, 2, "a.http_status = 200")
            .await,
        1
    );
    let _: () = redis::cmd("DEL")
        .arg(&heard)
        .query_async(&mut redis)
        .await
        .expect("del");
}

/// The same scenario with the lane off: the webhook waits for the broker, which shows that
/// holding its deliveries is what the test above goes around.
#[tokio::test]
async fn without_the_express_lane_a_webhook_waits_for_the_broker() {
    let Scene {
        app,
        receiver,
        proxy,
        worker: _worker,
    } = scene(
        Options {
            express_lane: false,
            ..Options::default()
        },
        false,
    )
    .await;

    let held = payment_with_the_broker_held(&app, &receiver, &proxy).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.pending_webhooks_of(&held),
        0,
        "waits for the broker"
    );
    proxy.hold_replies(false);
    app.eventually(WAIT, "the webhook once the broker delivers", || async {
        (receiver.pending_webhooks_of(&held) == 1).then_some(())
    })
    .await;
}

/// A worker says it pops the lane while it runs, and withdraws when it stops (so the gateways
/// go back to the broker at once rather than leave events to the relay's grace): the key is
/// gone as soon as its production entry point returns, well before it would expire.
#[tokio::test]
async fn a_running_worker_is_heard_on_the_lane_and_a_stopped_one_is_not() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let mut redis = redis::Client::open(payrail_tests::REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let heard = runtime::bus::express::heard_key(&app.prefix);
    let worker = RunningWorker::start(app.settings.worker_process()).await;
    app.until_express_heard(WAIT).await;
    worker.stop().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&heard)
        .query_async(&mut redis)
        .await
        .expect("exists");
    assert!(!exists, "a stopped worker withdraws at once");
}
