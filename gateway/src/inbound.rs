//! Inbound provider events with the application's bookkeeping around them: recording and
//! applying (see [`crate::services::provider_events`]), metrics, cache invalidation and waking
//! the relay. Shared by the webhook handlers and the pending-payment poller, so a status
//! learned either way takes the same path.

use crate::error::ApiError;
use crate::sandbox::SimulatedEvent;
use crate::services::provider_events::{self, Applied, PaymentRef, VerifiedEvent};
use crate::state::AppState;

pub fn headers_json(pairs: &[(&str, &str)]) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Applies a verified event and does the bookkeeping every provider shares.
pub async fn apply(state: &AppState, event: VerifiedEvent<'_>) -> Result<Applied, ApiError> {
    let provider = event.provider.to_string();
    let provider_event_id = event.provider_event_id.to_string();
    let (outcome, payment) = provider_events::apply(&state.db, event).await?;
    if let (Applied::Applied, Some(p)) = (outcome, payment) {
        state.metrics.payment_status(&p.provider, &p.status);
        state.after_payment_change(&p.merchant_id).await;
        if p.status == "failed" {
            state
                .log_payment_failure(&crate::api::dto::Payment::from(&p), &p.merchant_id, None)
                .await;
        }
    }
    state.metrics.webhook_received(&provider, outcome.as_str());
    tracing::info!(provider = %provider, provider_event_id = %provider_event_id, outcome = outcome.as_str(), "provider webhook");
    Ok(outcome)
}

pub fn refused(state: &AppState, provider: &str, outcome: &str, error: ApiError) -> ApiError {
    state.metrics.webhook_received(provider, outcome);
    error
}

/// Verifies, records and applies one simulated-provider webhook.
pub async fn receive_simulated(
    state: &AppState,
    signature: &str,
    raw: &[u8],
) -> Result<Applied, ApiError> {
    if !state.simulated.verify(signature, raw) {
        let e = ApiError::bad_request(
            "signature_invalid",
            "The webhook signature does not match its body.",
        );
        return Err(refused(state, "simulated", "invalid_signature", e));
    }
    let event: SimulatedEvent = serde_json::from_slice(raw).map_err(|e| {
        refused(
            state,
            "simulated",
            "malformed",
            ApiError::bad_request(
                "invalid_request_body",
                format!("The webhook body is not a simulated event: {e}"),
            ),
        )
    })?;
    let raw_text = String::from_utf8_lossy(raw);
    apply(
        state,
        VerifiedEvent {
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
        },
    )
    .await
}

/// Re-queries a Moneroo or eBilling payment and applies what the provider says. The dedupe
/// key comes from the verified answer, never from the untrusted body, so a forged callback
/// cannot pre-empt a real one.
pub async fn verify_and_apply(
    state: &AppState,
    provider: &'static str,
    payment: &entity::payments::Model,
    event_type: &str,
    raw: &str,
    headers: Option<String>,
) -> Result<Applied, ApiError> {
    let remote = match state.providers.status(payment).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.webhook_received(provider, "verify_failed");
            tracing::warn!(provider, payment_id = %payment.id, error = %e, "could not verify a webhook with the provider; the poller will retry");
            return Err(ApiError::unavailable(format!(
                "Could not verify with {provider}: {e}"
            )));
        }
    };
    let seen = remote.status.map(|s| s.as_str()).unwrap_or("open");
    let reference = payment.provider_reference.clone().unwrap_or_default();
    apply(
        state,
        VerifiedEvent {
            provider,
            provider_event_id: &format!("{reference}:{seen}"),
            event_type,
            payment: PaymentRef::Id(&payment.id),
            target: Some(
                remote
                    .status
                    .unwrap_or(entity::payment_status::PaymentStatus::Pending),
            ),
            failure: (remote.status == Some(entity::payment_status::PaymentStatus::Failed))
                .then_some((
                    "provider_declined",
                    "The provider reports the payment as failed.",
                )),
            amount_refunded: None,
            raw_body: raw,
            headers,
        },
    )
    .await
}
