//! Recording attempts: the delivery's next state and the attempt row in one transaction
//! (several at once for group commit), the endpoint's failing streak, and what follows the
//! commit (an endpoint disabled, the live notice).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use entity::bus::{LiveChange, LiveNotice};
use entity::ids::{AttemptId, EndpointId};
use entity::retry::NextStep;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryTrait,
    TransactionSession, TransactionTrait,
};

use runtime::bus::EventBus;

use crate::sender::{AttemptResult, ErrorClass};
use std::time::Duration;

use entity::retry::RetryPolicy;

use super::ROWS_PER_INSERT;

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

/// How an attempt's result is judged.
#[derive(Debug, Clone)]
pub struct Rules {
    pub policy: RetryPolicy,
    /// An endpoint that has failed, with no success in between, for this long is disabled.
    pub disable_after: Duration,
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

pub(super) async fn record<C: ConnectionTrait + TransactionTrait>(
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

/// What recording an attempt writes to its delivery row. Results with the same write (a
/// batch of first attempts that all succeeded, typically) are written by one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowWrite {
    status: DeliveryStatus,
    attempts: i32,
    next_retry_at: Option<DateTime<Utc>>,
    http_status: Option<i32>,
    error_message: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
}

/// Records attempts' results inside `txn`, one outcome each in order (the second value says
/// the attempt disabled its endpoint; pass it to [`after_commit`]).
///
/// The delivery rows are updated first, under their leases, one statement for each distinct
/// write rather than one per row (a full batch of successes is one round trip, not a hundred):
/// a row whose lease was lost is not matched, writes nothing and gives `Skipped`, so the others
/// go on. Then one insert for all the attempt rows, and each endpoint's streak once, endpoints
/// in id order: every transaction locks endpoint rows in the same order, so concurrent ones
/// cannot deadlock.
pub(crate) async fn record_in<T: ConnectionTrait>(
    txn: &T,
    items: &[ToRecord<'_>],
    rules: &Rules,
) -> Result<Vec<(AttemptOutcome, Option<DisabledReason>)>, DbErr> {
    // Every statement below finds its rows by key.
    runtime::db::keep_generic_plans(txn, items.len()).await?;
    let now = Utc::now();
    // Each item's outcome and the index of its write in `writes`.
    let mut judged = Vec::with_capacity(items.len());
    // Each distinct write → the items that make it, in the order first seen.
    let mut writes: Vec<(RowWrite, Vec<usize>)> = Vec::new();
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
        let write = RowWrite {
            status,
            attempts,
            next_retry_at,
            http_status: result.http_status.map(i32::from),
            error_message: result.error.as_ref().map(|(_, m)| m.clone()),
            delivered_at,
        };
        let w = match writes.iter().position(|(w, _)| *w == write) {
            Some(w) => w,
            None => {
                writes.push((write, Vec::new()));
                writes.len() - 1
            }
        };
        writes[w].1.push(i);
        judged.push((outcome, w));
    }
    let mut written: HashSet<String> = HashSet::with_capacity(items.len());
    for (write, indices) in &writes {
        let deliveries = indices.iter().map(|&i| items[i].delivery);
        written.extend(write_rows(txn, write, deliveries, now).await?);
    }
    let mut recorded = Vec::with_capacity(items.len());
    let mut attempt_rows = Vec::with_capacity(items.len());
    // Endpoint id → the recorded items that went to it.
    let mut by_endpoint: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (item, (outcome, w))) in items.iter().zip(judged).enumerate() {
        let (delivery, result) = (item.delivery, item.result);
        if !written.contains(delivery.id.as_str()) {
            // Our lease ran out and another worker owns the row now (it may have delivered it
            // already): its result stands, ours must not overwrite it or count an attempt
            // twice. Nothing was written, so the transaction goes on with the others.
            tracing::warn!(delivery_id = %delivery.id, "lease lost before the attempt was recorded; result discarded");
            recorded.push((AttemptOutcome::Skipped, None));
            continue;
        }
        let write = &writes[w].0;
        attempt_rows.push(attempt_row(
            delivery,
            delivery.earlier_attempts + write.attempts,
            result,
            now,
        ));
        by_endpoint
            .entry(item.endpoint.id.as_str())
            .or_default()
            .push(i);
        recorded.push((outcome, None));
    }
    for piece in runtime::db::in_insert_pieces(attempt_rows, ROWS_PER_INSERT) {
        webhook_attempts::Entity::insert_many(piece)
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

/// The attempt row of `result`, the delivery's attempt number `number`.
fn attempt_row(
    delivery: &webhook_deliveries::Model,
    number: i32,
    result: &AttemptResult,
    now: DateTime<Utc>,
) -> webhook_attempts::ActiveModel {
    webhook_attempts::ActiveModel {
        id: Set(AttemptId::generate()),
        delivery_id: Set(delivery.id.clone()),
        merchant_id: Set(delivery.merchant_id.clone()),
        livemode: Set(delivery.livemode),
        attempt_number: Set(number),
        http_status: Set(result.http_status.map(i32::from)),
        error_message: Set(result.error.as_ref().map(|(_, m)| m.clone())),
        error_class: Set(result.error.as_ref().map(|(c, _)| c.as_str().to_string())),
        response_body: Set(result.response_body.clone()),
        request_headers: Set(entity::webhook_attempts::headers_text(
            &result.request_headers,
        )),
        duration_ms: Set(i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX)),
        created_at: Set(now),
    }
}

/// Records a send made while its row was being inserted by a fan-out other than the
/// sender's: an attempt row, numbered as the first it was, so that attempts account for
/// every request; the delivery's state is that fan-out's to write.
pub(crate) async fn record_extra_send<C: ConnectionTrait>(
    db: &C,
    delivery: &webhook_deliveries::Model,
    result: &AttemptResult,
) -> Result<(), DbErr> {
    webhook_attempts::Entity::insert(attempt_row(
        delivery,
        delivery.earlier_attempts + delivery.attempts + 1,
        result,
        Utc::now(),
    ))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Writes `write` to those of `deliveries` still held under the claim each was sent under
/// (its own lease token, still processing), in one statement; returns the ids it wrote.
async fn write_rows<'a, T: ConnectionTrait>(
    txn: &T,
    write: &RowWrite,
    deliveries: impl Iterator<Item = &'a webhook_deliveries::Model>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    use webhook_deliveries::Column as C;
    // A claim always has a token: a row without one is nobody's to write.
    let held: Vec<(String, String)> = runtime::db::padded(
        deliveries.filter_map(|d| Some((d.id.to_string(), d.lease_token.clone()?))),
    );
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
    let mut update = webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(write.status))
        .col_expr(C::Attempts, Expr::value(write.attempts))
        .col_expr(C::NextRetryAt, Expr::value(write.next_retry_at))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::LastAttemptAt, Expr::value(now))
        .col_expr(C::HttpStatus, Expr::value(write.http_status))
        .col_expr(C::ErrorMessage, Expr::value(write.error_message.clone()))
        .col_expr(C::DeliveredAt, Expr::value(write.delivered_at))
        .col_expr(C::UpdatedAt, Expr::value(now))
        // The id list alone lets PostgreSQL prune partitions and use the primary key; the
        // pairs are the fence.
        .filter(C::Id.is_in(ids))
        .filter(C::Status.eq(DeliveryStatus::Processing))
        .filter(Expr::tuple([Expr::col(C::Id), Expr::col(C::LeaseToken)]).in_tuples(held))
        .into_query();
    update.returning_col(C::Id);
    txn.query_all(&update)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "id"))
        .collect()
}

/// What an attempt's result comes to, given how many attempts the delivery has had with it.
pub(super) fn judge(
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
pub(super) async fn reset_streak<T: ConnectionTrait>(
    txn: &T,
    endpoint: &EndpointId,
) -> Result<(), DbErr> {
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
pub(super) async fn track_failure<T: ConnectionTrait>(
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
    let scope = entity::ids::Scope {
        merchant_id: current.merchant_id.clone(),
        livemode: current.livemode,
    };
    let (_, row) = runtime::outbox::event(
        &scope,
        entity::event::EventType::WebhookEndpointDisabled,
        None,
        serde_json::json!({
            "id": current.id,
            "object": "webhook_endpoint",
            "url": current.url,
            "status": "disabled",
            "disabled_reason": reason.as_str(),
            "failing_since": current.failing_since.map(entity::event::rfc3339),
            "consecutive_failures": current.consecutive_failures,
        }),
        None,
        runtime::outbox::Route::Bus,
    );
    events::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(Some(reason))
}

/// Error class label of a result, for metrics.
pub fn error_class(result: &AttemptResult) -> Option<ErrorClass> {
    result.error.as_ref().map(|(c, _)| *c)
}
