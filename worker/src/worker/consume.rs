//! What comes from the bus: a batch of events fanned out together (one insert), acknowledged,
//! then their first attempts; and the consumer that reconnects with backoff.

use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;

use crate::fanout::FanOutError;
use runtime::bus::Received;

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
                Received::Message(m, ack) if self.made_early(m.event_id()).await => {
                    if let Err(e) = ack.ack().await {
                        tracing::warn!(error = %e, event_id = %m.event_id(), "ack failed; the broker will redeliver it");
                    }
                    self.inner.metrics.express_settled.inc();
                    results.push(Some(Handled::MadeEarly));
                }
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
        if messages.is_empty() {
            // Every message was settled above: nothing to fan out (not even a query).
            return fill(results, || Handled::Requeued);
        }
        // One span per message, in the trace of the call that caused its event; they end
        // with the ack.
        let spans = fan_out_spans(&messages);
        let fanned = match self.fan_out(&messages).await {
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
        let mut to_ack = Vec::with_capacity(messages.len());
        let mut usage: Vec<(entity::ids::Scope, i64)> = Vec::new();
        for ((message, ack), fan) in messages.iter().zip(acks).zip(fanned) {
            match fan {
                Ok(fan) => {
                    let created = fan.claimed.len() + fan.queued;
                    let scope =
                        entity::ids::Scope::new(message.merchant_id().clone(), fan.livemode);
                    usage.push((scope, i64::try_from(created).unwrap_or(i64::MAX)));
                    to_ack.push((ack, message.event_id()));
                    counts.push(Ok((created, fan.already_present, fan.claimed.len())));
                    self.inner
                        .metrics
                        .unknown_outcomes
                        .inc_by(fan.unknown_outcomes as u64);
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
        // The rows are committed, so the first attempts need nothing else: the acks and the
        // metering run alongside them instead of before (a lost ack only means a redelivery,
        // which finds the rows and creates nothing).
        let bookkeeping = async {
            for (ack, event_id) in to_ack {
                if let Err(e) = ack.ack().await {
                    tracing::warn!(error = %e, event_id = %event_id, "ack failed after commit");
                }
            }
            self.inner
                .cache
                .count_usage_of_each(runtime::usage::metric::WEBHOOK_DELIVERIES, usage)
                .await;
        };
        let ((), attempts) = tokio::join!(Box::pin(bookkeeping), self.deliver_loaded(claimed));
        let mut attempts = attempts.into_iter();
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

    /// Fans out a batch of messages with this worker's settings (whichever copies they are).
    pub(super) async fn fan_out(
        &self,
        messages: &[entity::bus::BusMessage],
    ) -> Result<Vec<Result<crate::fanout::FanOut, FanOutError>>, sea_orm::DbErr> {
        Box::pin(self.plan_fan_out(messages).await?.insert(&self.inner.db)).await
    }

    /// Works out a batch's rows with this worker's settings, to insert them later.
    pub(super) async fn plan_fan_out(
        &self,
        messages: &[entity::bus::BusMessage],
    ) -> Result<crate::fanout::Planned, sea_orm::DbErr> {
        let s = &self.inner.settings;
        Box::pin(crate::fanout::plan_batch(
            &self.inner.db,
            &self.inner.endpoint_copies,
            messages,
            s.immediate,
            s.lease(),
        ))
        .await
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
                            _ = stop.changed() => {
                                subscription.close().await;
                                return;
                            }
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
            if !wait_to_reconnect(&mut stop, &mut backoff).await {
                return;
            }
        }
    }
}

/// Sleeps `backoff` before a reconnection and doubles it (up to 5 s); `false` if `stop`
/// turned true meanwhile.
pub(super) async fn wait_to_reconnect(
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> bool {
    tokio::select! {
        _ = stop.changed() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}

/// One span per message's fan-out, in the trace of the call that caused its event (whichever
/// copy, the broker's or the express lane's, is fanned out).
pub(super) fn fan_out_spans(messages: &[entity::bus::BusMessage]) -> Vec<tracing::Span> {
    messages
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
        .collect()
}

/// Most messages fanned out together.
const FAN_OUT_BATCH: usize = 100;

/// The results of a batch, any still open set by `otherwise`.
fn fill(results: Vec<Option<Handled>>, otherwise: impl Fn() -> Handled) -> Vec<Handled> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(&otherwise))
        .collect()
}
