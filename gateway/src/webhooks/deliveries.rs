//! Reading deliveries and their attempts, and the merchant's manual retry.

use chrono::{DateTime, Utc};
use entity::ids::{DeliveryId, MerchantId};
use entity::status::DeliveryStatus;
use entity::{webhook_attempts, webhook_deliveries};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::pagination::Page;

#[derive(Default)]
pub struct DeliveryFilter<'a> {
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    filter: DeliveryFilter<'_>,
    page: &Page,
) -> Result<(Vec<webhook_deliveries::Model>, bool), DbErr> {
    use webhook_deliveries::Column as C;
    let mut select = webhook_deliveries::Entity::find().filter(C::MerchantId.eq(merchant_id));
    if let Some(s) = filter.status {
        select = select.filter(C::Status.eq(s.as_str()));
    }
    if let Some(e) = filter.endpoint_id {
        select = select.filter(C::EndpointId.eq(e));
    }
    if let Some(e) = filter.event_id {
        select = select.filter(C::EventId.eq(e));
    }
    page.fetch(db, select, C::Id).await
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    id: &DeliveryId,
) -> Result<Option<webhook_deliveries::Model>, DbErr> {
    webhook_deliveries::Entity::find_by_id(id.clone())
        .filter(webhook_deliveries::Column::MerchantId.eq(merchant_id))
        .one(db)
        .await
}

pub async fn attempts<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<Vec<webhook_attempts::Model>, DbErr> {
    webhook_attempts::Entity::find()
        .filter(webhook_attempts::Column::DeliveryId.eq(delivery_id))
        .order_by_asc(webhook_attempts::Column::CreatedAt)
        .order_by_asc(webhook_attempts::Column::Id)
        .all(db)
        .await
}

/// A merchant's manual retry: a `failed` or `pending` delivery becomes due now with a fresh
/// set of attempts. Earlier attempt rows stay as history. Returns false when the delivery is
/// in a state that cannot be retried (being sent, or already delivered).
pub async fn make_due_now<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<bool, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let result = webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(C::Attempts, Expr::value(0))
        .col_expr(C::NextRetryAt, Expr::value(now))
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(delivery_id))
        .filter(C::Status.is_in([DeliveryStatus::Failed, DeliveryStatus::Pending]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
