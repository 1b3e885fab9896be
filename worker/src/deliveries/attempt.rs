//! One attempt: the signed request, in a span of the event's trace, holding the endpoint's
//! send slot for the HTTP exchange only, and its recording.

use std::collections::HashSet;
use std::sync::Arc;

use entity::ids::DeliveryId;
use tokio::sync::{OwnedSemaphorePermit, watch};

use chrono::{DateTime, Utc};
use entity::event::WebhookBody;
use entity::signature::SigningKey;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::webhook_deliveries;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait};

use runtime::bus::EventBus;
use tracing::Instrument as _;

use super::recorder::Recorder;
use crate::sender::{AttemptResult, SignedRequest, WebhookSender};

use super::record::{self, AttemptOutcome, Rules};

use super::rows::{AttemptContext, lease_held};

/// Makes one attempt of a claimed delivery and records it. Returns the outcome and, when an
/// HTTP call was made, its result (for metrics).
pub async fn attempt<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    attempt_in_slot(db, bus, sender, rules, ctx, None, Recording::Alone).await
}

/// How an attempt's result is committed.
#[derive(Clone, Copy)]
pub enum Recording<'a> {
    /// In a transaction of its own.
    Alone,
    /// Together with other attempts' results (group commit).
    Grouped(&'a Recorder),
    /// Grouped, for a row whose insert was still under way when the request went out: the
    /// result waits for that insert and is dropped when the row is not this worker's after all
    /// (the insert failed, so its message comes back; or someone else's row was there first).
    AfterInsert(&'a Recorder, &'a InsertGate),
}

/// Tells attempts sent ahead of their rows' insert which of those rows it committed.
#[derive(Clone)]
pub struct InsertGate(watch::Receiver<Option<Arc<HashSet<DeliveryId>>>>);

/// Where the insert's outcome is reported, once.
pub struct InsertDone(watch::Sender<Option<Arc<HashSet<DeliveryId>>>>);

impl InsertGate {
    pub fn new() -> (InsertDone, InsertGate) {
        let (tx, rx) = watch::channel(None);
        (InsertDone(tx), InsertGate(rx))
    }

    /// Waits for the insert; true when it committed `id`. A report that never comes (its
    /// task went away) counts as not committed.
    pub async fn committed(&self, id: &DeliveryId) -> bool {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(inserted) => inserted.as_ref().is_some_and(|ids| ids.contains(id)),
            Err(_) => false,
        }
    }
}

impl InsertDone {
    /// The ids the insert committed (none when it failed).
    pub fn report(self, inserted: Arc<HashSet<DeliveryId>>) {
        let _ = self.0.send(Some(inserted));
    }
}

impl Recording<'_> {
    /// False when the row this attempt is for is not this worker's to write.
    async fn row_is_ours(&self, id: &DeliveryId) -> bool {
        match self {
            Recording::AfterInsert(_, gate) => gate.committed(id).await,
            Recording::Alone | Recording::Grouped(_) => true,
        }
    }
}

/// [`attempt`], holding `slot` (the endpoint's send slot) for the HTTP exchange only: recording
/// the result is database work that must not keep the next request to the endpoint waiting.
pub async fn attempt_in_slot<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
    slot: Option<OwnedSemaphorePermit>,
    recording: Recording<'_>,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    // Each attempt, retries included, is a span of the trace that caused its event.
    let span = tracing::info_span!(
        "webhook.attempt",
        otel.kind = "client",
        delivery_id = %ctx.delivery.id,
        event_id = %ctx.event.id,
        attempt = ctx.delivery.earlier_attempts + ctx.delivery.attempts + 1,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    runtime::trace_context::continue_from(&span, ctx.event.traceparent.as_deref());
    attempt_traced(db, bus, sender, rules, ctx, slot, recording)
        .instrument(span)
        .await
}

pub(super) async fn attempt_traced<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
    slot: Option<OwnedSemaphorePermit>,
    recording: Recording<'_>,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    if ctx.delivery.status != DeliveryStatus::Processing {
        return Ok((AttemptOutcome::Skipped, None));
    }
    let failed = AttemptOutcome::Failed {
        attempts: ctx.delivery.attempts,
    };
    let endpoint = match ctx.endpoint {
        Some(e) if e.status == EndpointStatus::Enabled => e,
        other => {
            let why = if other.is_some() {
                "endpoint disabled"
            } else {
                "endpoint deleted"
            };
            if !recording.row_is_ours(&ctx.delivery.id).await {
                return Ok((AttemptOutcome::Skipped, None));
            }
            finish_without_call(db, &ctx.delivery, why).await?;
            return Ok((failed, None));
        }
    };
    // The current secret first; the one a rotation replaced while its overlap lasts.
    let keys: Vec<SigningKey> = match endpoint
        .signing_secrets(Utc::now())
        .into_iter()
        .map(SigningKey::from_secret)
        .collect::<Result<_, _>>()
    {
        Ok(keys) => keys,
        Err(_) => {
            if !recording.row_is_ours(&ctx.delivery.id).await {
                return Ok((AttemptOutcome::Skipped, None));
            }
            finish_without_call(db, &ctx.delivery, "endpoint secret is unusable").await?;
            return Ok((failed, None));
        }
    };
    let request = SignedRequest {
        url: endpoint.url.clone(),
        event_id: ctx.event.id.to_string(),
        event_type: ctx.event.event_type.clone(),
        delivery_id: ctx.delivery.id.to_string(),
        body: WebhookBody::new(
            &ctx.event.id,
            &ctx.event.event_type,
            ctx.event.created_at,
            &ctx.event.data,
        )
        .to_bytes(),
        traceparent: runtime::trace_context::current(),
    };
    let result = sender.send(&keys, &request).await;
    if let Some(status) = result.http_status {
        tracing::Span::current().record("http.response.status_code", status);
    }
    drop(slot);
    if !recording.row_is_ours(&ctx.delivery.id).await {
        tracing::info!(
            delivery_id = %ctx.delivery.id,
            event_id = %ctx.event.id,
            "webhook sent ahead of a row that is not this worker's; not recorded"
        );
        return Ok((AttemptOutcome::Skipped, Some(result)));
    }
    let outcome = match recording {
        Recording::Grouped(recorder) | Recording::AfterInsert(recorder, _) => {
            recorder
                .record(ctx.delivery.clone(), endpoint, result.clone())
                .await?
        }
        Recording::Alone => {
            record::record(db, bus, &ctx.delivery, &endpoint, &result, rules).await?
        }
    };
    tracing::info!(
        delivery_id = %ctx.delivery.id,
        event_id = %ctx.event.id,
        request_id = ctx.event.request_id.as_deref().unwrap_or(""),
        http_status = result.http_status,
        error_class = result.error.as_ref().map(|e| e.0.as_str()).unwrap_or(""),
        error = result.error.as_ref().map(|e| e.1.as_str()).unwrap_or(""),
        duration_ms = result.duration.as_millis() as u64,
        outcome = ?outcome,
        "webhook attempt"
    );
    Ok((outcome, Some(result)))
}

pub(super) async fn finish_without_call<C: ConnectionTrait>(
    db: &C,
    delivery: &webhook_deliveries::Model,
    why: &str,
) -> Result<(), DbErr> {
    use webhook_deliveries::Column as C;
    webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Failed))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::NextRetryAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::ErrorMessage, Expr::value(why))
        .col_expr(C::UpdatedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(delivery.id.as_str()))
        .filter(lease_held(delivery))
        .exec(db)
        .await?;
    Ok(())
}
