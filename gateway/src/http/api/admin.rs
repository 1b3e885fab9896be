//! `/v1/admin`: operator endpoints, behind the admin token.

use entity::event::rfc3339;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use entity::ids::MerchantId;
use poem_openapi::param::Path;
use poem_openapi::types::MaybeUndefined;

use super::{ApiTags, path_id};
use crate::http::api::auth::AdminToken;
use crate::http::api::dto::{
    CreateMerchantRequest, CreatedMerchant, Merchant, Text, UpdateMerchantRequest,
};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::merchants;
use crate::merchants::rate_limits;
use crate::payouts::{self, Payout};

#[derive(Default)]
pub struct AdminApi;

#[derive(ApiResponse)]
pub enum MerchantCreated {
    /// The merchant and its API key (shown once).
    #[oai(status = 201)]
    Created(Json<CreatedMerchant>),
}

#[derive(ApiResponse)]
pub enum MerchantUpdated {
    /// The merchant as it now is.
    #[oai(status = 200)]
    Ok(Json<Merchant>),
}

/// What an operator found at the provider about a payout whose answer was lost.
#[derive(poem_openapi::Object)]
#[oai(deny_unknown_fields)]
pub struct ResolvePayoutRequest {
    /// `not_received`: the provider has no such payout (it fails; its amount is available
    /// again). `received`: the provider has it, under `provider_reference`.
    pub outcome: Text,
    /// The provider's id for the payout (with `received` only).
    pub provider_reference: Option<Text>,
}

impl TryFrom<ResolvePayoutRequest> for payouts::Resolution {
    type Error = ApiError;

    fn try_from(r: ResolvePayoutRequest) -> Result<Self, ApiError> {
        let reference = r
            .provider_reference
            .map(|t| t.0.trim().to_string())
            .filter(|t| !t.is_empty());
        match (r.outcome.0.as_str(), reference) {
            ("not_received", None) => Ok(payouts::Resolution::NotSent),
            ("received", Some(reference)) if reference.len() <= 255 => {
                Ok(payouts::Resolution::SentAs(reference))
            }
            ("not_received", Some(_)) => Err(ApiError::invalid(
                "provider_reference",
                "provider_reference_unexpected",
                "A payout the provider never received has no provider_reference.",
            )),
            ("received", _) => Err(ApiError::invalid(
                "provider_reference",
                "provider_reference_invalid",
                "provider_reference (1 to 255 characters) is the provider's id for the payout.",
            )),
            _ => Err(ApiError::invalid(
                "outcome",
                "outcome_invalid",
                "outcome is received or not_received.",
            )),
        }
    }
}

/// An operator's correction of a merchant's available balance.
#[derive(poem_openapi::Object)]
#[oai(deny_unknown_fields)]
pub struct CreateAdjustmentRequest {
    /// The mode whose balance it corrects.
    pub livemode: bool,
    /// ISO 4217 code.
    pub currency: Text,
    /// In minor units, not zero: positive credits the merchant, negative debits it.
    pub amount: i64,
    /// Why (1 to 500 characters): shown to the merchant on the balance transaction.
    pub description: Text,
}

#[derive(ApiResponse)]
pub enum AdjustmentCreated {
    /// The balance transaction it made.
    #[oai(status = 201)]
    Created(Json<crate::ledger::objects::BalanceTransaction>),
}

/// A limit as sent: absent keeps the stored one, `null` the default, a number must fit.
fn limit_change(
    param: &str,
    sent: MaybeUndefined<i64>,
    stored: Option<u32>,
) -> Result<Option<u32>, ApiError> {
    match sent {
        MaybeUndefined::Undefined => Ok(stored),
        MaybeUndefined::Null => Ok(None),
        MaybeUndefined::Value(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(
                    param,
                    "rate_limit_invalid",
                    format!("{param} must be a positive integer."),
                )
            }),
    }
}

#[OpenApi(prefix_path = "/v1/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// Create a merchant with a sandbox API key
    ///
    /// Creates a merchant and its first API key (`sk_test_…`), shown once in this answer and
    /// stored only as a hash. Admin token only.
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
        crate::core::error::plain_text("name", &name)?;
        let created = merchants::create(&state.db, &name, state.default_plan).await?;
        Ok(MerchantCreated::Created(Json(CreatedMerchant {
            id: created.merchant.id.to_string(),
            object: crate::core::object_names::MerchantName::default(),
            name: created.merchant.name,
            api_key: created.api_key,
            created_at: rfc3339(created.merchant.created_at),
        })))
    }

    /// Change a merchant's API rate limit
    ///
    /// Sets the requests per second and the burst each of the merchant's API keys is allowed,
    /// or (`null`) returns them to the server's defaults. Every gateway applies the change to
    /// the next request.
    #[oai(
        path = "/merchants/:id",
        method = "patch",
        operation_id = "update_merchant"
    )]
    async fn update_merchant(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        /// The merchant's id (`mer_…`).
        id: Path<String>,
        body: Json<UpdateMerchantRequest>,
    ) -> Result<MerchantUpdated, ApiError> {
        let merchant_id = path_id::<MerchantId>(&id.0, "merchant")?;
        let stored = merchants::get(&state.db, &merchant_id).await?;
        // The plan and limits are checked before anything is written.
        let plan = match body.0.plan.as_ref() {
            None => None,
            Some(p) => Some(entity::status::Plan::parse(p.0.as_str()).ok_or_else(|| {
                ApiError::invalid(
                    "plan",
                    "plan_invalid",
                    format!("plan is {}.", entity::status::Plan::names()),
                )
            })?),
        };
        let usage_limits = match &body.0.usage_limits {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(limits) => {
                let limits = serde_json::json!(limits);
                crate::usage::quotas::valid_custom_limits(&limits).map_err(|reason| {
                    ApiError::invalid("usage_limits", "usage_limits_invalid", reason)
                })?;
                Some(Some(limits))
            }
        };
        let stored = merchants::MerchantRateLimit::of(&stored);
        let wanted = merchants::MerchantRateLimit {
            per_second: limit_change(
                "rate_limit_per_second",
                body.0.rate_limit_per_second,
                stored.per_second,
            )?,
            burst: limit_change("rate_limit_burst", body.0.rate_limit_burst, stored.burst)?,
        };
        let quota = rate_limits::effective(state.rate_limit, wanted);
        rate_limits::quota(quota.per_second, quota.burst).map_err(|reason| {
            ApiError::invalid(
                "rate_limit_burst",
                "rate_limit_invalid",
                format!("{reason}."),
            )
        })?;
        let mut merchant =
            merchants::set_rate_limit(&state.db, &state.cache, &merchant_id, wanted).await?;
        if plan.is_some() || usage_limits.is_some() {
            merchant = merchants::set_plan(&state.db, merchant, plan, usage_limits).await?;
            state.quotas.forget(&merchant_id);
        }
        Ok(MerchantUpdated::Ok(Json(Merchant {
            id: merchant.id.to_string(),
            object: crate::core::object_names::MerchantName::default(),
            name: merchant.name,
            rate_limit_per_second: merchant.rate_limit_per_second.map(i64::from),
            rate_limit_burst: merchant.rate_limit_burst.map(i64::from),
            plan: merchant.plan.to_string(),
            usage_limits: merchant
                .usage_limits
                .as_ref()
                .and_then(|l| serde_json::from_value(l.clone()).ok()),
            created_at: rfc3339(merchant.created_at),
        })))
    }

    /// Check the ledger's invariants
    ///
    /// Verifies, over the whole ledger, that every balance transaction's entries sum to zero,
    /// that each transaction's amount is what its entries moved, and that every stored balance
    /// is the sum of its entries. Violations are listed (and counted in
    /// `ledger_invariant_violations_total`). Admin token only.
    #[oai(path = "/ledger/check", method = "get", operation_id = "check_ledger")]
    async fn check_ledger(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
    ) -> Result<Json<crate::ledger::check::Report>, ApiError> {
        let report = crate::ledger::check::run(&state.db).await?;
        state.metrics.ledger_checks.inc();
        state
            .metrics
            .ledger_violations
            .inc_by(report.violations.len() as u64);
        Ok(Json(report))
    }

    /// Adjust a merchant's balance
    ///
    /// Credits (positive `amount`) or debits (negative) the merchant's available balance in
    /// one mode and currency, against the ledger's `adjustments` account, as a balance
    /// transaction of type `adjustment` the merchant sees with your `description`. It may make
    /// the balance negative (a debit the merchant owes). Admin token only.
    #[oai(
        path = "/merchants/:id/adjustments",
        method = "post",
        operation_id = "create_adjustment"
    )]
    async fn adjust(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        /// The merchant's id (`mer_…`).
        id: Path<String>,
        body: Json<CreateAdjustmentRequest>,
    ) -> Result<AdjustmentCreated, ApiError> {
        let merchant_id = path_id::<MerchantId>(&id.0, "merchant")?;
        merchants::get(&state.db, &merchant_id).await?;
        let b = body.0;
        let currency = entity::money::Currency::parse(&b.currency.0).ok_or_else(|| {
            ApiError::invalid(
                "currency",
                "currency_invalid",
                format!("'{}' is not a currency Payrail handles.", b.currency.0),
            )
        })?;
        if b.amount == 0 {
            return Err(ApiError::invalid(
                "amount",
                "amount_invalid",
                "amount is a non-zero integer in minor units.",
            ));
        }
        let description = b.description.0.trim();
        if description.is_empty() || description.chars().count() > 500 {
            return Err(ApiError::invalid(
                "description",
                "description_invalid",
                "description is 1 to 500 characters.",
            ));
        }
        crate::core::error::plain_text("description", description)?;
        let scope = entity::ids::Scope::new(merchant_id, b.livemode);
        let txn = sea_orm::TransactionTrait::begin(&state.db).await?;
        let made = crate::ledger::adjust(&txn, &scope, currency.code(), b.amount, description)
            .await
            .map_err(crate::core::error::ServiceError::from)?;
        sea_orm::TransactionSession::commit(txn).await?;
        Ok(AdjustmentCreated::Created(Json(
            crate::ledger::objects::BalanceTransaction::from(&made),
        )))
    }

    /// Settle a payout whose provider's answer was lost
    ///
    /// A payout stays `pending`, its amount held, when its provider's answer was lost (a
    /// timeout): it may have been paid, so it is never sent again. Once you have looked at the
    /// provider: `not_received` fails it (its amount is available again); `received` with the
    /// provider's id takes that id if the provider confirms it is this payout, and moves it
    /// as the provider says. Any other payout is a 409. Admin token only.
    #[oai(
        path = "/payouts/:id/resolve",
        method = "post",
        operation_id = "resolve_payout"
    )]
    async fn resolve_payout(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        /// The payout's id (`po_…`).
        id: Path<String>,
        body: Json<ResolvePayoutRequest>,
    ) -> Result<Json<Payout>, ApiError> {
        let payout_id = path_id::<entity::ids::PayoutId>(&id.0, "payout")?;
        let resolution = payouts::Resolution::try_from(body.0)?;
        let resolved =
            payouts::resolve(&state.db, &state.providers, &payout_id, resolution).await?;
        let moved = state.effects.apply(resolved, None).await;
        Ok(Json(Payout::from(&moved)))
    }
}
