//! The committed OpenAPI document is what the code generates.

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    let generated = gateway::api::spec_json();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `cargo run -q -p gateway -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn the_spec_documents_every_route_and_the_error_shape() {
    let spec: serde_json::Value = serde_json::from_str(&gateway::api::spec_json()).expect("json");
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
