//! The log store: merchants' own entries, Payrail's automatic ones (payment failures, API
//! 5xx, exhausted deliveries), the cached recent view, stats, isolation, retention; and the
//! request id that follows a payment from the API call to its events and logs.

use std::time::Duration;

use payrail_tests::mocks;
use payrail_tests::{Behavior, Options, Receiver, TestApp};
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

#[tokio::test]
async fn merchants_write_read_recent_entries_and_stats_of_their_own_only() {
    let app = TestApp::spawn().await;
    let other = app.create_merchant("Other").await;
    let write = |level: &str, source: &str, message: &str| {
        app.post_json(
            &app.api_key,
            "/v1/logs",
            json!({"level": level, "message": message, "source": source, "context": {"order": 7}}),
        )
    };
    let (s, entry) = write("info", "checkout", "cart opened").await;
    assert_eq!(s, 201, "{entry}");
    assert_eq!(
        (entry["source"].as_str(), entry["context"]["order"].as_i64()),
        (Some("merchant:checkout"), Some(7))
    );
    write("error", "checkout", "card form crashed").await;
    for (body, param) in [
        (
            json!({"level": "loud", "message": "x", "source": "y"}),
            "level",
        ),
        (
            json!({"level": "info", "message": "", "source": "y"}),
            "message",
        ),
        (
            json!({"level": "info", "message": "x", "source": "y", "context": [1]}),
            "context",
        ),
    ] {
        let (s, b) = app.post_json(&app.api_key, "/v1/logs", body).await;
        assert_eq!((s, b["error"]["param"].as_str()), (422, Some(param)));
    }

    let recent = || app.get(&app.api_key, "/v1/logs/recent");
    let r = recent().await;
    assert_eq!(r.headers()["x-cache"], "miss");
    let list: Value = r.json().await.expect("json");
    let messages: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        vec!["card form crashed"],
        "only error and critical entries"
    );
    assert_eq!(recent().await.headers()["x-cache"], "hit");
    write("critical", "checkout", "payments page down").await;
    let r = recent().await;
    assert_eq!(
        r.headers()["x-cache"],
        "miss",
        "a new alarming entry drops the cached list"
    );
    let list: Value = r.json().await.expect("json");
    assert_eq!(
        list["data"][0]["message"], "payments page down",
        "newest first"
    );

    let (s, stats) = app.get_json(&app.api_key, "/v1/logs/stats?window=1h").await;
    assert_eq!(s, 200);
    assert_eq!(
        (stats["total"].as_i64(), stats["window_seconds"].as_u64()),
        (Some(3), Some(3600))
    );
    assert_eq!(
        stats["by_level"],
        json!({"info": 1, "error": 1, "critical": 1})
    );
    assert_eq!(stats["by_source"], json!({"merchant:checkout": 3}));
    assert_eq!(
        app.get_json(&app.api_key, "/v1/logs/stats?window=forever")
            .await
            .0,
        422
    );

    let (_, theirs) = app.get_json(&other, "/v1/logs/recent").await;
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(0));
    let (_, theirs) = app.get_json(&other, "/v1/logs/stats").await;
    assert_eq!(theirs["total"], 0);
}

#[tokio::test]
async fn payment_failures_api_errors_and_exhausted_deliveries_are_logged_with_the_request_id() {
    let stripe = mocks::stripe().await;
    let mut webhook = Options::default().webhook;
    webhook.max_attempts = 1;
    let app = TestApp::spawn_with(Options {
        webhook,
        providers: mocks::settings(Some(&stripe), None, None),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 500)).await;
    app.create_endpoint(&receiver.url).await;

    // A provider failure: a failed payment (payments), a 502 (api), all under our request id.
    stripe.fail_next(2);
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("X-Request-Id", "req-trace-42")
        .json(&json!({"amount": 2000, "currency": "usd", "provider": "stripe"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.headers()["x-request-id"],
        "req-trace-42",
        "the request id comes back"
    );
    let payment_id = r.json::<Value>().await.expect("json")["error"]["payment_id"]
        .as_str()
        .expect("payment id")
        .to_string();
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE request_id = 'req-trace-42'")
            .await,
        2,
        "pending and failed events carry it"
    );

    app.eventually(
        Duration::from_secs(15),
        "the exhausted deliveries to be logged",
        || async {
            (app.count("SELECT count(*) FROM logs WHERE source = 'webhooks'")
                .await
                == 2)
                .then_some(())
        },
    )
    .await;
    let (_, recent) = app.get_json(&app.api_key, "/v1/logs/recent").await;
    let entries = recent["data"].as_array().expect("data").clone();
    let by = |source: &str| {
        entries
            .iter()
            .filter(|e| e["source"] == source)
            .cloned()
            .collect::<Vec<_>>()
    };
    let payments = by("payments");
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["context"]["payment_id"], payment_id.as_str());
    assert_eq!(payments[0]["request_id"], "req-trace-42");
    let api = by("api");
    assert_eq!(
        api.len(),
        1,
        "the 502 is filed under the merchant who got it"
    );
    assert_eq!(
        (api[0]["request_id"].as_str(), api[0]["level"].as_str()),
        (Some("req-trace-42"), Some("error"))
    );
    let webhooks = by("webhooks");
    assert_eq!(webhooks.len(), 2);
    assert!(webhooks.iter().all(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed after 1 attempts"))
    }));
    assert!(
        webhooks.iter().all(|e| e["request_id"] == "req-trace-42"),
        "the id followed the event into the worker"
    );

    // A declined test card is a payment failure too.
    app.post_json(&app.api_key, "/v1/payments", json!({"amount": 100, "currency": "usd", "provider": "simulated",
        "payment_method": {"type": "card", "card": {"number": "4000000000000002", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}})).await;
    assert_eq!(
        app.count("SELECT count(*) FROM logs WHERE source = 'payments'")
            .await,
        2
    );
}

#[tokio::test]
async fn retention_deletes_old_entries_and_old_idempotency_keys_only() {
    let app = TestApp::spawn().await;
    for message in ["old", "new"] {
        app.post_json(
            &app.api_key,
            "/v1/logs",
            json!({"level": "warning", "message": message, "source": "jobs"}),
        )
        .await;
    }
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "old-key")
        .json(&json!({"amount": 100, "currency": "usd", "provider": "simulated"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    // Its id too: the id says which day partition holds a row (none that long ago, so the
    // default partition, pruned row by row).
    let old_id =
        entity::ids::IdKind::Log.generate_at(chrono::Utc::now() - chrono::Duration::days(31));
    app.db
        .execute_unprepared(&format!(
            "UPDATE logs SET id = '{old_id}', created_at = now() - interval '31 days' WHERE message = 'old'"
        ))
        .await
        .expect("age");
    app.db
        .execute_unprepared("UPDATE idempotency_keys SET created_at = now() - interval '8 days'")
        .await
        .expect("age");
    let retention = gateway::app::retention::Retention {
        db: app.db.clone(),
        logs: app.settings.gateway.retention.logs,
        idempotency_keys: app.settings.gateway.retention.idempotency_keys,
        events: app.settings.gateway.retention.events,
    };
    let pruned = retention.prune_once().await.expect("prune");
    assert_eq!((pruned.logs, pruned.idempotency_keys), (1, 1));
    assert_eq!(
        app.count("SELECT count(*) FROM logs WHERE message = 'new'")
            .await,
        1
    );
    assert_eq!(
        retention.prune_once().await.expect("again"),
        gateway::app::retention::Pruned::default()
    );
}
