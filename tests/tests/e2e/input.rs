//! Bad input: every malformed or hostile request gets its documented 4xx and changes nothing
//! (control characters, overflowing windows, wrong JSON types, every field's rules).

use payrail_tests::TestApp;
use serde_json::{Value, json};

async fn state_counts(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM payments").await,
        app.count("SELECT count(*) FROM events").await,
        app.count("SELECT count(*) FROM webhook_endpoints").await,
        app.count("SELECT count(*) FROM idempotency_keys").await,
    )
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_4xx_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let key = app.api_key.clone();
    let before = state_counts(&app).await;
    let good = || json!({"amount": 2000, "currency": "usd", "provider": "simulated"});
    let with = |field: &str, value: Value| {
        let mut b = good();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = good();
        b.as_object_mut().expect("object").remove(field);
        b
    };
    let y = 2031;
    let card = |number: &str, exp_year: i64, cvc: &str| {
        with(
            "payment_method",
            json!({"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": exp_year, "cvc": cvc}}),
        )
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "wrong type",
            with("amount", json!("2000")),
            400,
            "invalid_request_body",
        ),
        (
            "missing field",
            without("currency"),
            400,
            "invalid_request_body",
        ),
        (
            "unknown field",
            with("amout", json!(1)),
            400,
            "invalid_request_body",
        ),
        (
            "zero amount",
            with("amount", json!(0)),
            422,
            "amount_invalid",
        ),
        (
            "negative amount",
            with("amount", json!(-5)),
            422,
            "amount_invalid",
        ),
        (
            "fractional amount",
            with("amount", json!(10.5)),
            400,
            "invalid_request_body",
        ),
        (
            "unknown currency",
            with("currency", json!("ZZZ")),
            422,
            "currency_invalid",
        ),
        (
            "unknown provider",
            with("provider", json!("paypalz")),
            422,
            "provider_unknown",
        ),
        (
            "unconfigured provider",
            with("provider", json!("stripe")),
            422,
            "provider_not_configured",
        ),
        (
            "bad return_url",
            with("return_url", json!("ftp://x")),
            422,
            "url_invalid",
        ),
        (
            "luhn failure",
            card("4242424242424241", y, "123"),
            422,
            "invalid_number",
        ),
        (
            "expired card",
            card("4242424242424242", 2020, "123"),
            422,
            "expired_card",
        ),
        (
            "bad cvc",
            card("4242424242424242", y, "1"),
            422,
            "invalid_cvc",
        ),
        (
            "absurd expiry year",
            card("4242424242424242", 2999, "123"),
            422,
            "invalid_expiry_year",
        ),
    ];
    for (name, body, status, code) in cases {
        let (s, b) = app.post_json(&key, "/v1/payments", body).await;
        assert_eq!(s, status, "{name}: {b}");
        assert_eq!(b["error"]["code"], code, "{name}: {b}");
        assert_eq!(b["error"]["type"], "invalid_request_error", "{name}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // Malformed JSON, a huge body, no key, a wrong key, a bad endpoint.
    let raw = |body: Vec<u8>| {
        app.client
            .post(app.url("/v1/payments"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw(b"{\"amount\":".to_vec()).await.expect("send");
    assert_eq!(r.status(), 400);
    let r = raw(vec![b' '; 1024 * 1024 + 10]).await.expect("send");
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "body_too_large"
    );
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .json(&good())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["type"],
        "authentication_error"
    );
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth("sk_test_wrong")
        .json(&good())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let (s, b) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": "not a url", "enabled_events": ["*"]}),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("url_invalid")));
    let (s, b) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": "https://example.com/h", "enabled_events": ["payment.exploded"]}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("event_type_unknown"))
    );
    let (s, b) = app.get_json(&key, "/v1/payments/pay_doesnotexist").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
    let (s, _) = app.get_json(&key, "/v1/payments?limit=0").await;
    assert_eq!(s, 422);
    let (s, _) = app.get_json(&key, "/v1/payments?status=paid").await;
    assert_eq!(s, 422);
    let (s, _) = app
        .post_json("wrong", "/v1/admin/merchants", json!({"name": "x"}))
        .await;
    assert_eq!(
        s, 401,
        "admin routes need the admin token, not a merchant key"
    );
    let (s, _) = app
        .post_json(&key, "/v1/admin/merchants", json!({"name": "x"}))
        .await;
    assert_eq!(s, 401);
    assert_eq!(
        state_counts(&app).await,
        before,
        "no bad request may change anything"
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
