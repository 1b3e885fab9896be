//! The delivery retry policy: exponential backoff with a cap, a little jitter, and a budget.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt; doubles after each further one.
    pub base: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// Attempts before a delivery is `failed`.
    pub max_attempts: u32,
}

/// What to do after an attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    RetryAfter(Duration),
    GiveUp,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// `min(base · 2^(attempts-1), max)`, before jitter, after `attempts` failed attempts.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// The step after `attempts` attempts, all failed. `jitter` in `[0, 1)` adds up to 10 % so
    /// that a merchant coming back up is not hit by every retry in the same instant.
    pub fn after_failure(&self, attempts: u32, jitter: f64) -> NextStep {
        if attempts >= self.max_attempts {
            return NextStep::GiveUp;
        }
        let delay = self.delay_after(attempts);
        let extra = delay.mul_f64(0.1 * jitter.clamp(0.0, 1.0));
        NextStep::RetryAfter((delay + extra).min(self.max.max(delay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn gives_up_after_the_budget_and_jitter_stays_small() {
        let p = RetryPolicy::default();
        assert_eq!(p.after_failure(5, 0.0), NextStep::GiveUp);
        assert_eq!(
            p.after_failure(1, 0.0),
            NextStep::RetryAfter(Duration::from_secs(1))
        );
        let NextStep::RetryAfter(d) = p.after_failure(3, 0.99) else {
            panic!("must retry")
        };
        assert!(d >= Duration::from_secs(4) && d < Duration::from_millis(4400));
    }

    #[test]
    fn the_cap_holds_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 20,
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.after_failure(10, 0.99),
            NextStep::RetryAfter(Duration::from_secs(60))
        );
    }
}
