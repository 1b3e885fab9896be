//! Metered counts waiting in the cache (Redis, or embedded mode's tally) and their flush to
//! PostgreSQL, with the marks that let a reader see each count exactly once while it moves.

use std::collections::HashMap;

use redis::AsyncCommands as _;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use chrono::Utc;
use entity::ids::Scope;
use entity::usage_counters;

use super::{Counts, counted_as, month_of, scope_of};
use crate::cache::Cache;

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
    pub(super) started: i64,
    pub(super) ended: i64,
}

impl FlushMarks {
    pub(super) fn settled(&self) -> bool {
        self.started == self.ended
    }
}

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
/// (`MOST_READ_WAIT`) until they expire.
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
        self.settle_request(Some(scope), counts, &[]).await;
    }

    /// The end of an API request: its usage counted (when it had a merchant) and the keys it
    /// dropped ([`Cache::gathering_deletes`]) deleted, in one round trip to Redis.
    pub async fn settle_request(
        &self,
        scope: Option<&Scope>,
        counts: &[(&str, i64)],
        dropped: &[String],
    ) {
        let counts: Vec<(&str, i64)> = counts.iter().copied().filter(|(_, n)| *n != 0).collect();
        match scope {
            Some(scope) if !counts.is_empty() => {
                let month = month_of(Utc::now());
                self.add_usage(&counted_as(scope), &month, &counts, dropped)
                    .await;
            }
            _ => {
                for key in dropped {
                    self.delete(key).await;
                }
            }
        }
    }

    /// Adds each `(scope, n)` to one `metric`, summed per scope first: a batch that touched
    /// a few merchants costs one cache call per merchant and mode, not one per item.
    pub async fn count_usage_of_each(
        &self,
        metric: &str,
        counts: impl IntoIterator<Item = (Scope, i64)>,
    ) {
        let mut per_scope: Vec<(Scope, i64)> = Vec::new();
        for (scope, n) in counts {
            match per_scope.iter_mut().find(|(s, _)| *s == scope) {
                Some((_, total)) => *total += n,
                None => per_scope.push((scope, n)),
            }
        }
        for (scope, n) in per_scope {
            self.count_usage(&scope, &[(metric, n)]).await;
        }
    }

    async fn add_usage(
        &self,
        merchant: &str,
        month: &str,
        counts: &[(&str, i64)],
        dropped: &[String],
    ) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = Cache::key(prefix, &pending_key(month, merchant));
                let mut pipe = redis::pipe();
                for dropped in dropped {
                    pipe.del(Cache::key(prefix, dropped)).ignore();
                }
                for (metric, n) in counts {
                    pipe.hincr(&key, *metric, *n).ignore();
                }
                pipe.sadd(Cache::key(prefix, DIRTY), format!("{month}|{merchant}"))
                    .ignore();
                if let Err(e) = crate::cache::bounded(pipe.query_async::<()>(&mut conn)).await {
                    tracing::error!(error = %e, merchant_id = merchant, dropped = dropped.len(), "usage not counted (nor cached keys dropped): the cache failed");
                }
            }
            Cache::Memory(map, _, tally) => {
                let mut map = map.lock().await;
                for dropped in dropped {
                    map.remove(dropped);
                }
                drop(map);
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
    pub(super) async fn usage_flush_marks(
        &self,
        merchant: &str,
        month: &str,
    ) -> Option<FlushMarks> {
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
                cache.add_usage(&merchant, &month, &back, &[]).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::metric;
    use chrono::Utc;
    use entity::ids::MerchantId;

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
}
