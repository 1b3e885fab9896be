//! `/v1/balance` and `/v1/balance_transactions`: the ledger as the merchant sees it, in the
//! key's mode (see `crate::ledger`).

use entity::ids::BalanceTransactionId;
use entity::status::BalanceTransactionType;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::{ApiTags, path_id};
use crate::core::error::OrNotFound;
use crate::core::pagination::{CreatedRange, Page};
use crate::http::api::auth::ApiKey;
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::ledger::objects::{Balance, BalanceTransaction, BalanceTransactionList};
use crate::ledger::{self, Filter};

#[derive(Default)]
pub struct BalanceApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Balance")]
impl BalanceApi {
    /// Retrieve your balance
    ///
    /// What you can refund or pay out now (`available`) and what is not settled yet
    /// (`pending`), per currency, in your key's mode. Every amount is the sum of your balance
    /// transactions.
    #[oai(path = "/balance", method = "get", operation_id = "get_balance")]
    async fn balance(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
    ) -> Result<Json<Balance>, ApiError> {
        let rows = ledger::balances(&state.db, &merchant.scope()).await?;
        Ok(Json(Balance::of(merchant.livemode, &rows)))
    }

    /// List balance transactions, newest first
    ///
    /// Every movement of your money in your key's mode: payments' funds (`charge`), refunds
    /// and payouts (taken when they are made), and their release when they fail. Filter by
    /// `type`, `source` (a payment, refund or payout id), `currency` and `created[gte|lte]`.
    #[oai(
        path = "/balance_transactions",
        method = "get",
        operation_id = "list_balance_transactions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// Only transactions of this type.
        #[oai(name = "type")]
        kind: Query<Option<String>>,
        /// Only the transactions of this payment (`pay_…`), refund (`re_…`) or payout (`po_…`).
        source: Query<Option<String>>,
        /// Only transactions in this currency (ISO 4217).
        currency: Query<Option<String>>,
        /// Only transactions created at or after this time (Unix seconds or RFC 3339).
        #[oai(name = "created[gte]")]
        created_gte: Query<Option<String>>,
        /// Only transactions created at or before this time (Unix seconds or RFC 3339).
        #[oai(name = "created[lte]")]
        created_lte: Query<Option<String>>,
    ) -> Result<Json<BalanceTransactionList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let kind = kind
            .0
            .map(|k| {
                BalanceTransactionType::parse(&k).ok_or_else(|| {
                    ApiError::invalid(
                        "type",
                        "type_invalid",
                        format!("type is {}, not '{k}'.", BalanceTransactionType::names()),
                    )
                })
            })
            .transpose()?;
        let source = source
            .0
            .map(|s| {
                if entity::ids::looks_like_id(&s)
                    && ["pay_", "re_", "po_"].iter().any(|p| s.starts_with(p))
                {
                    Ok(s)
                } else {
                    Err(ApiError::invalid(
                        "source",
                        "source_invalid",
                        "source is a payment (pay_…), refund (re_…) or payout (po_…) id.",
                    ))
                }
            })
            .transpose()?;
        let currency = currency
            .0
            .map(|c| {
                entity::money::Currency::parse(&c)
                    .map(|c| c.code().to_string())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "currency",
                            "currency_invalid",
                            format!("'{c}' is not a currency Payrail handles."),
                        )
                    })
            })
            .transpose()?;
        let filter = Filter {
            kind,
            source,
            currency,
            created: CreatedRange::parse(created_gte.0.as_deref(), created_lte.0.as_deref())?,
        };
        let (rows, has_more) = ledger::list(&state.db, &merchant.scope(), &filter, &page).await?;
        Ok(Json(BalanceTransactionList {
            object: crate::core::object_names::ListName::default(),
            data: rows.iter().map(BalanceTransaction::from).collect(),
            has_more,
        }))
    }

    /// Retrieve a balance transaction
    ///
    /// One movement of your money, in your key's mode (another mode's is a 404).
    #[oai(
        path = "/balance_transactions/:id",
        method = "get",
        operation_id = "get_balance_transaction"
    )]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<BalanceTransaction>, ApiError> {
        let txn_id = path_id::<BalanceTransactionId>(&id.0, "balance transaction")?;
        let t = ledger::get(&state.db, &merchant.scope(), &txn_id)
            .await?
            .or_not_found("balance transaction", &id.0)?;
        Ok(Json(BalanceTransaction::from(&t)))
    }
}
