//! Delivery rows: claiming due ones, making an attempt, recording it, and manual retries.
//!
//! A claim moves rows to `processing` with a lease (`locked_until`) inside one transaction that
//! selected them `FOR UPDATE SKIP LOCKED`, so concurrent workers never claim the same row; a
//! row whose lease ran out (its worker died) is due again. Each HTTP call leaves one
//! `webhook_attempts` row, written in the same transaction as the delivery's new state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::event::WebhookBody;
use entity::ids::{AttemptId, DeliveryId};
use entity::retry::{NextStep, RetryPolicy};
use entity::signature::SigningKey;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QuerySelect, TransactionSession, TransactionTrait,
};

use crate::sender::{AttemptResult, ErrorClass, SignedRequest, WebhookSender};

/// Due rows: pending and past `next_retry_at`, or processing with an expired lease.
fn due_condition(now: DateTime<Utc>) -> Condition {
    use webhook_deliveries::Column as C;
    Condition::any()
        .add(
            Condition::all()
                .add(C::Status.eq(DeliveryStatus::Pending))
                .add(C::NextRetryAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(C::Status.eq(DeliveryStatus::Processing))
                .add(C::LockedUntil.lte(now)),
        )
}

/// Claims up to `limit` due rows for `lease` and returns their ids.
pub async fn claim_due<C: TransactionTrait>(
    db: &C,
    limit: u64,
    lease: Duration,
) -> Result<Vec<DeliveryId>, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let txn = db.begin().await?;
    let ids: Vec<DeliveryId> = webhook_deliveries::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(due_condition(now))
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_tuple()
        .all(&txn)
        .await?;
    if !ids.is_empty() {
        let until = lease_until(now, lease);
        webhook_deliveries::Entity::update_many()
            .col_expr(C::Status, Expr::value(DeliveryStatus::Processing))
            .col_expr(C::LockedUntil, Expr::value(until))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.is_in(ids.clone()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(ids)
}

/// When a claim made at `now` for `lease` ends, at the database's precision (microseconds),
/// so the value a worker holds compares equal to the stored one when it fences its write.
pub fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    (now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)))
        .trunc_subsecs(6)
}

/// Makes claimed rows due again at once (a worker shutting down hands them back).
pub async fn release<C: ConnectionTrait>(db: &C, ids: &[DeliveryId]) -> Result<u64, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let result = webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(C::NextRetryAt, Expr::value(now))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.is_in(ids.to_vec()))
        .filter(C::Status.eq(DeliveryStatus::Processing))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    WillRetry {
        attempts: i32,
        next_retry_at: DateTime<Utc>,
    },
    Failed {
        attempts: i32,
    },
    /// The row was no longer ours (already finished, or its endpoint is gone/disabled).
    Skipped,
}

/// Everything one attempt needs. The fan-out already holds it for the rows it claims; the
/// sweep reads it with [`load_context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptContext {
    pub delivery: webhook_deliveries::Model,
    pub endpoint: Option<webhook_endpoints::Model>,
    pub event: events::Model,
}

pub async fn load_context<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<Option<AttemptContext>, DbErr> {
    let Some(delivery) = webhook_deliveries::Entity::find_by_id(delivery_id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(event) = events::Entity::find_by_id(delivery.event_id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let endpoint = webhook_endpoints::Entity::find_by_id(delivery.endpoint_id.clone())
        .one(db)
        .await?;
    Ok(Some(AttemptContext {
        delivery,
        endpoint,
        event,
    }))
}

/// Makes one attempt of a claimed delivery and records it. Returns the outcome and, when an
/// HTTP call was made, its result (for metrics).
pub async fn attempt<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    sender: &WebhookSender,
    policy: &RetryPolicy,
    ctx: AttemptContext,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    if ctx.delivery.status != DeliveryStatus::Processing {
        return Ok((AttemptOutcome::Skipped, None));
    }
    let endpoint = match ctx.endpoint {
        Some(e) if e.status == EndpointStatus::Enabled => e,
        other => {
            let why = if other.is_some() {
                "endpoint disabled"
            } else {
                "endpoint deleted"
            };
            finish_without_call(db, &ctx.delivery, why).await?;
            return Ok((
                AttemptOutcome::Failed {
                    attempts: ctx.delivery.attempts,
                },
                None,
            ));
        }
    };
    let key = match SigningKey::from_secret(&endpoint.secret) {
        Ok(k) => k,
        Err(_) => {
            finish_without_call(db, &ctx.delivery, "endpoint secret is unusable").await?;
            return Ok((
                AttemptOutcome::Failed {
                    attempts: ctx.delivery.attempts,
                },
                None,
            ));
        }
    };
    let body = WebhookBody::new(
        &ctx.event.id,
        &ctx.event.event_type,
        ctx.event.created_at,
        &ctx.event.data,
    )
    .to_bytes();
    let request = SignedRequest {
        url: endpoint.url.clone(),
        event_id: ctx.event.id.to_string(),
        event_type: ctx.event.event_type.clone(),
        delivery_id: ctx.delivery.id.to_string(),
        body,
    };
    let result = sender.send(&key, &request).await;
    let outcome = record(db, &ctx.delivery, &result, policy).await?;
    tracing::info!(
        delivery_id = %ctx.delivery.id,
        event_id = %ctx.event.id,
        request_id = ctx.event.request_id.as_deref().unwrap_or(""),
        http_status = result.http_status,
        error = result.error.as_ref().map(|e| e.1.as_str()).unwrap_or(""),
        duration_ms = result.duration.as_millis() as u64,
        outcome = ?outcome,
        "webhook attempt"
    );
    Ok((outcome, Some(result)))
}

async fn record<C: TransactionTrait>(
    db: &C,
    delivery: &webhook_deliveries::Model,
    result: &AttemptResult,
    policy: &RetryPolicy,
) -> Result<AttemptOutcome, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let attempts = delivery.attempts + 1;
    let outcome = if result.succeeded() {
        AttemptOutcome::Succeeded
    } else {
        match policy.after_failure(
            u32::try_from(attempts).unwrap_or(u32::MAX),
            rand::random::<f64>(),
        ) {
            NextStep::GiveUp => AttemptOutcome::Failed { attempts },
            NextStep::RetryAfter(delay) => AttemptOutcome::WillRetry {
                attempts,
                next_retry_at: now
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60)),
            },
        }
    };
    let (status, next_retry_at, delivered_at) = match &outcome {
        AttemptOutcome::Succeeded => (DeliveryStatus::Succeeded, None, Some(now)),
        AttemptOutcome::WillRetry { next_retry_at, .. } => {
            (DeliveryStatus::Pending, Some(*next_retry_at), None)
        }
        _ => (DeliveryStatus::Failed, None, None),
    };
    let error_message = result.error.as_ref().map(|(_, m)| m.clone());
    let http_status = result.http_status.map(i32::from);
    let txn = db.begin().await?;
    webhook_attempts::Entity::insert(webhook_attempts::ActiveModel {
        id: Set(AttemptId::generate()),
        delivery_id: Set(delivery.id.clone()),
        merchant_id: Set(delivery.merchant_id.clone()),
        attempt_number: Set(attempts),
        http_status: Set(http_status),
        error_message: Set(error_message.clone()),
        response_body: Set(result.response_body.clone()),
        duration_ms: Set(i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX)),
        created_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    let recorded = webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(status))
        .col_expr(C::Attempts, Expr::value(attempts))
        .col_expr(C::NextRetryAt, Expr::value(next_retry_at))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::LastAttemptAt, Expr::value(now))
        .col_expr(C::HttpStatus, Expr::value(http_status))
        .col_expr(C::ErrorMessage, Expr::value(error_message))
        .col_expr(C::DeliveredAt, Expr::value(delivered_at))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(delivery.id.as_str()))
        .filter(lease_held(delivery))
        .exec(&txn)
        .await?;
    if recorded.rows_affected == 0 {
        // Our lease ran out and another worker owns the row now (it may have delivered it
        // already): its result stands, ours must not overwrite it or count an attempt twice.
        txn.rollback().await?;
        tracing::warn!(delivery_id = %delivery.id, "lease lost before the attempt was recorded; result discarded");
        return Ok(AttemptOutcome::Skipped);
    }
    txn.commit().await?;
    Ok(outcome)
}

async fn finish_without_call<C: ConnectionTrait>(
    db: &C,
    delivery: &webhook_deliveries::Model,
    why: &str,
) -> Result<(), DbErr> {
    use webhook_deliveries::Column as C;
    webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Failed))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::NextRetryAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::ErrorMessage, Expr::value(why))
        .col_expr(C::UpdatedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(delivery.id.as_str()))
        .filter(lease_held(delivery))
        .exec(db)
        .await?;
    Ok(())
}

/// The row is still ours: processing under the very lease this worker's claim set.
fn lease_held(delivery: &webhook_deliveries::Model) -> Condition {
    use webhook_deliveries::Column as C;
    Condition::all()
        .add(C::Status.eq(DeliveryStatus::Processing))
        .add(match delivery.locked_until {
            Some(until) => C::LockedUntil.eq(until),
            None => C::LockedUntil.is_null(),
        })
}

/// Row counts behind the `queue_size` gauge and the age of the oldest due row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub due: u64,
    pub retrying: u64,
    pub processing: u64,
    pub failed: u64,
    pub oldest_due_age_seconds: f64,
}

pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<Backlog, DbErr> {
    use sea_orm::PaginatorTrait;
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let pending =
        || webhook_deliveries::Entity::find().filter(C::Status.eq(DeliveryStatus::Pending));
    let due = pending().filter(C::NextRetryAt.lte(now)).count(db).await?;
    let retrying = pending().filter(C::NextRetryAt.gt(now)).count(db).await?;
    let processing = webhook_deliveries::Entity::find()
        .filter(C::Status.eq(DeliveryStatus::Processing))
        .count(db)
        .await?;
    let failed = webhook_deliveries::Entity::find()
        .filter(C::Status.eq(DeliveryStatus::Failed))
        .count(db)
        .await?;
    let oldest: Option<Option<DateTime<Utc>>> = pending()
        .filter(C::NextRetryAt.lte(now))
        .select_only()
        .column_as(C::NextRetryAt.min(), "oldest")
        .into_tuple()
        .one(db)
        .await?;
    let oldest_due_age_seconds = oldest
        .flatten()
        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok(Backlog {
        due,
        retrying,
        processing,
        failed,
        oldest_due_age_seconds,
    })
}

/// Error class label of a result, for metrics.
pub fn error_class(result: &AttemptResult) -> Option<ErrorClass> {
    result.error.as_ref().map(|(c, _)| *c)
}
