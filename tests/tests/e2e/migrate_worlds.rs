//! Migration 000017 on a database made by the schema before it (issue 19, item 7), on
//! PostgreSQL and on SQLite: every row takes its mode from its payment, payout, event,
//! delivery or its merchant's keys; idempotency records are kept in both modes; the ledger is
//! back-filled from payments, refunds and payouts, balanced, with balances that match; and the
//! migrated data is served by the API in its own world.

use entity::ids::IdKind;
use entity::signature::sha256_hex;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

/// The schema as it was before two worlds and the ledger.
const BEFORE: u32 = 16;

struct Ids {
    merchant: String,
    other: String,
    p1: String,
    p2: String,
    p3: String,
    r1: String,
    r2: String,
    r3: String,
    po1: String,
    po2: String,
    po3: String,
    e1: String,
    e2: String,
    e3: String,
    e4: String,
    we1: String,
    we2: String,
    d1: String,
    d2: String,
    a1: String,
}

impl Ids {
    fn new() -> Ids {
        let id = |k: IdKind| k.generate();
        Ids {
            merchant: id(IdKind::Merchant),
            other: id(IdKind::Merchant),
            p1: id(IdKind::Payment),
            p2: id(IdKind::Payment),
            p3: id(IdKind::Payment),
            r1: id(IdKind::Refund),
            r2: id(IdKind::Refund),
            r3: id(IdKind::Refund),
            po1: id(IdKind::Payout),
            po2: id(IdKind::Payout),
            po3: id(IdKind::Payout),
            e1: id(IdKind::Event),
            e2: id(IdKind::Event),
            e3: id(IdKind::Event),
            e4: id(IdKind::Event),
            we1: id(IdKind::WebhookEndpoint),
            we2: id(IdKind::WebhookEndpoint),
            d1: id(IdKind::WebhookDelivery),
            d2: id(IdKind::WebhookDelivery),
            a1: id(IdKind::WebhookAttempt),
        }
    }
}

const TEST_SECRET: &str = "sk_test_migratedmigratedmigratedmi";
const LIVE_SECRET: &str = "sk_live_migratedmigratedmigratedmi";

/// Rows as the old schema holds them: a merchant with a test and a live key, test and live
/// payments, refunds and payouts in every state, their events, an endpoint, deliveries and an
/// attempt, an idempotency record; and a second merchant with a test key only.
fn old_rows(i: &Ids) -> Vec<String> {
    let t = "'2026-11-20T10:00:00Z'";
    let key = |id: &str, m: &str, secret: &str, live: bool| {
        format!(
            "INSERT INTO api_keys (id, merchant_id, key_hash, prefix, livemode, created_at) VALUES ('{id}', '{m}', '{}', '{}', {live}, {t})",
            sha256_hex(secret.as_bytes()),
            &secret[..12]
        )
    };
    let payment = |id: &str,
                   amount: i64,
                   currency: &str,
                   status: &str,
                   provider: &str,
                   live: bool| {
        format!(
            "INSERT INTO payments (id, merchant_id, amount, currency, status, provider, metadata, amount_refunded, livemode, created_at, updated_at, requires_reconciliation) \
             VALUES ('{id}', '{}', {amount}, '{currency}', '{status}', '{provider}', '{{}}', 0, {live}, {t}, {t}, false)",
            i.merchant
        )
    };
    let refund = |id: &str, payment: &str, amount: i64, status: &str| {
        format!(
            "INSERT INTO refunds (id, merchant_id, payment_id, amount, status, created_at, updated_at) VALUES ('{id}', '{}', '{payment}', {amount}, '{status}', {t}, {t})",
            i.merchant
        )
    };
    let payout = |id: &str, amount: i64, currency: &str, provider: &str, status: &str| {
        format!(
            "INSERT INTO payouts (id, merchant_id, amount, currency, provider, destination, status, created_at, updated_at) \
             VALUES ('{id}', '{}', {amount}, '{currency}', '{provider}', '{{\"type\":\"mobile_money\"}}', '{status}', {t}, {t})",
            i.merchant
        )
    };
    let event = |id: &str, m: &str, kind: &str, payment: Option<&str>, data: Value| {
        format!(
            "INSERT INTO events (id, merchant_id, event_type, payment_id, data, created_at, published_at) VALUES ('{id}', '{m}', '{kind}', {}, '{data}', {t}, {t})",
            payment.map_or("NULL".to_string(), |p| format!("'{p}'"))
        )
    };
    let endpoint = |id: &str, m: &str| {
        format!(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret, status, consecutive_failures, created_at, updated_at) \
             VALUES ('{id}', '{m}', 'https://shop.example.com/hooks', '[\"*\"]', 'whsec_AAAA', 'enabled', 0, {t}, {t})"
        )
    };
    let delivery = |id: &str, event: &str| {
        format!(
            "INSERT INTO webhook_deliveries (id, merchant_id, event_id, endpoint_id, status, attempts, earlier_attempts, created_at, updated_at) \
             VALUES ('{id}', '{}', '{event}', '{}', 'succeeded', 1, 0, {t}, {t})",
            i.merchant, i.we1
        )
    };
    vec![
        format!(
            "INSERT INTO merchants (id, name, created_at, plan) VALUES ('{}', 'Went live', {t}, 'free')",
            i.merchant
        ),
        format!(
            "INSERT INTO merchants (id, name, created_at, plan) VALUES ('{}', 'Still testing', {t}, 'free')",
            i.other
        ),
        key(&IdKind::ApiKey.generate(), &i.merchant, TEST_SECRET, false),
        key(&IdKind::ApiKey.generate(), &i.merchant, LIVE_SECRET, true),
        key(
            &IdKind::ApiKey.generate(),
            &i.other,
            "sk_test_othermerchantothermerchanto",
            false,
        ),
        payment(&i.p1, 5000, "EUR", "succeeded", "simulated", false),
        payment(&i.p2, 10_000, "USD", "succeeded", "stripe", true),
        payment(&i.p3, 700, "EUR", "pending", "simulated", false),
        refund(&i.r1, &i.p1, 1000, "succeeded"),
        refund(&i.r2, &i.p2, 2000, "pending"),
        refund(&i.r3, &i.p1, 500, "failed"),
        payout(&i.po1, 1500, "EUR", "simulated", "succeeded"),
        payout(&i.po2, 3000, "USD", "moneroo", "processing"),
        payout(&i.po3, 200, "EUR", "simulated", "failed"),
        event(
            &i.e1,
            &i.merchant,
            "payment.succeeded",
            Some(&i.p1),
            json!({"id": i.p1}),
        ),
        event(
            &i.e2,
            &i.merchant,
            "payment.succeeded",
            Some(&i.p2),
            json!({"id": i.p2}),
        ),
        event(
            &i.e3,
            &i.merchant,
            "payout.pending",
            None,
            json!({"id": i.po2, "object": "payout"}),
        ),
        event(
            &i.e4,
            &i.merchant,
            "usage.threshold_reached",
            None,
            json!({"object": "usage_threshold"}),
        ),
        endpoint(&i.we1, &i.merchant),
        endpoint(&i.we2, &i.other),
        delivery(&i.d1, &i.e1),
        delivery(&i.d2, &i.e2),
        format!(
            "INSERT INTO webhook_attempts (id, delivery_id, merchant_id, attempt_number, http_status, duration_ms, created_at) VALUES ('{}', '{}', '{}', 1, 200, 12, {t})",
            i.a1, i.d2, i.merchant
        ),
        format!(
            "INSERT INTO idempotency_keys (merchant_id, key, operation, request_hash, response_status, response_body, created_at) VALUES ('{}', 'order-1', 'POST /v1/payments', 'h', 201, '{{}}', {t})",
            i.merchant
        ),
    ]
}

/// The first column of the one row `sql` reads, as `T`.
async fn scalar<T: sea_orm::TryGetable>(db: &DatabaseConnection, sql: &str) -> T {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get_by_index::<T>(0)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

async fn migrate_and_check(url: &str) {
    let db = Database::connect(url).await.expect("connect");
    Migrator::up(&db, Some(BEFORE))
        .await
        .expect("the old schema");
    let ids = Ids::new();
    for sql in old_rows(&ids) {
        db.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    Migrator::up(&db, None).await.expect("migration 000017");
    let mode = |table: &str, id: &str| format!("SELECT livemode FROM {table} WHERE id = '{id}'");
    for (table, id, live) in [
        ("refunds", &ids.r1, false),
        ("refunds", &ids.r2, true),
        ("refunds", &ids.r3, false),
        ("payouts", &ids.po1, false),
        ("payouts", &ids.po2, true),
        ("events", &ids.e1, false),
        ("events", &ids.e2, true),
        ("events", &ids.e3, true),
        ("events", &ids.e4, false),
        ("webhook_endpoints", &ids.we1, true),
        ("webhook_endpoints", &ids.we2, false),
        ("webhook_deliveries", &ids.d1, false),
        ("webhook_deliveries", &ids.d2, true),
        ("webhook_attempts", &ids.a1, true),
    ] {
        assert_eq!(
            scalar::<bool>(&db, &mode(table, id)).await,
            live,
            "{table} {id} should be {}",
            if live { "live" } else { "test" }
        );
    }
    assert_eq!(
        scalar::<i64>(
            &db,
            &format!(
                "SELECT COUNT(*) FROM idempotency_keys WHERE merchant_id = '{}' AND key = 'order-1'",
                ids.merchant
            )
        )
        .await,
        2,
        "kept in both modes"
    );
    // The back-filled ledger: 2 charges, 2 refunds (the failed one moved nothing), 2 payouts.
    assert_eq!(
        scalar::<i64>(&db, "SELECT COUNT(*) FROM balance_transactions").await,
        6
    );
    let balance = |live: bool, currency: &str| {
        format!(
            "SELECT available FROM balances WHERE merchant_id = '{}' AND livemode = {live} AND currency = '{currency}'",
            ids.merchant
        )
    };
    assert_eq!(
        scalar::<i64>(&db, &balance(false, "EUR")).await,
        5000 - 1000 - 1500
    );
    assert_eq!(
        scalar::<i64>(&db, &balance(true, "USD")).await,
        10_000 - 2000 - 3000
    );
    let charge = gateway::ledger::transaction_id_of(&ids.p1);
    assert_eq!(
        scalar::<String>(
            &db,
            &format!("SELECT source_id FROM balance_transactions WHERE id = '{charge}'")
        )
        .await,
        ids.p1
    );
    let report = gateway::ledger::check::run(&db).await.expect("check");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.balances, 2);
    db.close().await.ok();
}

#[tokio::test]
async fn a_postgres_database_of_the_old_schema_migrates_into_two_worlds_and_a_ledger() {
    let scratch = payrail_tests::ScratchDatabase::create().await;
    migrate_and_check(&scratch.url).await;
    // And the migrated data is served in its own world.
    let app = payrail_tests::TestApp::spawn_on_database(&scratch.url).await;
    let (_, test_balance) = app.get_json(TEST_SECRET, "/v1/balance").await;
    let (_, live_balance) = app.get_json(LIVE_SECRET, "/v1/balance").await;
    assert_eq!(
        (
            test_balance["available"][0]["amount"].clone(),
            live_balance["available"][0]["amount"].clone()
        ),
        (json!(2500), json!(5000)),
        "{test_balance} {live_balance}"
    );
    let (_, live_payments) = app.get_json(LIVE_SECRET, "/v1/payments").await;
    let live_id = live_payments["data"][0]["id"]
        .as_str()
        .expect("the live payment");
    assert_eq!(
        app.get_json(TEST_SECRET, &format!("/v1/payments/{live_id}"))
            .await
            .0,
        404
    );
    assert_eq!(
        live_payments["data"][0]["balance_transaction"],
        json!(gateway::ledger::transaction_id_of(live_id).to_string())
    );
}

#[tokio::test]
async fn a_sqlite_database_of_the_old_schema_migrates_into_two_worlds_and_a_ledger() {
    let path = std::env::temp_dir().join(format!("{}.db", payrail_tests::unique_name()));
    migrate_and_check(&format!("sqlite://{}?mode=rwc", path.display())).await;
    payrail_tests::remove_sqlite(&path);
}
