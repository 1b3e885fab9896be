//! The hosted checkout in a real browser: Debian's Chromium, headless, driven by Playwright
//! (`tests/clients/checkout.mjs`) as a customer on a phone: the amount as they write it, the QR
//! code, the Pay button, and the landing on the merchant's `return_url`. Screenshots of each
//! step are kept under `target/tmp/checkout-screenshots/`.

use std::process::Command;

use payrail_tests::TestApp;
use serde_json::json;

use crate::clients::{assert_success, run, tools};

#[tokio::test]
async fn a_customer_on_a_phone_pays_on_the_checkout_and_lands_on_the_return_url() {
    let dir = tools().await;
    let app = TestApp::spawn().await;
    let return_url = app.url("/health/live?order=1042");
    let (status, payment) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 4999, "currency": "eur", "provider": "simulated",
                   "description": "Order #1042", "return_url": return_url}),
        )
        .await;
    assert_eq!(status, 201, "{payment}");
    let id = payment["id"].as_str().expect("id");
    let checkout_url = payment["checkout_url"].as_str().expect("checkout_url");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkout-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut browser = Command::new("node");
    browser
        .arg(dir.join("checkout.mjs"))
        .args([checkout_url, &return_url, "€49.99"])
        .arg(&shots)
        .current_dir(&dir);
    assert_success("the checkout in Chromium", &run(browser).await);
    let (_, paid) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    for shot in [
        "1-checkout-mobile.png",
        "2-checkout-desktop.png",
        "3-returned.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).expect("screenshot kept");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}
