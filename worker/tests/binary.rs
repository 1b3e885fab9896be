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
    let prefix = format!("payrail_t_{}", uuid::Uuid::new_v4().simple());
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
