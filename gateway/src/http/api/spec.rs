//! The published OpenAPI document: poem-openapi's, made precise.
//!
//! poem-openapi derives paths, parameters and schemas from the code, but (OpenAPI 3.0, as it
//! emits) it cannot say what the types and handlers know: that an optional field is `null`
//! when absent, which values a text field takes (the domain's closed sets: statuses,
//! providers, event types), bounds, formats, examples, which errors each operation can really
//! answer, the headers on every answer, that bodies refuse unknown fields, and what the
//! webhooks we send look like. This module adds exactly that, from the same constants the
//! code checks against, so the document cannot promise a value the code refuses.
//! Schemathesis and the generated clients in CI hold it to what the server does.

use std::sync::LazyLock;

use entity::event::{API_VERSION, EventType};
use entity::payment_status::PaymentStatus;
use entity::status::{DeliveryStatus, EndpointStatus, LogLevel, Provider};
use serde_json::{Map, Value, json};

/// The refined document, as JSON.
pub fn document(poem_spec: &str) -> Value {
    let mut doc: Value = serde_json::from_str(poem_spec).unwrap_or_else(|_| json!({}));
    doc["info"]["contact"] = json!({
        "name": "Payrail",
        "url": "https://github.com/payrail/payrail",
    });
    add_components(&mut doc);
    add_plain_routes(&mut doc);
    plain_enum_refs(&mut doc);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            refine_schema(name, schema);
        }
    }
    refuse_unknown_fields(&mut doc);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            if let Some(ops) = item.as_object_mut() {
                for (_, op) in ops.iter_mut() {
                    refine_operation(path, op);
                }
            }
        }
    }
    doc["x-webhooks"] = webhooks();
    doc
}

// ---------- schemas ----------

/// poem wraps a described field of an enum type as `allOf: [$ref, {description}]`; generators
/// refuse `allOf` over a non-object. The enum's own schema carries its description: the field
/// is a plain reference.
fn plain_enum_refs(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let is_enum = |reference: &str| {
        reference
            .strip_prefix("#/components/schemas/")
            .is_some_and(|name| schemas[name].get("enum").is_some())
    };
    let Some(all) = doc["components"]["schemas"].as_object_mut() else {
        return;
    };
    for schema in all.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for p in properties.values_mut() {
            let reference = p["allOf"]
                .as_array()
                .and_then(|parts| parts.iter().find_map(|part| part["$ref"].as_str()))
                .map(str::to_string);
            if let Some(reference) = reference.filter(|r| is_enum(r)) {
                *p = json!({ "$ref": reference });
            }
        }
    }
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<Value> {
    all.iter().map(|v| json!(name(*v))).collect()
}

/// The closed sets, by (schema, property); `*` for every schema with that property.
fn enum_of(schema: &str, property: &str) -> Option<Vec<Value>> {
    Some(match (schema, property) {
        // Objects' closed sets are their field types; requests read text and check it
        // (a wrong value is a 422 naming the field), so their enums are said here.
        (_, "provider") => names(Provider::ALL, Provider::as_str),
        ("Payment" | "Payout" | "BalanceTransaction" | "Balance", "currency") => {
            entity::money::Currency::codes().map(|c| json!(c)).collect()
        }
        ("UpdateEndpointRequest", "status") => names(EndpointStatus::ALL, EndpointStatus::as_str),
        ("WebhookEndpoint", "disabled_reason") => {
            vec![json!("gone"), json!("failing"), json!("manual")]
        }
        ("CreateLogRequest", "level") => names(LogLevel::ALL, LogLevel::as_str),
        ("CompleteSandboxPayment", "outcome") => names(
            crate::payments::validation::SANDBOX_OUTCOMES,
            PaymentStatus::as_str,
        ),
        ("PaymentMethodInput", "type") => vec![json!("card")],
        _ => return None,
    })
}

/// Lower and upper bounds of numbers, and the longest a string may be.
fn bounds(schema: &str, property: &str) -> Option<Value> {
    Some(match (schema, property) {
        ("CreatePaymentRequest" | "CreateRefundRequest", "amount") => json!({"minimum": 1}),
        ("Payment" | "Refund", "amount") => json!({"minimum": 1}),
        ("Payment", "amount_refunded") => json!({"minimum": 0}),
        (_, "exp_month") => json!({"minimum": 1, "maximum": 12}),
        (_, "max_concurrency") => json!({"minimum": 1, "maximum": 100}),
        (_, "rate_limit") => json!({"minimum": 1, "maximum": 10_000}),
        (_, "rate_limit_per_second") => {
            json!({"minimum": 1, "maximum": crate::merchants::rate_limits::MAX_PER_SECOND})
        }
        (_, "rate_limit_burst") => json!({"minimum": 1}),
        ("RollApiKeyRequest", "expires_in") => json!({"minimum": 0}),
        (_, "reference") => json!({"maxLength": 255}),
        (_, "description") => json!({"maxLength": 1000}),
        ("CreatePaymentRequest" | "UpdatePaymentRequest", "metadata") => {
            json!({"maxProperties": 50})
        }
        ("CreatePaymentRequest", "currency") => json!({"pattern": "^[A-Za-z]{3}$"}),
        _ => return None,
    })
}

/// The random part of the example ids (a UUIDv7 in hex, as ids are made).
const EXAMPLE_ID: &str = "019ab3f0c1d27e8a9b4c5d6e7f801234";

/// An id of one kind, as a pattern: its prefix and 32 hex digits.
fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-9a-f]{{32}}$")
}

/// An example by property name, for the fields whose name says what they hold.
fn example(schema: &str, property: &str) -> Option<Value> {
    let id = |prefix: &str| json!(format!("{prefix}_{EXAMPLE_ID}"));
    Some(match (schema, property) {
        ("Payment" | "PaymentList", "id") => id("pay"),
        ("Refund", "id") => id("re"),
        ("Event", "id") => id("evt"),
        ("WebhookEndpoint" | "DeletedObject" | "WebhookEndpointDisabledData", "id") => id("we"),
        ("WebhookDelivery", "id") => id("whd"),
        ("WebhookAttempt", "id") => id("wha"),
        ("ApiKeyObject", "id") => id("key"),
        ("CreatedMerchant" | "Merchant", "id") => id("mer"),
        ("LogEntry", "id") => id("log"),
        (_, "payment_id") => id("pay"),
        (_, "event_id") => id("evt"),
        (_, "endpoint_id") => id("we"),
        (_, "amount") => json!(4999),
        (_, "amount_refunded") => json!(0),
        ("CreatePaymentRequest", "currency") => json!("EUR"),
        (_, "currency") => json!("EUR"),
        ("CreatePaymentRequest", "provider") => json!("simulated"),
        (_, "reference") => json!("order_1042"),
        (_, "description") => json!("Order #1042"),
        (_, "return_url") => json!("https://shop.example.com/orders/1042"),
        (_, "qr_code_url") => json!(format!(
            "http://127.0.0.1:8080/v1/payments/pay_{EXAMPLE_ID}/qr"
        )),
        (_, "checkout_url") => {
            json!(format!(
                "http://127.0.0.1:8080/sandbox/checkout/pay_{EXAMPLE_ID}"
            ))
        }
        (_, "url") => json!("https://shop.example.com/payrail/webhooks"),
        (_, "email") => json!("ada@example.com"),
        (_, "phone") => json!("+241 77 12 34 56"),
        ("Customer" | "CreatedMerchant" | "Merchant" | "CreateMerchantRequest", "name") => {
            json!("Ada Lovelace")
        }
        (_, "metadata") => json!({"order_id": "1042"}),
        (_, "number") => json!("4242424242424242"),
        (_, "exp_month") => json!(12),
        (_, "exp_year") => json!(2030),
        (_, "cvc") => json!("123"),
        (_, "brand") => json!("visa"),
        (_, "last4") => json!("4242"),
        (_, "api_version") => json!(API_VERSION),
        (_, "enabled_events") => json!(["payment.succeeded", "payment.failed"]),
        ("WebhookEndpoint", "secret") => json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        (_, "api_key" | "secret") => json!("sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
        (_, "prefix") => json!("sk_test_51Jx"),
        (_, "code") => json!("parameter_invalid"),
        (_, "message") => json!("amount must be a positive integer."),
        (_, "param") => json!("amount"),
        (_, "since") => json!("2026-11-22T00:00:00Z"),
        (_, "until") => json!("2026-11-23T00:00:00Z"),
        (_, "max_concurrency") => json!(10),
        (_, "rate_limit") => json!(50),
        (_, "rate_limit_per_second") => json!(100),
        (_, "rate_limit_burst") => json!(200),
        (_, "expires_in") => json!(3600),
        (_, "source") => json!("checkout"),
        (_, "http_status") => json!(200),
        (_, "duration_ms") => json!(42),
        (_, "attempts" | "attempt_number") => json!(1),
        (_, "provider_reference") => json!(format!("sim_{EXAMPLE_ID}")),
        (_, "client_secret") => json!("pi_3QxY2B_secret_Zk4"),
        (_, "failure_code") => json!("card_declined"),
        (_, "failure_message") => json!("Your card was declined."),
        (_, "request_id") => json!("req_4Xc9Jq2LmN8pR5tV"),
        (_, "error_class") => json!("timeout"),
        (_, "error_message") => json!("no answer within 10 s"),
        (_, "response_body") => json!("ok"),
        ("DeletedObject", "deleted") => json!(true),
        (_, "recovered") => json!(3),
        ("DeletedObject", "object") => json!("webhook_endpoint"),
        (_, "total") => json!(12),
        (_, "window_seconds") => json!(3600),
        (_, "consecutive_failures") => json!(12),
        ("WebhookReceived", "outcome") => json!("applied"),
        (_, "received") => json!(true),
        _ => return None,
    })
}

fn refine_schema(name: &str, schema: &mut Value) {
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (property, p) in properties.iter_mut() {
        // A typed field (a `$ref`, or poem's `allOf` around one) says everything itself.
        let typed = p.get("$ref").is_some() || p.get("allOf").is_some();
        if let Some(values) = enum_of(name, property).filter(|_| !typed) {
            p["enum"] = Value::Array(values);
        }
        if property == "enabled_events" {
            let mut values = names(&EventType::ALL, EventType::as_str);
            values.insert(0, json!("*"));
            p["items"]["enum"] = Value::Array(values);
            p["minItems"] = json!(1);
        }
        if property == "context" {
            p["type"] = json!("object");
        }
        if let (Some(Value::Object(extra)), Some(p)) = (bounds(name, property), p.as_object_mut()) {
            p.extend(extra);
        }
        // poem reads integers by their Rust width: say so, or a client may send what it refuses.
        if p["type"] == "integer"
            && let Some((min, max)) = integer_range(p["format"].as_str())
        {
            if p.get("minimum").is_none() {
                p["minimum"] = json!(min);
            }
            if p.get("maximum").is_none() {
                p["maximum"] = json!(max);
            }
        }
        if p["type"] == "string" {
            if property.ends_with("_at") || property == "since" || property == "until" {
                p["format"] = json!("date-time");
            } else if property.ends_with("url") {
                p["format"] = json!("uri");
            }
        }
        match example(name, property).filter(|_| !typed) {
            Some(e) => p["example"] = e,
            None if typed => {}
            None => {
                if let Some(first) = p["enum"].get(0).cloned() {
                    p["example"] = first;
                } else if p["format"] == "date-time" {
                    p["example"] = json!("2026-11-23T10:00:00Z");
                } else if p["type"] == "boolean" {
                    p["example"] = json!(false);
                }
            }
        }
        if !required.contains(property) {
            nullable(p);
        }
    }
}

/// The values an integer format holds (poem refuses the rest with a 400).
fn integer_range(format: Option<&str>) -> Option<(i128, i128)> {
    Some(match format? {
        "int32" => (i128::from(i32::MIN), i128::from(i32::MAX)),
        "uint32" => (0, i128::from(u32::MAX)),
        "int64" => (i128::from(i64::MIN), i128::from(i64::MAX)),
        "uint64" => (0, i128::from(u64::MAX)),
        _ => return None,
    })
}

/// An optional field is `null` when it has no value (poem reads `null` as absent too).
fn nullable(p: &mut Value) {
    if let Some(reference) = p.get("$ref").cloned() {
        let description = p.get("description").cloned();
        *p = json!({"allOf": [{"$ref": reference}], "nullable": true});
        if let Some(d) = description {
            p["description"] = d;
        }
    } else if let Some(all_of) = p.get_mut("allOf").and_then(Value::as_array_mut) {
        // poem wraps a described reference as allOf [ref, {description}]: keep the reference.
        all_of.retain(|part| part.get("$ref").is_some());
        p["nullable"] = json!(true);
    } else if p.get("type").is_some() || p.as_object().is_some_and(|o| o.is_empty()) {
        p["nullable"] = json!(true);
        // OpenAPI 3.0.3: `nullable` does not widen an `enum`; null must be listed.
        if let Some(values) = p.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
    }
}

/// Every schema reachable from a JSON request body refuses unknown fields (`deny_unknown_fields`
/// on each request type): say so.
fn refuse_unknown_fields(doc: &mut Value) {
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for item in paths.values() {
            for op in item.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for media in content.values() {
                        collect_refs(&media["schema"], &mut pending);
                    }
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &mut doc["components"]["schemas"][&name];
        collect_refs(&schema["properties"], &mut pending);
        if schema["type"] == "object" && schema.get("properties").is_some() {
            schema["additionalProperties"] = json!(false);
        }
    }
}

fn collect_refs(v: &Value, into: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(name) = o
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                into.push(name.to_string());
            }
            o.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

// ---------- operations ----------

/// Errors an operation answers beyond those its shape implies (see [`errors_of`]).
fn extra_errors(operation_id: &str) -> &'static [u16] {
    match operation_id {
        "create_payment" => &[502],
        "cancel_payment" => &[409, 422, 502],
        "create_refund" => &[409, 502],
        "complete_sandbox_payment" => &[403, 409],
        "retry_webhook_delivery" | "recover_webhook_endpoint" => &[409],
        "create_webhook_endpoint" | "update_webhook_endpoint" => &[409],
        "moneroo_webhook" => &[403],
        "create_payout" => &[409, 502],
        "complete_sandbox_payout" => &[409],
        "create_api_key" => &[403],
        "resolve_payout" => &[409, 502],
        _ => &[],
    }
}

/// The error statuses an operation can answer: from its shape (authentication, a body, query
/// parameters, an id in the path, an Idempotency-Key), plus its own (state conflicts,
/// providers). Always 500 and 503.
pub fn errors_of(operation_id: &str, op: &Value) -> Vec<u16> {
    let mut codes = vec![500, 503];
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let has = |place: &str| params.iter().any(|p| p["in"] == place);
    let security = op["security"].as_array().cloned().unwrap_or_default();
    if !security.is_empty() {
        codes.push(401);
        if security.iter().any(|s| s.get("ApiKey").is_some()) {
            codes.push(429);
        }
    }
    if op.get("requestBody").is_some() {
        codes.extend([400, 413]);
        // A raw body (provider webhooks) takes any content type; a JSON one needs its own.
        let json_body = op["requestBody"]["content"]
            .as_object()
            .is_some_and(|c| c.keys().any(|k| k.starts_with("application/json")));
        if json_body {
            codes.extend([415, 422]);
        }
    }
    if has("query") {
        codes.extend([400, 422]);
    }
    if has("path") {
        // 422 too: a path with a control character (`%00`) is refused as such.
        codes.extend([404, 422]);
    }
    if params.iter().any(|p| p["name"] == "Idempotency-Key") {
        codes.extend([400, 409]);
    }
    codes.extend_from_slice(extra_errors(operation_id));
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn error_description(code: u16) -> &'static str {
    match code {
        400 => {
            "The request could not be read: malformed JSON, a value of the wrong JSON type (no \
             coercion), a missing required field, a field the schema does not have, a query \
             parameter that is not of its type, or an invalid signature (provider webhooks)."
        }
        401 => "No valid API key (or admin token) was given.",
        403 => {
            "The key may not do this (a live key on a sandbox route, a test key managing live \
             keys, an unexpected sender)."
        }
        404 => "No such object for this merchant.",
        409 => {
            "The object's state does not allow this, or the Idempotency-Key was used with \
             another body or is in use by a request still running."
        }
        413 => "The body is over 1 MiB.",
        415 => "The body is not JSON (`Content-Type` missing or not `application/json`).",
        422 => "The request was read but a value is not acceptable (`param` names it).",
        429 => "Too many requests with this API key: retry after `Retry-After` seconds.",
        500 => "Something failed on our side; nothing was changed.",
        502 => {
            "The provider failed or did not answer; what was recorded as failed is named, with \
             its `payment_id`."
        }
        503 => "A dependency (database, broker, cache) is unavailable; retry later.",
        _ => "Error.",
    }
}

fn header_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

const RATE_LIMIT_HEADERS: [&str; 4] = [
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
];

fn refine_operation(path: &str, op: &mut Value) {
    let operation_id = op["operationId"].as_str().unwrap_or_default().to_string();
    let limited = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s.get("ApiKey").is_some()));
    let codes = errors_of(&operation_id, op);
    let mut responses = Map::new();
    for (status, mut response) in op["responses"].as_object().cloned().unwrap_or_default() {
        if status.starts_with('2') {
            responses.insert(status, std::mem::take(&mut response));
        }
    }
    for code in codes {
        let mut response = json!({
            "description": error_description(code),
            "content": {"application/json; charset=utf-8": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}
            }},
        });
        if code == 429 {
            response["headers"]["Retry-After"] = header_ref("Retry-After");
        }
        responses.insert(code.to_string(), response);
    }
    for response in responses.values_mut() {
        response["headers"]["Request-Id"] = header_ref("Request-Id");
        if limited {
            for h in RATE_LIMIT_HEADERS {
                response["headers"][h] = header_ref(h);
            }
        }
    }
    op["responses"] = Value::Object(responses);
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        let resource = resource_of(path);
        for p in params {
            refine_parameter(&resource, p);
        }
    }
}

/// `/v1/webhook_endpoints/{id}/test` → `webhook endpoint`: what the path's `{id}` names.
fn resource_of(path: &str) -> String {
    let mut last = "";
    for segment in path.split('/') {
        if segment == "{id}" {
            break;
        }
        last = segment;
    }
    last.trim_end_matches('s').replace('_', " ")
}

/// The id prefix of what a path names (`webhook endpoint` → `we`).
fn id_prefix(resource: &str) -> &'static str {
    match resource {
        "payment" => "pay",
        "webhook endpoint" => "we",
        "event" => "evt",
        "webhook delivery" | "webhook deliverie" => "whd",
        "api key" => "key",
        "merchant" => "mer",
        "payout" => "po",
        "balance transaction" => "txn",
        "reconciliation item" => "rec",
        _ => "[a-z]+",
    }
}

/// Unix seconds, or an RFC 3339 time.
const TIMESTAMP_PATTERN: &str = r"^([0-9]{1,10}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))$";

fn refine_parameter(resource: &str, p: &mut Value) {
    let name = p["name"].as_str().unwrap_or_default().to_string();
    // Any kind's id is accepted as a cursor (an unknown one gives an empty page).
    let cursor = || Some(json!({"pattern": id_pattern("[a-z]+")}));
    let (description, schema): (String, Option<Value>) = match name.as_str() {
        "id" => (
            format!("The {resource}'s id."),
            Some(
                json!({"pattern": id_pattern(id_prefix(resource)), "example": format!("{}_{EXAMPLE_ID}", id_prefix(resource))}),
            ),
        ),
        "created[gte]" | "created[lte]" => (
            String::new(),
            Some(json!({"pattern": TIMESTAMP_PATTERN, "example": "2026-11-23T00:00:00Z"})),
        ),
        "reference" => (String::new(), Some(json!({"maxLength": 255}))),
        "limit" => (
            "How many objects to return: 1 to 100 (default 10).".into(),
            Some(json!({"minimum": 1, "maximum": 100, "default": 10, "example": 10})),
        ),
        "starting_after" => (
            "A cursor: the id of the last object of the previous page; returns older objects."
                .into(),
            cursor(),
        ),
        "ending_before" => (
            "A cursor: the id of the first object of the previous page; returns newer objects. \
             Not with `starting_after`."
                .into(),
            cursor(),
        ),
        "Idempotency-Key" => (
            "1 to 255 characters, unique per operation you mean once: a retry with the same key \
             and body gets the first answer (`Idempotent-Replayed: true`), with another body a \
             409. Kept at least 7 days."
                .into(),
            Some(json!({"minLength": 1, "maxLength": 255})),
        ),
        "endpoint_id" => (
            "Only deliveries to this endpoint.".into(),
            Some(json!({"pattern": id_pattern("we")})),
        ),
        "event_id" => (
            "Only deliveries of this event.".into(),
            Some(json!({"pattern": id_pattern("evt")})),
        ),
        "month" => (
            String::new(),
            Some(json!({"pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "example": "2026-11"})),
        ),
        "window" => (
            "How far back to count: a duration such as `15m`, `1h` or `1d` (default `1h`).".into(),
            Some(json!({"pattern": "^[1-9][0-9]{0,5}(s|m|h|d)$", "example": "1h"})),
        ),
        "status"
            if p["description"]
                .as_str()
                .is_some_and(|d| d.contains("payment")) =>
        {
            (
                String::new(),
                Some(json!({"enum": names(PaymentStatus::ALL, PaymentStatus::as_str)})),
            )
        }
        "status" => (
            String::new(),
            Some(json!({"enum": names(DeliveryStatus::ALL, DeliveryStatus::as_str)})),
        ),
        "type" => (
            String::new(),
            Some(json!({"enum": names(&EventType::ALL, EventType::as_str)})),
        ),
        "types[]" => (String::new(), None),
        name if name.ends_with("Signature") => (
            "The provider's signature of the raw body, checked before anything is read.".into(),
            None,
        ),
        _ => (String::new(), None),
    };
    if p.get("description").is_none() && !description.is_empty() {
        p["description"] = json!(description);
    }
    if name == "types[]" {
        p["schema"]["items"]["enum"] = json!(names(&EventType::ALL, EventType::as_str));
    }
    if let (Some(extra), Some(schema)) = (schema, p["schema"].as_object_mut())
        && let Some(extra) = extra.as_object()
    {
        schema.extend(extra.clone());
    }
}

// ---------- shared components and webhooks ----------

/// Routes served outside poem-openapi (they answer images, not JSON), described by hand.
fn add_plain_routes(doc: &mut Value) {
    doc["paths"]["/v1/payments/{id}/qr"] = json!({"get": {
        "tags": ["Payments"],
        "operationId": "get_payment_qr",
        "summary": "The QR code of a payment's checkout URL",
        "description": "The payment's `checkout_url` as a QR code, for a customer on a desktop to finish on their phone (mobile money). Public, like the checkout URL: the payment id is the capability. It is the payment's `qr_code_url`; a payment without a checkout URL has none (404).",
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "format", "in": "query", "required": false,
             "description": "`svg` (the default) or `png`.",
             "schema": {"type": "string", "enum": ["svg", "png"], "default": "svg"}},
        ],
        "responses": {"200": {
            "description": "The QR code (cacheable: it never changes).",
            "content": {
                "image/svg+xml": {"schema": {"type": "string"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            },
        }},
    }});
}

fn add_components(doc: &mut Value) {
    let header =
        |description: &str, schema: Value| json!({"description": description, "schema": schema});
    doc["components"]["headers"] = json!({
        "Request-Id": header(
            "This request's id (yours, if you sent `Request-Id` or `X-Request-Id`); quote it to support. Also sent as `X-Request-Id`.",
            json!({"type": "string"})),
        "Retry-After": header("Seconds until this API key may make a request again.",
            json!({"type": "integer", "minimum": 1})),
        "RateLimit-Limit": header("This API key's bucket size (its burst).",
            json!({"type": "integer", "minimum": 1})),
        "RateLimit-Remaining": header("Requests this API key may make right now.",
            json!({"type": "integer", "minimum": 0})),
        "RateLimit-Reset": header("Seconds until the bucket is full again.",
            json!({"type": "integer", "minimum": 0})),
        "RateLimit-Policy": header("`burst;w=seconds`: the bucket and how long it takes to refill from empty.",
            json!({"type": "string"})),
    });
    let schemas = &mut doc["components"]["schemas"];
    schemas["WebhookEndpointTestData"] = json!({
        "type": "object",
        "title": "WebhookEndpointTestData",
        "description": "The data of `webhook_endpoint.test`.",
        "required": ["object", "endpoint_id", "message"],
        "properties": {
            "object": {"type": "string", "enum": ["webhook_endpoint.test"]},
            "endpoint_id": {"type": "string", "example": format!("we_{EXAMPLE_ID}")},
            "message": {"type": "string"},
        },
    });
    schemas["WebhookEndpointDisabledData"] = json!({
        "type": "object",
        "title": "WebhookEndpointDisabledData",
        "description": "The data of `webhook_endpoint.disabled`: the endpoint, and why it was disabled.",
        "required": ["id", "object", "url", "status", "disabled_reason"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["webhook_endpoint"]},
            "url": {"type": "string", "format": "uri"},
            "status": {"type": "string", "enum": ["disabled"]},
            "disabled_reason": {"type": "string", "enum": ["gone", "failing"]},
            "failing_since": {"type": "string", "format": "date-time", "nullable": true},
            "consecutive_failures": {"type": "integer", "minimum": 0},
        },
    });
    schemas["UsageThresholdData"] = json!({
        "type": "object",
        "title": "UsageThresholdData",
        "description": "The data of `usage.threshold_reached`: which limit of your plan, and how much of it this month's usage reached.",
        "required": ["object", "month", "metric", "threshold_percent", "limit", "used", "plan", "hard"],
        "properties": {
            "object": {"type": "string", "enum": ["usage_threshold"]},
            "month": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "example": "2026-11"},
            "metric": {"type": "string", "enum": crate::usage::quotas::LIMITED.iter().map(|(m, _)| *m).collect::<Vec<_>>()},
            "threshold_percent": {"type": "integer", "enum": crate::usage::quotas::THRESHOLDS},
            "limit": {"type": "integer", "minimum": 0},
            "used": {"type": "integer", "minimum": 0},
            "plan": {"type": "string", "enum": names(entity::status::Plan::ALL, entity::status::Plan::as_str)},
            "hard": {"type": "boolean", "description": "Whether requests are refused (429 `quota_exceeded`) once the limit is reached, or only alerted on."},
        },
    });
    let data_schema = |t: EventType| match t {
        EventType::RefundCreated | EventType::RefundSucceeded | EventType::RefundFailed => "Refund",
        EventType::WebhookEndpointDisabled => "WebhookEndpointDisabledData",
        EventType::WebhookEndpointTest => "WebhookEndpointTestData",
        EventType::UsageThresholdReached => "UsageThresholdData",
        EventType::PayoutPending
        | EventType::PayoutProcessing
        | EventType::PayoutSucceeded
        | EventType::PayoutFailed => "Payout",
        _ => "Payment",
    };
    let data_kinds: std::collections::BTreeSet<&str> =
        EventType::ALL.iter().map(|t| data_schema(*t)).collect();
    schemas["Event"]["properties"]["data"] = json!({
        "description": "The object the event is about, as the API shows it: a payment, a refund or a webhook endpoint.",
        "oneOf": data_kinds.iter().map(|k| json!({"$ref": format!("#/components/schemas/{k}")})).collect::<Vec<_>>(),
    });
    for t in EventType::ALL {
        schemas[webhook_schema_name(t)] = json!({
            "type": "object",
            "title": webhook_schema_name(t),
            "description": format!("The body of a `{}` webhook (signed: see the `webhook-signature` header).", t.as_str()),
            "required": ["id", "type", "api_version", "created_at", "data"],
            "properties": {
                "id": {"type": "string", "description": "The event's id: the same in every retry (use it to deduplicate).", "example": format!("evt_{EXAMPLE_ID}")},
                "type": {"type": "string", "enum": [t.as_str()]},
                "api_version": {"type": "string", "enum": [API_VERSION]},
                "created_at": {"type": "string", "format": "date-time"},
                "data": {"$ref": format!("#/components/schemas/{}", data_schema(t))},
            },
        });
    }
}

/// `payment.succeeded` → `PaymentSucceededWebhook`.
pub fn webhook_schema_name(t: EventType) -> String {
    let mut name: String = t
        .as_str()
        .split(['.', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    name.push_str("Webhook");
    name
}

/// What we send to merchants, one entry per event type, in the shape of OpenAPI 3.1's
/// `webhooks` (3.0 has none; poem emits 3.0, so as the `x-webhooks` extension).
fn webhooks() -> Value {
    let mut hooks = Map::new();
    for t in EventType::ALL {
        let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}});
        hooks.insert(
            t.as_str().to_string(),
            json!({"post": {
                "operationId": format!("webhook_{}", t.as_str().replace('.', "_")),
                "summary": format!("{} (sent to your endpoint)", t.as_str()),
                "description": "POSTed to every enabled endpoint subscribed to this type, signed with Standard Webhooks (see docs/webhooks.md). Answer 2xx within the timeout; anything else is retried with exponential backoff.",
                "parameters": [
                    header("webhook-id", "The event id (the same in every retry)."),
                    header("webhook-timestamp", "Unix seconds when this attempt was signed."),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated during a secret rotation."),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", webhook_schema_name(t))}}}},
                "responses": {"200": {"description": "Any 2xx acknowledges the event."}},
            }}),
        );
    }
    Value::Object(hooks)
}

/// The methods each path template answers, for the `Allow` header of a 405.
static METHODS: LazyLock<Vec<(Vec<String>, Vec<String>)>> = LazyLock::new(|| {
    let doc = document(&crate::http::api::service("http://127.0.0.1").spec());
    doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .map(|(path, item)| {
                    let segments = path.split('/').map(str::to_string).collect();
                    let methods = item
                        .as_object()
                        .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                        .unwrap_or_default();
                    (segments, methods)
                })
                .collect()
        })
        .unwrap_or_default()
});

/// The methods a request path answers (`GET, POST`), if it is one of the API's paths.
pub fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    METHODS.iter().find_map(|(template, methods)| {
        let matches = template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()));
        matches.then(|| methods.join(", "))
    })
}
