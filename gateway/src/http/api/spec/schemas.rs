//! Schemas made precise: closed sets of request text, bounds, examples, nullability, and
//! request bodies that refuse unknown fields.

use entity::event::{API_VERSION, EventType};
use entity::payment_status::PaymentStatus;
use entity::status::{EndpointStatus, LogLevel, PayoutStatus, Provider};
use serde_json::{Value, json};

/// poem wraps a described field of an enum type as `allOf: [$ref, {description}]`; generators
/// refuse `allOf` over a non-object. The enum's own schema carries its description: the field
/// is a plain reference.
pub(super) fn plain_enum_refs(doc: &mut Value) {
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

pub(super) fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<Value> {
    all.iter().map(|v| json!(name(*v))).collect()
}

/// The closed sets, by (schema, property); `*` for every schema with that property.
pub(super) fn enum_of(schema: &str, property: &str) -> Option<Vec<Value>> {
    Some(match (schema, property) {
        // Objects' closed sets are their field types; requests read text and check it
        // (a wrong value is a 422 naming the field), so their enums are said here.
        ("CreatePayoutRequest", "provider") => {
            names(crate::payouts::PAYOUT_PROVIDERS, Provider::as_str)
        }
        (_, "provider") => names(Provider::ALL, Provider::as_str),
        ("PayoutDestination", "type") => crate::payouts::DESTINATION_TYPES
            .iter()
            .map(|t| json!(t))
            .collect(),
        ("CompletePayoutRequest", "outcome") => names(
            crate::payouts::SANDBOX_PAYOUT_OUTCOMES,
            PayoutStatus::as_str,
        ),
        ("UpdateMerchantRequest", "plan") => {
            names(entity::status::Plan::ALL, entity::status::Plan::as_str)
        }
        ("ResolvePayoutRequest", "outcome") => vec![json!("received"), json!("not_received")],
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
pub(super) fn bounds(schema: &str, property: &str) -> Option<Value> {
    Some(match (schema, property) {
        ("CreatePaymentRequest" | "CreateRefundRequest" | "CreatePayoutRequest", "amount") => {
            json!({"minimum": 1})
        }
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
pub(super) const EXAMPLE_ID: &str = "019ab3f0c1d27e8a9b4c5d6e7f801234";

/// An id of one kind, as a pattern: its prefix and 32 hex digits.
pub(super) fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-9a-f]{{32}}$")
}

/// An example by property name, for the fields whose name says what they hold.
pub(super) fn example(schema: &str, property: &str) -> Option<Value> {
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
        ("SentHeader", "name") => json!("webhook-timestamp"),
        ("SentHeader", "value") => json!("1764756000"),
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

pub(super) fn refine_schema(name: &str, schema: &mut Value) {
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
pub(super) fn integer_range(format: Option<&str>) -> Option<(i128, i128)> {
    Some(match format? {
        "int32" => (i128::from(i32::MIN), i128::from(i32::MAX)),
        "uint32" => (0, i128::from(u32::MAX)),
        "int64" => (i128::from(i64::MIN), i128::from(i64::MAX)),
        "uint64" => (0, i128::from(u64::MAX)),
        _ => return None,
    })
}

/// An optional field is `null` when it has no value (poem reads `null` as absent too).
/// The schema whose only value is `null`, as OpenAPI 3.0 can say it.
static NULL_ONLY: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({"type": "object", "nullable": true, "enum": [null]}));

pub(super) fn nullable(p: &mut Value) {
    // OpenAPI 3.0 has no null type, and `nullable` beside a `$ref` or an `allOf` without a
    // `type` lets no null through (validators follow the letter: `nullable` widens only its
    // own schema's `type`). So a nullable object is one of: the object, or a schema whose
    // only value is null.
    let reference = p.get("$ref").cloned().or_else(|| {
        // poem wraps a described reference as allOf [ref, {description}]: keep the reference.
        p.get("allOf")
            .and_then(Value::as_array)
            .and_then(|parts| parts.iter().find_map(|part| part.get("$ref").cloned()))
    });
    if let Some(reference) = reference {
        let description = p.get("description").cloned();
        *p = json!({"anyOf": [{"$ref": reference}, NULL_ONLY.clone()]});
        if let Some(d) = description {
            p["description"] = d;
        }
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
pub(super) fn refuse_unknown_fields(doc: &mut Value) {
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

pub(super) fn collect_refs(v: &Value, into: &mut Vec<String>) {
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
