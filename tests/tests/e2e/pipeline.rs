//! Payment → event → outbox → RabbitMQ → worker → signed webhook, as a merchant sees it.

use std::time::Duration;

use entity::signature::SigningKey;
use payrail_tests::{Behavior, Receiver, TestApp};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// What a merchant does on receipt: check both signatures against the exact bytes.
fn verify(secret: &str, r: &payrail_tests::receiver::Received) {
    let key = SigningKey::from_secret(secret).expect("secret");
    let id = r.header("webhook-id").expect("webhook-id");
    let ts: i64 = r
        .header("webhook-timestamp")
        .expect("timestamp")
        .parse()
        .expect("number");
    let sig = r.header("webhook-signature").expect("webhook-signature");
    assert!(
        key.verify_standard(id, ts, &r.body, sig, chrono::Utc::now().timestamp(), 300),
        "standard webhook signature must verify"
    );
    assert_eq!(
        r.header("x-payrail-signature"),
        Some(key.sign_body(&r.body).as_str())
    );
    assert_eq!(
        r.json()["id"].as_str(),
        Some(id),
        "webhook-id is the event id"
    );
    assert!(
        r.header("user-agent")
            .is_some_and(|ua| ua.starts_with("Payrail-Webhooks/"))
    );
    assert!(
        r.header("x-payrail-delivery")
            .is_some_and(|d| d.starts_with("whd_"))
    );
}

#[tokio::test]
async fn a_created_payment_is_delivered_signed_and_a_sandbox_completion_follows() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (_, secret) = app.create_endpoint(&receiver.url).await;

    let payment = app.create_payment(2000).await;
    let id = payment["id"].as_str().expect("id").to_string();
    assert_eq!(payment["status"], "pending");
    assert!(
        payment["checkout_url"]
            .as_str()
            .is_some_and(|u| u.contains(&format!("/sandbox/checkout/{id}")))
    );

    let pending = app
        .eventually(WAIT, "payment.pending webhook", || async {
            receiver.of_type("payment.pending").into_iter().next()
        })
        .await;
    verify(&secret, &pending);
    assert_eq!(pending.json()["data"]["id"], id.as_str());
    assert_eq!(pending.header("x-payrail-event"), Some("payment.pending"));
    // The webhook and the API's copy of the event name the same API version.
    assert_eq!(pending.json()["api_version"], entity::event::API_VERSION);
    let event_id = pending.json()["id"].as_str().expect("event id").to_string();
    let (status, event) = app
        .get_json(&app.api_key, &format!("/v1/events/{event_id}"))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["api_version"], entity::event::API_VERSION);

    let (status, completed) = app
        .post_json(
            &app.api_key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(status, 200, "{completed}");
    assert_eq!(completed["status"], "succeeded");
    // A retry after a lost answer gets the answer, and changes nothing (issue 25).
    let (status, retried) = app
        .post_json(
            &app.api_key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["id"], completed["id"]);
    assert_eq!(retried["status"], "succeeded");

    let succeeded = app
        .eventually(WAIT, "payment.succeeded webhook", || async {
            receiver.of_type("payment.succeeded").into_iter().next()
        })
        .await;
    verify(&secret, &succeeded);
    assert_eq!(succeeded.json()["data"]["status"], "succeeded");
    let order: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        order,
        vec!["payment.pending", "payment.succeeded"],
        "succeeded arrives after pending, once each"
    );

    // The event log has both, newest first, and they are marked published.
    let (_, events) = app.get_json(&app.api_key, "/v1/events").await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, vec!["payment.succeeded", "payment.pending"]);
    app.until_outbox_empty(WAIT).await;

    // A delivery row per event, each succeeded with one attempt (the worker records an
    // attempt after the receiver answered it: wait for the record, not only the request).
    let deliveries = app
        .eventually(WAIT, "both deliveries recorded as succeeded", || async {
            let (_, d) = app
                .get_json(&app.api_key, "/v1/webhook_deliveries?status=succeeded")
                .await;
            (d["data"].as_array().map(Vec::len) == Some(2)).then_some(d)
        })
        .await;
    let one = deliveries["data"][0]["id"].as_str().expect("id");
    let (_, detail) = app
        .get_json(&app.api_key, &format!("/v1/webhook_deliveries/{one}"))
        .await;
    assert_eq!(detail["attempt_history"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["attempt_history"][0]["http_status"], 200);
}

#[tokio::test]
async fn the_hosted_checkout_page_completes_through_the_provider_path() {
    let app = TestApp::spawn().await;
    let (status, payment) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 500000, "currency": "xaf", "provider": "simulated",
                   "return_url": "https://shop.example.com/orders/7?lang=fr"}),
        )
        .await;
    assert_eq!(status, 201, "{payment}");
    let id = payment["id"].as_str().expect("id");
    let page = app
        .client
        .get(app.url(&format!("/sandbox/checkout/{id}")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("the page sets its CSRF cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().expect("name=value").to_string();
    let html = page.text().await.expect("html");
    assert!(html.contains("Decline") && html.contains("pending"));
    assert!(
        html.contains(r#"<h1 id="merchant">Test merchant</h1>"#),
        "the customer sees whom they pay"
    );
    assert!(
        html.contains("500\u{a0}000\u{a0}FCFA"),
        "the amount as customers write it"
    );
    assert!(html.contains(r#"name="viewport""#) && html.contains(r#"lang="en""#));
    assert!(html.contains(r#"<svg role="img" aria-label="QR code"#));
    let token = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a token in the forms")
        .to_string();
    assert_eq!(
        Some(&cookie[cookie.find('=').map_or(0, |i| i + 1)..]),
        Some(token.as_str())
    );
    // A second tab (the same browser, its cookie) gets the same token: both tabs' forms work.
    let second_tab = app
        .client
        .get(app.url(&format!("/sandbox/checkout/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("second tab");
    let second_html = second_tab.text().await.expect("html");
    assert!(
        second_html.contains(&format!(r#"name="csrf_token" value="{token}""#)),
        "a second tab keeps the first tab's token valid"
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let action = app.url(&format!("/sandbox/checkout/{id}/failed"));
    // Without the cookie, without the token, or with another token: refused, nothing changes.
    for (cookie_sent, form) in [
        (None, vec![("csrf_token", token.as_str())]),
        (Some(cookie.as_str()), vec![]),
        (Some(cookie.as_str()), vec![("csrf_token", "forged")]),
    ] {
        let mut post = no_redirects
            .post(&action)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&form));
        if let Some(c) = cookie_sent {
            post = post.header("cookie", c);
        }
        let r = post.send().await.expect("forged post");
        assert_eq!(r.status(), 403);
        let told = r.text().await.expect("page");
        assert!(
            told.contains("Nothing was charged")
                && told.contains(&format!(r#"href="/sandbox/checkout/{id}""#)),
            "a refusal says what happened and the way back: {told}"
        );
    }
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "pending", "a refused post changes nothing");
    let r = no_redirects
        .post(&action)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf_token", token.as_str())]))
        .send()
        .await
        .expect("decline");
    assert_eq!(r.status(), 303);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location");
    assert_eq!(
        location,
        format!("https://shop.example.com/orders/7?lang=fr&payment_id={id}&status=failed")
    );
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "failed");
    assert_eq!(p["failure_code"], "card_declined");
    // The declined page is not a dead end: it says so and where to try again.
    let after = app
        .client
        .get(app.url(&format!("/sandbox/checkout/{id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        after.contains("Your payment was declined. Nothing was charged.")
            && after.contains("Try again at Test merchant")
            && after.contains("https://shop.example.com/orders/7?lang=fr&amp;payment_id="),
        "{after}"
    );
    assert_eq!(app.count("SELECT count(*) FROM provider_events WHERE provider = 'simulated' AND outcome = 'applied'").await, 1);

    // The QR code of the checkout URL, public like the URL itself, as SVG and PNG.
    let qr_url = payment["qr_code_url"].as_str().expect("qr_code_url");
    assert_eq!(qr_url, app.url(&format!("/v1/payments/{id}/qr")));
    let svg = app.client.get(qr_url).send().await.expect("svg");
    assert_eq!(
        svg.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    assert!(svg.text().await.expect("svg").contains("<svg"));
    let png = app
        .client
        .get(format!("{qr_url}?format=png"))
        .send()
        .await
        .expect("png");
    assert_eq!(
        png.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let bytes = png.bytes().await.expect("bytes");
    assert_eq!(
        decode_qr_png(&bytes),
        payment["checkout_url"].as_str().expect("checkout_url"),
        "the PNG scans to the checkout URL"
    );
    let bad = app
        .client
        .get(format!("{qr_url}?format=gif"))
        .send()
        .await
        .expect("gif");
    assert_eq!(bad.status(), 422);
    let unknown = app
        .client
        .get(app.url("/v1/payments/pay_019ab3f0c1d27e8a9b4c5d6e7f801234/qr"))
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn test_cards_are_processed_at_once_and_the_number_is_never_stored() {
    let app = TestApp::spawn().await;
    let year = 2031;
    let card = |number: &str| {
        json!({"amount": 1500, "currency": "eur", "provider": "simulated",
        "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": year, "cvc": "123"}}})
    };
    let (s, ok) = app
        .post_json(&app.api_key, "/v1/payments", card("4242424242424242"))
        .await;
    assert_eq!((s, ok["status"].as_str()), (201, Some("succeeded")), "{ok}");
    assert_eq!(ok["payment_method"]["card"]["last4"], "4242");
    assert_eq!(ok["payment_method"]["card"]["brand"], "visa");
    assert!(!ok.to_string().contains("4242424242424242"));
    let (_, declined) = app
        .post_json(&app.api_key, "/v1/payments", card("4000000000000002"))
        .await;
    assert_eq!(
        (
            declined["status"].as_str(),
            declined["failure_code"].as_str()
        ),
        (Some("failed"), Some("card_declined"))
    );
    let (_, funds) = app
        .post_json(&app.api_key, "/v1/payments", card("4000000000009995"))
        .await;
    assert_eq!(funds["failure_code"], "insufficient_funds");
    // Each went pending → final with one event per change.
    let (_, events) = app.get_json(&app.api_key, "/v1/events?limit=100").await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(6));
    for number in ["4242424242424242", "4000000000000002", "4000000000009995"] {
        let hits = app
            .count(&format!(
                "SELECT (SELECT count(*) FROM payments WHERE payment_method::text LIKE '%{number}%' OR metadata::text LIKE '%{number}%')
                      + (SELECT count(*) FROM events WHERE data::text LIKE '%{number}%')
                      + (SELECT count(*) FROM idempotency_keys WHERE response_body LIKE '%{number}%')"
            ))
            .await;
        assert_eq!(hits, 0, "the card number must not reach the database");
    }
}

#[tokio::test]
async fn cancel_works_once_and_final_states_never_move_backwards() {
    let app = TestApp::spawn().await;
    let id = app.create_payment(100).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, p) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("cancelled")));
    let (s, e) = app
        .post_json(
            &app.api_key,
            &format!("/v1/payments/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("payment_not_cancellable"))
    );
    let (s, _) = app
        .post_json(
            &app.api_key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 409);

    // A late success (validly signed) is recorded and flagged for reconciliation, never just
    // ignored; the status stays final; a duplicate does nothing.
    let (raw, sig) = app
        .state
        .simulated
        .event_for(&id, entity::payment_status::PaymentStatus::Succeeded);
    let send = || {
        app.client
            .post(app.url("/v1/providers/simulated/webhooks"))
            .header("Payrail-Simulated-Signature", sig.clone())
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
    };
    let first: serde_json::Value = send().await.expect("send").json().await.expect("json");
    assert_eq!(first["outcome"], "requires_reconciliation");
    let again: serde_json::Value = send().await.expect("send").json().await.expect("json");
    assert_eq!(again["outcome"], "duplicate");
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "cancelled");
    let (_, events) = app.get_json(&app.api_key, "/v1/events").await;
    assert_eq!(
        events["data"].as_array().map(Vec::len),
        Some(2),
        "pending and cancelled only"
    );

    // A forged webhook is refused and changes nothing.
    let forged = app
        .client
        .post(app.url("/v1/providers/simulated/webhooks"))
        .header("Payrail-Simulated-Signature", "sha256=00")
        .header("content-type", "application/json")
        .body(raw.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 400);
    assert_eq!(app.count("SELECT count(*) FROM provider_events").await, 1);
}

/// What a phone reads from a QR code PNG.
fn decode_qr_png(bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let width = info.width as usize;
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, info.height as usize, |x, y| {
            pixels[y * width + x]
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("decodes").1
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
