//! Operations made precise: the errors each can really answer, the headers on every answer,
//! and parameters (ids, cursors, times, closed sets).

use entity::event::EventType;
use entity::payment_status::PaymentStatus;
use entity::status::{BalanceTransactionType, DeliveryStatus, Provider, ReconciliationStatus};
use serde_json::{Map, Value, json};

use super::*;

/// Errors an operation answers beyond those its shape implies (see [`errors_of`]).
pub(super) fn extra_errors(operation_id: &str) -> &'static [u16] {
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

pub(super) fn error_description(code: u16) -> &'static str {
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

pub(super) fn header_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

pub(super) const RATE_LIMIT_HEADERS: [&str; 4] = [
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
];

pub(super) fn refine_operation(path: &str, op: &mut Value) {
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
        if code == 429 || code == 503 {
            response["headers"]["Retry-After"] = header_ref("Retry-After");
        }
        responses.insert(code.to_string(), response);
    }
    for (status, response) in responses.iter_mut() {
        response["headers"]["Request-Id"] = header_ref("Request-Id");
        // The limiter answers once the key is known: not on a 401 (no key), nor on a 413
        // (the body was refused before authentication).
        if limited && status != "401" && status != "413" {
            for h in RATE_LIMIT_HEADERS {
                response["headers"][h] = header_ref(h);
            }
        }
    }
    op["responses"] = Value::Object(responses);
    // Clients send `application/json`, with or without a charset; poem names only the
    // variant with one, which validators and generated clients then demand verbatim.
    if let Some(content) = op
        .get_mut("requestBody")
        .and_then(|body| body.get_mut("content"))
        .and_then(Value::as_object_mut)
        && let Some(media) = content.remove("application/json; charset=utf-8")
    {
        content.insert("application/json".into(), media);
    }
    // One tag per operation: generators make a class per tag, and an operation in two is
    // generated twice (typescript-fetch then fails to compile). poem adds a method's tag to
    // its impl's, so the method's, the more specific, is kept.
    if let Some(tags) = op.get_mut("tags").and_then(Value::as_array_mut)
        && tags.len() > 1
    {
        tags.drain(..tags.len() - 1);
    }
    // An operation without credentials says so, rather than leaving it to be guessed.
    if op.get("security").is_none() {
        op["security"] = json!([]);
    }
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        let resource = resource_of(path);
        for p in params {
            refine_parameter(path, &resource, p);
        }
    }
}

/// `/v1/webhook_endpoints/{id}/test` → `webhook endpoint`: what the path's `{id}` names.
pub(super) fn resource_of(path: &str) -> String {
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
pub(super) fn id_prefix(resource: &str) -> &'static str {
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
pub(super) const TIMESTAMP_PATTERN: &str = r"^([0-9]{1,10}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))$";

/// The values a query parameter filters by, by (path, parameter): the same name filters by
/// different sets on different lists (`status` of a payment, of a delivery, of an item).
fn closed_set(path: &str, name: &str) -> Option<Vec<Value>> {
    let list = path.trim_start_matches("/v1").trim_start_matches("/admin");
    Some(match (list, name) {
        ("/events", "type" | "types[]") => names(&EventType::ALL, EventType::as_str),
        ("/balance_transactions", "type") => {
            names(BalanceTransactionType::ALL, BalanceTransactionType::as_str)
        }
        ("/payments", "status") => names(PaymentStatus::ALL, PaymentStatus::as_str),
        ("/webhook_deliveries", "status") => names(DeliveryStatus::ALL, DeliveryStatus::as_str),
        ("/reconciliation_items", "status") => {
            names(ReconciliationStatus::ALL, ReconciliationStatus::as_str)
        }
        ("/reconciliation_items", "provider") => names(Provider::ALL, Provider::as_str),
        _ => return None,
    })
}

pub(super) fn refine_parameter(path: &str, resource: &str, p: &mut Value) {
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
        "currency" => (
            "An ISO 4217 code, in either case.".into(),
            Some(json!({"pattern": "^[A-Za-z]{3}$", "example": "EUR"})),
        ),
        name if name.ends_with("Signature") => (
            "The provider's signature of the raw body, checked before anything is read.".into(),
            None,
        ),
        _ => (String::new(), None),
    };
    if p.get("description").is_none() && !description.is_empty() {
        p["description"] = json!(description);
    }
    if let Some(values) = closed_set(path, &name) {
        if p["schema"]["type"] == "array" {
            p["schema"]["items"]["enum"] = json!(values);
        } else {
            p["schema"]["enum"] = json!(values);
        }
    }
    // A repeated filter may be left out: poem calls every `Vec` query parameter required.
    if name == "types[]" {
        p["required"] = json!(false);
    }
    if let (Some(extra), Some(schema)) = (schema, p["schema"].as_object_mut())
        && let Some(extra) = extra.as_object()
    {
        schema.extend(extra.clone());
    }
}
