//! Usage metering through the production paths: counted as requests, payments, deliveries and
//! log entries happen (gateway and worker, through Redis), flushed to the database by the
//! gateway's schedule without counting twice, and reported per merchant and month.

use std::time::Duration;

use payrail_tests::{ADMIN_TOKEN, Behavior, Receiver, TestApp};
use serde_json::{Value, json};

fn month_now() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

async fn flushed(app: &TestApp, merchant: &str, metric: &str) -> i64 {
    app.count(&format!(
        "SELECT COALESCE(SUM(value), 0)::bigint FROM usage_counters WHERE merchant_id = '{merchant}' AND month = '{}' AND metric = '{metric}'",
        month_now()
    ))
    .await
}

/// POSTs `body` with `Transfer-Encoding: chunked` (in two chunks, no Content-Length), as a
/// streaming client does; the answer's status.
async fn post_chunked(base: &str, key: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let (a, b) = body.split_at(body.len() / 2);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn usage_is_counted_per_merchant_flushed_once_and_reported_by_month() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Metered").await;
    let (other, other_key) = app.create_merchant_with_id("Other").await;
    let receiver = Receiver::start(Behavior::Statuses(vec![500], 200)).await;
    // The request bodies sent, as the client sends them (with a Content-Length).
    let mut request_bytes = 0;
    let mut post = async |path: &str, body: Value| {
        request_bytes += serde_json::to_vec(&body).expect("json").len();
        let (s, answer) = app.post_json(&key, path, body).await;
        assert_eq!(s, 201, "{answer}");
    };
    post(
        "/v1/webhook_endpoints",
        json!({"url": receiver.url, "enabled_events": ["payment.pending"]}),
    )
    .await;
    for (amount, currency) in [(1500, "eur"), (5000, "xaf")] {
        post(
            "/v1/payments",
            json!({"amount": amount, "currency": currency, "provider": "simulated"}),
        )
        .await;
    }
    let context = json!({"sku": "A1"});
    post(
        "/v1/logs",
        json!({"level": "info", "message": "stock low", "source": "shop", "context": context}),
    )
    .await;
    let (s, _) = app.get_json(&other_key, "/v1/payments").await;
    assert_eq!(s, 200);
    // Both webhooks delivered: the first attempt of one failed, so three attempts in all.
    app.eventually(Duration::from_secs(20), "both webhooks", || async {
        (receiver.of_type("payment.pending").len() == 3).then_some(())
    })
    .await;
    // Deliveries and attempts are metered once committed, a moment after the receiver has
    // the request: read the usage once they are.
    let scope = entity::ids::Scope::new(entity::ids::MerchantId::from_trusted(&merchant), false);
    app.eventually(
        Duration::from_secs(10),
        "the deliveries and attempts metered",
        || async {
            let counts = runtime::usage::of_scope(&app.db, &app.state.cache, &scope, &month_now())
                .await
                .expect("usage");
            (counts.get(runtime::usage::metric::WEBHOOK_ATTEMPTS) == Some(&3)
                && counts.get(runtime::usage::metric::WEBHOOK_DELIVERIES) == Some(&2))
            .then_some(())
        },
    )
    .await;

    let (s, usage) = app.get_json(&key, "/v1/usage").await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["object"], "usage");
    assert_eq!(usage["merchant_id"], merchant);
    assert_eq!(usage["month"], month_now());
    assert_eq!(
        usage["api_requests"], 4,
        "endpoint, two payments, one log: {usage}"
    );
    assert_eq!(usage["payments_created"], 2);
    assert_eq!(
        usage["payment_volume"],
        json!([{"currency": "EUR", "amount": 1500}, {"currency": "XAF", "amount": 5000}])
    );
    assert_eq!(usage["webhook_deliveries"], 2);
    assert_eq!(usage["webhook_attempts"], 3);
    assert_eq!(
        usage["log_bytes"].as_i64(),
        Some(("stock low".len() + context.to_string().len()) as i64)
    );
    assert_eq!(usage["request_bytes"].as_u64(), Some(request_bytes as u64));
    assert!(usage["response_bytes"].as_i64().unwrap_or(0) > 500);

    // The gateway's schedule moves the metered counts to the database, once; payments and
    // their volume are counted from the payments table, never metered.
    app.eventually(Duration::from_secs(10), "the flush", || async {
        (flushed(&app, &merchant, "webhook_attempts").await == 3
            && flushed(&app, &merchant, "webhook_deliveries").await == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        flushed(&app, &merchant, "webhook_attempts").await,
        3,
        "not twice"
    );
    assert_eq!(flushed(&app, &merchant, "payments_created").await, 0);
    assert_eq!(flushed(&app, &merchant, "volume:EUR").await, 0);
    let metrics = app.metrics_text().await;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("usage_counters_flushed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(counted >= 6, "the flushes are counted: {counted}");
    assert!(metrics.contains("usage_flush_failures_total 0"));
    let (_, again) = app.get_json(&key, "/v1/usage").await;
    assert_eq!(again["payments_created"], 2, "database + cache, not both");
    assert_eq!(again["api_requests"], 5, "the first GET counted too");

    // Another merchant's usage is its own; another month is empty; a bad month is a 422.
    // A chunked body (no Content-Length) is counted as it is read.
    let chunked = r#"{"level": "warning", "message": "sent in chunks", "source": "shop"}"#;
    assert_eq!(
        post_chunked(&app.base, &other_key, "/v1/logs", chunked).await,
        201
    );
    let (_, theirs) = app.get_json(&other_key, "/v1/usage").await;
    assert_eq!(theirs["api_requests"], 2);
    assert_eq!(theirs["request_bytes"].as_u64(), Some(chunked.len() as u64));
    assert_eq!(theirs["payments_created"], 0);
    let (s, past) = app.get_json(&key, "/v1/usage?month=2020-01").await;
    assert_eq!(s, 200);
    assert_eq!(past["api_requests"], 0);
    assert_eq!(past["payment_volume"], json!([]));
    for bad in ["2026-13", "november", "2026-1"] {
        let (s, body) = app.get_json(&key, &format!("/v1/usage?month={bad}")).await;
        assert_eq!(s, 422, "{bad}");
        assert_eq!(body["error"]["code"], "month_invalid");
    }

    // Operators see every merchant's month, and only with the admin token.
    app.eventually(
        Duration::from_secs(10),
        "the other merchant flushed",
        || async { (flushed(&app, &other, "api_requests").await >= 1).then_some(()) },
    )
    .await;
    let listing: Value = app
        .client
        .get(app.url(&format!("/v1/admin/usage?month={}", month_now())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let of = |id: &str| {
        listing["data"]
            .as_array()
            .and_then(|d| d.iter().find(|u| u["merchant_id"] == id).cloned())
            .unwrap_or_else(|| panic!("{id} in {listing}"))
    };
    assert_eq!(of(&merchant)["payments_created"], 2);
    assert!(of(&other)["api_requests"].as_i64().unwrap_or(0) >= 1);
    let (s, _) = app.get_json(&key, "/v1/admin/usage").await;
    assert_eq!(s, 401, "a merchant key is no admin token");
}

async fn patch_merchant(app: &TestApp, merchant: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/merchants/{merchant}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_hard_limit_refuses_with_quota_exceeded_until_the_month_ends_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Capped").await;
    // Bad plans change nothing.
    let (s, body) = patch_merchant(&app, &merchant, json!({"plan": "gold"})).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("plan_invalid"))
    );
    let (s, body) = patch_merchant(
        &app,
        &merchant,
        json!({"plan": "custom", "usage_limits": {"payments": 2}}),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("usage_limits_invalid"))
    );
    let (s, _) = patch_merchant(
        &app,
        &merchant,
        json!({"usage_limits": {"payments_created": -5}}),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM merchants WHERE id = '{merchant}' AND plan = 'unlimited' AND usage_limits IS NULL")).await,
        1
    );

    let (s, updated) = patch_merchant(
        &app,
        &merchant,
        json!({"plan": "custom", "usage_limits": {"payments_created": 2}}),
    )
    .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["plan"], "custom");
    assert_eq!(updated["usage_limits"], json!({"payments_created": 2}));

    let pay = |idempotency_key: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            app.client
                .post(app.url("/v1/payments"))
                .bearer_auth(&key)
                .header("Idempotency-Key", idempotency_key)
                .json(&json!({"amount": 1000, "currency": "eur", "provider": "simulated"}))
                .send()
                .await
                .expect("payment")
        }
    };
    assert_eq!(pay("first").await.status(), 201);
    assert_eq!(pay("second").await.status(), 201);
    let refused = pay("third").await;
    assert_eq!(refused.status(), 429);
    let retry_after: i64 = refused.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    let reset = gateway::usage::quotas::next_month(chrono::Utc::now());
    let until_reset = (reset - chrono::Utc::now()).num_seconds();
    assert!(
        retry_after > 0 && retry_after <= until_reset + 1,
        "{retry_after} vs {until_reset}"
    );
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("custom plan allows 2 payments_created"),
        "{message}"
    );
    assert!(
        message.contains(&entity::event::rfc3339(reset)),
        "{message}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM payments WHERE merchant_id = '{merchant}'"
        ))
        .await,
        2,
        "the refused payment was not made"
    );
    // A retry of a payment already made still gets its answer; other calls still work.
    let replay = pay("first").await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.get_json(&key, "/v1/payments").await.0, 200);
    assert!(
        app.metrics_text()
            .await
            .contains("api_quota_exceeded_total 1")
    );

    // A limit of 0 API requests refuses every call at once; a bigger plan lifts it.
    let (s, _) = patch_merchant(
        &app,
        &merchant,
        json!({"usage_limits": {"api_requests": 0}}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = app.get_json(&key, "/v1/payments").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("quota_exceeded"))
    );
    let (s, _) = patch_merchant(
        &app,
        &merchant,
        json!({"plan": "pro", "usage_limits": null}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(app.get_json(&key, "/v1/payments").await.0, 200);
    assert_eq!(
        pay("fourth").await.status(),
        201,
        "pro allows far more payments"
    );
}

#[tokio::test]
async fn crossing_80_then_95_percent_of_a_limit_is_alerted_once_each_by_the_schedule() {
    // The daily 06:00 check, every second here, through the gateway's own schedule.
    let app = TestApp::spawn_with(payrail_tests::Options {
        usage_check_schedule: "* * * * * *",
        ..payrail_tests::Options::default()
    })
    .await;
    let (merchant, key) = app.create_merchant_with_id("Watched").await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (s, _) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["usage.threshold_reached"]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = patch_merchant(
        &app,
        &merchant,
        json!({"plan": "custom", "usage_limits": {"payments_created": 10}}),
    )
    .await;
    assert_eq!(s, 200);
    let create = |n: usize| {
        let app = &app;
        let key = key.clone();
        async move {
            for _ in 0..n {
                let (s, _) = app
                    .post_json(
                        &key,
                        "/v1/payments",
                        json!({"amount": 100, "currency": "usd", "provider": "simulated"}),
                    )
                    .await;
                assert_eq!(s, 201);
            }
        }
    };
    let alerts = || receiver.of_type("usage.threshold_reached");
    create(7).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(alerts().is_empty(), "70 % is under every threshold");
    create(1).await;
    app.eventually(Duration::from_secs(15), "the 80 % alert", || async {
        (!alerts().is_empty()).then_some(())
    })
    .await;
    let first = alerts()[0].json();
    assert_eq!(
        first["data"],
        json!({"object": "usage_threshold", "month": month_now(), "metric": "payments_created",
               "threshold_percent": 80, "limit": 10, "used": 8, "plan": "custom", "hard": true})
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        alerts().len(),
        1,
        "once a month, however often the check runs"
    );
    create(2).await;
    app.eventually(Duration::from_secs(15), "the 95 % alert", || async {
        (alerts().len() == 2).then_some(())
    })
    .await;
    let second = alerts()[1].json();
    assert_eq!(second["data"]["threshold_percent"], 95);
    assert_eq!(second["data"]["used"], 10);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(alerts().len(), 2);
    // Usage is the account's: each alert is an event and a log entry in both modes, so a
    // merchant still testing and one gone live both hear of it (this endpoint is test's).
    for livemode in [false, true] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM logs WHERE merchant_id = '{merchant}' AND livemode = {livemode} AND source = 'usage' AND level = 'warning'"
            ))
            .await,
            2
        );
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM events WHERE merchant_id = '{merchant}' AND livemode = {livemode} AND event_type = 'usage.threshold_reached'"
            ))
            .await,
            2
        );
    }
    assert!(
        app.metrics_text()
            .await
            .contains("usage_thresholds_reached_total 2")
    );
}

/// Counts a merchant's API requests one at a time while another task flushes as fast as it can
/// and a third reads: every read lies between what was counted before it began and what was
/// counted by its end. Counts in transit (taken from the cache, not yet committed) once made
/// a read come up short.
async fn reads_during_flushes_see_every_count_once(
    db: &sea_orm::DatabaseConnection,
    cache: &runtime::cache::Cache,
    merchant: &str,
) {
    use runtime::usage::{self, metric};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    let scope = entity::ids::Scope::test(entity::ids::MerchantId::from_trusted(merchant));
    let month = month_now();
    // Counts begun and counts finished: a read may or may not see one in between.
    let begun = Arc::new(AtomicI64::new(0));
    let counted = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Reads wait for a flush-free moment, so on a busy host few fit in 400 counts: counting
    // goes on until enough reads have overlapped it (a read takes at most about a second).
    let reads_made = Arc::new(AtomicI64::new(0));
    let counting = {
        let (cache, scope, begun, counted, done, reads_made) = (
            cache.clone(),
            scope.clone(),
            begun.clone(),
            counted.clone(),
            done.clone(),
            reads_made.clone(),
        );
        tokio::spawn(async move {
            for n in 0..20_000 {
                if n >= 400 && reads_made.load(Ordering::SeqCst) > 20 {
                    break;
                }
                begun.fetch_add(1, Ordering::SeqCst);
                cache
                    .count_usage(&scope, &[(metric::API_REQUESTS, 1)])
                    .await;
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let flushing = {
        let (db, cache, done) = (db.clone(), cache.clone(), done.clone());
        tokio::spawn(async move {
            let mut flushes = 0;
            // Far more often than the gateway's 10 s, yet with gaps a read can fall into.
            while !done.load(Ordering::SeqCst) {
                usage::flush(&db, &cache).await.expect("flush");
                flushes += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            flushes
        })
    };
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) {
        let low = counted.load(Ordering::SeqCst);
        let seen = usage::of_scope(db, cache, &scope, &month)
            .await
            .expect("read")
            .get(metric::API_REQUESTS)
            .copied()
            .unwrap_or(0);
        let high = begun.load(Ordering::SeqCst);
        assert!(
            (low..=high).contains(&seen),
            "read {seen} while {low}..={high} were counted (after {reads} reads)"
        );
        reads += 1;
        reads_made.store(reads, Ordering::SeqCst);
    }
    counting.await.expect("counting");
    let flushes = flushing.await.expect("flushing");
    assert!(
        reads > 20 && flushes > 20,
        "the reads and flushes overlapped: {reads} reads, {flushes} flushes"
    );
    usage::flush(db, cache).await.expect("last flush");
    let total = usage::of_scope(db, cache, &scope, &month)
        .await
        .expect("read");
    assert_eq!(total[metric::API_REQUESTS], 400, "nothing lost or doubled");
}

#[tokio::test]
async fn a_read_during_flushes_never_misses_nor_doubles_a_count_in_redis_or_in_memory() {
    let app = TestApp::spawn().await;
    let (shared, _) = app.create_merchant_with_id("Read in Redis").await;
    reads_during_flushes_see_every_count_once(&app.db, &app.state.cache, &shared).await;
    let (embedded, _) = app.create_merchant_with_id("Read in memory").await;
    reads_during_flushes_see_every_count_once(&app.db, &runtime::cache::Cache::memory(), &embedded)
        .await;
}

/// An API call's cache invalidations (a new payment drops its merchant's cached recent list)
/// wait for the call's end and go to Redis with its usage, in the round trip it makes anyway;
/// the answer still comes after both. Outside a call, a delete is made at once.
#[tokio::test]
async fn keys_a_call_drops_go_with_its_usage_before_it_answers() {
    use entity::ids::{MerchantId, Scope};
    use runtime::cache::Cache;
    let scratch = payrail_tests::ScratchDatabase::create().await;
    let redis = Cache::redis(payrail_tests::REDIS_URL, &scratch.name)
        .await
        .expect("redis is running");
    let merchant = format!("mer_drop_{}", uuid::Uuid::new_v4().simple());
    let scope = Scope::new(MerchantId::from_trusted(merchant.clone()), false);
    let month = runtime::usage::month_of(chrono::Utc::now());
    for cache in [redis, Cache::memory()] {
        cache.set("recent", "cached", Duration::from_secs(60)).await;
        let ((), dropped) = Cache::gathering_deletes(async {
            cache.delete_before_answer("recent").await;
            assert_eq!(
                cache.get("recent").await.as_deref(),
                Some("cached"),
                "kept until the call settles"
            );
        })
        .await;
        assert_eq!(dropped, ["recent"]);
        cache
            .settle_request(
                Some(&scope),
                &[(runtime::usage::metric::API_REQUESTS, 1)],
                &dropped,
            )
            .await;
        assert_eq!(cache.get("recent").await, None, "dropped with the usage");
        let (pending, _) = cache
            .pending_usage(&format!("{merchant}:test"), &month)
            .await;
        assert_eq!(
            pending.get(runtime::usage::metric::API_REQUESTS),
            Some(&1),
            "and the usage counted"
        );

        cache
            .set("elsewhere", "cached", Duration::from_secs(60))
            .await;
        cache.delete_before_answer("elsewhere").await;
        assert_eq!(
            cache.get("elsewhere").await,
            None,
            "outside a call: at once"
        );
    }
}
