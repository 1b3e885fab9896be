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
    // Payments and their volume are read from the payments themselves, never metered.
    assert_eq!(value("payments_created"), 0, "{counted:?}");
    let month = runtime::usage::month_of(chrono::Utc::now());
    let reported = runtime::usage::of_month(&db, &month).await.expect("usage");
    let (_, usage) = reported.first().expect("the merchant's month");
    assert_eq!(usage.get("payments_created"), Some(&1), "{usage:?}");
    assert_eq!(usage.get("volume:XAF"), Some(&4200));
    assert!(value("api_requests") >= 3);
    assert!(value("webhook_attempts") >= 2);
    payrail_tests::remove_sqlite(&path);
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
        payrail_tests::remove_sqlite(&path);
    }
}

/// Two worlds and the ledger on SQLite and the in-process bus (issue 19): the same rules as on
/// PostgreSQL, through the API of the one-command start.
#[tokio::test]
async fn embedded_mode_keeps_two_worlds_and_a_balanced_ledger_on_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let settings = Settings::read(&Env::from_lookup(|name| match name {
        "DATABASE_URL" => Some(format!("sqlite://{}?mode=rwc", path.display())),
        "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_METRICS_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_WEBHOOK_TARGETS" => Some("loopback".into()),
        _ => None,
    }))
    .expect("settings");
    let app = Application::build(settings).await.expect("builds");
    let boot = app
        .bootstrap_sandbox()
        .await
        .expect("bootstrap")
        .expect("first start");
    let admin = boot.admin_token.expect("admin token");
    let test_key = boot.api_key;
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut r = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let post =
        |path: &str, key: &str, body: Value| call(reqwest::Method::POST, path, key, Some(body));
    let get = |path: &str, key: &str| call(reqwest::Method::GET, path, key, None);

    // Keys: a test key mints no live key; an owner does.
    let (s, _) = post("/v1/api_keys", &test_key, json!({"livemode": true})).await;
    assert_eq!(s, 403);
    let merchant = entity::merchants::Entity::find()
        .one(&db)
        .await
        .expect("query")
        .expect("the sandbox merchant")
        .id;
    let (_, live_key) =
        gateway::merchants::create_key(&db, &gateway::merchants::KeyManager::Owner(merchant), true)
            .await
            .expect("owner");

    // Money: 2000 in, 1500 out, then a refund of 1000 would overdraw.
    let (s, p) = post(
        "/v1/payments",
        &test_key,
        json!({"amount": 2000, "currency": "eur", "provider": "simulated",
               "payment_method": {"type": "card", "card": {"number": "4242424242424242",
               "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
    )
    .await;
    assert_eq!((s, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    let pay_id = p["id"].as_str().expect("id").to_string();
    let (s, _) = post(
        "/v1/payouts",
        &test_key,
        json!({"amount": 1500, "currency": "eur", "provider": "simulated",
               "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, refused) = post(
        &format!("/v1/payments/{pay_id}/refunds"),
        &test_key,
        json!({"amount": 1000}),
    )
    .await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (422, Some("balance_insufficient"))
    );
    let (s, _) = post(
        &format!("/v1/payments/{pay_id}/refunds"),
        &test_key,
        json!({"amount": 500}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, balance) = get("/v1/balance", &test_key).await;
    assert_eq!(
        balance["available"],
        json!([{"amount": 0, "currency": "EUR"}])
    );
    let (_, txns) = get("/v1/balance_transactions", &test_key).await;
    let kinds: Vec<&str> = txns["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["refund", "payout", "charge"]);

    // The live world sees none of it.
    assert_eq!(
        get(&format!("/v1/payments/{pay_id}"), &live_key).await.0,
        404
    );
    let (_, live_balance) = get("/v1/balance", &live_key).await;
    assert_eq!(
        (
            live_balance["livemode"].clone(),
            live_balance["available"].clone()
        ),
        (json!(true), json!([]))
    );
    let (_, live_txns) = get("/v1/balance_transactions", &live_key).await;
    assert_eq!(live_txns["data"], json!([]));

    // The invariants hold.
    let (s, report) = get("/v1/admin/ledger/check", &admin).await;
    assert_eq!(
        (s, report["violations"].clone()),
        (200, json!([])),
        "{report}"
    );
    assert_eq!(report["transactions"], 3);

    let _ = stop.send(());
    running.await.expect("join").expect("clean shutdown");
    payrail_tests::remove_sqlite(&path);
}
