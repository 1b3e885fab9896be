//! The ledger against random histories (issue 19, item 5): payments, refunds and payouts
//! drawn from a seeded generator and sent concurrently through the HTTP API, with the
//! providers (Stripe for payments and refunds, Moneroo for payouts, local servers speaking
//! their formats) failing now and then. After every round, and at the end:
//!
//! - no balance is ever negative;
//! - every transaction's entries sum to zero and every stored balance is the sum of its
//!   entries (the admin check);
//! - the available balance is what the objects say moved: payments in, less refunds and
//!   payouts that did not fail;
//! - what the providers were asked to move is what the ledger says moved: Stripe's refunds are
//!   the succeeded refunds, Moneroo's payouts the payouts it acknowledged.
//!
//! A failing seed is printed; rerun with `LEDGER_MODEL_SEEDS=<seed>`.

use futures_util::future::join_all;
use payrail_tests::mocks::{self, Mock};
use payrail_tests::{ADMIN_TOKEN, Options, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ROUNDS: usize = 4;

/// One operation a merchant may send.
#[derive(Debug, Clone)]
enum Op {
    Refund { payment: usize, amount: i64 },
    Payout { amount: i64 },
}

struct World {
    app: TestApp,
    stripe: Mock,
    moneroo: Mock,
}

async fn world() -> World {
    let stripe = mocks::stripe().await;
    let moneroo = mocks::moneroo().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), Some(&moneroo), None),
        start_worker: false,
        ..Options::default()
    })
    .await;
    World {
        app,
        stripe,
        moneroo,
    }
}

/// A Stripe payment of `amount` XOF that Stripe's signed webhook says succeeded.
async fn pay(w: &World, amount: i64) -> Option<String> {
    let (s, p) = w
        .app
        .post_json(
            &w.app.api_key,
            "/v1/payments",
            json!({"amount": amount, "currency": "xof", "provider": "stripe"}),
        )
        .await;
    if s != 201 {
        return None;
    }
    let intent = p["provider_reference"].as_str()?.to_string();
    let object = json!({"id": intent, "object": "payment_intent", "amount": amount,
        "currency": "xof", "status": "succeeded"});
    let event = mocks::stripe_event("payment_intent.succeeded", object);
    let (status, _) = mocks::send_stripe_event(
        &w.app.base,
        &event,
        mocks::STRIPE_WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
    )
    .await;
    assert_eq!(status, 200);
    p["id"].as_str().map(str::to_string)
}

async fn run(w: &World, op: &Op, payments: &[String]) -> u16 {
    match op {
        Op::Refund { payment, amount } => {
            let id = &payments[*payment];
            w.app
                .post_json(
                    &w.app.api_key,
                    &format!("/v1/payments/{id}/refunds"),
                    json!({"amount": amount}),
                )
                .await
                .0
        }
        Op::Payout { amount } => {
            w.app
                .post_json(
                    &w.app.api_key,
                    "/v1/payouts",
                    json!({"amount": amount, "currency": "xof", "provider": "moneroo",
                           "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
                )
                .await
                .0
        }
    }
}

async fn sum(app: &TestApp, sql: &str) -> i64 {
    app.count(&format!(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM {sql}"
    ))
    .await
}

async fn check_properties(w: &World, seed: u64, round: usize) {
    let at = format!("seed {seed}, round {round}");
    let app = &w.app;
    let (_, balance) = app.get_json(&app.api_key, "/v1/balance").await;
    let available = balance["available"][0]["amount"].as_i64().unwrap_or(0);
    assert!(available >= 0, "{at}: negative balance {balance}");
    assert_eq!(
        app.count("SELECT count(*) FROM balances WHERE available < 0 OR pending < 0")
            .await,
        0,
        "{at}"
    );
    let report: Value = app
        .client
        .get(app.url("/v1/admin/ledger/check"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("check")
        .json()
        .await
        .expect("report");
    assert_eq!(report["violations"], json!([]), "{at}: {report}");
    // What the objects say moved.
    let received = sum(app, "payments WHERE status IN ('succeeded', 'refunded')").await;
    let refunded = sum(app, "refunds WHERE status <> 'failed'").await;
    let paid_out = sum(app, "payouts WHERE status <> 'failed'").await;
    assert_eq!(
        available,
        received - refunded - paid_out,
        "{at}: {received} in, {refunded} refunded, {paid_out} paid out"
    );
    // What the providers moved.
    let stripe_refunds: i64 = w
        .stripe
        .objects_where("object", "refund")
        .iter()
        .filter_map(|r| r["amount"].as_i64())
        .sum();
    assert_eq!(
        stripe_refunds,
        sum(app, "refunds WHERE status = 'succeeded'").await,
        "{at}: Stripe refunded what the ledger says"
    );
    let moneroo_payouts: i64 = w
        .moneroo
        .lock()
        .objects
        .values()
        .filter(|o| o.get("recipient").is_some())
        .filter_map(|o| o["amount"].as_i64())
        .sum();
    assert_eq!(
        moneroo_payouts,
        sum(
            app,
            "payouts WHERE status <> 'failed' AND provider_reference IS NOT NULL"
        )
        .await,
        "{at}: Moneroo paid out what the ledger holds as sent"
    );
}

async fn history(seed: u64) {
    let w = world().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut payments: Vec<String> = Vec::new();
    let mut amounts: Vec<i64> = Vec::new();
    for round in 0..ROUNDS {
        let new: Vec<i64> = (0..rng.random_range(1..=3))
            .map(|_| rng.random_range(10..=200) * 100)
            .collect();
        for (id, amount) in join_all(new.iter().map(|a| pay(&w, *a)))
            .await
            .into_iter()
            .zip(&new)
        {
            if let Some(id) = id {
                payments.push(id);
                amounts.push(*amount);
            }
        }
        let ops: Vec<Op> = (0..rng.random_range(3..=8))
            .map(|_| {
                if rng.random_bool(0.5) && !payments.is_empty() {
                    let payment = rng.random_range(0..payments.len());
                    Op::Refund {
                        payment,
                        amount: rng.random_range(1..=amounts[payment]),
                    }
                } else {
                    Op::Payout {
                        amount: rng.random_range(5..=150) * 100,
                    }
                }
            })
            .collect();
        // The providers fail now and then.
        if rng.random_bool(0.3) {
            w.stripe.fail_next(rng.random_range(1..=2));
        }
        if rng.random_bool(0.3) {
            w.moneroo.fail_next(1);
        }
        let answers = join_all(ops.iter().map(|op| run(&w, op, &payments))).await;
        for (op, status) in ops.iter().zip(&answers) {
            assert!(
                matches!(status, 201 | 409 | 422 | 502),
                "seed {seed}: {op:?} answered {status}"
            );
        }
        w.stripe.fail_next(0);
        w.moneroo.fail_next(0);
        check_properties(&w, seed, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_concurrent_histories_keep_the_ledger_balanced_and_true_to_the_providers() {
    let seeds: Vec<u64> = match std::env::var("LEDGER_MODEL_SEEDS") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => vec![7, 19, 2026],
    };
    for seed in seeds {
        eprintln!("ledger model: seed {seed}");
        history(seed).await;
    }
}
