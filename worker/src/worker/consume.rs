//! What comes from the bus: a batch of events fanned out together (one insert), acknowledged,
//! their first attempts sent while that insert commits; and the consumer that reconnects with
//! backoff.

use std::collections::HashSet;
use std::time::Duration;

use entity::bus::BusMessage;
use futures_util::FutureExt as _;
use sea_orm::DbErr;
use tokio::sync::watch;

use crate::deliveries::InsertGate;
use crate::fanout::{FanOut, FanOutError, Plan, Start, insert_rows};
use runtime::bus::{Ack, Received};

use super::*;

impl Worker {
    /// Handles one received message: fan out, commit, ack; then the immediate attempts.
    pub async fn handle(&self, received: Received) -> Handled {
        // One result per message, always.
        self.handle_batch(vec![received]).await.swap_remove(0)
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
        let immediate = self.inner.settings.immediate;
        // A message handed out for the first time has no rows yet (unless its event was
        // published twice, which `present` finds), so its first requests go out while its rows
        // are inserted, not after: that commit is off the path to the receiver, and the results
        // are recorded once the insert says the rows are this worker's. A message handed out
        // before may have had its requests sent so by a worker that then died, with no row to
        // show it: its rows go to the sweep as a dead worker's claim (an attempt of unknown
        // outcome, then a send), so attempts never undercount what receivers saw.
        let mut start: Vec<Start> = acks
            .iter()
            .map(|ack| match (immediate, ack.redelivered()) {
                (false, _) => Start::Due,
                (true, false) => Start::Claimed,
                (true, true) => Start::MaybeSentBefore,
            })
            .collect();
        // A database error fails the whole batch with nothing committed. It is tried again
        // here, not handed back to the broker: this worker knows which messages it sent ahead
        // (those become MaybeSentBefore), where a redelivery would make every one of them look
        // possibly sent.
        let mut pause = Duration::from_millis(200);
        let (counts, attempts, per_message) = loop {
            match self.fan_out_once(&messages, &start, acks).await {
                Ok(done) => break done,
                Err(failed) => {
                    tracing::warn!(error = %failed.error, messages = messages.len(), retry_in_ms = pause.as_millis() as u64, "fan-out failed; trying again");
                    acks = failed.acks;
                    for (start, sent) in start.iter_mut().zip(failed.sent_ahead) {
                        if sent {
                            *start = Start::MaybeSentBefore;
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        drop(spans);
        let mut attempts = attempts.into_iter();
        let mut handled = counts.into_iter().zip(per_message).map(|(count, sent)| {
            let theirs: Vec<AttemptOutcome> = attempts.by_ref().take(sent).collect();
            match count {
                Ok((created, already_present)) => Handled::FannedOut {
                    created,
                    already_present,
                    attempts: theirs,
                },
                Err(handled) => handled,
            }
        });
        // Settling gives one count per message, so every open slot is filled.
        results
            .into_iter()
            .filter_map(|r| r.or_else(|| handled.next()))
            .collect()
    }

    /// One try at a batch: plan from reads, send the claimed rows ahead while inserting, settle
    /// the messages once the insert committed. Per message, its counts (or how it was handled)
    /// and how many requests it sent ahead; the attempts' outcomes in message order.
    async fn fan_out_once(
        &self,
        messages: &[BusMessage],
        start: &[Start],
        acks: Vec<Ack>,
    ) -> Result<Settled, FanOutFailed> {
        let s = &self.inner.settings;
        let db = &self.inner.db;
        let read = async {
            let plan = Plan::read(db, messages, start, s.lease()).await?;
            let present = match start.contains(&Start::Claimed) {
                true => plan.present(db).await?,
                false => HashSet::new(),
            };
            Ok::<_, DbErr>((plan, present))
        };
        let (mut plan, present) = match Box::pin(read).await {
            Ok(read) => read,
            Err(error) => {
                return Err(FanOutFailed {
                    error,
                    sent_ahead: vec![false; acks.len()],
                    acks,
                });
            }
        };
        let early = plan.contexts_except(&present);
        let per_message: Vec<usize> = early.iter().map(Vec::len).collect();
        let (done, gate) = InsertGate::new();
        let rows = plan.take_rows();
        let commit = async {
            let inserted = insert_rows(db, rows).await.map(Arc::new);
            done.report(inserted.as_ref().map(Arc::clone).unwrap_or_default());
            match inserted {
                Ok(inserted) => Ok(self.settle(messages, acks, plan.outcomes(&inserted)).await),
                Err(e) => Err((e, acks)),
            }
        };
        let (settled, attempts) = tokio::join!(
            Box::pin(commit),
            self.deliver_ahead_of(early.into_iter().flatten().collect(), &gate)
        );
        match settled {
            Ok(counts) => Ok((counts, attempts, per_message)),
            Err((error, acks)) => Err(FanOutFailed {
                error,
                sent_ahead: per_message.iter().map(|n| *n > 0).collect(),
                acks,
            }),
        }
    }

    /// Settles each message of a committed fan-out: acked (dead-lettered when its event does
    /// not exist), and its new rows metered; a sweep is woken for rows left to it. Per message,
    /// the rows it created and found present (or how it was handled).
    async fn settle(
        &self,
        messages: &[BusMessage],
        acks: Vec<Ack>,
        fanned: Vec<Result<FanOut, FanOutError>>,
    ) -> Vec<Result<(usize, usize), Handled>> {
        let mut counts = Vec::with_capacity(messages.len());
        let mut for_the_sweep = 0;
        let mut usage: Vec<(entity::ids::Scope, i64)> = Vec::new();
        for ((message, ack), fan) in messages.iter().zip(acks).zip(fanned) {
            match fan {
                Ok(fan) => {
                    let created = fan.claimed.len() + fan.queued;
                    let scope =
                        entity::ids::Scope::new(message.merchant_id().clone(), fan.livemode);
                    usage.push((scope, i64::try_from(created).unwrap_or(i64::MAX)));
                    // A lost ack only means a redelivery, which finds the rows.
                    if let Err(e) = ack.ack().await {
                        tracing::warn!(error = %e, event_id = %message.event_id(), "ack failed after commit");
                    }
                    counts.push(Ok((created, fan.already_present)));
                    for_the_sweep += fan.queued;
                }
                Err(FanOutError::UnknownEvent(id)) => {
                    tracing::error!(event_id = %id, "message names an event that does not exist; dead-lettered");
                    let _ = ack.dead_letter().await;
                    counts.push(Err(Handled::DeadLettered));
                }
            }
        }
        self.inner
            .cache
            .count_usage_of_each(runtime::usage::metric::WEBHOOK_DELIVERIES, usage)
            .await;
        if self.inner.settings.immediate && for_the_sweep > 0 {
            self.wake_at(chrono::Utc::now());
        }
        counts
    }

    /// Consumes from the bus until `stop` turns true, reconnecting with backoff.
    pub(super) async fn consume(self, mut stop: watch::Receiver<bool>) {
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
                                    // database sees one insert for many events.
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
}

/// Most messages fanned out together.
const FAN_OUT_BATCH: usize = 100;

/// Per message, its counts (or how it was handled); the attempts' outcomes; per message, how
/// many of them are its own.
type Settled = (
    Vec<Result<(usize, usize), Handled>>,
    Vec<AttemptOutcome>,
    Vec<usize>,
);

/// A try at a batch that committed nothing: the messages it still holds, and which of them had
/// requests sent ahead.
struct FanOutFailed {
    error: DbErr,
    acks: Vec<Ack>,
    sent_ahead: Vec<bool>,
}
