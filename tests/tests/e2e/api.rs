//! The merchant API's objects: isolation between merchants, lists (cursors, filters), and
//! what a PATCH may change.

use payrail_tests::TestApp;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

#[tokio::test]
async fn merchants_never_see_each_others_objects() {
    let app = TestApp::spawn().await;
    let other = app.create_merchant("Other").await;
    let payment = app.create_payment(100).await;
    let id = payment["id"].as_str().expect("id");
    let (endpoint, _) = app.create_endpoint("https://example.com/hook").await;
    for path in [
        format!("/v1/payments/{id}"),
        format!("/v1/webhook_endpoints/{endpoint}"),
    ] {
        let (s, b) = app.get_json(&other, &path).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (404, Some("resource_missing")),
            "{path}"
        );
    }
    let (s, _) = app
        .post_json(&other, &format!("/v1/payments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post_json(
            &other,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 404);
    let r = app
        .client
        .delete(app.url(&format!("/v1/webhook_endpoints/{endpoint}")))
        .bearer_auth(&other)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    for list in [
        "/v1/payments",
        "/v1/events",
        "/v1/webhook_endpoints",
        "/v1/webhook_deliveries",
        "/v1/payments/recent",
    ] {
        let (s, b) = app.get_json(&other, list).await;
        assert_eq!(s, 200);
        assert_eq!(
            b["data"].as_array().map(Vec::len),
            Some(0),
            "{list} leaks: {b}"
        );
    }
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["status"], "pending", "the other merchant changed nothing");
}

#[tokio::test]
async fn lists_page_with_cursors_and_filter() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, p) = app.post_json(&app.api_key, "/v1/payments", json!({"amount": 100 + i, "currency": "usd", "provider": "simulated", "reference": if i % 2 == 0 { "even" } else { "odd" }})).await;
        ids.push(p["id"].as_str().expect("id").to_string());
    }
    ids.reverse(); // newest first
    let (_, page1) = app.get_json(&app.api_key, "/v1/payments?limit=2").await;
    let got = |v: &Value| {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|p| p["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(got(&page1), ids[0..2]);
    assert_eq!(page1["has_more"], true);
    assert_eq!(page1["object"], "list");
    let (_, page2) = app
        .get_json(
            &app.api_key,
            &format!("/v1/payments?limit=2&starting_after={}", ids[1]),
        )
        .await;
    assert_eq!(got(&page2), ids[2..4]);
    let (_, page3) = app
        .get_json(
            &app.api_key,
            &format!("/v1/payments?limit=2&starting_after={}", ids[3]),
        )
        .await;
    assert_eq!(got(&page3), ids[4..5]);
    assert_eq!(page3["has_more"], false);
    let (_, back) = app
        .get_json(
            &app.api_key,
            &format!("/v1/payments?limit=2&ending_before={}", ids[4]),
        )
        .await;
    assert_eq!(got(&back), ids[2..4]);
    let (_, even) = app
        .get_json(&app.api_key, "/v1/payments?reference=even")
        .await;
    assert_eq!(even["data"].as_array().map(Vec::len), Some(3));

    // The recent list comes from the cache, and a write invalidates it.
    let r = app.get(&app.api_key, "/v1/payments/recent").await;
    assert_eq!(
        r.headers().get("x-cache").and_then(|v| v.to_str().ok()),
        Some("miss")
    );
    let r = app.get(&app.api_key, "/v1/payments/recent").await;
    assert_eq!(
        r.headers().get("x-cache").and_then(|v| v.to_str().ok()),
        Some("hit")
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["data"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    app.create_payment(7).await;
    let r = app.get(&app.api_key, "/v1/payments/recent").await;
    assert_eq!(
        r.headers().get("x-cache").and_then(|v| v.to_str().ok()),
        Some("miss")
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["data"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
}

#[tokio::test]
async fn lists_filter_by_creation_time_and_events_by_several_types() {
    let app = TestApp::spawn().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(app.create_payment(100).await);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let ids = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|p| p["id"].as_str().expect("id").to_string())
            .collect()
    };
    let id = |i: usize| made[i]["id"].as_str().expect("id").to_string();
    let second = chrono::DateTime::parse_from_rfc3339(made[1]["created_at"].as_str().expect("at"))
        .expect("rfc3339");
    // Responses show milliseconds; the row keeps more, so the upper bound gets one more.
    let gte = second.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let lte = (second + chrono::Duration::milliseconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let query = |q: String| {
        let app = &app;
        async move {
            app.get_json(&app.api_key, &format!("/v1/payments?{q}"))
                .await
        }
    };
    let (s, list) = query(format!("created%5Bgte%5D={gte}")).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(ids(&list), vec![id(2), id(1)]);
    let (s, list) = query(format!("created%5Blte%5D={lte}")).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(ids(&list), vec![id(1), id(0)]);
    let (_, list) = query(format!("created[gte]={gte}&created[lte]={lte}")).await;
    assert_eq!(ids(&list), vec![id(1)]);
    let later = chrono::Utc::now().timestamp() + 3600;
    let (_, list) = query(format!("created[gte]={later}")).await;
    assert_eq!(ids(&list), Vec::<String>::new(), "Unix seconds work too");
    let (s, err) = query("created[gte]=yesterday".into()).await;
    assert_eq!(
        (s, err["error"]["param"].as_str()),
        (422, Some("created[gte]"))
    );
    let (s, err) = query(format!("created[gte]={later}&created[lte]=0")).await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (422, Some("created_range_invalid"))
    );

    // Events: one succeeded payment beside three pending ones.
    let (s, _) = app
        .post_json(
            &app.api_key,
            &format!("/v1/sandbox/payments/{}/complete", id(0)),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 200);
    let events = |q: &str| {
        let app = &app;
        let q = q.to_string();
        async move { app.get_json(&app.api_key, &format!("/v1/events?{q}")).await }
    };
    let types = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_string())
            .collect()
    };
    let (_, all) = events("types[]=payment.pending&types[]=payment.succeeded").await;
    assert_eq!(types(&all).len(), 4, "{all}");
    let (_, one) = events("types%5B%5D=payment.succeeded").await;
    assert_eq!(types(&one), vec!["payment.succeeded"]);
    let (s, err) = events("types[]=payment.succeeded&types[]=payment.teleported").await;
    assert_eq!((s, err["error"]["param"].as_str()), (422, Some("types[]")));
    let (_, none) = events(&format!("created[gte]={later}")).await;
    assert_eq!(types(&none), Vec::<String>::new());
}

#[tokio::test]
async fn a_payment_description_and_metadata_can_be_patched_and_nothing_else() {
    let app = TestApp::spawn().await;
    let (s, created) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2000, "currency": "usd", "provider": "simulated",
                   "description": "Order 1", "metadata": {"a": "1", "b": "2"}}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let patch = |key: String, body: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            let r = app
                .client
                .patch(app.url(&format!("/v1/payments/{id}")))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, p) = patch(
        app.api_key.clone(),
        json!({"description": null, "metadata": {"b": "", "c": "3"}}),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["description"], Value::Null);
    assert_eq!(
        p["metadata"],
        json!({"a": "1", "c": "3"}),
        "merged; \"\" removes"
    );
    assert_eq!(
        (p["amount"].clone(), p["status"].clone()),
        (json!(2000), json!("pending"))
    );
    let (_, got) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(got["metadata"], json!({"a": "1", "c": "3"}));

    // Refused, and nothing changes: money fields, too many keys, a long description, wrong types.
    let too_many: serde_json::Map<String, Value> =
        (0..49).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (body, status) in [
        (json!({"amount": 1}), 400),
        (json!({"description": 5}), 400),
        (json!({"metadata": too_many}), 422),
        (json!({"description": "x".repeat(1001)}), 422),
    ] {
        let (s, answer) = patch(app.api_key.clone(), body.clone()).await;
        assert_eq!(s, status, "{body}: {answer}");
    }
    let (_, unchanged) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(unchanged["metadata"], got["metadata"]);
    assert_eq!(unchanged["description"], Value::Null);

    // Another merchant's payment does not exist for you.
    let other = app.create_merchant("Other").await;
    let (s, _) = patch(other, json!({"description": "mine now"})).await;
    assert_eq!(s, 404);
    // The cached recent list shows the change at once.
    let (_, recent) = app.get_json(&app.api_key, "/v1/payments/recent").await;
    assert_eq!(
        recent["data"][0]["metadata"],
        json!({"a": "1", "c": "3"}),
        "{recent}"
    );
}

/// A payment and its `payment.pending` event are written together: the event shows the
/// payment exactly as stored and read back, and when the event cannot be written the payment
/// is not either (with or without an idempotency key, whether one statement or a
/// transaction holds them).
#[tokio::test]
async fn a_payment_and_its_pending_event_are_written_together() {
    let app = TestApp::spawn().await;
    let (s, created) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 2500, "currency": "usd", "provider": "simulated",
                   "description": "Order 7", "reference": "ref-7",
                   "metadata": {"zeta": "last", "alpha": "first", "mid": "é"},
                   "customer": {"email": "ada@example.com", "name": "Ada"}}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let (s, read) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(s, 200, "{read}");
    let (s, events) = app
        .get_json(&app.api_key, "/v1/events?types[]=payment.pending")
        .await;
    assert_eq!(s, 200, "{events}");
    assert_eq!(events["data"].as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(
        events["data"][0]["data"], read,
        "the event shows the stored payment"
    );
    assert_eq!(created, read, "the answer is the stored payment");

    // The event's insert now fails: nothing of the payment may remain.
    app.db
        .execute_unprepared(
            "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'no events today'; END $$; \
             CREATE TRIGGER refuse_events BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION refuse_events();",
        )
        .await
        .expect("install the trigger");
    for key in [None, Some("written-together-1")] {
        let mut request = app
            .client
            .post(app.url("/v1/payments"))
            .bearer_auth(&app.api_key)
            .json(&json!({"amount": 900, "currency": "usd", "provider": "simulated"}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = request.send().await.expect("send");
        assert_eq!(answer.status().as_u16(), 500, "idempotency key {key:?}");
        assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
        assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    }
}
