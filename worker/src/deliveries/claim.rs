//! Claiming due rows: `FOR UPDATE SKIP LOCKED` with a lease, round-robin between
//! endpoints within each one's concurrency.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{DeliveryId, EndpointId};
use entity::status::DeliveryStatus;
use entity::{webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionSession, TransactionTrait,
};

use super::rows::Lease;

/// What one claim took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Claimed rows, round-robin between endpoints.
    pub ids: Vec<DeliveryId>,
    /// More rows were due than this claim took: claim again once these are sent.
    pub more: bool,
    /// Rows taken over from a worker whose lease ran out: each got an attempt of unknown
    /// outcome (that worker may have sent it, and the receiver may have it).
    pub taken_over: usize,
    /// The claim's token (its rows' writes are fenced on it); `None` when nothing was due.
    pub token: Option<String>,
}

/// `error_class` of an attempt whose outcome died with its worker.
pub const UNKNOWN_OUTCOME: &str = "unknown";

/// Claims up to `limit` due rows for `lease`: rows whose lease ran out first (their worker
/// died), then pending rows oldest due first. The rows are taken round-robin between
/// endpoints, at most `per_endpoint` (or the endpoint's own `max_concurrency`) for any one, so
/// a burst to one merchant neither fills a batch nor opens more connections than it allows.
///
/// `own` are the tokens of claims the caller still holds: their rows are never taken over
/// by the caller itself, even past their lease (its database was cut while it sent them; it
/// still has their results to record, and a resend would be a duplicate).
pub async fn claim_due<C: TransactionTrait>(
    db: &C,
    limit: u64,
    per_endpoint: u32,
    lease: Duration,
    own: &[String],
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
    let mut expired = Condition::all()
        .add(C::Status.eq(DeliveryStatus::Processing))
        .add(C::LockedUntil.lte(now));
    if !own.is_empty() {
        expired = expired.add(
            Condition::any()
                .add(C::LeaseToken.is_null())
                .add(C::LeaseToken.is_not_in(runtime::db::padded(own.iter().map(String::as_str)))),
        );
    }
    let mut found = candidates(expired, false, window).all(&txn).await?;
    let expired = found.len();
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
    let leases_ran_out: std::collections::HashSet<DeliveryId> = found
        .iter()
        .take(expired)
        .map(|(id, _)| id.clone())
        .collect();
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
    let claim = (!ids.is_empty()).then(|| Lease::new(now, lease));
    if let Some(claim) = &claim {
        webhook_deliveries::Entity::update_many()
            .col_expr(C::Status, Expr::value(DeliveryStatus::Processing))
            .col_expr(C::LockedUntil, Expr::value(claim.until))
            .col_expr(C::LeaseToken, Expr::value(claim.token.clone()))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.is_in(runtime::db::padded(ids.iter().cloned())))
            .exec(&txn)
            .await?;
    }
    let taken_over: Vec<DeliveryId> = ids
        .iter()
        .filter(|id| leases_ran_out.contains(*id))
        .cloned()
        .collect();
    record_unknown_outcomes(&txn, &taken_over, now).await?;
    txn.commit().await?;
    Ok(Claim {
        ids,
        more,
        taken_over: taken_over.len(),
        token: claim.map(|c| c.token),
    })
}

/// A row whose lease ran out was claimed by a worker that stopped before recording its
/// attempt: whether it sent the request is unknown. The attempt is recorded as such (and
/// counted), so attempts match sends and an operator sees what a receiver may have twice.
pub(crate) async fn record_unknown_outcomes<C: ConnectionTrait>(
    txn: &C,
    ids: &[DeliveryId],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::ActiveValue::Set;
    use webhook_deliveries::Column as C;
    if ids.is_empty() {
        return Ok(());
    }
    let rows = webhook_deliveries::Entity::find()
        .filter(C::Id.is_in(runtime::db::padded(ids.iter().cloned())))
        .all(txn)
        .await?;
    let attempts = rows.iter().map(|d| entity::webhook_attempts::ActiveModel {
        id: Set(entity::ids::AttemptId::generate()),
        delivery_id: Set(d.id.clone()),
        merchant_id: Set(d.merchant_id.clone()),
        livemode: Set(d.livemode),
        attempt_number: Set(d.earlier_attempts + d.attempts + 1),
        http_status: Set(None),
        error_message: Set(Some(
            "The worker sending this attempt stopped before recording its outcome; the receiver may have it.".into(),
        )),
        error_class: Set(Some(UNKNOWN_OUTCOME.into())),
        response_body: Set(None),
        request_headers: Set(None),
        duration_ms: Set(0),
        created_at: Set(now),
    });
    entity::webhook_attempts::Entity::insert_many(attempts)
        .exec_without_returning(txn)
        .await?;
    webhook_deliveries::Entity::update_many()
        .col_expr(
            C::Attempts,
            sea_orm::sea_query::ExprTrait::add(Expr::col(C::Attempts), 1),
        )
        .filter(C::Id.is_in(runtime::db::padded(ids.iter().cloned())))
        .exec(txn)
        .await?;
    Ok(())
}

/// The endpoints' own concurrency limits, where they set one.
pub(super) async fn endpoint_limits<C: ConnectionTrait>(
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
        .filter(webhook_endpoints::Column::Id.is_in(runtime::db::padded(endpoints)))
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

/// When the next delivery falls due (a retry's time, or a claim's lease running out), if any,
/// perhaps already: the sweep loop wakes for it rather than waiting for its next tick. A row
/// already due is one that fell due while this worker's sweeps were all busy (their claims
/// were made before it was due): it must not wait for the tick either.
pub async fn next_retry_due<C: ConnectionTrait>(db: &C) -> Result<Option<DateTime<Utc>>, DbErr> {
    use webhook_deliveries::Column as C;
    let first = |status: DeliveryStatus, column: C| {
        webhook_deliveries::Entity::find()
            .select_only()
            .column(column)
            .filter(C::Status.eq(status))
            .filter(column.is_not_null())
            .order_by_asc(column)
            .limit(1)
            .into_tuple::<DateTime<Utc>>()
            .one(db)
    };
    let retry = first(DeliveryStatus::Pending, C::NextRetryAt).await?;
    let lease = first(DeliveryStatus::Processing, C::LockedUntil).await?;
    Ok(match (retry, lease) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
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
