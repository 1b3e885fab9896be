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
    },
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
        }
    }

    pub fn merchant_id(&self) -> &crate::ids::MerchantId {
        match self {
            BusMessage::V1 { merchant_id, .. } => merchant_id,
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            BusMessage::V1 { event_type, .. } => event_type,
        }
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
}

impl QueueNames {
    pub fn new(prefix: &str) -> QueueNames {
        QueueNames {
            exchange: format!("{prefix}.events"),
            queue: format!("{prefix}.webhook-fanout"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.webhook-fanout.dead"),
            routing_key: "event".to_string(),
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
        };
        let bytes = m.encode();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""version":"v1""#));
        assert_eq!(BusMessage::decode(&bytes).unwrap(), m);
        assert!(BusMessage::decode(br#"{"version":"v9"}"#).is_err());
        assert!(BusMessage::decode(b"not json").is_err());
    }

    #[test]
    fn names_share_the_prefix() {
        let n = QueueNames::new("t123");
        assert!(n.exchange.starts_with("t123.") && n.dead_letter_queue.starts_with("t123."));
    }
}
