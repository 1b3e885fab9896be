//! The `worker` binary itself: configuration errors stop it before anything starts.

#[test]
fn an_unknown_variable_of_the_workers_families_stops_it_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .env("PAYRAIL_WEBHOOK_SWEEP_INTERVALL", "1s")
        // Without the check it would fail later and differently (exit 1): nothing listens
        // on port 1, so it cannot hang.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://127.0.0.1:1/%2f")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAYRAIL_WORKER_BIND", "127.0.0.1:0")
        .output()
        .expect("run the worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PAYRAIL_WEBHOOK_SWEEP_INTERVALL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn redrive_moves_dead_lettered_messages_back_to_the_fan_out_queue() {
    use runtime::bus::{EventBus, Received};
    let prefix = payrail_tests::unique_name();
    let amqp = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let EventBus::Amqp(raw) = EventBus::amqp(amqp, entity::bus::QueueNames::new(&prefix)) else {
        panic!("an AMQP bus")
    };
    let bus = EventBus::amqp(amqp, entity::bus::QueueNames::new(&prefix));
    bus.declare().await.expect("declare");
    // A message the consumer refused sits in the dead-letter queue.
    raw.publish_raw(b"{\"version\":\"v0\"}")
        .await
        .expect("publish");
    {
        let mut sub = bus.subscribe(1).await.expect("subscribe");
        match sub.next().await.expect("open").expect("message") {
            Received::Unparseable(ack) => ack.dead_letter().await.expect("dead-letter"),
            Received::Message(..) => panic!("v0 is not a message this worker parses"),
        }
    }
    // Dead-lettering is routed by the broker after the nack: wait for it to land.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let depths = bus.depths().await.expect("depths");
        if (depths.events, depths.dead_letters) == (0, 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "never dead-lettered: {depths:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("redrive")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", amqp)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAYRAIL_AMQP_PREFIX", &prefix)
        .output()
        .expect("run worker redrive");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("redrove 1 message"), "{stdout}");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let depths = bus.depths().await.expect("depths");
        if (depths.events, depths.dead_letters) == (1, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "not moved back: {depths:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = raw.delete_topology().await;
}

#[test]
fn an_unknown_command_is_refused_with_the_usage() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("redirve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://127.0.0.1:1/%2f")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run the worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("worker redrive"), "{stderr}");
}

/// `PAYRAIL_DB_POOL_SIZE` sets the worker's pool, which its `/metrics` shows with the
/// connections in use; a pool that cannot fit the server's `max_connections` beside what others
/// hold is warned about at start-up, naming the variable.
#[tokio::test]
async fn the_pool_size_is_its_variables_shown_in_metrics_and_an_oversized_one_is_warned_about() {
    use payrail_tests::{Options, TestApp};
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let port = payrail_tests::free_port();
    let mut child = app
        .worker_command(env!("CARGO_BIN_EXE_worker"))
        .env("PAYRAIL_WORKER_BIND", format!("127.0.0.1:{port}"))
        .env("PAYRAIL_DB_POOL_SIZE", "100000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the worker binary");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        let answer = app
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await;
        if let Ok(r) = answer
            && r.status().is_success()
        {
            break r.text().await.expect("metrics body");
        }
        assert!(
            std::time::Instant::now() < until,
            "the worker never served /metrics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let output = child.wait_with_output().expect("reap the worker");
    assert!(
        metrics.contains("db_pool_max_connections 100000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("db_pool_connections{state=\"in_use\"}")
            && metrics.contains("db_pool_connections{state=\"idle\"}"),
        "{metrics}"
    );
    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains("cannot fit the server's max_connections")
            && logs.contains("PAYRAIL_DB_POOL_SIZE"),
        "start-up warns about the pool: {logs}"
    );
}

/// With the sweep every 30 s (the default), a failing delivery's retries still come when its
/// schedule says (1 s, then 2 s), within a second: the worker wakes for the retry it recorded
/// instead of waiting for the next tick (issue 24).
#[tokio::test]
async fn retries_come_when_their_schedule_says_not_at_the_sweeps_next_tick() {
    use entity::webhook_attempts;
    use payrail_tests::{Behavior, Options, Receiver, TestApp};
    use sea_orm::{EntityTrait, QueryOrder};
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![500, 500], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let mut child = app
        .worker_command(env!("CARGO_BIN_EXE_worker"))
        .env("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "30s")
        .env("PAYRAIL_WEBHOOK_RETRY_SCHEDULE", "1s,2s")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the worker binary");
    app.create_payment(100).await;
    let attempts = app
        .eventually(
            std::time::Duration::from_secs(20),
            "three attempts",
            || async {
                let rows = webhook_attempts::Entity::find()
                    .order_by_asc(webhook_attempts::Column::CreatedAt)
                    .all(&app.db)
                    .await
                    .ok()?;
                (rows.len() >= 3).then_some(rows)
            },
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        attempts
            .iter()
            .all(|a| a.delivery_id == attempts[0].delivery_id),
        "one delivery"
    );
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1].created_at - w[0].created_at).num_milliseconds() as f64 / 1000.0)
        .collect();
    assert!(
        (1.0..2.0).contains(&gaps[0]) && (2.0..3.0).contains(&gaps[1]),
        "retries 1 s and 2 s apart (within a second), not at the 30 s sweep: {gaps:?}"
    );
    assert_eq!(receiver.received().len(), 3);
}
