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

use std::collections::HashMap;

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use entity::ids::{MerchantId, Scope};
use entity::{payments, usage_counters};
use redis::AsyncCommands as _;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use crate::cache::Cache;

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
async fn payments_in_month<C: ConnectionTrait>(
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
fn add_payments(counts: &mut Counts, n: i64, currency: &str, volume: i64) {
    *counts
        .entry(metric::PAYMENTS_CREATED.to_string())
        .or_default() += n;
    *counts
        .entry(format!("{}{currency}", metric::VOLUME_PREFIX))
        .or_default() += volume;
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

/// Embedded mode's pending counts: (merchant and mode, month) → metric → value, and the marks
/// of the flushes of each.
#[derive(Default)]
pub struct Tally {
    pending: HashMap<(String, String), HashMap<String, i64>>,
    marks: HashMap<(String, String), FlushMarks>,
}

/// How many flushes of one merchant's month started and ended. Equal, and unchanged across a
/// read, means no count was in transit while it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushMarks {
    started: i64,
    ended: i64,
}

impl FlushMarks {
    fn settled(&self) -> bool {
        self.started == self.ended
    }
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

/// A Redis key of one merchant's pending counts for a month.
fn pending_key(month: &str, merchant: &str) -> String {
    format!("usage:{month}:{merchant}")
}

/// A Redis key of the marks of a merchant's month's flushes (fields `s` and `e`).
fn marks_key(month: &str, merchant: &str) -> String {
    format!("usage:flushes:{month}:{merchant}")
}

const DIRTY: &str = "usage:dirty";

/// How long a flush's marks outlive their last change: a gateway that died between a take and
/// its end leaves them unequal, and readers then give up waiting for a consistent read
/// (`READ_TRIES`) until they expire.
const MARKS_TTL_SECONDS: i64 = 60;

/// Reads and deletes a hash atomically, marking a flush started when there was something.
const TAKE_SCRIPT: &str = r"
local v = redis.call('HGETALL', KEYS[1])
if #v > 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HINCRBY', KEYS[2], 's', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return v";

fn marks_from(fields: &HashMap<String, i64>) -> FlushMarks {
    FlushMarks {
        started: fields.get("s").copied().unwrap_or(0),
        ended: fields.get("e").copied().unwrap_or(0),
    }
}

impl Cache {
    /// Adds `counts` to the merchant's month in its mode. Never fails the work it counts: a
    /// cache error is logged (those counts are lost, and said so).
    pub async fn count_usage(&self, scope: &Scope, counts: &[(&str, i64)]) {
        let counts: Vec<(&str, i64)> = counts.iter().copied().filter(|(_, n)| *n != 0).collect();
        if counts.is_empty() {
            return;
        }
        let month = month_of(Utc::now());
        self.add_usage(&counted_as(scope), &month, &counts).await;
    }

    async fn add_usage(&self, merchant: &str, month: &str, counts: &[(&str, i64)]) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = Cache::key(prefix, &pending_key(month, merchant));
                let mut pipe = redis::pipe();
                for (metric, n) in counts {
                    pipe.hincr(&key, *metric, *n).ignore();
                }
                pipe.sadd(Cache::key(prefix, DIRTY), format!("{month}|{merchant}"))
                    .ignore();
                if let Err(e) = crate::cache::bounded(pipe.query_async::<()>(&mut conn)).await {
                    tracing::error!(error = %e, merchant_id = merchant, "usage not counted: the cache failed");
                }
            }
            Cache::Memory(_, _, tally) => {
                let mut tally = tally.lock().await;
                let entry = tally
                    .pending
                    .entry((merchant.to_string(), month.to_string()))
                    .or_default();
                for (metric, n) in counts {
                    *entry.entry((*metric).to_string()).or_default() += n;
                }
            }
        }
    }

    /// The merchant's month counted but not flushed yet, and, read at the same instant, the
    /// marks of its flushes (`None` when the cache failed).
    pub async fn pending_usage(&self, merchant: &str, month: &str) -> (Counts, Option<FlushMarks>) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hgetall(Cache::key(prefix, &pending_key(month, merchant)))
                    .hgetall(Cache::key(prefix, &marks_key(month, merchant)));
                match crate::cache::bounded(
                    pipe.query_async::<(Counts, HashMap<String, i64>)>(&mut conn),
                )
                .await
                {
                    Ok((counts, marks)) => (counts, Some(marks_from(&marks))),
                    Err(e) => {
                        tracing::warn!(error = %e, "usage read: the cache failed; showing what is flushed");
                        (Counts::new(), None)
                    }
                }
            }
            Cache::Memory(_, _, tally) => {
                let tally = tally.lock().await;
                let key = (merchant.to_string(), month.to_string());
                (
                    tally.pending.get(&key).cloned().unwrap_or_default(),
                    Some(tally.marks.get(&key).copied().unwrap_or_default()),
                )
            }
        }
    }

    /// The marks of a merchant's month's flushes (`None` when the cache failed).
    async fn usage_flush_marks(&self, merchant: &str, month: &str) -> Option<FlushMarks> {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                crate::cache::bounded(
                    redis::cmd("HGETALL")
                        .arg(Cache::key(prefix, &marks_key(month, merchant)))
                        .query_async::<HashMap<String, i64>>(&mut conn),
                )
                .await
                .ok()
                .map(|fields| marks_from(&fields))
            }
            Cache::Memory(_, _, tally) => Some(
                tally
                    .lock()
                    .await
                    .marks
                    .get(&(merchant.to_string(), month.to_string()))
                    .copied()
                    .unwrap_or_default(),
            ),
        }
    }

    /// Marks the end of a flush of a merchant's month that [`Cache::take_usage`] started:
    /// its counts are in the database now, or back in the cache.
    async fn end_usage_flush(&self, merchant: &str, month: &str) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = Cache::key(prefix, &marks_key(month, merchant));
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hincr(&key, "e", 1)
                    .ignore()
                    .expire(&key, MARKS_TTL_SECONDS)
                    .ignore();
                if let Err(e) = crate::cache::bounded(pipe.query_async::<()>(&mut conn)).await {
                    tracing::warn!(error = %e, "usage flush: could not mark its end; readers retry until the marks expire");
                }
            }
            Cache::Memory(_, _, tally) => {
                tally
                    .lock()
                    .await
                    .marks
                    .entry((merchant.to_string(), month.to_string()))
                    .or_default()
                    .ended += 1;
            }
        }
    }

    /// Takes up to `most` merchants' pending counts, removing them from the cache.
    async fn take_usage(&self, most: usize) -> Vec<(String, String, Counts)> {
        match self {
            Cache::Redis { conn, prefix } => {
                static SCRIPT: std::sync::LazyLock<redis::Script> =
                    std::sync::LazyLock::new(|| redis::Script::new(TAKE_SCRIPT));
                let mut conn = conn.clone();
                let members: Vec<String> = match crate::cache::bounded(
                    redis::cmd("SPOP")
                        .arg(Cache::key(prefix, DIRTY))
                        .arg(most)
                        .query_async(&mut conn),
                )
                .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "usage flush: the cache failed");
                        return Vec::new();
                    }
                };
                let mut taken = Vec::new();
                for member in members {
                    let Some((month, merchant)) = member.split_once('|') else {
                        continue;
                    };
                    let counts: Result<HashMap<String, i64>, _> = crate::cache::bounded(
                        SCRIPT
                            .key(Cache::key(prefix, &pending_key(month, merchant)))
                            .key(Cache::key(prefix, &marks_key(month, merchant)))
                            .arg(MARKS_TTL_SECONDS)
                            .invoke_async(&mut conn),
                    )
                    .await;
                    match counts {
                        Ok(counts) if !counts.is_empty() => {
                            taken.push((merchant.to_string(), month.to_string(), counts));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "usage flush: could not take a merchant's counts; they wait for the next flush");
                            let _: Result<(), _> = crate::cache::bounded(
                                conn.sadd(Cache::key(prefix, DIRTY), &member),
                            )
                            .await;
                        }
                    }
                }
                taken
            }
            Cache::Memory(_, _, tally) => {
                let mut tally = tally.lock().await;
                let keys: Vec<_> = tally.pending.keys().take(most).cloned().collect();
                let mut taken = Vec::new();
                for key in keys {
                    if let Some(counts) = tally.pending.remove(&key) {
                        tally.marks.entry(key.clone()).or_default().started += 1;
                        taken.push((key.0, key.1, counts));
                    }
                }
                taken
            }
        }
    }
}

/// Merchants whose counts one flush moves at most (the rest wait for the next).
const FLUSH_BATCH: usize = 1000;

/// Moves pending counts from the cache to the database; returns how many counters it wrote.
/// Counts whose write fails go back to the cache for the next flush.
pub async fn flush<C: ConnectionTrait>(db: &C, cache: &Cache) -> Result<usize, DbErr> {
    let taken = cache.take_usage(FLUSH_BATCH).await;
    let mut written = 0;
    let mut failure = None;
    for (merchant, month, counts) in taken {
        match add_to_database(db, &scope_of(&merchant), &month, &counts).await {
            Ok(n) => written += n,
            Err(e) => {
                let back: Vec<(&str, i64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                cache.add_usage(&merchant, &month, &back).await;
                failure = Some(e);
            }
        }
        cache.end_usage_flush(&merchant, &month).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

async fn add_to_database<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    month: &str,
    counts: &Counts,
) -> Result<usize, DbErr> {
    let now = Utc::now();
    let rows: Vec<usage_counters::ActiveModel> = counts
        .iter()
        .map(|(metric, value)| usage_counters::ActiveModel {
            merchant_id: Set(scope.merchant_id.clone()),
            livemode: Set(scope.livemode),
            month: Set(month.to_string()),
            metric: Set(metric.clone()),
            value: Set(*value),
            updated_at: Set(now),
        })
        .collect();
    let n = rows.len();
    if n == 0 {
        return Ok(0);
    }
    usage_counters::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([
                usage_counters::Column::MerchantId,
                usage_counters::Column::Livemode,
                usage_counters::Column::Month,
                usage_counters::Column::Metric,
            ])
            .value(
                usage_counters::Column::Value,
                Expr::cust("usage_counters.value + excluded.value"),
            )
            .update_column(usage_counters::Column::UpdatedAt)
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(n)
}

/// Reads of one merchant's month that may start again because a flush moved counts meanwhile;
/// the last one is taken as it is (a flusher that died leaves marks unequal until they expire).
const READ_TRIES: u32 = 5;

/// A merchant's month in one mode: what the database holds plus what waits in the cache, each
/// count exactly once (see the module's note on flush marks).
pub async fn of_scope<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    scope: &Scope,
    month: &str,
) -> Result<Counts, DbErr> {
    let counted = counted_as(scope);
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
            for (_, currency, n, volume) in
                payments_in_month(db, scope.of::<payments::Entity>(), month).await?
            {
                add_payments(&mut counts, n, &currency, volume);
            }
            return Ok(counts);
        }
        if tries == READ_TRIES {
            tracing::debug!(merchant_id = %scope.merchant_id, "usage read while a flush never ended; the counts may be short");
            for (_, currency, n, volume) in
                payments_in_month(db, scope.of::<payments::Entity>(), month).await?
            {
                add_payments(&mut counts, n, &currency, volume);
            }
            return Ok(counts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2 << tries)).await;
    }
}

/// A merchant's month, both modes together: what its plan limits.
pub async fn of_merchant<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    merchant_id: &MerchantId,
    month: &str,
) -> Result<Counts, DbErr> {
    let mut counts = Counts::new();
    for livemode in [false, true] {
        let scope = Scope::new(merchant_id.clone(), livemode);
        for (metric, n) in of_scope(db, cache, &scope, month).await? {
            *counts.entry(metric).or_default() += n;
        }
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

    #[tokio::test]
    async fn in_memory_counts_add_up_and_a_take_empties_them() {
        let cache = Cache::memory();
        let m = Scope::test(MerchantId::from_trusted("mer_1"));
        let live = Scope::new(MerchantId::from_trusted("mer_1"), true);
        cache
            .count_usage(
                &m,
                &[(metric::API_REQUESTS, 1), (metric::REQUEST_BYTES, 10)],
            )
            .await;
        cache.count_usage(&m, &[(metric::API_REQUESTS, 1)]).await;
        cache.count_usage(&live, &[(metric::API_REQUESTS, 5)]).await;
        let month = month_of(Utc::now());
        let (pending, marks) = cache.pending_usage("mer_1:test", &month).await;
        assert_eq!(pending[metric::API_REQUESTS], 2);
        assert_eq!(pending[metric::REQUEST_BYTES], 10);
        assert_eq!(marks, Some(FlushMarks::default()));
        assert_eq!(
            cache.pending_usage("mer_1:live", &month).await.0[metric::API_REQUESTS],
            5
        );
        let taken = cache.take_usage(10).await;
        assert_eq!(taken.len(), 2, "a counter per mode");
        let (pending, marks) = cache.pending_usage("mer_1:test", &month).await;
        assert!(pending.is_empty());
        let in_transit = marks.expect("memory never fails");
        assert!(
            !in_transit.settled(),
            "taken, not yet written: {in_transit:?}"
        );
        cache.end_usage_flush("mer_1:test", &month).await;
        let ended = cache.usage_flush_marks("mer_1:test", &month).await;
        assert!(ended.is_some_and(|m| m.settled() && m.started == 1));
        assert!(cache.take_usage(10).await.is_empty());
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
