//! What poem does not derive at all: the shared headers and error responses, the plain
//! routes (docs, health, checkout, QR), and the webhooks we send (`x-webhooks`).

use entity::event::{API_VERSION, EventType};
use serde_json::{Map, Value, json};

use super::*;

/// Routes served outside poem-openapi (they answer images, not JSON), described by hand.
pub(super) fn add_plain_routes(doc: &mut Value) {
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
                "image/svg+xml": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            },
        }},
    }});
}

pub(super) fn add_components(doc: &mut Value) {
    let header =
        |description: &str, schema: Value| json!({"description": description, "schema": schema});
    doc["components"]["headers"] = json!({
        "Request-Id": header(
            "This request's id (yours, if you sent `Request-Id` or `X-Request-Id`); quote it to support. Also sent as `X-Request-Id`.",
            json!({"type": "string"})),
        "Retry-After": header("Seconds to wait before trying again: until this API key may make a request again (429), or until the service is expected back (503).",
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
            "threshold_percent": {"type": "integer", "enum": crate::usage::alerts::THRESHOLDS},
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
pub(super) fn webhooks() -> Value {
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
