//! The committed OpenAPI document is what the code generates.

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    let generated = gateway::http::api::spec_json();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `cargo run -q -p gateway -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn the_spec_documents_every_route_and_the_error_shape() {
    let spec: serde_json::Value =
        serde_json::from_str(&gateway::http::api::spec_json()).expect("json");
    for path in [
        "/v1/payments",
        "/v1/payments/{id}",
        "/v1/payments/{id}/cancel",
        "/v1/payments/recent",
        "/v1/webhook_endpoints",
        "/v1/webhook_endpoints/{id}",
        "/v1/events",
        "/v1/events/{id}",
        "/v1/webhook_deliveries",
        "/v1/webhook_deliveries/{id}",
        "/v1/webhook_deliveries/{id}/retry",
        "/v1/admin/merchants",
        "/v1/sandbox/payments/{id}/complete",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    assert!(spec["components"]["schemas"].get("ErrorBody").is_some());
    assert!(
        spec["paths"]["/v1/payments"]["post"]["responses"]
            .get("422")
            .is_some()
    );
}

/// The body Swagger UI (`/docs`) proposes: each property's `example`, through references.
fn example_body(spec: &serde_json::Value, schema: &serde_json::Value) -> serde_json::Value {
    let resolve = |s: &serde_json::Value| -> serde_json::Value {
        let reference = s["$ref"]
            .as_str()
            .or_else(|| s["anyOf"][0]["$ref"].as_str());
        match reference.and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => spec["components"]["schemas"][name].clone(),
            None => s.clone(),
        }
    };
    let schema = resolve(schema);
    let mut body = serde_json::Map::new();
    for (name, property) in schema["properties"].as_object().expect("properties") {
        let value = match property.get("example") {
            Some(example) => example.clone(),
            None => example_body(spec, property),
        };
        body.insert(name.clone(), value);
    }
    serde_json::Value::Object(body)
}

#[tokio::test]
async fn the_example_bodies_the_docs_offer_are_accepted_as_they_are() {
    let app = payrail_tests::TestApp::spawn().await;
    let spec: serde_json::Value =
        serde_json::from_str(&gateway::http::api::spec_json()).expect("json");
    for (path, status) in [("/v1/payments", 201), ("/v1/webhook_endpoints", 201)] {
        let schema =
            &spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let body = example_body(&spec, schema);
        let (got, answer) = app.post_json(&app.api_key, path, body.clone()).await;
        assert_eq!(
            got, status,
            "{path} refused its own example {body}: {answer}"
        );
    }
}

#[tokio::test]
async fn the_served_spec_is_the_refined_one_and_a_wrong_method_names_the_allowed_ones() {
    let app = payrail_tests::TestApp::spawn().await;
    let served: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    assert!(served["x-webhooks"]["payment.succeeded"].is_object());
    assert_eq!(
        served["components"]["schemas"]["Payment"]["properties"]["description"]["nullable"],
        true
    );
    let docs = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(
        docs.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    let docs = docs.text().await.expect("html");
    assert!(
        docs.contains("PaymentSucceededWebhook"),
        "the UI shows the refined spec"
    );
    let r = app
        .client
        .put(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
}

#[test]
fn every_operation_documents_exactly_its_own_errors() {
    let spec: serde_json::Value =
        serde_json::from_str(&gateway::http::api::spec_json()).expect("json");
    let codes = |path: &str, method: &str| -> Vec<String> {
        let mut c: Vec<String> = spec["paths"][path][method]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        codes("/v1/events", "get"),
        ["200", "400", "401", "422", "429", "500", "503"]
    );
    assert_eq!(
        codes("/v1/payments", "post"),
        [
            "201", "400", "401", "409", "413", "415", "422", "429", "500", "502", "503"
        ]
    );
    assert_eq!(
        codes("/v1/providers/moneroo/webhooks", "post"),
        ["200", "400", "403", "413", "500", "503"]
    );
    // A closed set is its type, named once and referenced: the spec says it from the code.
    assert_eq!(
        spec["components"]["schemas"]["Payment"]["properties"]["status"]["$ref"],
        "#/components/schemas/PaymentStatus"
    );
    let status = &spec["components"]["schemas"]["PaymentStatus"]["enum"];
    assert_eq!(
        status.as_array().map(Vec::len),
        Some(entity::payment_status::PaymentStatus::ALL.len())
    );
}

/// The contract findings of issue 21, each as the spec now states it (the clients' tests
/// show the same against a live gateway).
#[test]
fn the_spec_says_what_the_server_does_where_it_used_to_differ() {
    let spec: serde_json::Value =
        serde_json::from_str(&gateway::http::api::spec_json()).expect("json");
    let schemas = &spec["components"]["schemas"];
    let payout = &schemas["CreatePayoutRequest"]["properties"];
    assert_eq!(payout["amount"]["minimum"], 1);
    assert_eq!(
        payout["provider"]["enum"],
        serde_json::json!(["moneroo", "simulated"])
    );
    assert_eq!(
        schemas["PayoutDestination"]["properties"]["type"]["enum"],
        serde_json::json!(["mobile_money", "bank_account"])
    );
    // A nullable object is an anyOf with a null-only branch, which OAS 3.0 validators accept.
    let customer = &schemas["Payment"]["properties"]["customer"];
    assert_eq!(customer["anyOf"][1]["enum"], serde_json::json!([null]));
    let events = &spec["paths"]["/v1/events"]["get"]["parameters"];
    let types = events
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "types[]"))
        .expect("types[]");
    assert_eq!(types["required"], false);
    let txns = &spec["paths"]["/v1/balance_transactions"]["get"]["parameters"];
    let kind = txns
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "type"))
        .expect("type");
    assert!(
        kind["schema"]["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&serde_json::json!("charge"))),
        "balance transactions filter by their own types: {kind}"
    );
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operation") {
            let what = format!("{method} {path}");
            assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{what}");
            assert!(op["security"].is_array(), "{what} says who may call it");
            if let Some(content) = op["requestBody"]["content"].as_object() {
                assert!(
                    !content.contains_key("application/json; charset=utf-8"),
                    "{what}: bodies are plain application/json"
                );
            }
            if let Some(unauthenticated) = op["responses"].get("401") {
                assert!(
                    unauthenticated["headers"].get("RateLimit-Limit").is_none(),
                    "{what}: a 401 has no rate limit headers"
                );
            }
        }
    }
    let create_key = &spec["paths"]["/v1/api_keys"]["post"];
    assert!(
        create_key["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key")),
        "creating a key takes an Idempotency-Key"
    );
}
