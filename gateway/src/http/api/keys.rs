//! `/v1/api_keys`: list, create, roll and revoke the merchant's keys. A secret is shown only
//! in the answer that created it; revoking or rolling drops the key from the shared cache, so
//! every gateway stops accepting it at once (a rolled key at the end of its grace period).
//! Creating a key honours `Idempotency-Key`; a replay names the key without its secret, which
//! is stored nowhere (see [`merchants::create_key_once`]).

use entity::api_keys;
use entity::event::rfc3339;
use entity::ids::ApiKeyId;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, path_id, valid_idempotency_key};
use crate::core::pagination::Page;
use crate::http::api::auth::ApiKey;
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::merchants::{self, KeyManager, key_cache_key};

#[derive(Object)]
pub struct ApiKeyObject {
    pub id: String,
    pub object: crate::core::object_names::ApiKeyName,
    /// The first characters, to recognise the key (`sk_live_AbCd`).
    pub prefix: String,
    /// `true` for `sk_live_` keys (real money), `false` for `sk_test_`.
    pub livemode: bool,
    /// The whole key: only in the answer that created it.
    #[oai(skip_serializing_if_is_none)]
    pub secret: Option<String>,
    pub created_at: String,
    /// A rolled key works until then.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<String>,
}

impl ApiKeyObject {
    fn from_model(k: &api_keys::Model, secret: Option<String>) -> ApiKeyObject {
        ApiKeyObject {
            id: k.id.to_string(),
            object: crate::core::object_names::ApiKeyName::default(),
            prefix: k.prefix.clone(),
            livemode: k.livemode,
            secret,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Object)]
pub struct ApiKeyList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<ApiKeyObject>,
    pub has_more: bool,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// `true` for a live key (real money), `false` for a test key; it must be your key's own
    /// mode, which is the default.
    pub livemode: Option<bool>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct RollApiKeyRequest {
    /// How long the old key keeps working, in seconds (0 to 604800; default 0: it stops now).
    #[oai(validator(minimum(value = "0"), maximum(value = "604800")))]
    pub expires_in: Option<i64>,
}

#[derive(ApiResponse)]
pub enum CreatedKey {
    /// The new key, with its secret (shown only here; a replay names the key without it).
    #[oai(status = 201)]
    Created(
        Json<ApiKeyObject>,
        /// `true` when this answer is a replay of the first request with this key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum RolledKey {
    /// The replacement key, with its secret (shown only here).
    #[oai(status = 201)]
    Created(Json<ApiKeyObject>),
}

#[derive(Default)]
pub struct KeysApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::ApiKeys")]
impl KeysApi {
    /// List API keys, newest first
    ///
    /// The keys of your key's mode (a test key sees test keys, a live key live ones), with
    /// their prefix and dates; page with `limit`, `starting_after` and `ending_before`.
    /// Secrets are never shown again after creation.
    #[oai(path = "/api_keys", method = "get", operation_id = "list_api_keys")]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
    ) -> Result<Json<ApiKeyList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let (keys, has_more) =
            merchants::list_keys(&state.db, &KeyManager::ApiKey(merchant.scope()), &page).await?;
        Ok(Json(ApiKeyList {
            object: crate::core::object_names::ListName::default(),
            data: keys
                .iter()
                .map(|k| ApiKeyObject::from_model(k, None))
                .collect(),
            has_more,
        }))
    }

    /// Create an API key of your key's mode
    ///
    /// Issues a new key. A test key creates test keys only and a live key live ones (403
    /// `livemode_mismatch` otherwise; an owner creates either in the dashboard). At most 50
    /// active keys per mode (422 `api_key_limit_reached`). Its secret is in this answer only:
    /// store it now. With an `Idempotency-Key`, a retry answers the key the first request
    /// created, without its secret (which is stored nowhere): if that first answer was lost,
    /// revoke the key it names and create another.
    #[oai(path = "/api_keys", method = "post", operation_id = "create_api_key")]
    async fn create(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        body: Json<CreateApiKeyRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> Result<CreatedKey, ApiError> {
        let idempotency_key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let livemode = body.0.livemode.unwrap_or(merchant.livemode);
        let made =
            merchants::create_key_once(&state.db, &merchant.scope(), livemode, idempotency_key)
                .await?;
        Ok(CreatedKey::Created(
            Json(ApiKeyObject::from_model(&made.key, made.secret)),
            made.replayed.then(|| "true".to_string()),
        ))
    }

    /// Roll an API key: a new key now, the old one valid for `expires_in` seconds
    ///
    /// Issues a replacement key of the same mode and keeps the old one working for `expires_in`
    /// seconds (0: it stops now), so a deployment can switch without downtime.
    #[oai(
        path = "/api_keys/:id/roll",
        method = "post",
        operation_id = "roll_api_key"
    )]
    async fn roll(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        body: Json<RollApiKeyRequest>,
    ) -> Result<RolledKey, ApiError> {
        let id = path_id::<ApiKeyId>(&id.0, "api_key")?;
        let grace = std::time::Duration::from_secs(
            u64::try_from(body.0.expires_in.unwrap_or(0)).unwrap_or(0),
        );
        let (new, secret, old) =
            merchants::roll_key(&state.db, &KeyManager::ApiKey(merchant.scope()), &id, grace)
                .await?;
        state.cache.delete(&key_cache_key(&old.key_hash)).await;
        Ok(RolledKey::Created(Json(ApiKeyObject::from_model(
            &new,
            Some(secret),
        ))))
    }

    /// Revoke an API key at once
    ///
    /// Stops the key on every gateway at once. A revoked key cannot be restored: create or roll
    /// another.
    #[oai(
        path = "/api_keys/:id/revoke",
        method = "post",
        operation_id = "revoke_api_key"
    )]
    async fn revoke(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<ApiKeyObject>, ApiError> {
        let id = path_id::<ApiKeyId>(&id.0, "api_key")?;
        let key =
            merchants::revoke_key(&state.db, &KeyManager::ApiKey(merchant.scope()), &id).await?;
        state.cache.delete(&key_cache_key(&key.key_hash)).await;
        Ok(Json(ApiKeyObject::from_model(&key, None)))
    }
}
