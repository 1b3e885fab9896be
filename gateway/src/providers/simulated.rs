//! The simulated provider, for sandboxes: a hosted checkout page with Pay / Decline /
//! Cancel, and signed provider webhooks that go through the same inbound path as a real
//! provider's (signature check, dedupe, status machine, event).
//!
//! Its webhook is `{"id":"simevt_…","type":"payment.succeeded","created":…,"data":{…}}`
//! signed with `Payrail-Simulated-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use entity::ids::random_token;
use entity::payment_status::PaymentStatus;
use hmac::Mac;
use serde::{Deserialize, Serialize};

pub const SIGNATURE_HEADER: &str = "Payrail-Simulated-Signature";

pub struct SimulatedProvider {
    secret: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimulatedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub data: SimulatedEventData,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimulatedEventData {
    pub payment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

impl SimulatedEvent {
    /// The status this event asks for; `None` for types the gateway does not act on.
    pub fn target(&self) -> Option<PaymentStatus> {
        self.event_type
            .strip_prefix("payment.")
            .and_then(PaymentStatus::parse)
    }
}

impl SimulatedProvider {
    pub fn new(secret: Option<&str>) -> SimulatedProvider {
        let secret = secret
            .map(str::to_string)
            .unwrap_or_else(|| random_token(32));
        SimulatedProvider {
            secret: secret.into_bytes(),
        }
    }

    fn mac(&self) -> entity::signature::HmacSha256 {
        entity::signature::hmac_sha256(&self.secret)
    }

    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Constant-time check of a signature header over the exact received bytes.
    pub fn verify(&self, header: &str, body: &[u8]) -> bool {
        let Some(Ok(sig)) = header.strip_prefix("sha256=").map(hex::decode) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }

    /// What the provider would send when the customer reaches `outcome`.
    pub fn event_for(&self, payment_id: &str, outcome: PaymentStatus) -> (Vec<u8>, String) {
        let failure = (outcome == PaymentStatus::Failed).then(|| {
            (
                "card_declined".to_string(),
                "The simulated customer declined the payment.".to_string(),
            )
        });
        let event = SimulatedEvent {
            id: format!("simevt_{}", random_token(24)),
            event_type: format!("payment.{}", outcome.as_str()),
            created: chrono::Utc::now().timestamp(),
            data: SimulatedEventData {
                payment_id: payment_id.to_string(),
                failure_code: failure.as_ref().map(|f| f.0.clone()),
                failure_message: failure.map(|f| f.1),
            },
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let signature = self.sign(&body);
        (body, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_verify_only_with_their_exact_bytes_and_key() {
        let p = SimulatedProvider::new(Some("k"));
        let (body, sig) = p.event_for("pay_1", PaymentStatus::Succeeded);
        assert!(p.verify(&sig, &body));
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(!p.verify(&sig, &tampered));
        assert!(!SimulatedProvider::new(Some("other")).verify(&sig, &body));
        assert!(!p.verify("sha256=zz", &body));
        let parsed: SimulatedEvent = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.target(), Some(PaymentStatus::Succeeded));
    }
}
