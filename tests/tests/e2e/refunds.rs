//! Refunds: partial and full, and what they make the gateway count.

use payrail_tests::TestApp;
use serde_json::json;

/// The counter line of `payments_total` for the simulated provider in `status`.
fn counted(metrics: &str, status: &str) -> u64 {
    let prefix = format!("payments_total{{gateway=\"simulated\",status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|n| n.trim().parse().expect("a count"))
        .unwrap_or(0)
}

/// Issue 21: both refund handlers applied the effect that skips the status counter, so the
/// refund that empties a payment never counted it `refunded`. Now the service returns what it
/// committed, and the move is counted once, the partial refund before it not at all.
#[tokio::test]
async fn the_refund_that_empties_a_payment_counts_it_refunded_once() {
    let app = TestApp::spawn().await;
    let key = app.create_merchant("Shop").await;
    let (s, p) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 1000, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let (s, _) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 200);
    let before = app.metrics_text().await;
    assert_eq!(counted(&before, "succeeded"), 1);
    assert_eq!(counted(&before, "refunded"), 0);

    let (s, r) = app
        .post_json(
            &key,
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 400}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let partial = app.metrics_text().await;
    assert_eq!(
        counted(&partial, "refunded"),
        0,
        "a partial refund moves nothing"
    );
    assert_eq!(
        counted(&partial, "succeeded"),
        1,
        "nor counts the payment again"
    );

    let (s, r) = app
        .post_json(&key, &format!("/v1/payments/{id}/refunds"), json!({}))
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, payment) = app.get_json(&key, &format!("/v1/payments/{id}")).await;
    assert_eq!(payment["status"], "refunded");
    let after = app.metrics_text().await;
    assert_eq!(counted(&after, "refunded"), 1, "{after}");
    assert_eq!(counted(&after, "succeeded"), 1);
}
