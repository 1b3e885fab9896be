//! Inbound provider webhooks. Only the simulated provider exists so far; the exact received
//! bytes are verified before anything is parsed or trusted.

use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::error::ApiError;
use crate::sandbox::SimulatedEvent;
use crate::services::provider_events::{self, Applied, VerifiedEvent};
use crate::state::AppState;

#[derive(Default)]
pub struct ProvidersApi;

#[derive(Object)]
pub struct WebhookReceived {
    pub received: bool,
    /// `applied`, `duplicate`, `ignored`, `unknown_type` or `unknown_payment`.
    pub outcome: String,
}

/// Verifies, records and applies one simulated-provider webhook.
pub async fn receive_simulated(
    state: &AppState,
    signature: &str,
    raw: &[u8],
) -> Result<Applied, ApiError> {
    if !state.simulated.verify(signature, raw) {
        return Err(ApiError::bad_request(
            "signature_invalid",
            "The webhook signature does not match its body.",
        ));
    }
    let event: SimulatedEvent = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_request_body",
            format!("The webhook body is not a simulated event: {e}"),
        )
    })?;
    let raw_text = String::from_utf8_lossy(raw);
    let (outcome, payment) = provider_events::apply(
        &state.db,
        VerifiedEvent {
            provider: "simulated",
            provider_event_id: &event.id,
            event_type: &event.event_type,
            payment_id: &event.data.payment_id,
            target: event.target(),
            failure: event
                .data
                .failure_code
                .as_deref()
                .zip(event.data.failure_message.as_deref()),
            raw_body: &raw_text,
        },
    )
    .await?;
    if let (Applied::Applied, Some(p)) = (outcome, payment) {
        state.metrics.payment_status(&p.provider, &p.status);
        state.after_payment_change(&p.merchant_id).await;
    }
    tracing::info!(provider = "simulated", provider_event_id = %event.id, outcome = outcome.as_str(), "provider webhook");
    Ok(outcome)
}

#[OpenApi(prefix_path = "/v1/providers", tag = "ApiTags::Providers")]
impl ProvidersApi {
    /// Webhook from the simulated provider
    #[oai(
        path = "/simulated/webhooks",
        method = "post",
        operation_id = "simulated_provider_webhook"
    )]
    async fn simulated(
        &self,
        state: Data<&AppState>,
        #[oai(name = "Payrail-Simulated-Signature")] signature: Header<String>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<WebhookReceived>, ApiError> {
        let outcome = receive_simulated(&state, &signature.0, &body.0).await?;
        Ok(Json(WebhookReceived {
            received: true,
            outcome: outcome.as_str().to_string(),
        }))
    }
}
