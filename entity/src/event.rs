//! Event types and the body merchants receive.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::payment_status::PaymentStatus;

/// What happened; its wire name (`payment.succeeded`) is [`EventType::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
pub enum EventType {
    #[cfg_attr(feature = "openapi", oai(rename = "payment.pending"))]
    PaymentPending,
    #[cfg_attr(feature = "openapi", oai(rename = "payment.processing"))]
    PaymentProcessing,
    #[cfg_attr(feature = "openapi", oai(rename = "payment.succeeded"))]
    PaymentSucceeded,
    #[cfg_attr(feature = "openapi", oai(rename = "payment.failed"))]
    PaymentFailed,
    #[cfg_attr(feature = "openapi", oai(rename = "payment.cancelled"))]
    PaymentCancelled,
    #[cfg_attr(feature = "openapi", oai(rename = "payment.refunded"))]
    PaymentRefunded,
    #[cfg_attr(feature = "openapi", oai(rename = "refund.created"))]
    RefundCreated,
    #[cfg_attr(feature = "openapi", oai(rename = "refund.succeeded"))]
    RefundSucceeded,
    #[cfg_attr(feature = "openapi", oai(rename = "refund.failed"))]
    RefundFailed,
    /// An endpoint was disabled automatically (sent to the merchant's other endpoints).
    #[cfg_attr(feature = "openapi", oai(rename = "webhook_endpoint.disabled"))]
    WebhookEndpointDisabled,
    /// Sent on request to one endpoint, whatever it subscribes to.
    #[cfg_attr(feature = "openapi", oai(rename = "webhook_endpoint.test"))]
    WebhookEndpointTest,
    /// A month's usage of a limited metric first crossed 80 % or 95 % of the plan's limit.
    #[cfg_attr(feature = "openapi", oai(rename = "usage.threshold_reached"))]
    UsageThresholdReached,
    #[cfg_attr(feature = "openapi", oai(rename = "payout.pending"))]
    PayoutPending,
    #[cfg_attr(feature = "openapi", oai(rename = "payout.processing"))]
    PayoutProcessing,
    #[cfg_attr(feature = "openapi", oai(rename = "payout.succeeded"))]
    PayoutSucceeded,
    #[cfg_attr(feature = "openapi", oai(rename = "payout.failed"))]
    PayoutFailed,
}

impl EventType {
    pub const ALL: [EventType; 16] = [
        EventType::PaymentPending,
        EventType::PaymentProcessing,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentCancelled,
        EventType::PaymentRefunded,
        EventType::RefundCreated,
        EventType::RefundSucceeded,
        EventType::RefundFailed,
        EventType::WebhookEndpointDisabled,
        EventType::WebhookEndpointTest,
        EventType::UsageThresholdReached,
        EventType::PayoutPending,
        EventType::PayoutProcessing,
        EventType::PayoutSucceeded,
        EventType::PayoutFailed,
    ];

    pub const fn for_status(status: PaymentStatus) -> EventType {
        match status {
            PaymentStatus::Pending => EventType::PaymentPending,
            PaymentStatus::Processing => EventType::PaymentProcessing,
            PaymentStatus::Succeeded => EventType::PaymentSucceeded,
            PaymentStatus::Failed => EventType::PaymentFailed,
            PaymentStatus::Cancelled => EventType::PaymentCancelled,
            PaymentStatus::Refunded => EventType::PaymentRefunded,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentPending => "payment.pending",
            EventType::PaymentProcessing => "payment.processing",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentCancelled => "payment.cancelled",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::RefundCreated => "refund.created",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
            EventType::WebhookEndpointTest => "webhook_endpoint.test",
            EventType::UsageThresholdReached => "usage.threshold_reached",
            EventType::PayoutPending => "payout.pending",
            EventType::PayoutProcessing => "payout.processing",
            EventType::PayoutSucceeded => "payout.succeeded",
            EventType::PayoutFailed => "payout.failed",
        }
    }

    /// The event of a payout reaching `status`.
    pub const fn for_payout(status: crate::status::PayoutStatus) -> EventType {
        use crate::status::PayoutStatus;
        match status {
            PayoutStatus::Pending => EventType::PayoutPending,
            PayoutStatus::Processing => EventType::PayoutProcessing,
            PayoutStatus::Succeeded => EventType::PayoutSucceeded,
            PayoutStatus::Failed => EventType::PayoutFailed,
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Whether an endpoint subscribed to `event_type` (`"*"` subscribes to everything).
pub fn subscribes<'a>(enabled_events: impl IntoIterator<Item = &'a str>, event_type: &str) -> bool {
    enabled_events
        .into_iter()
        .any(|e| e == "*" || e == event_type)
}

/// The version of the API that shaped events' `data`, carried by every event (in the API and
/// in webhooks) so a merchant's parser can tell which shape it reads. There is one so far; a
/// change to a payload's shape makes a new version, never a silent change to this one.
pub const API_VERSION: &str = "2026-11-23";

/// The JSON body of a merchant webhook: `{"id","type","api_version","created_at","data"}`.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub api_version: &'static str,
    pub created_at: String,
    pub data: &'a serde_json::Value,
}

impl<'a> WebhookBody<'a> {
    pub fn new(
        id: &'a str,
        event_type: &'a str,
        created_at: DateTime<Utc>,
        data: &'a serde_json::Value,
    ) -> Self {
        WebhookBody {
            id,
            event_type,
            api_version: API_VERSION,
            created_at: rfc3339(created_at),
            data,
        }
    }

    /// The exact bytes that are signed and sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings and a Value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Timestamps in API bodies: RFC 3339, UTC, millisecond precision.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventType, D::Error> {
        let text = String::deserialize(d)?;
        EventType::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_and_wildcards_subscribe() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert!(subscribes(["*"], "payment.failed"));
        assert!(subscribes(["payment.succeeded"], "payment.succeeded"));
        assert!(!subscribes(["payment.succeeded"], "payment.failed"));
        assert!(!subscribes([], "payment.failed"));
    }

    #[test]
    fn webhook_body_has_the_documented_shape() {
        let data = serde_json::json!({"id": "pay_1"});
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let body = WebhookBody::new("evt_1", "payment.succeeded", t, &data).to_bytes();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"id":"evt_1","type":"payment.succeeded","api_version":"2026-11-23","created_at":"2023-11-14T22:13:20.000Z","data":{"id":"pay_1"}}"#
        );
    }
}
