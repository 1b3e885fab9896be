//! `/v1/usage` (a merchant's own) and `/v1/admin/usage` (every merchant's, for operators):
//! metered usage per calendar month (UTC). See `runtime::usage` for how it is counted.

use entity::money::Currency;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use runtime::usage::{self, Counts, metric};

use super::ApiTags;
use crate::http::api::auth::{AdminToken, ApiKey};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;

#[derive(Default)]
pub struct UsageApi;

/// One currency's payment volume.
#[derive(Object)]
pub struct CurrencyVolume {
    pub currency: Currency,
    /// Created payments' amounts, in the currency's minor unit.
    pub amount: i64,
}

/// A merchant's usage in one month.
#[derive(Object)]
pub struct Usage {
    pub object: crate::core::object_names::UsageName,
    pub merchant_id: String,
    /// The mode counted (your key's); absent in the operators' listing, which adds both.
    pub livemode: Option<bool>,
    /// The calendar month, UTC: `YYYY-MM`.
    pub month: String,
    /// Authenticated API requests.
    pub api_requests: i64,
    /// Bytes of those requests' bodies (their `Content-Length`).
    pub request_bytes: i64,
    /// Bytes of the answers' bodies.
    pub response_bytes: i64,
    pub payments_created: i64,
    /// Created payments' amounts per currency.
    pub payment_volume: Vec<CurrencyVolume>,
    /// Webhook deliveries created (one per event and endpoint).
    pub webhook_deliveries: i64,
    /// HTTP attempts made to deliver them.
    pub webhook_attempts: i64,
    /// Bytes of the log entries you wrote (message and context).
    pub log_bytes: i64,
}

/// Usage of every merchant with any in the month.
#[derive(Object)]
pub struct UsageList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<Usage>,
    pub has_more: bool,
}

impl Usage {
    fn of(merchant_id: &str, livemode: Option<bool>, month: &str, counts: &Counts) -> Usage {
        let get = |name: &str| counts.get(name).copied().unwrap_or(0);
        let mut payment_volume: Vec<CurrencyVolume> = counts
            .iter()
            .filter_map(|(name, amount)| {
                name.strip_prefix(metric::VOLUME_PREFIX)
                    .map(|currency| CurrencyVolume {
                        currency: Currency::stored(currency),
                        amount: *amount,
                    })
            })
            .collect();
        payment_volume.sort_by(|a, b| a.currency.code().cmp(b.currency.code()));
        Usage {
            object: crate::core::object_names::UsageName::default(),
            merchant_id: merchant_id.to_string(),
            livemode,
            month: month.to_string(),
            api_requests: get(metric::API_REQUESTS),
            request_bytes: get(metric::REQUEST_BYTES),
            response_bytes: get(metric::RESPONSE_BYTES),
            payments_created: get(metric::PAYMENTS_CREATED),
            payment_volume,
            webhook_deliveries: get(metric::WEBHOOK_DELIVERIES),
            webhook_attempts: get(metric::WEBHOOK_ATTEMPTS),
            log_bytes: get(metric::LOG_BYTES),
        }
    }
}

/// The month asked for (`YYYY-MM`), or this one.
fn month(asked: Option<&str>) -> Result<String, ApiError> {
    match asked {
        None => Ok(usage::month_of(chrono::Utc::now())),
        Some(m) if usage::is_month(m) => Ok(m.to_string()),
        Some(_) => Err(ApiError::invalid(
            "month",
            "month_invalid",
            "month is a calendar month like 2026-11.",
        )),
    }
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Usage")]
impl UsageApi {
    /// Your usage in a month
    ///
    /// What you used in a calendar month (UTC) in your key's mode, counted as it happens: API
    /// requests and their bytes, payments created and their volume per currency, webhook
    /// deliveries and attempts, and log-store bytes. The current month by default. (A plan's
    /// limits count both modes together.)
    #[oai(path = "/usage", method = "get", operation_id = "get_usage")]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        /// The calendar month, `YYYY-MM` (UTC); this month when absent.
        month: Query<Option<String>>,
    ) -> Result<Json<Usage>, ApiError> {
        let month = self::month(month.0.as_deref())?;
        let counts = usage::of_scope(&state.db, &state.cache, &merchant.scope(), &month).await?;
        Ok(Json(Usage::of(
            merchant.merchant_id.as_str(),
            Some(merchant.livemode),
            &month,
            &counts,
        )))
    }
}

#[derive(Default)]
pub struct AdminUsageApi;

#[OpenApi(prefix_path = "/v1/admin", tag = "ApiTags::Admin")]
impl AdminUsageApi {
    /// Every merchant's usage in a month
    ///
    /// Usage of every merchant that had any in the calendar month (UTC), as last flushed to
    /// the database (`PAYRAIL_USAGE_FLUSH_INTERVAL`, 10 s by default, behind).
    #[oai(path = "/usage", method = "get", operation_id = "list_usage")]
    async fn list(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        /// The calendar month, `YYYY-MM` (UTC); this month when absent.
        month: Query<Option<String>>,
    ) -> Result<Json<UsageList>, ApiError> {
        let month = self::month(month.0.as_deref())?;
        let data = usage::of_month(&state.db, &month)
            .await?
            .iter()
            .map(|(merchant_id, counts)| Usage::of(merchant_id.as_str(), None, &month, counts))
            .collect();
        Ok(Json(UsageList {
            object: crate::core::object_names::ListName::default(),
            data,
            has_more: false,
        }))
    }
}
