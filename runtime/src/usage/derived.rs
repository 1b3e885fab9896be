//! What usage reads from the payments table itself: payments created in a month and their
//! volume per currency. Exact by construction, where a count metered after the commit could
//! be lost to a crash between the two.

use chrono::{DateTime, TimeZone as _, Utc};
use entity::ids::MerchantId;
use entity::payments;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::{Counts, metric};

/// Whether a metric is counted from the payments table rather than metered: payments created
/// and their volume. Rows or pending counts of them from before are ignored.
pub fn is_derived(metric: &str) -> bool {
    metric == metric::PAYMENTS_CREATED || metric.starts_with(metric::VOLUME_PREFIX)
}

/// The first instant of a month (`2026-11`) and of the next, UTC.
fn month_bounds(month: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let year: i32 = month.get(..4)?.parse().ok()?;
    let number: u32 = month.get(5..)?.parse().ok()?;
    let start = Utc.with_ymd_and_hms(year, number, 1, 0, 0, 0).single()?;
    let (next_year, next) = if number == 12 {
        (year + 1, 1)
    } else {
        (year, number + 1)
    };
    let end = Utc.with_ymd_and_hms(next_year, next, 1, 0, 0, 0).single()?;
    Some((start, end))
}

/// Payments created in `month` (by `filter`), by merchant and currency: how many, and their
/// amounts in minor units.
pub(super) async fn payments_in_month<C: ConnectionTrait>(
    db: &C,
    filter: sea_orm::Condition,
    month: &str,
) -> Result<Vec<(MerchantId, String, i64, i64)>, DbErr> {
    let Some((start, end)) = month_bounds(month) else {
        return Ok(Vec::new());
    };
    // SUM of a bigint is a numeric in PostgreSQL: cast back.
    payments::Entity::find()
        .filter(filter)
        .filter(payments::Column::CreatedAt.gte(start))
        .filter(payments::Column::CreatedAt.lt(end))
        .select_only()
        .column(payments::Column::MerchantId)
        .column(payments::Column::Currency)
        .column_as(payments::Column::Id.count(), "n")
        .column_as(
            sea_orm::sea_query::Expr::cust("CAST(SUM(amount) AS BIGINT)"),
            "volume",
        )
        .group_by(payments::Column::MerchantId)
        .group_by(payments::Column::Currency)
        .into_tuple()
        .all(db)
        .await
}

/// Adds payments created and their volume per currency to `counts`.
pub(super) fn add_payments(counts: &mut Counts, n: i64, currency: &str, volume: i64) {
    *counts
        .entry(metric::PAYMENTS_CREATED.to_string())
        .or_default() += n;
    *counts
        .entry(format!("{}{currency}", metric::VOLUME_PREFIX))
        .or_default() += volume;
}
