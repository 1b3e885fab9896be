//! Issue 8's defects, each shown by a test that failed before its fix: money under
//! concurrency, forged or hostile input, and configuration that used to be accepted silently.

use std::time::Duration;

use payrail_tests::{Behavior, Options, Receiver, TcpProxy, TestApp, mocks};
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

/// A succeeded sandbox payment (a test card succeeds at once) of `amount` cents.
async fn succeeded_payment(app: &TestApp, amount: i64) -> String {
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": amount, "currency": "usd", "provider": "simulated",
                "payment_method": {"type": "card", "card": {"number": "4242424242424242",
                "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (201, Some("succeeded")),
        "{p}"
    );
    p["id"].as_str().expect("id").to_string()
}

async fn refund(app: &TestApp, id: &str, amount: Option<i64>, key: Option<&str>) -> (u16, Value) {
    let body = match amount {
        Some(a) => json!({"amount": a}),
        None => json!({}),
    };
    let mut request = app
        .client
        .post(app.url(&format!("/v1/payments/{id}/refunds")))
        .bearer_auth(&app.api_key)
        .json(&body);
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn concurrent_refunds_never_refund_more_than_the_payment() {
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    let results =
        futures_util::future::join_all((0..10).map(|_| refund(&app, &id, Some(100), None))).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 10, "{results:?}");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        (p["amount_refunded"].as_i64(), p["status"].as_str()),
        (Some(1000), Some("refunded")),
        "ten refunds of 100 on 1,000: {p}"
    );
    let (status, body) = refund(&app, &id, Some(800), None).await;
    assert_eq!(status, 409, "nothing is left: {body}");
    assert_eq!(
        app.count(&format!(
            "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE payment_id = '{id}' AND status = 'succeeded'"
        ))
        .await,
        1000
    );
    let refunded_events = app
        .count(&format!(
            "SELECT count(*) FROM events WHERE payment_id = '{id}' AND event_type = 'payment.refunded'"
        ))
        .await;
    assert_eq!(refunded_events, 1, "one payment.refunded event");
}

#[tokio::test]
async fn a_refund_settled_after_the_providers_report_counts_once() {
    // The provider's own report (Stripe's charge.refunded total) and our settled refund
    // describe the same money: whichever lands first, it counts once.
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    // The provider already reported 300 refunded (as its webhook would).
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET amount_refunded = 300 WHERE id = '{id}'"
        ))
        .await
        .expect("provider report");
    let (status, body) = refund(&app, &id, Some(300), None).await;
    assert_eq!(status, 201, "{body}");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["amount_refunded"].as_i64(), Some(300), "{p}");
}

#[tokio::test]
async fn a_transition_from_a_stale_read_never_overwrites_a_final_status() {
    use entity::payment_status::PaymentStatus;
    use sea_orm::EntityTrait as _;
    let app = TestApp::spawn().await;
    let p = app.create_payment(500).await;
    let id = p["id"].as_str().expect("id");
    let stale = entity::payments::Entity::find_by_id(
        entity::ids::PaymentId::parse(id).expect("payment id"),
    )
    .one(&app.db)
    .await
    .expect("read")
    .expect("row");
    assert_eq!(stale.status, PaymentStatus::Pending);
    // Another writer cancels it after our read.
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET status = 'cancelled' WHERE id = '{id}'"
        ))
        .await
        .expect("cancel");
    let moved = gateway::payments::service::transition(
        &app.db,
        stale,
        PaymentStatus::Succeeded,
        None,
        None,
        gateway::ledger::FundsPolicy::default(),
    )
    .await
    .expect("no database error");
    assert!(
        moved.is_err(),
        "the compare-and-set must refuse a stale move"
    );
    let (_, now) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(now["status"], "cancelled");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE payment_id = '{id}' AND event_type = 'payment.succeeded'"
        ))
        .await,
        0,
        "no event for a move that did not happen"
    );
}

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
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
async fn a_refund_left_pending_by_a_crash_is_reconciled_once() {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    let id = succeeded_payment(&app, 1000).await;
    // A request reserved 400 and died before it recorded the provider's answer.
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO refunds (id, merchant_id, payment_id, amount, status, provider_reference, failure_message, created_at, updated_at, provider_key)
             SELECT 're_crashed', merchant_id, id, 400, 'pending', NULL, NULL, now() - interval '2 minutes', now() - interval '2 minutes', 're_crashed'
             FROM payments WHERE id = '{id}'"
        ))
        .await
        .expect("reserve");
    let (status, b) = refund(&app, &id, Some(700), None).await;
    assert_eq!(status, 422, "the pending 400 is still reserved: {b}");
    let poller = gateway::payments::inbound::poller::Poller::new(
        app.state.inbound.clone(),
        &app.settings.gateway.providers,
    );
    assert_eq!(poller.poll_once().await.expect("poll").refunds_settled, 1);
    assert_eq!(
        poller.poll_once().await.expect("poll").refunds_settled,
        0,
        "settled once"
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["amount_refunded"].as_i64(), Some(400), "{p}");
}

#[tokio::test]
async fn made_up_methods_do_not_become_labels_and_metrics_are_off_the_public_port() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let _ = app
            .client
            .request(method, app.url("/v1/payments"))
            .send()
            .await
            .expect("send");
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("BREW"), "an invented method became a label");
    assert!(text.contains(r#"method="other""#), "{text}");
    let public = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        public.status(),
        404,
        "metrics are not served on the public port"
    );
    let health = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        health.status(),
        200,
        "health stays on the public port for load balancers"
    );
}

#[tokio::test]
async fn control_characters_are_refused_with_422_on_every_route_and_never_reach_the_database() {
    let app = TestApp::spawn().await;
    let nul = "a\u{0}b";
    let base = json!({"amount": 100, "currency": "usd", "provider": "simulated"});
    let mut bodies = Vec::new();
    for (field, value) in [
        ("reference", json!(nul)),
        ("description", json!(nul)),
        ("metadata", json!({"order": nul})),
        ("metadata", json!({nul: "x"})),
        ("customer", json!({"name": nul})),
    ] {
        let mut body = base.clone();
        body[field] = value;
        bodies.push(("/v1/payments", body));
    }
    bodies.push((
        "/v1/webhook_endpoints",
        json!({"url": "https://example.com/a", "description": nul, "enabled_events": ["*"]}),
    ));
    bodies.push((
        "/v1/logs",
        json!({"level": "info", "message": nul, "source": "x"}),
    ));
    bodies.push((
        "/v1/logs",
        json!({"level": "info", "message": "m", "source": "x", "context": {"k": [nul]}}),
    ));
    for (path, body) in bodies {
        let (status, answer) = app.post_json(&app.api_key, path, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("invalid_characters")),
            "{path} {body}: {answer}"
        );
    }
    for path in [
        "/v1/payments?reference=a%00b",
        "/v1/payments?starting_after=pay_%00",
        "/v1/payments/pay_%00",
        "/v1/events?type=payment.%00",
        "/v1/webhook_deliveries/whd_%01",
    ] {
        let (status, answer) = app.get_json(&app.api_key, path).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("invalid_characters")),
            "{path}: {answer}"
        );
    }
    // Unauthenticated: the eBilling callback is unsigned.
    let r = app
        .client
        .post(app.url("/v1/providers/ebilling/webhooks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reference=a%00b&billingid=1%00&transactionid=t")
        .send()
        .await
        .expect("send");
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        app.count(
            "SELECT count(*) FROM logs WHERE level IN ('critical', 'error') AND source = 'api'"
        )
        .await,
        0,
        "no 5xx was logged"
    );
}

#[tokio::test]
async fn the_gateway_is_ready_without_a_worker_and_only_degraded_without_the_broker() {
    // No worker: on a fresh prefix nobody but the gateway can have declared the queues.
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        gateway_amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port)),
        ..Options::default()
    })
    .await;
    let ready = |app: &TestApp| {
        let url = app.url("/health/ready");
        let client = app.client.clone();
        async move {
            let r = client.get(url).send().await.expect("probe");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = ready(&app).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    // Probes reuse one broker connection.
    let before = proxy.connections();
    for _ in 0..10 {
        assert_eq!(ready(&app).await.0, 200);
    }
    assert!(
        proxy.connections() <= before + 1,
        "ten probes opened {} connections",
        proxy.connections() - before
    );
    // The broker goes away: still ready (payments go to the outbox), reported as degraded.
    proxy.set_enabled(false);
    let (status, body) = ready(&app).await;
    assert_eq!(
        (
            status,
            body["status"].as_str(),
            body["checks"]["broker"].as_bool()
        ),
        (200, Some("degraded"), Some(false)),
        "{body}"
    );
    assert_eq!(app.create_payment(100).await["status"], "pending");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"dependency_up{dependency="broker"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_merchant_has_at_most_twenty_endpoints_even_when_created_concurrently() {
    let app = TestApp::spawn().await;
    let results = futures_util::future::join_all((0..25).map(|i| {
        app.post_json(
            &app.api_key,
            "/v1/webhook_endpoints",
            json!({"url": format!("https://example.com/hook/{i}"), "enabled_events": ["*"]}),
        )
    }))
    .await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 20, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (422, Some("endpoint_limit_reached")),
            "{body}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_endpoints").await,
        20
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

#[tokio::test]
async fn overflowing_and_out_of_range_windows_are_a_422() {
    let app = TestApp::spawn().await;
    for window in ["213503982334602d", "18446744073709551615s", "91d", "0s"] {
        let (status, body) = app
            .get_json(&app.api_key, &format!("/v1/logs/stats?window={window}"))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("window_invalid")),
            "{window}: {body}"
        );
    }
    let (status, _) = app
        .get_json(&app.api_key, "/v1/logs/stats?window=90d")
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_sub_second_sweep_interval_really_retries_through_the_running_worker() {
    // The worker is started by TestApp through WorkerApplication::run_until_stopped; nothing
    // here calls sweep_once. With tokio-cron-scheduler a 300 ms period never fired.
    let mut options = Options::default();
    options.webhook.sweep_interval = Duration::from_millis(300);
    let app = TestApp::spawn_with(options).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![500, 500, 500], 200)).await;
    app.create_endpoint(&receiver.url).await;
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "four attempts, the last one delivered",
        || async {
            (app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 4);
}

async fn stripe_app() -> (mocks::Mock, TestApp) {
    let stripe = mocks::stripe().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    (stripe, app)
}

async fn stripe_payment(app: &TestApp) -> (String, String) {
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    (
        p["id"].as_str().expect("id").to_string(),
        p["provider_reference"]
            .as_str()
            .expect("intent")
            .to_string(),
    )
}

async fn stripe_says(app: &TestApp, event_type: &str, intent: &str, status: &str) -> u16 {
    let object = json!({"id": intent, "object": "payment_intent", "amount": 2000, "currency": "usd",
        "status": status, "last_payment_error": {"code": "card_declined", "message": "Declined"}});
    let event = mocks::stripe_event(event_type, object);
    let now = chrono::Utc::now().timestamp();
    mocks::send_stripe_event(&app.base, &event, mocks::STRIPE_WEBHOOK_SECRET, now)
        .await
        .0
}

/// Asks to cancel `id`, expects the refusal, and checks the payment is still pending.
async fn cancel_is_refused(app: &TestApp, id: &str, status: u16, code: &str) {
    let (got, b) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (got, b["error"]["code"].as_str()),
        (status, Some(code)),
        "{b}"
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "pending", "a refused cancel changes nothing");
}

#[tokio::test]
async fn cancelling_a_stripe_payment_cancels_the_intent_first() {
    let (stripe, app) = stripe_app().await;
    let (id, intent) = stripe_payment(&app).await;
    let (status, p) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (200, Some("cancelled")),
        "{p}"
    );
    assert!(
        stripe
            .seen()
            .iter()
            .any(|s| s.path == format!("/v1/payment_intents/{intent}/cancel")),
        "the intent was cancelled at Stripe"
    );
    // An intent the customer already paid cannot be cancelled: nothing changes here.
    let (id, intent) = stripe_payment(&app).await;
    stripe.set(&intent, "status", json!("succeeded"));
    cancel_is_refused(&app, &id, 409, "payment_not_cancellable").await;
}

#[tokio::test]
async fn providers_without_a_cancel_api_refuse_to_cancel() {
    let moneroo = mocks::moneroo().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(None, Some(&moneroo), None),
        ..Options::default()
    })
    .await;
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 5000, "currency": "XOF", "provider": "moneroo",
                "customer": {"email": "a@example.com", "name": "Awa Diop"},
                "return_url": "https://shop.example/r"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().expect("id");
    cancel_is_refused(&app, id, 422, "cancel_not_supported").await;
}

#[tokio::test]
async fn a_failed_stripe_attempt_leaves_the_payment_open_and_a_late_success_is_flagged() {
    let (_stripe, app) = stripe_app().await;
    let (id, intent) = stripe_payment(&app).await;
    assert_eq!(
        stripe_says(
            &app,
            "payment_intent.payment_failed",
            &intent,
            "requires_payment_method"
        )
        .await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        p["status"], "pending",
        "the customer may retry the same intent: {p}"
    );
    assert_eq!(
        stripe_says(&app, "payment_intent.succeeded", &intent, "succeeded").await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "succeeded");

    // A payment we cancelled, then Stripe reports it succeeded (a race with the customer).
    let (id, intent) = stripe_payment(&app).await;
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET status = 'cancelled' WHERE id = '{id}'"
        ))
        .await
        .expect("cancel");
    assert_eq!(
        stripe_says(&app, "payment_intent.succeeded", &intent, "succeeded").await,
        200
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(
        (p["status"].as_str(), p["requires_reconciliation"].as_bool()),
        (Some("cancelled"), Some(true)),
        "{p}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM logs WHERE level = 'critical' AND context->>'payment_id' = '{id}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM provider_events WHERE outcome = 'requires_reconciliation'")
            .await,
        1
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"payments_requiring_reconciliation_total{provider="stripe"} 1"#),
        "{metrics}"
    );
}

async fn ebilling_payment(app: &TestApp, ebilling: &mocks::Mock) -> (String, String) {
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 605000, "currency": "XAF", "provider": "ebilling",
                "customer": {"email": "a@example.com", "phone": "074000000"}}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let _ = ebilling;
    (
        p["id"].as_str().expect("id").to_string(),
        p["provider_reference"].as_str().expect("bill").to_string(),
    )
}

#[tokio::test]
async fn unsigned_ebilling_callbacks_store_nothing_unmatched_and_requery_a_bill_once_per_interval()
{
    let ebilling = mocks::ebilling().await;
    let mut providers = mocks::settings(None, None, Some(&ebilling));
    providers.requery_interval = Duration::from_millis(800);
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    // Unmatched, with a large body: answered, counted, not stored.
    let padding = "x".repeat(900_000);
    let r = app
        .client
        .post(app.url("/v1/providers/ebilling/webhooks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "reference=pay_nobody&billingid=5550000000&transactionid=t&note={padding}"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM provider_events").await, 0);

    let (id, bill) = ebilling_payment(&app, &ebilling).await;
    let gets = || ebilling.seen().iter().filter(|s| s.method == "GET").count();
    let (_, first) = mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
    assert_eq!(first["outcome"], "ignored", "{first}");
    // The bill is paid; a burst of callbacks follows at once.
    ebilling.pay_bill(&bill);
    for _ in 0..10 {
        let (_, b) = mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
        assert_eq!(b["outcome"], "throttled", "{b}");
    }
    assert_eq!(gets(), 1, "one re-query in the interval");
    // Nothing is lost: one deferred re-query applies the payment when the interval ends.
    app.eventually(Duration::from_secs(5), "the deferred re-query", || async {
        let (_, p) = app
            .get_json(&app.api_key, &format!("/v1/payments/{id}"))
            .await;
        (p["status"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(gets(), 2);
}

#[tokio::test]
async fn failing_status_queries_do_not_stop_payment_creation() {
    let ebilling = mocks::ebilling().await;
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(None, None, Some(&ebilling)),
        ..Options::default()
    })
    .await;
    let (id, bill) = ebilling_payment(&app, &ebilling).await;
    // eBilling fails every status query: callbacks open the query circuit.
    ebilling.fail_next(10);
    for _ in 0..6 {
        mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
    }
    ebilling.fail_next(0);
    // Creation has its own circuit: it still works.
    let (status, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 1000, "currency": "XAF", "provider": "ebilling",
                "customer": {"email": "a@example.com", "phone": "074000000"}}),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (201, Some("pending")),
        "{p}"
    );
}

#[tokio::test]
async fn live_and_test_keys_are_separate_and_keys_can_be_rolled_and_revoked() {
    let (_stripe, app) = stripe_app().await; // Stripe here has test credentials (sk_test_)
    // A test key cannot mint a live key (issue 19): nothing is made.
    let (status, refused) = app
        .post_json(&app.api_key, "/v1/api_keys", json!({"livemode": true}))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("livemode_mismatch")),
        "{refused}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE livemode")
            .await,
        0
    );
    // An owner makes one (as the dashboard's keys page does).
    let merchant_id: String = {
        use sea_orm::EntityTrait as _;
        entity::api_keys::Entity::find()
            .one(&app.db)
            .await
            .expect("query")
            .expect("the test key")
            .merchant_id
            .to_string()
    };
    let (_, live_key) = gateway::merchants::create_key(
        &app.db,
        &gateway::merchants::KeyManager::Owner(entity::ids::MerchantId::from_trusted(merchant_id)),
        true,
    )
    .await
    .expect("an owner makes a live key");
    assert!(live_key.starts_with("sk_live_"));
    // Live keys: no simulated provider, no test credentials.
    for provider in ["simulated", "stripe"] {
        let (status, b) = app
            .post_json(
                &live_key,
                "/v1/payments",
                json!({"amount": 2000, "currency": "usd", "provider": provider}),
            )
            .await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (422, Some("livemode_mismatch")),
            "{b}"
        );
    }
    // Test keys: test credentials, and livemode false on what they create.
    let (id, _) = stripe_payment(&app).await;
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["livemode"], false);
    // Only published test cards.
    let (status, b) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 100, "currency": "usd", "provider": "simulated",
                "payment_method": {"type": "card", "card": {"number": "4111111111111111",
                "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("card_not_a_test_card")),
        "{b}"
    );

    // Listing shows prefixes, never secrets, and only the key's own mode.
    let listed = |key: String| {
        let app = &app;
        async move {
            let (_, list) = app.get_json(&key, "/v1/api_keys").await;
            let keys = list["data"].as_array().expect("keys").clone();
            assert!(keys.iter().all(|k| k.get("secret").is_none()), "{list}");
            keys
        }
    };
    let key_id = |keys: &[Value], secret: &str| {
        keys.iter()
            .find(|k| secret.starts_with(k["prefix"].as_str().unwrap_or("-")))
            .and_then(|k| k["id"].as_str())
            .expect("key listed")
            .to_string()
    };
    let test_keys = listed(app.api_key.clone()).await;
    let live_keys = listed(live_key.clone()).await;
    assert_eq!((test_keys.len(), live_keys.len()), (1, 1));
    assert_eq!(
        (
            test_keys[0]["livemode"].clone(),
            live_keys[0]["livemode"].clone()
        ),
        (json!(false), json!(true))
    );
    let test_id = key_id(&test_keys, &app.api_key);
    let live_id = key_id(&live_keys, &live_key);
    // The live key is another world's: to the test key it does not exist.
    for action in ["roll", "revoke"] {
        let (status, _) = app
            .post_json(
                &app.api_key,
                &format!("/v1/api_keys/{live_id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 200);

    // Use the test key once so it is cached, then roll it with no grace: the old key stops.
    assert_eq!(app.get_json(&app.api_key, "/v1/payments").await.0, 200);
    let (status, rolled) = app
        .post_json(
            &app.api_key,
            &format!("/v1/api_keys/{test_id}/roll"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{rolled}");
    let new_test_key = rolled["secret"].as_str().expect("new secret").to_string();
    assert_eq!(
        app.get_json(&app.api_key, "/v1/payments").await.0,
        401,
        "rolled with no grace"
    );
    assert_eq!(app.get_json(&new_test_key, "/v1/payments").await.0, 200);

    // Roll with a grace period: both work until it ends.
    let (_, list) = app.get_json(&new_test_key, "/v1/api_keys").await;
    let current = list["data"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| new_test_key.starts_with(k["prefix"].as_str().unwrap_or("-")))
        .and_then(|k| k["id"].as_str())
        .expect("listed")
        .to_string();
    let (_, graced) = app
        .post_json(
            &new_test_key,
            &format!("/v1/api_keys/{current}/roll"),
            json!({"expires_in": 1}),
        )
        .await;
    let newest = graced["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        app.get_json(&new_test_key, "/v1/payments").await.0,
        200,
        "within the grace"
    );
    assert_eq!(app.get_json(&newest, "/v1/payments").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        app.get_json(&new_test_key, "/v1/payments").await.0,
        401,
        "after the grace"
    );

    // A live key revokes live keys (here itself) after use: it stops at once, cache or not.
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 200);
    let (status, revoked) = app
        .post_json(
            &live_key,
            &format!("/v1/api_keys/{live_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 401);
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_back_the_deliveries_behind_it() {
    // One row per claim, so every row is its own batch; the worker runs on its schedule.
    let mut options = Options::default();
    options.webhook.immediate = false;
    options.webhook.batch_size = 1;
    options.webhook.sweep_interval = Duration::from_millis(100);
    options.webhook.timeout = Duration::from_secs(3);
    let app = TestApp::spawn_with(options).await;
    let slow = Receiver::start(Behavior::Hang(Duration::from_secs(3))).await;
    let fast = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&slow.url).await;
    app.create_payment(100).await;
    app.create_payment(100).await;
    app.create_endpoint(&fast.url).await;
    let started = tokio::time::Instant::now();
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "the fast receiver's webhook",
        || async { (!fast.received().is_empty()).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the fast receiver waited {:?} behind the slow one",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_answer_names_its_request_in_request_id() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(gateway::http::middleware::MAX_BODY_BYTES + 1);
    let answers = [
        app.client
            .get(app.url("/v1/payments"))
            .bearer_auth(&app.api_key),
        app.client.get(app.url("/v1/payments")),
        app.client
            .get(app.url("/v1/nowhere"))
            .bearer_auth(&app.api_key),
        app.client
            .get(app.url("/v1/payments/pay_%00"))
            .bearer_auth(&app.api_key),
        app.client
            .post(app.url("/v1/payments"))
            .bearer_auth(&app.api_key)
            .header("content-type", "application/json")
            .body(big),
    ];
    let mut seen = std::collections::HashSet::new();
    for (request, expected) in answers.into_iter().zip([200, 401, 404, 422, 413]) {
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), expected);
        let id = r.headers()["request-id"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(id.starts_with("req_"), "{id}");
        assert_eq!(
            r.headers()["x-request-id"],
            id.as_str(),
            "both headers agree"
        );
        assert!(seen.insert(id), "each request has its own id");
    }
    // The caller's own id, under Stripe's header name, comes back.
    let r = app
        .client
        .get(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("Request-Id", "trace-7")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["request-id"], "trace-7");
}

#[tokio::test]
async fn a_number_or_a_boolean_where_a_string_belongs_is_refused_not_coerced() {
    let app = TestApp::spawn().await;
    let merchants = app.count("SELECT count(*) FROM merchants").await;
    let r = app
        .client
        .post(app.url("/v1/admin/merchants"))
        .bearer_auth(payrail_tests::ADMIN_TOKEN)
        .json(&json!({"name": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(app.count("SELECT count(*) FROM merchants").await, merchants);

    let payment = json!({"amount": 2000, "currency": "usd", "provider": "simulated"});
    let wrong = [
        ("description", json!(12)),
        ("reference", json!(true)),
        ("currency", json!(840)),
        ("metadata", json!({"order": 42})),
        ("customer", json!({"email": "a@example.com", "name": 7})),
        ("return_url", json!(false)),
    ];
    for (field, value) in wrong {
        let mut body = payment.clone();
        body[field] = value;
        let (status, answer) = app.post_json(&app.api_key, "/v1/payments", body).await;
        assert_eq!(status, 400, "{field}: {answer}");
    }
    for (field, value) in [("url", json!(443)), ("enabled_events", json!(["*", 1]))] {
        let mut body = json!({"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]});
        body[field] = value;
        let (status, answer) = app
            .post_json(&app.api_key, "/v1/webhook_endpoints", body)
            .await;
        assert_eq!(status, 400, "{field}: {answer}");
    }
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 0);
    // The same bodies with strings go through.
    let (status, created) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "simulated",
                   "description": "12", "metadata": {"order": "42"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["description"], "12");
}

#[tokio::test]
async fn each_refund_is_announced_when_made_and_when_settled() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let id = succeeded_payment(&app, 1000).await;
    let (status, partial) = refund(&app, &id, Some(300), None).await;
    assert_eq!(status, 201, "{partial}");
    let refund_id = partial["id"].as_str().expect("refund id").to_string();
    let (_, events) = app
        .get_json(
            &app.api_key,
            "/v1/events?types[]=refund.created&types[]=refund.succeeded&types[]=refund.failed",
        )
        .await;
    let seen: Vec<(String, String, String, i64)> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["data"]["id"].as_str().unwrap_or("").to_string(),
                e["data"]["status"].as_str().unwrap_or("").to_string(),
                e["data"]["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "refund.succeeded".into(),
                refund_id.clone(),
                "succeeded".into(),
                300
            ),
            (
                "refund.created".into(),
                refund_id.clone(),
                "pending".into(),
                300
            ),
        ],
        "newest first; a partial refund carries its own amount"
    );
    // And they reach the merchant like any other event.
    app.eventually(Duration::from_secs(15), "refund webhooks", || async {
        (receiver.of_type("refund.created").len() == 1
            && receiver.of_type("refund.succeeded").len() == 1)
            .then_some(())
    })
    .await;
    // A refund refused before anything is reserved (more than is left) makes no event.
    let (status, _) = refund(&app, &id, Some(5000), None).await;
    assert_eq!(status, 422);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type LIKE 'refund.%'")
            .await,
        2
    );
}
