//! One attempt: the signed request, in a span of the event's trace, holding the endpoint's
//! send slot for the HTTP exchange only, and its recording; for a fresh event's first
//! attempt, sent while its row's insert commits ([`RowInsert`]).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, watch};

use chrono::{DateTime, Utc};
use entity::event::WebhookBody;
use entity::ids::DeliveryId;
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
    attempt_with(db, bus, sender, rules, ctx, AttemptWith::default()).await
}

/// What an attempt holds and waits for beyond its row.
#[derive(Default)]
pub struct AttemptWith<'a> {
    /// The endpoint's send slot, held for the HTTP exchange only: recording the result is
    /// database work that must not keep the next request to the endpoint waiting.
    pub slot: Option<OwnedSemaphorePermit>,
    /// Commits the result together with other attempts' (group commit).
    pub recorder: Option<&'a Recorder>,
    /// The row's insert, still committing while the request goes out: the result is recorded
    /// only if that insert made the row.
    pub row_insert: Option<RowInsert>,
}

/// The insert of rows whose first attempts are sent while it commits: it resolves to the ids
/// it made, or to its failure.
#[derive(Clone)]
pub struct RowInsert(watch::Receiver<Option<Inserted>>);

/// How a [`RowInsert`] ended.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Committed: the rows it made (the others were there already).
    Made(Arc<HashSet<DeliveryId>>),
    /// Failed for good: no row of it exists.
    Failed,
}

/// Whose row an attempt sent during its insert has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFate {
    /// The insert made it, under the claim the attempt holds: the result is recorded as usual.
    Ours,
    /// Another fan-out made it, and sends and records it under its own claim: this send is an
    /// extra one, recorded as an attempt row only (the delivery's state is that fan-out's).
    Another,
    /// There is none. The event stays unmarked, so the relay publishes it after the grace,
    /// flagged so that its fan-out records an attempt of unknown outcome first.
    None,
}

impl RowInsert {
    /// A pending insert, and where to tell how it ended.
    pub fn pending() -> (watch::Sender<Option<Inserted>>, RowInsert) {
        let (ended, insert) = watch::channel(None);
        (ended, RowInsert(insert))
    }

    /// What became of row `id`, once the insert is over (none if its task ended without a
    /// word).
    pub async fn fate(&self, id: &DeliveryId) -> RowFate {
        let mut insert = self.0.clone();
        match insert.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(Inserted::Made(made))) if made.contains(id) => RowFate::Ours,
            Ok(Some(Inserted::Made(_))) => RowFate::Another,
            _ => RowFate::None,
        }
    }
}

/// Whether the row of `delivery` is this attempt's to write: always, unless it is still
/// being inserted and that insert did not make it.
async fn row_is_ours(row_insert: Option<&RowInsert>, delivery: &webhook_deliveries::Model) -> bool {
    match row_insert {
        Some(insert) => insert.fate(&delivery.id).await == RowFate::Ours,
        None => true,
    }
}

/// [`attempt`] with what `with` holds and waits for.
pub async fn attempt_with<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
    with: AttemptWith<'_>,
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
    attempt_traced(db, bus, sender, rules, ctx, with)
        .instrument(span)
        .await
}

pub(super) async fn attempt_traced<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
    with: AttemptWith<'_>,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    let AttemptWith {
        slot,
        recorder,
        row_insert,
    } = with;
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
            if !row_is_ours(row_insert.as_ref(), &ctx.delivery).await {
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
            if !row_is_ours(row_insert.as_ref(), &ctx.delivery).await {
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
    if let Some(insert) = &row_insert {
        match insert.fate(&ctx.delivery.id).await {
            RowFate::Ours => {}
            RowFate::Another => {
                record::record_extra_send(db, &ctx.delivery, &result).await?;
                return Ok((AttemptOutcome::Skipped, Some(result)));
            }
            RowFate::None => {
                tracing::warn!(delivery_id = %ctx.delivery.id, event_id = %ctx.event.id, "sent while its row was inserted, and the insert failed; the relay republishes the event, whose fan-out records this send as of unknown outcome");
                return Ok((AttemptOutcome::Skipped, Some(result)));
            }
        }
    }
    let outcome = match recorder {
        Some(recorder) => {
            recorder
                .record(ctx.delivery.clone(), endpoint, result.clone())
                .await?
        }
        None => record::record(db, bus, &ctx.delivery, &endpoint, &result, rules).await?,
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
