//! Delivery rows: claiming due ones, making an attempt, recording it, and manual retries.
//!
//! A claim moves rows to `processing` with a lease (`locked_until`) inside one transaction that
//! selected them `FOR UPDATE SKIP LOCKED`, so concurrent workers never claim the same row; a
//! row whose lease ran out (its worker died) is due again. Each HTTP call leaves one
//! `webhook_attempts` row, written in the same transaction as the delivery's new state.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

use chrono::{DateTime, Utc};
use entity::bus::{LiveChange, LiveNotice};
use entity::event::WebhookBody;
use entity::ids::{AttemptId, DeliveryId, EndpointId};
use entity::retry::{NextStep, RetryPolicy};
use entity::signature::SigningKey;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionSession, TransactionTrait,
};

use runtime::bus::EventBus;
use tracing::Instrument as _;

use crate::fanout::ROWS_PER_INSERT;
use crate::recorder::Recorder;
use crate::sender::{AttemptResult, ErrorClass, SignedRequest, WebhookSender};

/// What one claim took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Claimed rows, round-robin between endpoints.
    pub ids: Vec<DeliveryId>,
    /// More rows were due than this claim took: claim again once these are sent.
    pub more: bool,
}

/// Claims up to `limit` due rows for `lease`: rows whose lease ran out first (their worker
/// died), then pending rows oldest due first. The rows are taken round-robin between
/// endpoints, at most `per_endpoint` (or the endpoint's own `max_concurrency`) for any one, so
/// a burst to one merchant neither fills a batch nor opens more connections than it allows.
pub async fn claim_due<C: TransactionTrait>(
    db: &C,
    limit: u64,
    per_endpoint: u32,
    lease: Duration,
) -> Result<Claim, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    // Candidates beyond the batch let one busy endpoint's rows be passed over for others'.
    let window = limit.saturating_mul(4).max(limit);
    let txn = db.begin().await?;
    let candidates = |condition: Condition, order: bool, take: u64| {
        let mut select = webhook_deliveries::Entity::find()
            .select_only()
            .column(C::Id)
            .column(C::EndpointId)
            .filter(condition);
        if order {
            select = select.order_by_asc(C::NextRetryAt);
        }
        select
            .limit(take)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .into_tuple::<(DeliveryId, EndpointId)>()
    };
    let mut found = candidates(
        Condition::all()
            .add(C::Status.eq(DeliveryStatus::Processing))
            .add(C::LockedUntil.lte(now)),
        false,
        window,
    )
    .all(&txn)
    .await?;
    if (found.len() as u64) < window {
        let rest = window - found.len() as u64;
        found.extend(
            candidates(
                Condition::all()
                    .add(C::Status.eq(DeliveryStatus::Pending))
                    .add(C::NextRetryAt.lte(now)),
                true,
                rest,
            )
            .all(&txn)
            .await?,
        );
    }
    let limits = endpoint_limits(&txn, &found).await?;
    let cap = |endpoint: &EndpointId| {
        limits
            .get(endpoint)
            .and_then(|l| u32::try_from(*l).ok())
            .filter(|l| *l > 0)
            .unwrap_or(per_endpoint)
    };
    let ids = round_robin(&found, limit, cap);
    let more = ids.len() < found.len() || found.len() as u64 == window;
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
    Ok(Claim { ids, more })
}

/// The endpoints' own concurrency limits, where they set one.
async fn endpoint_limits<C: ConnectionTrait>(
    db: &C,
    rows: &[(DeliveryId, EndpointId)],
) -> Result<HashMap<EndpointId, i32>, DbErr> {
    let mut endpoints: Vec<EndpointId> = rows.iter().map(|(_, e)| e.clone()).collect();
    endpoints.sort();
    endpoints.dedup();
    if endpoints.is_empty() {
        return Ok(HashMap::new());
    }
    let found: Vec<(EndpointId, Option<i32>)> = webhook_endpoints::Entity::find()
        .select_only()
        .column(webhook_endpoints::Column::Id)
        .column(webhook_endpoints::Column::MaxConcurrency)
        .filter(webhook_endpoints::Column::Id.is_in(endpoints))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|(id, limit)| limit.map(|l| (id, l)))
        .collect())
}

/// Takes rows in turns, one per endpoint a turn in the order endpoints first appear, up to
/// `limit` rows and `cap(endpoint)` for each endpoint.
pub fn round_robin(
    rows: &[(DeliveryId, EndpointId)],
    limit: u64,
    cap: impl Fn(&EndpointId) -> u32,
) -> Vec<DeliveryId> {
    let mut queues: Vec<(&EndpointId, std::collections::VecDeque<&DeliveryId>)> = Vec::new();
    for (id, endpoint) in rows {
        match queues.iter_mut().find(|(e, _)| *e == endpoint) {
            Some((_, q)) => q.push_back(id),
            None => queues.push((endpoint, std::iter::once(id).collect())),
        }
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut taken: Vec<DeliveryId> = Vec::new();
    let mut turn = 0usize;
    loop {
        let mut progressed = false;
        for (endpoint, queue) in &mut queues {
            if taken.len() >= limit {
                return taken;
            }
            if turn < usize::try_from(cap(endpoint)).unwrap_or(usize::MAX)
                && let Some(id) = queue.pop_front()
            {
                taken.push(id.clone());
                progressed = true;
            }
        }
        if !progressed {
            return taken;
        }
        turn += 1;
    }
}

/// When a claim made at `now` for `lease` ends, at the database's precision (microseconds),
/// so the value a worker holds compares equal to the stored one when it fences its write.
pub fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    (now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)))
        .trunc_subsecs(6)
}

/// The update that makes rows `pending` and due now, unclaimed; callers add which rows (and,
/// for a fresh set of attempts, `attempts = 0`). Every "send it again" goes through it.
pub fn due_now() -> sea_orm::UpdateMany<webhook_deliveries::Entity> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(C::NextRetryAt, Expr::value(now))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::UpdatedAt, Expr::value(now))
}

/// A new delivery row of `event` to `endpoint_id`: claimed until `claimed_until` (sent at
/// once by whoever inserts it), or otherwise due now for the sweep.
pub fn new_row(
    event: &events::Model,
    endpoint_id: &EndpointId,
    claimed_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> webhook_deliveries::ActiveModel {
    let (status, next_retry_at) = match claimed_until {
        Some(_) => (DeliveryStatus::Processing, None),
        None => (DeliveryStatus::Pending, Some(now)),
    };
    webhook_deliveries::ActiveModel {
        id: Set(DeliveryId::generate()),
        merchant_id: Set(event.merchant_id.clone()),
        livemode: Set(event.livemode),
        event_id: Set(event.id.clone()),
        endpoint_id: Set(endpoint_id.clone()),
        status: Set(status),
        attempts: Set(0),
        earlier_attempts: Set(0),
        next_retry_at: Set(next_retry_at),
        locked_until: Set(claimed_until),
        last_attempt_at: Set(None),
        http_status: Set(None),
        error_message: Set(None),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Makes claimed rows due again at once (a worker shutting down hands them back).
pub async fn release<C: ConnectionTrait>(db: &C, ids: &[DeliveryId]) -> Result<u64, DbErr> {
    use webhook_deliveries::Column as C;
    let result = due_now()
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

/// How an attempt's result is judged.
#[derive(Debug, Clone)]
pub struct Rules {
    pub policy: RetryPolicy,
    /// An endpoint that has failed, with no success in between, for this long is disabled.
    pub disable_after: Duration,
}

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

async fn attempt_traced<C: ConnectionTrait + TransactionTrait>(
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
        None => record(db, bus, &ctx.delivery, &endpoint, &result, rules).await?,
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

/// Why an endpoint was disabled by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// The receiver answered 410 Gone.
    Gone,
    /// No success for `disable_after` while failing.
    Failing,
}

impl DisabledReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Gone => "gone",
            DisabledReason::Failing => "failing",
        }
    }
}

async fn record<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
    result: &AttemptResult,
    rules: &Rules,
) -> Result<AttemptOutcome, DbErr> {
    let txn = db.begin().await?;
    let recorded = record_in(
        &txn,
        &[ToRecord {
            delivery,
            endpoint,
            result,
        }],
        rules,
    )
    .await?;
    txn.commit().await?;
    let (outcome, disabled) = recorded
        .into_iter()
        .next()
        .unwrap_or((AttemptOutcome::Skipped, None));
    after_commit(db, bus, delivery, endpoint, rules, &outcome, disabled).await;
    Ok(outcome)
}

/// One attempt's result, to record.
pub(crate) struct ToRecord<'a> {
    pub delivery: &'a webhook_deliveries::Model,
    pub endpoint: &'a webhook_endpoints::Model,
    pub result: &'a AttemptResult,
}

/// Records attempts' results inside `txn`, one outcome each in order (the second value says
/// the attempt disabled its endpoint; pass it to [`after_commit`]).
///
/// Each delivery row is updated first, under its lease: a lost lease writes nothing and gives
/// `Skipped`, so the others go on. Then one insert for all the attempt rows, and each
/// endpoint's streak once, endpoints in id order: every transaction locks endpoint rows in
/// the same order, so concurrent ones cannot deadlock.
pub(crate) async fn record_in<T: ConnectionTrait>(
    txn: &T,
    items: &[ToRecord<'_>],
    rules: &Rules,
) -> Result<Vec<(AttemptOutcome, Option<DisabledReason>)>, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let mut recorded = Vec::with_capacity(items.len());
    let mut attempt_rows = Vec::with_capacity(items.len());
    // Endpoint id → the recorded items that went to it.
    let mut by_endpoint: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let (delivery, result) = (item.delivery, item.result);
        let attempts = delivery.attempts + 1;
        let outcome = judge(attempts, result, rules, now);
        let (status, next_retry_at, delivered_at) = match &outcome {
            AttemptOutcome::Succeeded => (DeliveryStatus::Succeeded, None, Some(now)),
            AttemptOutcome::WillRetry { next_retry_at, .. } => {
                (DeliveryStatus::Pending, Some(*next_retry_at), None)
            }
            _ => (DeliveryStatus::Failed, None, None),
        };
        let error_message = result.error.as_ref().map(|(_, m)| m.clone());
        let error_class = result.error.as_ref().map(|(c, _)| c.as_str());
        let http_status = result.http_status.map(i32::from);
        let updated = webhook_deliveries::Entity::update_many()
            .col_expr(C::Status, Expr::value(status))
            .col_expr(C::Attempts, Expr::value(attempts))
            .col_expr(C::NextRetryAt, Expr::value(next_retry_at))
            .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(C::LastAttemptAt, Expr::value(now))
            .col_expr(C::HttpStatus, Expr::value(http_status))
            .col_expr(C::ErrorMessage, Expr::value(error_message.clone()))
            .col_expr(C::DeliveredAt, Expr::value(delivered_at))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.eq(delivery.id.as_str()))
            .filter(lease_held(delivery))
            .exec(txn)
            .await?;
        if updated.rows_affected == 0 {
            // Our lease ran out and another worker owns the row now (it may have delivered it
            // already): its result stands, ours must not overwrite it or count an attempt
            // twice. Nothing was written, so the transaction goes on with the others.
            tracing::warn!(delivery_id = %delivery.id, "lease lost before the attempt was recorded; result discarded");
            recorded.push((AttemptOutcome::Skipped, None));
            continue;
        }
        attempt_rows.push(webhook_attempts::ActiveModel {
            id: Set(AttemptId::generate()),
            delivery_id: Set(delivery.id.clone()),
            merchant_id: Set(delivery.merchant_id.clone()),
            livemode: Set(delivery.livemode),
            attempt_number: Set(delivery.earlier_attempts + attempts),
            http_status: Set(http_status),
            error_message: Set(error_message),
            error_class: Set(error_class.map(str::to_string)),
            response_body: Set(result.response_body.clone()),
            duration_ms: Set(i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX)),
            created_at: Set(now),
        });
        by_endpoint
            .entry(item.endpoint.id.as_str())
            .or_default()
            .push(i);
        recorded.push((outcome, None));
    }
    let mut attempt_rows = attempt_rows.into_iter().peekable();
    while attempt_rows.peek().is_some() {
        let chunk: Vec<_> = attempt_rows.by_ref().take(ROWS_PER_INSERT).collect();
        webhook_attempts::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    for indices in by_endpoint.values() {
        let mut succeeded = false;
        for &i in indices {
            let item = &items[i];
            if item.result.succeeded() {
                succeeded = true;
            } else {
                recorded[i].1 = track_failure(txn, item.endpoint, item.result, rules, now).await?;
            }
        }
        if succeeded && let Some(&i) = indices.first() {
            reset_streak(txn, &items[i].endpoint.id).await?;
        }
    }
    Ok(recorded)
}

/// What an attempt's result comes to, given how many attempts the delivery has had with it.
fn judge(
    attempts: i32,
    result: &AttemptResult,
    rules: &Rules,
    now: DateTime<Utc>,
) -> AttemptOutcome {
    if result.succeeded() {
        AttemptOutcome::Succeeded
    } else if result.gone() {
        AttemptOutcome::Failed { attempts }
    } else {
        match rules.policy.after_failure(
            u32::try_from(attempts).unwrap_or(u32::MAX),
            rand::random::<f64>(),
            result.retry_after,
        ) {
            NextStep::GiveUp => AttemptOutcome::Failed { attempts },
            NextStep::RetryAfter(delay) => AttemptOutcome::WillRetry {
                attempts,
                next_retry_at: now
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60)),
            },
        }
    }
}

/// A success ends the endpoint's failing streak. Matches no row (and locks none) unless the
/// endpoint was failing.
async fn reset_streak<T: ConnectionTrait>(txn: &T, endpoint: &EndpointId) -> Result<(), DbErr> {
    use webhook_endpoints::Column as E;
    webhook_endpoints::Entity::update_many()
        .col_expr(E::ConsecutiveFailures, Expr::value(0))
        .col_expr(E::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(E::Id.eq(endpoint.as_str()))
        .filter(E::ConsecutiveFailures.ne(0))
        .exec(txn)
        .await?;
    Ok(())
}

/// After the commit that recorded an attempt: the dashboards hear of it; and if it disabled
/// the endpoint, the warning and the merchant's log entry.
pub(crate) async fn after_commit<C: ConnectionTrait>(
    db: &C,
    bus: &EventBus,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
    rules: &Rules,
    outcome: &AttemptOutcome,
    disabled: Option<DisabledReason>,
) {
    let status = match outcome {
        AttemptOutcome::Succeeded => Some(DeliveryStatus::Succeeded),
        AttemptOutcome::WillRetry { .. } => Some(DeliveryStatus::Pending),
        AttemptOutcome::Failed { .. } => Some(DeliveryStatus::Failed),
        AttemptOutcome::Skipped => None,
    };
    if let Some(status) = status {
        bus.announce(LiveNotice::new(
            endpoint.merchant_id.clone(),
            LiveChange::DeliveryAttempt {
                delivery_id: delivery.id.clone(),
                status: status.to_string(),
            },
        ));
    }
    let Some(reason) = disabled else { return };
    tracing::warn!(endpoint_id = %endpoint.id, reason = reason.as_str(), "webhook endpoint disabled");
    let message = match reason {
        DisabledReason::Gone => format!(
            "Webhook endpoint {} was disabled: it answered 410 Gone",
            endpoint.id
        ),
        DisabledReason::Failing => format!(
            "Webhook endpoint {} was disabled: no successful delivery for {}",
            endpoint.id,
            humantime::format_duration(rules.disable_after)
        ),
    };
    runtime::log_store::record(
        db,
        bus,
        runtime::log_store::Entry {
            scope: Some(&entity::ids::Scope::new(
                endpoint.merchant_id.clone(),
                endpoint.livemode,
            )),
            level: entity::status::LogLevel::Error,
            source: "webhooks",
            message: &message,
            context: Some(serde_json::json!({
                "endpoint_id": endpoint.id,
                "disabled_reason": reason.as_str(),
                "delivery_id": delivery.id,
            })),
            request_id: None,
        },
    )
    .await;
}

/// Counts a failed attempt in the endpoint's streak, and disables it on a 410 or once it has
/// failed with no success for `disable_after`; an automatic disable also commits a
/// `webhook_endpoint.disabled` event for the merchant's other endpoints. Runs in the attempt's
/// transaction, so the streak counts each recorded attempt exactly once.
async fn track_failure<T: ConnectionTrait>(
    txn: &T,
    endpoint: &webhook_endpoints::Model,
    result: &AttemptResult,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Option<DisabledReason>, DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    use webhook_endpoints::Column as E;
    let updated = webhook_endpoints::Entity::update_many()
        .col_expr(
            E::ConsecutiveFailures,
            Expr::col(E::ConsecutiveFailures).add(1),
        )
        .col_expr(
            E::FailingSince,
            sea_orm::sea_query::Func::coalesce([Expr::col(E::FailingSince), Expr::value(now)])
                .into(),
        )
        .filter(E::Id.eq(endpoint.id.as_str()))
        .exec_with_returning(txn)
        .await?;
    let Some(current) = updated.into_iter().next() else {
        return Ok(None);
    };
    if current.status != EndpointStatus::Enabled {
        return Ok(None);
    }
    let reason = if result.gone() {
        DisabledReason::Gone
    } else if current.failing_since.is_some_and(|since| {
        now - since
            >= chrono::Duration::from_std(rules.disable_after).unwrap_or(chrono::Duration::MAX)
    }) {
        DisabledReason::Failing
    } else {
        return Ok(None);
    };
    let disabled = webhook_endpoints::Entity::update_many()
        .col_expr(E::Status, Expr::value(EndpointStatus::Disabled))
        .col_expr(E::DisabledReason, Expr::value(reason.as_str()))
        .col_expr(E::UpdatedAt, Expr::value(now))
        .filter(E::Id.eq(endpoint.id.as_str()))
        .filter(E::Status.eq(EndpointStatus::Enabled))
        .exec(txn)
        .await?;
    if disabled.rows_affected == 0 {
        return Ok(None);
    }
    events::Entity::insert(events::ActiveModel {
        id: Set(entity::ids::EventId::generate()),
        merchant_id: Set(current.merchant_id.clone()),
        livemode: Set(current.livemode),
        event_type: Set(entity::event::EventType::WebhookEndpointDisabled
            .as_str()
            .to_string()),
        payment_id: Set(None),
        data: Set(serde_json::json!({
            "id": current.id,
            "object": "webhook_endpoint",
            "url": current.url,
            "status": "disabled",
            "disabled_reason": reason.as_str(),
            "failing_since": current.failing_since.map(entity::event::rfc3339),
            "consecutive_failures": current.consecutive_failures,
        })),
        request_id: Set(None),
        created_at: Set(now),
        published_at: Set(None),
        traceparent: Set(runtime::trace_context::current()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Some(reason))
}

/// Hands a claimed row back, due now, without an attempt (the worker could not get a slot to
/// send it in time). Fenced by the lease like any write of a claimed row.
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    delivery: &webhook_deliveries::Model,
) -> Result<bool, DbErr> {
    use webhook_deliveries::Column as C;
    let result = due_now()
        .filter(C::Id.eq(delivery.id.as_str()))
        .filter(lease_held(delivery))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
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

/// The endpoints with the longest current failing streaks, longest first.
pub async fn failing_streaks<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<(EndpointId, i32)>, DbErr> {
    use webhook_endpoints::Column as E;
    webhook_endpoints::Entity::find()
        .select_only()
        .column(E::Id)
        .column(E::ConsecutiveFailures)
        .filter(E::ConsecutiveFailures.gt(0))
        .filter(E::Status.eq(EndpointStatus::Enabled))
        .order_by_desc(E::ConsecutiveFailures)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// Error class label of a result, for metrics.
pub fn error_class(result: &AttemptResult) -> Option<ErrorClass> {
    result.error.as_ref().map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns_between_endpoints_within_each_cap() {
        let row = |d: &str, e: &str| (DeliveryId::from_trusted(d), EndpointId::from_trusted(e));
        // A burst to `we_a` is due first; `we_b` and `we_c` have one row each behind it.
        let rows = vec![
            row("whd_1", "we_a"),
            row("whd_2", "we_a"),
            row("whd_3", "we_a"),
            row("whd_4", "we_a"),
            row("whd_5", "we_b"),
            row("whd_6", "we_c"),
            row("whd_7", "we_b"),
        ];
        let ids = |taken: Vec<DeliveryId>| taken.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(round_robin(&rows, 5, |_| 10)),
            ["whd_1", "whd_5", "whd_6", "whd_2", "whd_7"],
            "one from each endpoint a turn, not the burst first"
        );
        let cap_a = |e: &EndpointId| if e.as_str() == "we_a" { 2 } else { 10 };
        assert_eq!(
            ids(round_robin(&rows, 50, cap_a)),
            ["whd_1", "whd_5", "whd_6", "whd_2", "whd_7"],
            "no more than an endpoint's cap"
        );
    }
}
