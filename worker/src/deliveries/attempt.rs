//! One attempt: the signed request, in a span of the event's trace, holding the endpoint's
//! send slot for the HTTP exchange only, and its recording.

use tokio::sync::OwnedSemaphorePermit;

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
    attempt_in_slot(db, bus, sender, rules, ctx, None, None).await
}

/// [`attempt`], holding `slot` (the endpoint's send slot) for the HTTP exchange only: recording
/// the result is database work that must not keep the next request to the endpoint waiting.
/// With a `recorder` the result is committed together with other attempts' (group commit).
pub async fn attempt_in_slot<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
    slot: Option<OwnedSemaphorePermit>,
    recorder: Option<&Recorder>,
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
    attempt_traced(db, bus, sender, rules, ctx, slot, recorder)
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
    recorder: Option<&Recorder>,
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
