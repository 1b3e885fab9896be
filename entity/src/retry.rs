//! The delivery retry policy: exponential backoff with a cap and a budget (the default), or an
//! explicit schedule of delays that can span a merchant's outage of hours; jitter either way,
//! and a receiver's `Retry-After` honoured within bounds.

use std::time::Duration;

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryPolicy {
    Exponential {
        /// Delay after the first failed attempt; doubles after each further one.
        base: Duration,
        /// No delay is longer than this.
        max: Duration,
        /// Attempts before a delivery is `failed`.
        max_attempts: u32,
    },
    /// The delay before each retry, in order: `len + 1` attempts in all.
    Schedule(Vec<Duration>),
}

/// What to do after an attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    RetryAfter(Duration),
    GiveUp,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::Exponential {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// Parses `PAYRAIL_WEBHOOK_RETRY_SCHEDULE`'s form: delays separated by commas, each a
    /// humantime duration (`5s,5m,30m,2h`).
    pub fn parse_schedule(text: &str) -> Result<RetryPolicy, String> {
        let delays = text
            .split(',')
            .map(|d| {
                let d = d.trim();
                humantime::parse_duration(d)
                    .map_err(|e| format!("'{d}' is not a duration ({e})"))
                    .and_then(|d| {
                        if d.is_zero() || d > Duration::from_secs(30 * 24 * 3600) {
                            Err("each delay must be more than 0 and at most 30 days".into())
                        } else {
                            Ok(d)
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > 50 {
            return Err("at most 50 retries".into());
        }
        Ok(RetryPolicy::Schedule(delays))
    }

    /// Attempts before a delivery is `failed`.
    pub fn max_attempts(&self) -> u32 {
        match self {
            RetryPolicy::Exponential { max_attempts, .. } => *max_attempts,
            RetryPolicy::Schedule(delays) => u32::try_from(delays.len()).unwrap_or(50) + 1,
        }
    }

    /// The delay, before jitter, after `attempts` failed attempts (`attempts` ≥ 1).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        match self {
            RetryPolicy::Exponential { base, max, .. } => {
                let exponent = attempts.saturating_sub(1).min(30);
                base.saturating_mul(1u32 << exponent).min(*max)
            }
            RetryPolicy::Schedule(delays) => {
                let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
                delays.get(i).or(delays.last()).copied().unwrap_or_default()
            }
        }
    }

    /// From the first attempt to the last, without jitter: how long an outage the policy
    /// rides out.
    pub fn span(&self) -> Duration {
        (1..self.max_attempts()).map(|n| self.delay_after(n)).sum()
    }

    /// The step after `attempts` attempts, all failed. `jitter` in `[0, 1)` adds up to 10 % so
    /// that a merchant coming back up is not hit by every retry in the same instant (the
    /// exponential cap still holds). `retry_after`, from a 429 or 503, is a floor on the delay,
    /// bounded by [`MAX_RETRY_AFTER`]; it never adds attempts.
    pub fn after_failure(
        &self,
        attempts: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> NextStep {
        if attempts >= self.max_attempts() {
            return NextStep::GiveUp;
        }
        let delay = self.delay_after(attempts);
        let extra = delay.mul_f64(0.1 * jitter.clamp(0.0, 1.0));
        let jittered = match self {
            RetryPolicy::Exponential { max, .. } => (delay + extra).min((*max).max(delay)),
            RetryPolicy::Schedule(_) => delay + extra,
        };
        let floor = retry_after
            .map(|r| r.min(MAX_RETRY_AFTER))
            .unwrap_or_default();
        NextStep::RetryAfter(jittered.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::Exponential {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 9,
        };
        let secs: Vec<u64> = (1..=8).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(RetryPolicy::default().span(), Duration::from_secs(15));
    }

    #[test]
    fn gives_up_after_the_budget_and_jitter_stays_small() {
        let p = RetryPolicy::default();
        assert_eq!(p.after_failure(5, 0.0, None), NextStep::GiveUp);
        assert_eq!(
            p.after_failure(1, 0.0, None),
            NextStep::RetryAfter(Duration::from_secs(1))
        );
        let NextStep::RetryAfter(d) = p.after_failure(3, 0.99, None) else {
            panic!("must retry")
        };
        assert!(d >= Duration::from_secs(4) && d < Duration::from_millis(4400));
    }

    #[test]
    fn the_cap_holds_with_jitter() {
        let p = RetryPolicy::Exponential {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 20,
        };
        assert_eq!(
            p.after_failure(10, 0.99, None),
            NextStep::RetryAfter(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_schedule_sets_the_delays_and_the_budget() {
        let p = RetryPolicy::parse_schedule("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.delay_after(2), Duration::from_secs(300));
        assert_eq!(p.delay_after(7), Duration::from_secs(36_000));
        assert_eq!(
            p.span(),
            Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000)
        );
        assert_eq!(p.after_failure(8, 0.0, None), NextStep::GiveUp);
        assert_eq!(
            p.after_failure(1, 0.0, None),
            NextStep::RetryAfter(Duration::from_secs(5))
        );
        for bad in ["", "5s,,5m", "5 parsecs", "0s", "31days"] {
            assert!(RetryPolicy::parse_schedule(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_a_bounded_floor_and_never_adds_attempts() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_failure(1, 0.0, Some(Duration::from_secs(120))),
            NextStep::RetryAfter(Duration::from_secs(120))
        );
        assert_eq!(
            p.after_failure(1, 0.0, Some(Duration::from_secs(86_400))),
            NextStep::RetryAfter(MAX_RETRY_AFTER)
        );
        assert_eq!(
            p.after_failure(4, 0.0, Some(Duration::from_millis(10))),
            NextStep::RetryAfter(Duration::from_secs(8))
        );
        assert_eq!(
            p.after_failure(5, 0.0, Some(Duration::from_secs(1))),
            NextStep::GiveUp
        );
    }
}
