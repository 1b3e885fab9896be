//! The `gateway` binary itself: configuration errors stop it before anything starts.

#[test]
fn an_unknown_variable_stops_the_gateway_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("PAYRAIL_WEBHOK_TIMEOUT", "1s")
        // Without the check it would fail later and differently (exit 1): nothing listens
        // on port 1, so it cannot hang.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://127.0.0.1:1/%2f")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAYRAIL_BIND", "127.0.0.1:0")
        .env("PAYRAIL_METRICS_BIND", "127.0.0.1:0")
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PAYRAIL_WEBHOK_TIMEOUT"), "{stderr}");
}

#[test]
fn a_mixed_configuration_stops_the_gateway_saying_what_to_change() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env_remove("AMQP_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AMQP_URL"), "{stderr}");
}
