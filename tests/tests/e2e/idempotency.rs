//! Idempotency-Key: replays, other bodies refused, concurrent requests with one key, a claim
//! left by a crash, and what a record may not keep (secrets).

use payrail_tests::{Options, TestApp, mocks};
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn idempotency_replays_refuses_other_bodies_and_survives_concurrency() {
    let app = TestApp::spawn().await;
    let body =
        json!({"amount": 990, "currency": "usd", "provider": "simulated", "reference": "order-1"});
    let send = |key: &'static str, body: Value| {
        app.client
            .post(app.url("/v1/payments"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("k1", body.clone()).await.expect("send");
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let replay = send("k1", body.clone()).await.expect("send");
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(
        replay, first,
        "the first response, byte for byte in meaning"
    );
    let mut other = body.clone();
    other["amount"] = json!(991);
    let conflict = send("k1", other).await.expect("send");
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        conflict.json::<Value>().await.expect("json")["error"]["code"],
        "idempotency_key_reused"
    );

    // Ten at once with a fresh key: one payment, ten identical answers.
    let answers = futures_util::future::join_all((0..10).map(|_| async {
        let r = send("k2", body.clone()).await.expect("send");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    }))
    .await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 201, "{b}");
            b["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "concurrent duplicates create one payment");
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'payment.pending'")
            .await,
        2
    );
}

#[tokio::test]
async fn parallel_refunds_with_one_key_make_one_refund() {
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    let path = format!("/v1/payments/{id}/refunds");
    let results = futures_util::future::join_all(
        (0..4).map(|_| post_with_key(&app, &path, "refund-once", json!({"amount": 100}))),
    )
    .await;
    for (status, body) in &results {
        assert!(
            *status == 201 || (*status == 409 && body["error"]["code"] == "idempotency_key_in_use"),
            "{status} {body}"
        );
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM refunds WHERE payment_id = '{id}'"
        ))
        .await,
        1,
        "{results:?}"
    );
    // Retried after the first finished: the same refund, replayed.
    let (status, again) = post_with_key(&app, &path, "refund-once", json!({"amount": 100})).await;
    assert_eq!(status, 201, "{again}");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["amount_refunded"].as_i64(), Some(100));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM refunds WHERE payment_id = '{id}'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn parallel_creates_with_one_key_call_the_provider_once() {
    let stripe = mocks::stripe().await;
    stripe.delay(Some(Duration::from_millis(300)));
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    let body = json!({"amount": 2000, "currency": "usd", "provider": "stripe"});
    let results = futures_util::future::join_all(
        (0..5).map(|_| post_with_key(&app, "/v1/payments", "create-once", body.clone())),
    )
    .await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert!(!created.is_empty(), "{results:?}");
    for (status, body) in &results {
        assert!(
            *status == 201 || (*status == 409 && body["error"]["code"] == "idempotency_key_in_use"),
            "{status} {body}"
        );
    }
    let intents = stripe
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/v1/payment_intents")
        .count();
    assert_eq!(intents, 1, "one PaymentIntent for one key");
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
}

#[tokio::test]
async fn a_claim_left_by_a_crash_expires_and_the_retry_reuses_its_payment_id() {
    let app = TestApp::spawn().await;
    let body = json!({"amount": 700, "currency": "usd", "provider": "simulated"});
    // The fingerprint of this body, taken from a request that completed.
    let (status, _) = post_with_key(&app, "/v1/payments", "first", body.clone()).await;
    assert_eq!(status, 201);
    // A request with key "crashed" claimed its key, noted its payment id, and died.
    let noted = entity::ids::PaymentId::generate();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO idempotency_keys (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at)
             SELECT merchant_id, livemode, 'crashed', operation, request_hash, 0, '{noted}', now() - interval '2 minutes'
             FROM idempotency_keys WHERE key = 'first'"
        ))
        .await
        .expect("claim");
    let (status, p) = post_with_key(&app, "/v1/payments", "crashed", body.clone()).await;
    assert_eq!(status, 201, "an expired claim is taken over: {p}");
    assert_eq!(
        p["id"].as_str(),
        Some(noted.as_str()),
        "the retry reuses the noted id"
    );
    // A fresh claim is not taken over.
    app.db
        .execute_unprepared(
            "INSERT INTO idempotency_keys (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at)
             SELECT merchant_id, livemode, 'busy', operation, request_hash, 0, '', now()
             FROM idempotency_keys WHERE key = 'first'",
        )
        .await
        .expect("claim");
    let (status, b) = post_with_key(&app, "/v1/payments", "busy", body).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_use"))
    );
}

#[tokio::test]
async fn endpoint_secrets_are_not_kept_in_idempotency_records_but_replays_show_them() {
    let app = TestApp::spawn().await;
    let body = json!({"url": "https://example.com/hook", "enabled_events": ["*"]});
    let (status, first) = post_with_key(&app, "/v1/webhook_endpoints", "we-1", body.clone()).await;
    assert_eq!(status, 201, "{first}");
    let secret = first["secret"]
        .as_str()
        .expect("secret shown at creation")
        .to_string();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM idempotency_keys WHERE response_body LIKE '%{secret}%'"
        ))
        .await,
        0,
        "the secret is not stored with the idempotent response"
    );
    let (status, replay) = post_with_key(&app, "/v1/webhook_endpoints", "we-1", body).await;
    assert_eq!((status, replay["id"].clone()), (201, first["id"].clone()));
    assert_eq!(replay["secret"].as_str(), Some(secret.as_str()));
}

/// A claim lives as long as its request (issue 25): a request whose provider takes longer than
/// `CLAIM_TTL` keeps its key (a duplicate gets 409, the provider is called once), while a
/// claim nobody refreshes any more (its process died) is taken over at once by the retry.
#[tokio::test]
async fn a_live_requests_claim_is_kept_and_a_dead_ones_is_taken_over_at_once() {
    let stripe = mocks::stripe().await;
    let ttl = gateway::core::idempotency::CLAIM_TTL;
    let mut providers = mocks::settings(Some(&stripe), None, None);
    // The provider answers, slowly: after CLAIM_TTL, within the call's timeout.
    providers.timeout = ttl + Duration::from_secs(10);
    let app = std::sync::Arc::new(
        TestApp::spawn_with(Options {
            providers,
            ..Options::default()
        })
        .await,
    );
    let body = json!({"amount": 2000, "currency": "usd", "provider": "stripe"});
    // Long enough that the duplicate below stops waiting for it (WAIT_FOR_FIRST) first.
    stripe.delay(Some(ttl + Duration::from_secs(5)));
    let first = {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { post_with_key(&app, "/v1/payments", "slow", body).await })
    };
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    let (status, busy) = post_with_key(&app, "/v1/payments", "slow", body.clone()).await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_use")),
        "a live request keeps its key past CLAIM_TTL: {busy}"
    );
    let (status, made) = first.await.expect("the first request");
    assert_eq!(status, 201, "{made}");
    let intents = stripe
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/v1/payment_intents")
        .count();
    assert_eq!(intents, 1, "the provider was called once");
    stripe.delay(None);
    let (status, replay) = post_with_key(&app, "/v1/payments", "slow", body.clone()).await;
    assert_eq!((status, &replay["id"]), (201, &made["id"]));

    // A claim last refreshed just over CLAIM_TTL ago: its process is gone.
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO idempotency_keys (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at)
             SELECT merchant_id, livemode, 'orphaned', operation, request_hash, 0, '', now() - interval '{} milliseconds'
             FROM idempotency_keys WHERE key = 'slow'",
            ttl.as_millis() + 500
        ))
        .await
        .expect("an orphaned claim");
    let started = std::time::Instant::now();
    let (status, taken) = post_with_key(&app, "/v1/payments", "orphaned", body).await;
    assert_eq!(
        status, 201,
        "the retry takes the orphaned claim over: {taken}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once, not after a wait"
    );
}

/// A claim dies with its owner (issue 25 item 4), seconds before its heartbeat would go stale:
/// a claim of a process PostgreSQL no longer sees, or of this process but no request of it,
/// is taken over at once; a claim whose owner still holds its lock answers 409 as Stripe does,
/// until that owner is gone.
#[tokio::test]
async fn a_claim_is_taken_over_once_its_owner_is_gone_and_not_before() {
    let app = TestApp::spawn().await;
    let body = json!({"amount": 1200, "currency": "usd", "provider": "simulated"});
    let (status, _) = post_with_key(&app, "/v1/payments", "template", body.clone()).await;
    assert_eq!(status, 201);
    // A fresh claim (heartbeat just now) for `key`, owned by `owner`.
    let orphan = |key: &'static str, owner: i64| {
        let db = app.db.clone();
        async move {
            db.execute_unprepared(&format!(
                "INSERT INTO idempotency_keys (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at, owner)
                 SELECT merchant_id, livemode, '{key}', operation, request_hash, 0, '', now(), {owner}
                 FROM idempotency_keys WHERE key = 'template'"
            ))
            .await
            .expect("a claim");
        }
    };
    let takes_over_at_once = |key: &'static str, why: &'static str| {
        let (app, body) = (&app, body.clone());
        async move {
            let started = std::time::Instant::now();
            let (status, made) = post_with_key(app, "/v1/payments", key, body).await;
            assert_eq!(status, 201, "{why}: {made}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{why}: at once, not after the heartbeat's {:?}",
                gateway::core::idempotency::CLAIM_TTL
            );
        }
    };

    // Another process, alive: a connection of its holds its lock.
    let other_process: i64 = 0x1234_5678_9abc;
    let other = runtime::db::connect_with(&app.settings.runtime.database_url, 1)
        .await
        .expect("another process's connection");
    other
        .execute_unprepared(&format!("SELECT pg_advisory_lock_shared({other_process})"))
        .await
        .expect("its lock");
    orphan("live-owner", other_process).await;
    let (status, busy) = post_with_key(&app, "/v1/payments", "live-owner", body.clone()).await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_use")),
        "a claim whose owner is alive is kept: {busy}"
    );
    // That process dies: its connections close, its lock goes with them.
    other.close().await.expect("close");
    takes_over_at_once("live-owner", "once its owner died").await;

    orphan("never-seen", 0x0bad_cafe).await;
    takes_over_at_once(
        "never-seen",
        "a claim of a process nobody holds the lock of",
    )
    .await;

    // This process's own claim that no request of it holds (it ended without giving the key
    // back, as when the database was cut mid-request).
    orphan("ours", *runtime::db::PROCESS_KEY).await;
    takes_over_at_once("ours", "a claim of ours that no request holds").await;
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE response_status = 0")
            .await,
        0,
        "every claim was taken over and finished"
    );
}
