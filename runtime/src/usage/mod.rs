//! Usage metering, per merchant, mode and calendar month (UTC): counted on the hot path in the cache
//! (one Redis round trip: `HINCRBY`s and an `SADD`, or a map in embedded mode), and moved to
//! PostgreSQL by [`flush`] every `PAYRAIL_USAGE_FLUSH_INTERVAL`.
//!
//! What Redis holds survives a gateway restart; in embedded mode a crash loses at most the
//! last interval (a clean stop flushes). A flush takes each merchant's pending counts
//! atomically (a script reads and deletes them), so several gateways flushing at once never
//! count twice; if the database write then fails, the counts go back to Redis.
//!
//! Between a flush's take and its commit the counts are in neither place, so a reader that
//! simply added the two would see too little for a moment. Each flush of a merchant's month
//! therefore marks its start (in the take itself) and its end (after the commit, or after the
//! counts went back): [`of_scope`] reads the marks before the database and again, atomically
//! with the pending counts, after it, and reads again if a flush was under way or ran in
//! between (a sequence lock, shared by every gateway through Redis).
//!
//! Payments created and their volume are not metered at all: they are counted from the
//! payments table when read ([`of_scope`], [`of_month`]), so they are exact by construction. A
//! metered count is taken after its work commits, and a gateway killed in between loses it (the
//! fleet test saw one payment in 1,846 go uncounted, and a quota admit that many more).
//!
//! Test and live are counted apart, so a merchant sees each world's usage; plans limit the
//! account, so quotas add the two ([`of_merchant`]).

mod derived;
mod pending;

use std::collections::HashMap;

use chrono::{DateTime, Datelike as _, Utc};
use entity::ids::{MerchantId, Scope};
use entity::{payments, usage_counters};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::cache::Cache;
pub use derived::is_derived;
use derived::{add_payments, payments_in_month};
pub use pending::{FlushMarks, Tally, flush};

/// The metrics counted. Payment volume is counted per currency, as `volume:EUR`.
pub mod metric {
    pub const API_REQUESTS: &str = "api_requests";
    pub const REQUEST_BYTES: &str = "request_bytes";
    pub const RESPONSE_BYTES: &str = "response_bytes";
    pub const PAYMENTS_CREATED: &str = "payments_created";
    pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries";
    pub const WEBHOOK_ATTEMPTS: &str = "webhook_attempts";
    pub const LOG_BYTES: &str = "log_bytes";
    /// The prefix of the per-currency volume metrics, in minor units.
    pub const VOLUME_PREFIX: &str = "volume:";

    /// The counters every usage report lists, volume aside.
    pub const ALL: [&str; 7] = [
        API_REQUESTS,
        REQUEST_BYTES,
        RESPONSE_BYTES,
        PAYMENTS_CREATED,
        WEBHOOK_DELIVERIES,
        WEBHOOK_ATTEMPTS,
        LOG_BYTES,
    ];
}

/// A calendar month, UTC: `2026-11`.
pub fn month_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// Whether `s` is a month as the API takes it (`YYYY-MM`, month 01–12).
pub fn is_month(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 7
        && bytes[4] == b'-'
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[5..].iter().all(u8::is_ascii_digit)
        && matches!(s[5..].parse::<u32>(), Ok(1..=12))
}

/// Whether a read that saw `before` ahead of the database and `after` with the pending counts
/// saw every count exactly once. Unknown marks (the cache failed) cannot be improved on.
fn read_was_consistent(before: Option<FlushMarks>, after: Option<FlushMarks>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => before.settled() && before == after,
        _ => true,
    }
}

/// How a merchant's mode is named in the cache: `mer_…:live` or `mer_…:test`.
fn counted_as(scope: &Scope) -> String {
    format!("{}:{}", scope.merchant_id, scope.mode())
}

/// A cache name back to the merchant and mode; a name from before modes were counted apart
/// (no suffix) is test's.
fn scope_of(counted: &str) -> Scope {
    match counted.rsplit_once(':') {
        Some((merchant, "live")) => Scope::new(MerchantId::from_trusted(merchant), true),
        Some((merchant, "test")) => Scope::test(MerchantId::from_trusted(merchant)),
        _ => Scope::test(MerchantId::from_trusted(counted)),
    }
}

/// Counts of one merchant and month.
pub type Counts = HashMap<String, i64>;

/// How long a read waits for flushes to let it see every count once; past it, the last read is
/// taken as it is. A flush takes milliseconds: one under way for this long had its flusher
/// die (its marks stay unequal until they expire), and waiting longer would not help.
const MOST_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The metered part of a merchant's month in one mode: what the database holds plus what
/// waits in the cache, each count exactly once (see the module's note on flush marks).
async fn metered<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    scope: &Scope,
    month: &str,
) -> Result<Counts, DbErr> {
    let counted = counted_as(scope);
    let started = std::time::Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let before = cache.usage_flush_marks(&counted, month).await;
        let mut counts: Counts = Counts::new();
        for row in usage_counters::Entity::find()
            .filter(scope.of::<usage_counters::Entity>())
            .filter(usage_counters::Column::Month.eq(month))
            .all(db)
            .await?
        {
            if !is_derived(&row.metric) {
                *counts.entry(row.metric).or_default() += row.value;
            }
        }
        let (pending, after) = cache.pending_usage(&counted, month).await;
        for (metric, n) in pending {
            if !is_derived(&metric) {
                *counts.entry(metric).or_default() += n;
            }
        }
        if read_was_consistent(before, after) {
            return Ok(counts);
        }
        if started.elapsed() >= MOST_READ_WAIT {
            tracing::debug!(merchant_id = %scope.merchant_id, "usage read while a flush never ended; the counts may be short");
            return Ok(counts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            (2 << tries.min(4)).min(20),
        ))
        .await;
    }
}

/// A merchant's month in one mode: the metered counts, and the payments created with their
/// volume.
pub async fn of_scope<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    scope: &Scope,
    month: &str,
) -> Result<Counts, DbErr> {
    let mut counts = metered(db, cache, scope, month).await?;
    for (_, currency, n, volume) in
        payments_in_month(db, scope.of::<payments::Entity>(), month).await?
    {
        add_payments(&mut counts, n, &currency, volume);
    }
    Ok(counts)
}

/// A merchant's month, both modes together: what its plan limits. The payments of both modes
/// are read in one query.
pub async fn of_merchant<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    merchant_id: &MerchantId,
    month: &str,
) -> Result<Counts, DbErr> {
    let mut counts = Counts::new();
    for livemode in [false, true] {
        let scope = Scope::new(merchant_id.clone(), livemode);
        for (metric, n) in metered(db, cache, &scope, month).await? {
            *counts.entry(metric).or_default() += n;
        }
    }
    let mine = sea_orm::Condition::all().add(payments::Column::MerchantId.eq(merchant_id.as_str()));
    for (_, currency, n, volume) in payments_in_month(db, mine, month).await? {
        add_payments(&mut counts, n, &currency, volume);
    }
    Ok(counts)
}

/// Every merchant's month as the database holds it (flushed counts, both modes together),
/// for operators.
pub async fn of_month<C: ConnectionTrait>(
    db: &C,
    month: &str,
) -> Result<Vec<(MerchantId, Counts)>, DbErr> {
    let mut by_merchant: std::collections::BTreeMap<String, (MerchantId, Counts)> =
        Default::default();
    for row in usage_counters::Entity::find()
        .filter(usage_counters::Column::Month.eq(month))
        .all(db)
        .await?
    {
        if is_derived(&row.metric) {
            continue;
        }
        by_merchant
            .entry(row.merchant_id.to_string())
            .or_insert_with(|| (row.merchant_id.clone(), Counts::new()))
            .1
            .entry(row.metric)
            .and_modify(|v| *v += row.value)
            .or_insert(row.value);
    }
    for (merchant_id, currency, n, volume) in
        payments_in_month(db, sea_orm::Condition::all(), month).await?
    {
        let counts = &mut by_merchant
            .entry(merchant_id.to_string())
            .or_insert_with(|| (merchant_id.clone(), Counts::new()))
            .1;
        add_payments(counts, n, &currency, volume);
    }
    Ok(by_merchant.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months_and_parse_strictly() {
        let t = DateTime::parse_from_rfc3339("2026-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(month_of(t), "2026-12");
        assert!(is_month("2026-01") && is_month("1999-12"));
        for bad in [
            "2026-13", "2026-00", "2026-1", "26-01", "2026/01", "2026-011", "abcd-01",
        ] {
            assert!(!is_month(bad), "{bad}");
        }
    }

    #[test]
    fn a_read_is_consistent_only_when_no_flush_ran_across_it() {
        let marks = |started, ended| Some(FlushMarks { started, ended });
        assert!(read_was_consistent(marks(2, 2), marks(2, 2)));
        assert!(
            !read_was_consistent(marks(3, 2), marks(3, 2)),
            "one in transit"
        );
        assert!(
            !read_was_consistent(marks(2, 2), marks(3, 3)),
            "one ran between"
        );
        assert!(
            !read_was_consistent(marks(2, 2), marks(3, 2)),
            "one started between"
        );
        assert!(read_was_consistent(None, marks(1, 1)), "the cache failed");
    }

    #[test]
    fn cache_names_carry_the_mode_and_older_ones_are_test() {
        let live = Scope::new(MerchantId::from_trusted("mer_1"), true);
        assert_eq!(scope_of(&counted_as(&live)), live);
        assert_eq!(
            scope_of("mer_2"),
            Scope::test(MerchantId::from_trusted("mer_2"))
        );
    }
}
