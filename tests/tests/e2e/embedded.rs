//! Embedded mode (SQLite, in-process bus, in-memory cache, worker inside) and start-up rules.

use std::time::Duration;

use gateway::Application;
use gateway::Settings;
use payrail_tests::{Behavior, Receiver, unique_name};
use runtime::settings::Env;
use sea_orm::EntityTrait as _;
use serde_json::{Value, json};

#[tokio::test]
async fn embedded_mode_serves_a_payment_end_to_end() {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let settings = Settings::read(&Env::from_lookup(|name| match name {
        "DATABASE_URL" => Some(format!("sqlite://{}?mode=rwc", path.display())),
        "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_WEBHOOK_SWEEP_INTERVAL" => Some("100ms".into()),
        "PAYRAIL_WEBHOOK_TARGETS" => Some("loopback".into()),
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
    // Its page hears changes live from the in-process bus.
    let mut live = crate::live::LiveSocket::open(&base, &browser.cookie_header(), &base)
        .await
        .expect("the stream opens in embedded mode");
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
    live.until("the new payment's event", |c| {
        c["kind"] == "event" && c["event_type"] == "payment.pending"
    })
    .await;
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
    // Payouts, usage and quotas work on SQLite and the in-memory cache too.
    let payout = |amount: i64| {
        client
            .post(format!("{base}/v1/payouts"))
            .bearer_auth(&key)
            .json(&json!({"amount": amount, "currency": "xaf", "provider": "simulated",
                          "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}))
            .send()
    };
    let made = payout(3000).await.expect("payout");
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.expect("json");
    assert_eq!(made["status"], "processing");
    assert_eq!(
        payout(1201).await.expect("payout").status(),
        422,
        "4200 received, 3000 out"
    );
    let usage: Value = client
        .get(format!("{base}/v1/usage"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(usage["payments_created"], 1);
    assert_eq!(
        usage["payment_volume"],
        json!([{"currency": "XAF", "amount": 4200}])
    );
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    live.until("a delivery attempt", |c| {
        c["kind"] == "delivery_attempt" && c["status"] == "succeeded"
    })
    .await;
    // An open page does not hold the shutdown: its socket is closed as "going away" at once.
    let stopping = tokio::time::Instant::now();
    let _ = stop.send(());
    let mut closed = live.next(Duration::from_secs(10)).await;
    while closed["kind"] == "changes" {
        closed = live.next(Duration::from_secs(10)).await;
    }
    assert_eq!(closed, json!({"kind": "closed", "close": 1001}));
    running.await.expect("join").expect("clean shutdown");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the graceful shutdown did not wait for the socket"
    );
    // Usage was counted in memory; the clean stop flushed it to the database.
    let db = runtime::db::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("sqlite");
    let counted = entity::usage_counters::Entity::find()
        .all(&db)
        .await
        .expect("usage rows");
    let value = |metric: &str| {
        counted
            .iter()
            .filter(|r| r.metric == metric)
            .map(|r| r.value)
            .sum::<i64>()
    };
    assert_eq!(value("payments_created"), 1, "{counted:?}");
    assert_eq!(value("volume:XAF"), 4200);
    assert!(value("api_requests") >= 3);
    assert!(value("webhook_attempts") >= 2);
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

/// Plans are opt-in: through the production start-up, a merchant made by the operator (or the
/// sandbox's at first start) has no quota unless `PAYRAIL_DEFAULT_PLAN` names a plan.
#[tokio::test]
async fn new_merchants_get_the_operators_default_plan_which_is_unlimited_unless_set() {
    for (setting, expected) in [(None, "unlimited"), (Some("free"), "free")] {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
        let settings = Settings::read(&Env::from_lookup(|name| match name {
            "DATABASE_URL" => Some(format!("sqlite://{}?mode=rwc", path.display())),
            "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
            "PAYRAIL_METRICS_BIND" => Some("127.0.0.1:0".into()),
            "PAYRAIL_WEBHOOK_TARGETS" => Some("loopback".into()),
            "PAYRAIL_DEFAULT_PLAN" => setting.map(str::to_string),
            _ => None,
        }))
        .expect("settings");
        let app = Application::build(settings).await.expect("builds");
        let bootstrap = app
            .bootstrap_sandbox()
            .await
            .expect("bootstrap")
            .expect("first start");
        let admin_token = bootstrap.admin_token.expect("admin token");
        let base = format!("http://127.0.0.1:{}", app.port());
        let db = app.state().db.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/admin/merchants"))
            .bearer_auth(&admin_token)
            .json(&json!({"name": "Operator's own shop"}))
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), 201);
        let plans: Vec<String> = entity::merchants::Entity::find()
            .all(&db)
            .await
            .expect("merchants")
            .into_iter()
            .map(|m| m.plan.to_string())
            .collect();
        assert_eq!(plans, vec![expected; 2], "PAYRAIL_DEFAULT_PLAN={setting:?}");
        let _ = stop.send(());
        let _ = running.await;
        let _ = std::fs::remove_file(&path);
    }
}
