//! What every handler can reach, built once at start-up by `app`. Wiring only: no logic.

use std::sync::{Arc, RwLock};

use runtime::bus::EventBus;
use runtime::cache::Cache;
use sea_orm::DatabaseConnection;
use worker::metrics::DeliveryMetrics;

use crate::core::effects::Effects;
use crate::core::metrics::ApiMetrics;
use crate::payments::inbound::Inbound;
use crate::providers::Providers;
use crate::providers::simulated::SimulatedProvider;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub cache: Cache,
    pub metrics: Arc<ApiMetrics>,
    /// What every commit that changed payments must do next.
    pub effects: Effects,
    /// Applying provider events (webhooks and sandbox completions).
    pub inbound: Inbound,
    /// Present when the worker runs in this process (embedded mode).
    pub delivery_metrics: Option<Arc<DeliveryMetrics>>,
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub simulated: Arc<SimulatedProvider>,
    pub providers: Arc<Providers>,
    /// Webhook endpoints one merchant may have.
    pub max_webhook_endpoints: u32,
    /// The plan a merchant created by the operator gets.
    pub default_plan: entity::status::Plan,
    /// When a payment's funds become available.
    pub funds: crate::ledger::FundsPolicy,
    /// How far back an operator's reconciliation run looks.
    pub reconcile_window: std::time::Duration,
    /// Base URL customers reach this gateway at (for checkout links).
    pub public_url: String,
    /// Sends an endpoint's test event at once (judged by `webhook.rules()`, as the worker does).
    pub test_sender: worker::manual::WebhookSender,
    /// Worker settings the API needs: the rotation overlap, a test send's lease and rules.
    pub webhook: worker::settings::WebhookSettings,
    /// Each API key's rate limit unless its merchant has its own.
    pub rate_limit: runtime::token_bucket::Quota,
    /// The rate limits' buckets (Redis, with this gateway's own as a fallback).
    pub limiter: crate::merchants::rate_limits::Limiter,
    /// Each client address's limit on the public routes.
    pub public_rate_limit: runtime::token_bucket::Quota,
    /// Each merchant's plan and month usage as this gateway last read them, for quotas.
    pub quotas: Arc<crate::usage::quotas::Quotas>,
    /// Hands live changes to the open dashboard pages.
    pub live: crate::http::dashboard::hub::LiveHub,
    /// Signs and checks dashboard sessions.
    pub dashboard: crate::merchants::users::SessionKeys,
    /// Checks dashboard passwords, a few at a time.
    pub password_checks: crate::merchants::users::PasswordChecks,
    /// The operator's proxies, whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
    /// SHA-256 of accepted admin tokens.
    pub admin_token_hashes: Arc<RwLock<Vec<String>>>,
}

impl AppState {
    /// Who sent `req`: its peer, or the client its trusted proxies name.
    pub fn client_address(&self, req: &poem::Request) -> Option<std::net::IpAddr> {
        let peer = req.remote_addr().as_socket_addr()?.ip();
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Some(self.trusted_proxies.client(peer, forwarded))
    }

    /// What sending an endpoint's test event at once takes.
    pub fn send_now(&self) -> crate::webhooks::deliveries::SendNow<'_> {
        crate::webhooks::deliveries::SendNow {
            db: &self.db,
            bus: &self.bus,
            cache: &self.cache,
            sender: &self.test_sender,
            rules: self.webhook.rules(),
        }
    }

    /// A manual retry: claims the delivery and makes its attempt now, in the background, so
    /// the merchant's answer does not wait on their receiver (the result arrives as any
    /// attempt does, live on the dashboard). False when it cannot be retried.
    pub async fn retry_now(
        &self,
        delivery_id: &entity::ids::DeliveryId,
    ) -> Result<bool, sea_orm::DbErr> {
        use crate::webhooks::deliveries::{claim_for_retry, send_claimed};
        if !claim_for_retry(&self.db, delivery_id, self.webhook.one_shot_lease()).await? {
            return Ok(false);
        }
        let (state, id) = (self.clone(), delivery_id.clone());
        tokio::spawn(async move {
            // On failure the claim's lease runs out and the worker's sweep sends it.
            if let Err(e) = send_claimed(&state.send_now(), &id).await {
                tracing::warn!(error = %e, delivery_id = %id, "a manual retry could not be sent now; the sweep sends it");
            }
        });
        Ok(true)
    }

    /// What the services that commit and then act take.
    pub fn deps(&self) -> crate::core::deps::Deps {
        crate::core::deps::Deps {
            db: self.db.clone(),
            bus: self.bus.clone(),
            cache: self.cache.clone(),
            effects: self.effects.clone(),
        }
    }

    /// What the payment services take.
    pub fn payment_deps(&self) -> crate::payments::service::Deps<'_> {
        crate::payments::service::Deps {
            db: &self.db,
            providers: &self.providers,
            funds: self.funds,
        }
    }
}
