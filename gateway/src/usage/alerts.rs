//! The daily usage check: each merchant's month against its plan's limits, alerted once at
//! each of [`THRESHOLDS`] (a log-store warning and a `usage.threshold_reached` event).

use chrono::{DateTime, Utc};
use entity::ids::MerchantId;
use entity::merchants;
use runtime::usage;
use sea_orm::{DbErr, EntityTrait};

use super::quotas::limits;

/// The shares of a limit (in percent) a month's usage is alerted at, once each.
pub const THRESHOLDS: [i64; 2] = [80, 95];

/// One alert raised by [`check_thresholds_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerted {
    pub merchant_id: MerchantId,
    pub metric: &'static str,
    pub threshold_percent: i64,
    pub used: i64,
    pub limit: i64,
}

/// The daily check: flushes pending counts, then for every merchant with usage this month
/// and every limited metric, the first time its usage reaches 80 % and 95 % of the limit
/// (hard or soft), records a warning in the merchant's log store and commits a
/// `usage.threshold_reached` event for its subscribed endpoints, in one transaction with the
/// row that makes the alert once-only.
pub async fn check_thresholds_once(
    deps: &crate::core::deps::Deps,
    now: DateTime<Utc>,
) -> Result<Vec<Alerted>, DbErr> {
    use entity::event::EventType;
    use entity::{usage_alerts, usage_counters};
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, QuerySelect, TransactionTrait};

    if let Err(e) = usage::flush(&deps.db, &deps.cache).await {
        tracing::warn!(error = %e, "usage flush before the threshold check failed; checking what is flushed");
    }
    let month = usage::month_of(now);
    let merchant_ids: Vec<MerchantId> = usage_counters::Entity::find()
        .select_only()
        .column(usage_counters::Column::MerchantId)
        .distinct()
        .filter(usage_counters::Column::Month.eq(&month))
        .into_tuple()
        .all(&deps.db)
        .await?;
    let mut alerted = Vec::new();
    for merchant_id in merchant_ids {
        let Some(merchant) = merchants::Entity::find_by_id(merchant_id.clone())
            .one(&deps.db)
            .await?
        else {
            continue;
        };
        let used = usage::of_merchant(&deps.db, &deps.cache, &merchant_id, &month).await?;
        for l in limits(merchant.plan, merchant.usage_limits.as_ref()) {
            let value = used.get(l.metric).copied().unwrap_or(0);
            if l.limit <= 0 {
                continue;
            }
            for threshold in THRESHOLDS {
                if value.saturating_mul(100) < l.limit.saturating_mul(threshold) {
                    continue;
                }
                let txn = deps.db.begin().await?;
                let claimed = usage_alerts::Entity::insert(usage_alerts::ActiveModel {
                    merchant_id: Set(merchant_id.clone()),
                    month: Set(month.clone()),
                    metric: Set(l.metric.to_string()),
                    threshold_percent: Set(i32::try_from(threshold).unwrap_or(i32::MAX)),
                    created_at: Set(now),
                })
                .on_conflict(
                    OnConflict::columns([
                        usage_alerts::Column::MerchantId,
                        usage_alerts::Column::Month,
                        usage_alerts::Column::Metric,
                        usage_alerts::Column::ThresholdPercent,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
                if claimed == 0 {
                    // Alerted before (or by another gateway just now).
                    txn.rollback().await?;
                    continue;
                }
                let data = serde_json::json!({
                    "object": "usage_threshold",
                    "month": month,
                    "metric": l.metric,
                    "threshold_percent": threshold,
                    "limit": l.limit,
                    "used": value,
                    "plan": merchant.plan,
                    "hard": l.hard,
                });
                // Usage is the account's, not a mode's: both worlds hear of it, so a merchant
                // still in test mode is warned as well as one that went live.
                let scopes = [
                    entity::ids::Scope::new(merchant_id.clone(), false),
                    entity::ids::Scope::new(merchant_id.clone(), true),
                ];
                let message = format!(
                    "{} reached {threshold} % of the {} plan's monthly limit: {value} of {}{}",
                    l.metric,
                    merchant.plan,
                    l.limit,
                    if l.hard {
                        "; at the limit, requests are refused until the month ends"
                    } else {
                        ""
                    }
                );
                for scope in &scopes {
                    crate::webhooks::events::record(
                        &txn,
                        scope,
                        EventType::UsageThresholdReached,
                        None,
                        data.clone(),
                        None,
                    )
                    .await?;
                    let warning = runtime::log_store::Entry {
                        scope: Some(scope),
                        level: entity::status::LogLevel::Warning,
                        source: "usage",
                        message: &message,
                        context: Some(data.clone()),
                        request_id: None,
                    };
                    runtime::log_store::write(&txn, &deps.bus, warning).await?;
                }
                txn.commit().await?;
                for scope in &scopes {
                    deps.effects.events_committed(scope).await;
                }
                alerted.push(Alerted {
                    merchant_id: merchant_id.clone(),
                    metric: l.metric,
                    threshold_percent: threshold,
                    used: value,
                    limit: l.limit,
                });
            }
        }
    }
    Ok(alerted)
}
