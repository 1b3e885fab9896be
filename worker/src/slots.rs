//! Per-endpoint send slots: how many requests this worker keeps in flight to each endpoint.
//!
//! Each endpoint gets at most its limit (its own `max_concurrency`, or the worker's default),
//! and a burst ramps up to it rather than opening every connection at once: a fresh endpoint
//! (or one idle for a while) starts with [`START`] slots and gains one per success, and a
//! timeout or connection failure halves what it has. A receiver with a small accept backlog
//! then sees connections arrive staggered, not as a wave whose SYNs it drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::ids::EndpointId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots an endpoint starts with.
pub const START: u32 = 2;
/// An endpoint this long without a send starts again from [`START`].
pub const IDLE_RESET: Duration = Duration::from_secs(10);

struct Slot {
    limit: u32,
    granted: u32,
    semaphore: Arc<Semaphore>,
    last_used: Instant,
}

impl Slot {
    fn new(limit: u32) -> Slot {
        let granted = START.min(limit);
        Slot {
            limit,
            granted,
            semaphore: Arc::new(Semaphore::new(granted as usize)),
            last_used: Instant::now(),
        }
    }
}

pub struct Slots {
    default_limit: u32,
    endpoints: Mutex<HashMap<EndpointId, Slot>>,
}

impl Slots {
    pub fn new(default_limit: u32) -> Slots {
        Slots {
            default_limit,
            endpoints: Mutex::default(),
        }
    }

    /// The limit for an endpoint that set `own` (or none).
    pub fn limit(&self, own: Option<i32>) -> u32 {
        own.and_then(|l| u32::try_from(l).ok())
            .filter(|l| *l > 0)
            .unwrap_or(self.default_limit)
    }

    /// Waits for a slot to send to `endpoint` until `deadline`.
    pub async fn acquire(
        &self,
        endpoint: &EndpointId,
        limit: u32,
        deadline: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut endpoints = self.endpoints.lock().ok()?;
            let slot = endpoints
                .entry(endpoint.clone())
                .or_insert_with(|| Slot::new(limit));
            // A changed limit, or a burst after a quiet spell, starts afresh.
            if slot.limit != limit || slot.last_used.elapsed() > IDLE_RESET {
                *slot = Slot::new(limit);
            }
            slot.last_used = Instant::now();
            slot.semaphore.clone()
        };
        tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// A send succeeded: one more slot, up to the limit.
    pub fn succeeded(&self, endpoint: &EndpointId) {
        if let Ok(mut endpoints) = self.endpoints.lock()
            && let Some(slot) = endpoints.get_mut(endpoint)
            && slot.granted < slot.limit
        {
            slot.granted += 1;
            slot.semaphore.add_permits(1);
        }
    }

    /// A send timed out or could not connect: half the slots (of those free now), at least one
    /// kept.
    pub fn struggled(&self, endpoint: &EndpointId) {
        if let Ok(mut endpoints) = self.endpoints.lock()
            && let Some(slot) = endpoints.get_mut(endpoint)
        {
            let cut = slot.granted / 2;
            let forgotten = slot.semaphore.forget_permits(cut as usize);
            slot.granted -= u32::try_from(forgotten).unwrap_or(0);
        }
    }

    /// Slots an endpoint has now.
    #[cfg(test)]
    fn granted(&self, endpoint: &EndpointId) -> Option<u32> {
        self.endpoints
            .lock()
            .ok()?
            .get(endpoint)
            .map(|slot| slot.granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_start_small_grow_with_successes_and_halve_on_trouble() {
        let slots = Slots::new(10);
        let e = EndpointId::from_trusted("we_1");
        let far = tokio::time::Instant::now() + Duration::from_secs(5);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(20);
        let a = slots.acquire(&e, 10, far).await.expect("first");
        let b = slots.acquire(&e, 10, far).await.expect("second");
        assert!(slots.acquire(&e, 10, soon()).await.is_none(), "starts at 2");
        for _ in 0..20 {
            slots.succeeded(&e);
        }
        assert_eq!(slots.granted(&e), Some(10), "grows up to the limit only");
        slots.struggled(&e);
        assert_eq!(slots.granted(&e), Some(5));
        drop((a, b));
        let held: Vec<_> =
            futures_util::future::join_all((0..5).map(|_| slots.acquire(&e, 10, far))).await;
        assert!(held.iter().all(Option::is_some));
        assert!(
            slots.acquire(&e, 10, soon()).await.is_none(),
            "5 in flight at most"
        );
        assert_eq!(slots.limit(Some(3)), 3);
        assert_eq!(slots.limit(None), 10);
        assert_eq!(slots.limit(Some(0)), 10);
    }
}
