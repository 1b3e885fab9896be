//! Usage plans and their monthly limits, and the quota check on the hot path.
//!
//! A limit is *hard* (`api_requests`, `payments_created`: over it the API answers 429
//! `quota_exceeded` until the month ends) or *soft* (`webhook_deliveries`, `log_bytes`: only
//! alerted on). `-1` is unlimited.
//!
//! The check must not read the database per request: each gateway keeps, per merchant, a
//! snapshot of the plan and the month's usage (database + cache) for [`SNAPSHOT_TTL`], and
//! adds what it admits meanwhile. Another gateway's traffic is seen at the next snapshot, so
//! across gateways a limit is enforced within a few seconds' worth of traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use entity::ids::MerchantId;
use entity::merchants;
use entity::status::Plan;
use runtime::cache::Cache;
use runtime::usage::{self, Counts, metric};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use std::sync::Mutex;
use tokio::sync::watch;

/// How long a gateway trusts its snapshot of a merchant's plan and usage.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// One metric's monthly limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub metric: &'static str,
    /// `-1`: unlimited.
    pub limit: i64,
    /// Hard limits refuse requests; soft ones only alert.
    pub hard: bool,
}

/// The metrics plans limit, and whether each limit is hard.
pub const LIMITED: [(&str, bool); 4] = [
    (metric::API_REQUESTS, true),
    (metric::PAYMENTS_CREATED, true),
    (metric::WEBHOOK_DELIVERIES, false),
    (metric::LOG_BYTES, false),
];

/// A plan's limits; `custom` reads the merchant's own (absent or `-1`: unlimited).
pub fn limits(plan: Plan, custom: Option<&serde_json::Value>) -> Vec<Limit> {
    LIMITED
        .iter()
        .map(|&(metric, hard)| {
            let limit = match plan {
                Plan::Unlimited => -1,
                Plan::Free => match metric {
                    metric::API_REQUESTS => 100_000,
                    metric::PAYMENTS_CREATED => 1_000,
                    metric::WEBHOOK_DELIVERIES => 10_000,
                    _ => 10_000_000,
                },
                Plan::Pro => match metric {
                    metric::API_REQUESTS => 10_000_000,
                    metric::PAYMENTS_CREATED => 100_000,
                    metric::WEBHOOK_DELIVERIES => 1_000_000,
                    _ => 1_000_000_000,
                },
                Plan::Custom => custom
                    .and_then(|c| c.get(metric))
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(-1),
            };
            Limit {
                metric,
                limit,
                hard,
            }
        })
        .collect()
}

/// Checks a custom plan's limits as the admin sends them: known metrics, integers ≥ -1.
pub fn valid_custom_limits(limits: &serde_json::Value) -> Result<(), String> {
    let Some(map) = limits.as_object() else {
        return Err("usage_limits is an object of metric → limit.".into());
    };
    for (name, value) in map {
        if !LIMITED.iter().any(|(m, _)| m == name) {
            let known: Vec<&str> = LIMITED.iter().map(|(m, _)| *m).collect();
            return Err(format!(
                "usage_limits has no metric {name:?}; they are {}.",
                known.join(", ")
            ));
        }
        if value.as_i64().is_none_or(|v| v < -1) {
            return Err(format!(
                "usage_limits.{name} is a whole number: the monthly limit, or -1 for unlimited."
            ));
        }
    }
    Ok(())
}

/// The first instant of the month after `t`'s (UTC), when usage starts again from zero.
pub fn next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

/// A refusal: which limit, and when it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub metric: &'static str,
    pub limit: i64,
    pub plan: Plan,
    pub resets_at: DateTime<Utc>,
}

struct Snapshot {
    taken: Instant,
    month: String,
    plan: Plan,
    limits: Vec<Limit>,
    used: Counts,
}

/// What this gateway knows of one merchant's quota: the last snapshot, and the refresh under
/// way if any (a receiver that wakes when it ends; its channel says whose refresh it is).
#[derive(Default)]
struct Known {
    snapshot: Option<Snapshot>,
    refreshing: Option<watch::Receiver<()>>,
}

/// Each merchant's snapshot on this gateway.
///
/// One refresh per merchant at a time. A snapshot read counts the month's payments, which
/// grows with them; when every request that found the snapshot stale read it anew, a backlog
/// (as after a database cut) made a thousand such reads at once, and the payments waited
/// seconds for connections behind them. Now a request that finds a refresh under way goes on
/// with the stale snapshot; only one that has none at all waits for the refresh's end.
#[derive(Default)]
pub struct Quotas {
    merchants: Mutex<HashMap<MerchantId, Known>>,
}

/// What a request does about a merchant's snapshot.
enum Next<'a> {
    /// Check against the snapshot there is (fresh, or stale while another request refreshes).
    Check,
    /// Read a new snapshot; the guard ends the refresh however the read ends.
    Refresh(Refreshing<'a>),
    /// Nothing to check against yet: wait for the refresh under way, then check.
    Await(watch::Receiver<()>),
}

/// A refresh under way. Dropped, however the request ended (a request cancelled mid-read
/// too), it is no longer under way, so the next request to find the snapshot stale starts
/// another; and its waiters wake.
struct Refreshing<'a> {
    quotas: &'a Quotas,
    merchant_id: MerchantId,
    wake: watch::Sender<()>,
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        let mut merchants = self.quotas.lock();
        if let Some(known) = merchants.get_mut(&self.merchant_id)
            && self.owns(known)
        {
            known.refreshing = None;
        }
    }
}

impl Refreshing<'_> {
    /// Whether the refresh `known` names is this one (not a later one's, after the merchant
    /// was forgotten and read again).
    fn owns(&self, known: &Known) -> bool {
        known
            .refreshing
            .as_ref()
            .is_some_and(|ended| ended.same_channel(&self.wake.subscribe()))
    }
}

impl Quotas {
    /// Admits one more `metric` for the merchant, or says which hard limit it would pass.
    /// A database or cache failure admits against the last snapshot, or without a check when
    /// there is none (and is logged): metering must not stop payments.
    pub async fn admit(
        &self,
        db: &DatabaseConnection,
        cache: &Cache,
        merchant_id: &MerchantId,
        metric: &'static str,
    ) -> Result<(), Exceeded> {
        self.admit_reading(merchant_id, metric, Utc::now(), async |month| {
            snapshot(db, cache, merchant_id, month).await
        })
        .await
    }

    /// [`Quotas::admit`], with `read` taking the snapshot (tests count the reads).
    async fn admit_reading(
        &self,
        merchant_id: &MerchantId,
        metric: &'static str,
        now: DateTime<Utc>,
        read: impl AsyncFnOnce(&str) -> Result<Option<Snapshot>, DbErr>,
    ) -> Result<(), Exceeded> {
        let month = usage::month_of(now);
        match self.next(merchant_id, &month) {
            Next::Check => {}
            Next::Refresh(refreshing) => {
                // Read without holding the lock: other merchants' checks go on meanwhile.
                let read = read(&month).await;
                let mut merchants = self.lock();
                // A merchant forgotten meanwhile (its plan changed) is read afresh next time.
                let known = merchants
                    .get_mut(merchant_id)
                    .filter(|k| refreshing.owns(k));
                match (read, known) {
                    (Ok(Some(s)), Some(known)) => known.snapshot = Some(s),
                    (Ok(Some(_)), None) => {}
                    (Ok(None), _) => {
                        merchants.remove(merchant_id);
                    }
                    (Err(e), _) => {
                        tracing::warn!(error = %e, "quota snapshot not refreshed: usage could not be read");
                    }
                }
                // The lock first: the refresh's end takes it.
                drop(merchants);
                drop(refreshing);
            }
            Next::Await(mut ended) => {
                // Err once the refresh's guard is dropped: that is its end.
                let _ = ended.changed().await;
            }
        }
        self.check(merchant_id, &month, metric, now)
    }

    /// Decides, under the lock, whether this request refreshes, waits, or checks at once.
    fn next(&self, merchant_id: &MerchantId, month: &str) -> Next<'_> {
        let mut merchants = self.lock();
        let fresh = |s: &Snapshot| s.month == month && s.taken.elapsed() <= SNAPSHOT_TTL;
        // The usual case, without the id's copy an entry would take.
        if merchants
            .get(merchant_id)
            .and_then(|k| k.snapshot.as_ref())
            .is_some_and(fresh)
        {
            return Next::Check;
        }
        let known = merchants.entry(merchant_id.clone()).or_default();
        let current = known.snapshot.as_ref().filter(|s| s.month == month);
        match &known.refreshing {
            Some(_) if current.is_some() => Next::Check,
            Some(ended) => Next::Await(ended.clone()),
            None => {
                let (wake, ended) = watch::channel(());
                known.refreshing = Some(ended);
                Next::Refresh(Refreshing {
                    quotas: self,
                    merchant_id: merchant_id.clone(),
                    wake,
                })
            }
        }
    }

    /// Counts one more `metric` against the merchant's snapshot of this month, or refuses it.
    fn check(
        &self,
        merchant_id: &MerchantId,
        month: &str,
        metric: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), Exceeded> {
        let mut merchants = self.lock();
        let Some(s) = merchants
            .get_mut(merchant_id)
            .and_then(|k| k.snapshot.as_mut())
            .filter(|s| s.month == month)
        else {
            return Ok(());
        };
        let limit = s
            .limits
            .iter()
            .find(|l| l.metric == metric && l.hard && l.limit >= 0)
            .copied();
        let used = s.used.entry(metric.to_string()).or_default();
        if let Some(l) = limit
            && *used >= l.limit
        {
            return Err(Exceeded {
                metric,
                limit: l.limit,
                plan: s.plan,
                resets_at: next_month(now),
            });
        }
        *used += 1;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MerchantId, Known>> {
        // A panic while holding it cannot leave a snapshot half-written: use it anyway.
        self.merchants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a merchant's snapshot (its plan changed): the next request reads it afresh.
    pub fn forget(&self, merchant_id: &MerchantId) {
        self.lock().remove(merchant_id);
    }
}

async fn snapshot(
    db: &DatabaseConnection,
    cache: &Cache,
    merchant_id: &MerchantId,
    month: &str,
) -> Result<Option<Snapshot>, DbErr> {
    let Some(merchant) = merchants::Entity::find_by_id(merchant_id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let used = usage::of_merchant(db, cache, merchant_id, month).await?;
    Ok(Some(Snapshot {
        taken: Instant::now(),
        month: month.to_string(),
        plan: merchant.plan,
        limits: limits(merchant.plan, merchant.usage_limits.as_ref()),
        used,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn plans_set_hard_and_soft_limits_and_custom_ones_default_to_unlimited() {
        let free = limits(Plan::Free, None);
        let api = free
            .iter()
            .find(|l| l.metric == metric::API_REQUESTS)
            .unwrap();
        assert!(api.hard && api.limit == 100_000);
        assert!(
            !free
                .iter()
                .find(|l| l.metric == metric::LOG_BYTES)
                .unwrap()
                .hard
        );
        let custom = limits(
            Plan::Custom,
            Some(&serde_json::json!({"payments_created": 3})),
        );
        let by = |m: &str| custom.iter().find(|l| l.metric == m).unwrap().limit;
        assert_eq!(
            (by(metric::PAYMENTS_CREATED), by(metric::API_REQUESTS)),
            (3, -1)
        );
    }

    #[test]
    fn custom_limits_are_checked_and_months_reset_at_the_first() {
        assert!(
            valid_custom_limits(&serde_json::json!({"api_requests": -1, "log_bytes": 0})).is_ok()
        );
        assert!(valid_custom_limits(&serde_json::json!({"api_request": 5})).is_err());
        assert!(valid_custom_limits(&serde_json::json!({"api_requests": -2})).is_err());
        assert!(valid_custom_limits(&serde_json::json!({"api_requests": 1.5})).is_err());
        assert!(valid_custom_limits(&serde_json::json!([1])).is_err());
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(
            next_month(t),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert_eq!(
            next_month(t),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
    }

    /// A snapshot of a custom plan allowing `limit` payments a month, `used` of them used,
    /// taken `age` ago.
    fn snapshot_of(now: DateTime<Utc>, limit: i64, used: i64, age: Duration) -> Snapshot {
        Snapshot {
            taken: Instant::now().checked_sub(age).unwrap(),
            month: usage::month_of(now),
            plan: Plan::Custom,
            limits: limits(
                Plan::Custom,
                Some(&serde_json::json!({ "payments_created": limit })),
            ),
            used: Counts::from([(metric::PAYMENTS_CREATED.to_string(), used)]),
        }
    }

    /// `n` requests at once, each reading a snapshot through `read` if it comes to read;
    /// how many were admitted.
    async fn admit_at_once<F>(quotas: &Quotas, n: usize, now: DateTime<Utc>, read: F) -> usize
    where
        F: AsyncFn(&str) -> Result<Option<Snapshot>, DbErr> + Clone,
    {
        let merchant = MerchantId::parse("mer_0123456789abcdef0123456789abcdef").unwrap();
        let admitted = futures_util::future::join_all((0..n).map(|_| {
            let (read, merchant) = (read.clone(), merchant.clone());
            async move {
                quotas
                    .admit_reading(&merchant, metric::PAYMENTS_CREATED, now, async |month| {
                        read(month).await
                    })
                    .await
            }
        }))
        .await;
        admitted.iter().filter(|a| a.is_ok()).count()
    }

    #[tokio::test]
    async fn a_backlog_of_requests_reads_the_snapshot_once_and_checks_the_stale_one_meanwhile() {
        let (quotas, now) = (Quotas::default(), Utc::now());
        let reads = AtomicU64::new(0);
        let slow_read = |used: i64| {
            let reads = &reads;
            async move |_: &str| {
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(snapshot_of(now, 10, used, Duration::ZERO)))
            }
        };
        // None yet: every request waits for the one read.
        assert_eq!(admit_at_once(&quotas, 50, now, slow_read(0)).await, 10);
        assert_eq!(reads.load(Ordering::SeqCst), 1);

        // Stale and used up: one request reads it again (the month started anew there); the
        // others check against the stale one meanwhile, and it refuses them.
        let merchant = MerchantId::parse("mer_0123456789abcdef0123456789abcdef").unwrap();
        quotas.lock().get_mut(&merchant).unwrap().snapshot =
            Some(snapshot_of(now, 10, 10, SNAPSHOT_TTL * 2));
        assert_eq!(admit_at_once(&quotas, 50, now, slow_read(0)).await, 1);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_checks_against_the_last_snapshot_and_admits_without_one() {
        let (quotas, now) = (Quotas::default(), Utc::now());
        let failing = async |_: &str| Err(DbErr::Custom("the database is cut".into()));
        assert_eq!(admit_at_once(&quotas, 3, now, failing).await, 3);
        let merchant = MerchantId::parse("mer_0123456789abcdef0123456789abcdef").unwrap();
        quotas.lock().get_mut(&merchant).unwrap().snapshot =
            Some(snapshot_of(now, 10, 9, SNAPSHOT_TTL * 2));
        assert_eq!(admit_at_once(&quotas, 3, now, failing).await, 1);
    }

    #[tokio::test]
    async fn a_request_cancelled_mid_read_leaves_the_refresh_to_the_next_one() {
        let (quotas, now) = (Quotas::default(), Utc::now());
        let merchant = MerchantId::parse("mer_0123456789abcdef0123456789abcdef").unwrap();
        let never = quotas.admit_reading(&merchant, metric::PAYMENTS_CREATED, now, async |_| {
            std::future::pending().await
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(20), never)
                .await
                .is_err()
        );
        let reads = AtomicU64::new(0);
        let refused = admit_at_once(&quotas, 1, now, async |_: &str| {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(snapshot_of(now, 0, 0, Duration::ZERO)))
        })
        .await;
        assert_eq!((reads.load(Ordering::SeqCst), refused), (1, 0));
    }
}
