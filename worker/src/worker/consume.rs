//! What comes from the bus: a batch of events fanned out together (one insert), acknowledged,
//! their first attempts sent while that insert commits; and the consumer that reconnects with
//! backoff.

use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;

use std::collections::HashSet;

use entity::bus::BusMessage;
use sea_orm::DbErr;

use crate::deliveries::InsertGate;
use crate::fanout::{FanOut, FanOutError, Plan, Start, insert_rows};
use runtime::bus::{Ack, Received};

use super::*;

impl Worker {
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
        let db = &self.inner.db;
        // A message handed out for the first time has no rows yet (unless its event was
        // published twice, which `present` finds), so its first requests go out while its rows
        // are inserted, not after: that commit is off the path to the receiver, and the results
        // are recorded once the insert says the rows are this worker's. A message handed out
        // before may have had its requests sent so by a worker that then died, with no row to
        // show it: its rows go to the sweep as a dead worker's claim (an attempt of unknown
        // outcome, then a send), so attempts never undercount what receivers saw.
        let start: Vec<Start> = acks
            .iter()
            .map(|ack| match (s.immediate, ack.redelivered()) {
                (false, _) => Start::Due,
                (true, false) => Start::Claimed,
                (true, true) => Start::MaybeSentBefore,
            })
            .collect();
        let read = async {
            let plan = Plan::read(db, &messages, &start, s.lease()).await?;
            let present = match start.contains(&Start::Claimed) {
                true => plan.present(db).await?,
                false => HashSet::new(),
            };
            Ok::<_, DbErr>((plan, present))
        };
        let (mut plan, present) = match Box::pin(read).await {
            Ok(read) => read,
            Err(e) => return requeue_all(results, acks, &e).await,
        };
        let early = plan.contexts_except(&present);
        let (done, gate) = InsertGate::new();
        let rows = plan.take_rows();
        let commit = async {
            let inserted = insert_rows(db, rows).await.map(Arc::new);
            done.report(inserted.as_ref().map(Arc::clone).unwrap_or_default());
            match inserted {
                Ok(inserted) => Ok(self.settle(&messages, acks, plan.outcomes(&inserted)).await),
                Err(e) => Err((e, acks)),
            }
        };
        let per_message: Vec<usize> = early.iter().map(Vec::len).collect();
        let (settled, attempts) = tokio::join!(
            Box::pin(commit),
            self.deliver_ahead_of(early.into_iter().flatten().collect(), &gate)
        );
        drop(spans);
        let counts = match settled {
            Ok(counts) => counts,
            Err((e, acks)) => return requeue_all(results, acks, &e).await,
        };
        let mut attempts = attempts.into_iter();
        let mut per_message = per_message.into_iter();
        let mut counts = counts.into_iter();
        for slot in results.iter_mut().filter(|r| r.is_none()) {
            let sent = per_message.next().unwrap_or(0);
            let theirs: Vec<AttemptOutcome> = attempts.by_ref().take(sent).collect();
            *slot = match counts.next() {
                Some(Ok((created, already_present))) => Some(Handled::FannedOut {
                    created,
                    already_present,
                    attempts: theirs,
                }),
                Some(Err(handled)) => Some(handled),
                None => None,
            };
        }
        fill(results, || Handled::Requeued)
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
                Err(FanOutError::Db(e)) => {
                    tracing::warn!(error = %e, event_id = %message.event_id(), "fan-out failed; message requeued");
                    let _ = ack.requeue().await;
                    counts.push(Err(Handled::Requeued));
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

/// A batch whose fan-out failed as a whole: every message it still holds goes back to the
/// broker, after a pause so a database that is down is not hammered.
async fn requeue_all(results: Vec<Option<Handled>>, acks: Vec<Ack>, e: &DbErr) -> Vec<Handled> {
    tracing::warn!(error = %e, messages = acks.len(), "fan-out failed; messages requeued");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ack in acks {
        let _ = ack.requeue().await;
    }
    fill(results, || Handled::Requeued)
}

/// The results of a batch, any still open set by `otherwise`.
fn fill(results: Vec<Option<Handled>>, otherwise: impl Fn() -> Handled) -> Vec<Handled> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(&otherwise))
        .collect()
}
