//! The real `worker` binary killed with SIGKILL under load: nothing it had taken (messages
//! not yet acknowledged, rows claimed and not yet recorded) is lost; a new process delivers it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use payrail_tests::{Behavior, Options, Process, Receiver, TestApp};

fn start_worker(app: &TestApp) -> Process {
    let mut command = app.worker_command(env!("CARGO_BIN_EXE_worker"));
    command
        .env("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "200ms")
        .env("PAYRAIL_WEBHOOK_BACKOFF_BASE", "10ms")
        .env("PAYRAIL_WEBHOOK_BACKOFF_MAX", "100ms")
        .env("PAYRAIL_WEBHOOK_TIMEOUT", "1s")
        // A dead worker's rows come back a second after its last renewal.
        .env("PAYRAIL_WEBHOOK_LEASE", "1s")
        .env("RUST_LOG", "warn");
    Process::spawn_quiet(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_under_load_loses_no_event() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            start_worker: false,
            ..Options::default()
        })
        .await,
    );
    // A receiver slow enough that the worker always has requests in flight when it dies.
    let receiver = Receiver::start(Behavior::Hang(Duration::from_millis(20))).await;
    app.create_endpoint(&receiver.url).await;

    let mut first = start_worker(&app);
    // Payments keep coming, before, during and after the kill.
    let creating = Arc::new(AtomicBool::new(true));
    let mut creators = Vec::new();
    for _ in 0..8 {
        let (app, creating) = (app.clone(), creating.clone());
        creators.push(tokio::spawn(async move {
            let mut made = 0;
            while creating.load(Ordering::Relaxed) {
                app.create_payment(100).await;
                made += 1;
            }
            made
        }));
    }
    app.eventually(
        Duration::from_secs(30),
        "the first worker delivers",
        || async { (receiver.received().len() >= 100).then_some(()) },
    )
    .await;
    first.kill();
    let at_kill = receiver.received().len();
    // The kill interrupted work: rows the dead process had claimed and not recorded.
    let orphaned = app
        .count("SELECT count(*) FROM webhook_deliveries WHERE status = 'processing'")
        .await;
    assert!(orphaned > 0, "the worker died holding claims");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = start_worker(&app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    creating.store(false, Ordering::Relaxed);
    let mut made = 0;
    for c in creators {
        made += c.await.expect("creator");
    }

    let events: i64 = app.count("SELECT count(*) FROM events").await;
    assert!(events >= made, "{events} events for {made} payments");
    let delivered = app
        .eventually(Duration::from_secs(60), "every event delivered", || async {
            let pending = app
                .count("SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
                .await;
            let rows = app.count("SELECT count(*) FROM webhook_deliveries").await;
            (pending == 0 && rows == events).then_some(rows)
        })
        .await;
    second.kill();

    // Every event the database holds reached the merchant at least once.
    let received: HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.json()["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(received.len() as i64, delivered, "distinct events received");
    assert!(
        at_kill < receiver.received().len(),
        "the second worker delivered what was left"
    );
}

/// The worker killed after it sent a fresh event's webhook from the express lane and before
/// that event's rows were inserted (a trigger refuses them; the worker keeps trying): the relay
/// takes the event over after its grace, and the next worker's fan-out records the first send
/// as of unknown outcome before it sends again, so attempts account for both requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_an_early_send_and_its_rows_leaves_an_unknown_attempt() {
    const WAIT: Duration = Duration::from_secs(30);
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let mut first = start_worker(&app);
    app.until_express_heard(WAIT).await;
    // It sends early only events created over a second after it was first heard.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    app.refuse_delivery_inserts(true).await;

    let payment = app.create_payment(100).await;
    let payment = payment["id"].as_str().expect("id").to_string();
    app.eventually(WAIT, "the early send", || async {
        (receiver.pending_webhooks_of(&payment) == 1).then_some(())
    })
    .await;
    first.kill();
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries").await,
        0,
        "no row: the send is nowhere in the database"
    );
    app.refuse_delivery_inserts(false).await;
    let mut second = start_worker(&app);

    app.eventually(WAIT, "the event sent again and recorded", || async {
        (app.delivery_of_payment(&payment).await == Some(("succeeded".into(), 2))).then_some(())
    })
    .await;
    second.kill();
    assert_eq!(receiver.pending_webhooks_of(&payment), 2, "heard twice");
    assert_eq!(
        app.attempts_of_payment(&payment, 1, "a.error_class = 'unknown'")
            .await,
        1,
        "the first send, of unknown outcome"
    );
    assert_eq!(
        app.attempts_of_payment(&payment, 2, "a.http_status = 200")
            .await,
        1
    );
}
