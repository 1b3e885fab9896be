//! Payouts through the API: never more than the available balance, even when requested
//! concurrently; their states and events; and Moneroo's payout wire format, whose webhook is
//! only a reason to re-query.

use std::time::Duration;

use payrail_tests::mocks::{self, MONEROO_WEBHOOK_SECRET};
use payrail_tests::{Behavior, Options, Receiver, TestApp};
use serde_json::{Value, json};

/// A payment of `amount` that succeeded (simulated provider, sandbox completion).
async fn received(app: &TestApp, key: &str, amount: i64, currency: &str) -> String {
    let (s, p) = app
        .post_json(
            key,
            "/v1/payments",
            json!({"amount": amount, "currency": currency, "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let (s, _) = app
        .post_json(
            key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 200);
    id
}

fn wallet(amount: i64, currency: &str, provider: &str) -> Value {
    json!({"amount": amount, "currency": currency, "provider": provider,
           "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"},
           "reference": "withdrawal-1"})
}

async fn payout(
    app: &TestApp,
    key: &str,
    body: Value,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let mut r = app
        .client
        .post(app.url("/v1/payouts"))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idempotency_key {
        r = r.header("Idempotency-Key", k);
    }
    let r = r.send().await.expect("payout");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (up to 10 s) until the API shows payout `id` in `status`.
async fn reaches(app: &TestApp, key: &str, id: &str, status: &str) {
    let path = format!("/v1/payouts/{id}");
    app.eventually(
        Duration::from_secs(10),
        &format!("payout {id} {status}"),
        || async { (app.get_json(key, &path).await.1["status"] == status).then_some(()) },
    )
    .await;
}

async fn held(app: &TestApp, merchant: &str) -> i64 {
    app.count(&format!(
        "SELECT COALESCE(SUM(amount), 0)::bigint FROM payouts WHERE merchant_id = '{merchant}' AND status <> 'failed'"
    ))
    .await
}

#[tokio::test]
async fn payouts_never_exceed_the_available_balance_even_when_sent_at_once() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Seller").await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (s, _) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payout.pending", "payout.processing", "payout.succeeded", "payout.failed"]}),
        )
        .await;
    assert_eq!(s, 201);
    // 2000 received, 500 refunded: 1500 available.
    let first = received(&app, &key, 1000, "eur").await;
    received(&app, &key, 1000, "eur").await;
    let (s, refund) = app
        .post_json(
            &key,
            &format!("/v1/payments/{first}/refunds"),
            json!({"amount": 500}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");

    // Bad requests are refused and record nothing.
    for (body, code) in [
        (
            json!({"amount": 0, "currency": "eur", "provider": "simulated", "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
            "amount_invalid",
        ),
        (
            json!({"amount": 10, "currency": "eur", "provider": "simulated", "destination": {"type": "pigeon"}}),
            "destination_type_invalid",
        ),
        (
            json!({"amount": 10, "currency": "eur", "provider": "simulated", "destination": {"type": "mobile_money", "phone": "12", "operator": "mtn_bj"}}),
            "phone_invalid",
        ),
        (
            json!({"amount": 10, "currency": "eur", "provider": "stripe", "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
            "payouts_not_supported",
        ),
        (
            json!({"amount": 10, "currency": "eur", "provider": "moneroo", "destination": {"type": "bank_account", "account_number": "1", "bank_code": "2", "holder_name": "A"}}),
            "destination_not_supported",
        ),
    ] {
        let (s, answer) = payout(&app, &key, body, None).await;
        assert_eq!(
            (s, answer["error"]["code"].as_str()),
            (422, Some(code)),
            "{answer}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM payouts").await, 0);

    // Six payouts of 400 at once: three fit in 1500, three do not.
    let sends: Vec<_> = (0..6)
        .map(|_| payout(&app, &key, wallet(400, "eur", "simulated"), None))
        .collect();
    let answers = futures_util::future::join_all(sends).await;
    let made: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 422)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((made.len(), refused.len()), (3, 3), "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|b| b["error"]["code"] == "balance_insufficient")
    );
    assert!(
        made.iter()
            .all(|b| b["status"] == "processing" && b["object"] == "payout")
    );
    assert_eq!(held(&app, &merchant).await, 1200);
    // No other currency's money: a USD payout does not fit in 0.
    let (s, _) = payout(&app, &key, wallet(1, "usd", "simulated"), None).await;
    assert_eq!(s, 422);

    // A failed payout gives its amount back; a succeeded one is final.
    let ids: Vec<String> = made
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_string())
        .collect();
    let (s, failed) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payouts/{}/complete", ids[0]),
            json!({"outcome": "failed"}),
        )
        .await;
    assert_eq!((s, failed["status"].as_str()), (200, Some("failed")));
    let (s, done) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payouts/{}/complete", ids[1]),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!((s, done["status"].as_str()), (200, Some("succeeded")));
    // A retry after a lost answer gets the answer (issue 25); the amount below is unchanged.
    let (s, retried) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payouts/{}/complete", ids[1]),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!((s, retried["id"].clone()), (200, done["id"].clone()));
    let (s, again) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payouts/{}/complete", ids[1]),
            json!({"outcome": "failed"}),
        )
        .await;
    assert_eq!(
        (s, again["error"]["code"].as_str()),
        (409, Some("payout_not_completable")),
        "final stays final"
    );
    assert_eq!(held(&app, &merchant).await, 800);
    // Exactly what is left fits: 700; then nothing more.
    let (s, body) = payout(&app, &key, wallet(700, "eur", "simulated"), Some("last")).await;
    assert_eq!(s, 201, "{body}");
    let (s, replay) = payout(&app, &key, wallet(700, "eur", "simulated"), Some("last")).await;
    assert_eq!(
        (s, replay["id"].clone()),
        (201, body["id"].clone()),
        "a replay, not a second payout"
    );
    let (s, _) = payout(&app, &key, wallet(1, "eur", "simulated"), None).await;
    assert_eq!(s, 422);
    assert_eq!(held(&app, &merchant).await, 1500);

    // Listed and retrieved; another merchant sees none of it.
    let (_, list) = app.get_json(&key, "/v1/payouts?limit=100").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(4));
    let (s, one) = app.get_json(&key, &format!("/v1/payouts/{}", ids[1])).await;
    assert_eq!(
        (s, one["destination"]["operator"].as_str()),
        (200, Some("mtn_bj"))
    );
    let (_, other_key) = app.create_merchant_with_id("Other").await;
    assert_eq!(
        app.get_json(&other_key, &format!("/v1/payouts/{}", ids[1]))
            .await
            .0,
        404
    );

    // Every step was a webhook.
    app.eventually(Duration::from_secs(20), "the payout webhooks", || async {
        (receiver.of_type("payout.succeeded").len() == 1
            && receiver.of_type("payout.failed").len() == 1
            && receiver.of_type("payout.processing").len() == 4
            && receiver.of_type("payout.pending").len() == 4)
            .then_some(())
    })
    .await;
    let hook = receiver.of_type("payout.succeeded")[0].json();
    assert_eq!(hook["data"]["id"], ids[1]);
    assert_eq!(hook["data"]["amount"], 400);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"payouts_total{provider="simulated",status="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"payouts_by_status_total{status="processing"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_moneroo_payout_goes_out_in_its_wire_format_and_only_a_requery_settles_it() {
    let moneroo = mocks::moneroo().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(None, Some(&moneroo), None),
        ..Options::default()
    })
    .await;
    let (merchant, key) = app.create_merchant_with_id("Wallets").await;
    received(&app, &key, 10_000, "xof").await;
    let (s, made) = payout(&app, &key, wallet(6000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(made["status"], "processing");
    let sent = moneroo
        .seen()
        .into_iter()
        .find(|r| r.path == "/v1/payouts/initialize")
        .expect("the payout was sent to Moneroo");
    let body: Value = serde_json::from_str(&sent.body).expect("json");
    assert_eq!(body["amount"], 6000, "XOF has no minor unit");
    assert_eq!(body["currency"], "XOF");
    assert_eq!(body["method"], "mtn_bj");
    assert_eq!(body["recipient"]["msisdn"], "22951345020");
    assert_eq!(body["description"], "withdrawal-1");
    let moneroo_id = app
        .count(&format!("SELECT count(*) FROM payouts WHERE merchant_id = '{merchant}' AND provider_reference IS NOT NULL"))
        .await;
    assert_eq!(moneroo_id, 1);
    let reference: String = {
        use sea_orm::EntityTrait as _;
        entity::payouts::Entity::find()
            .one(&app.db)
            .await
            .expect("query")
            .and_then(|p| p.provider_reference)
            .expect("reference")
    };

    // A webhook claiming success is not believed while Moneroo still says pending.
    let (s, _, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payout.success",
        &reference,
        "success",
        MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = made["id"].as_str().expect("id");
    assert_eq!(
        app.get_json(&key, &format!("/v1/payouts/{id}")).await.1["status"],
        "processing"
    );
    // Once Moneroo says success, the next webhook settles it.
    moneroo.set(&reference, "status", json!("success"));
    let (s, _, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payout.success",
        &reference,
        "success",
        MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(s, 200);
    reaches(&app, &key, id, "succeeded").await;

    // A second one that Moneroo fails: its amount is available again.
    let (s, second) = payout(&app, &key, wallet(4000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201, "{second}");
    let (s, _) = payout(&app, &key, wallet(1, "xof", "moneroo"), None).await;
    assert_eq!(s, 422, "10000 received, 6000 + 4000 paid out");
    let second_reference: String = {
        use sea_orm::{ColumnTrait, EntityTrait as _, QueryFilter};
        entity::payouts::Entity::find()
            .filter(entity::payouts::Column::Id.eq(second["id"].as_str().expect("id")))
            .one(&app.db)
            .await
            .expect("query")
            .and_then(|p| p.provider_reference)
            .expect("reference")
    };
    moneroo.set(&second_reference, "status", json!("failed"));
    mocks::send_moneroo_webhook(
        &app.base,
        "payout.failed",
        &second_reference,
        "failed",
        MONEROO_WEBHOOK_SECRET,
    )
    .await;
    let second_id = second["id"].as_str().expect("id").to_string();
    reaches(&app, &key, &second_id, "failed").await;
    let (s, _) = payout(&app, &key, wallet(4000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201, "the failed payout's amount is available again");
}

/// Moneroo's payout that was made for `payout_id`, as the mock holds it.
fn moneroo_payout_for(moneroo: &mocks::Mock, payout_id: &str) -> Value {
    moneroo
        .lock()
        .objects
        .values()
        .find(|o| o["metadata"]["payrail_payout_id"] == payout_id)
        .cloned()
        .expect("Moneroo made the payout")
}

async fn resolve(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/v1/admin/payouts/{id}/resolve")))
        .bearer_auth(payrail_tests::ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("resolve");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn unresolved_gauge(metrics: &str) -> Option<&str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("payouts_unresolved "))
}

/// Moneroo makes a payout but its answer is lost (the call times out): the payout stays
/// `pending` with its amount held, and neither the API nor the poller (running every 200 ms)
/// ever sends it again. Moneroo's webhook, naming the payout in its metadata, settles it once
/// Moneroo confirms that payout is ours. Another lost one is settled by an operator, who
/// found Moneroo never received it: failed, its amount available again.
#[tokio::test]
async fn a_payout_whose_answer_was_lost_is_held_never_sent_twice_and_settled_by_webhook_or_operator()
 {
    let moneroo = mocks::moneroo().await;
    let mut providers = mocks::settings(None, Some(&moneroo), None);
    providers.poll_interval = Duration::from_millis(200);
    providers.poll_age = Duration::ZERO;
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    let (merchant, key) = app.create_merchant_with_id("Wallets").await;
    received(&app, &key, 10_000, "xof").await;
    let initializes = || {
        moneroo
            .seen()
            .iter()
            .filter(|r| r.path == "/v1/payouts/initialize")
            .count()
    };

    moneroo.lock().lose_answers = 1;
    let (s, lost) = payout(&app, &key, wallet(6000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201, "{lost}");
    assert_eq!(lost["status"], "pending", "{lost}");
    let id = lost["id"].as_str().expect("id").to_string();
    assert_eq!(held(&app, &merchant).await, 6000, "its amount stays held");
    let (s, refused) = payout(&app, &key, wallet(4001, "xof", "moneroo"), None).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (422, Some("balance_insufficient"))
    );
    assert_eq!(unresolved_gauge(&app.metrics_text().await), Some("1"));
    // Written by whichever sent it once the provider's call gave up: the API's request, or the
    // poller (every 200 ms, age 0) when it claimed the payout first and the API found it
    // already sent (seen once under a loaded CI: the API answered before the poller's call).
    let lost_log = format!(
        "SELECT count(*) FROM logs WHERE source = 'payouts' AND level = 'error' AND merchant_id = '{merchant}' AND message LIKE '%{id}%answer was lost%'"
    );
    app.eventually(
        Duration::from_secs(20),
        "the lost answer is logged",
        || async { (app.count(&lost_log).await == 1).then_some(()) },
    )
    .await;
    // The poller runs many times meanwhile: it never sends it again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        initializes(),
        1,
        "a payout whose answer was lost is never sent twice"
    );
    assert_eq!(
        app.get_json(&key, &format!("/v1/payouts/{id}")).await.1["status"],
        "pending"
    );

    // An operator cannot settle it with another payout's id: Moneroo's verify names another
    // payout, so nothing changes.
    let (s, other) = payout(&app, &key, wallet(1000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201, "{other}");
    let other_id = other["id"].as_str().expect("id").to_string();
    // The poller (age 0) may claim it before the API's own send: the API then answers
    // `pending` while the poller's call is in flight (seen once in CI). Either way it is sent
    // once and ends `processing`.
    reaches(&app, &key, &other_id, "processing").await;
    assert_eq!(initializes(), 2, "the other payout is sent once");
    let others_reference = moneroo_payout_for(&moneroo, &other_id)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, answer) = resolve(
        &app,
        &id,
        json!({"outcome": "received", "provider_reference": others_reference}),
    )
    .await;
    assert_eq!(s, 502, "{answer}");
    assert_eq!(
        app.get_json(&key, &format!("/v1/payouts/{id}")).await.1["status"],
        "pending"
    );

    // Moneroo's webhook names the payout in its metadata; once Moneroo says success, it is
    // settled under Moneroo's id.
    let made = moneroo_payout_for(&moneroo, &id);
    let moneroo_id = made["id"].as_str().expect("id").to_string();
    moneroo.set(&moneroo_id, "status", json!("success"));
    let made = moneroo_payout_for(&moneroo, &id);
    let (s, _, _) =
        mocks::send_moneroo_event(&app.base, "payout.success", made, MONEROO_WEBHOOK_SECRET).await;
    assert_eq!(s, 200);
    reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM payouts WHERE id = '{id}' AND provider_reference = '{moneroo_id}'"
        ))
        .await,
        1
    );
    assert_eq!(unresolved_gauge(&app.metrics_text().await), Some("0"));
    let (s, answer) = resolve(&app, &id, json!({"outcome": "not_received"})).await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (409, Some("payout_not_unresolved")),
        "a settled payout is not the operator's to change"
    );

    // Another lost one, which the operator found Moneroo never received.
    moneroo.lock().lose_answers = 1;
    let (s, second) = payout(&app, &key, wallet(3000, "xof", "moneroo"), None).await;
    assert_eq!((s, second["status"].as_str()), (201, Some("pending")));
    let second_id = second["id"].as_str().expect("id").to_string();
    for (bad, code) in [
        (json!({"outcome": "received"}), "provider_reference_invalid"),
        (
            json!({"outcome": "not_received", "provider_reference": "x"}),
            "provider_reference_unexpected",
        ),
        (json!({"outcome": "lost"}), "outcome_invalid"),
    ] {
        let (s, answer) = resolve(&app, &second_id, bad).await;
        assert_eq!((s, answer["error"]["code"].as_str()), (422, Some(code)));
    }
    let (s, answer) = resolve(
        &app,
        "po_00000000000000000000000000000000",
        json!({"outcome": "not_received"}),
    )
    .await;
    assert_eq!(s, 404, "{answer}");
    let (s, failed) = resolve(&app, &second_id, json!({"outcome": "not_received"})).await;
    assert_eq!(
        (s, failed["status"].as_str()),
        (200, Some("failed")),
        "{failed}"
    );
    assert_eq!(failed["failure_code"], "not_received_by_provider");
    // 10,000 received, 6,000 and 1,000 paid out: the failed 3,000 is available again.
    let (s, _) = payout(&app, &key, wallet(3000, "xof", "moneroo"), None).await;
    assert_eq!(s, 201);
}

/// A gateway that stopped between recording a payout and sending it left it pending, never
/// sent: the poller (through `run_until_stopped`) sends it, once.
#[tokio::test]
async fn a_payout_recorded_but_never_sent_is_sent_by_the_poller_once() {
    let moneroo = mocks::moneroo().await;
    let mut providers = mocks::settings(None, Some(&moneroo), None);
    providers.poll_interval = Duration::from_millis(200);
    providers.poll_age = Duration::ZERO;
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    let (merchant, _) = app.create_merchant_with_id("Wallets").await;
    let id = "po_0123456789abcdef0123456789abcdef";
    app.count(&format!(
        "WITH p AS (INSERT INTO payouts (id, merchant_id, amount, currency, provider, destination, status, created_at, updated_at)
         VALUES ('{id}', '{merchant}', 2500, 'XOF', 'moneroo',
                 '{{\"type\": \"mobile_money\", \"phone\": \"22951345020\", \"operator\": \"mtn_bj\"}}',
                 'pending', now(), now()) RETURNING 1) SELECT count(*) FROM p"
    ))
    .await;
    app.eventually(Duration::from_secs(10), "the poller sent it", || async {
        (app.count(&format!(
            "SELECT count(*) FROM payouts WHERE id = '{id}' AND status = 'processing' AND provider_reference IS NOT NULL AND sent_at IS NOT NULL"
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sent: Vec<_> = moneroo
        .seen()
        .into_iter()
        .filter(|r| r.path == "/v1/payouts/initialize")
        .collect();
    assert_eq!(sent.len(), 1, "sent once");
    assert!(sent[0].body.contains(id));
}
