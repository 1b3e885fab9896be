//! API rate limits: a token bucket per API key, shared by every gateway through Redis (in
//! memory in embedded mode), with the merchant's own limit or the server's default.

use std::time::{Duration, Instant};

use gateway::{Application, Settings};
use payrail_tests::{ADMIN_TOKEN, TestApp, unique_name};
use runtime::settings::Env;
use serde_json::{Value, json};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn admin_patch_merchant(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/merchants/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn two_gateways_share_one_bucket_per_key_and_refuse_with_429_and_retry_after() {
    let mut app = TestApp::spawn().await;
    let (second, second_metrics) = app.spawn_second_gateway().await;
    let (merchant_id, key) = app.create_merchant_with_id("Limited").await;
    let (status, body) = app
        .post_json(&key, "/v1/api_keys", json!({"livemode": false}))
        .await;
    assert_eq!(status, 201, "{body}");
    let other_key = body["secret"].as_str().expect("secret").to_string();

    // Bad limits are refused and change nothing.
    for bad in [
        json!({"rate_limit_per_second": 0}),
        json!({"rate_limit_per_second": 1, "rate_limit_burst": 61}),
        json!({"rate_limit_per_second": "1"}),
    ] {
        let (status, body) = admin_patch_merchant(&app, &merchant_id, bad.clone()).await;
        assert!(
            status == 422 || status == 400,
            "{bad} answered {status} {body}"
        );
    }
    let (status, body) = admin_patch_merchant(
        &app,
        &merchant_id,
        json!({"rate_limit_per_second": 1, "rate_limit_burst": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["rate_limit_per_second"], &body["rate_limit_burst"]),
        (&json!(1), &json!(5))
    );

    // Alternate between the two gateways: together they let the burst (5) through, then
    // refuse, though neither alone has seen more than 3 requests.
    let started = Instant::now();
    let mut allowed = 0;
    let mut served_by = [0, 0];
    let mut refused = None;
    let mut remaining = Vec::new();
    for i in 0..10 {
        let base = if i % 2 == 0 { &app.base } else { &second };
        let r = app
            .client
            .get(format!("{base}/v1/payments"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("request");
        if r.status() == 200 {
            allowed += 1;
            served_by[i % 2] += 1;
            assert_eq!(header(&r, "RateLimit-Limit").as_deref(), Some("5"));
            assert_eq!(header(&r, "RateLimit-Policy").as_deref(), Some("5;w=5"));
            remaining.push(header(&r, "RateLimit-Remaining").expect("remaining"));
            assert!(header(&r, "Request-Id").is_some());
        } else {
            refused = Some(r);
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let r = refused.expect("the sixth request (or so) is refused");
    assert!(
        (5..=5 + elapsed.ceil() as usize).contains(&allowed),
        "{allowed} let through in {elapsed:.2}s at 1/s with a burst of 5"
    );
    assert!(served_by[0] >= 2 && served_by[1] >= 2, "{served_by:?}");
    assert_eq!(&remaining[..4], ["4", "3", "2", "1"], "one bucket for both");
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "Retry-After")
        .expect("Retry-After on a 429")
        .parse()
        .expect("seconds");
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&r, "RateLimit-Remaining").as_deref(), Some("0"));
    assert!(header(&r, "Request-Id").is_some());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // Another key of the same merchant shares the merchant's bucket (minting keys does not
    // multiply the rate); another merchant is untouched.
    let (status, _) = app.get_json(&other_key, "/v1/payments").await;
    assert_eq!(
        status, 429,
        "the merchant's bucket is empty for all its keys"
    );
    let (status, _) = app.get_json(&app.api_key, "/v1/payments").await;
    assert_eq!(status, 200, "another merchant is not limited");

    // After Retry-After, a token is back.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _) = app.get_json(&key, "/v1/payments").await;
    assert_eq!(status, 200);

    // Back to the server's default (here far above): every gateway applies it at once.
    let (status, body) = admin_patch_merchant(
        &app,
        &merchant_id,
        json!({"rate_limit_per_second": null, "rate_limit_burst": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rate_limit_per_second"].is_null());
    for _ in 0..10 {
        let r = app
            .client
            .get(format!("{second}/v1/payments"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    let mut refusals = 0;
    for metrics_base in [&app.metrics_base, &second_metrics] {
        let text = app.metrics_text_of(metrics_base).await;
        refusals += text
            .lines()
            .find_map(|l| l.strip_prefix("api_rate_limited_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("api_rate_limited_total is exposed");
    }
    assert_eq!(refusals, 2, "the two 429s are counted");
}

#[tokio::test]
async fn embedded_mode_limits_each_key_in_memory_with_the_default_from_the_environment() {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let settings = Settings::read(&Env::from_lookup(|name| match name {
        "DATABASE_URL" => Some(format!("sqlite://{}?mode=rwc", path.display())),
        "PAYRAIL_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_METRICS_BIND" => Some("127.0.0.1:0".into()),
        "PAYRAIL_RATE_LIMIT_PER_SECOND" => Some("1".into()),
        "PAYRAIL_WEBHOOK_TARGETS" => Some("loopback".into()),
        "PAYRAIL_RATE_LIMIT_BURST" => Some("3".into()),
        _ => None,
    }))
    .expect("settings");
    let app = Application::build(settings).await.expect("builds");
    let key = app
        .bootstrap_sandbox()
        .await
        .expect("bootstrap")
        .expect("first start")
        .api_key;
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client
            .get(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("request");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let _ = stop.send(());
    running.await.expect("join").expect("clean shutdown");
    payrail_tests::remove_sqlite(&path);
}

#[test]
fn a_burst_larger_than_a_minute_of_the_rate_is_refused_at_start_up() {
    let err = Settings::read(&Env::from_pairs(&[
        ("PAYRAIL_RATE_LIMIT_PER_SECOND", "2"),
        ("PAYRAIL_RATE_LIMIT_BURST", "500"),
    ]))
    .expect_err("refused");
    assert_eq!(err.variable, "PAYRAIL_RATE_LIMIT_BURST");
}

/// Issue 20: ten keys of one merchant (nine minted by the first) let through what one key
/// does, not ten times as much.
#[tokio::test]
async fn minting_keys_does_not_multiply_a_merchants_rate() {
    let app = TestApp::spawn().await;
    let (merchant_id, key) = app.create_merchant_with_id("Many keys").await;
    let mut keys = vec![key.clone()];
    for _ in 0..9 {
        let (status, body) = app.post_json(&key, "/v1/api_keys", json!({})).await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["secret"].as_str().expect("secret").to_string());
    }
    let (status, _) = admin_patch_merchant(
        &app,
        &merchant_id,
        json!({"rate_limit_per_second": 1, "rate_limit_burst": 20}),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..200).map(|i| {
        let key = keys[i % keys.len()].clone();
        let app = &app;
        async move { app.get_json(&key, "/v1/payments").await.0 }
    }))
    .await;
    let passed = answers.iter().filter(|s| **s == 200).count();
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(
        (20..=20 + refill).contains(&passed),
        "{passed} of 200 passed with ten keys; the merchant allows 20 at once"
    );
    assert!(answers.iter().all(|s| matches!(s, 200 | 429)));
}

/// Issue 20: when Redis fails, each gateway limits with its own buckets instead of letting
/// everything through, and counts those decisions.
#[tokio::test]
async fn a_failing_redis_falls_back_to_the_gateways_own_buckets() {
    let redis = payrail_tests::TcpProxy::start("127.0.0.1:6379", true).await;
    let app = TestApp::spawn_with(payrail_tests::Options {
        gateway_redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        ..payrail_tests::Options::default()
    })
    .await;
    let (merchant_id, key) = app.create_merchant_with_id("Limited").await;
    let (status, _) = admin_patch_merchant(
        &app,
        &merchant_id,
        json!({"rate_limit_per_second": 1, "rate_limit_burst": 3}),
    )
    .await;
    assert_eq!(status, 200);
    redis.set_enabled(false);
    // At once, so the bucket (1/s) has no time to refill: a request waits on Redis a little
    // before the gateway decides alone.
    let answers = futures_util::future::join_all(
        (0..10).map(|_| async { app.get_json(&key, "/v1/payments").await.0 }),
    )
    .await;
    let passed = answers.iter().filter(|s| **s == 200).count();
    assert!(
        (3..=4).contains(&passed),
        "{passed} of 10 passed with Redis down; the bucket holds 3: {answers:?}"
    );
    let fallbacks = app
        .metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("rate_limit_fallbacks_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("rate_limit_fallbacks_total is exposed");
    assert!(fallbacks >= 10, "{fallbacks}");
}

/// Issue 20: the public routes (the checkout page, here) have a bucket per client address.
#[tokio::test]
async fn public_routes_are_limited_per_address() {
    let mut app = TestApp::spawn().await;
    let payment = app.create_payment(500).await;
    let id = payment["id"].as_str().expect("id");
    let mut settings = app.settings.clone();
    settings.gateway.public_rate_limit = runtime::token_bucket::Quota {
        per_second: 1,
        burst: 5,
    };
    let (limited, _) = app.spawn_second_gateway_with(settings).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..20 {
        let r = app
            .client
            .get(format!("{limited}/sandbox/checkout/{id}"))
            .send()
            .await
            .expect("checkout");
        if r.status() == 429 {
            retry_after = header(&r, "Retry-After");
        }
        statuses.push(r.status().as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=7).contains(&ok), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // The QR code and the sign-in page share the address's bucket.
    let r = app
        .client
        .get(format!("{limited}/dashboard/login"))
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(r.status(), 429);
}

/// A key's bucket and its merchant's are taken from in one round trip, and a refusal by the
/// first does not charge the second: in Redis (the script) and in memory alike.
#[tokio::test]
async fn a_refused_bucket_stops_the_take_and_charges_none_after_it() {
    use runtime::cache::Cache;
    use runtime::token_bucket::Quota;
    let scratch = payrail_tests::ScratchDatabase::create().await;
    let redis = Cache::redis(payrail_tests::REDIS_URL, &scratch.name)
        .await
        .expect("redis is running");
    // A refill of 1 per second cannot add a token within the test's few milliseconds.
    let quota = Quota {
        per_second: 1,
        burst: 2,
    };
    for cache in [redis, Cache::memory()] {
        let allowed = |taken: &[runtime::token_bucket::Admission]| {
            taken.iter().map(|a| a.allowed).collect::<Vec<_>>()
        };
        let both = cache
            .take_tokens(&["k", "m"], quota)
            .await
            .expect("answers");
        assert_eq!(allowed(&both), [true, true]);
        assert_eq!((both[0].remaining, both[1].remaining), (1, 1));
        assert_eq!(
            allowed(&cache.take_tokens(&["k"], quota).await.expect("answers")),
            [true]
        );
        // `k` is empty: refused, and `m` is not charged.
        let refused = cache
            .take_tokens(&["k", "m"], quota)
            .await
            .expect("answers");
        assert_eq!(allowed(&refused), [false], "the take stops at the refusal");
        assert!(refused[0].retry_after_ms > 0);
        let m = cache.take_tokens(&["m"], quota).await.expect("answers");
        assert_eq!(
            (m[0].allowed, m[0].remaining),
            (true, 0),
            "m kept its token"
        );
        assert_eq!(
            allowed(&cache.take_tokens(&["m"], quota).await.expect("answers")),
            [false]
        );
    }
}

/// A key the gateway authenticated before is admitted in one round trip: its buckets are
/// charged only while its shared cache entry still holds what the gateway read. A deleted
/// entry (a revoked key, a changed limit) or a different one charges nothing and sends the
/// request the usual way: in Redis (the script's guard) and in memory alike.
#[tokio::test]
async fn a_known_key_is_admitted_only_while_its_cache_entry_is_unchanged() {
    use gateway::merchants::rate_limits::Limiter;
    use gateway::merchants::{AuthedMerchant, MerchantRateLimit, key_cache_key};
    use runtime::cache::Cache;
    use runtime::token_bucket::Quota;
    let scratch = payrail_tests::ScratchDatabase::create().await;
    let redis = Cache::redis(payrail_tests::REDIS_URL, &scratch.name)
        .await
        .expect("redis is running");
    let defaults = Quota {
        per_second: 1,
        burst: 3,
    };
    let who = AuthedMerchant {
        merchant_id: entity::ids::MerchantId::from_trusted("mer_known".to_string()),
        livemode: false,
        key_id: entity::ids::ApiKeyId::generate(),
        // Its own burst of 2 beats the default's 3: the script is asked for the right quota.
        rate_limit: MerchantRateLimit {
            per_second: Some(1),
            burst: Some(2),
        },
    };
    let (hash, entry_key) = ("ab12", key_cache_key("ab12"));
    for cache in [redis, Cache::memory()] {
        let limiter = Limiter::new(cache.clone());
        assert!(
            limiter
                .admit_known(defaults, hash, &entry_key)
                .await
                .is_none(),
            "a key never seen takes the usual path"
        );
        let entry = who.to_cached();
        cache.set(&entry_key, &entry, Duration::from_secs(60)).await;
        limiter.remember(hash, entry.clone(), who.clone());
        let (admitted, limited) = limiter
            .admit_known(defaults, hash, &entry_key)
            .await
            .expect("a known key with its entry unchanged");
        assert_eq!(admitted, who);
        assert_eq!(
            (
                limited.admission.allowed,
                limited.admission.remaining,
                limited.quota.burst
            ),
            (true, 1, 2)
        );
        // The entry deleted (as revoking the key does): nothing charged, the usual path.
        cache.delete(&entry_key).await;
        assert!(
            limiter
                .admit_known(defaults, hash, &entry_key)
                .await
                .is_none()
        );
        // And forgotten: an entry written again is not trusted until it is read again.
        cache.set(&entry_key, &entry, Duration::from_secs(60)).await;
        assert!(
            limiter
                .admit_known(defaults, hash, &entry_key)
                .await
                .is_none()
        );
        // A different entry (its merchant's limit changed) is not this one either.
        limiter.remember(hash, entry.clone(), who.clone());
        let changed = AuthedMerchant {
            rate_limit: MerchantRateLimit::default(),
            ..who.clone()
        };
        cache
            .set(&entry_key, &changed.to_cached(), Duration::from_secs(60))
            .await;
        assert!(
            limiter
                .admit_known(defaults, hash, &entry_key)
                .await
                .is_none()
        );
        // None of the refused checks took a token: the key's bucket still has its second.
        let key_bucket = format!("rate_limit:{}", who.key_id);
        let left = cache
            .take_tokens(
                &[&key_bucket],
                Quota {
                    per_second: 1,
                    burst: 2,
                },
            )
            .await
            .expect("answers");
        assert_eq!((left[0].allowed, left[0].remaining), (true, 0));
    }
}
