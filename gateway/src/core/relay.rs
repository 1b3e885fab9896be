//! The outbox relay: publishes committed, unpublished events to the bus (each with its row,
//! so the worker need not read it back), then marks them.
//!
//! It runs after every commit that wrote an event (a [`Relay::notify`]) and on an interval,
//! which republishes anything a crash or a broker outage left behind. Rows are selected
//! `FOR UPDATE SKIP LOCKED` so several gateways share the work; publishing twice is allowed
//! (the worker's fan-out is idempotent), losing is not: rows are marked only after the
//! broker confirmed them.
//!
//! A writer may publish its own event right after its commit ([`Relay::publish_now`], for a
//! new payment's first event): no locking turn to wait for, which is most of the time between
//! the API's answer and the worker's send. Such a row is written with `writer_publishes` and
//! the relay leaves it alone until it is older than the grace, then takes it over like any
//! other: a writer that crashed, or whose publish failed, loses nothing. Confirmed ids are
//! marked in batches, by whichever publish finds no mark running.
//!
//! With an [`Express`] lane, a writer's event goes to it first. If a worker popped the lane
//! lately, the broker carries nothing: that worker fans the copy out and marks the event
//! published, and anything it did not mark (a lost copy, a worker killed, a fan-out that
//! failed) is the relay's after the grace, as for a writer that crashed. If no worker was
//! heard, the broker carries the event as well, at once (docs/webhooks.md, "the express
//! lane"). A push slower than its 20 ms is awaited a second longer before the broker carries
//! anything: its copy may already be in a worker's hands, and a broker message beside it could
//! be fanned out and sent by another worker too; still unanswered, the event is left to the
//! relay's grace. A writer's event the relay takes over with a lane is marked
//! `taken_over_from_lane`: a worker may have sent its webhooks from the copy and died before
//! its rows committed, so the fan-out records an attempt of unknown outcome first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::bus::{BusMessage, EventOnBus};
use entity::events;
use entity::ids::EventId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use runtime::bus::{EventBus, Express, Push, Pushed};
use runtime::outbox::{MARK_LINGER, PublishedMarks};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tokio::sync::Notify;

use crate::core::metrics::OutcomeLabel;

const BATCH: u64 = 500;

/// The longest a batch's publish may take while it holds its rows locked: a broker that
/// hangs (a blocked connection, a lost confirm) must not hold them, nor the relay, for ever.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Writers' batches that may await their confirms at once. At 300 payments a second a confirm
/// (1–3 ms under load) rarely has another beside it, so each event goes out alone and at once;
/// in a closed loop the places fill and events gather into larger publishes.
const MAX_UNCONFIRMED: usize = 2;

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    bus: EventBus,
    wake: Notify,
    /// How long the relay leaves an event alone whose writer publishes it.
    writer_grace: Duration,
    /// Writers' events handed over whose publish (and mark or hand-back) is not done; a
    /// stopping gateway waits for them, woken by `settled`.
    in_flight: AtomicUsize,
    settled: Notify,
    /// Writers' events waiting for a place among the batches awaiting confirms.
    waiting: std::sync::Mutex<Vec<EventOnBus>>,
    /// Writers' batches published and not yet confirmed.
    unconfirmed: AtomicUsize,
    /// Writers' events the broker confirmed, marked published in batches.
    marks: PublishedMarks,
    /// Where writers' events go first: a worker heard on it takes them instead of the broker.
    express: Option<Express>,
    /// Events pushed to `express`, by what became of the push.
    pushes: Family<OutcomeLabel, Counter>,
    slow_pushes: Counter,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Bus(#[from] runtime::bus::BusError),
    #[error("the broker did not confirm within {0:?}; the events stay unpublished")]
    Timeout(Duration),
}

impl Relay {
    /// `writer_grace`: how old an event its writer publishes must be before the relay takes
    /// it over (longer than a publish normally takes, or both publish it).
    pub fn new(db: DatabaseConnection, bus: EventBus, writer_grace: Duration) -> Relay {
        Relay {
            inner: Arc::new(Inner {
                marks: PublishedMarks::new(db.clone(), MARK_LINGER),
                db,
                bus,
                wake: Notify::new(),
                writer_grace,
                in_flight: AtomicUsize::new(0),
                settled: Notify::new(),
                waiting: std::sync::Mutex::new(Vec::new()),
                unconfirmed: AtomicUsize::new(0),
                express: None,
                pushes: Family::default(),
                slow_pushes: Counter::default(),
            }),
        }
    }

    /// A relay not yet cloned that also pushes writers' events to the express lane, counting
    /// them in `pushes` by what became of each push, and in `slow_pushes` those whose answer
    /// took longer than [`runtime::bus::express::PUSH_WAIT`].
    pub fn with_express(
        mut self,
        express: Option<Express>,
        pushes: Family<OutcomeLabel, Counter>,
        slow_pushes: Counter,
    ) -> Relay {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.express = express;
            inner.pushes = pushes;
            inner.slow_pushes = slow_pushes;
        }
        self
    }

    /// A relay not yet cloned, marking writers' events after `linger` rather than
    /// [`MARK_LINGER`] (a test's, to make it longer than a busy machine's hiccup).
    pub fn with_mark_linger(mut self, linger: Duration) -> Relay {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.marks = PublishedMarks::new(inner.db.clone(), linger);
        }
        self
    }

    /// Asks the relay to run soon (after a commit that wrote events).
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }

    /// Publishes one batch of unpublished events (those whose writer publishes them only once
    /// past the grace); returns how many were published.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        self.relay_turn(self.past_grace()).await
    }

    /// Writers' events created before this are the relay's to take over.
    fn past_grace(&self) -> DateTime<Utc> {
        let grace = chrono::Duration::from_std(self.inner.writer_grace).unwrap_or_default();
        Utc::now() - grace
    }

    /// One turn, taking over writers' events created before `writers_before`.
    async fn relay_turn(&self, writers_before: DateTime<Utc>) -> Result<usize, RelayError> {
        let txn = self.inner.db.begin().await?;
        let pending = events::Entity::find()
            .filter(events::Column::PublishedAt.is_null())
            .filter(
                Condition::any()
                    .add(events::Column::WriterPublishes.eq(false))
                    .add(events::Column::CreatedAt.lt(writers_before)),
            )
            .order_by_asc(events::Column::Id)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        // Each event's publish is a span of the trace that caused it (the batch is many traces).
        // A writer's event comes here only past the grace: with a lane, a worker may have taken
        // its copy and stopped before recording what it sent.
        let lane = self.inner.express.is_some();
        let pending: Vec<EventOnBus> = pending
            .into_iter()
            .map(|e| {
                let taken_over_from_lane = lane && e.writer_publishes;
                EventOnBus {
                    taken_over_from_lane,
                    ..EventOnBus::from(e)
                }
            })
            .collect();
        let spans: Vec<tracing::Span> = pending.iter().map(publish_span).collect();
        let messages: Vec<BusMessage> = pending.into_iter().map(BusMessage::V2).collect();
        // On a bus error (or no confirm in time) the transaction rolls back: the rows stay
        // unpublished for next time, and their locks are released.
        tokio::time::timeout(PUBLISH_TIMEOUT, self.inner.bus.publish(&messages))
            .await
            .map_err(|_| RelayError::Timeout(PUBLISH_TIMEOUT))??;
        drop(spans);
        let ids: Vec<&EventId> = messages.iter().map(BusMessage::event_id).collect();
        let count = ids.len();
        runtime::db::keep_generic_plans(&txn, count).await?;
        events::Entity::update_many()
            .col_expr(events::Column::PublishedAt, Expr::value(Utc::now()))
            .filter(events::Column::Id.is_in(runtime::db::padded(ids)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(count)
    }

    /// Drains everything unpublished now (writers' events once past the grace).
    pub async fn drain(&self) -> Result<usize, RelayError> {
        self.turns_until_drained(|| self.past_grace()).await
    }

    /// Turns until one publishes less than a full batch, each taking over the writers' events
    /// created before `writers_before()`.
    async fn turns_until_drained(
        &self,
        writers_before: impl Fn() -> DateTime<Utc>,
    ) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.relay_turn(writers_before()).await?;
            total += n;
            if (n as u64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// A stopping gateway's last drain: waits for its writers' publishes in flight and their
    /// marks (at most [`PUBLISH_TIMEOUT`]), then publishes everything still unpublished,
    /// writers' events of any age included.
    pub async fn drain_before_stop(&self) -> Result<usize, RelayError> {
        let inner = &self.inner;
        let _ = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            loop {
                let settled = inner.settled.notified();
                if inner.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                settled.await;
            }
        })
        .await;
        self.turns_until_drained(Utc::now).await
    }

    /// Publishes an event its writer has just committed with
    /// [`runtime::outbox::Route::Writer`], without waiting for a turn, and marks it once the
    /// broker confirmed it. Nothing is lost if this fails or the process dies first: the
    /// event is still unpublished, and the relay takes it over after the grace.
    pub fn publish_now(&self, event: EventOnBus) {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        lock(&self.inner.waiting).push(event);
        self.start_batches();
    }

    /// Publishes what writers handed over, as one batch per free place: with fewer than
    /// [`MAX_UNCONFIRMED`] batches awaiting their confirms an event goes out at once; past
    /// that, events gather for the next batch (under load, a few large publishes cost the
    /// broker, the worker and PostgreSQL less than many single ones).
    fn start_batches(&self) {
        let inner = &self.inner;
        loop {
            let unconfirmed = inner.unconfirmed.load(Ordering::SeqCst);
            if unconfirmed >= MAX_UNCONFIRMED {
                return;
            }
            if inner
                .unconfirmed
                .compare_exchange(
                    unconfirmed,
                    unconfirmed + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_err()
            {
                continue;
            }
            let batch = std::mem::take(&mut *lock(&inner.waiting));
            if batch.is_empty() {
                inner.unconfirmed.fetch_sub(1, Ordering::SeqCst);
                // An event handed over meanwhile by a writer that found no free place.
                if lock(&inner.waiting).is_empty() {
                    return;
                }
                continue;
            }
            tokio::spawn(self.clone().publish_batch(batch));
        }
    }

    /// One writers' batch: published, its place freed for the next, then marked (or handed to
    /// the relay).
    async fn publish_batch(self, batch: Vec<EventOnBus>) {
        let count = batch.len();
        let spans: Vec<tracing::Span> = batch.iter().map(publish_span).collect();
        let messages: Vec<BusMessage> = batch.into_iter().map(BusMessage::V2).collect();
        // The copies go first (one round trip to Redis, at most 20 ms). When a worker pops the
        // lane, it fans them out and marks their events published itself: the broker carries
        // nothing for them, and the relay takes over any the worker did not mark by the grace.
        // Otherwise the broker's message goes too, and the copy only races it.
        let mut holds_place = true;
        let pushed = match &self.inner.express {
            Some(express) => {
                let pushed = match express.push(&messages).await {
                    Push::Answered(pushed) => pushed,
                    // Its copies may be in the list already: the answer decides, awaited
                    // off this batch's place so that the next batches go on meanwhile.
                    Push::Slow(slow) => {
                        self.inner.slow_pushes.inc_by(count as u64);
                        holds_place = false;
                        self.free_place();
                        slow.answer().await
                    }
                };
                self.inner
                    .pushes
                    .get_or_create(&OutcomeLabel {
                        outcome: pushed.as_str().to_string(),
                    })
                    .inc_by(count as u64);
                Some(pushed)
            }
            None => None,
        };
        let published = match pushed {
            // A worker takes them; or, unanswered, the relay does after the grace.
            Some(Pushed::ForAWorker | Pushed::Unanswered) => None,
            Some(Pushed::Unheard | Pushed::Failed) | None => {
                Some(tokio::time::timeout(PUBLISH_TIMEOUT, self.inner.bus.publish(&messages)).await)
            }
        };
        drop(spans);
        if holds_place {
            self.free_place();
        }
        let Some(published) = published else {
            self.settle(count);
            return;
        };
        let ids: Vec<EventId> = messages.iter().map(|m| m.event_id().clone()).collect();
        match published {
            Ok(Ok(())) => self.inner.marks.mark(ids).await,
            Ok(Err(e)) => {
                tracing::warn!(events = count, error = %e, "publishing events at once failed; they are handed to the relay");
                self.hand_over(ids).await;
            }
            Err(_) => {
                tracing::warn!(
                    events = count,
                    "the broker did not confirm events in time; they are handed to the relay"
                );
                self.hand_over(ids).await;
            }
        }
        // A task that found a mark running returns before its ids are marked, but the one
        // marking them is still in flight until they are.
        self.settle(count);
    }

    /// Gives a writers' batch's place among those awaiting confirms to the next batch.
    fn free_place(&self) {
        self.inner.unconfirmed.fetch_sub(1, Ordering::SeqCst);
        self.start_batches();
    }

    /// `count` writers' events handed over are done with (published and marked, handed back,
    /// or left to a worker's express lane).
    fn settle(&self, count: usize) {
        if self.inner.in_flight.fetch_sub(count, Ordering::SeqCst) == count {
            self.inner.settled.notify_waiters();
        }
    }

    /// Gives writers' events whose publish failed to the relay at once, rather than after the
    /// grace (the broker may be back before then). If even that fails, the grace still holds.
    async fn hand_over(&self, ids: Vec<EventId>) {
        let handed = events::Entity::update_many()
            .col_expr(events::Column::WriterPublishes, Expr::value(false))
            .filter(events::Column::Id.is_in(runtime::db::padded(ids)))
            .exec(&self.inner.db)
            .await;
        match handed {
            Ok(_) => self.notify(),
            Err(e) => {
                tracing::warn!(error = %e, "handing events to the relay failed; it takes them over after its grace");
            }
        }
    }

    /// Runs until `stop` fires: on every notify, and every `interval` regardless.
    pub async fn run(self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            match self.drain().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("relay publishing again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "relay cannot publish; events stay in the outbox and will be retried");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.inner.wake.notified(), if !failing => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// The span of one event's publish, a part of the trace that caused the event.
fn publish_span(e: &EventOnBus) -> tracing::Span {
    let span = tracing::info_span!(
        "outbox.publish",
        otel.kind = "producer",
        event_id = %e.event_id,
        event_type = %e.event_type,
        trace_id = tracing::field::Empty,
    );
    runtime::trace_context::continue_from(&span, e.traceparent.as_deref());
    span
}

/// A list's lock; a panic while it was held cannot leave a list torn.
fn lock<T>(list: &std::sync::Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    list.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The outbox's depth (events not yet published) and its oldest event's age in seconds.
pub async fn outbox<C: sea_orm::ConnectionTrait>(db: &C) -> Result<(u64, f64), sea_orm::DbErr> {
    use sea_orm::PaginatorTrait as _;
    let unpublished = || events::Entity::find().filter(events::Column::PublishedAt.is_null());
    let depth = unpublished().count(db).await?;
    let oldest: Option<Option<chrono::DateTime<Utc>>> = unpublished()
        .select_only()
        .column_as(events::Column::CreatedAt.min(), "oldest")
        .into_tuple()
        .one(db)
        .await?;
    let age = oldest
        .flatten()
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok((depth, age))
}
