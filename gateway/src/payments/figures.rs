//! A scope's payment figures, as the dashboard's overview shows them: the last day by hour
//! and outcome, the success rate and the succeeded volume per currency, and the counts by
//! status. Read in a few grouped queries; both backends are served (the hour of a row is
//! computed by PostgreSQL or SQLite itself, as text such as `2026-11-23T18`).

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use entity::ids::Scope;
use entity::payment_status::PaymentStatus;
use entity::payments;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

/// Hours the overview looks back.
pub const HOURS: i64 = 24;

/// One bar of payments (an hour, or a day), by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hour {
    /// `2026-11-23T18` (an hour) or `2026-11-23` (a day), UTC.
    pub hour: String,
    pub succeeded: u64,
    pub failed: u64,
    /// Pending, processing, cancelled, refunded.
    pub other: u64,
}

/// A currency's volume, in minor units: what customers paid (gross: payments that succeeded,
/// refunded since or not) and what was given back of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub currency: String,
    pub gross: i64,
    pub refunded: i64,
    pub payments: i64,
}

impl Volume {
    /// What stays: gross less refunds.
    pub fn net(&self) -> i64 {
        self.gross - self.refunded
    }
}

/// A scope's payments over a window ([`Window`]).
#[derive(Debug, Clone, Default)]
pub struct LastDay {
    pub hours: Vec<Hour>,
    /// Succeeded among the window's payments that succeeded or failed (cancelled ones are
    /// neither).
    pub success_rate: Option<f64>,
    pub volumes: Vec<Volume>,
}

/// The windows the overview offers, each cut into bars: the last 24 hours by hour, the last 7
/// or 30 days by day, or any run of whole UTC days up to [`MOST_DAYS`], by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    #[default]
    Day,
    Week,
    Month,
    /// From the start of `from` to the end of `to` (UTC), both included.
    Dates {
        from: NaiveDate,
        to: NaiveDate,
    },
}

/// The longest run of days a window may cover (a year, leap or not).
pub const MOST_DAYS: i64 = 366;

impl Window {
    /// The windows offered by name.
    pub const PRESETS: [Window; 3] = [Window::Day, Window::Week, Window::Month];

    /// A preset as the overview's `range` says it; `None` for a run of dates.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Window::Day => Some("24h"),
            Window::Week => Some("7d"),
            Window::Month => Some("30d"),
            Window::Dates { .. } => None,
        }
    }

    /// A preset by its name.
    pub fn parse(text: &str) -> Option<Window> {
        Window::PRESETS
            .into_iter()
            .find(|w| w.as_str() == Some(text))
    }

    /// The days from `from` to `to`, both included: not backwards, at most [`MOST_DAYS`].
    pub fn dates(from: NaiveDate, to: NaiveDate) -> Result<Window, String> {
        let days = (to - from).num_days() + 1;
        if days < 1 {
            return Err(format!("from ({from}) must not be after to ({to})."));
        }
        if days > MOST_DAYS {
            return Err(format!(
                "a window covers at most {MOST_DAYS} days, not {days}."
            ));
        }
        Ok(Window::Dates { from, to })
    }

    /// In words: "Last 24 hours", "2026-11-01 to 2026-11-30 (UTC)".
    pub fn title(self) -> String {
        match self {
            Window::Day => "Last 24 hours".into(),
            Window::Week => "Last 7 days".into(),
            Window::Month => "Last 30 days".into(),
            Window::Dates { from, to } if from == to => format!("{from} (UTC)"),
            Window::Dates { from, to } => format!("{from} to {to} (UTC)"),
        }
    }

    fn bars(self) -> i64 {
        match self {
            Window::Day => HOURS,
            Window::Week => 7,
            Window::Month => 30,
            Window::Dates { from, to } => (to - from).num_days() + 1,
        }
    }

    pub fn by_hour(self) -> bool {
        self == Window::Day
    }

    /// Where the window starts and, for a run of dates, where it ends (a preset runs to now).
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let first = self.first_bar(now);
        match self {
            Window::Dates { .. } => (first, Some(first + Duration::days(self.bars()))),
            _ => (first, None),
        }
    }

    /// A bar's key: `2026-11-23T18` (an hour) or `2026-11-23` (a day).
    fn key(self, t: DateTime<Utc>) -> String {
        if self.by_hour() {
            t.format("%Y-%m-%dT%H").to_string()
        } else {
            t.format("%Y-%m-%d").to_string()
        }
    }

    /// The SQL of a row's bar key (the UTC hour or day of `created_at`, as text), per backend.
    fn key_of_created_at(self, backend: DbBackend) -> Expr {
        match (backend, self.by_hour()) {
            (DbBackend::Sqlite, true) => Expr::cust("strftime('%Y-%m-%dT%H', created_at)"),
            (DbBackend::Sqlite, false) => Expr::cust("strftime('%Y-%m-%d', created_at)"),
            (_, true) => Expr::cust(
                "to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24')",
            ),
            (_, false) => Expr::cust(
                "to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
            ),
        }
    }

    /// Where the first bar starts: the hour (or the UTC midnight) `bars - 1` before now's, or
    /// the first date's midnight.
    fn first_bar(self, now: DateTime<Utc>) -> DateTime<Utc> {
        if let Window::Dates { from, .. } = self {
            return from.and_time(chrono::NaiveTime::MIN).and_utc();
        }
        let back = if self.by_hour() {
            now - Duration::hours(self.bars() - 1)
        } else {
            now - Duration::days(self.bars() - 1)
        };
        let hour = if self.by_hour() { back.hour() } else { 0 };
        back.with_hour(hour)
            .and_then(|t| t.with_minute(0))
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(back)
    }

    fn bar_start(self, first: DateTime<Utc>, i: i64) -> DateTime<Utc> {
        if self.by_hour() {
            first + Duration::hours(i)
        } else {
            first + Duration::days(i)
        }
    }
}

/// A scope's payments over `window`, grouped by bar (hour or day) and status where they are.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    now: DateTime<Utc>,
    window: Window,
) -> Result<LastDay, DbErr> {
    let (first_hour, end) = window.bounds(now);
    let in_window = || {
        let found = payments::Entity::find()
            .filter(scope.of::<payments::Entity>())
            .filter(payments::Column::CreatedAt.gte(first_hour));
        match end {
            Some(end) => found.filter(payments::Column::CreatedAt.lt(end)),
            None => found,
        }
    };
    let per_hour: Vec<(String, String, i64)> = in_window()
        .select_only()
        .column_as(window.key_of_created_at(db.get_database_backend()), "hour")
        .column(payments::Column::Status)
        .column_as(payments::Column::Id.count(), "n")
        .group_by(Expr::col("hour"))
        .group_by(payments::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut hours: Vec<Hour> = (0..window.bars())
        .map(|i| Hour {
            hour: window.key(window.bar_start(first_hour, i)),
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
            // A cancellation is the merchant's (or customer's) choice, not a failed payment.
            Some(PaymentStatus::Failed) => finished += n,
            _ => {}
        }
    }
    // SUM of a bigint is a numeric in PostgreSQL: cast back, a day's volume fits.
    let volumes: Vec<(String, i64, i64, i64)> = in_window()
        .filter(payments::Column::Status.is_in([PaymentStatus::Succeeded, PaymentStatus::Refunded]))
        .select_only()
        .column(payments::Column::Currency)
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "gross")
        .column_as(
            Expr::cust("CAST(SUM(amount_refunded) AS BIGINT)"),
            "refunded",
        )
        .column_as(payments::Column::Id.count(), "n")
        .group_by(payments::Column::Currency)
        .order_by_asc(payments::Column::Currency)
        .into_tuple()
        .all(db)
        .await?;
    Ok(LastDay {
        hours,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        volumes: volumes
            .into_iter()
            .map(|(currency, gross, refunded, payments)| Volume {
                currency,
                gross,
                refunded,
                payments,
            })
            .collect(),
    })
}

/// How many payments the scope has in each status, every status listed (0 when none).
pub async fn count_by_status<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
) -> Result<Vec<(PaymentStatus, u64)>, DbErr> {
    let grouped: std::collections::HashMap<String, i64> = payments::Entity::find()
        .select_only()
        .column(payments::Column::Status)
        .column_as(payments::Column::Id.count(), "n")
        .filter(scope.of::<payments::Entity>())
        .group_by(payments::Column::Status)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(PaymentStatus::ALL
        .iter()
        .map(|s| {
            let n = grouped.get(s.as_str()).copied().unwrap_or(0);
            (*s, u64::try_from(n).unwrap_or(0))
        })
        .collect())
}

/// Payments created since `since`, and how many of them failed.
pub async fn failures_since<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    since: DateTime<Utc>,
) -> Result<(u64, u64), DbErr> {
    let recent = || {
        payments::Entity::find()
            .filter(scope.of::<payments::Entity>())
            .filter(payments::Column::CreatedAt.gte(since))
    };
    let total = recent().count(db).await?;
    let failed = recent()
        .filter(payments::Column::Status.eq(PaymentStatus::Failed))
        .count(db)
        .await?;
    Ok((total, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn a_run_of_dates_is_whole_utc_days_forward_and_at_most_a_year() {
        let w = Window::dates(day("2026-11-01"), day("2026-11-30")).expect("a month");
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let (start, end) = w.bounds(now);
        assert_eq!(start.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            end.map(|e| e.to_rfc3339()).as_deref(),
            Some("2026-12-01T00:00:00+00:00"),
            "to is included, whole"
        );
        assert_eq!(w.bars(), 30);
        assert_eq!(w.title(), "2026-11-01 to 2026-11-30 (UTC)");
        assert!(!w.by_hour() && w.as_str().is_none());
        let one = Window::dates(day("2026-11-05"), day("2026-11-05")).expect("one day");
        assert_eq!((one.bars(), one.title().as_str()), (1, "2026-11-05 (UTC)"));
        assert!(Window::dates(day("2026-11-02"), day("2026-11-01")).is_err());
        assert!(
            Window::dates(day("2025-01-01"), day("2026-01-01")).is_ok(),
            "366 days"
        );
        assert!(Window::dates(day("2025-01-01"), day("2026-01-02")).is_err());
        let (start, end) = Window::Day.bounds(now);
        assert_eq!(start.to_rfc3339(), "2026-12-02T11:00:00+00:00");
        assert!(end.is_none(), "a preset runs to now");
    }
}
