//! What waits: the row counts behind `queue_size`, the oldest due row's age, and the
//! endpoints failing longest.

use chrono::{DateTime, Utc};
use entity::ids::EndpointId;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{webhook_deliveries, webhook_endpoints};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

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
