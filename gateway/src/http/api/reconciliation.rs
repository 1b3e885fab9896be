//! `/v1/reconciliation_items` (a merchant's own, in its key's mode) and the operators'
//! `/v1/admin/reconciliation*`: the differences the reconciliation with the providers found
//! (see `crate::reconciliation`).

use entity::ids::ReconciliationItemId;
use entity::status::{Provider, ReconciliationStatus};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::{ApiTags, path_id};
use crate::core::pagination::Page;
use crate::http::api::auth::{AdminToken, ApiKey};
use crate::http::api::dto::Text;
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::reconciliation::objects::{ReconciliationItem, ReconciliationItemList};
use crate::reconciliation::{self, Filter, Summary};

#[derive(Default)]
pub struct ReconciliationApi;

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct ResolveItemRequest {
    /// What was done about it (1 to 1000 characters), kept on the item.
    pub resolution: Text,
}

fn filter(status: Option<String>, provider: Option<String>) -> Result<Filter, ApiError> {
    let status = status
        .map(|s| {
            ReconciliationStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "status_invalid",
                    format!("status is {}.", ReconciliationStatus::names()),
                )
            })
        })
        .transpose()?;
    let provider = provider
        .map(|p| {
            Provider::parse(&p).ok_or_else(|| {
                ApiError::invalid(
                    "provider",
                    "provider_invalid",
                    format!("provider is {}.", Provider::names()),
                )
            })
        })
        .transpose()?;
    Ok(Filter { status, provider })
}

fn list_of(rows: &[entity::reconciliation_items::Model], has_more: bool) -> ReconciliationItemList {
    ReconciliationItemList {
        object: crate::core::object_names::ListName::default(),
        data: rows.iter().map(ReconciliationItem::from).collect(),
        has_more,
    }
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Reconciliation")]
impl ReconciliationApi {
    /// List reconciliation items, newest first
    ///
    /// Differences the daily reconciliation found between Payrail's records of your money and
    /// your providers' reports, in your key's mode: a payment Payrail counts paid that the
    /// provider has no charge for, another status, amount or refunded total, or a success the
    /// provider reported after the payment was called over. Filter by `status`.
    #[oai(
        path = "/reconciliation_items",
        method = "get",
        operation_id = "list_reconciliation_items"
    )]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// Only items in this state.
        status: Query<Option<String>>,
    ) -> Result<Json<ReconciliationItemList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let filter = filter(status.0, None)?;
        let (rows, has_more) =
            reconciliation::list(&state.db, Some(&merchant.scope()), &filter, &page).await?;
        Ok(Json(list_of(&rows, has_more)))
    }

    /// List every merchant's reconciliation items
    ///
    /// Both modes, all merchants, newest first; filter by `status` and `provider`. Admin
    /// token only.
    #[oai(
        path = "/admin/reconciliation_items",
        method = "get",
        operation_id = "admin_list_reconciliation_items"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn admin_list(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// Only items in this state.
        status: Query<Option<String>>,
        /// Only items of this provider.
        provider: Query<Option<String>>,
    ) -> Result<Json<ReconciliationItemList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let filter = filter(status.0, provider.0)?;
        let (rows, has_more) = reconciliation::list(&state.db, None, &filter, &page).await?;
        Ok(Json(list_of(&rows, has_more)))
    }

    /// Resolve a reconciliation item
    ///
    /// Records what was done (a refund, a correction with an adjustment, the provider fixed
    /// it). A resolved item stays resolved even if later runs still see the difference.
    /// Admin token only.
    #[oai(
        path = "/admin/reconciliation_items/:id/resolve",
        method = "post",
        operation_id = "resolve_reconciliation_item"
    )]
    async fn resolve(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
        /// The item's id (`rec_…`).
        id: Path<String>,
        body: Json<ResolveItemRequest>,
    ) -> Result<Json<ReconciliationItem>, ApiError> {
        let item_id = path_id::<ReconciliationItemId>(&id.0, "reconciliation item")?;
        let note = body.0.resolution.0.trim().to_string();
        if note.is_empty() || note.chars().count() > 1000 {
            return Err(ApiError::invalid(
                "resolution",
                "resolution_invalid",
                "resolution is 1 to 1000 characters: what was done.",
            ));
        }
        crate::core::error::plain_text("resolution", &note)?;
        let item = reconciliation::resolve(&state.db, &item_id, &note)
            .await?
            .ok_or_else(|| ApiError::not_found("reconciliation item", &id.0))?;
        Ok(Json(ReconciliationItem::from(&item)))
    }

    /// Reconcile now
    ///
    /// Runs the reconciliation at once, as the daily schedule does
    /// (`PAYRAIL_RECONCILE_SCHEDULE`, over `PAYRAIL_RECONCILE_WINDOW`), and says what it did.
    /// Admin token only.
    #[oai(
        path = "/admin/reconciliation/run",
        method = "post",
        operation_id = "run_reconciliation"
    )]
    async fn run(
        &self,
        _admin: AdminToken,
        state: Data<&AppState>,
    ) -> Result<Json<Summary>, ApiError> {
        let summary =
            reconciliation::run_once(&state.db, &state.providers, state.reconcile_window, None)
                .await?
                .unwrap_or_default();
        state.metrics.reconciliation_run("completed");
        Ok(Json(summary))
    }
}
