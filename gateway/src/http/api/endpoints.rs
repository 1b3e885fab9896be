//! `/v1/webhook_endpoints`.

use entity::ids::EndpointId;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use sea_orm::DatabaseTransaction;

use entity::event::rfc3339;

use super::{ApiTags, path_id, valid_idempotency_key};
use crate::core::error::{OrNotFound, ServiceError};
use crate::core::idempotency::Idempotent;
use crate::core::pagination::Page;
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::{
    CreateEndpointRequest, DeletedObject, EndpointRecovery, RecoverRequest, UpdateEndpointRequest,
    WebhookDelivery, WebhookEndpoint, WebhookEndpointList,
};
use crate::http::api::error::ApiError;
use crate::http::api::requests::RecoverWindow;
use crate::http::state::AppState;
use crate::webhooks::deliveries;
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

#[derive(ApiResponse)]
pub enum RotatedSecret {
    /// The endpoint with its new secret (shown only here, and in idempotent replays).
    #[oai(status = 200)]
    Rotated(
        Json<WebhookEndpoint>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum Recovered {
    /// How many failed deliveries were made due again.
    #[oai(status = 200)]
    Recovered(
        Json<EndpointRecovery>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum TestSent {
    /// The test event's delivery, after its first attempt (later ones follow the retry
    /// schedule if it failed).
    #[oai(status = 200)]
    Sent(
        Json<WebhookDelivery>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::WebhookEndpoints")]
impl EndpointsApi {
    /// Create a webhook endpoint
    ///
    /// Registers a URL to receive the event types you name (`["*"]` for all). The answer holds
    /// the signing secret (`whsec_…`), shown only here.
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
            scope: &merchant.scope(),
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
                    let e = endpoints::create(txn, &merchant.scope(), new, max).await?;
                    Ok(WebhookEndpoint::from_model(&e, false))
                },
            )
            .await?;
        let mut view = outcome.value;
        // The secret is shown with the creation (and its replays), read from the endpoint.
        if let Some(id) = EndpointId::parse(&view.id)
            && let Some(e) = endpoints::get(&state.db, &merchant.scope(), &id).await?
        {
            view.secret = Some(e.secret);
        }
        Ok(CreatedEndpoint::Created(
            Json(view),
            outcome.replayed.then(|| "true".to_string()),
        ))
    }

    /// List webhook endpoints
    ///
    /// Your webhook endpoints, newest first. Secrets are not shown.
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
        let (rows, has_more) = endpoints::list(&state.db, &merchant.scope(), &page).await?;
        let data = rows
            .iter()
            .map(|e| WebhookEndpoint::from_model(e, false))
            .collect();
        Ok(Json(WebhookEndpointList {
            object: crate::core::object_names::ListName::default(),
            data,
            has_more,
        }))
    }

    /// Retrieve a webhook endpoint
    ///
    /// One endpoint, with its status and, if disabled, why.
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
            &merchant.scope(),
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        .or_not_found("webhook endpoint", &id.0)?;
        Ok(Json(WebhookEndpoint::from_model(&e, false)))
    }

    /// Update a webhook endpoint (url, enabled_events, description, status)
    ///
    /// Changes the URL, event types, description, status or limits; absent fields stay as they
    /// are. Enabling a disabled endpoint clears its failure streak.
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
            &merchant.scope(),
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        .or_not_found("webhook endpoint", &id.0)?;
        let e = endpoints::update(&state.db, existing, change).await?;
        Ok(Json(WebhookEndpoint::from_model(&e, false)))
    }

    /// Rotate a webhook endpoint's signing secret
    ///
    /// Returns the new secret, once. Until `previous_secret_expires_at`
    /// (`PAYRAIL_WEBHOOK_SECRET_OVERLAP`, 24 h by default) every webhook carries a second
    /// `v1,` signature made with the old secret, so receivers can switch without missing one.
    #[oai(
        path = "/webhook_endpoints/:id/rotate_secret",
        method = "post",
        operation_id = "rotate_webhook_endpoint_secret"
    )]
    async fn rotate_secret(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> Result<RotatedSecret, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let endpoint_id = path_id::<EndpointId>(&id.0, "webhook endpoint")?;
        let request = Idempotent {
            scope: &merchant.scope(),
            key,
            operation: "POST /v1/webhook_endpoints/{id}/rotate_secret",
            fingerprint: endpoint_id.to_string(),
        };
        let overlap = state.webhook.secret_overlap;
        let outcome = request
            .run(
                &state.db,
                async |txn: &DatabaseTransaction| -> Result<WebhookEndpoint, ServiceError> {
                    let e = endpoints::rotate_secret(txn, &merchant.scope(), &endpoint_id, overlap)
                        .await?
                        .or_not_found("webhook endpoint", &endpoint_id)?;
                    Ok(WebhookEndpoint::from_model(&e, false))
                },
            )
            .await?;
        // As with creation, the secret is read from the endpoint, not stored with the replay.
        let mut view = outcome.value;
        if let Some(e) = endpoints::get(&state.db, &merchant.scope(), &endpoint_id).await? {
            view.secret = Some(e.secret);
        }
        Ok(RotatedSecret::Rotated(
            Json(view),
            outcome.replayed.then(|| "true".to_string()),
        ))
    }

    /// Re-send an endpoint's failed deliveries
    ///
    /// Every `failed` delivery to this endpoint created in `[since, until)` becomes due now
    /// with a fresh set of attempts; earlier attempts stay as history. For after an outage.
    #[oai(
        path = "/webhook_endpoints/:id/recover",
        method = "post",
        operation_id = "recover_webhook_endpoint"
    )]
    async fn recover(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<RecoverRequest>,
    ) -> Result<Recovered, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let endpoint_id = path_id::<EndpointId>(&id.0, "webhook endpoint")?;
        let window = RecoverWindow::try_from(body.0)?;
        let request = Idempotent {
            scope: &merchant.scope(),
            key,
            operation: "POST /v1/webhook_endpoints/{id}/recover",
            fingerprint: format!(
                "{endpoint_id}:{}:{}",
                window.since.timestamp_micros(),
                window.until.timestamp_micros()
            ),
        };
        let outcome = request
            .run(
                &state.db,
                async |txn: &DatabaseTransaction| -> Result<EndpointRecovery, ServiceError> {
                    let e = endpoints::get(txn, &merchant.scope(), &endpoint_id)
                        .await?
                        .or_not_found("webhook endpoint", &endpoint_id)?;
                    let e = endpoints::enabled(e)?;
                    let recovered =
                        deliveries::recover(txn, &e.id, window.since, window.until).await?;
                    Ok(EndpointRecovery {
                        object: crate::core::object_names::WebhookEndpointRecoveryName::default(),
                        endpoint_id: e.id.to_string(),
                        since: rfc3339(window.since),
                        until: rfc3339(window.until),
                        recovered,
                    })
                },
            )
            .await?;
        Ok(Recovered::Recovered(
            Json(outcome.value),
            outcome.replayed.then(|| "true".to_string()),
        ))
    }

    /// Send a test event to a webhook endpoint now
    ///
    /// A signed `webhook_endpoint.test` event goes to this endpoint only, whatever it
    /// subscribes to; the answer is its delivery after the first attempt.
    #[oai(
        path = "/webhook_endpoints/:id/test",
        method = "post",
        operation_id = "test_webhook_endpoint"
    )]
    async fn test(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> Result<TestSent, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let endpoint_id = path_id::<EndpointId>(&id.0, "webhook endpoint")?;
        let sent = deliveries::test_endpoint(
            &state.send_now(),
            &merchant.scope(),
            &endpoint_id,
            key,
            state.webhook.one_shot_lease(),
        )
        .await?;
        let delivery = crate::http::api::deliveries::detail(
            &state,
            &merchant.scope(),
            sent.delivery_id.as_str(),
        )
        .await?;
        Ok(TestSent::Sent(
            Json(delivery),
            sent.replayed.then(|| "true".to_string()),
        ))
    }

    /// Delete a webhook endpoint
    ///
    /// Deletes the endpoint: nothing more is sent to it, and deliveries not yet made are
    /// dropped with it.
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
            &merchant.scope(),
            &path_id::<EndpointId>(&id.0, "webhook endpoint")?,
        )
        .await?
        {
            return Err(ApiError::not_found("webhook endpoint", &id.0));
        }
        Ok(Json(DeletedObject {
            id: id.0,
            object: crate::core::object_names::WebhookEndpointName::default(),
            deleted: true,
        }))
    }
}
