//! The overview's figures over the last 24 hours, read from the database in a few grouped
//! queries, and the SVG chart of payments per hour drawn from them on the server.
//!
//! Both backends are served: the hour of a row is computed by PostgreSQL or SQLite itself,
//! as text (`2026-11-23T18`), so rows are grouped where they are.

use chrono::{DateTime, Duration, Timelike, Utc};
use entity::ids::Scope;
use entity::payment_status::PaymentStatus;
use entity::status::DeliveryStatus;
use entity::{payments, webhook_attempts, webhook_deliveries};
use maud::{Markup, html};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

/// Hours the overview looks back.
pub const HOURS: i64 = 24;
/// Attempts the webhook figures are computed over at most (the latest of the window).
const MOST_ATTEMPTS: u64 = 10_000;

/// One hour of payments, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hour {
    /// `2026-11-23T18`, UTC.
    pub hour: String,
    pub succeeded: u64,
    pub failed: u64,
    /// Pending, processing, cancelled, refunded.
    pub other: u64,
}

/// A currency's succeeded volume, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub currency: String,
    pub amount: i64,
    pub payments: i64,
}

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

/// Everything the overview shows besides the alerts and the latest payments.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub hours: Vec<Hour>,
    /// Succeeded among the window's payments that reached a final state.
    pub success_rate: Option<f64>,
    pub volumes: Vec<Volume>,
    pub webhooks: WebhookHealth,
}

fn hour_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H").to_string()
}

/// The SQL of "the UTC hour of `created_at`, as text", per backend.
fn hour_of_created_at(backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Sqlite => Expr::cust("strftime('%Y-%m-%dT%H', created_at)"),
        _ => Expr::cust(
            "to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24')",
        ),
    }
}

pub async fn figures<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<Figures, DbErr> {
    let first_hour = (now - Duration::hours(HOURS - 1))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let in_window = || {
        payments::Entity::find()
            .filter(scope.of::<payments::Entity>())
            .filter(payments::Column::CreatedAt.gte(first_hour))
    };
    let per_hour: Vec<(String, String, i64)> = in_window()
        .select_only()
        .column_as(hour_of_created_at(db.get_database_backend()), "hour")
        .column(payments::Column::Status)
        .column_as(payments::Column::Id.count(), "n")
        .group_by(Expr::col("hour"))
        .group_by(payments::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut hours: Vec<Hour> = (0..HOURS)
        .map(|i| Hour {
            hour: hour_key(first_hour + Duration::hours(i)),
            ..Hour::default()
        })
        .collect();
    let (mut succeeded, mut finished) = (0u64, 0u64);
    for (hour, status, n) in per_hour {
        let n = u64::try_from(n).unwrap_or(0);
        let status = PaymentStatus::parse(&status);
        if let Some(bucket) = hours.iter_mut().find(|h| h.hour == hour) {
            match status {
                Some(PaymentStatus::Succeeded) => bucket.succeeded += n,
                Some(PaymentStatus::Failed) => bucket.failed += n,
                _ => bucket.other += n,
            }
        }
        match status {
            Some(PaymentStatus::Succeeded) => {
                succeeded += n;
                finished += n;
            }
            Some(PaymentStatus::Failed | PaymentStatus::Cancelled) => finished += n,
            _ => {}
        }
    }
    // SUM of a bigint is a numeric in PostgreSQL: cast back, a day's volume fits.
    let volumes: Vec<(String, i64, i64)> = in_window()
        .filter(payments::Column::Status.eq(PaymentStatus::Succeeded))
        .select_only()
        .column(payments::Column::Currency)
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "amount")
        .column_as(payments::Column::Id.count(), "n")
        .group_by(payments::Column::Currency)
        .order_by_asc(payments::Column::Currency)
        .into_tuple()
        .all(db)
        .await?;
    Ok(Figures {
        hours,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        volumes: volumes
            .into_iter()
            .map(|(currency, amount, payments)| Volume {
                currency,
                amount,
                payments,
            })
            .collect(),
        webhooks: webhook_health(db, scope, now).await?,
    })
}

async fn webhook_health<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<WebhookHealth, DbErr> {
    let attempts: Vec<(Option<i32>, i64)> = webhook_attempts::Entity::find()
        .filter(scope.of::<webhook_attempts::Entity>())
        .filter(webhook_attempts::Column::CreatedAt.gte(now - Duration::hours(HOURS)))
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

/// A share as the page shows it: `97.5 %`, or `—` when nothing was measured.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("{:.1} %", s * 100.0),
        None => "—".into(),
    }
}

const SUCCEEDED_COLOUR: &str = "#1a7f37";
const FAILED_COLOUR: &str = "#a40000";
const OTHER_COLOUR: &str = "#8a8f98";

/// Payments per hour as stacked bars (succeeded, failed, the rest), drawn here as SVG: no
/// script, no library. Each bar segment carries its numbers, and the description says the
/// totals, for screen readers.
pub fn payments_chart(hours: &[Hour]) -> Markup {
    const WIDTH: u64 = 720;
    const HEIGHT: u64 = 180;
    const AXIS: u64 = 22;
    let plot = HEIGHT - AXIS;
    let slot = WIDTH / (hours.len().max(1) as u64);
    let tallest = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.other)
        .max()
        .unwrap_or(0)
        .max(1);
    let total = |f: fn(&Hour) -> u64| hours.iter().map(f).sum::<u64>();
    let busiest = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.other)
        .max()
        .unwrap_or(0);
    let described = format!(
        "Last {} hours: {} succeeded, {} failed, {} other; busiest hour {busiest} payments.",
        hours.len(),
        total(|h| h.succeeded),
        total(|h| h.failed),
        total(|h| h.other),
    );
    // Each hour's segments, bottom up: (x, y, height, status, count, colour, hour).
    let mut segments = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        let x = i as u64 * slot + 2;
        let mut top = plot;
        for (status, count, colour) in [
            ("succeeded", h.succeeded, SUCCEEDED_COLOUR),
            ("failed", h.failed, FAILED_COLOUR),
            ("other", h.other, OTHER_COLOUR),
        ] {
            if count > 0 {
                let height = (plot * count / tallest).max(1);
                top = top.saturating_sub(height);
                segments.push((x, top, height, status, count, colour, h.hour.as_str()));
            }
        }
    }
    html! {
        svg #payments-chart role="img" aria-labelledby="payments-chart-title payments-chart-desc"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%" xmlns="http://www.w3.org/2000/svg" {
            title #payments-chart-title { "Payments per hour, by outcome" }
            desc #payments-chart-desc { (described) }
            line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) stroke="#ccc" {}
            @for (x, y, height, status, count, colour, hour) in &segments {
                rect x=(x) y=(y) width=(slot - 4) height=(height) fill=(colour)
                    data-hour=(hour) data-status=(status) data-count=(count) {
                    title { (hour) ":00 UTC · " (count) " " (status) }
                }
            }
            @for (i, h) in hours.iter().enumerate().step_by(6) {
                text x=(i as u64 * slot + 2) y=(HEIGHT - 6) font-size="12" fill="#555" { (h.hour.get(11..).unwrap_or("")) ":00" }
            }
        }
        p.legend {
            span style={ "color:" (SUCCEEDED_COLOUR) } { "■" } " succeeded "
            span style={ "color:" (FAILED_COLOUR) } { "■" } " failed "
            span style={ "color:" (OTHER_COLOUR) } { "■" } " pending, processing, cancelled, refunded"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_95th_percentile_is_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 0.95), Some(95));
        assert_eq!(percentile(&mut [7], 0.95), Some(7));
        assert_eq!(percentile(&mut [], 0.95), None);
        let mut few = vec![10, 1000, 20];
        assert_eq!(percentile(&mut few, 0.95), Some(1000));
    }

    #[test]
    fn the_chart_stacks_each_hour_in_proportion_and_describes_the_totals() {
        let hours = vec![
            Hour {
                hour: "2026-11-23T10".into(),
                succeeded: 3,
                failed: 1,
                other: 0,
            },
            Hour {
                hour: "2026-11-23T11".into(),
                ..Hour::default()
            },
        ];
        let svg = payments_chart(&hours).into_string();
        assert!(
            svg.contains(r#"data-hour="2026-11-23T10" data-status="succeeded" data-count="3""#)
        );
        assert!(svg.contains(r#"data-status="failed" data-count="1""#));
        assert!(
            !svg.contains(r#"data-hour="2026-11-23T11""#),
            "an empty hour draws no bar"
        );
        assert!(svg.contains("3 succeeded, 1 failed, 0 other"));
        // The tallest bar fills the plot: 3/4 and 1/4 of 158 px.
        assert!(
            svg.contains(r#"height="118""#) && svg.contains(r#"height="39""#),
            "{svg}"
        );
    }
}
