//! Inbound provider events with the application's bookkeeping around them: recording and
//! applying (see [`crate::payments::inbound::events`]), metrics, cache invalidation and waking
//! the relay. Shared by the webhook handlers and the pending-payment poller, so a status
//! learned either way takes the same path.

pub mod events;
pub mod poller;

use std::sync::Arc;

use entity::payment_status::PaymentStatus;

use self::events::{Applied, PaymentRef, VerifiedEvent};
use crate::core::effects::Effects;
use crate::core::error::ServiceError;
use crate::providers::Providers;
use crate::providers::simulated::{SimulatedEvent, SimulatedProvider};

/// Why an inbound event was not applied.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The signature does not match the body (→ 400; the provider retries a real one).
    #[error("The webhook signature does not match its body.")]
    InvalidSignature,
    /// The body is not what the provider sends (→ 400).
    #[error("{0}")]
    Malformed(String),
    /// The provider could not be asked to confirm (→ 503, so the provider retries).
    #[error("{0}")]
    Unverified(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<sea_orm::DbErr> for InboundError {
    fn from(e: sea_orm::DbErr) -> InboundError {
        InboundError::Service(e.into())
    }
}

/// At most one re-query per key (an eBilling bill) per period, per process: an unsigned
/// callback repeated in a loop must not turn into a loop of calls to the provider.
#[derive(Clone)]
pub struct RequeryThrottle {
    period: std::time::Duration,
    last: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// What the throttle allows for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requery {
    Now,
    /// Not before this long; the caller re-queries then, once (nothing is lost).
    After(std::time::Duration),
    /// A later re-query is already planned.
    Planned,
}

impl RequeryThrottle {
    pub fn new(period: std::time::Duration) -> RequeryThrottle {
        RequeryThrottle {
            period,
            last: Arc::default(),
        }
    }

    /// When `key` may be re-queried; claims that slot.
    pub fn claim(&self, key: &str) -> Requery {
        let now = std::time::Instant::now();
        let Ok(mut last) = self.last.lock() else {
            return Requery::Now;
        };
        if last.len() > 10_000 {
            last.retain(|_, at| *at + self.period > now);
        }
        match last.get(key).copied() {
            Some(at) if at > now => Requery::Planned,
            Some(at) if now.duration_since(at) < self.period => {
                let next = at + self.period;
                last.insert(key.to_string(), next);
                Requery::After(next - now)
            }
            _ => {
                last.insert(key.to_string(), now);
                Requery::Now
            }
        }
    }
}

/// Everything applying a provider event needs, shared by the webhook routes and the poller.
#[derive(Clone)]
pub struct Inbound {
    pub effects: Effects,
    pub providers: Arc<Providers>,
    pub simulated: Arc<SimulatedProvider>,
    pub throttle: RequeryThrottle,
    /// When the funds of a payment that succeeds become available.
    pub funds: crate::ledger::FundsPolicy,
}

pub fn headers_json(pairs: &[(&str, &str)]) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

impl Inbound {
    /// Applies a verified event and does the bookkeeping every provider shares.
    pub async fn apply(&self, event: VerifiedEvent<'_>) -> Result<Applied, InboundError> {
        let provider = event.provider.to_string();
        let provider_event_id = event.provider_event_id.to_string();
        let applied = events::apply(&self.effects.db, event, self.funds).await?;
        let (outcome, _) = self.effects.apply(applied, None).await;
        self.effects
            .metrics
            .webhook_received(&provider, outcome.as_str());
        tracing::info!(provider = %provider, provider_event_id = %provider_event_id, outcome = outcome.as_str(), "provider webhook");
        Ok(outcome)
    }

    /// Counts an event refused before it could be applied, and hands the error back.
    pub fn refused<E>(&self, provider: &str, outcome: &str, error: E) -> E {
        self.effects.metrics.webhook_received(provider, outcome);
        error
    }

    /// Verifies, records and applies one simulated-provider webhook.
    pub async fn receive_simulated(
        &self,
        signature: &str,
        raw: &[u8],
    ) -> Result<Applied, InboundError> {
        if !self.simulated.verify(signature, raw) {
            return Err(self.refused(
                "simulated",
                "invalid_signature",
                InboundError::InvalidSignature,
            ));
        }
        let event: SimulatedEvent = serde_json::from_slice(raw).map_err(|e| {
            self.refused(
                "simulated",
                "malformed",
                InboundError::Malformed(format!("The webhook body is not a simulated event: {e}")),
            )
        })?;
        let raw_text = String::from_utf8_lossy(raw);
        self.apply(VerifiedEvent {
            provider: "simulated",
            provider_event_id: &event.id,
            event_type: &event.event_type,
            payment: PaymentRef::Id(&event.data.payment_id),
            target: event.target(),
            failure: event
                .data
                .failure_code
                .as_deref()
                .zip(event.data.failure_message.as_deref()),
            amount_refunded: None,
            raw_body: &raw_text,
            headers: headers_json(&[("Payrail-Simulated-Signature", signature)]),
        })
        .await
    }

    /// Re-queries a Moneroo or eBilling payment and applies what the provider says. The dedupe
    /// key comes from the verified answer, never from the untrusted body, so a forged callback
    /// cannot pre-empt a real one.
    pub async fn verify_and_apply(
        &self,
        payment: &entity::payments::Model,
        event_type: &str,
        raw: &str,
        headers: Option<String>,
    ) -> Result<Applied, InboundError> {
        let provider = payment.provider.as_str();
        let remote = match self.providers.status(payment).await {
            Ok(r) => r,
            Err(e) => {
                self.effects
                    .metrics
                    .webhook_received(provider, "verify_failed");
                tracing::warn!(provider, payment_id = %payment.id, error = %e, "could not verify a webhook with the provider; the poller will retry");
                return Err(InboundError::Unverified(format!(
                    "Could not verify with {provider}: {e}"
                )));
            }
        };
        let seen = remote.status.map(|s| s.as_str()).unwrap_or("open");
        let reference = payment.provider_reference.clone().unwrap_or_default();
        self.apply(VerifiedEvent {
            provider,
            provider_event_id: &format!("{reference}:{seen}"),
            event_type,
            payment: PaymentRef::Id(&payment.id),
            target: Some(remote.status.unwrap_or(PaymentStatus::Pending)),
            failure: (remote.status == Some(PaymentStatus::Failed)).then_some((
                "provider_declined",
                "The provider reports the payment as failed.",
            )),
            amount_refunded: None,
            raw_body: raw,
            headers,
        })
        .await
    }
}
