//! Reconciliation with the providers' reports (issue 19, item 6), against local servers that
//! speak each provider's format: Stripe's balance transactions, Moneroo's payment and payout
//! verification, eBilling's bills. Each difference becomes an item; an item the next run
//! finds agreeing is matched; an operator resolves the rest; the schedule runs it once per
//! firing and the metric the alert watches counts what is open.

use std::time::Duration;

use payrail_tests::mocks::{self, Mock};
use payrail_tests::{ADMIN_TOKEN, Options, TestApp};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .client
        .request(method, app.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn run(app: &TestApp) -> Value {
    let (s, summary) = admin(
        app,
        reqwest::Method::POST,
        "/v1/admin/reconciliation/run",
        None,
    )
    .await;
    assert_eq!(s, 200, "{summary}");
    summary
}

/// Open items as (object, kind), sorted.
async fn open_items(app: &TestApp) -> Vec<(String, String)> {
    let (_, list) = admin(
        app,
        reqwest::Method::GET,
        "/v1/admin/reconciliation_items?status=open&limit=100",
        None,
    )
    .await;
    let mut items: Vec<(String, String)> = list["data"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["object_id"].as_str().unwrap_or("").to_string(),
                i["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    items.sort();
    items
}

/// A Stripe payment of `amount` USD; `charged` says whether Stripe's intent succeeded too.
async fn stripe_payment(
    app: &TestApp,
    stripe: &Mock,
    amount: i64,
    charged: bool,
) -> (String, String) {
    let (s, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": amount, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let intent = p["provider_reference"]
        .as_str()
        .expect("intent")
        .to_string();
    if charged {
        stripe.set(&intent, "status", json!("succeeded"));
    }
    stripe_says(app, &intent, amount, "payment_intent.succeeded").await;
    (p["id"].as_str().expect("id").to_string(), intent)
}

async fn stripe_says(app: &TestApp, intent: &str, amount: i64, event_type: &str) {
    let object = json!({"id": intent, "object": "payment_intent", "amount": amount,
        "currency": "usd", "status": "succeeded"});
    let event = mocks::stripe_event(event_type, object);
    let (status, _) = mocks::send_stripe_event(
        &app.base,
        &event,
        mocks::STRIPE_WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stripes_balance_transactions_are_reconciled_with_the_ledger() {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        start_worker: false,
        ..Options::default()
    })
    .await;
    // Agrees: paid here and charged there.
    let (agrees, _) = stripe_payment(&app, &stripe, 2000, true).await;
    // Paid here, no charge at Stripe.
    let (missing, missing_intent) = stripe_payment(&app, &stripe, 3000, false).await;
    // Refunded at Stripe (in its dashboard) without Payrail hearing of it.
    let (refunded, refunded_intent) = stripe_payment(&app, &stripe, 5000, true).await;
    stripe.lock().objects.insert(
        "re_dashboard1".into(),
        json!({"id": "re_dashboard1", "object": "refund", "amount": 1000,
               "payment_intent": refunded_intent, "status": "succeeded"}),
    );
    // Cancelled here, yet Stripe charged it (and never told us).
    let (s, cancelled) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 700, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    assert_eq!(s, 201);
    let cancelled_id = cancelled["id"].as_str().expect("id").to_string();
    let cancelled_intent = cancelled["provider_reference"]
        .as_str()
        .expect("pi")
        .to_string();
    let (s, _) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{cancelled_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    stripe.set(&cancelled_intent, "status", json!("succeeded"));
    // Cancelled, then Stripe's webhook reports success: flagged (a late success).
    let (s, late) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 900, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    assert_eq!(s, 201);
    let late_id = late["id"].as_str().expect("id").to_string();
    let late_intent = late["provider_reference"].as_str().expect("pi").to_string();
    app.post_json(
        &app.api_key,
        &format!("/v1/payments/{late_id}/cancel"),
        json!({}),
    )
    .await;
    stripe.set(&late_intent, "status", json!("succeeded"));
    stripe_says(&app, &late_intent, 900, "payment_intent.succeeded").await;

    let summary = run(&app).await;
    assert_eq!(summary["found"], 4, "{summary}");
    let mut expected = vec![
        (missing.clone(), "missing_at_provider".to_string()),
        (refunded.clone(), "refund_mismatch".to_string()),
        (cancelled_id.clone(), "status_mismatch".to_string()),
        (late_id.clone(), "late_success".to_string()),
    ];
    expected.sort();
    assert_eq!(open_items(&app).await, expected);
    assert!(!open_items(&app).await.iter().any(|(o, _)| *o == agrees));
    // What each says, for the one refunded at Stripe.
    let (_, mine) = app
        .get_json(&app.api_key, "/v1/reconciliation_items?status=open")
        .await;
    let item = mine["data"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["kind"] == "refund_mismatch")
        .expect("the refund item")
        .clone();
    assert_eq!(
        (item["expected"].as_str(), item["reported"].as_str()),
        (Some("refunded 0 USD"), Some("refunded 1000 USD"))
    );
    assert_eq!(item["livemode"], false);
    // Another merchant sees none of them.
    let other = app.create_merchant("Other").await;
    assert_eq!(
        app.get_json(&other, "/v1/reconciliation_items").await.1["data"],
        json!([])
    );

    // The same differences seen again are the same items.
    run(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM reconciliation_items").await,
        4
    );
    // Stripe charges the missing one after all: the next run matches it.
    stripe.set(&missing_intent, "status", json!("succeeded"));
    let summary = run(&app).await;
    assert_eq!(summary["matched"], 1, "{summary}");
    assert!(!open_items(&app).await.iter().any(|(o, _)| *o == missing));

    // An operator resolves the refund item; it stays resolved though Stripe still differs.
    let id = item["id"].as_str().expect("id");
    for bad in [json!({"resolution": " "}), json!({"resolution": "x\u{0}y"})] {
        let (s, _) = admin(
            &app,
            reqwest::Method::POST,
            &format!("/v1/admin/reconciliation_items/{id}/resolve"),
            Some(bad),
        )
        .await;
        assert_eq!(s, 422);
    }
    let (s, resolved) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/reconciliation_items/{id}/resolve"),
        Some(json!({"resolution": "Refunded in Stripe's dashboard; adjusted the balance"})),
    )
    .await;
    assert_eq!((s, resolved["status"].as_str()), (200, Some("resolved")));
    run(&app).await;
    let (_, list) = admin(
        &app,
        reqwest::Method::GET,
        "/v1/admin/reconciliation_items?status=resolved",
        None,
    )
    .await;
    assert_eq!(list["data"][0]["id"], json!(id));
    let (s, _) = admin(
        &app,
        reqwest::Method::POST,
        "/v1/admin/reconciliation_items/rec_01a2b3c4d5e6f708192a3b4c5d6e7f80/resolve",
        Some(json!({"resolution": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(
        &app,
        reqwest::Method::GET,
        "/v1/admin/reconciliation_items?status=closed",
        None,
    )
    .await;
    assert_eq!(s, 422);
    // Two are still open (the cancelled one Stripe charged, and the late success).
    let open = app.metrics_text().await;
    assert!(
        open.lines().any(|l| l == "reconciliation_items_open 2"),
        "{}",
        open.lines()
            .filter(|l| l.contains("reconciliation"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn moneroo_and_ebilling_statuses_are_reconciled_and_the_schedule_runs_once_per_firing() {
    let moneroo = mocks::moneroo().await;
    let ebilling = mocks::ebilling().await;
    let mut app = TestApp::spawn_with(Options {
        providers: mocks::settings(None, Some(&moneroo), Some(&ebilling)),
        start_worker: false,
        ..Options::default()
    })
    .await;
    // A Moneroo payment that succeeded (verified), which Moneroo later reports failed.
    let (s, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 5000, "currency": "XOF", "provider": "moneroo",
                   "customer": {"email": "a@example.com", "name": "Awa Diop"},
                   "return_url": "https://shop.example/r"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let moneroo_payment = p["id"].as_str().expect("id").to_string();
    let reference = p["provider_reference"].as_str().expect("ref").to_string();
    moneroo.set(&reference, "status", json!("success"));
    mocks::send_moneroo_webhook(
        &app.base,
        "payment.success",
        &reference,
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    let status_of = |id: String| {
        let app = &app;
        async move {
            app.get_json(&app.api_key, &format!("/v1/payments/{id}"))
                .await
                .1["status"]
                .clone()
        }
    };
    app.eventually(WAIT, "the Moneroo payment succeeded", || async {
        (status_of(moneroo_payment.clone()).await == "succeeded").then_some(())
    })
    .await;
    // An eBilling bill paid, then (at eBilling) expired.
    let (s, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 605000, "currency": "XAF", "provider": "ebilling",
                   "customer": {"email": "client@example.com", "phone": "24174123456", "name": "Jean Dupont"}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let ebilling_payment = p["id"].as_str().expect("id").to_string();
    let bill = p["provider_reference"].as_str().expect("bill").to_string();
    ebilling.pay_bill(&bill);
    mocks::send_ebilling_notification(&app.base, &ebilling_payment, &bill, 605000).await;
    app.eventually(WAIT, "the eBilling payment succeeded", || async {
        (status_of(ebilling_payment.clone()).await == "succeeded").then_some(())
    })
    .await;
    // A Moneroo payout out of that money, paid; Moneroo will later say it failed.
    let (s, payout) = app
        .post_json(
            &app.api_key,
            "/v1/payouts",
            json!({"amount": 3000, "currency": "XOF", "provider": "moneroo",
                   "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
        )
        .await;
    assert_eq!(s, 201, "{payout}");
    let payout_id = payout["id"].as_str().expect("id").to_string();
    let payout_reference: String = {
        use sea_orm::{ColumnTrait, EntityTrait as _, QueryFilter};
        entity::payouts::Entity::find()
            .filter(entity::payouts::Column::Id.eq(payout_id.as_str()))
            .one(&app.db)
            .await
            .expect("query")
            .and_then(|p| p.provider_reference)
            .expect("Moneroo's id")
    };
    moneroo.set(&payout_reference, "status", json!("success"));
    mocks::send_moneroo_webhook(
        &app.base,
        "payout.success",
        &payout_reference,
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    app.eventually(WAIT, "the payout succeeded", || async {
        (app.get_json(&app.api_key, &format!("/v1/payouts/{payout_id}"))
            .await
            .1["status"]
            == "succeeded")
            .then_some(())
    })
    .await;
    // All agree for now.
    let summary = run(&app).await;
    assert_eq!(
        (summary["found"].clone(), summary["checked"].clone()),
        (json!(0), json!(3)),
        "{summary}"
    );
    moneroo.set(&reference, "status", json!("failed"));
    moneroo.set(&payout_reference, "status", json!("failed"));
    ebilling.set(&bill, "state", json!("expired"));

    // The schedule, every second here, on two gateways: one run per firing.
    let mut settings = app.settings.clone();
    settings.gateway.reconcile_schedule = "* * * * * *";
    app.spawn_second_gateway_with(settings.clone()).await;
    app.spawn_second_gateway_with(settings).await;
    app.eventually(WAIT, "the scheduled run found all three", || async {
        (open_items(&app).await.len() == 3).then_some(())
    })
    .await;
    let mut expected = vec![
        (moneroo_payment.clone(), "status_mismatch".to_string()),
        (ebilling_payment.clone(), "status_mismatch".to_string()),
        (payout_id.clone(), "status_mismatch".to_string()),
    ];
    expected.sort();
    assert_eq!(open_items(&app).await, expected);
    // Fired every second by two gateways for a while, it ran once a minute at most.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let scheduled = app
        .count("SELECT count(*) FROM reconciliation_runs WHERE slot NOT LIKE 'manual-%'")
        .await;
    assert!(
        (1..=2).contains(&scheduled),
        "{scheduled} runs: one per minute-slot, whoever fires it"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM reconciliation_items").await,
        3,
        "every run saw the same three items"
    );
}
