//! What every handler can reach, built once at start-up.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sea_orm::DatabaseConnection;
use worker::bus::EventBus;
use worker::metrics::DeliveryMetrics;

use crate::cache::Cache;
use crate::metrics::ApiMetrics;
use crate::relay::Relay;
use crate::sandbox::SimulatedProvider;
use crate::services::merchants::AuthedMerchant;
use crate::services::payments::recent_cache_key;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub cache: Cache,
    pub relay: Relay,
    pub metrics: Arc<ApiMetrics>,
    /// Present when the worker runs in this process (embedded mode).
    pub delivery_metrics: Option<Arc<DeliveryMetrics>>,
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub simulated: Arc<SimulatedProvider>,
    pub providers: Arc<crate::providers::Providers>,
    /// Base URL customers reach this gateway at (for checkout links).
    pub public_url: String,
    /// SHA-256 of accepted admin tokens.
    pub admin_token_hashes: Arc<RwLock<Vec<String>>>,
    /// Key hash → merchant: keys are immutable once issued, so a hit never goes stale.
    pub key_cache: Arc<RwLock<HashMap<String, AuthedMerchant>>>,
}

impl AppState {
    /// After a commit that changed a merchant's payments: publish its events soon and drop
    /// the merchant's cached recent list.
    pub async fn after_payment_change(&self, merchant_id: &str) {
        self.relay.notify();
        self.cache.delete(&recent_cache_key(merchant_id)).await;
    }

    /// Records a payment that just failed in its merchant's log store.
    pub async fn log_payment_failure(
        &self,
        payment: &crate::api::dto::Payment,
        merchant_id: &str,
        request_id: Option<&str>,
    ) {
        worker::logs::record(
            &self.db,
            worker::logs::Entry {
                merchant_id: Some(merchant_id),
                level: worker::logs::Level::Error,
                source: "payments",
                message: &format!(
                    "Payment {} failed: {}",
                    payment.id,
                    payment.failure_code.as_deref().unwrap_or("unknown")
                ),
                context: Some(serde_json::json!({
                    "payment_id": payment.id,
                    "provider": payment.provider,
                    "failure_code": payment.failure_code,
                    "failure_message": payment.failure_message,
                })),
                request_id,
            },
        )
        .await;
        self.cache
            .delete(&crate::services::logs::recent_cache_key(merchant_id))
            .await;
    }
}
