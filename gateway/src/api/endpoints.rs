//! `/v1/webhook_endpoints`.

use entity::ids::EndpointId;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use sea_orm::DatabaseTransaction;

use super::dto::{
    CreateEndpointRequest, DeletedObject, UpdateEndpointRequest, WebhookEndpoint,
    WebhookEndpointList,
};
use super::{ApiTags, path_id, valid_idempotency_key};
use crate::api::auth::ApiKey;
use crate::api::error::ApiError;
use crate::error::{OrNotFound, ServiceError};
use crate::idempotency::Idempotent;
use crate::pagination::Page;
use crate::state::AppState;
use crate::webhooks::endpoints;
use crate::webhooks::endpoints::{EndpointUpdate, NewEndpoint};

#[derive(Default)]
pub struct EndpointsApi;

#[derive(ApiResponse)]
pub enum CreatedEndpoint {
    /// The endpoint, with its signing secret (shown only here, and in idempotent replays).
    #[oai(status = 201)]
    Created(
        Json<WebhookEndpoint>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::WebhookEndpoints")]
impl EndpointsApi {
    /// Create a webhook endpoint
    #[oai(
        path = "/webhook_endpoints",
        method = "post",
        operation_id = "create_webhook_endpoint"
    )]
    async fn create(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<CreateEndpointRequest>,
    ) -> Result<CreatedEndpoint, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let new = NewEndpoint::try_from(body.0)?;
        let request = Idempotent {
            merchant_id: &merchant.merchant_id,
            key,
            operation: "POST /v1/webhook_endpoints",
            fingerprint: new.fingerprint(),
        };
        let max = state.max_webhook_endpoints;
        // Stored without its secret: idempotency records are not a second home for secrets.
        let outcome = request
            .run(
                &state.db,
                async |txn: &DatabaseTransaction| -> Result<WebhookEndpoint, ServiceError> {
                    let e = endpoints::create(txn, &merchant.merchant_id, new, max).await?;
                    Ok(WebhookEndpoint::from_model(&e, false))
                },
            )
            .await?;
        let mut view = outcome.value;
        // The secret is shown with the creation (and its replays), read from the endpoint.
        if let Some(id) = EndpointId::parse(&view.id)
            && let Some(e) = endpoints::get(&state.db, &merchant.merchant_id, &id).await?
        {
            view.secret = Some(e.secret);
        }
        Ok(CreatedEndpoint::Created(
            Json(view),
            outcome.replayed.then(|| "true".to_string()),
        ))
    }

    /// List webhook endpoints
    #[oai(
        path = "/webhook_endpoints",
        method = "get",
        operation_id = "list_webhook_endpoints"
    )]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
    ) -> Result<Json<WebhookEndpointList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let (rows, has_more) = endpoints::list(&state.db, &merchant.merchant_id, &page).await?;
        let data = rows
            .iter()
            .map(|e| WebhookEndpoint::from_model(e, false))
            .collect();
        Ok(Json(WebhookEndpointList {
            object: "list".into(),
            data,
            has_more,
        }))
    }

    /// Retrieve a webhook endpoint
    #[oai(
        path = "/webhook_endpoints/:id",
        method = "get",
        operation_id = "get_webhook_endpoint"
    )]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<WebhookEndpoint>, ApiError> {
        let e = endpoints::get(
            &state.db,
            &merchant.merchant_id,
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        .or_not_found("webhook endpoint", &id.0)?;
        Ok(Json(WebhookEndpoint::from_model(&e, false)))
    }

    /// Update a webhook endpoint (url, enabled_events, description, status)
    #[oai(
        path = "/webhook_endpoints/:id",
        method = "patch",
        operation_id = "update_webhook_endpoint"
    )]
    async fn update(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        body: Json<UpdateEndpointRequest>,
    ) -> Result<Json<WebhookEndpoint>, ApiError> {
        let change = EndpointUpdate::try_from(body.0)?;
        let existing = endpoints::get(
            &state.db,
            &merchant.merchant_id,
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        .or_not_found("webhook endpoint", &id.0)?;
        let e = endpoints::update(&state.db, existing, change).await?;
        Ok(Json(WebhookEndpoint::from_model(&e, false)))
    }

    /// Delete a webhook endpoint
    #[oai(
        path = "/webhook_endpoints/:id",
        method = "delete",
        operation_id = "delete_webhook_endpoint"
    )]
    async fn delete(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<DeletedObject>, ApiError> {
        if !endpoints::delete(
            &state.db,
            &merchant.merchant_id,
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        {
            return Err(ApiError::not_found("webhook endpoint", &id.0));
        }
        Ok(Json(DeletedObject {
            id: id.0,
            object: "webhook_endpoint".into(),
            deleted: true,
        }))
    }
}
