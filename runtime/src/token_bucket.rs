//! Token buckets: the arithmetic of a rate limit, shared by the Redis script (every gateway on
//! one Redis shares a bucket) and the in-memory buckets of embedded mode.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; a request takes one. The
//! state is two numbers (tokens, time of the last update), so a bucket left alone costs
//! nothing and a full one can be forgotten.

/// A rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

/// The answer to one request: let through or not, and what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub allowed: bool,
    /// The bucket's size (`RateLimit-Limit`).
    pub limit: u32,
    /// Whole tokens left after this request (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Milliseconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_ms: u64,
    /// Milliseconds until one token is there, when refused (`Retry-After`).
    pub retry_after_ms: u64,
}

/// A bucket's state between requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: u64,
}

impl Bucket {
    pub fn full(quota: Quota, now_ms: u64) -> Bucket {
        Bucket {
            tokens: f64::from(quota.burst),
            updated_ms: now_ms,
        }
    }

    /// Refills for the time since the last request, then takes a token if there is one.
    pub fn take(&mut self, quota: Quota, now_ms: u64) -> Admission {
        let rate = f64::from(quota.per_second.max(1));
        let burst = f64::from(quota.burst.max(1));
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed * rate / 1000.0).min(burst);
        self.updated_ms = now_ms.max(self.updated_ms);
        let allowed = self.tokens >= 1.0;
        let retry_after_ms = if allowed {
            self.tokens -= 1.0;
            0
        } else {
            ((1.0 - self.tokens) * 1000.0 / rate).ceil() as u64
        };
        Admission {
            allowed,
            limit: quota.burst.max(1),
            remaining: self.tokens.floor() as u32,
            reset_ms: ((burst - self.tokens) * 1000.0 / rate).ceil() as u64,
            retry_after_ms,
        }
    }
}

/// The same arithmetic as [`Bucket::take`], atomic in Redis, on Redis's clock so that gateways
/// whose clocks differ still share one bucket. Takes from each bucket in `KEYS` in order and
/// stops after the first refusal; returns, per bucket taken from, allowed (0/1), remaining,
/// reset and retry-after in milliseconds (one flat list).
///
/// With a third argument, `KEYS[1]` is a guard instead of a bucket: the buckets after it are
/// charged only if it still holds that value, and nil is returned (nothing charged) if not.
/// The API checks a known key's cached entry and charges its buckets in one round trip so.
pub const REDIS_SCRIPT: &str = r#"
local rate = math.max(tonumber(ARGV[1]), 1)
local burst = math.max(tonumber(ARGV[2]), 1)
local first = 1
if ARGV[3] then
  if redis.call('GET', KEYS[1]) ~= ARGV[3] then return nil end
  first = 2
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = first, #KEYS do
  local key = KEYS[i]
  local state = redis.call('HMGET', key, 'tokens', 'updated')
  local tokens = tonumber(state[1]) or burst
  local updated = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate / 1000)
  local allowed = 0
  local retry = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  else
    retry = math.ceil((1 - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'updated', tostring(math.max(now, updated)))
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  table.insert(out, allowed)
  table.insert(out, math.floor(tokens))
  table.insert(out, math.ceil((burst - tokens) * 1000 / rate))
  table.insert(out, retry)
  if allowed == 0 then break end
end
return out
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        per_second: 10,
        burst: 3,
    };

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_refuses_until_a_token_refills() {
        let mut bucket = Bucket::full(QUOTA, 0);
        let taken: Vec<bool> = (0..4).map(|_| bucket.take(QUOTA, 0).allowed).collect();
        assert_eq!(taken, [true, true, true, false]);
        let refused = bucket.take(QUOTA, 0);
        assert_eq!((refused.remaining, refused.retry_after_ms), (0, 100));
        assert_eq!(refused.reset_ms, 300, "three tokens at 10/s");
        assert!(!bucket.take(QUOTA, 99).allowed);
        let again = bucket.take(QUOTA, 100);
        assert!(again.allowed, "one token after 100 ms at 10/s");
        assert_eq!(again.remaining, 0);
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let mut bucket = Bucket::full(QUOTA, 0);
        for _ in 0..3 {
            bucket.take(QUOTA, 0);
        }
        let later = bucket.take(QUOTA, 60_000);
        assert!(later.allowed);
        assert_eq!(later.remaining, 2, "refilled to 3, took 1");
        assert_eq!(later.limit, 3);
    }
}
