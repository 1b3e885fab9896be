//! Request and response bodies of the merchant API, as they appear in the OpenAPI spec.
//! Requests are turned into domain types in [`crate::http::api::requests`]; responses are built from rows
//! here (payments and refunds in `crate::payments::objects`, log entries in `crate::merchants::logs`, since
//! events and caches use them too), so the API, events and idempotent replays show one object.

use std::collections::HashMap;

use entity::event::{EventType, rfc3339};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;
use serde::{Deserialize, Serialize};

pub use crate::core::text::Text;
pub use crate::merchants::logs::LogEntry;
pub use crate::payments::objects::{CardSummary, Customer, Payment, PaymentMethod, Refund};

// ---------- payments ----------

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    /// Amount in the currency's minor unit (cents for USD, francs for XAF); above zero.
    pub amount: i64,
    /// ISO 4217 code, e.g. `usd`, `XAF`.
    pub currency: Text,
    /// `simulated` (sandbox). `stripe`, `moneroo` and `ebilling` answer 422 until configured.
    pub provider: Text,
    /// Your own reference (e.g. an order number), filterable in lists.
    pub reference: Option<Text>,
    pub description: Option<Text>,
    pub customer: Option<Customer>,
    /// Where the checkout sends the customer afterwards.
    pub return_url: Option<Text>,
    /// Up to 50 string keys and values, returned as given.
    pub metadata: Option<HashMap<String, Text>>,
    /// A test card, processed at once (sandbox only).
    pub payment_method: Option<PaymentMethodInput>,
}

/// What a merchant may change on a payment after creating it.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct UpdatePaymentRequest {
    /// Up to 1000 characters, or `null` to clear it.
    pub description: MaybeUndefined<Text>,
    /// Keys to set (merged into the payment's metadata); a key given `""` is removed. At most
    /// 50 keys after the merge.
    pub metadata: Option<HashMap<String, Text>>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PaymentMethodInput {
    /// Only `card`.
    #[oai(rename = "type")]
    pub method_type: Text,
    pub card: Option<CardInput>,
}

/// A card as sent. Never stored, logged or echoed: only brand, last4 and expiry are kept.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CardInput {
    pub number: Text,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: Text,
}

#[derive(Object)]
pub struct PaymentList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<Payment>,
    pub has_more: bool,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CompleteSandboxPayment {
    /// `processing`, `succeeded`, `failed` or `cancelled`.
    pub outcome: Text,
}

// ---------- webhook endpoints ----------

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// An `https://` (or `http://`) URL that accepts POSTs.
    pub url: Text,
    /// Event types to send, e.g. `["payment.succeeded"]`, or `["*"]` for all.
    pub enabled_events: Vec<Text>,
    pub description: Option<Text>,
    /// Requests one worker sends to this endpoint at once (1–100); the server's default
    /// (`PAYRAIL_WEBHOOK_ENDPOINT_CONCURRENCY`, 10) when absent.
    pub max_concurrency: Option<i32>,
    /// Requests per second across all workers (1–10000); unlimited when absent.
    pub rate_limit: Option<i32>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    pub url: Option<Text>,
    pub enabled_events: Option<Vec<Text>>,
    pub description: Option<Text>,
    /// `enabled` or `disabled`. Enabling a disabled endpoint clears its `disabled_reason`
    /// and failing streak; deliveries that failed meanwhile are re-sent with `recover`.
    pub status: Option<Text>,
    /// 1–100, or `null` for the server's default.
    pub max_concurrency: MaybeUndefined<i32>,
    /// 1–10000 requests per second, or `null` for no limit.
    pub rate_limit: MaybeUndefined<i32>,
}

#[derive(Object, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub object: crate::core::object_names::WebhookEndpointName,
    /// The mode of the key that created it: it receives only that mode's events.
    pub livemode: bool,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub status: entity::status::EndpointStatus,
    /// Why a disabled endpoint is disabled: `gone` (it answered 410), `failing` (no success
    /// for `PAYRAIL_WEBHOOK_DISABLE_AFTER`) or `manual`.
    pub disabled_reason: Option<String>,
    pub max_concurrency: Option<i32>,
    pub rate_limit: Option<i32>,
    /// Until when the secret replaced by the last rotation still signs, if it does.
    pub previous_secret_expires_at: Option<String>,
    /// The signing secret (`whsec_…`): only in the responses that create or rotate it.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WebhookEndpoint {
    pub fn from_model(e: &webhook_endpoints::Model, reveal_secret: bool) -> WebhookEndpoint {
        WebhookEndpoint {
            id: e.id.to_string(),
            object: crate::core::object_names::WebhookEndpointName::default(),
            url: e.url.clone(),
            enabled_events: e.enabled_event_names(),
            description: e.description.clone(),
            livemode: e.livemode,
            status: e.status,
            disabled_reason: e.disabled_reason.clone(),
            max_concurrency: e.max_concurrency,
            rate_limit: e.rate_limit,
            previous_secret_expires_at: e
                .previous_secret_expires_at
                .filter(|until| *until > chrono::Utc::now())
                .map(rfc3339),
            secret: reveal_secret.then(|| e.secret.clone()),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct RecoverRequest {
    /// RFC 3339 time: failed deliveries created at or after it are sent again.
    pub since: Text,
    /// RFC 3339 time, after `since`: deliveries created before it (default: now).
    pub until: Option<Text>,
}

#[derive(Object, Serialize, Deserialize)]
pub struct EndpointRecovery {
    pub object: crate::core::object_names::WebhookEndpointRecoveryName,
    pub endpoint_id: String,
    pub since: String,
    pub until: String,
    /// Failed deliveries made due again, each with a fresh set of attempts.
    pub recovered: u64,
}

#[derive(Object)]
pub struct WebhookEndpointList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<WebhookEndpoint>,
    pub has_more: bool,
}

#[derive(Object)]
pub struct DeletedObject {
    pub id: String,
    pub object: crate::core::object_names::WebhookEndpointName,
    pub deleted: bool,
}

// ---------- events ----------

#[derive(Object)]
pub struct Event {
    pub id: String,
    pub object: crate::core::object_names::EventName,
    #[oai(rename = "type")]
    pub event_type: EventType,
    /// The API version that shaped `data` (also in every webhook body).
    pub api_version: String,
    pub created_at: String,
    /// The object as it was when the event happened.
    pub data: serde_json::Value,
    /// `true` for live mode, `false` for test mode.
    pub livemode: bool,
}

/// An event row whose type this version does not know (written by a newer one, or damaged):
/// ours to fix, never shown half-read.
#[derive(Debug, thiserror::Error)]
#[error("stored event {id} has an unknown type {event_type:?}")]
pub struct UnknownEventType {
    pub id: String,
    pub event_type: String,
}

impl TryFrom<&events::Model> for Event {
    type Error = UnknownEventType;

    fn try_from(e: &events::Model) -> Result<Event, UnknownEventType> {
        Ok(Event {
            id: e.id.to_string(),
            object: crate::core::object_names::EventName::default(),
            event_type: EventType::parse(&e.event_type).ok_or_else(|| UnknownEventType {
                id: e.id.to_string(),
                event_type: e.event_type.clone(),
            })?,
            api_version: entity::event::API_VERSION.into(),
            created_at: rfc3339(e.created_at),
            data: e.data.clone(),
            livemode: e.livemode,
        })
    }
}

#[derive(Object)]
pub struct EventList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<Event>,
    pub has_more: bool,
}

// ---------- deliveries ----------

#[derive(Object)]
pub struct WebhookAttempt {
    pub id: String,
    /// 1 for the delivery's first attempt; it goes on counting across manual retries.
    pub attempt_number: i32,
    pub http_status: Option<i32>,
    pub error_message: Option<String>,
    /// Why it failed: `timeout`, `connect`, `tls`, `dns`, `http_3xx`, `http_4xx`,
    /// `http_5xx` or `blocked` (a target refused before connecting); absent on success.
    pub error_class: Option<String>,
    /// The first 4 KiB of the answer.
    pub response_body: Option<String>,
    /// The headers sent, in order: the signature and timestamp are this attempt's own. The
    /// body is the event's envelope, the same for every attempt. Empty when no request was
    /// made (refused before it, or made by a worker that stopped before recording it).
    pub request_headers: Vec<SentHeader>,
    pub duration_ms: i64,
    pub created_at: String,
}

/// A header as a webhook attempt sent it.
#[derive(Object)]
pub struct SentHeader {
    pub name: String,
    pub value: String,
}

impl From<&webhook_attempts::Model> for WebhookAttempt {
    fn from(a: &webhook_attempts::Model) -> WebhookAttempt {
        WebhookAttempt {
            id: a.id.to_string(),
            attempt_number: a.attempt_number,
            http_status: a.http_status,
            error_message: a.error_message.clone(),
            error_class: a.error_class.clone(),
            response_body: a.response_body.clone(),
            request_headers: a
                .sent_headers()
                .into_iter()
                .map(|(name, value)| SentHeader { name, value })
                .collect(),
            duration_ms: a.duration_ms,
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Object)]
pub struct WebhookDelivery {
    pub id: String,
    pub object: crate::core::object_names::WebhookDeliveryName,
    /// `true` for live mode, `false` for test mode.
    pub livemode: bool,

    pub event_id: String,
    pub endpoint_id: String,
    pub status: entity::status::DeliveryStatus,
    /// Attempts in the current round (a manual retry starts a new round).
    pub attempts: i32,
    pub next_retry_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub http_status: Option<i32>,
    pub error_message: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// Every HTTP call made for this delivery, oldest first (on the single-object endpoint).
    #[oai(skip_serializing_if_is_none)]
    pub attempt_history: Option<Vec<WebhookAttempt>>,
}

impl WebhookDelivery {
    pub fn from_model(
        d: &webhook_deliveries::Model,
        attempts: Option<&[webhook_attempts::Model]>,
    ) -> WebhookDelivery {
        WebhookDelivery {
            id: d.id.to_string(),
            object: crate::core::object_names::WebhookDeliveryName::default(),
            livemode: d.livemode,
            event_id: d.event_id.to_string(),
            endpoint_id: d.endpoint_id.to_string(),
            status: d.status,
            attempts: d.attempts,
            next_retry_at: d.next_retry_at.map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            http_status: d.http_status,
            error_message: d.error_message.clone(),
            delivered_at: d.delivered_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            attempt_history: attempts.map(|a| a.iter().map(WebhookAttempt::from).collect()),
        }
    }
}

#[derive(Object)]
pub struct WebhookDeliveryList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<WebhookDelivery>,
    pub has_more: bool,
}

// ---------- admin ----------

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreateMerchantRequest {
    pub name: Text,
}

#[derive(Object)]
pub struct CreatedMerchant {
    pub id: String,
    pub object: crate::core::object_names::MerchantName,
    pub name: String,
    /// The merchant's secret key: shown once, stored hashed.
    pub api_key: String,
    pub created_at: String,
}

/// An operator's change to a merchant: its API rate limit. `null` returns a value to the
/// server's default; an absent field is left as it is.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateMerchantRequest {
    /// Requests per second each of the merchant's API keys may make (1–10000).
    pub rate_limit_per_second: MaybeUndefined<i64>,
    /// Requests a key may make at once after being idle (1 to 60 seconds of the rate).
    pub rate_limit_burst: MaybeUndefined<i64>,
    /// The usage plan: `free`, `pro`, or `custom` (with `usage_limits`).
    pub plan: Option<Text>,
    /// A `custom` plan's monthly limits by metric (`api_requests`, `payments_created`,
    /// `webhook_deliveries`, `log_bytes`); `-1` or absent: unlimited. `null` removes them.
    pub usage_limits: MaybeUndefined<HashMap<String, i64>>,
}

#[derive(Object)]
pub struct Merchant {
    pub id: String,
    pub object: crate::core::object_names::MerchantName,
    pub name: String,
    /// The merchant's own rate limit per key; `null`: the server's default.
    pub rate_limit_per_second: Option<i64>,
    /// The merchant's own burst per key; `null`: the server's default.
    pub rate_limit_burst: Option<i64>,
    /// The usage plan whose monthly limits apply.
    pub plan: String,
    /// A `custom` plan's limits by metric (`-1`: unlimited).
    pub usage_limits: Option<HashMap<String, i64>>,
    pub created_at: String,
}

// ---------- refunds ----------

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Minor units; defaults to everything left to refund.
    pub amount: Option<i64>,
    /// Why: `duplicate`, `fraudulent` or `requested_by_customer`. Kept on the refund and
    /// shown in the dashboard; the provider is not told.
    pub reason: Option<entity::status::RefundReason>,
}

#[derive(Object)]
pub struct RefundList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<Refund>,
    pub has_more: bool,
}

// ---------- logs ----------

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreateLogRequest {
    /// `debug`, `info`, `warning`, `error` or `critical`.
    pub level: Text,
    pub message: Text,
    /// Where it comes from in your system, e.g. `checkout`.
    pub source: Text,
    /// Any JSON object.
    pub context: Option<serde_json::Value>,
}

#[derive(Object)]
pub struct LogList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<LogEntry>,
    pub has_more: bool,
}

#[derive(Object)]
pub struct LogStats {
    pub window_seconds: u64,
    pub total: i64,
    pub by_level: HashMap<String, i64>,
    pub by_source: HashMap<String, i64>,
}
