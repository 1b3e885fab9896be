//! Inbound provider webhooks. The exact received bytes are verified before anything is parsed
//! or trusted; Moneroo's and eBilling's bodies are not trusted even then: the payment's status
//! is re-queried from the provider. Every event is recorded (`provider_events`), unique per
//! provider and event id, so a duplicate answers 200 and does nothing.

use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::payments::inbound::events::{PaymentRef, VerifiedEvent};
use crate::payments::inbound::{Requery, headers_json};
use crate::providers::{ebilling, stripe};
use entity::status::Provider;

#[derive(Default)]
pub struct ProvidersApi;

#[derive(Object)]
pub struct WebhookReceived {
    pub received: bool,
    /// `applied`, `duplicate`, `ignored`, `unknown_type`, `unknown_payment`, or `queued` when
    /// the status is being verified with the provider after answering.
    pub outcome: String,
}

#[derive(ApiResponse)]
pub enum MonerooAnswer {
    /// Received (verification with Moneroo continues after this answer).
    #[oai(status = 200)]
    Ok(Json<WebhookReceived>),
    /// The signature does not match the body.
    #[oai(status = 403)]
    Forbidden(Json<crate::http::api::error::ErrorBody>),
}

#[OpenApi(prefix_path = "/v1/providers", tag = "ApiTags::Providers")]
impl ProvidersApi {
    /// Webhook from the simulated provider
    ///
    /// The simulated provider's signed webhook, sent when a sandbox payment is completed.
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
        let outcome = state
            .inbound
            .receive_simulated(&signature.0, &body.0)
            .await?;
        Ok(Json(WebhookReceived {
            received: true,
            outcome: outcome.as_str().to_string(),
        }))
    }

    /// Webhook from Stripe (`Stripe-Signature`, 300 s tolerance)
    ///
    /// Stripe's signed webhook (`Stripe-Signature`, five-minute tolerance). Events already
    /// received are acknowledged and ignored.
    #[oai(
        path = "/stripe/webhooks",
        method = "post",
        operation_id = "stripe_webhook"
    )]
    async fn stripe(
        &self,
        state: Data<&AppState>,
        #[oai(name = "Stripe-Signature")] signature: Header<String>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<WebhookReceived>, ApiError> {
        let stripe = state.providers.stripe.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "provider",
                "provider_not_configured",
                "Stripe is not configured.",
            )
        })?;
        if let Err(e) = stripe.verify(&signature.0, &body.0, chrono::Utc::now().timestamp()) {
            return Err(state.inbound.refused(
                "stripe",
                "invalid_signature",
                ApiError::bad_request("signature_invalid", e.to_string()),
            ));
        }
        let event = stripe::parse_event(&body.0).map_err(|e| {
            state.inbound.refused(
                "stripe",
                "malformed",
                ApiError::bad_request("invalid_request_body", e),
            )
        })?;
        let raw = String::from_utf8_lossy(&body.0);
        let outcome = state
            .inbound
            .apply(VerifiedEvent {
                provider: "stripe",
                provider_event_id: &event.id,
                event_type: &event.event_type,
                payment: event
                    .intent_id
                    .as_deref()
                    .map_or(PaymentRef::None, PaymentRef::ProviderReference),
                target: event.target,
                failure: event
                    .failure
                    .as_ref()
                    .map(|(c, m)| (c.as_str(), m.as_str())),
                amount_refunded: event.amount_refunded,
                raw_body: &raw,
                headers: headers_json(&[("Stripe-Signature", &signature.0)]),
            })
            .await?;
        Ok(Json(WebhookReceived {
            received: true,
            outcome: outcome.as_str().to_string(),
        }))
    }

    /// Webhook from Moneroo (`X-Moneroo-Signature`); answered at once, verified after
    ///
    /// Moneroo's signed webhook. The signature is checked on the raw body; the payment is re-
    /// queried at Moneroo before its status changes.
    #[oai(
        path = "/moneroo/webhooks",
        method = "post",
        operation_id = "moneroo_webhook"
    )]
    async fn moneroo(
        &self,
        state: Data<&AppState>,
        #[oai(name = "X-Moneroo-Signature")] signature: Header<String>,
        body: Binary<Vec<u8>>,
    ) -> Result<MonerooAnswer, ApiError> {
        let moneroo = state.providers.moneroo.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "provider",
                "provider_not_configured",
                "Moneroo is not configured.",
            )
        })?;
        if !moneroo.verify(&signature.0, &body.0) {
            state
                .metrics
                .webhook_received("moneroo", "invalid_signature");
            let ApiError::BadRequest(b) = ApiError::bad_request(
                "signature_invalid",
                "The X-Moneroo-Signature does not match the body.",
            ) else {
                return Err(ApiError::internal("unexpected error variant"));
            };
            return Ok(MonerooAnswer::Forbidden(b));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body.0).map_err(|e| {
            state.inbound.refused(
                "moneroo",
                "malformed",
                ApiError::bad_request("invalid_request_body", format!("not JSON: {e}")),
            )
        })?;
        let event_type = parsed["event"].as_str().unwrap_or_default().to_string();
        let reference = parsed["data"]["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| parsed["data"]["id"].as_i64().map(|n| n.to_string()));
        let raw = String::from_utf8_lossy(&body.0).into_owned();
        let headers = headers_json(&[("X-Moneroo-Signature", &signature.0)]);
        let payment = match (&reference, event_type.starts_with("payment.")) {
            (Some(r), true) => {
                crate::payments::service::find_by_provider_reference(
                    &state.db,
                    Provider::Moneroo,
                    r,
                )
                .await?
            }
            _ => None,
        };
        let Some(payment) = payment else {
            // Payout events, unknown types and unknown payments: recorded, answered 200, no effect.
            let target = event_type
                .starts_with("payment.")
                .then_some(entity::payment_status::PaymentStatus::Pending);
            let id = format!("{}:{}", reference.as_deref().unwrap_or("none"), event_type);
            let outcome = state
                .inbound
                .apply(VerifiedEvent {
                    provider: "moneroo",
                    provider_event_id: &id,
                    event_type: &event_type,
                    payment: PaymentRef::None,
                    target,
                    failure: None,
                    amount_refunded: None,
                    raw_body: &raw,
                    headers,
                })
                .await?;
            // A payout's webhook is not believed either: the payout is re-queried, after
            // answering (Moneroo wants 200 within 3 s). One Payrail has no reference for
            // (initialize's answer was lost) is found by the id Payrail put in its metadata,
            // and adopts the reference only if Moneroo confirms it is that payout.
            if event_type.starts_with("payout.")
                && let Some(r) = reference.clone()
            {
                let known =
                    crate::payouts::by_provider_reference(&state.db, Provider::Moneroo, &r).await?;
                let named = parsed["data"]["metadata"]["payrail_payout_id"]
                    .as_str()
                    .and_then(entity::ids::PayoutId::parse);
                let state = state.clone();
                tokio::spawn(async move {
                    let settled = match (known, named) {
                        (Some(payout), _) => {
                            crate::payouts::refresh(&state.db, &state.providers, &payout).await
                        }
                        (None, Some(id)) => {
                            crate::payouts::adopt(&state.db, &state.providers, &id, &r).await
                        }
                        (None, None) => Ok(crate::core::effects::Committed::nothing(None)),
                    };
                    match settled {
                        Ok(settled) => {
                            state.effects.apply(settled, None).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, reference = %r, "payout re-query after its webhook failed")
                        }
                    }
                });
            }
            return Ok(MonerooAnswer::Ok(Json(WebhookReceived {
                received: true,
                outcome: outcome.as_str().to_string(),
            })));
        };
        // Moneroo wants 200 within 3 s: verify after answering. A failed verify leaves the
        // payment to the poller.
        let state = state.clone();
        tokio::spawn(async move {
            let _ = state
                .inbound
                .verify_and_apply(&payment, &event_type, &raw, headers)
                .await;
        });
        Ok(MonerooAnswer::Ok(Json(WebhookReceived {
            received: true,
            outcome: "queued".into(),
        })))
    }

    /// Notification from eBilling (form-encoded, unsigned: the bill is re-queried)
    ///
    /// eBilling's payment notification. It is not signed, so Payrail re-queries the bill before
    /// changing anything.
    #[oai(
        path = "/ebilling/webhooks",
        method = "post",
        operation_id = "ebilling_webhook"
    )]
    async fn ebilling(
        &self,
        state: Data<&AppState>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<WebhookReceived>, ApiError> {
        if state.providers.ebilling.is_none() {
            return Err(ApiError::invalid(
                "provider",
                "provider_not_configured",
                "eBilling is not configured.",
            ));
        }
        let callback = ebilling::parse_callback(&body.0).ok_or_else(|| {
            state.inbound.refused(
                "ebilling",
                "malformed",
                ApiError::bad_request(
                    "invalid_request_body",
                    "An eBilling notification needs reference and billingid.",
                ),
            )
        })?;
        let payment = crate::payments::service::find_by_provider_reference(
            &state.db,
            Provider::Ebilling,
            &callback.billing_id,
        )
        .await?
        .filter(|p| p.id == callback.reference);
        // The callback is unsigned: one that names no payment of ours is counted and
        // answered, never stored (anyone can send them, as large and as many as they like).
        let Some(payment) = payment else {
            let outcome = "unknown_payment";
            return Ok(Json(WebhookReceived {
                received: true,
                outcome: state
                    .inbound
                    .refused("ebilling", outcome, outcome)
                    .to_string(),
            }));
        };
        let raw = String::from_utf8_lossy(&body.0).into_owned();
        let throttled = state.inbound.throttle.claim(&callback.billing_id);
        if throttled != Requery::Now {
            if let Requery::After(wait) = throttled {
                // Re-query once when the period ends, so a real callback right after a forged
                // one is still applied.
                let inbound = state.inbound.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if let Err(e) = inbound
                        .verify_and_apply(&payment, "notification", &raw, None)
                        .await
                    {
                        tracing::warn!(error = %e, "deferred eBilling re-query failed; the poller retries");
                    }
                });
            }
            return Ok(Json(WebhookReceived {
                received: true,
                outcome: state
                    .inbound
                    .refused("ebilling", "throttled", "throttled")
                    .to_string(),
            }));
        }
        let outcome = state
            .inbound
            .verify_and_apply(&payment, "notification", &raw, None)
            .await?;
        Ok(Json(WebhookReceived {
            received: true,
            outcome: outcome.as_str().to_string(),
        }))
    }
}
