//! The express lane's end in the worker: copies of freshly committed events, popped from
//! Redis and fanned out before the broker delivers them ([`runtime::bus::express`]).
//!
//! The copy and the broker's message go through the same idempotent fan-out, so whichever
//! comes second finds the rows and sends nothing. This worker remembers the events it took
//! from their copies (for [`REMEMBERED_FOR`]); their broker messages wait for that fan-out
//! and are then acknowledged without touching the database. At most [`EXPRESS_BATCHES`]
//! batches of copies are in work at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use entity::bus::{BusMessage, LiveNotice};
use entity::ids::EventId;
use runtime::bus::ExpressSource;
use tokio::sync::watch;

use crate::deliveries::{self, AttemptOutcome};

use super::*;

/// How long an event taken from its copy is remembered: far longer than the broker's message
/// takes to follow, unless the worker is behind (then the database answers instead).
const REMEMBERED_FOR: Duration = Duration::from_secs(10);
/// How far the gateways' clocks (an event's `created_at`) may be from the worker's, for the
/// events it sends early ([`Worker::handle_express`]).
const CLOCKS_APART: chrono::Duration = chrono::Duration::seconds(1);
/// Events remembered at most.
const REMEMBERED_AT_MOST: usize = 100_000;
/// Batches of copies one worker fans out at once (until their rows are committed). Past that
/// the lane waits: a worker whose database is behind works through the broker's queue, in
/// its order and within its prefetch, rather than pile up copies.
pub(super) const EXPRESS_BATCHES: usize = 2;

/// Where a batch of copies stands: being fanned out, or done with the events whose rows are
/// committed (none if the fan-out failed).
#[derive(Debug, Clone)]
enum Batch {
    Making,
    Done(Arc<HashSet<EventId>>),
}

/// The events this worker took from their copies, each with its batch's progress, so the
/// broker's message for one waits for that batch instead of fanning it out a second time.
///
/// It holds every event the lane fanned out for [`REMEMBERED_FOR`] (about 19,000 at 1,900
/// events/s), nearly all of which no broker message ever asks for, so it keeps little per
/// event: a 64-bit hash of the id pointing at its batch (16 bytes), and the batch's list of
/// those hashes for forgetting them. What vouches that an event was made is its batch's own
/// set of ids ([`Batch::Done`]), compared in full: ids whose hashes collide share an entry
/// (the later batch's), and the other's broker message then only goes the usual way.
pub(super) struct MadeEarly<S = std::hash::RandomState> {
    batch_of: HashMap<u64, u64>,
    batches: VecDeque<Remembered>,
    /// The number the next batch gets; [`Remembered`]s are numbered in order, without gaps.
    next: u64,
    /// How many ids `batches` lists.
    held: usize,
    hasher: S,
}

/// One batch of copies, as long as its events are remembered.
struct Remembered {
    at: Instant,
    progress: watch::Receiver<Batch>,
    hashes: Box<[u64]>,
}

impl Default for MadeEarly {
    fn default() -> Self {
        MadeEarly::with_hasher(std::hash::RandomState::new())
    }
}

impl<S: std::hash::BuildHasher> MadeEarly<S> {
    fn with_hasher(hasher: S) -> Self {
        MadeEarly {
            batch_of: HashMap::new(),
            batches: VecDeque::new(),
            next: 0,
            held: 0,
            hasher,
        }
    }

    /// Notes `ids` as being fanned out from their copies; the batch reports through the
    /// returned sender.
    fn start(&mut self, ids: impl IntoIterator<Item = EventId>) -> watch::Sender<Batch> {
        self.start_at(Instant::now(), ids)
    }

    fn start_at(
        &mut self,
        now: Instant,
        ids: impl IntoIterator<Item = EventId>,
    ) -> watch::Sender<Batch> {
        self.forget_expired(now);
        let (done, progress) = watch::channel(Batch::Making);
        let number = self.next;
        self.next += 1;
        let hashes: Box<[u64]> = ids
            .into_iter()
            .map(|id| self.hasher.hash_one(&id))
            .collect();
        for hash in &hashes {
            self.batch_of.insert(*hash, number);
        }
        self.held += hashes.len();
        self.batches.push_back(Remembered {
            at: now,
            progress,
            hashes,
        });
        done
    }

    /// Forgets the batches started [`REMEMBERED_FOR`] before `now`, and the oldest past
    /// [`REMEMBERED_AT_MOST`] ids; the map gives back what a burst made it grow to.
    fn forget_expired(&mut self, now: Instant) {
        let first = self.oldest_number();
        let mut forgotten = 0;
        while let Some(oldest) = self.batches.front() {
            if now.duration_since(oldest.at) < REMEMBERED_FOR && self.held < REMEMBERED_AT_MOST {
                break;
            }
            let number = first + forgotten;
            for hash in &oldest.hashes {
                // Unless a later batch's id took the entry over (the same hash).
                if self.batch_of.get(hash) == Some(&number) {
                    self.batch_of.remove(hash);
                }
            }
            self.held -= oldest.hashes.len();
            self.batches.pop_front();
            forgotten += 1;
        }
        if forgotten > 0 && self.batch_of.capacity() > 4 * self.batch_of.len().max(1_024) {
            self.batch_of.shrink_to(2 * self.batch_of.len());
            self.batches.shrink_to(2 * self.batches.len());
        }
    }

    /// The number of the oldest batch remembered (the next one's, if none is).
    fn oldest_number(&self) -> u64 {
        self.next - self.batches.len() as u64
    }

    /// The progress of the batch that took `id` from its copy, if any (forgotten: its
    /// broker message has come). It may be another event's, whose id hashes alike: its
    /// batch's ids then say it did not make `id`'s rows.
    fn take(&mut self, id: &EventId) -> Option<watch::Receiver<Batch>> {
        let number = self.batch_of.remove(&self.hasher.hash_one(id))?;
        let first = self.oldest_number();
        let index = usize::try_from(number.checked_sub(first)?).ok()?;
        self.batches.get(index).map(|b| b.progress.clone())
    }
}

/// Whether the batch whose `progress` this is made `id`'s rows, once it is done.
async fn made_by(progress: Option<watch::Receiver<Batch>>, id: &EventId) -> bool {
    let Some(mut progress) = progress else {
        return false;
    };
    match progress.wait_for(|b| matches!(b, Batch::Done(_))).await {
        Ok(batch) => matches!(&*batch, Batch::Done(made) if made.contains(id)),
        // The batch's task ended without a word (it panicked): nothing to trust.
        Err(_) => false,
    }
}

impl Worker {
    /// Whether this worker made `id`'s rows from its copy, waiting for the batch that took it
    /// if it is still being fanned out. `false` sends the broker's message the usual way.
    pub(super) async fn made_early(&self, id: &EventId) -> bool {
        let progress = self
            .inner
            .made_early
            .lock()
            .ok()
            .and_then(|mut early| early.take(id));
        made_by(progress, id).await
    }

    /// Inserts a batch's planned rows, trying a failed insert again for as long as the recorder
    /// tries its results ([`crate::deliveries::recorder::PATIENCE`]). The rows are what the
    /// batch's early sends are recorded under; without them the relay would publish the
    /// events after its grace, to be sent again (and, from a relay that cannot tell a copy
    /// sent from one never taken, with an attempt of unknown outcome first). Meanwhile this
    /// worker's broker messages for these events wait for the batch, and the next batches
    /// insert before they send.
    async fn insert_planned(
        &self,
        planned: &crate::fanout::Planned,
    ) -> Result<Vec<Result<crate::fanout::FanOut, crate::fanout::FanOutError>>, sea_orm::DbErr>
    {
        let began = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match Box::pin(planned.insert(&self.inner.db)).await {
                Err(e) if began.elapsed() + backoff < crate::deliveries::recorder::PATIENCE => {
                    self.inner
                        .express_inserts_ok
                        .store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "could not insert an express batch's rows; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                fanned => return fanned,
            }
        }
    }

    /// Pops copies from the express lane until `stop` turns true, reconnecting with backoff.
    pub(super) async fn pop_express(self, express: ExpressSource, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        while !*stop.borrow() {
            match express.popper().await {
                Ok(mut popper) => loop {
                    let slot = tokio::select! {
                        _ = stop.changed() => {
                            express.leave().await;
                            return;
                        }
                        slot = self.inner.express_slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => return,
                        },
                    };
                    let pop = popper.pop();
                    tokio::pin!(pop);
                    let popped = tokio::select! {
                        popped = &mut pop => popped,
                        _ = stop.changed() => {
                            // Withdrawn first, so gateways publish to the broker again; the
                            // pop under way may already hold copies (Redis took them from the
                            // list), so it is finished and fanned out, not dropped.
                            express.leave().await;
                            if let Ok(popped) = pop.await
                                && !popped.messages.is_empty()
                            {
                                self.handle_express(popped.messages, popped.heard_since, Some(slot)).await;
                            }
                            return;
                        }
                    };
                    match popped {
                        Ok(popped) => {
                            backoff = Duration::from_millis(100);
                            self.inner
                                .metrics
                                .express_dropped
                                .inc_by(popped.dropped as u64);
                            if !popped.messages.is_empty() {
                                let worker = self.clone();
                                tokio::spawn(async move {
                                    worker
                                        .handle_express(
                                            popped.messages,
                                            popped.heard_since,
                                            Some(slot),
                                        )
                                        .await
                                });
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "express lane lost; the broker carries every event meanwhile");
                            break;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the express lane; the broker carries every event meanwhile")
                }
            }
            if !super::consume::wait_to_reconnect(&mut stop, &mut backoff).await {
                return;
            }
        }
    }

    /// Fans out copies from the express lane and sends what that created, as
    /// [`Worker::handle_batch`] does for the broker's messages, with nothing to settle: a
    /// copy that fails here is the broker's message's to carry.
    /// `slot`, the lane's place this batch holds, is freed once its rows are committed: the
    /// sends and their recording are bounded by the endpoints' slots, as the broker's are.
    ///
    /// While the last fan-out's insert went through, the first attempts go out as the rows'
    /// insert commits rather than after it ([`deliveries::RowInsert`]): the insert's round trip
    /// and WAL flush are off the webhook's path. The event is marked published only once its
    /// rows are committed, and each result is recorded under the claim the insert made (or,
    /// if another fan-out made the row, as an attempt row of its own). A failed insert is
    /// tried again ([`Worker::insert_planned`]), and while it fails the next batches insert
    /// before they send; a worker killed before its insert commits leaves the event to the
    /// relay, whose fan-out records the send as of unknown outcome (docs/webhooks.md).
    pub async fn handle_express(
        &self,
        messages: Vec<BusMessage>,
        heard_since: Option<chrono::DateTime<chrono::Utc>>,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Vec<AttemptOutcome> {
        let _in_flight = InFlight::start(&self.inner);
        let Ok(done) = self
            .inner
            .made_early
            .lock()
            .map(|mut early| early.start(messages.iter().map(|m| m.event_id().clone())))
        else {
            return Vec::new();
        };
        let spans = super::consume::fan_out_spans(&messages);
        let planned = match self.plan_fan_out(&messages).await {
            Ok(planned) => planned,
            Err(e) => {
                tracing::debug!(error = %e, events = messages.len(), "express fan-out failed; the broker's messages follow");
                done.send_replace(Batch::Done(Arc::default()));
                return Vec::new();
            }
        };
        let inserts_go_through = self.inner.express_inserts_ok.load(Ordering::Relaxed);
        // Only events created while this worker was heard: the copy of an event from before
        // may be racing its broker message, which another fan-out may already have sent.
        let early_after = heard_since.map(|t| t + CLOCKS_APART);
        let early: Vec<_> = if inserts_go_through {
            planned
                .claims()
                .into_iter()
                .filter(|c| early_after.is_some_and(|t| c.event.created_at > t))
                .collect()
        } else {
            Vec::new()
        };
        let sent_early = early.len();
        let early_ids: HashSet<_> = early.iter().map(|c| c.delivery.id.clone()).collect();
        self.inner
            .metrics
            .express_early_sends
            .inc_by(sent_early as u64);
        let (row_insert_over, row_insert) = deliveries::RowInsert::pending();
        let inserted = async {
            let fanned = self.insert_planned(&planned).await;
            self.inner
                .express_inserts_ok
                .store(fanned.is_ok(), Ordering::Relaxed);
            let fanned = match fanned {
                Ok(fanned) => fanned,
                Err(e) => {
                    tracing::warn!(error = %e, events = messages.len(), sent_early, "express fan-out failed; the relay publishes these events after its grace");
                    row_insert_over.send_replace(Some(deliveries::Inserted::Failed));
                    self.inner
                        .metrics
                        .express_extra_sends
                        .inc_by(sent_early as u64);
                    done.send_replace(Batch::Done(Arc::default()));
                    return Vec::new();
                }
            };
            drop(spans);
            let mut made = HashSet::with_capacity(messages.len());
            let mut made_messages = Vec::with_capacity(messages.len());
            let mut claimed = Vec::new();
            let mut usage = Vec::new();
            for (message, fan) in messages.into_iter().zip(fanned) {
                // An unknown event only comes in a v1 message, which the lane never carries.
                let Ok(fan) = fan else { continue };
                let created = fan.claimed.len() + fan.queued;
                let scope = entity::ids::Scope::new(message.merchant_id().clone(), fan.livemode);
                usage.push((scope, i64::try_from(created).unwrap_or(i64::MAX)));
                made.insert(message.event_id().clone());
                claimed.extend(fan.claimed);
                made_messages.push(message);
            }
            // The early ones are on their way: only their rows' claims are news to them.
            let (sent, claimed): (Vec<_>, Vec<_>) = claimed
                .into_iter()
                .partition(|c| early_ids.contains(&c.delivery.id));
            let made_rows: HashSet<_> = sent.into_iter().map(|c| c.delivery.id).collect();
            self.inner
                .metrics
                .express_extra_sends
                .inc_by(sent_early.saturating_sub(made_rows.len()) as u64);
            row_insert_over.send_replace(Some(deliveries::Inserted::Made(Arc::new(made_rows))));
            self.inner
                .metrics
                .express_fanned_out
                .inc_by(made.len() as u64);
            let made = Arc::new(made);
            done.send_replace(Batch::Done(made.clone()));
            drop(slot);
            // The gateway published nothing to the broker for most of these, so the
            // dashboards hear of them from here, and their outbox rows are marked here: the
            // relay publishes only what is still unmarked after its grace.
            for message in &made_messages {
                self.inner.bus.announce(LiveNotice::from(message));
            }
            let bookkeeping = async {
                let metering = self
                    .inner
                    .cache
                    .count_usage_of_each(runtime::usage::metric::WEBHOOK_DELIVERIES, usage);
                tokio::join!(
                    Box::pin(metering),
                    self.inner.marks.mark(made.iter().cloned())
                );
            };
            let ((), attempts) = tokio::join!(Box::pin(bookkeeping), self.deliver_loaded(claimed));
            attempts
        };
        let (mut attempts, after_insert) = tokio::join!(
            self.deliver_while_inserting(early, row_insert),
            Box::pin(inserted)
        );
        attempts.extend(after_insert);
        attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> EventId {
        EventId::from_trusted(s)
    }

    #[tokio::test]
    async fn a_broker_message_waits_for_the_batch_that_took_its_event_and_is_then_forgotten() {
        let mut early = MadeEarly::default();
        let done = early.start([id("evt_a"), id("evt_b")]);
        let progress = early.take(&id("evt_a"));
        let waiting = tokio::spawn(async move { made_by(progress, &id("evt_a")).await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "waits while the batch is fanned out"
        );
        // The batch made a's rows only (b's failed).
        done.send_replace(Batch::Done(Arc::new(HashSet::from([id("evt_a")]))));
        assert!(waiting.await.expect("task"));
        assert!(!made_by(early.take(&id("evt_b")), &id("evt_b")).await);
        // A second broker message for a (a redelivery) goes the usual way.
        assert!(early.take(&id("evt_a")).is_none());
        assert!(!made_by(None, &id("evt_c")).await);
    }

    /// Every id hashes alike.
    #[derive(Default)]
    struct Colliding;
    impl std::hash::Hasher for Colliding {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[tokio::test]
    async fn ids_whose_hashes_collide_never_vouch_for_each_other() {
        let mut early =
            MadeEarly::with_hasher(std::hash::BuildHasherDefault::<Colliding>::default());
        let _done_a = early.start([id("evt_a")]);
        let done_b = early.start([id("evt_b")]);
        done_b.send_replace(Batch::Done(Arc::new(HashSet::from([id("evt_b")]))));
        // a's message finds b's batch under the shared hash: b's ids say it did not make a.
        let progress = early.take(&id("evt_a"));
        assert!(progress.is_some());
        assert!(!made_by(progress, &id("evt_a")).await);
        // The entry is gone with a's message: b's goes the usual way too (a query, not a loss).
        assert!(!made_by(early.take(&id("evt_b")), &id("evt_b")).await);
    }

    #[test]
    fn events_are_forgotten_after_a_while_or_past_the_limit_and_a_burst_is_given_back() {
        let mut early = MadeEarly::default();
        let t0 = Instant::now();
        let _burst = early.start_at(t0, (0..20_000).map(|n| id(&format!("evt_{n}"))));
        let grown = early.batch_of.capacity();
        let almost = t0 + REMEMBERED_FOR - Duration::from_millis(1);
        let _recent = early.start_at(almost, [id("evt_recent")]);
        assert_eq!(early.batch_of.len(), 20_001, "all still remembered");
        let _later = early.start_at(t0 + REMEMBERED_FOR, [id("evt_later")]);
        assert!(early.take(&id("evt_0")).is_none());
        assert!(early.take(&id("evt_recent")).is_some());
        assert_eq!((early.batch_of.len(), early.held), (1, 2));
        assert!(
            early.batch_of.capacity() < grown / 4,
            "{} of {grown}",
            early.batch_of.capacity()
        );

        // Past the limit the oldest batches go however young.
        let ids = (1..REMEMBERED_AT_MOST).map(|n| id(&format!("evt_{n}")));
        let _huge = early.start_at(t0 + REMEMBERED_FOR, ids);
        let _next = early.start_at(t0 + REMEMBERED_FOR, [id("evt_next")]);
        assert!(early.take(&id("evt_later")).is_none());
        assert!(early.take(&id("evt_1")).is_some());
        assert!(early.take(&id("evt_next")).is_some());
        assert_eq!(early.held, REMEMBERED_AT_MOST);
    }

    #[tokio::test]
    async fn a_batch_that_ended_without_a_word_is_not_trusted() {
        let mut early = MadeEarly::default();
        let done = early.start([id("evt_a")]);
        let progress = early.take(&id("evt_a"));
        drop(done);
        assert!(!made_by(progress, &id("evt_a")).await);
    }
}
