//! The cache: Redis in production, a map in memory in embedded mode. Values are strings with
//! a TTL; keys get the configured prefix so tests and tenants never collide. A cache that
//! fails is logged and treated as a miss: it never fails a request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use crate::token_bucket::{self, Admission, Bucket, Quota};

/// The longest any call to Redis may take: a Redis that hangs, or is reconnecting, slows no
/// request; the call counts as failed and its caller degrades as it does for an error.
pub const REDIS_WAIT: Duration = Duration::from_millis(250);

/// `call`, or a timeout error once [`REDIS_WAIT`] has passed.
pub(crate) async fn bounded<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(REDIS_WAIT, call).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis did not answer in time",
        ))),
    }
}

/// What a guarded take found (see [`Cache::take_tokens_if`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// The guard held: one admission per bucket taken from, as [`Cache::take_tokens`].
    Taken(Vec<Admission>),
    /// The guard held something else, or nothing: no bucket was charged.
    Changed,
}

tokio::task_local! {
    /// The keys the request running in this task drops just before it answers.
    static DROPPED_BEFORE_ANSWER: std::cell::RefCell<Vec<String>>;
}

#[derive(Clone)]
pub enum Cache {
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
    Memory(
        Arc<Mutex<HashMap<String, (String, Instant)>>>,
        Arc<Mutex<Buckets>>,
        Arc<Mutex<crate::usage::Tally>>,
    ),
}

/// Embedded mode's token buckets, by key, on this process's clock.
#[derive(Default)]
pub struct Buckets {
    started: Option<Instant>,
    buckets: HashMap<String, Bucket>,
}

impl Cache {
    pub async fn redis(url: &str, prefix: &str) -> Result<Cache, redis::RedisError> {
        let conn = Self::connection(redis::Client::open(url)?).await?;
        Ok(Cache::Redis {
            conn,
            prefix: prefix.to_string(),
        })
    }

    /// A reconnecting connection to `client`'s Redis, with this process's timeouts.
    pub(crate) async fn connection(
        client: redis::Client,
    ) -> Result<ConnectionManager, redis::RedisError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        ConnectionManager::new_with_config(client, config).await
    }

    pub fn memory() -> Cache {
        Cache::Memory(Arc::default(), Arc::default(), Arc::default())
    }

    pub(crate) fn key(prefix: &str, key: &str) -> String {
        format!("{prefix}:{key}")
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                match bounded(conn.get::<_, Option<String>>(Self::key(prefix, key))).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "cache read failed; treated as a miss");
                        None
                    }
                }
            }
            Cache::Memory(map, ..) => {
                let map = map.lock().await;
                map.get(key)
                    .filter(|(_, exp)| *exp > Instant::now())
                    .map(|(v, _)| v.clone())
            }
        }
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let secs = ttl.as_secs().max(1);
                if let Err(e) =
                    bounded(conn.set_ex::<_, _, ()>(Self::key(prefix, key), value, secs)).await
                {
                    tracing::warn!(error = %e, "cache write failed");
                }
            }
            Cache::Memory(map, ..) => {
                map.lock()
                    .await
                    .insert(key.to_string(), (value.to_string(), Instant::now() + ttl));
            }
        }
    }

    pub async fn delete(&self, key: &str) {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                if let Err(e) = bounded(conn.del::<_, ()>(Self::key(prefix, key))).await {
                    tracing::warn!(error = %e, "cache delete failed");
                }
            }
            Cache::Memory(map, ..) => {
                map.lock().await.remove(key);
            }
        }
    }

    /// Runs a request's `work` and returns, with its output, the keys it dropped with
    /// [`Cache::delete_before_answer`]: the caller deletes them before the answer leaves, in
    /// the round trip that counts the request's usage ([`Cache::settle_request`]).
    pub async fn gathering_deletes<T>(
        work: impl std::future::Future<Output = T>,
    ) -> (T, Vec<String>) {
        DROPPED_BEFORE_ANSWER
            .scope(std::cell::RefCell::new(Vec::new()), async move {
                let output = work.await;
                let dropped = DROPPED_BEFORE_ANSWER.with(|keys| keys.take());
                (output, dropped)
            })
            .await
    }

    /// Drops `key` before the request running in this task answers, with its usage; at once
    /// outside a request (or in a task it spawned). For what a client may read right after:
    /// its answer still comes after the delete.
    pub async fn delete_before_answer(&self, key: &str) {
        let gathered = DROPPED_BEFORE_ANSWER
            .try_with(|keys| keys.borrow_mut().push(key.to_string()))
            .is_ok();
        if !gathered {
            self.delete(key).await;
        }
    }

    /// Counts one more hit on `key`, a fixed window that expires after `ttl`, and returns the
    /// count so far, shared by every process on the same Redis. `None` when the cache does not
    /// answer: callers limiting a rate let the work through rather than stall it.
    pub async fn hit(&self, key: &str, ttl: Duration) -> Option<u64> {
        match self {
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = Self::key(prefix, key);
                let counted: Result<(u64, ()), _> = bounded(
                    redis::pipe()
                        .atomic()
                        .incr(&key, 1u64)
                        .pexpire(&key, i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                        .query_async(&mut conn),
                )
                .await;
                counted
                    .inspect_err(|e| tracing::warn!(error = %e, "cache counter failed"))
                    .ok()
                    .map(|(n, ())| n)
            }
            Cache::Memory(map, ..) => {
                let mut map = map.lock().await;
                let now = Instant::now();
                map.retain(|_, (_, expires)| *expires > now);
                let entry = map
                    .entry(key.to_string())
                    .or_insert_with(|| ("0".to_string(), now + ttl));
                let n = entry.0.parse::<u64>().unwrap_or(0) + 1;
                entry.0 = n.to_string();
                Some(n)
            }
        }
    }

    /// Takes a token from the bucket `key` (created full), shared by every process on the same
    /// Redis. `None` when Redis does not answer: the caller lets the request through, since
    /// refusing every merchant because the limiter is down is worse than not limiting a while.
    pub async fn take_token(&self, key: &str, quota: Quota) -> Option<Admission> {
        self.take_tokens(&[key], quota).await?.pop()
    }

    /// Takes a token from each bucket in `keys`, in order, in one round trip, and stops at
    /// the first that refuses (the buckets after it are not charged): one admission per bucket
    /// taken from, so the last is the refusal if there was one. `None` as for
    /// [`Cache::take_token`].
    pub async fn take_tokens(&self, keys: &[&str], quota: Quota) -> Option<Vec<Admission>> {
        match self.take_guarded(None, keys, quota).await? {
            Guarded::Taken(admissions) => Some(admissions),
            // Without a guard there is nothing to have changed.
            Guarded::Changed => None,
        }
    }

    /// [`Cache::take_tokens`], only if `guard` still holds `expected` (checked and charged in
    /// one round trip); [`Guarded::Changed`] and nothing charged if it does not. `None` when
    /// Redis does not answer.
    pub async fn take_tokens_if(
        &self,
        (guard, expected): (&str, &str),
        keys: &[&str],
        quota: Quota,
    ) -> Option<Guarded> {
        self.take_guarded(Some((guard, expected)), keys, quota)
            .await
    }

    async fn take_guarded(
        &self,
        guard: Option<(&str, &str)>,
        keys: &[&str],
        quota: Quota,
    ) -> Option<Guarded> {
        match self {
            Cache::Redis { conn, prefix } => {
                static SCRIPT: std::sync::LazyLock<redis::Script> =
                    std::sync::LazyLock::new(|| redis::Script::new(token_bucket::REDIS_SCRIPT));
                let mut conn = conn.clone();
                let mut invocation = SCRIPT.prepare_invoke();
                if let Some((key, _)) = guard {
                    invocation.key(Self::key(prefix, key));
                }
                for key in keys {
                    invocation.key(Self::key(prefix, key));
                }
                invocation.arg(quota.per_second).arg(quota.burst);
                if let Some((_, expected)) = guard {
                    invocation.arg(expected);
                }
                let answer: Result<Option<Vec<u64>>, _> =
                    bounded(invocation.invoke_async(&mut conn)).await;
                let taken = answer
                    .inspect_err(
                        |e| tracing::warn!(error = %e, "rate limiter failed; request let through"),
                    )
                    .ok()?;
                Some(match taken {
                    None => Guarded::Changed,
                    Some(flat) => Guarded::Taken(
                        flat.chunks_exact(4)
                            .map(|c| Admission {
                                allowed: c[0] == 1,
                                limit: quota.burst.max(1),
                                remaining: u32::try_from(c[1]).unwrap_or(u32::MAX),
                                reset_ms: c[2],
                                retry_after_ms: c[3],
                            })
                            .collect(),
                    ),
                })
            }
            Cache::Memory(_, buckets, _) => {
                if let Some((key, expected)) = guard
                    && self.get(key).await.as_deref() != Some(expected)
                {
                    return Some(Guarded::Changed);
                }
                let mut buckets = buckets.lock().await;
                let started = *buckets.started.get_or_insert_with(Instant::now);
                let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                // A bucket idle for a minute is full again (bursts are bounded to a minute
                // of refill), so forgetting it changes nothing and idle keys do not pile up.
                if buckets.buckets.len() > 10_000 {
                    buckets
                        .buckets
                        .retain(|_, b| now_ms.saturating_sub(b.updated_ms) < 60_000);
                }
                let mut taken = Vec::with_capacity(keys.len());
                for key in keys {
                    let bucket = buckets
                        .buckets
                        .entry(key.to_string())
                        .or_insert_with(|| Bucket::full(quota, now_ms));
                    let answer = bucket.take(quota, now_ms);
                    taken.push(answer);
                    if !answer.allowed {
                        break;
                    }
                }
                Some(Guarded::Taken(taken))
            }
        }
    }

    /// Whether the cache answers, for readiness.
    pub async fn ping(&self) -> bool {
        match self {
            Cache::Redis { conn, .. } => {
                let mut conn = conn.clone();
                bounded(redis::cmd("PING").query_async::<String>(&mut conn))
                    .await
                    .is_ok()
            }
            Cache::Memory(..) => true,
        }
    }
}
