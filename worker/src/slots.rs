//! Per-endpoint send slots: how many requests this worker keeps in flight to each endpoint.
//!
//! Each endpoint gets at most its limit (its own `max_concurrency`, or the worker's default),
//! and a burst ramps up to it rather than opening every connection at once: a fresh endpoint
//! (or one idle for a while) starts with [`START`] slots and gains one per success, and a
//! timeout or connection failure halves what it has. A receiver with a small accept backlog
//! then sees connections arrive staggered, not as a wave whose SYNs it drops.
//!
//! They also bound what waits for them in memory: the consumer takes on an endpoint's new
//! deliveries for an attempt at once only while fewer than its limit are waiting for a slot
//! ([`Slots::promise`]); the rest are written due for the sweep. A slow or saturated endpoint
//! then queues in the database, not as attempts held in this worker's memory.

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
    /// Attempts taken on for this endpoint that have not got a slot (or given up) yet.
    promised: u32,
}

impl Slot {
    fn new(limit: u32) -> Slot {
        let granted = START.min(limit);
        Slot {
            limit,
            granted,
            semaphore: Arc::new(Semaphore::new(granted as usize)),
            last_used: Instant::now(),
            promised: 0,
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
                let promised = slot.promised;
                *slot = Slot::new(limit);
                slot.promised = promised;
            }
            slot.last_used = Instant::now();
            slot.semaphore.clone()
        };
        tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Takes on one more attempt for `endpoint`, to be sent as soon as a slot frees, unless
    /// `limit` attempts are already waiting for one: then `false`, and the row is left due for
    /// the sweep. Each `true` is given back through one [`Promised`] (or [`Slots::unpromise`]).
    pub fn promise(&self, endpoint: &EndpointId, limit: u32) -> bool {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return false;
        };
        let slot = endpoints
            .entry(endpoint.clone())
            .or_insert_with(|| Slot::new(limit));
        if slot.promised >= limit {
            return false;
        }
        slot.promised += 1;
        true
    }

    /// Gives back `n` promises that were not used (their rows were not inserted after all).
    pub fn unpromise(&self, endpoint: &EndpointId, n: u32) {
        if let Ok(mut endpoints) = self.endpoints.lock()
            && let Some(slot) = endpoints.get_mut(endpoint)
        {
            slot.promised = slot.promised.saturating_sub(n);
        }
    }

    /// One promise made for `endpoint`, held by the attempt that uses it until it has a slot or
    /// gives up (dropping it gives the promise back, however the attempt ends).
    pub fn promised(&self, endpoint: &EndpointId) -> Promised<'_> {
        Promised {
            slots: self,
            endpoint: endpoint.clone(),
        }
    }

    /// Attempts waiting for a slot to `endpoint` on a promise.
    pub fn waiting(&self, endpoint: &EndpointId) -> u32 {
        self.endpoints
            .lock()
            .ok()
            .and_then(|e| e.get(endpoint).map(|slot| slot.promised))
            .unwrap_or(0)
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

/// One attempt's promise (see [`Slots::promise`]), given back when dropped.
pub struct Promised<'a> {
    slots: &'a Slots,
    endpoint: EndpointId,
}

impl Drop for Promised<'_> {
    fn drop(&mut self) {
        self.slots.unpromise(&self.endpoint, 1);
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

    #[test]
    fn promises_stop_at_the_limit_and_come_back_when_dropped_or_returned() {
        let slots = Slots::new(10);
        let e = EndpointId::from_trusted("we_1");
        let other = EndpointId::from_trusted("we_2");
        assert!((0..3).all(|_| slots.promise(&e, 3)));
        assert!(!slots.promise(&e, 3), "three wait already");
        assert!(slots.promise(&other, 3), "each endpoint has its own");
        assert_eq!(slots.waiting(&e), 3);
        drop(slots.promised(&e));
        assert_eq!(slots.waiting(&e), 2);
        assert!(slots.promise(&e, 3), "a dropped promise frees its place");
        slots.unpromise(&e, 5);
        assert_eq!(slots.waiting(&e), 0, "never below zero");
    }
}
