//! Leases sized to what a worker really holds (issue 25): the real `worker` binary renews the
//! claims it is sending, so a send longer than the lease is not taken over by another worker
//! and sent twice; a
//! killed worker's deliveries are sent again by the next one within seconds of the kill (not
//! after a lease sized for the longest send); and a database cut longer than the lease, with
//! results waiting to be written, resends nothing.

use std::time::{Duration, Instant};

use payrail_tests::{Behavior, Options, Process, Receiver, TcpProxy, TestApp};

/// The lease every worker here takes: renewed every 250 ms.
const LEASE: &str = "1s";

fn start_worker(app: &TestApp, database_url: Option<&str>) -> Process {
    let mut command = app.worker_command(env!("CARGO_BIN_EXE_worker"));
    command
        .env("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "200ms")
        .env("PAYRAIL_WEBHOOK_TIMEOUT", "30s")
        .env("PAYRAIL_WEBHOOK_LEASE", LEASE)
        .env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    Process::spawn_quiet(command)
}

async fn app_without_worker() -> TestApp {
    TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await
}

/// Waits until every delivery row succeeded; returns how many there are.
async fn all_succeeded(app: &TestApp, within: Duration) -> i64 {
    app.eventually(within, "every delivery succeeded", || async {
        let rows = app.count("SELECT count(*) FROM webhook_deliveries").await;
        let done = app
            .count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            .await;
        (rows > 0 && done == rows).then_some(rows)
    })
    .await
}

async fn unknown_attempts(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM webhook_attempts WHERE error_class = 'unknown'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_longer_than_the_lease_is_renewed_and_sent_once() {
    let app = app_without_worker().await;
    // Each answer takes 2.5 lease lengths: without renewal, the other worker's sweeps (every
    // 200 ms) would take the rows over and send them again.
    let receiver = Receiver::start(Behavior::Hang(Duration::from_millis(2500))).await;
    app.create_endpoint(&receiver.url).await;
    let _workers = [start_worker(&app, None), start_worker(&app, None)];
    for _ in 0..5 {
        app.create_payment(100).await;
    }
    let rows = all_succeeded(&app, Duration::from_secs(30)).await;
    assert_eq!(
        receiver.received().len() as i64,
        rows,
        "each sent exactly once"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts").await,
        rows,
        "one attempt each"
    );
    assert_eq!(unknown_attempts(&app).await, 0, "no claim was taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_deliveries_are_sent_again_within_seconds() {
    let app = app_without_worker().await;
    // The first worker's requests never get an answer before it dies.
    let receiver = Receiver::start(Behavior::Hang(Duration::from_secs(120))).await;
    app.create_endpoint(&receiver.url).await;
    let mut first = start_worker(&app, None);
    for _ in 0..3 {
        app.create_payment(100).await;
    }
    // An endpoint starts with two send slots: the rest of the rows wait for one, claimed too.
    let rows = app
        .eventually(Duration::from_secs(20), "sends in flight", || async {
            let rows = app.count("SELECT count(*) FROM webhook_deliveries").await;
            (rows >= 3 && receiver.received().len() >= 2).then_some(rows)
        })
        .await;
    receiver.behave(Behavior::Statuses(vec![], 200));
    first.kill();
    let killed = Instant::now();
    let _second = start_worker(&app, None);
    all_succeeded(&app, Duration::from_secs(30)).await;
    let recovered = killed.elapsed();
    // A lease of 1 s (and the 30 s timeout's 65 s before renewals existed): the rows come back
    // one lease after the dead worker's last renewal, plus a start-up.
    assert!(
        recovered < Duration::from_secs(5),
        "the dead worker's deliveries were sent again {recovered:?} after the kill"
    );
    // Every row the dead worker held (sent, or waiting for a slot) may have been sent: each
    // is an attempt of unknown outcome, so the requests seen never outnumber the attempts.
    let unknown = unknown_attempts(&app).await;
    assert_eq!(
        unknown, rows,
        "each claim taken over is an attempt of unknown outcome"
    );
    let answered = app
        .count("SELECT count(*) FROM webhook_attempts WHERE http_status = 200")
        .await;
    assert_eq!(answered, rows, "one recorded success each");
    assert!(receiver.received().len() as i64 <= answered + unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_longer_than_the_lease_resends_nothing() {
    let app = app_without_worker().await;
    let proxy = TcpProxy::start("127.0.0.1:5432", true).await;
    let via_proxy = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, app.prefix
    );
    let receiver = Receiver::start(Behavior::Hang(Duration::from_millis(1500))).await;
    app.create_endpoint(&receiver.url).await;
    let _worker = start_worker(&app, Some(&via_proxy));
    let payments = 5;
    for _ in 0..payments {
        app.create_payment(100).await;
    }
    // Every delivery row there and sent (the count alone may be taken before the worker has
    // fanned out the last events, which then arrive after it).
    let rows = app
        .eventually(
            Duration::from_secs(20),
            "every delivery in flight",
            || async {
                let rows = app.count("SELECT count(*) FROM webhook_deliveries").await;
                (rows == payments && receiver.received().len() as i64 >= rows).then_some(rows)
            },
        )
        .await;
    // The answers arrive while the worker cannot reach its database, for three leases.
    proxy.set_enabled(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_enabled(true);
    assert_eq!(all_succeeded(&app, Duration::from_secs(30)).await, rows);
    assert_eq!(
        receiver.received().len() as i64,
        rows,
        "results held through the cut are written, not sent again"
    );
    assert_eq!(unknown_attempts(&app).await, 0);
}
