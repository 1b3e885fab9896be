//! The worker: consumes events from the bus, fans them out to delivery rows, sends them, and
//! sweeps due rows on a schedule.
//!
//! [`Worker::sweep_once`] and [`Worker::handle`] each run one step and return what happened,
//! so tests drive them deterministically; [`Worker::run_until_stopped`] wires them to the
//! consumer and to the sweep loop (a period, and a wake-up when a retry falls due sooner).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use entity::ids::DeliveryId;
use runtime::cache::Cache;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};

use crate::deliveries::recorder::Recorder;
use crate::deliveries::{self, AttemptOutcome, Rules};
use crate::metrics::DeliveryMetrics;
use crate::sender::WebhookSender;
use crate::settings::WebhookSettings;
use crate::slots::Slots;
use runtime::bus::EventBus;

mod consume;
mod deliver;
mod express;

/// Sweeps one worker runs at once at most (each claims its own batch).
const CONCURRENT_SWEEPS: usize = 4;
/// The soonest a sweep runs again for rows already due when the last one ended.
const AGAIN_AFTER: chrono::Duration = chrono::Duration::milliseconds(100);

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepOutcome {
    pub claimed: usize,
    pub succeeded: usize,
    pub retrying: usize,
    pub failed: usize,
    /// True when another sweep of this worker was still running, so this one did nothing.
    pub skipped_overlap: bool,
}

/// What handling one bus message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Rows created (and, with immediate delivery, attempted once).
    FannedOut {
        created: usize,
        already_present: usize,
        attempts: Vec<AttemptOutcome>,
    },
    /// Its event's rows were made from its express copy: acknowledged, nothing else done.
    MadeEarly,
    DeadLettered,
    Requeued,
}

#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    bus: EventBus,
    sender: WebhookSender,
    settings: WebhookSettings,
    rules: Rules,
    /// Commits attempt results in groups.
    recorder: Recorder,
    metrics: Arc<DeliveryMetrics>,
    /// Requests in flight to each endpoint from this worker.
    slots: Slots,
    /// Shared counters: endpoints' `rate_limit` and usage metering (Redis across workers).
    cache: Cache,
    /// Sweeps under way in this worker. More than one may run: a batch waiting on a slow
    /// receiver must not hold back the due rows behind it (claims skip locked rows, so
    /// concurrent sweeps never take the same row).
    sweeps: Arc<tokio::sync::Semaphore>,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Deliveries this worker holds a claim on and has not recorded yet, released at shutdown.
    claims: std::sync::Mutex<std::collections::HashMap<DeliveryId, String>>,
    shutdown_grace: std::sync::Mutex<Duration>,
    /// The earliest time a retry is due that the sweep loop should wake for, before its
    /// regular tick: a schedule's delays hold to the second, not to the sweep interval.
    next_wake: std::sync::Mutex<Option<tokio::time::Instant>>,
    wake: Notify,
    /// Where fresh events' copies wait, when the processes run one ([`express`]).
    express: Option<runtime::bus::ExpressSource>,
    /// Events whose rows this worker made from their express copies.
    made_early: std::sync::Mutex<express::MadeEarly>,
    /// Whether the last express fan-out's insert went through: while it does, a batch's first
    /// attempts are sent as its insert commits ([`Worker::handle_express`]).
    express_inserts_ok: std::sync::atomic::AtomicBool,
    /// Batches of express copies this worker may fan out at once.
    express_slots: Arc<tokio::sync::Semaphore>,
    /// The events this worker fanned out from their express copies, marked published.
    marks: runtime::outbox::PublishedMarks,
    /// Merchants' enabled endpoints, kept by their version for the fan-out.
    endpoint_copies: crate::subscribers::EndpointCopies,
}

/// Counts a task as in flight until dropped, so shutdown can wait for sends to finish.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn start(inner: &Arc<Inner>) -> InFlight {
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Worker {
    /// A worker whose delivery metrics are registered in `registry` (the worker process's own,
    /// or the gateway's in embedded mode).
    pub fn registered(
        db: DatabaseConnection,
        bus: EventBus,
        cache: Cache,
        settings: WebhookSettings,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<(Worker, Arc<DeliveryMetrics>), crate::sender::SenderError> {
        let metrics = Arc::new(DeliveryMetrics::new(registry));
        Ok((
            Worker::new(db, bus, cache, settings, metrics.clone())?,
            metrics,
        ))
    }

    pub fn new(
        db: DatabaseConnection,
        bus: EventBus,
        cache: Cache,
        settings: WebhookSettings,
        metrics: Arc<DeliveryMetrics>,
    ) -> Result<Worker, crate::sender::SenderError> {
        let sender = WebhookSender::new(
            settings.timeout,
            settings.targets,
            settings.proxy.as_deref(),
        )?;
        // Sends are bounded by the HTTP timeout, so waiting a little longer lets them finish.
        let settings_timeout_grace = settings.timeout + Duration::from_secs(2);
        Ok(Worker {
            inner: Arc::new(Inner {
                rules: settings.rules(),
                endpoint_copies: crate::subscribers::EndpointCopies::new(
                    metrics.endpoints_from_copy.clone(),
                    metrics.endpoints_read.clone(),
                ),
                marks: runtime::outbox::PublishedMarks::new(
                    db.clone(),
                    runtime::outbox::MARK_LINGER,
                ),
                recorder: Recorder::start(db.clone(), bus.clone(), cache.clone(), settings.rules()),
                slots: Slots::new(settings.endpoint_concurrency),
                cache,
                db,
                bus,
                sender,
                settings,
                metrics,
                sweeps: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SWEEPS)),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                claims: std::sync::Mutex::default(),
                shutdown_grace: std::sync::Mutex::new(settings_timeout_grace),
                next_wake: std::sync::Mutex::new(None),
                wake: Notify::new(),
                express: None,
                made_early: std::sync::Mutex::default(),
                express_inserts_ok: std::sync::atomic::AtomicBool::new(true),
                express_slots: Arc::new(tokio::sync::Semaphore::new(express::EXPRESS_BATCHES)),
            }),
        })
    }

    /// A worker not yet cloned that also pops the express lane while it runs.
    pub fn with_express(mut self, express: Option<runtime::bus::ExpressSource>) -> Worker {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.express = express;
        }
        self
    }

    /// How long shutdown waits for sends in flight before releasing what is left.
    pub fn set_shutdown_grace(&self, grace: Duration) {
        if let Ok(mut g) = self.inner.shutdown_grace.lock() {
            *g = grace;
        }
    }

    /// Notes claimed rows (with their claim's token) as held: renewed while held, released at
    /// shutdown, and never taken over by this worker's own sweeps.
    fn hold(&self, rows: impl IntoIterator<Item = (DeliveryId, String)>) {
        if let Ok(mut c) = self.inner.claims.lock() {
            c.extend(rows);
        }
    }

    /// The tokens of the claims this worker holds rows of.
    fn held_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .inner
            .claims
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }

    /// Renews the leases of the rows this worker holds every quarter lease while it runs, so
    /// a lease only has to outlast a renewal's absence (a dead worker's rows come back within
    /// a lease), not the longest send and its recording.
    async fn renew_loop(self) {
        let lease = self.inner.settings.lease();
        let mut every = tokio::time::interval(lease / 4);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let tokens = self.held_tokens();
            if let Err(e) = deliveries::renew(&self.inner.db, &tokens, lease).await {
                tracing::warn!(error = %e, claims = tokens.len(), "could not renew the leases of held deliveries; trying again");
            }
        }
    }

    fn let_go(&self, id: &DeliveryId) {
        if let Ok(mut c) = self.inner.claims.lock() {
            c.remove(id);
        }
    }

    /// Asks the sweep loop to run at `due` (if that is before the next run it has planned).
    pub fn wake_at(&self, due: chrono::DateTime<chrono::Utc>) {
        let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
        let at = tokio::time::Instant::now() + wait;
        if let Ok(mut next) = self.inner.next_wake.lock()
            && next.is_none_or(|n| at < n)
        {
            *next = Some(at);
            self.inner.wake.notify_one();
        }
    }

    /// Sweeps at start, every `sweep_interval`, and when a retry or a lease falls due sooner
    /// (this worker's own retries as it records them; every worker's as read after each
    /// sweep), until `stop`.
    async fn sweep_loop(self, mut stop: watch::Receiver<bool>) {
        let period = self.inner.settings.sweep_interval;
        let mut tick = tokio::time::Instant::now() + period;
        // At once on start: what a dead worker held, or retries that fell due while none ran,
        // go out now; the sweep also reads when the next one falls due.
        self.spawn_sweep();
        loop {
            let woken = self.inner.next_wake.lock().ok().and_then(|n| *n);
            let at = woken.map_or(tick, |w| w.min(tick));
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.inner.wake.notified() => continue,
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= tick {
                tick = now + period;
            }
            if let Ok(mut next) = self.inner.next_wake.lock()
                && next.is_some_and(|n| n <= now)
            {
                *next = None;
            }
            self.spawn_sweep();
        }
    }

    /// Starts a sweep without waiting for the last one: a batch held up by a slow receiver
    /// (up to the attempt timeout) does not stall the next due rows. At most
    /// CONCURRENT_SWEEPS run at once; sweep_once skips beyond that. After it, the earliest
    /// retry due later (any worker's) becomes a wake-up.
    fn spawn_sweep(&self) {
        // Counted as in flight before it is spawned, so a shutdown that starts now waits for
        // it rather than racing its claim.
        let in_flight = InFlight::start(&self.inner);
        let worker = self.clone();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            match worker.sweep_once().await {
                Ok(o) if o.claimed > 0 => tracing::info!(
                    claimed = o.claimed,
                    succeeded = o.succeeded,
                    retrying = o.retrying,
                    failed = o.failed,
                    "sweep"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sweep failed"),
            }
            match deliveries::next_retry_due(&worker.inner.db).await {
                // What is due already (it fell due while every sweep was busy) is swept again
                // shortly, not at the next tick; the pause keeps rows that cannot be sent yet
                // (their endpoint's slots are full) from spinning the loop.
                Ok(Some(due)) => worker.wake_at(due.max(chrono::Utc::now() + AGAIN_AFTER)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not read the next retry's time"),
            }
        });
    }

    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.inner.metrics
    }

    /// Claims and sends due deliveries, batch after batch while due rows remain.
    pub async fn sweep_once(&self) -> Result<SweepOutcome, sea_orm::DbErr> {
        let Ok(_permit) = self.inner.sweeps.clone().try_acquire_owned() else {
            return Ok(SweepOutcome {
                skipped_overlap: true,
                ..SweepOutcome::default()
            });
        };
        let _in_flight = InFlight::start(&self.inner);
        self.sweep_batches().await
    }

    async fn sweep_batches(&self) -> Result<SweepOutcome, sea_orm::DbErr> {
        let s = &self.inner.settings;
        let mut total = SweepOutcome::default();
        loop {
            let claim = deliveries::claim_due(
                &self.inner.db,
                s.batch_size,
                s.endpoint_concurrency,
                s.lease(),
                &self.held_tokens(),
            )
            .await?;
            self.inner
                .metrics
                .unknown_outcomes
                .inc_by(u64::try_from(claim.taken_over).unwrap_or(u64::MAX));
            let ids = claim.ids;
            if let Some(token) = &claim.token {
                self.hold(ids.iter().map(|id| (id.clone(), token.clone())));
            }
            let more = claim.more && !ids.is_empty();
            total.claimed += ids.len();
            for outcome in self.deliver(&ids).await {
                match outcome {
                    AttemptOutcome::Succeeded => total.succeeded += 1,
                    AttemptOutcome::WillRetry { .. } => total.retrying += 1,
                    AttemptOutcome::Failed { .. } => total.failed += 1,
                    AttemptOutcome::Skipped => {}
                }
            }
            if !more {
                return Ok(total);
            }
        }
    }

    /// Runs the consumer and the scheduled sweep until `shutdown` completes, then stops
    /// taking work and waits (up to the HTTP timeout and a margin) for sends in flight.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let renewals = tokio::spawn(self.clone().renew_loop());
        let consumer = tokio::spawn(self.clone().consume(stop_rx.clone()));
        let sweeps = tokio::spawn(self.clone().sweep_loop(stop_rx.clone()));
        let express = self
            .inner
            .express
            .clone()
            .map(|lane| tokio::spawn(self.clone().pop_express(lane, stop_rx.clone())));
        shutdown.await;
        tracing::info!("worker stopping: no new work; waiting for sends in flight");
        let _ = stop_tx.send(true);
        let _ = consumer.await;
        let _ = sweeps.await;
        if let Some(express) = express {
            let _ = express.await;
        }
        let grace = self
            .inner
            .shutdown_grace
            .lock()
            .map(|g| *g)
            .unwrap_or_default();
        let _ = tokio::time::timeout(grace, async {
            while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
            }
        })
        .await;
        self.release_claims().await;
        renewals.abort();
        Ok(())
    }

    /// Gives back deliveries this worker claimed but did not record, so another worker can
    /// take them now rather than after the lease.
    async fn release_claims(&self) {
        let tokens = self.held_tokens();
        if tokens.is_empty() {
            return;
        }
        match deliveries::release(&self.inner.db, &tokens).await {
            Ok(n) => tracing::info!(released = n, "released claimed deliveries at shutdown"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release claims; their leases will expire")
            }
        }
    }
}
