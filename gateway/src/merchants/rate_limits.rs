//! API rate limits: every API key has a token bucket, and its merchant has one more over all
//! its keys (so minting keys does not multiply the rate), shared by all gateways through Redis
//! (in memory in embedded mode), sized by the merchant's own limit or the server's default
//! (`PAYRAIL_RATE_LIMIT_PER_SECOND`, `PAYRAIL_RATE_LIMIT_BURST`). Public routes (the checkout,
//! QR codes, the sign-in page) have a bucket per client address.
//!
//! When Redis fails or is slow (no answer within [`SHARED_WAIT`]), each gateway limits with
//! buckets of its own instead of letting everything through: a limit then holds per gateway
//! (N gateways let through up to N times the rate), and `rate_limit_fallbacks_total` counts
//! those decisions.
//!
//! A refused request is a 429 with `Retry-After`; every authenticated answer carries
//! `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`
//! (draft-ietf-httpapi-ratelimit-headers), so a client can slow down before it is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use runtime::cache::{Cache, Guarded};
use runtime::token_bucket::{Admission, Quota};

use crate::merchants::{AuthedMerchant, MerchantRateLimit};

/// The highest rate a merchant may be given, per key.
pub const MAX_PER_SECOND: u32 = 10_000;
/// A burst may be at most a minute of refill: an idle bucket is then full within a minute.
pub const MAX_BURST_SECONDS: u32 = 60;

/// A quota within bounds, or why not (for settings and the admin API alike).
pub fn quota(per_second: u32, burst: u32) -> Result<Quota, String> {
    if !(1..=MAX_PER_SECOND).contains(&per_second) {
        return Err(format!(
            "the rate must be 1 to {MAX_PER_SECOND} requests per second"
        ));
    }
    if burst == 0 || burst > per_second.saturating_mul(MAX_BURST_SECONDS) {
        return Err(format!(
            "the burst must be 1 to {MAX_BURST_SECONDS} seconds of the rate ({})",
            per_second.saturating_mul(MAX_BURST_SECONDS)
        ));
    }
    Ok(Quota { per_second, burst })
}

/// The quota a merchant's keys get: its own values where it has them, else the defaults. A
/// burst left to the default never exceeds what the merchant's own rate allows.
pub fn effective(defaults: Quota, own: MerchantRateLimit) -> Quota {
    let per_second = own.per_second.unwrap_or(defaults.per_second);
    let burst = own.burst.unwrap_or_else(|| {
        defaults
            .burst
            .min(per_second.saturating_mul(MAX_BURST_SECONDS))
    });
    Quota { per_second, burst }
}

/// One request's pass through the limiter: the quota applied and the bucket's answer.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub quota: Quota,
    pub admission: Admission,
}

/// How long a decision waits for Redis before the gateway decides alone.
pub const SHARED_WAIT: Duration = Duration::from_millis(100);

/// Buckets shared by the gateways (Redis), with this gateway's own to fall back on.
#[derive(Clone)]
pub struct Limiter {
    shared: Cache,
    local: Cache,
    /// Decisions taken by the local buckets because Redis failed or was slow.
    pub fallbacks: Counter,
    /// Keys this gateway authenticated, by the SHA-256 of their secret: the shared cache's
    /// entry as it was read, and what it said. See [`Limiter::admit_known`].
    known: Arc<Mutex<HashMap<String, (String, AuthedMerchant)>>>,
}

/// Keys remembered at most; past it the memory starts again (the next request of each key
/// takes the usual path once).
const KNOWN_KEYS: usize = 10_000;

impl Limiter {
    pub fn new(shared: Cache) -> Limiter {
        Limiter {
            shared,
            local: Cache::memory(),
            fallbacks: Counter::default(),
            known: Arc::default(),
        }
    }

    /// Takes a token from the bucket `key`.
    pub async fn take(&self, key: &str, quota: Quota) -> Admission {
        self.take_all(&[key], quota)
            .await
            .pop()
            .unwrap_or_else(|| let_through(quota))
    }

    /// Takes a token from each bucket in `keys`, in order and in one round trip, stopping at
    /// the first refusal (see [`Cache::take_tokens`]).
    pub async fn take_all(&self, keys: &[&str], quota: Quota) -> Vec<Admission> {
        if let Ok(Some(admissions)) =
            tokio::time::timeout(SHARED_WAIT, self.shared.take_tokens(keys, quota)).await
        {
            return admissions;
        }
        self.fallbacks.inc();
        // The local buckets always answer; `None` is only the type's other case.
        self.local
            .take_tokens(keys, quota)
            .await
            .unwrap_or_else(|| vec![let_through(quota)])
    }

    /// Remembers that the key whose secret hashes to `hash` has the shared cache entry
    /// `entry`, which says `who`.
    pub fn remember(&self, hash: &str, entry: String, who: AuthedMerchant) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= KNOWN_KEYS {
                known.clear();
            }
            known.insert(hash.to_string(), (entry, who));
        }
    }

    /// A key this gateway authenticated before, admitted in one round trip: its buckets are
    /// charged only if its shared cache entry (`entry_key`) still holds what was read then.
    /// A revoked key's entry is deleted, a changed limit deletes its merchant's entries, and
    /// an entry expires, so each of those is `None` here (nothing charged), and so is a Redis
    /// that fails or is slow: the caller then authenticates and limits the usual way.
    pub async fn admit_known(
        &self,
        defaults: Quota,
        hash: &str,
        entry_key: &str,
    ) -> Option<(AuthedMerchant, Limited)> {
        let (entry, who) = self.known.lock().ok()?.get(hash).cloned()?;
        let quota = effective(defaults, who.rate_limit);
        let [key, merchant] = bucket_keys(&who);
        let taken = tokio::time::timeout(
            SHARED_WAIT,
            self.shared
                .take_tokens_if((entry_key, &entry), &[&key, &merchant], quota),
        )
        .await;
        match taken {
            Ok(Some(Guarded::Taken(taken))) => {
                let admission = tighter(&taken, quota);
                Some((who, Limited { quota, admission }))
            }
            Ok(Some(Guarded::Changed)) => {
                if let Ok(mut known) = self.known.lock() {
                    known.remove(hash);
                }
                None
            }
            _ => None,
        }
    }
}

fn let_through(quota: Quota) -> Admission {
    Admission {
        allowed: true,
        limit: quota.burst.max(1),
        remaining: 0,
        reset_ms: 0,
        retry_after_ms: 0,
    }
}

/// Takes a token for this key and one for its merchant: both must allow the request. The
/// answer reported is the tighter of the two.
pub async fn admit(limiter: &Limiter, defaults: Quota, who: &AuthedMerchant) -> Limited {
    let quota = effective(defaults, who.rate_limit);
    let [key, merchant] = bucket_keys(who);
    // The merchant's bucket is charged only when the key's allowed (the script stops at the
    // first refusal), in the same round trip.
    let taken = limiter.take_all(&[&key, &merchant], quota).await;
    Limited {
        quota,
        admission: tighter(&taken, quota),
    }
}

/// The key's bucket and its merchant's.
fn bucket_keys(who: &AuthedMerchant) -> [String; 2] {
    [
        format!("rate_limit:{}", who.key_id),
        format!("rate_limit:merchant:{}", who.merchant_id),
    ]
}

/// The answer reported for a key's and its merchant's buckets: the refusal, or the tighter.
fn tighter(taken: &[Admission], quota: Quota) -> Admission {
    match taken {
        [key, merchant] if merchant.allowed && merchant.remaining >= key.remaining => *key,
        [_, merchant] => *merchant,
        [only, ..] => *only,
        [] => let_through(quota),
    }
}

impl Limited {
    /// The `RateLimit-*` headers of the answer (and `Retry-After` when it was refused).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let secs = |ms: u64| ms.div_ceil(1000);
        let a = &self.admission;
        // The policy's window: how long an empty bucket takes to refill.
        let window = self
            .quota
            .burst
            .div_ceil(self.quota.per_second.max(1))
            .max(1);
        let mut headers = vec![
            ("RateLimit-Limit", a.limit.to_string()),
            ("RateLimit-Remaining", a.remaining.to_string()),
            ("RateLimit-Reset", secs(a.reset_ms).to_string()),
            ("RateLimit-Policy", format!("{};w={window}", a.limit)),
        ];
        if !a.allowed {
            headers.push(("Retry-After", secs(a.retry_after_ms).max(1).to_string()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_bounded_and_a_default_burst_fits_a_slower_merchant() {
        assert!(quota(0, 1).is_err());
        assert!(quota(MAX_PER_SECOND + 1, 1).is_err());
        assert!(quota(2, 121).is_err());
        assert_eq!(
            quota(2, 120),
            Ok(Quota {
                per_second: 2,
                burst: 120
            })
        );
        let defaults = Quota {
            per_second: 100,
            burst: 200,
        };
        let slow = MerchantRateLimit {
            per_second: Some(1),
            burst: None,
        };
        assert_eq!(
            effective(defaults, slow),
            Quota {
                per_second: 1,
                burst: 60
            }
        );
        let own = MerchantRateLimit {
            per_second: Some(5),
            burst: Some(10),
        };
        assert_eq!(
            effective(defaults, own),
            Quota {
                per_second: 5,
                burst: 10
            }
        );
        assert_eq!(effective(defaults, MerchantRateLimit::default()), defaults);
    }
}
