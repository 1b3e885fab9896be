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
