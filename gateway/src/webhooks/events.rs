//! The event log, which is also the outbox. Events are only ever written inside the
//! transaction of the change they describe.

use entity::event::EventType;
use entity::events;
use entity::ids::{EventId, PaymentId, Scope};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::core::pagination::{CreatedRange, Page};

pub async fn record<C: ConnectionTrait>(
    txn: &C,
    scope: &Scope,
    event_type: EventType,
    payment_id: Option<&PaymentId>,
    data: serde_json::Value,
    request_id: Option<&str>,
) -> Result<EventId, DbErr> {
    let (id, row) = runtime::outbox::event(
        scope,
        event_type,
        payment_id,
        data,
        request_id,
        runtime::outbox::Route::Bus,
    );
    events::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(id)
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &EventId,
) -> Result<Option<events::Model>, DbErr> {
    events::Entity::find_by_id(id.clone())
        .filter(scope.of::<events::Entity>())
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    types: &[String],
    created: &CreatedRange,
    page: &Page,
) -> Result<(Vec<events::Model>, bool), DbErr> {
    let mut select = events::Entity::find().filter(scope.of::<events::Entity>());
    if !types.is_empty() {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(String::as_str)));
    }
    let select = created.apply(select, events::Column::CreatedAt);
    page.fetch(db, select, events::Column::Id).await
}

/// A payment's events, oldest first.
pub async fn for_payment<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    payment_id: &PaymentId,
) -> Result<Vec<events::Model>, DbErr> {
    use sea_orm::QueryOrder as _;
    events::Entity::find()
        .filter(scope.of::<events::Entity>())
        .filter(events::Column::PaymentId.eq(payment_id))
        .order_by_asc(events::Column::Id)
        .all(db)
        .await
}

/// The type of each of these events, by id.
pub async fn types_of<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    ids: &[EventId],
) -> Result<std::collections::HashMap<EventId, String>, DbErr> {
    use sea_orm::QuerySelect as _;
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(EventId, String)> = events::Entity::find()
        .filter(scope.of::<events::Entity>())
        .filter(events::Column::Id.is_in(ids.iter().cloned()))
        .select_only()
        .column(events::Column::Id)
        .column(events::Column::EventType)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}
