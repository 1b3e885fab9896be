//! Embedded mode (SQLite, in-process bus, in-memory cache, worker inside) and start-up rules.

use std::time::Duration;

use gateway::Application;
use gateway::Settings;
use payrail_tests::{Behavior, Receiver, unique_name};
use runtime::settings::Env;
use serde_json::{Value, json};

#[tokio::test]
async fn embedded_mode_serves_a_payment_end_to_end() {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let settings = Settings::read(&Env::from_lookup(|name| match name {
        "DATABASE_URL" => Some(format!("sqlite://{}?mode=rwc", path.display())),
        "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_WEBHOOK_SWEEP_INTERVAL" => Some("100ms".into()),
        _ => None,
    }))
    .expect("settings");
    assert!(settings.is_embedded());
    let app = Application::build(settings)
        .await
        .expect("embedded gateway builds");
    let bootstrap = app
        .bootstrap_sandbox()
        .await
        .expect("bootstrap")
        .expect("first start creates a merchant");
    assert!(bootstrap.api_key.starts_with("sk_test_"));
    assert!(bootstrap.admin_token.is_some());
    assert!(
        app.bootstrap_sandbox().await.expect("again").is_none(),
        "only at first start"
    );
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // The dashboard owner made at first start signs in with the password printed once.
    let mut browser = crate::dashboard::Browser::new(&base);
    let signed_in = browser
        .sign_in(&bootstrap.dashboard_email, &bootstrap.dashboard_password)
        .await;
    assert_eq!(signed_in.location.as_deref(), Some("/dashboard"));
    assert_eq!(browser.get("/dashboard").await.status, 200);
    let client = reqwest::Client::new();
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let key = bootstrap.api_key;
    let r = client
        .post(format!("{base}/v1/webhook_endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url, "enabled_events": ["*"]}))
        .send()
        .await
        .expect("endpoint");
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .json(&json!({"amount": 4200, "currency": "xaf", "provider": "simulated"}))
        .send()
        .await
        .expect("payment");
    assert_eq!(r.status(), 201);
    let payment: Value = r.json().await.expect("json");
    let id = payment["id"].as_str().expect("id");
    let r = client
        .post(format!("{base}/v1/sandbox/payments/{id}/complete"))
        .bearer_auth(&key)
        .json(&json!({"outcome": "succeeded"}))
        .send()
        .await
        .expect("complete");
    assert_eq!(r.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.of_type("payment.succeeded").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no webhook in embedded mode"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(receiver.of_type("payment.pending").len(), 1);
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let _ = stop.send(());
    running.await.expect("join").expect("clean shutdown");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn real_mode_refuses_to_start_without_an_admin_token() {
    let settings = Settings::read(&Env::from_lookup(|name| match name {
        "AMQP_URL" => Some(payrail_tests::AMQP_URL.into()),
        "REDIS_URL" => Some("redis://127.0.0.1:6379".into()),
        "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
        "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
        _ => None,
    }))
    .expect("settings");
    let err = Application::build(settings)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("PAYRAIL_ADMIN_TOKEN"), "{err}");
}
