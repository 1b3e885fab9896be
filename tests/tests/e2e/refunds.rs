//! Refunds: partial and full, and what they make the gateway count.

use std::time::Duration;

use crate::support::*;
use payrail_tests::{Behavior, Options, Receiver, TestApp, mocks};
use sea_orm::ConnectionTrait as _;
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

/// A refund keeps the reason it was given (Stripe's three), an idempotent retry must repeat it,
/// and any other reason is a 400 that refunds nothing.
#[tokio::test]
async fn a_refund_keeps_its_reason_and_an_unknown_reason_refunds_nothing() {
    let app = TestApp::spawn().await;
    let id = succeeded_payment(&app, 1000).await;
    let path = format!("/v1/payments/{id}/refunds");
    let post =
        async |body: serde_json::Value, key: &str| post_with_key(&app, &path, key, body).await;
    for bad in [
        json!("changed_mind"),
        json!(""),
        json!(3),
        json!("DUPLICATE"),
    ] {
        let (s, b) = post(json!({"amount": 100, "reason": bad}), "bad").await;
        assert_eq!(
            (s, b["error"]["type"].as_str()),
            (400, Some("invalid_request_error")),
            "{bad}: {b}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM refunds").await,
        0,
        "nothing refunded"
    );
    let (s, first) = post(json!({"amount": 300, "reason": "duplicate"}), "k1").await;
    assert_eq!(
        (s, first["reason"].as_str()),
        (201, Some("duplicate")),
        "{first}"
    );
    let (s, replay) = post(json!({"amount": 300, "reason": "duplicate"}), "k1").await;
    assert_eq!(
        (s, &replay["id"]),
        (201, &first["id"]),
        "the same request replays"
    );
    let (s, other) = post(json!({"amount": 300, "reason": "fraudulent"}), "k1").await;
    assert_eq!(
        (s, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "another reason is another request: {other}"
    );
    let (s, plain) = post(json!({"amount": 200}), "k2").await;
    assert_eq!(s, 201, "{plain}");
    assert!(
        plain["reason"].is_null(),
        "no reason given, none kept: {plain}"
    );
    let (_, list) = app.get_json(&app.api_key, &path).await;
    let reasons: Vec<_> = list["data"]
        .as_array()
        .expect("refunds")
        .iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![json!(null), json!("duplicate")],
        "newest first"
    );
}
