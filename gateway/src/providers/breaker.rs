//! A circuit breaker per provider: after `threshold` consecutive failures the provider is not
//! called for `cooldown`, so a provider that is down fails fast instead of holding connections
//! (and, on the payment path, database transactions). After the cooldown one call is let
//! through; its outcome closes or reopens the circuit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ProviderError;

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    /// Err while the circuit is open.
    pub fn admit(&self) -> Result<(), ProviderError> {
        let mut state = self.state.lock().map_err(|_| ProviderError::CircuitOpen)?;
        match state.open_until {
            Some(until) if Instant::now() < until => Err(ProviderError::CircuitOpen),
            Some(_) => {
                // Half-open: this call is the probe; a failure reopens at once.
                state.open_until = None;
                state.consecutive_failures = self.threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn record(&self, success: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if success {
            state.consecutive_failures = 0;
            state.open_until = None;
        } else {
            state.consecutive_failures += 1;
            if state.consecutive_failures >= self.threshold {
                state.open_until = Some(Instant::now() + self.cooldown);
            }
        }
    }

    /// For the `provider_circuit_state` gauge: 0 closed, 1 half-open (the cooldown is over and
    /// the next call is the probe), 2 open.
    pub fn state_code(&self) -> i64 {
        match self.state.lock() {
            Ok(state) => match state.open_until {
                None => 0,
                Some(until) if Instant::now() >= until => 1,
                Some(_) => 2,
            },
            Err(_) => 2,
        }
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.open_until.is_some_and(|u| Instant::now() < u))
            .unwrap_or(true)
    }
}

/// A provider's two circuits: one for the calls that create (payments, refunds, cancels) and
/// one for status queries (webhook verification, the poller), so a flood of queries (an
/// unsigned callback can trigger them) cannot open the circuit payment creation depends on.
pub struct Breakers {
    pub create: Breaker,
    pub query: Breaker,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            create: Breaker::new(threshold, cooldown),
            query: Breaker::new(threshold, cooldown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(false);
        }
        assert!(!b.is_open());
        assert_eq!(b.state_code(), 0);
        b.admit().unwrap();
        b.record(false);
        assert!(b.is_open());
        assert_eq!(b.state_code(), 2, "open");
        assert!(matches!(b.admit(), Err(ProviderError::CircuitOpen)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state_code(), 1, "half-open: the next call is the probe");
        b.admit().unwrap();
        b.record(false);
        assert!(b.is_open(), "a failed probe reopens at once");
        std::thread::sleep(Duration::from_millis(40));
        b.admit().unwrap();
        b.record(true);
        assert!(!b.is_open());
        b.admit().unwrap();
    }
}
