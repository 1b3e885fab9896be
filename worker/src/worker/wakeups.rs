//! Wake-ups from PostgreSQL: a commit that made an event's delivery rows notifies
//! [`runtime::outbox::DELIVERIES_CHANNEL`] with the event's id, and the worker claims those
//! rows and sends them at once, the commit's only step before the receiver's socket.
//!
//! A notice is only a wake-up: the rows are committed before it is sent, and a notice nobody
//! hears (this worker down, its listening connection lost) leaves them due for the sweep,
//! which runs whenever the listener (re)connects. Several workers hear every notice; the
//! claim skips rows another took, so each row is sent by one.

use std::time::Duration;

use entity::ids::EventId;
use sea_orm::DbBackend;
use tokio::sync::{mpsc, watch};

use super::*;

/// Most events claimed together.
const CLAIM_BATCH: usize = 100;

impl Worker {
    /// Claims and sends the rows the commits of these events made, still pending (one claim
    /// for all of them).
    pub async fn deliver_made(&self, events: &[EventId]) -> Vec<AttemptOutcome> {
        self.deliver_announced(events, Vec::new()).await
    }

    /// [`Worker::deliver_made`] for events heard with their trace context: each gets a
    /// `webhook.claim` span in its event's trace, ending with the claim.
    async fn deliver_heard(&self, heard: Vec<(EventId, Option<String>)>) -> Vec<AttemptOutcome> {
        let spans = heard
            .iter()
            .map(|(event_id, traceparent)| {
                let span = tracing::info_span!(
                    "webhook.claim",
                    otel.kind = "consumer",
                    event_id = %event_id,
                    trace_id = tracing::field::Empty,
                );
                runtime::trace_context::continue_from(&span, traceparent.as_deref());
                span
            })
            .collect();
        let events: Vec<EventId> = heard.into_iter().map(|(event_id, _)| event_id).collect();
        self.deliver_announced(&events, spans).await
    }

    async fn deliver_announced(
        &self,
        events: &[EventId],
        spans: Vec<tracing::Span>,
    ) -> Vec<AttemptOutcome> {
        let _in_flight = InFlight::start(&self.inner);
        let lease = self.inner.settings.lease();
        let claimed = deliveries::claim_made(&self.inner.db, events, lease).await;
        drop(spans);
        match claimed {
            Ok(claimed) => self.deliver_loaded(claimed).await,
            Err(e) => {
                tracing::warn!(error = %e, events = events.len(), "could not claim announced deliveries; the sweep will send them");
                Vec::new()
            }
        }
    }

    /// Listens for the notices until `stop`, reconnecting with backoff. Only on PostgreSQL,
    /// and only with immediate delivery (otherwise rows wait for the sweep's batches).
    pub(super) async fn listen(self, mut stop: watch::Receiver<bool>) {
        if self.inner.db.get_database_backend() != DbBackend::Postgres
            || !self.inner.settings.immediate
        {
            return;
        }
        let (heard_tx, heard_rx) = mpsc::unbounded_channel();
        let claimer = tokio::spawn(self.clone().claim_heard(heard_rx));
        let mut backoff = Duration::from_millis(100);
        while !*stop.borrow() {
            match self.open_listener().await {
                Ok(mut listener) => {
                    backoff = Duration::from_millis(100);
                    // Whatever was announced while nobody here listened is due: sent now.
                    self.spawn_sweep();
                    loop {
                        tokio::select! {
                            _ = stop.changed() => break,
                            heard = listener.try_recv() => match heard {
                                Ok(Some(notice)) => match runtime::outbox::notice(notice.payload()) {
                                    Some(heard) => {
                                        let _ = heard_tx.send(heard);
                                    }
                                    None => tracing::warn!(payload = notice.payload(), "ignored a delivery notice that names no event"),
                                },
                                Ok(None) => {
                                    tracing::warn!("lost the connection that hears delivery notices; reconnecting");
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "delivery notices failed; reconnecting");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen for delivery notices")
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        drop(heard_tx);
        let _ = claimer.await;
    }

    async fn open_listener(&self) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let pool = self.inner.db.get_postgres_connection_pool();
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(runtime::outbox::DELIVERIES_CHANNEL).await?;
        Ok(listener)
    }

    /// Claims what was heard, whatever has arrived together in one claim: under load claims
    /// grow, and the database sees one statement for many events.
    async fn claim_heard(self, mut heard: mpsc::UnboundedReceiver<(EventId, Option<String>)>) {
        while let Some(first) = heard.recv().await {
            let mut batch = vec![first];
            while batch.len() < CLAIM_BATCH {
                match heard.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            // Counted before it is spawned, so a shutdown starting now waits for it.
            let in_flight = InFlight::start(&self.inner);
            let worker = self.clone();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                worker.deliver_heard(batch).await
            });
        }
    }
}
