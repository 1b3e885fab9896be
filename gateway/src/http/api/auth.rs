//! Authentication: merchants by API key (`Authorization: Bearer sk_test_…`), operators by
//! admin token. Both are compared by SHA-256, so no secret is ever held in comparable form
//! longer than a request and none is logged.

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use subtle::ConstantTimeEq as _;

use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::merchants::rate_limits;
use crate::merchants::{self, AuthedMerchant};
use entity::signature::sha256_hex;

/// A merchant's secret key.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_api_key")]
pub struct ApiKey(pub AuthedMerchant);

async fn check_api_key(req: &Request, bearer: Bearer) -> poem::Result<AuthedMerchant> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let hash = sha256_hex(bearer.token.as_bytes());
    let cache_key = merchants::key_cache_key(&hash);
    let slot = req.extensions().get::<crate::http::request::MerchantSlot>();
    // A key seen before: its cache entry checked and its buckets charged in one round trip.
    let known = state
        .limiter
        .admit_known(state.rate_limit, &hash, &cache_key)
        .await;
    let (merchant, limited) = match known {
        Some(admitted) => admitted,
        None => {
            let merchant = authenticate(state, &hash, &cache_key).await?;
            let limited = rate_limits::admit(&state.limiter, state.rate_limit, &merchant).await;
            (merchant, limited)
        }
    };
    if let Some(slot) = slot {
        slot.set(merchant.scope());
        slot.set_rate_limit(limited);
    }
    if !limited.admission.allowed {
        state.metrics.rate_limited.inc();
        return Err(ApiError::too_many_requests(limited.quota).into());
    }
    if let Err(exceeded) = state
        .quotas
        .admit(
            &state.db,
            &state.cache,
            &merchant.merchant_id,
            runtime::usage::metric::API_REQUESTS,
        )
        .await
    {
        return Err(refuse_quota(state, slot, &exceeded).into());
    }
    Ok(merchant)
}

/// The merchant a key belongs to: from the shared cache (Redis across gateways), else from
/// the database, then cached. Never a process-lifetime map: revoking a key deletes its entry,
/// so it stops working at once on every gateway (the limiter remembers an entry only to check
/// that it is still there).
async fn authenticate(
    state: &AppState,
    hash: &str,
    cache_key: &str,
) -> poem::Result<AuthedMerchant> {
    if let Some(entry) = state.cache.get(cache_key).await
        && let Some(hit) = merchants::AuthedMerchant::from_cached(&entry)
    {
        state.limiter.remember(hash, entry, hit.clone());
        return Ok(hit);
    }
    match merchants::authenticate(&state.db, hash)
        .await
        .map_err(ApiError::from)?
    {
        Some((merchant, expires)) => {
            // A key on its way out (rolled) is not cached: it must stop on time.
            if expires.is_none() {
                let entry = merchant.to_cached();
                state
                    .cache
                    .set(cache_key, &entry, merchants::KEY_CACHE_TTL)
                    .await;
                state.limiter.remember(hash, entry, merchant.clone());
            }
            Ok(merchant)
        }
        None => Err(ApiError::unauthorized("Invalid API key provided.").into()),
    }
}

/// The operator's admin token.
/// The answer to a request over a hard monthly limit: 429 `quota_exceeded` with `Retry-After`
/// (seconds until the month resets), counted in `api_quota_exceeded_total`.
pub fn refuse_quota(
    state: &AppState,
    slot: Option<&crate::http::request::MerchantSlot>,
    exceeded: &crate::usage::quotas::Exceeded,
) -> ApiError {
    state.metrics.quota_exceeded.inc();
    if let Some(slot) = slot {
        slot.set_quota_retry_after((exceeded.resets_at - chrono::Utc::now()).num_seconds());
    }
    ApiError::quota_exceeded(exceeded)
}

#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin_token")]
pub struct AdminToken(pub ());

async fn check_admin_token(req: &Request, bearer: Bearer) -> poem::Result<()> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let presented = sha256_hex(bearer.token.as_bytes());
    let accepted = state
        .admin_token_hashes
        .read()
        .map(|hashes| {
            hashes
                .iter()
                .any(|h| bool::from(h.as_bytes().ct_eq(presented.as_bytes())))
        })
        .unwrap_or(false);
    if accepted {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Invalid admin token.").into())
    }
}
