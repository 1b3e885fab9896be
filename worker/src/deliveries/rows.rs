//! A delivery row's life outside an attempt: made (claimed by its maker or due for the
//! sweep), made due again, released, handed back; and the fence every write of a claimed row
//! goes through.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{DeliveryId, EndpointId};
use entity::status::DeliveryStatus;
use entity::webhook_endpoints;
use entity::{events, webhook_deliveries};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait,
};

/// A claim of delivery rows: until when, and the token its later writes are fenced on. Every
/// claim makes a fresh one ([`Lease::new`]); a renewal moves `until`, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub until: DateTime<Utc>,
    pub token: String,
}

impl Lease {
    /// A new claim taken at `now` for `lease`, with a token no other claim has.
    pub fn new(now: DateTime<Utc>, lease: Duration) -> Lease {
        Lease {
            until: lease_until(now, lease),
            token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// When a claim made at `now` for `lease` ends, at the database's precision (microseconds).
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
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::UpdatedAt, Expr::value(now))
}

/// A new delivery row of `event` to `endpoint_id`: claimed under `claim` (sent at once by
/// whoever inserts it), or otherwise due now for the sweep.
pub fn new_row(
    event: &events::Model,
    endpoint_id: &EndpointId,
    claim: Option<&Lease>,
    now: DateTime<Utc>,
) -> webhook_deliveries::ActiveModel {
    let (status, next_retry_at) = match claim {
        Some(_) => (DeliveryStatus::Processing, None),
        None => (DeliveryStatus::Pending, Some(now)),
    };
    webhook_deliveries::ActiveModel {
        id: Set(DeliveryId::for_event_endpoint(&event.id, endpoint_id)),
        merchant_id: Set(event.merchant_id.clone()),
        livemode: Set(event.livemode),
        event_id: Set(event.id.clone()),
        endpoint_id: Set(endpoint_id.clone()),
        status: Set(status),
        attempts: Set(0),
        earlier_attempts: Set(0),
        next_retry_at: Set(next_retry_at),
        locked_until: Set(claim.map(|c| c.until)),
        lease_token: Set(claim.map(|c| c.token.clone())),
        last_attempt_at: Set(None),
        http_status: Set(None),
        error_message: Set(None),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Makes the rows still held under these claims' tokens due again at once (a worker shutting
/// down hands back what it did not record). Returns how many rows were released.
///
/// Fenced by the tokens like every write of a claimed row: a row whose lease ran out and that
/// another worker took over has a new token and is left alone (releasing it would throw away
/// that worker's claim, and its result with it). Rows another transaction has locked are
/// skipped, as in [`renew`]: that is the recorder finishing them.
pub async fn release<C: ConnectionTrait>(db: &C, tokens: &[String]) -> Result<u64, DbErr> {
    if tokens.is_empty() {
        return Ok(0);
    }
    let result = due_now()
        .filter(webhook_deliveries::Column::Id.in_subquery(held_free(tokens)))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The ids of the rows still processing under these claims' tokens that no other transaction
/// holds, locked for the statement they are a subquery of.
fn held_free(tokens: &[String]) -> sea_orm::sea_query::SelectStatement {
    use webhook_deliveries::Column as C;
    webhook_deliveries::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::Status.eq(DeliveryStatus::Processing))
        .filter(C::LeaseToken.is_in(runtime::db::padded(tokens.iter().map(String::as_str))))
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query()
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

/// The row is still ours: processing under the very claim this worker made (its token; the
/// lease's end may have been renewed since).
pub(super) fn lease_held(delivery: &webhook_deliveries::Model) -> Condition {
    use webhook_deliveries::Column as C;
    Condition::all()
        .add(C::Status.eq(DeliveryStatus::Processing))
        .add(match &delivery.lease_token {
            Some(token) => C::LeaseToken.eq(token.as_str()),
            // A claim always has a token: a row without one is nobody's to write.
            None => Expr::value(false),
        })
}

/// Extends to `now + lease` the leases of the rows still held under these claims' tokens (a
/// worker renews what it holds while it sends and records). A row taken over since has a new
/// token and is not touched. Returns how many rows were renewed.
///
/// Rows another transaction has locked are skipped, not waited for: that is the recorder
/// writing their results (after which they need no lease), and waiting for it deadlocked.
/// The renewal locked hundreds of rows in the index's order while a recorder transaction
/// held some of them and wanted others, and PostgreSQL only breaks a deadlock after
/// `deadlock_timeout` (1 s): under load every such stall piled up a second of sent but
/// unrecorded attempts in memory. A row skipped now is renewed at the next turn, a quarter
/// lease later.
pub async fn renew<C: ConnectionTrait>(
    db: &C,
    tokens: &[String],
    lease: Duration,
) -> Result<u64, DbErr> {
    use webhook_deliveries::Column as C;
    if tokens.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let result = webhook_deliveries::Entity::update_many()
        .col_expr(C::LockedUntil, Expr::value(lease_until(now, lease)))
        .filter(C::Id.in_subquery(held_free(tokens)))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Everything one attempt needs. The fan-out already holds it for the rows it claims; the
/// sweep reads it with [`load_contexts`]. The event and the endpoint are shared by the
/// contexts that need them: the event's payload is a tree of maps, and a copy per delivery was
/// the worker's largest source of allocations (heaptrack, closed loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptContext {
    pub delivery: webhook_deliveries::Model,
    pub endpoint: Option<Arc<webhook_endpoints::Model>>,
    pub event: Arc<events::Model>,
}

/// One delivery's context (`None` when the row or its event is gone).
pub async fn load_context<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<Option<AttemptContext>, DbErr> {
    Ok(load_contexts(db, std::slice::from_ref(delivery_id))
        .await?
        .pop())
}

/// The contexts of several deliveries, in the order of `ids`, leaving out any whose row or
/// event is gone: three queries for the whole batch, however long (a sweep's claim used to
/// cost three per row).
pub async fn load_contexts<C: ConnectionTrait>(
    db: &C,
    ids: &[DeliveryId],
) -> Result<Vec<AttemptContext>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut deliveries: HashMap<DeliveryId, webhook_deliveries::Model> =
        webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::Id.is_in(runtime::db::padded(ids.iter().cloned())))
            .all(db)
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
    let event_ids: HashSet<_> = deliveries.values().map(|d| d.event_id.clone()).collect();
    let endpoint_ids: HashSet<_> = deliveries.values().map(|d| d.endpoint_id.clone()).collect();
    let events: HashMap<_, Arc<events::Model>> = events::Entity::find()
        .filter(events::Column::Id.is_in(runtime::db::padded(event_ids)))
        .all(db)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    let endpoints: HashMap<_, Arc<webhook_endpoints::Model>> = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::Id.is_in(runtime::db::padded(endpoint_ids)))
        .all(db)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    Ok(ids
        .iter()
        .filter_map(|id| {
            let delivery = deliveries.remove(id)?;
            let event = Arc::clone(events.get(&delivery.event_id)?);
            let endpoint = endpoints.get(&delivery.endpoint_id).cloned();
            Some(AttemptContext {
                delivery,
                endpoint,
                event,
            })
        })
        .collect())
}
