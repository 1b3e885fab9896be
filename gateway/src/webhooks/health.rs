//! How a scope's webhooks are doing: the share of attempts answered 2xx and their p95
//! latency over a window, and the deliveries waiting now (how many, and the oldest's age).

use chrono::{DateTime, Duration, Utc};
use entity::ids::Scope;
use entity::status::DeliveryStatus;
use entity::{webhook_attempts, webhook_deliveries};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// Attempts the figures are computed over at most (the latest of the window).
const MOST_ATTEMPTS: u64 = 10_000;

/// The webhook side of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookHealth {
    pub attempts: u64,
    /// Share of attempts answered 2xx, when there were attempts.
    pub success_rate: Option<f64>,
    pub p95_ms: Option<i64>,
    /// Deliveries waiting to be sent (pending or being sent), and the oldest one's age.
    pub backlog: u64,
    pub oldest_waiting: Option<Duration>,
}

/// How a scope's webhooks did from `since` (to `until`, or now), and what waits now.
pub async fn health<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<WebhookHealth, DbErr> {
    let in_window = webhook_attempts::Entity::find()
        .filter(scope.of::<webhook_attempts::Entity>())
        .filter(webhook_attempts::Column::CreatedAt.gte(since));
    let in_window = match until {
        Some(until) => in_window.filter(webhook_attempts::Column::CreatedAt.lt(until)),
        None => in_window,
    };
    let attempts: Vec<(Option<i32>, i64)> = in_window
        .order_by_desc(webhook_attempts::Column::CreatedAt)
        .limit(MOST_ATTEMPTS)
        .select_only()
        .column(webhook_attempts::Column::HttpStatus)
        .column(webhook_attempts::Column::DurationMs)
        .into_tuple()
        .all(db)
        .await?;
    let waiting = || {
        webhook_deliveries::Entity::find()
            .filter(scope.of::<webhook_deliveries::Entity>())
            .filter(
                webhook_deliveries::Column::Status
                    .is_in([DeliveryStatus::Pending, DeliveryStatus::Processing]),
            )
    };
    let backlog = waiting().count(db).await?;
    let oldest = waiting()
        .order_by_asc(webhook_deliveries::Column::CreatedAt)
        .one(db)
        .await?;
    let ok = attempts
        .iter()
        .filter(|(status, _)| status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    let mut durations: Vec<i64> = attempts.iter().map(|(_, d)| *d).collect();
    Ok(WebhookHealth {
        attempts: attempts.len() as u64,
        success_rate: (!attempts.is_empty()).then(|| ok as f64 / attempts.len() as f64),
        p95_ms: percentile(&mut durations, 0.95),
        backlog,
        oldest_waiting: oldest.map(|d| now - d.created_at),
    })
}

/// The nearest-rank percentile (`q` in 0–1) of `values`, which it sorts.
pub fn percentile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn the_95th_percentile_is_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 0.95), Some(95));
        assert_eq!(percentile(&mut [7], 0.95), Some(7));
        assert_eq!(percentile(&mut [], 0.95), None);
        let mut few = vec![10, 1000, 20];
        assert_eq!(percentile(&mut few, 0.95), Some(1000));
    }
}
