//! `/v1/webhook_deliveries`.

use entity::ids::{DeliveryId, EndpointId, EventId, Scope};
use entity::status::DeliveryStatus;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::{ApiTags, path_id, query_id};
use crate::core::error::OrNotFound;
use crate::core::pagination::Page;
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::{WebhookDelivery, WebhookDeliveryList};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::webhooks::deliveries::{self, DeliveryFilter};

#[derive(Default)]
pub struct DeliveriesApi;

/// A delivery with its whole attempt history.
pub(super) async fn detail(
    state: &AppState,
    scope: &Scope,
    raw_id: &str,
) -> Result<WebhookDelivery, ApiError> {
    let id = path_id::<DeliveryId>(raw_id, "webhook delivery")?;
    let d = deliveries::get(&state.db, scope, &id)
        .await?
        .or_not_found("webhook delivery", raw_id)?;
    let attempts = deliveries::attempts(&state.db, &d.id).await?;
    Ok(WebhookDelivery::from_model(&d, Some(&attempts)))
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::WebhookDeliveries")]
impl DeliveriesApi {
    /// List webhook deliveries, newest first
    ///
    /// Every webhook sent (or still to send), newest first, with its status and last answer.
    /// Filter by `status`, `endpoint_id` and `event_id`.
    #[oai(
        path = "/webhook_deliveries",
        method = "get",
        operation_id = "list_webhook_deliveries"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// `pending`, `processing`, `succeeded` or `failed`.
        status: Query<Option<String>>,
        endpoint_id: Query<Option<String>>,
        event_id: Query<Option<String>>,
    ) -> Result<Json<WebhookDeliveryList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let status = match status.0.as_deref() {
            None => None,
            Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "status_invalid",
                    format!("Unknown delivery status '{s}'."),
                )
            })?),
        };
        let endpoint_id = query_id::<EndpointId>("endpoint_id", endpoint_id.0)?;
        let event_id = query_id::<EventId>("event_id", event_id.0)?;
        let filter = DeliveryFilter {
            status,
            endpoint_id: endpoint_id.as_deref(),
            event_id: event_id.as_deref(),
        };
        let (rows, has_more) =
            deliveries::list(&state.db, &merchant.scope(), filter, &page).await?;
        let data = rows
            .iter()
            .map(|d| WebhookDelivery::from_model(d, None))
            .collect();
        Ok(Json(WebhookDeliveryList {
            object: crate::core::object_names::ListName::default(),
            data,
            has_more,
        }))
    }

    /// Retrieve a delivery with every attempt
    ///
    /// One delivery with every attempt: the status each got, how long it took and the start of
    /// the answer.
    #[oai(
        path = "/webhook_deliveries/:id",
        method = "get",
        operation_id = "get_webhook_delivery"
    )]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<WebhookDelivery>, ApiError> {
        detail(&state, &merchant.scope(), &id.0).await.map(Json)
    }

    /// Retry a failed or pending delivery now, with a fresh set of attempts
    ///
    /// Gives a failed or pending delivery a fresh round of attempts and sends the first one
    /// now (the answer shows it `processing`; its result arrives as any attempt's does). A
    /// delivery being sent or that succeeded answers 409.
    #[oai(
        path = "/webhook_deliveries/:id/retry",
        method = "post",
        operation_id = "retry_webhook_delivery"
    )]
    async fn retry(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<WebhookDelivery>, ApiError> {
        let d = deliveries::get(
            &state.db,
            &merchant.scope(),
            &path_id::<DeliveryId>(&id.0, "webhook delivery")?,
        )
        .await?
        .or_not_found("webhook delivery", &id.0)?;
        if !state.retry_now(&d.id).await? {
            return Err(ApiError::conflict(
                "delivery_not_retryable",
                format!(
                    "A {} delivery cannot be retried; only failed or pending ones can.",
                    d.status
                ),
            ));
        }
        detail(&state, &merchant.scope(), &id.0).await.map(Json)
    }
}
