//! What travels on the event bus, and the names of the exchange and queues.
//!
//! The message is a versioned enum: the bus serialises it, and nothing else touches AMQP
//! bytes. A message that does not parse as any version is dead-lettered, never dropped.

use serde::{Deserialize, Serialize};

/// A message on the bus. Add a variant for a new version; never change an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum BusMessage {
    /// An event row was committed and needs fanning out to the merchant's endpoints.
    #[serde(rename = "v1")]
    V1 {
        event_id: crate::ids::EventId,
        merchant_id: crate::ids::MerchantId,
        event_type: String,
        /// The request id of the API call that caused it, so logs follow it to delivery.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// The W3C trace context of the event (also sent as the AMQP `traceparent` header),
        /// so the fan-out joins the API call's trace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
    },
    /// The committed event itself, so the fan-out makes its delivery rows without reading the
    /// row back (the relay has just read it). Workers read v1 and v2; the relay publishes v2,
    /// so workers are upgraded before gateways (a v1-only worker dead-letters v2).
    #[serde(rename = "v2")]
    V2(EventOnBus),
}

/// An event row as it travels in a [`BusMessage::V2`]: every column the fan-out and the
/// attempts need, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOnBus {
    pub event_id: crate::ids::EventId,
    pub merchant_id: crate::ids::MerchantId,
    pub livemode: bool,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<crate::ids::PaymentId>,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The merchant's endpoints version as the event's statement saw it (see
    /// `merchants.endpoints_version`): a worker whose copy of the merchant's endpoints is at
    /// least this new may fan the event out from that copy. Absent: read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints_version: Option<i64>,
    /// Set by a relay that took the event over from a writer with an express lane: a worker
    /// may have sent its webhooks from the lane's copy and stopped before their rows
    /// committed. The fan-out records an attempt of unknown outcome on each row it makes, so
    /// that attempts still account for every request a receiver may have seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub taken_over_from_lane: bool,
}

impl From<crate::events::Model> for EventOnBus {
    fn from(e: crate::events::Model) -> EventOnBus {
        EventOnBus {
            event_id: e.id,
            merchant_id: e.merchant_id,
            livemode: e.livemode,
            event_type: e.event_type,
            payment_id: e.payment_id,
            data: e.data,
            request_id: e.request_id,
            created_at: e.created_at,
            traceparent: e.traceparent,
            endpoints_version: None,
            taken_over_from_lane: false,
        }
    }
}

impl EventOnBus {
    /// The event's row as committed, less its `published_at` and `writer_publishes` (the bus
    /// does not know when the mark commits nor who published, and nothing downstream reads
    /// them).
    pub fn to_model(&self) -> crate::events::Model {
        crate::events::Model {
            id: self.event_id.clone(),
            merchant_id: self.merchant_id.clone(),
            livemode: self.livemode,
            event_type: self.event_type.clone(),
            payment_id: self.payment_id.clone(),
            data: self.data.clone(),
            request_id: self.request_id.clone(),
            created_at: self.created_at,
            published_at: None,
            writer_publishes: false,
            traceparent: self.traceparent.clone(),
        }
    }
}

impl BusMessage {
    pub fn encode(&self) -> Vec<u8> {
        // A tagged enum of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<BusMessage, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn event_id(&self) -> &crate::ids::EventId {
        match self {
            BusMessage::V1 { event_id, .. } => event_id,
            BusMessage::V2(e) => &e.event_id,
        }
    }

    pub fn merchant_id(&self) -> &crate::ids::MerchantId {
        match self {
            BusMessage::V1 { merchant_id, .. } => merchant_id,
            BusMessage::V2(e) => &e.merchant_id,
        }
    }

    pub fn traceparent(&self) -> Option<&str> {
        match self {
            BusMessage::V1 { traceparent, .. } => traceparent.as_deref(),
            BusMessage::V2(e) => e.traceparent.as_deref(),
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            BusMessage::V1 { event_type, .. } => event_type,
            BusMessage::V2(e) => &e.event_type,
        }
    }

    /// The event it carries (v2); a v1 message names it only.
    pub fn carried_event(&self) -> Option<&EventOnBus> {
        match self {
            BusMessage::V1 { .. } => None,
            BusMessage::V2(e) => Some(e),
        }
    }
}

/// A change the dashboards may want to show at once. Best effort, never durable: the data
/// itself is in the database, and a page that missed a notice reloads its live parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum LiveNotice {
    #[serde(rename = "v1")]
    V1 {
        merchant_id: crate::ids::MerchantId,
        change: LiveChange,
    },
}

/// What changed. Payments change through their events, which every gateway also hears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveChange {
    /// An event was committed (a payment or refund changed, an endpoint was disabled, ...).
    Event {
        event_id: crate::ids::EventId,
        event_type: String,
    },
    /// The worker recorded an attempt of this delivery.
    DeliveryAttempt {
        delivery_id: crate::ids::DeliveryId,
        status: String,
    },
    /// An entry was written to the merchant's log store.
    LogEntry {
        log_id: crate::ids::LogId,
        level: String,
    },
}

impl LiveNotice {
    pub fn new(merchant_id: crate::ids::MerchantId, change: LiveChange) -> LiveNotice {
        LiveNotice::V1 {
            merchant_id,
            change,
        }
    }

    pub fn merchant_id(&self) -> &crate::ids::MerchantId {
        match self {
            LiveNotice::V1 { merchant_id, .. } => merchant_id,
        }
    }

    pub fn change(&self) -> &LiveChange {
        match self {
            LiveNotice::V1 { change, .. } => change,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<LiveNotice, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Several notices in one message: a JSON array of them, or the notice itself when it
    /// is alone (what a publisher older than arrays sends, and all one understands).
    pub fn encode_many(notices: &[LiveNotice]) -> Vec<u8> {
        match notices {
            [one] => one.encode(),
            many => serde_json::to_vec(many).unwrap_or_default(),
        }
    }

    /// The notices of one message, as [`LiveNotice::encode_many`] wrote them.
    pub fn decode_many(bytes: &[u8]) -> Result<Vec<LiveNotice>, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            Many(Vec<LiveNotice>),
            One(LiveNotice),
        }
        Ok(match serde_json::from_slice(bytes)? {
            OneOrMany::Many(notices) => notices,
            OneOrMany::One(notice) => vec![notice],
        })
    }
}

impl From<&BusMessage> for LiveNotice {
    fn from(m: &BusMessage) -> LiveNotice {
        LiveNotice::new(
            m.merchant_id().clone(),
            LiveChange::Event {
                event_id: m.event_id().clone(),
                event_type: m.event_type().to_string(),
            },
        )
    }
}

/// Exchange and queue names under one prefix, so tests and tenants never share a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub routing_key: String,
    /// Fanout exchange of [`LiveNotice`]s; each gateway binds a queue of its own.
    pub live_exchange: String,
}

impl QueueNames {
    pub fn new(prefix: &str) -> QueueNames {
        QueueNames {
            exchange: format!("{prefix}.events"),
            queue: format!("{prefix}.webhook-fanout"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.webhook-fanout.dead"),
            routing_key: "event".to_string(),
            live_exchange: format!("{prefix}.live"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_carry_their_version() {
        let m = BusMessage::V1 {
            event_id: crate::ids::EventId::from_trusted("evt_1"),
            merchant_id: crate::ids::MerchantId::from_trusted("mer_1"),
            event_type: "payment.pending".into(),
            request_id: None,
            traceparent: None,
        };
        let bytes = m.encode();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""version":"v1""#));
        assert_eq!(BusMessage::decode(&bytes).unwrap(), m);
        assert!(BusMessage::decode(br#"{"version":"v9"}"#).is_err());
        assert!(BusMessage::decode(b"not json").is_err());
    }

    #[test]
    fn a_v2_message_carries_its_event_as_committed() {
        let row = crate::events::Model {
            id: crate::ids::EventId::from_trusted("evt_2"),
            merchant_id: crate::ids::MerchantId::from_trusted("mer_2"),
            livemode: true,
            event_type: "payment.succeeded".into(),
            payment_id: Some(crate::ids::PaymentId::from_trusted("pay_2")),
            data: serde_json::json!({"id": "pay_2", "amount": 2000}),
            request_id: Some("req_2".into()),
            created_at: chrono::DateTime::from_timestamp_micros(1_796_516_419_614_572).unwrap(),
            published_at: None,
            writer_publishes: false,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let m = BusMessage::V2(row.clone().into());
        let bytes = m.encode();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""version":"v2""#));
        let back = BusMessage::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.carried_event().map(|e| e.to_model()), Some(row));
        assert_eq!(back.event_id().as_str(), "evt_2");
        assert_eq!(back.merchant_id().as_str(), "mer_2");
        assert_eq!(back.event_type(), "payment.succeeded");
        // A v1 message names its event and carries none.
        let v1 = BusMessage::V1 {
            event_id: crate::ids::EventId::from_trusted("evt_1"),
            merchant_id: crate::ids::MerchantId::from_trusted("mer_1"),
            event_type: "payment.pending".into(),
            request_id: None,
            traceparent: None,
        };
        assert!(v1.carried_event().is_none());
    }

    #[test]
    fn live_notices_round_trip_and_carry_their_version() {
        let n = LiveNotice::new(
            crate::ids::MerchantId::from_trusted("mer_1"),
            LiveChange::DeliveryAttempt {
                delivery_id: crate::ids::DeliveryId::from_trusted("dlv_1"),
                status: "failed".into(),
            },
        );
        let bytes = n.encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(r#""version":"v1""#) && text.contains(r#""kind":"delivery_attempt""#)
        );
        assert_eq!(LiveNotice::decode(&bytes).unwrap(), n);
        assert!(
            LiveNotice::decode(
                br#"{"version":"v1","merchant_id":"mer_1","change":{"kind":"nope"}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn live_notices_travel_several_to_a_message_and_one_alone_as_before() {
        let notice = |n: u32| {
            LiveNotice::new(
                crate::ids::MerchantId::from_trusted(format!("mer_{n}")),
                LiveChange::LogEntry {
                    log_id: crate::ids::LogId::from_trusted(format!("log_{n}")),
                    level: "error".into(),
                },
            )
        };
        let three = [notice(1), notice(2), notice(3)];
        let bytes = LiveNotice::encode_many(&three);
        assert!(bytes.starts_with(b"["));
        assert_eq!(LiveNotice::decode_many(&bytes).unwrap(), three);
        // Alone, the notice is the message, as a reader without arrays expects.
        let alone = LiveNotice::encode_many(&three[..1]);
        assert_eq!(alone, three[0].encode());
        assert_eq!(LiveNotice::decode_many(&alone).unwrap(), three[..1]);
        assert!(LiveNotice::decode_many(br#"[{"version":"v9"}]"#).is_err());
    }

    #[test]
    fn names_share_the_prefix() {
        let n = QueueNames::new("t123");
        assert!(n.exchange.starts_with("t123.") && n.dead_letter_queue.starts_with("t123."));
    }
}
