//! The worker: consumes events from the bus, fans them out to delivery rows, sends them, and
//! sweeps due rows on a schedule.
//!
//! [`Worker::sweep_once`] and [`Worker::handle`] each run one step and return what happened,
//! so tests drive them deterministically; [`Worker::run_until_stopped`] wires them to the
//! consumer and to a `runtime::schedule` period for production.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::time::Instant;

use entity::ids::DeliveryId;
use entity::webhook_endpoints;
use futures_util::FutureExt as _;
use futures_util::future::join_all;
use runtime::cache::Cache;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};

use crate::deliveries::{self, AttemptContext, AttemptOutcome, Rules};
use crate::fanout::{FanOutError, fan_out_batch};
use crate::metrics::DeliveryMetrics;
use crate::recorder::Recorder;
use crate::sender::WebhookSender;
use crate::settings::WebhookSettings;
use crate::slots::Slots;
use runtime::bus::{EventBus, Received};
use runtime::schedule::{self, Schedule};

/// Sweeps one worker runs at once at most (each claims its own batch).
const CONCURRENT_SWEEPS: usize = 4;

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
    claims: std::sync::Mutex<std::collections::HashSet<DeliveryId>>,
    shutdown_grace: std::sync::Mutex<Duration>,
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
                recorder: Recorder::start(db.clone(), bus.clone(), settings.rules()),
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
            }),
        })
    }

    /// How long shutdown waits for sends in flight before releasing what is left.
    pub fn set_shutdown_grace(&self, grace: Duration) {
        if let Ok(mut g) = self.inner.shutdown_grace.lock() {
            *g = grace;
        }
    }

    fn hold(&self, ids: impl IntoIterator<Item = DeliveryId>) {
        if let Ok(mut c) = self.inner.claims.lock() {
            c.extend(ids);
        }
    }

    fn let_go(&self, id: &DeliveryId) {
        if let Ok(mut c) = self.inner.claims.lock() {
            c.remove(id);
        }
    }

    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.inner.metrics
    }

    /// Handles one received message: fan out, commit, ack; then the immediate attempts.
    pub async fn handle(&self, received: Received) -> Handled {
        self.handle_batch(vec![received])
            .await
            .pop()
            .unwrap_or(Handled::Requeued)
    }

    /// Handles messages received together: one fan-out transaction for all of them, the acks,
    /// then their immediate attempts side by side. One result per message, in order.
    pub async fn handle_batch(&self, batch: Vec<Received>) -> Vec<Handled> {
        let _in_flight = InFlight::start(&self.inner);
        let mut results: Vec<Option<Handled>> = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for received in batch {
            match received {
                Received::Message(m, ack) => {
                    results.push(None);
                    messages.push(m);
                    acks.push(ack);
                }
                Received::Unparseable(ack) => {
                    tracing::warn!("unparseable bus message moved to the dead-letter queue");
                    if let Err(e) = ack.dead_letter().await {
                        tracing::error!(error = %e, "could not dead-letter a message; the broker will redeliver it");
                    }
                    results.push(Some(Handled::DeadLettered));
                }
            }
        }
        // One span per message, in the trace of the call that caused its event; they end
        // with the ack.
        let spans: Vec<tracing::Span> = messages
            .iter()
            .map(|m| {
                let span = tracing::info_span!(
                    "webhook.fanout",
                    otel.kind = "consumer",
                    event_id = %m.event_id(),
                    event_type = m.event_type(),
                    trace_id = tracing::field::Empty,
                );
                runtime::trace_context::continue_from(&span, m.traceparent());
                span
            })
            .collect();
        let s = &self.inner.settings;
        let fanned = match fan_out_batch(&self.inner.db, &messages, s.immediate, s.lease()).await {
            Ok(fanned) => fanned,
            Err(e) => {
                tracing::warn!(error = %e, messages = messages.len(), "fan-out failed; messages requeued");
                tokio::time::sleep(Duration::from_millis(200)).await;
                for ack in acks {
                    let _ = ack.requeue().await;
                }
                return fill(results, || Handled::Requeued);
            }
        };
        // Per message: (rows created, already present, how many of the claimed are its own).
        let mut counts = Vec::with_capacity(messages.len());
        let mut claimed = Vec::new();
        for ((message, ack), fan) in messages.iter().zip(acks).zip(fanned) {
            match fan {
                Ok(fan) => {
                    if let Err(e) = ack.ack().await {
                        // The rows are committed; a redelivery finds them and creates nothing.
                        tracing::warn!(error = %e, event_id = %message.event_id(), "ack failed after commit");
                    }
                    let created = fan.claimed.len() + fan.queued;
                    self.inner
                        .cache
                        .count_usage(
                            &entity::ids::Scope::new(message.merchant_id().clone(), fan.livemode),
                            &[(
                                runtime::usage::metric::WEBHOOK_DELIVERIES,
                                i64::try_from(created).unwrap_or(i64::MAX),
                            )],
                        )
                        .await;
                    counts.push(Ok((created, fan.already_present, fan.claimed.len())));
                    claimed.extend(fan.claimed);
                }
                Err(FanOutError::UnknownEvent(id)) => {
                    tracing::error!(event_id = %id, "message names an event that does not exist; dead-lettered");
                    let _ = ack.dead_letter().await;
                    counts.push(Err(Handled::DeadLettered));
                }
                Err(FanOutError::Db(e)) => {
                    tracing::warn!(error = %e, event_id = %message.event_id(), "fan-out failed; message requeued");
                    let _ = ack.requeue().await;
                    counts.push(Err(Handled::Requeued));
                }
            }
        }
        drop(spans);
        let mut attempts = self.deliver_loaded(claimed).await.into_iter();
        let mut counts = counts.into_iter();
        for slot in results.iter_mut().filter(|r| r.is_none()) {
            *slot = match counts.next() {
                Some(Ok((created, already_present, mine))) => Some(Handled::FannedOut {
                    created,
                    already_present,
                    attempts: attempts.by_ref().take(mine).collect(),
                }),
                Some(Err(handled)) => Some(handled),
                None => None,
            };
        }
        fill(results, || Handled::Requeued)
    }

    /// Attempts the given claimed deliveries concurrently (rows claimed by a sweep).
    pub async fn deliver(&self, ids: &[DeliveryId]) -> Vec<AttemptOutcome> {
        let inner = &self.inner;
        let loaded = join_all(ids.iter().map(|id| async move {
            match deliveries::load_context(&inner.db, id).await {
                Ok(ctx) => ctx,
                Err(e) => {
                    // The claim's lease runs out and a later sweep tries again.
                    tracing::error!(error = %e, delivery_id = %id, "could not load a delivery");
                    None
                }
            }
        }))
        .await;
        self.deliver_loaded(loaded.into_iter().flatten().collect())
            .await
    }

    /// Attempts deliveries whose context is already in memory, concurrently.
    pub async fn deliver_loaded(&self, claimed: Vec<AttemptContext>) -> Vec<AttemptOutcome> {
        let inner = &self.inner;
        self.hold(claimed.iter().map(|c| c.delivery.id.clone()));
        // A row waits for a slot at most this long, so that what is left of its lease still
        // covers the HTTP timeout and recording the result.
        let slot_deadline = Instant::now() + inner.settings.timeout + Duration::from_secs(3);
        let attempts = claimed.into_iter().map(|ctx| async move {
            let id = ctx.delivery.id.clone();
            let slot = match &ctx.endpoint {
                Some(endpoint) => match self.slot(endpoint, slot_deadline).await {
                    Some(slot) => Some(slot),
                    None => {
                        self.let_go(&id);
                        if let Err(e) = deliveries::hand_back(&inner.db, &ctx.delivery).await {
                            tracing::warn!(error = %e, delivery_id = %id, "could not hand a delivery back; its lease will expire");
                        }
                        inner.metrics.handed_back.inc();
                        return AttemptOutcome::Skipped;
                    }
                },
                None => None,
            };
            let first_lag = ctx
                .delivery
                .last_attempt_at
                .is_none()
                .then(|| chrono::Utc::now() - ctx.event.created_at);
            let about = (
                entity::ids::Scope::new(ctx.delivery.merchant_id.clone(), ctx.delivery.livemode),
                ctx.event.id.clone(),
                ctx.delivery.endpoint_id.clone(),
                ctx.event.request_id.clone(),
            );
            let event_created_at = ctx.event.created_at;
            match deliveries::attempt_in_slot(&inner.db, &inner.bus, &inner.sender, &inner.rules, ctx, slot, Some(&inner.recorder)).await {
                Ok((outcome, result)) => {
                    self.let_go(&id);
                    if result.is_some() {
                        inner
                            .cache
                            .count_usage(&about.0, &[(runtime::usage::metric::WEBHOOK_ATTEMPTS, 1)])
                            .await;
                    }
                    inner.metrics.observe(&outcome, result.as_ref());
                    if let Some(result) = &result {
                        use crate::sender::ErrorClass;
                        match result.error.as_ref().map(|e| e.0) {
                            None => inner.slots.succeeded(&about.2),
                            Some(ErrorClass::Timeout | ErrorClass::Connect) => {
                                inner.slots.struggled(&about.2)
                            }
                            Some(_) => {}
                        }
                    }
                    if outcome == AttemptOutcome::Succeeded {
                        let lag = chrono::Utc::now() - event_created_at;
                        inner
                            .metrics
                            .event_to_delivered
                            .observe(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
                    }
                    if let AttemptOutcome::Failed { attempts } = &outcome {
                        let (scope, event_id, endpoint_id, request_id) = &about;
                        let last_error = result.as_ref().and_then(|r| r.error.as_ref().map(|e| e.1.clone()));
                        runtime::log_store::record(
                            &inner.db,
                            &inner.bus,
                            runtime::log_store::Entry {
                                scope: Some(scope),
                                level: entity::status::LogLevel::Error,
                                source: "webhooks",
                                message: &format!("Webhook delivery {id} failed after {attempts} attempts"),
                                context: Some(serde_json::json!({"delivery_id": id, "event_id": event_id, "endpoint_id": endpoint_id, "last_error": last_error})),
                                request_id: request_id.as_deref(),
                            },
                        )
                        .await;
                    }
                    if let (Some(lag), Some(_)) = (first_lag, result.as_ref()) {
                        inner
                            .metrics
                            .first_attempt_lag
                            .observe(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
                    }
                    outcome
                }
                Err(e) => {
                    // The claim's lease runs out and a later sweep tries again.
                    tracing::error!(error = %e, delivery_id = %id, "could not record an attempt");
                    AttemptOutcome::Skipped
                }
            }
        });
        join_all(attempts).await
    }

    /// A slot to send to `endpoint`: a permit of its concurrency limit and, if it has a
    /// `rate_limit`, a place in the current second's count shared by all workers. `None` when
    /// none came before `deadline`.
    async fn slot(
        &self,
        endpoint: &webhook_endpoints::Model,
        deadline: Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let inner = &self.inner;
        let limit = inner.slots.limit(endpoint.max_concurrency);
        let deadline = tokio::time::Instant::from_std(deadline);
        let permit = inner.slots.acquire(&endpoint.id, limit, deadline).await?;
        let Some(rate) = endpoint
            .rate_limit
            .and_then(|r| u64::try_from(r).ok())
            .filter(|r| *r > 0)
        else {
            return Some(permit);
        };
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let key = format!("webhook_rate:{}:{}", endpoint.id, now.as_secs());
            match inner.cache.hit(&key, Duration::from_secs(2)).await {
                Some(n) if n > rate => {
                    let next_second = Duration::from_secs(now.as_secs() + 1) - now;
                    if tokio::time::Instant::now() + next_second > deadline {
                        return None;
                    }
                    tokio::time::sleep(next_second).await;
                }
                _ => return Some(permit),
            }
        }
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
            )
            .await?;
            let ids = claim.ids;
            self.hold(ids.iter().cloned());
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

    /// Consumes from the bus until `stop` turns true, reconnecting with backoff.
    async fn consume(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let prefetch = u16::try_from(self.inner.settings.batch_size.max(50) * 4).unwrap_or(200);
        while !*stop.borrow() {
            match self.inner.bus.subscribe(prefetch).await {
                Ok(mut subscription) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(bus = self.inner.bus.kind(), "consuming events");
                    loop {
                        tokio::select! {
                            _ = stop.changed() => return,
                            next = subscription.next() => match next {
                                Some(Ok(received)) => {
                                    // Whatever else has already arrived goes in the same
                                    // fan-out transaction: under load batches grow, and the
                                    // database sees one transaction for many events.
                                    let mut batch = vec![received];
                                    let mut lost = None;
                                    while batch.len() < FAN_OUT_BATCH {
                                        match subscription.next().now_or_never() {
                                            Some(Some(Ok(r))) => batch.push(r),
                                            Some(Some(Err(e))) => {
                                                lost = Some(e.to_string());
                                                break;
                                            }
                                            Some(None) => {
                                                lost = Some("the subscription ended".to_string());
                                                break;
                                            }
                                            None => break,
                                        }
                                    }
                                    let worker = self.clone();
                                    tokio::spawn(async move { worker.handle_batch(batch).await });
                                    if let Some(e) = lost {
                                        tracing::warn!(error = %e, "bus connection lost; reconnecting");
                                        break;
                                    }
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "bus connection lost; reconnecting");
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to the bus")
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Runs the consumer and the scheduled sweep until `shutdown` completes, then stops
    /// taking work and waits (up to the HTTP timeout and a margin) for sends in flight.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumer = tokio::spawn(self.clone().consume(stop_rx.clone()));
        let sweeper = self.clone();
        let sweeps = tokio::spawn(schedule::run(
            "sweep",
            Schedule::Every(self.inner.settings.sweep_interval),
            stop_rx.clone(),
            move || {
                let worker = sweeper.clone();
                // Each tick starts a sweep without waiting for the last one: a batch held up
                // by a slow receiver (up to the attempt timeout) does not stall the next due
                // rows. At most CONCURRENT_SWEEPS run at once; sweep_once skips beyond that.
                async move {
                    // Counted as in flight before it is spawned, so a shutdown that starts
                    // now waits for it rather than racing its claim.
                    let in_flight = InFlight::start(&worker.inner);
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
                    });
                }
            },
        ));
        shutdown.await;
        tracing::info!("worker stopping: no new work; waiting for sends in flight");
        let _ = stop_tx.send(true);
        let _ = consumer.await;
        let _ = sweeps.await;
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
        Ok(())
    }

    /// Gives back deliveries this worker claimed but did not record, so another worker can
    /// take them now rather than after the lease.
    async fn release_claims(&self) {
        let ids: Vec<DeliveryId> = self
            .inner
            .claims
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        match deliveries::release(&self.inner.db, &ids).await {
            Ok(n) => tracing::info!(released = n, "released claimed deliveries at shutdown"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release claims; their leases will expire")
            }
        }
    }
}

/// Most messages fanned out in one transaction.
const FAN_OUT_BATCH: usize = 100;

/// The results of a batch, any still open set by `otherwise`.
fn fill(results: Vec<Option<Handled>>, otherwise: impl Fn() -> Handled) -> Vec<Handled> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(&otherwise))
        .collect()
}
