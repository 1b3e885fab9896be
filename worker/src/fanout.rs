//! Turning one committed event into delivery rows, one per subscribed endpoint.
//!
//! Rows are unique on `(event_id, endpoint_id)`, so a message the broker redelivers creates
//! nothing new. With immediate delivery the new rows are inserted already claimed by this
//! worker (`processing` with a lease): it sends them at once after commit, and if it dies
//! first the lease runs out and the sweep picks them up.

use std::time::Duration;

use chrono::Utc;
use entity::bus::BusMessage;
use entity::event::subscribes;
use entity::{events, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionSession,
    TransactionTrait, TryIntoModel,
};

use entity::status::EndpointStatus;

use crate::deliveries::{AttemptContext, lease_until, new_row};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Rows created now and claimed for an immediate attempt, with what the attempt needs.
    pub claimed: Vec<AttemptContext>,
    /// Rows created as due now (immediate delivery off).
    pub queued: usize,
    /// Subscribed endpoints that already had a row for this event (a redelivered message).
    pub already_present: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("event {0} does not exist (or does not match its message)")]
    UnknownEvent(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Fans out the event a bus message announces. The subscribed endpoints are found from the
/// message first, so an event nobody listens to costs one query and no transaction.
pub async fn fan_out<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    message: &BusMessage,
    immediate: bool,
    lease: Duration,
) -> Result<FanOut, FanOutError> {
    let BusMessage::V1 {
        event_id,
        merchant_id,
        event_type,
        ..
    } = message;
    let endpoints: Vec<webhook_endpoints::Model> = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::MerchantId.eq(merchant_id.as_str()))
        .filter(webhook_endpoints::Column::Status.eq(EndpointStatus::Enabled))
        .all(db)
        .await?
        .into_iter()
        .filter(|e| subscribes(&e.enabled_event_names(), event_type))
        .collect();
    if endpoints.is_empty() {
        return Ok(FanOut::default());
    }
    let txn = db.begin().await?;
    let event = events::Entity::find_by_id(event_id.clone())
        .one(&txn)
        .await?
        .filter(|e| &e.merchant_id == merchant_id && &e.event_type == event_type)
        .ok_or_else(|| FanOutError::UnknownEvent(event_id.to_string()))?;
    let now = Utc::now();
    let locked_until = lease_until(now, lease);
    let mut outcome = FanOut::default();
    for endpoint in &endpoints {
        let row = new_row(&event, &endpoint.id, immediate.then_some(locked_until), now);
        let model = row.clone().try_into_model()?;
        let inserted = webhook_deliveries::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    webhook_deliveries::Column::EventId,
                    webhook_deliveries::Column::EndpointId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        match (inserted, immediate) {
            (0, _) => outcome.already_present += 1,
            (_, true) => outcome.claimed.push(AttemptContext {
                delivery: model,
                endpoint: Some(endpoint.clone()),
                event: event.clone(),
            }),
            (_, false) => outcome.queued += 1,
        }
    }
    txn.commit().await?;
    Ok(outcome)
}
