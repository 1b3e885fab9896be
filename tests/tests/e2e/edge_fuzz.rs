//! The dashboard's forms and the public routes fuzzed as schemathesis fuzzes the API (issue
//! 20, item 5): seeded random values (control characters and NUL, percent-encoded NUL in
//! paths, very long and odd Unicode text, numbers out of range) sent to every form field and
//! query parameter, anonymously and as a signed-in owner. Nothing answers 5xx: bad input is a
//! 4xx (or a page that says what is wrong), never a failure of ours, and never pages anyone.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use payrail_tests::TestApp;

use crate::dashboard::{Browser, user};

/// A value chosen to break something.
fn nasty(rng: &mut StdRng) -> String {
    let long = "é".repeat(5000);
    let pool: [&str; 16] = [
        "",
        " ",
        "\u{0}",
        "x\u{0}y",
        "\u{7}\u{1b}[31m",
        "%00",
        "-1",
        "-300000000000",
        "99999999999999999999",
        "1e308",
        "NaN",
        "'; DROP TABLE payments; --",
        "<script>alert(1)</script>",
        "\u{202e}\u{fffd}\u{10ffff}",
        "pay_00000000000000000000000000000000",
        &long,
    ];
    let mut value = pool[rng.random_range(0..pool.len())].to_string();
    if rng.random_bool(0.3) {
        value.push_str(pool[rng.random_range(0..pool.len())]);
    }
    value
}

/// A request to send: method, path, form fields.
type Sent = (&'static str, String, Vec<(&'static str, String)>);

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test]
async fn dashboard_forms_and_public_routes_never_answer_5xx_to_bad_input() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Fuzzed").await;
    let password = user(
        &app,
        &merchant,
        "fuzz@example.com",
        entity::status::UserRole::Owner,
    )
    .await;
    let (s, payment) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 1500, "currency": "eur", "provider": "simulated",
                   "payment_method": {"type": "card", "card": {"number": "4242424242424242",
                   "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(s, 201);
    let pay_id = payment["id"].as_str().expect("id").to_string();
    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner.sign_in("fuzz@example.com", &password).await.status,
        303
    );
    let mut anonymous = Browser::new(&app.base);
    let mut rng = StdRng::seed_from_u64(20);
    let mut failures = Vec::new();
    for round in 0..40 {
        let token = Browser::token_in(&owner.get("/dashboard").await);
        // A real form token half the time, so bad values reach past the CSRF check.
        let sign_in_token = if rng.random_bool(0.5) {
            Browser::token_in(&anonymous.get("/dashboard/login").await)
        } else {
            nasty(&mut rng)
        };
        let a = nasty(&mut rng);
        let b = nasty(&mut rng);
        let c = nasty(&mut rng);
        let id = if rng.random_bool(0.5) {
            pay_id.clone()
        } else {
            nasty(&mut rng)
        };
        let signed_in: Vec<Sent> = vec![
            (
                "GET",
                format!(
                    "/dashboard/payments?status={}&reference={}&starting_after={}",
                    encode(&a),
                    encode(&b),
                    encode(&c)
                ),
                vec![],
            ),
            (
                "GET",
                format!(
                    "/dashboard/logs?level={}&source={}&window={}",
                    encode(&a),
                    encode(&b),
                    encode(&c)
                ),
                vec![],
            ),
            (
                "GET",
                format!(
                    "/dashboard/webhooks?status={}&notice={}",
                    encode(&a),
                    encode(&b)
                ),
                vec![],
            ),
            (
                "GET",
                format!("/dashboard/payments/{}", encode(&id)),
                vec![],
            ),
            (
                "GET",
                format!("/dashboard/deliveries/{}", encode(&id)),
                vec![],
            ),
            (
                "POST",
                format!("/dashboard/payments/{}/refund", encode(&id)),
                vec![
                    ("csrf_token", token.clone()),
                    ("amount", a.clone()),
                    ("idempotency_key", b.clone()),
                ],
            ),
            (
                "POST",
                format!("/dashboard/payments/{}/cancel", encode(&id)),
                vec![("csrf_token", token.clone())],
            ),
            (
                "POST",
                format!("/dashboard/deliveries/{}/retry", encode(&id)),
                vec![
                    ("csrf_token", token.clone()),
                    ("payment_id", a.clone()),
                    ("back", b.clone()),
                ],
            ),
            (
                "POST",
                "/dashboard/webhooks".into(),
                vec![
                    ("csrf_token", token.clone()),
                    ("url", format!("http://127.0.0.1:9/{a}")),
                    ("events", b.clone()),
                    ("description", c.clone()),
                ],
            ),
            (
                "POST",
                format!("/dashboard/webhooks/{}/{}", encode(&id), encode(&a)),
                vec![("csrf_token", token.clone()), ("hours", b.clone())],
            ),
            (
                "POST",
                "/dashboard/keys".into(),
                vec![("csrf_token", token.clone()), ("mode", a.clone())],
            ),
            (
                "POST",
                format!("/dashboard/keys/{}/{}", encode(&id), encode(&b)),
                vec![("csrf_token", token.clone()), ("expires_in", c.clone())],
            ),
            (
                "POST",
                "/dashboard/mode".into(),
                vec![("csrf_token", token.clone()), ("mode", a.clone())],
            ),
        ];
        let public: Vec<Sent> = vec![
            ("GET", format!("/sandbox/checkout/{}", encode(&id)), vec![]),
            (
                "POST",
                format!("/sandbox/checkout/{}/{}", encode(&id), encode(&a)),
                vec![("csrf_token", b.clone())],
            ),
            (
                "GET",
                format!("/v1/payments/{}/qr?format={}", encode(&id), encode(&a)),
                vec![],
            ),
            (
                "POST",
                "/dashboard/login".into(),
                vec![
                    ("email", a.clone()),
                    ("password", b.clone()),
                    ("csrf_token", sign_in_token.clone()),
                ],
            ),
            (
                "GET",
                format!("/dashboard/payments?status={}", encode(&a)),
                vec![],
            ),
            ("POST", "/dashboard/mode".into(), vec![("mode", a.clone())]),
        ];
        for (browser, requests) in [(&mut owner, signed_in), (&mut anonymous, public)] {
            for (method, path, form) in requests {
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let page = if method == "GET" {
                    browser.get(&path).await
                } else {
                    browser.post_form(&path, &pairs).await
                };
                if page.status >= 500 {
                    failures.push(format!(
                        "round {round}: {method} {} {:?} → {}",
                        path.chars().take(200).collect::<String>(),
                        pairs
                            .iter()
                            .map(|(k, v)| (k, v.chars().take(40).collect::<String>()))
                            .collect::<Vec<_>>(),
                        page.status
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers were 5xx:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // And nothing of it was filed as Payrail's own failure.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM logs WHERE source = 'api' AND level IN ('error', 'critical')"
        )
        .await,
        0
    );
}

/// The issue's reproductions of bad input that reached 5xx: a time out of any object's range,
/// an operator's merchant name with NUL, and the QR code of a checkout URL too long for one
/// (eBilling with a 2,000-character `return_url`).
#[tokio::test]
async fn bad_input_that_reached_5xx_is_a_4xx_now() {
    let ebilling = payrail_tests::mocks::ebilling().await;
    let app = TestApp::spawn_with(payrail_tests::Options {
        providers: payrail_tests::mocks::settings(None, None, Some(&ebilling)),
        ..payrail_tests::Options::default()
    })
    .await;
    let (s, body) = app
        .get_json(&app.api_key, "/v1/payments?created[gte]=-300000000000")
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("timestamp_invalid"))
    );
    let r = app
        .client
        .post(app.url("/v1/admin/merchants"))
        .bearer_auth(payrail_tests::ADMIN_TOKEN)
        .json(&json!({"name": "Acme\u{0}Corp"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 422);
    // Within the 2,048 allowed, but each `&` and `=` doubles once the portal encodes it.
    let long_return = format!("https://shop.example/back?{}", "a=&".repeat(670));
    let (s, p) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 605000, "currency": "XAF", "provider": "ebilling",
                   "customer": {"email": "client@example.com", "phone": "24174123456"},
                   "return_url": long_return}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert!(p["checkout_url"].as_str().is_some_and(|u| u.len() > 2000));
    assert!(
        p["qr_code_url"].is_null(),
        "no QR code for a URL too long for one"
    );
    let id = p["id"].as_str().expect("id");
    let qr = app
        .client
        .get(app.url(&format!("/v1/payments/{id}/qr")))
        .send()
        .await
        .expect("qr");
    assert_eq!(qr.status(), 422);
    let body: serde_json::Value = qr.json().await.expect("json");
    assert_eq!(body["error"]["code"], "qr_code_unavailable");
}

/// What a raw HTTP/1.1 client reads of one answer: its status and its head.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < head_end + length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Some((status, head))
}

/// Issue 20, item 6: an answer given before the request's body was read (401, 404, 405,
/// 415, 429) either leaves the connection usable or says `Connection: close`; a keep-alive
/// client's next request never fails on it.
#[tokio::test]
async fn answers_before_the_body_is_read_never_break_a_keep_alive_client() {
    let app = TestApp::spawn().await;
    let (merchant, limited_key) = app.create_merchant_with_id("Limited").await;
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/merchants/{merchant}")))
        .bearer_auth(payrail_tests::ADMIN_TOKEN)
        .json(&json!({"rate_limit_per_second": 1, "rate_limit_burst": 1}))
        .send()
        .await
        .expect("limit");
    assert_eq!(r.status(), 200);
    // Large enough that the server has not read it all when it answers (a small body arrives
    // with the head and is drained by the server anyway).
    let body = format!(
        r#"{{"amount": 100, "currency": "usd", "provider": "simulated", "description": "{}"}}"#,
        "x".repeat(512 * 1024)
    );
    let body = body.as_str();
    let post = |method: &str, path: &str, key: &str, content_type: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let key = app.api_key.clone();
    let cases = [
        (
            401,
            post("POST", "/v1/payments", "sk_test_wrong", "application/json"),
        ),
        (404, post("POST", "/v1/nowhere", &key, "application/json")),
        (405, post("PUT", "/v1/payments", &key, "application/json")),
        (415, post("POST", "/v1/payments", &key, "text/plain")),
        (
            429,
            post("POST", "/v1/payments", &limited_key, "application/json"),
        ),
    ];
    let address = app.base.trim_start_matches("http://").to_string();
    // The limited key's one token goes first.
    assert_eq!(app.get_json(&limited_key, "/v1/payments").await.0, 200);
    for (expected, request) in cases {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let (status, head) = exchange(&mut stream, &request).await.expect("an answer");
        assert_eq!(status, expected, "{head}");
        if head.contains("connection: close") {
            continue;
        }
        let next = exchange(
            &mut stream,
            "GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n",
        )
        .await;
        assert_eq!(
            next.map(|(s, _)| s),
            Some(200),
            "after a {expected} without `Connection: close`, the connection must still serve"
        );
    }
    // A pooled client alternating refused posts with reads never sees a broken connection.
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let refused = client
            .post(app.url("/v1/payments"))
            .bearer_auth("sk_test_wrong")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("a refused post is answered");
        assert_eq!(refused.status(), 401);
        let read = client
            .get(app.url("/v1/payments"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("the next request on the pool is answered");
        assert_eq!(read.status(), 200);
    }
}
