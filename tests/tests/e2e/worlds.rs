//! Test and live are two worlds, and money has a ledger (issue 19): the reproductions of the
//! issue, each through the HTTP API with live Stripe and live Moneroo credentials configured
//! (local servers speaking their wire formats), and the ledger's API, availability and
//! invariants.

use std::time::Duration;

use payrail_tests::mocks::{self, Mock};
use payrail_tests::{ADMIN_TOKEN, Behavior, Options, Receiver, TestApp};
use serde_json::{Value, json};

/// A gateway whose Stripe and Moneroo credentials are live (the simulated provider is test's).
async fn live_world() -> (TestApp, Mock, Mock) {
    let stripe = mocks::stripe().await;
    let moneroo = mocks::moneroo().await;
    let mut providers = mocks::settings(Some(&stripe), Some(&moneroo), None);
    if let Some(s) = providers.stripe.as_mut() {
        s.secret_key = runtime::settings::Secret(mocks::STRIPE_LIVE_KEY.into());
    }
    if let Some(m) = providers.moneroo.as_mut() {
        m.livemode = true;
    }
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    (app, stripe, moneroo)
}

/// A live key for `merchant`, made by an owner (as the dashboard's keys page does): no API
/// key of test mode can make one.
async fn live_key(app: &TestApp, merchant: &str) -> String {
    let owner = gateway::merchants::KeyManager::Owner(entity::ids::MerchantId::from_trusted(
        merchant.to_string(),
    ));
    gateway::merchants::create_key(&app.db, &owner, true)
        .await
        .expect("an owner makes a live key")
        .1
}

/// A test-card payment, which succeeds at once (simulated provider, test mode).
async fn card_payment(app: &TestApp, key: &str, amount: i64, currency: &str) -> Value {
    let (s, p) = app
        .post_json(
            key,
            "/v1/payments",
            json!({"amount": amount, "currency": currency, "provider": "simulated",
                   "payment_method": {"type": "card", "card": {"number": "4242424242424242",
                   "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!((s, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    p
}

fn wallet(amount: i64, currency: &str, provider: &str) -> Value {
    json!({"amount": amount, "currency": currency, "provider": provider,
           "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}})
}

/// A live Stripe payment, succeeded by Stripe's signed webhook.
async fn live_stripe_payment(app: &TestApp, key: &str, amount: i64) -> Value {
    let (s, p) = app
        .post_json(
            key,
            "/v1/payments",
            json!({"amount": amount, "currency": "usd", "provider": "stripe",
                   "customer": {"email": "customer@example.com"}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["livemode"], true);
    let intent = p["provider_reference"].as_str().expect("intent");
    let object = json!({"id": intent, "object": "payment_intent", "amount": amount,
        "currency": "usd", "status": "succeeded"});
    let event = mocks::stripe_event("payment_intent.succeeded", object);
    let (status, _) = mocks::send_stripe_event(
        &app.base,
        &event,
        mocks::STRIPE_WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
    )
    .await;
    assert_eq!(status, 200);
    let id = p["id"].as_str().expect("id");
    let (_, now) = app.get_json(key, &format!("/v1/payments/{id}")).await;
    assert_eq!(now["status"], "succeeded", "{now}");
    now
}

fn available(balance: &Value, currency: &str) -> i64 {
    balance["available"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["currency"] == currency)
        .and_then(|a| a["amount"].as_i64())
        .unwrap_or(0)
}

fn pending(balance: &Value, currency: &str) -> i64 {
    balance["pending"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["currency"] == currency)
        .and_then(|a| a["amount"].as_i64())
        .unwrap_or(0)
}

async fn ledger_check(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/v1/admin/ledger/check"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("check");
    assert_eq!(r.status(), 200);
    r.json().await.expect("report")
}

/// Repro 1: a test key's simulated money never leaves through live Moneroo credentials.
#[tokio::test]
async fn test_money_is_never_paid_out_through_live_credentials() {
    let (app, _stripe, moneroo) = live_world().await;
    let (merchant, test_key) = app.create_merchant_with_id("Two worlds").await;
    for amount in [50_000, 30_000] {
        let p = card_payment(&app, &test_key, amount, "xof").await;
        assert_eq!(p["livemode"], false);
    }
    let (s, refused) = app
        .post_json(&test_key, "/v1/payouts", wallet(50_000, "xof", "moneroo"))
        .await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (422, Some("livemode_mismatch")),
        "{refused}"
    );
    assert!(
        !moneroo.seen().iter().any(|s| s.path.contains("/payouts")),
        "live credentials were never used"
    );
    assert_eq!(app.count("SELECT count(*) FROM payouts").await, 0);
    // The test balance holds the test money; the live world has none of it.
    let (_, balance) = app.get_json(&test_key, "/v1/balance").await;
    assert_eq!(
        (balance["livemode"].clone(), available(&balance, "XOF")),
        (json!(false), 80_000)
    );
    let live = live_key(&app, &merchant).await;
    let (_, live_balance) = app.get_json(&live, "/v1/balance").await;
    assert_eq!(live_balance["livemode"], true);
    assert_eq!(available(&live_balance, "XOF"), 0);
    let (s, body) = app
        .post_json(&live, "/v1/payouts", wallet(1, "xof", "moneroo"))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("balance_insufficient")),
        "{body}"
    );
    assert!(!moneroo.seen().iter().any(|s| s.path.contains("/payouts")));
    // And the test key cannot start a payment on live credentials either.
    let (s, body) = app
        .post_json(
            &test_key,
            "/v1/payments",
            json!({"amount": 100, "currency": "xof", "provider": "moneroo", "return_url": "https://shop.example.com/done",
                   "customer": {"email": "a@example.com", "name": "Ada Lovelace", "phone": "22951345020"}}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("livemode_mismatch"))
    );
}

/// Repro 2: a test key reaches nothing of live: not its keys, payments, refunds, events or
/// idempotency keys; and each mode's endpoints hear only their own mode.
#[tokio::test]
async fn a_test_key_reaches_nothing_of_live() {
    let (app, stripe, _moneroo) = live_world().await;
    let (merchant, test_key) = app.create_merchant_with_id("Two worlds").await;
    let live = live_key(&app, &merchant).await;
    let test_hooks = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let live_hooks = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    for (key, receiver) in [(&test_key, &test_hooks), (&live, &live_hooks)] {
        let (s, e) = app
            .post_json(
                key,
                "/v1/webhook_endpoints",
                json!({"url": receiver.url, "enabled_events": ["*"]}),
            )
            .await;
        assert_eq!(s, 201, "{e}");
    }

    // A test key mints no live key.
    let (s, body) = app
        .post_json(&test_key, "/v1/api_keys", json!({"livemode": true}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("livemode_mismatch"))
    );

    let payment = live_stripe_payment(&app, &live, 2000).await;
    let id = payment["id"].as_str().expect("id");
    // To the test key the live payment does not exist.
    assert_eq!(
        app.get_json(&test_key, &format!("/v1/payments/{id}"))
            .await
            .0,
        404
    );
    let (_, list) = app.get_json(&test_key, "/v1/payments").await;
    assert_eq!(list["data"], json!([]));
    for path in ["refunds", "cancel"] {
        let (s, _) = app
            .post_json(&test_key, &format!("/v1/payments/{id}/{path}"), json!({}))
            .await;
        assert_eq!(s, 404, "{path}");
    }
    assert!(
        !stripe.seen().iter().any(|s| s.path == "/v1/refunds"),
        "no refund reached Stripe"
    );
    let (_, events) = app.get_json(&test_key, "/v1/events").await;
    assert_eq!(events["data"], json!([]));
    let (_, live_events) = app.get_json(&live, "/v1/events").await;
    assert!(
        live_events["data"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["livemode"] == true)
    );
    // The live key's own list shows its world only.
    let (_, keys) = app.get_json(&test_key, "/v1/api_keys").await;
    let live_id = {
        let (_, live_keys) = app.get_json(&live, "/v1/api_keys").await;
        live_keys["data"][0]["id"].as_str().expect("id").to_string()
    };
    assert!(
        keys["data"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["livemode"] == false)
    );
    let (s, _) = app
        .post_json(
            &test_key,
            &format!("/v1/api_keys/{live_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(app.get_json(&live, "/v1/payments").await.0, 200);

    // One Idempotency-Key, two worlds: two payments, no 409, no replay across.
    let with_key = |key: String, body: Value| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/v1/payments"))
                .bearer_auth(key)
                .header("Idempotency-Key", "order-42")
                .json(&body)
                .send()
                .await
                .expect("request");
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (
                r.status().as_u16(),
                replayed,
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s1, r1, in_test) = with_key(
        test_key.clone(),
        json!({"amount": 100, "currency": "usd", "provider": "simulated"}),
    )
    .await;
    let (s2, r2, in_live) = with_key(
        live.clone(),
        json!({"amount": 300, "currency": "usd", "provider": "stripe"}),
    )
    .await;
    assert_eq!((s1, r1, s2, r2), (201, false, 201, false), "{in_live}");
    assert_ne!(in_test["id"], in_live["id"]);

    // Each endpoint hears its own world only.
    app.eventually(Duration::from_secs(10), "both endpoints served", || async {
        (!test_hooks.received().is_empty() && live_hooks.received().len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids_of = |r: &Receiver| -> Vec<String> {
        r.received()
            .iter()
            .filter_map(|m| m.json()["data"]["id"].as_str().map(str::to_string))
            .collect()
    };
    let live_ids = ids_of(&live_hooks);
    let test_ids = ids_of(&test_hooks);
    assert!(
        live_ids
            .iter()
            .all(|i| i != in_test["id"].as_str().unwrap_or(""))
    );
    assert!(
        !test_ids
            .iter()
            .any(|i| i == id || Some(i.as_str()) == in_live["id"].as_str())
    );
    assert!(
        test_ids
            .iter()
            .any(|i| Some(i.as_str()) == in_test["id"].as_str())
    );
    assert!(live_ids.iter().any(|i| i == id));
}

/// Repro 3: a refund after a payout cannot pay the same money twice, and a refund's amount is
/// held from the moment it is made.
#[tokio::test]
async fn a_refund_after_a_payout_cannot_overdraw_and_refunds_are_reserved() {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    let key = app.api_key.clone();
    let p = card_payment(&app, &key, 1000, "eur").await;
    let id = p["id"].as_str().expect("id");
    let (s, _) = app
        .post_json(&key, "/v1/payouts", wallet(1000, "eur", "simulated"))
        .await;
    assert_eq!(s, 201);
    let (s, refused) = app
        .post_json(
            &key,
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 1000}),
        )
        .await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (422, Some("balance_insufficient")),
        "{refused}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM refunds").await,
        0,
        "nothing recorded"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type LIKE 'refund.%'")
            .await,
        0
    );
    let (_, balance) = app.get_json(&key, "/v1/balance").await;
    assert_eq!(available(&balance, "EUR"), 0);

    // Concurrent: a refund and a payout of the same 600 of a 1000 payment; one wins.
    let q = card_payment(&app, &key, 1000, "eur").await;
    let q_id = q["id"].as_str().expect("id").to_string();
    let refund_path = format!("/v1/payments/{q_id}/refunds");
    let (refund, payout) = tokio::join!(
        app.post_json(&key, &refund_path, json!({"amount": 600})),
        app.post_json(&key, "/v1/payouts", wallet(600, "eur", "simulated")),
    );
    let mut statuses = [refund.0, payout.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 422], "{refund:?} {payout:?}");
    let (_, balance) = app.get_json(&key, "/v1/balance").await;
    assert_eq!(available(&balance, "EUR"), 400);

    // A Stripe refund in flight holds its amount; when Stripe fails it, it comes back.
    let s_pay = {
        let (s, p) = app
            .post_json(
                &key,
                "/v1/payments",
                json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
            )
            .await;
        assert_eq!(s, 201);
        let intent = p["provider_reference"]
            .as_str()
            .expect("intent")
            .to_string();
        let object = json!({"id": intent, "object": "payment_intent", "amount": 2000,
            "currency": "usd", "status": "succeeded"});
        let event = mocks::stripe_event("payment_intent.succeeded", object);
        mocks::send_stripe_event(
            &app.base,
            &event,
            mocks::STRIPE_WEBHOOK_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await;
        p["id"].as_str().expect("id").to_string()
    };
    // Stripe answers in 600 ms (the gateway waits 800 ms in these tests).
    stripe.delay(Some(Duration::from_millis(600)));
    let refunding = {
        let app = &app;
        let key = key.clone();
        let s_pay = s_pay.clone();
        async move {
            app.post_json(
                &key,
                &format!("/v1/payments/{s_pay}/refunds"),
                json!({"amount": 1500}),
            )
            .await
        }
    };
    let watching = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, during) = app.get_json(&key, "/v1/balance").await;
        let (s, _) = app
            .post_json(&key, "/v1/payouts", wallet(600, "usd", "simulated"))
            .await;
        (during, s)
    };
    let ((refund_status, refund), (during, payout_status)) = tokio::join!(refunding, watching);
    assert_eq!(refund_status, 201, "{refund}");
    assert_eq!(
        available(&during, "USD"),
        500,
        "held while Stripe works on it"
    );
    assert_eq!(payout_status, 422, "600 does not fit in what is left");
    stripe.delay(None);
    stripe.fail_next(3);
    let (s, failed) = app
        .post_json(
            &key,
            &format!("/v1/payments/{s_pay}/refunds"),
            json!({"amount": 500}),
        )
        .await;
    assert_eq!(s, 502, "{failed}");
    let (_, after) = app.get_json(&key, "/v1/balance").await;
    assert_eq!(
        available(&after, "USD"),
        500,
        "a failed refund gives its amount back"
    );
    let (_, txns) = app
        .get_json(&key, "/v1/balance_transactions?type=refund_failure")
        .await;
    assert_eq!(txns["data"].as_array().map(Vec::len), Some(1), "{txns}");
    assert_eq!(txns["data"][0]["amount"], 500);
    assert_eq!(ledger_check(&app).await["violations"], json!([]));
}

/// The ledger through the API: balance transactions of every kind with their sources and
/// filters, `balance_transaction` on the objects, bad filters refused, the other mode's 404.
#[tokio::test]
async fn balance_transactions_record_every_movement_with_its_source() {
    let app = TestApp::spawn().await;
    let key = app.api_key.clone();
    let p = card_payment(&app, &key, 5000, "eur").await;
    let pay_id = p["id"].as_str().expect("id").to_string();
    let charge_txn = p["balance_transaction"]
        .as_str()
        .expect("a charge")
        .to_string();
    let (s, refund) = app
        .post_json(
            &key,
            &format!("/v1/payments/{pay_id}/refunds"),
            json!({"amount": 1200}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    let (s, payout) = app
        .post_json(&key, "/v1/payouts", wallet(3000, "eur", "simulated"))
        .await;
    assert_eq!(s, 201, "{payout}");
    let po_id = payout["id"].as_str().expect("id");
    let (s, failed) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payouts/{po_id}/complete"),
            json!({"outcome": "failed"}),
        )
        .await;
    assert_eq!((s, failed["status"].as_str()), (200, Some("failed")));

    let (_, balance) = app.get_json(&key, "/v1/balance").await;
    assert_eq!(balance["object"], "balance");
    assert_eq!(
        (available(&balance, "EUR"), pending(&balance, "EUR")),
        (3800, 0)
    );
    let (_, all) = app
        .get_json(&key, "/v1/balance_transactions?limit=100")
        .await;
    let rows = all["data"].as_array().expect("list");
    let kinds: Vec<(&str, i64)> = rows
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap_or(""),
                t["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("payout_failure", 3000),
            ("payout", -3000),
            ("refund", -1200),
            ("charge", 5000)
        ],
        "newest first"
    );
    assert_eq!(
        rows.iter()
            .map(|t| t["amount"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        3800
    );
    assert_eq!(rows[3]["id"], charge_txn.as_str());
    assert_eq!(rows[3]["source"], pay_id.as_str());
    assert_eq!(rows[2]["id"], refund["balance_transaction"]);
    assert_eq!(rows[1]["id"], payout["balance_transaction"]);
    for t in rows {
        assert_eq!(
            (
                t["object"].as_str(),
                t["livemode"].as_bool(),
                t["status"].as_str()
            ),
            (Some("balance_transaction"), Some(false), Some("available"))
        );
    }
    // Filters.
    let (_, by_source) = app
        .get_json(&key, &format!("/v1/balance_transactions?source={po_id}"))
        .await;
    assert_eq!(by_source["data"].as_array().map(Vec::len), Some(2));
    let (_, charges) = app
        .get_json(&key, "/v1/balance_transactions?type=charge&currency=eur")
        .await;
    assert_eq!(charges["data"].as_array().map(Vec::len), Some(1));
    let (_, none) = app
        .get_json(&key, "/v1/balance_transactions?created[lte]=1000000000")
        .await;
    assert_eq!(none["data"], json!([]));
    let (_, one) = app
        .get_json(&key, &format!("/v1/balance_transactions/{charge_txn}"))
        .await;
    assert_eq!(one["amount"], 5000);
    for (query, param) in [
        ("type=gift", "type"),
        ("source=evt_01a2", "source"),
        ("currency=zzz", "currency"),
    ] {
        let (s, body) = app
            .get_json(&key, &format!("/v1/balance_transactions?{query}"))
            .await;
        assert_eq!(
            (s, body["error"]["param"].as_str()),
            (422, Some(param)),
            "{body}"
        );
    }
    // Another merchant, or this one's other mode, sees none of it.
    let other = app.create_merchant("Other").await;
    assert_eq!(
        app.get_json(&other, &format!("/v1/balance_transactions/{charge_txn}"))
            .await
            .0,
        404
    );
    let (merchant, _) = {
        use sea_orm::EntityTrait as _;
        let p = entity::payments::Entity::find()
            .one(&app.db)
            .await
            .expect("query")
            .expect("payment");
        (p.merchant_id.to_string(), ())
    };
    let live = live_key(&app, &merchant).await;
    assert_eq!(
        app.get_json(&live, &format!("/v1/balance_transactions/{charge_txn}"))
            .await
            .0,
        404
    );
    let (_, live_list) = app.get_json(&live, "/v1/balance_transactions").await;
    assert_eq!(live_list["data"], json!([]));
    // An operator's adjustment, seen by the merchant; bad ones change nothing.
    let adjust = |body: Value| {
        let app = &app;
        let merchant = merchant.clone();
        async move {
            let r = app
                .client
                .post(app.url(&format!("/v1/admin/merchants/{merchant}/adjustments")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .expect("adjust");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, made) = adjust(json!({"livemode": false, "currency": "eur", "amount": -800,
        "description": "Chargeback fee for pay_x"}))
    .await;
    assert_eq!(
        (s, made["type"].as_str()),
        (201, Some("adjustment")),
        "{made}"
    );
    for bad in [
        json!({"livemode": false, "currency": "eur", "amount": 0, "description": "x"}),
        json!({"livemode": false, "currency": "xyz", "amount": 5, "description": "x"}),
        json!({"livemode": false, "currency": "eur", "amount": 5, "description": " "}),
    ] {
        assert_eq!(adjust(bad).await.0, 422);
    }
    let (_, balance) = app.get_json(&key, "/v1/balance").await;
    assert_eq!(available(&balance, "EUR"), 3000);
    let report = ledger_check(&app).await;
    assert_eq!(report["violations"], json!([]), "{report}");
    assert_eq!(report["transactions"], 5);
}

/// Funds are `pending` for `PAYRAIL_FUNDS_AVAILABLE_AFTER`, cannot be paid out meanwhile, and
/// are released by the gateway's own schedule (started by `run_until_stopped`).
#[tokio::test]
async fn funds_are_pending_until_available_on_and_then_released_by_the_schedule() {
    let mut app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let mut settings = app.settings.clone();
    settings.gateway.funds = gateway::ledger::FundsPolicy {
        available_after: Duration::from_secs(2),
    };
    settings.gateway.funds_release_interval = Duration::from_millis(200);
    let (base, _) = app.spawn_second_gateway_with(settings).await;
    let key = app.api_key.clone();
    let via = |path: &str| format!("{base}{path}");
    let r = app
        .client
        .post(via("/v1/payments"))
        .bearer_auth(&key)
        .json(
            &json!({"amount": 700, "currency": "eur", "provider": "simulated",
            "payment_method": {"type": "card", "card": {"number": "4242424242424242",
            "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .send()
        .await
        .expect("pay");
    assert_eq!(r.status(), 201);
    let balance = |app: &TestApp| {
        let url = via("/v1/balance");
        let key = key.clone();
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("balance")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let now = balance(&app).await;
    assert_eq!((available(&now, "EUR"), pending(&now, "EUR")), (0, 700));
    let r = app
        .client
        .post(via("/v1/payouts"))
        .bearer_auth(&key)
        .json(&wallet(700, "eur", "simulated"))
        .send()
        .await
        .expect("payout");
    assert_eq!(r.status(), 422, "pending funds cannot be paid out");
    app.eventually(Duration::from_secs(10), "the funds released", || async {
        let b = balance(&app).await;
        (available(&b, "EUR") == 700 && pending(&b, "EUR") == 0).then_some(())
    })
    .await;
    let (_, txns) = app.get_json(&key, "/v1/balance_transactions").await;
    assert_eq!(txns["data"][0]["status"], "available");
    assert_eq!(ledger_check(&app).await["violations"], json!([]));
}

/// Broken invariants are found by the admin check, by the schedule (which counts them in the
/// metric the alert pages on), and never by a correct ledger.
#[tokio::test]
async fn a_broken_ledger_is_found_by_the_check_and_counted_by_its_schedule() {
    let mut app = TestApp::spawn().await;
    let key = app.api_key.clone();
    card_payment(&app, &key, 900, "eur").await;
    assert_eq!(ledger_check(&app).await["violations"], json!([]));
    use sea_orm::ConnectionTrait as _;
    app.db
        .execute_unprepared("UPDATE balances SET available = available + 1")
        .await
        .expect("tamper");
    app.db
        .execute_unprepared(
            "INSERT INTO ledger_entries (transaction_id, merchant_id, livemode, currency, account, amount, created_at) \
             SELECT id, merchant_id, livemode, currency, 'customers', 5, created_at FROM balance_transactions",
        )
        .await
        .expect("tamper");
    let report = ledger_check(&app).await;
    let kinds: Vec<&str> = report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["unbalanced_transaction", "balance_mismatch"],
        "{report}"
    );
    // The schedule, every second here, finds them too and counts them.
    let mut settings = app.settings.clone();
    settings.gateway.ledger_check_schedule = "* * * * * *";
    let (_, metrics) = app.spawn_second_gateway_with(settings).await;
    app.eventually(
        Duration::from_secs(10),
        "the scheduled check counted",
        || {
            let app = &app;
            let metrics = metrics.clone();
            async move {
                let text = app.metrics_text_of(&metrics).await;
                text.lines()
                    .find(|l| l.starts_with("ledger_invariant_violations_total "))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| *v >= 2.0)
                    .map(|_| ())
            }
        },
    )
    .await;
}

/// Usage is counted per mode: each key reads its own world's, while a plan limits the two
/// together.
#[tokio::test]
async fn usage_is_counted_in_each_world_and_plans_count_both() {
    let app = TestApp::spawn().await;
    let (merchant, test_key) = app.create_merchant_with_id("Metered").await;
    let live = live_key(&app, &merchant).await;
    card_payment(&app, &test_key, 100, "eur").await;
    card_payment(&app, &test_key, 200, "eur").await;
    for _ in 0..3 {
        assert_eq!(app.get_json(&live, "/v1/payments").await.0, 200);
    }
    let (_, test_usage) = app.get_json(&test_key, "/v1/usage").await;
    let (_, live_usage) = app.get_json(&live, "/v1/usage").await;
    assert_eq!(
        (
            test_usage["livemode"].clone(),
            test_usage["payments_created"].clone(),
            test_usage["payment_volume"].clone()
        ),
        (
            json!(false),
            json!(2),
            json!([{"currency": "EUR", "amount": 300}])
        ),
        "{test_usage}"
    );
    assert_eq!(
        (
            live_usage["livemode"].clone(),
            live_usage["payments_created"].clone()
        ),
        (json!(true), json!(0)),
        "{live_usage}"
    );
    let live_calls = live_usage["api_requests"].as_i64().expect("count");
    let test_calls = test_usage["api_requests"].as_i64().expect("count");
    assert!(
        live_calls >= 3 && test_calls >= 2,
        "{live_calls} {test_calls}"
    );
    // A plan's limit counts both: 2 test payments made, a limit of 2 refuses a live one too.
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/merchants/{merchant}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"plan": "custom", "usage_limits": {"payments_created": 2}}))
        .send()
        .await
        .expect("plan");
    assert_eq!(r.status(), 200);
    let (s, body) = app
        .post_json(
            &live,
            "/v1/payments",
            json!({"amount": 100, "currency": "eur", "provider": "stripe"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{body}"
    );
    // Flushed, the counts stay in their worlds.
    app.eventually(Duration::from_secs(10), "the usage flushed", || async {
        (app.count(&format!(
            "SELECT count(*) FROM usage_counters WHERE merchant_id = '{merchant}' AND livemode AND metric = 'api_requests'"
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COALESCE(SUM(value), 0)::bigint FROM usage_counters WHERE merchant_id = '{merchant}' AND livemode AND metric = 'payments_created'"
        ))
        .await,
        0
    );
}
