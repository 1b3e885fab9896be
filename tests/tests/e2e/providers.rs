//! Stripe, Moneroo and eBilling end to end against local mocks of their wire formats: create
//! at the provider, the provider's webhook in, the merchant's signed webhook out; and every
//! way an inbound webhook can be wrong.

use std::time::Duration;

use payrail_tests::mocks::{self, Mock};
use payrail_tests::{Behavior, Options, Receiver, TestApp};
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn app_with(
    stripe: Option<&Mock>,
    moneroo: Option<&Mock>,
    ebilling: Option<&Mock>,
) -> TestApp {
    TestApp::spawn_with(Options {
        providers: mocks::settings(stripe, moneroo, ebilling),
        ..Options::default()
    })
    .await
}

async fn payment(app: &TestApp, id: &str) -> Value {
    app.get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await
        .1
}

async fn wait_status(app: &TestApp, id: &str, status: &str) {
    app.eventually(
        WAIT,
        &format!("payment {id} to become {status}"),
        || async { (payment(app, id).await["status"] == status).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn stripe_end_to_end_and_every_bad_webhook() {
    let stripe = mocks::stripe().await;
    let app = app_with(Some(&stripe), None, None).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;

    let (s, p) = app.post_json(&app.api_key, "/v1/payments", json!({"amount": 2000, "currency": "usd", "provider": "stripe", "description": "Order 123", "metadata": {"order_id": "ord_123"}})).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let intent = p["provider_reference"]
        .as_str()
        .expect("intent id")
        .to_string();
    assert!(intent.starts_with("pi_"));
    assert!(
        p["client_secret"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{intent}_secret_")))
    );
    // What Stripe received: a form body with nested keys, our id as the Idempotency-Key.
    let seen = stripe
        .seen()
        .into_iter()
        .find(|s| s.path == "/v1/payment_intents")
        .expect("create call");
    assert_eq!(seen.headers.get("idempotency-key"), Some(&id));
    assert_eq!(
        seen.headers.get("content-type").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    for part in [
        "amount=2000",
        "currency=usd",
        "automatic_payment_methods%5Benabled%5D=true",
        &format!("metadata%5Bpayrail_payment_id%5D={id}"),
        "metadata%5Border_id%5D=ord_123",
        "description=Order+123",
    ] {
        assert!(
            seen.body.contains(part),
            "{part} missing from {}",
            seen.body
        );
    }

    let now = chrono::Utc::now().timestamp();
    let object = json!({"id": intent, "object": "payment_intent", "amount": 2000, "currency": "usd", "status": "succeeded", "latest_charge": "ch_1"});
    let succeeded = mocks::stripe_event("payment_intent.succeeded", object.clone());
    // Forged (other secret), stale (> 300 s), malformed: refused, nothing changes.
    let (s, _) = mocks::send_stripe_event(&app.base, &succeeded, "whsec_forged", now).await;
    assert_eq!(s, 400);
    let (s, b) = mocks::send_stripe_event(
        &app.base,
        &succeeded,
        mocks::STRIPE_WEBHOOK_SECRET,
        now - 400,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = mocks::send_stripe_event(
        &app.base,
        &json!("not an event"),
        mocks::STRIPE_WEBHOOK_SECRET,
        now,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(payment(&app, &id).await["status"], "pending");
    assert_eq!(app.count("SELECT count(*) FROM provider_events").await, 0);

    let (s, b) =
        mocks::send_stripe_event(&app.base, &succeeded, mocks::STRIPE_WEBHOOK_SECRET, now).await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("applied")), "{b}");
    assert_eq!(payment(&app, &id).await["status"], "succeeded");
    let (s, b) =
        mocks::send_stripe_event(&app.base, &succeeded, mocks::STRIPE_WEBHOOK_SECRET, now).await;
    assert_eq!(
        (s, b["outcome"].as_str()),
        (200, Some("duplicate")),
        "a replayed event does nothing"
    );
    // Out of order: processing after succeeded is recorded and ignored.
    let late = mocks::stripe_event(
        "payment_intent.processing",
        json!({"id": intent, "object": "payment_intent", "status": "processing"}),
    );
    let (_, b) =
        mocks::send_stripe_event(&app.base, &late, mocks::STRIPE_WEBHOOK_SECRET, now).await;
    assert_eq!(b["outcome"], "ignored");
    // Unknown types are answered 200 and recorded.
    let other = mocks::stripe_event(
        "customer.created",
        json!({"id": "cus_1", "object": "customer"}),
    );
    let (s, b) =
        mocks::send_stripe_event(&app.base, &other, mocks::STRIPE_WEBHOOK_SECRET, now).await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("unknown_type")));
    assert_eq!(payment(&app, &id).await["status"], "succeeded");

    // A partial refund raises amount_refunded without an event; the full one refunds.
    let charge = |refunded: i64, full: bool| {
        mocks::stripe_event(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "payment_intent": intent, "amount": 2000, "amount_refunded": refunded, "refunded": full}),
        )
    };
    let (_, b) = mocks::send_stripe_event(
        &app.base,
        &charge(500, false),
        mocks::STRIPE_WEBHOOK_SECRET,
        now,
    )
    .await;
    assert_eq!(b["outcome"], "applied");
    let p = payment(&app, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("succeeded"), Some(500))
    );
    mocks::send_stripe_event(
        &app.base,
        &charge(2000, true),
        mocks::STRIPE_WEBHOOK_SECRET,
        now,
    )
    .await;
    let p = payment(&app, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("refunded"), Some(2000))
    );

    app.eventually(WAIT, "pending, succeeded and refunded webhooks", || async {
        (receiver.received().len() == 3).then_some(())
    })
    .await;
    // Delivery order across events is not guaranteed (merchants order by the payment's state).
    let mut types: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_string())
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec!["payment.pending", "payment.refunded", "payment.succeeded"]
    );
    let metrics = app.metrics_text().await;
    for line in [
        "webhooks_received_total{provider=\"stripe\",outcome=\"applied\"} 3",
        "webhooks_received_total{provider=\"stripe\",outcome=\"invalid_signature\"} 2",
        "webhooks_received_total{provider=\"stripe\",outcome=\"duplicate\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
}

#[tokio::test]
async fn moneroo_end_to_end_never_trusts_the_body_and_answers_fast() {
    let moneroo = mocks::moneroo().await;
    let mut providers = mocks::settings(None, Some(&moneroo), None);
    providers.timeout = Duration::from_secs(5);
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let body = json!({"amount": 2000, "currency": "usd", "provider": "moneroo", "description": "Order 7",
        "customer": {"email": "john@example.com", "name": "John Doe"}, "return_url": "https://shop.example/thanks"});
    let (s, p) = app
        .post_json(&app.api_key, "/v1/payments", body.clone())
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let reference = p["provider_reference"]
        .as_str()
        .expect("reference")
        .to_string();
    assert_eq!(
        p["checkout_url"],
        format!("https://checkout.moneroo.io/{reference}")
    );
    let sent: Value = serde_json::from_str(&moneroo.seen()[0].body).expect("json");
    assert_eq!(sent["amount"], 20, "2000 cents are sent as 20 major units");
    assert_eq!(
        (
            sent["customer"]["first_name"].as_str(),
            sent["customer"]["last_name"].as_str()
        ),
        (Some("John"), Some("Doe"))
    );

    // Cents Moneroo cannot take, and missing required fields, are refused before anything.
    let mut cents = body.clone();
    cents["amount"] = json!(2050);
    assert_eq!(
        app.post_json(&app.api_key, "/v1/payments", cents).await.0,
        422
    );
    let mut no_return = body.clone();
    no_return
        .as_object_mut()
        .expect("object")
        .remove("return_url");
    assert_eq!(
        app.post_json(&app.api_key, "/v1/payments", no_return)
            .await
            .1["error"]["param"],
        "return_url"
    );

    // Forged: 403, nothing recorded.
    let (s, _, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payment.success",
        &reference,
        "success",
        "forged",
    )
    .await;
    assert_eq!(s, 403);
    // Signed but lying: the body says success, Moneroo's verify says initiated → still pending.
    let (s, b, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payment.success",
        &reference,
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("queued")));
    app.eventually(
        WAIT,
        "the lying webhook to be verified and recorded",
        || async {
            (app.count("SELECT count(*) FROM provider_events WHERE provider = 'moneroo'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(payment(&app, &id).await["status"], "pending");

    // The customer pays; the verify is slow (5 s) but the answer must come within 3 s.
    moneroo.set(&reference, "status", json!("success"));
    moneroo.delay(Some(Duration::from_secs(2)));
    let (s, _, took) = mocks::send_moneroo_webhook(
        &app.base,
        "payment.success",
        &reference,
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        took < Duration::from_secs(1),
        "answered in {took:?}; Moneroo wants 200 within 3 s"
    );
    wait_status(&app, &id, "succeeded").await;
    moneroo.delay(None);
    let (_, b, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payment.success",
        &reference,
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(b["outcome"], "queued");
    // Payout events are recorded and ignored.
    let (s, b, _) = mocks::send_moneroo_webhook(
        &app.base,
        "payout.success",
        "po_1",
        "success",
        mocks::MONEROO_WEBHOOK_SECRET,
    )
    .await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("unknown_type")));
    app.eventually(WAIT, "both merchant webhooks", || async {
        (receiver.received().len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.of_type("payment.succeeded").len(),
        1,
        "the duplicate changed nothing"
    );
}

#[tokio::test]
async fn ebilling_end_to_end_moves_only_after_requerying_the_bill() {
    let ebilling = mocks::ebilling().await;
    let app = app_with(None, None, Some(&ebilling)).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let (s, p) = app.post_json(&app.api_key, "/v1/payments", json!({"amount": 605000, "currency": "XAF", "provider": "ebilling",
        "customer": {"email": "client@example.com", "phone": "24174123456", "name": "Jean Dupont"}, "return_url": "https://shop.example/back"})).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let bill = p["provider_reference"].as_str().expect("bill").to_string();
    let checkout = p["checkout_url"].as_str().expect("checkout");
    assert!(
        checkout.starts_with("https://test.billing-easy.net/checkoutnow?invoice_number=")
            && checkout.contains(&bill),
        "{checkout}"
    );
    assert!(checkout.contains("merchant_redirect_url=https%3A%2F%2Fshop.example%2Fback"));
    let sent: Value = serde_json::from_str(&ebilling.seen()[0].body).expect("json");
    assert_eq!(
        (
            sent["external_reference"].as_str(),
            sent["amount"].as_i64(),
            sent["payer_msisdn"].as_str()
        ),
        (Some(id.as_str()), Some(605000), Some("24174123456"))
    );
    assert_eq!(app.post_json(&app.api_key, "/v1/payments", json!({"amount": 100, "currency": "usd", "provider": "ebilling", "customer": {"email": "a@b.c", "phone": "1"}})).await.0, 422, "XAF only");

    // A forged notification (bill not paid) changes nothing; one naming another bill neither.
    let (s, b) = mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("ignored")), "{b}");
    assert_eq!(payment(&app, &id).await["status"], "pending");
    let (s, b) = mocks::send_ebilling_notification(&app.base, &id, "5559999999", 605000).await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("unknown_payment")));
    assert_eq!(
        mocks::send_ebilling_notification(&app.base, "", "", 0)
            .await
            .0,
        200,
        "empty fields are still a recorded, harmless call"
    );

    ebilling.pay_bill(&bill);
    let (_, b) = mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
    assert_eq!(b["outcome"], "applied");
    assert_eq!(payment(&app, &id).await["status"], "succeeded");
    let (_, b) = mocks::send_ebilling_notification(&app.base, &id, &bill, 605000).await;
    assert_eq!(b["outcome"], "duplicate");
    app.eventually(WAIT, "pending and succeeded webhooks", || async {
        (receiver.received().len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_or_slow_provider_leaves_a_failed_payment_and_a_502_and_the_breaker_opens() {
    let stripe = mocks::stripe().await;
    let mut providers = mocks::settings(Some(&stripe), None, None);
    providers.breaker_threshold = 3;
    let app = TestApp::spawn_with(Options {
        providers,
        ..Options::default()
    })
    .await;
    let create = || {
        app.post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
        )
    };

    stripe.fail_next(2); // the first try and its one retry
    let (s, b) = create().await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (502, Some("provider_error")),
        "{b}"
    );
    let id = b["error"]["payment_id"]
        .as_str()
        .expect("the error names the payment")
        .to_string();
    let p = payment(&app, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["failure_code"].as_str()),
        (Some("failed"), Some("provider_error"))
    );
    let (_, events) = app.get_json(&app.api_key, "/v1/events").await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, vec!["payment.failed", "payment.pending"]);
    assert_eq!(
        stripe.seen().len(),
        2,
        "an idempotent create is retried once"
    );

    stripe.delay(Some(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let (s, _) = create().await;
    assert_eq!(s, 502);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a timeout (800 ms) is not retried; took {:?}",
        started.elapsed()
    );
    stripe.delay(None);

    // Three failures so far: the circuit is open and the next call fails fast without a request.
    let before = stripe.seen().len();
    let (s, b) = create().await;
    assert_eq!(s, 502);
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("circuit open")),
        "{b}"
    );
    assert_eq!(
        stripe.seen().len(),
        before,
        "no call while the circuit is open"
    );
}

#[tokio::test]
async fn the_poller_finishes_payments_whose_webhook_never_came_once_across_gateways() {
    let (stripe, moneroo) = (mocks::stripe().await, mocks::moneroo().await);
    let mut providers = mocks::settings(Some(&stripe), Some(&moneroo), None);
    providers.poll_age = Duration::ZERO;
    providers.poll_interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(Options {
        providers: providers.clone(),
        ..Options::default()
    })
    .await;
    let (_, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    let (stripe_id, intent) = (
        p["id"].as_str().expect("id").to_string(),
        p["provider_reference"].as_str().expect("pi").to_string(),
    );
    let (_, p) = app.post_json(&app.api_key, "/v1/payments", json!({"amount": 500, "currency": "XOF", "provider": "moneroo",
        "customer": {"email": "a@example.com", "name": "Awa Diop"}, "return_url": "https://shop.example/r"})).await;
    let (moneroo_id, reference) = (
        p["id"].as_str().expect("id").to_string(),
        p["provider_reference"].as_str().expect("ref").to_string(),
    );

    // Nothing changed at the providers yet: a pass checks both and moves nothing.
    let first =
        gateway::payments::inbound::poller::Poller::new(app.state.inbound.clone(), &providers);
    assert_eq!(first.poll_once().await.expect("poll").checked, 2);
    assert_eq!(payment(&app, &stripe_id).await["status"], "pending");

    // The customer paid at Stripe, the Moneroo checkout expired; no webhook ever comes.
    stripe.set(&intent, "status", json!("succeeded"));
    moneroo.set(&reference, "status", json!("cancelled"));
    app.db
        .execute_unprepared("UPDATE payments SET last_polled_at = NULL")
        .await
        .expect("reset");
    let stripe_gets_before = stripe.seen().iter().filter(|s| s.method == "GET").count();
    // Two gateways poll at once: each payment is asked about once.
    let second =
        gateway::payments::inbound::poller::Poller::new(app.state.inbound.clone(), &providers);
    let (a, b) = tokio::join!(first.poll_once(), second.poll_once());
    let (a, b) = (a.expect("poll a"), b.expect("poll b"));
    assert_eq!(a.checked + b.checked, 2, "{a:?} {b:?}");
    assert_eq!(a.moved + b.moved, 2);
    assert_eq!(
        stripe.seen().iter().filter(|s| s.method == "GET").count() - stripe_gets_before,
        1
    );
    assert_eq!(payment(&app, &stripe_id).await["status"], "succeeded");
    assert_eq!(payment(&app, &moneroo_id).await["status"], "cancelled");
    // Within the interval nothing is asked again; final payments never are.
    assert_eq!(first.poll_once().await.expect("poll").checked, 0);
    let (_, events) = app
        .get_json(&app.api_key, "/v1/events?type=payment.succeeded")
        .await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn refunds_are_partial_or_full_and_never_more_than_what_is_left() {
    let stripe = mocks::stripe().await;
    let app = app_with(Some(&stripe), None, None).await;
    let card = json!({"amount": 1000, "currency": "usd", "provider": "simulated",
        "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}});
    let (_, p) = app.post_json(&app.api_key, "/v1/payments", card).await;
    let id = p["id"].as_str().expect("id").to_string();
    let path = format!("/v1/payments/{id}/refunds");

    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "r1")
        .json(&json!({"amount": 300}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let refund: Value = r.json().await.expect("json");
    assert!(refund["id"].as_str().is_some_and(|i| i.starts_with("re_")));
    assert_eq!(
        (refund["status"].as_str(), refund["amount"].as_i64()),
        (Some("succeeded"), Some(300))
    );
    let replay = app
        .client
        .post(app.url(&path))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "r1")
        .json(&json!({"amount": 300}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        replay.json::<Value>().await.expect("json")["id"],
        refund["id"],
        "replayed, not refunded twice"
    );
    let p = payment(&app, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("succeeded"), Some(300))
    );

    let (s, b) = app
        .post_json(&app.api_key, &path, json!({"amount": 800}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("amount_too_large")),
        "{b}"
    );
    let (s, b) = app
        .post_json(&app.api_key, &path, json!({"amount": 0}))
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, rest) = app.post_json(&app.api_key, &path, json!({})).await;
    assert_eq!(
        (s, rest["amount"].as_i64()),
        (201, Some(700)),
        "no amount refunds what is left"
    );
    let p = payment(&app, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("refunded"), Some(1000))
    );
    let (s, b) = app.post_json(&app.api_key, &path, json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("payment_not_refundable"))
    );
    let (_, list) = app.get_json(&app.api_key, &path).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    let (_, events) = app
        .get_json(&app.api_key, "/v1/events?type=payment.refunded")
        .await;
    assert_eq!(
        events["data"].as_array().map(Vec::len),
        Some(1),
        "one event, at the full refund"
    );

    // A pending payment cannot be refunded; Stripe refunds go to Stripe with our refund id.
    let pending = app.create_payment(100).await;
    let (s, _) = app
        .post_json(
            &app.api_key,
            &format!(
                "/v1/payments/{}/refunds",
                pending["id"].as_str().unwrap_or("")
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
    let (_, sp) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
        )
        .await;
    let sid = sp["id"].as_str().expect("id").to_string();
    let intent = sp["provider_reference"].as_str().expect("pi").to_string();
    let event = mocks::stripe_event(
        "payment_intent.succeeded",
        json!({"id": intent, "object": "payment_intent", "status": "succeeded"}),
    );
    mocks::send_stripe_event(
        &app.base,
        &event,
        mocks::STRIPE_WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
    )
    .await;
    let (s, r) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{sid}/refunds"),
            json!({"amount": 500, "reason": "fraudulent"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["reason"], "fraudulent");
    let call = stripe
        .seen()
        .into_iter()
        .find(|c| c.path == "/v1/refunds")
        .expect("refund call");
    assert!(
        call.body.contains(&format!("payment_intent={intent}"))
            && call.body.contains("amount=500")
            && call.body.contains("reason=fraudulent"),
        "Stripe is told the reason: {}",
        call.body
    );
    assert_eq!(
        call.headers.get("idempotency-key").map(String::as_str),
        r["id"].as_str()
    );

    // A refund Stripe refuses is recorded failed and announced as such.
    stripe.fail_next(2);
    let (s, failed_answer) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{sid}/refunds"),
            json!({"amount": 100}),
        )
        .await;
    assert_eq!(s, 502, "{failed_answer}");
    let (_, refunds) = app
        .get_json(&app.api_key, &format!("/v1/payments/{sid}/refunds"))
        .await;
    let failed = refunds["data"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["status"] == "failed"))
        .cloned()
        .expect("the refused refund is kept, failed");
    let (_, events) = app
        .get_json(&app.api_key, "/v1/events?types[]=refund.failed")
        .await;
    assert_eq!(events["data"][0]["data"]["id"], failed["id"], "{events}");
    assert_eq!(events["data"][0]["data"]["amount"], 100);
    let message = failed_answer["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.ends_with(&format!(
            "The refund {} was recorded as failed.",
            failed["id"].as_str().unwrap_or("?")
        )),
        "{message}"
    );
}

#[tokio::test]
async fn providers_without_a_refund_api_say_so() {
    let moneroo = mocks::moneroo().await;
    let app = app_with(None, Some(&moneroo), None).await;
    let (_, p) = app.post_json(&app.api_key, "/v1/payments", json!({"amount": 500, "currency": "XOF", "provider": "moneroo",
        "customer": {"email": "a@example.com", "name": "Awa Diop"}, "return_url": "https://shop.example/r"})).await;
    let (s, b) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{}/refunds", p["id"].as_str().unwrap_or("")),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("refund_not_supported"))
    );
}

#[tokio::test]
async fn malformed_moneroo_and_ebilling_webhooks_are_refused_and_change_nothing() {
    let (moneroo, ebilling) = (mocks::moneroo().await, mocks::ebilling().await);
    let app = app_with(None, Some(&moneroo), Some(&ebilling)).await;
    let garbage = b"{not json".to_vec();
    let r = app
        .client
        .post(app.url("/v1/providers/moneroo/webhooks"))
        .header("content-type", "application/json")
        .header(
            "X-Moneroo-Signature",
            gateway::providers::moneroo::sign(mocks::MONEROO_WEBHOOK_SECRET, &garbage),
        )
        .body(garbage)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "signed but not JSON");
    let r = app
        .client
        .post(app.url("/v1/providers/moneroo/webhooks"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "no signature header at all");
    let r = app
        .client
        .post(app.url("/v1/providers/ebilling/webhooks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=100&paymentsystem=airtelmoney")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "no reference or billingid");
    assert_eq!(app.count("SELECT count(*) FROM provider_events").await, 0);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("webhooks_received_total{provider=\"moneroo\",outcome=\"malformed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webhooks_received_total{provider=\"ebilling\",outcome=\"malformed\"} 1")
    );
}

/// Issue 20: an intent its customer abandoned is not polled for ever: past
/// `PAYRAIL_PROVIDER_POLL_MAX_AGE` (7 days by default) the poller stops asking.
#[tokio::test]
async fn the_poller_stops_asking_about_payments_abandoned_past_the_max_age() {
    let stripe = mocks::stripe().await;
    let mut providers = mocks::settings(Some(&stripe), None, None);
    providers.poll_age = Duration::ZERO;
    let app = TestApp::spawn_with(Options {
        providers: providers.clone(),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let (s, _) = app
            .post_json(
                &app.api_key,
                "/v1/payments",
                json!({"amount": 2000, "currency": "usd", "provider": "stripe"}),
            )
            .await;
        assert_eq!(s, 201);
    }
    // One of them was opened eight days ago.
    app.db
        .execute_unprepared(
            "UPDATE payments SET created_at = now() - interval '8 days' WHERE id = (SELECT min(id) FROM payments)",
        )
        .await
        .expect("age one");
    let poller =
        gateway::payments::inbound::poller::Poller::new(app.state.inbound.clone(), &providers);
    assert_eq!(poller.poll_once().await.expect("poll").checked, 1);
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
