//! `/v1/admin`: operator endpoints, behind the admin token.

use entity::event::rfc3339;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::dto::{CreateMerchantRequest, CreatedMerchant};
use crate::api::auth::AdminToken;
use crate::api::error::ApiError;
use crate::merchants;
use crate::state::AppState;

#[derive(Default)]
pub struct AdminApi;

#[derive(ApiResponse)]
pub enum MerchantCreated {
    /// The merchant and its API key (shown once).
    #[oai(status = 201)]
    Created(Json<CreatedMerchant>),
}

#[OpenApi(prefix_path = "/v1/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// Create a merchant with a sandbox API key
    #[oai(path = "/merchants", method = "post", operation_id = "create_merchant")]
    async fn create_merchant(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        body: Json<CreateMerchantRequest>,
    ) -> Result<MerchantCreated, ApiError> {
        let name = body.0.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid(
                "name",
                "name_invalid",
                "name must be 1 to 200 characters.",
            ));
        }
        let created = merchants::create(&state.db, &name).await?;
        Ok(MerchantCreated::Created(Json(CreatedMerchant {
            id: created.merchant.id.to_string(),
            object: "merchant".into(),
            name: created.merchant.name,
            api_key: created.api_key,
            created_at: rfc3339(created.merchant.created_at),
        })))
    }
}
