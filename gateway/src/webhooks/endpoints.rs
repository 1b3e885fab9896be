//! Merchants' webhook endpoints. The signing secret is generated here and shown only once.

use chrono::Utc;
use entity::ids::{EndpointId, MerchantId};
use entity::signature::SigningKey;
use entity::{merchants, webhook_endpoints};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};

use entity::event::EventType;
use entity::status::EndpointStatus;

use crate::error::{ServiceError, ValidationError, plain_text};
use crate::pagination::Page;

/// The event types an endpoint subscribes to: known names or `*`, sorted, no repeats.
pub fn event_list(events: Vec<String>) -> Result<Vec<String>, ValidationError> {
    events
        .iter()
        .try_for_each(|e| plain_text("enabled_events", e))?;
    if events.is_empty() {
        return Err(ValidationError::new(
            "enabled_events",
            "parameter_missing",
            "enabled_events needs at least one event type, or \"*\".",
        ));
    }
    for e in &events {
        if e != "*" && EventType::parse(e).is_none() {
            return Err(ValidationError::new(
                "enabled_events",
                "event_type_unknown",
                format!("Unknown event type '{e}'."),
            ));
        }
    }
    let mut events = events;
    events.sort();
    events.dedup();
    Ok(events)
}

/// An endpoint to create, checked.
pub struct NewEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
}

impl NewEndpoint {
    /// What identifies the request for idempotency.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "url": self.url,
            "enabled_events": self.enabled_events,
            "description": self.description,
        });
        entity::signature::sha256_hex(canonical.to_string().as_bytes())
    }
}

/// A change to an endpoint, checked; `None` leaves a field as it is.
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub description: Option<String>,
    pub status: Option<EndpointStatus>,
}

/// Creates an endpoint, unless the merchant already has `max` of them. The merchant's row is
/// locked for the count, so concurrent creations cannot go past the cap together.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    new: NewEndpoint,
    max: u32,
) -> Result<webhook_endpoints::Model, ServiceError> {
    merchants::Entity::find_by_id(merchant_id.clone())
        .lock_exclusive()
        .one(db)
        .await?;
    let existing = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::MerchantId.eq(merchant_id))
        .count(db)
        .await?;
    if existing >= u64::from(max) {
        return Err(ValidationError::new(
            "url",
            "endpoint_limit_reached",
            format!("An account can have at most {max} webhook endpoints; delete one first."),
        )
        .into());
    }
    let now = Utc::now();
    Ok(
        webhook_endpoints::Entity::insert(webhook_endpoints::ActiveModel {
            id: Set(EndpointId::generate()),
            merchant_id: Set(merchant_id.clone()),
            url: Set(new.url),
            description: Set(new.description),
            enabled_events: Set(serde_json::json!(new.enabled_events)),
            secret: Set(SigningKey::generate_secret()),
            status: Set(EndpointStatus::Enabled),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_with_returning(db)
        .await?,
    )
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    id: &EndpointId,
) -> Result<Option<webhook_endpoints::Model>, DbErr> {
    webhook_endpoints::Entity::find_by_id(id.clone())
        .filter(webhook_endpoints::Column::MerchantId.eq(merchant_id))
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    page: &Page,
) -> Result<(Vec<webhook_endpoints::Model>, bool), DbErr> {
    let select = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::MerchantId.eq(merchant_id));
    page.fetch(db, select, webhook_endpoints::Column::Id).await
}

pub async fn update<C: ConnectionTrait>(
    db: &C,
    existing: webhook_endpoints::Model,
    change: EndpointUpdate,
) -> Result<webhook_endpoints::Model, DbErr> {
    let mut active: webhook_endpoints::ActiveModel = existing.into();
    if let Some(url) = change.url {
        active.url = Set(url);
    }
    if let Some(events) = change.enabled_events {
        active.enabled_events = Set(serde_json::json!(events));
    }
    if let Some(description) = change.description {
        active.description = Set(Some(description));
    }
    if let Some(status) = change.status {
        active.status = Set(status);
    }
    active.updated_at = Set(Utc::now());
    webhook_endpoints::Entity::update(active).exec(db).await
}

/// Deletes an endpoint. Its deliveries stay as history; pending ones fail as "endpoint
/// deleted" when next attempted.
pub async fn delete<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    id: &EndpointId,
) -> Result<bool, DbErr> {
    let result = webhook_endpoints::Entity::delete_many()
        .filter(webhook_endpoints::Column::Id.eq(id))
        .filter(webhook_endpoints::Column::MerchantId.eq(merchant_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
