//! Sending claimed deliveries: each in its endpoint's send slot, the results recorded
//! together.

use std::time::Duration;

use std::time::Instant;

use entity::ids::DeliveryId;
use entity::webhook_endpoints;
use futures_util::future::join_all;
use tokio::sync::OwnedSemaphorePermit;

use crate::deliveries::{self, AttemptContext, AttemptOutcome};

use super::*;

impl Worker {
    /// Attempts the given claimed deliveries concurrently (rows claimed by a sweep).
    pub async fn deliver(&self, ids: &[DeliveryId]) -> Vec<AttemptOutcome> {
        let loaded = match deliveries::load_contexts(&self.inner.db, ids).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, deliveries = ids.len(), "could not load claimed deliveries");
                Vec::new()
            }
        };
        // What could not be loaded is no longer held (nor renewed): its lease runs out and a
        // later sweep tries again.
        let found: std::collections::HashSet<&DeliveryId> =
            loaded.iter().map(|c| &c.delivery.id).collect();
        for id in ids.iter().filter(|id| !found.contains(id)) {
            self.let_go(id);
        }
        self.deliver_loaded(loaded).await
    }

    /// Attempts deliveries whose context is already in memory, concurrently.
    pub async fn deliver_loaded(&self, claimed: Vec<AttemptContext>) -> Vec<AttemptOutcome> {
        self.deliver_claims(claimed, None).await
    }

    /// Attempts deliveries whose rows `insert` is still committing: each is sent at once, and
    /// recorded as usual if that insert made its row, as an attempt row of its own if another
    /// fan-out made it ([`deliveries::RowFate`]).
    pub async fn deliver_while_inserting(
        &self,
        claimed: Vec<AttemptContext>,
        insert: deliveries::RowInsert,
    ) -> Vec<AttemptOutcome> {
        self.deliver_claims(claimed, Some(insert)).await
    }

    async fn deliver_claims(
        &self,
        claimed: Vec<AttemptContext>,
        insert: Option<deliveries::RowInsert>,
    ) -> Vec<AttemptOutcome> {
        let inner = &self.inner;
        self.hold(claimed.iter().filter_map(|c| {
            let token = c.delivery.lease_token.clone()?;
            Some((c.delivery.id.clone(), token))
        }));
        // A row waits for a slot at most this long, so that what is left of its lease still
        // covers the HTTP timeout and recording the result.
        let slot_deadline = Instant::now() + inner.settings.timeout + Duration::from_secs(3);
        join_all(
            claimed
                .into_iter()
                .map(|ctx| self.attempt_one_with(ctx, slot_deadline, insert.clone())),
        )
        .await
    }

    /// One claimed delivery: waits for a slot of its endpoint (handing the row back if none
    /// comes by `slot_deadline`), sends, records. A lagging worker holds one of these per
    /// delivery waiting for a slot, so what follows the wait is boxed: waiting costs ~1.5 KB
    /// rather than the ~10 KB the send's and the recording's futures would take inline.
    pub async fn attempt_one(&self, ctx: AttemptContext, slot_deadline: Instant) -> AttemptOutcome {
        self.attempt_one_with(ctx, slot_deadline, None).await
    }

    /// [`Worker::attempt_one`], its row possibly still being inserted by `insert`.
    async fn attempt_one_with(
        &self,
        ctx: AttemptContext,
        slot_deadline: Instant,
        insert: Option<deliveries::RowInsert>,
    ) -> AttemptOutcome {
        let inner = &self.inner;
        let id = ctx.delivery.id.clone();
        let slot = match &ctx.endpoint {
            Some(endpoint) => match self.slot(endpoint, slot_deadline).await {
                Some(slot) => Some(slot),
                None => {
                    self.let_go(&id);
                    if let Some(insert) = &insert
                        && insert.fate(&id).await != deliveries::RowFate::Ours
                    {
                        return AttemptOutcome::Skipped;
                    }
                    if let Err(e) = Box::pin(deliveries::hand_back(&inner.db, &ctx.delivery)).await
                    {
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
        match Box::pin(deliveries::attempt_with(
            &inner.db,
            &inner.bus,
            &inner.sender,
            &inner.rules,
            ctx,
            deliveries::AttemptWith {
                slot,
                recorder: Some(&inner.recorder),
                row_insert: insert,
            },
        ))
        .await
        {
            Ok((outcome, result)) => {
                // Metered by the recorder, per batch, once committed.
                self.let_go(&id);
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
                if let AttemptOutcome::WillRetry { next_retry_at, .. } = &outcome {
                    self.wake_at(*next_retry_at);
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
                    let last_error = result
                        .as_ref()
                        .and_then(|r| r.error.as_ref().map(|e| e.1.clone()));
                    Box::pin(runtime::log_store::record(
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
                    ))
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
    }

    /// A slot to send to `endpoint`: a permit of its concurrency limit and, if it has a
    /// `rate_limit`, a place in the current second's count shared by all workers. `None` when
    /// none came before `deadline`.
    pub(super) async fn slot(
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
            match Box::pin(inner.cache.hit(&key, Duration::from_secs(2))).await {
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
}
