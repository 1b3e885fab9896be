//! Merchants' webhook endpoints. The signing secret is generated here and shown only once.

use chrono::Utc;
use entity::ids::{EndpointId, Scope};
use entity::signature::SigningKey;
use entity::{merchants, webhook_endpoints};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};

use entity::event::EventType;
use entity::status::EndpointStatus;

use crate::core::error::{ServiceError, ValidationError, plain_text};
use crate::core::pagination::Page;

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
    pub max_concurrency: Option<i32>,
    pub rate_limit: Option<i32>,
}

impl NewEndpoint {
    /// What identifies the request for idempotency.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "url": self.url,
            "enabled_events": self.enabled_events,
            "description": self.description,
            "max_concurrency": self.max_concurrency,
            "rate_limit": self.rate_limit,
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
    /// `Some(None)` goes back to the server's default.
    pub max_concurrency: Option<Option<i32>>,
    /// `Some(None)` removes the limit.
    pub rate_limit: Option<Option<i32>>,
}

/// Creates an endpoint of the scope's mode (it will hear only that mode's events), unless the
/// merchant already has `max` of them in that mode. The merchant's row is locked for the
/// count, so concurrent creations cannot go past the cap together.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    new: NewEndpoint,
    max: u32,
) -> Result<webhook_endpoints::Model, ServiceError> {
    merchants::Entity::find_by_id(scope.merchant_id.clone())
        .lock_exclusive()
        .one(db)
        .await?;
    let existing = webhook_endpoints::Entity::find()
        .filter(scope.of::<webhook_endpoints::Entity>())
        .count(db)
        .await?;
    if existing >= u64::from(max) {
        return Err(ValidationError::new(
            "url",
            "endpoint_limit_reached",
            format!(
                "An account can have at most {max} webhook endpoints in {} mode; delete one first.",
                scope.mode()
            ),
        )
        .into());
    }
    let now = Utc::now();
    Ok(
        webhook_endpoints::Entity::insert(webhook_endpoints::ActiveModel {
            id: Set(EndpointId::generate()),
            merchant_id: Set(scope.merchant_id.clone()),
            livemode: Set(scope.livemode),
            url: Set(new.url),
            description: Set(new.description),
            enabled_events: Set(serde_json::json!(new.enabled_events)),
            secret: Set(SigningKey::generate_secret()),
            status: Set(EndpointStatus::Enabled),
            max_concurrency: Set(new.max_concurrency),
            rate_limit: Set(new.rate_limit),
            disabled_reason: Set(None),
            previous_secret: Set(None),
            previous_secret_expires_at: Set(None),
            failing_since: Set(None),
            consecutive_failures: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_with_returning(db)
        .await?,
    )
}

/// The endpoint if it is enabled; a disabled one is a 409 saying how to enable it.
pub fn enabled(
    e: webhook_endpoints::Model,
) -> Result<webhook_endpoints::Model, crate::core::error::ServiceError> {
    if e.status == entity::status::EndpointStatus::Enabled {
        return Ok(e);
    }
    Err(crate::core::error::ServiceError::State {
        code: "endpoint_disabled",
        message: format!(
            "Webhook endpoint {} is disabled ({}); enable it with PATCH first.",
            e.id,
            e.disabled_reason.as_deref().unwrap_or("manual")
        ),
    })
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &EndpointId,
) -> Result<Option<webhook_endpoints::Model>, DbErr> {
    webhook_endpoints::Entity::find_by_id(id.clone())
        .filter(scope.of::<webhook_endpoints::Entity>())
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    page: &Page,
) -> Result<(Vec<webhook_endpoints::Model>, bool), DbErr> {
    let select = webhook_endpoints::Entity::find().filter(scope.of::<webhook_endpoints::Entity>());
    page.fetch(db, select, webhook_endpoints::Column::Id).await
}

/// Every endpoint of the scope, newest first (a merchant has at most a few dozen).
pub async fn all<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
) -> Result<Vec<webhook_endpoints::Model>, DbErr> {
    use sea_orm::QueryOrder as _;
    webhook_endpoints::Entity::find()
        .filter(scope.of::<webhook_endpoints::Entity>())
        .order_by_desc(webhook_endpoints::Column::Id)
        .all(db)
        .await
}

/// Each endpoint's URL by its id, to name the endpoints deliveries went to.
pub async fn urls<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
) -> Result<std::collections::HashMap<EndpointId, String>, DbErr> {
    Ok(all(db, scope)
        .await?
        .into_iter()
        .map(|e| (e.id, e.url))
        .collect())
}

pub async fn update<C: ConnectionTrait>(
    db: &C,
    existing: webhook_endpoints::Model,
    change: EndpointUpdate,
) -> Result<webhook_endpoints::Model, DbErr> {
    let existing_status = existing.status;
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
    if let Some(limit) = change.max_concurrency {
        active.max_concurrency = Set(limit);
    }
    if let Some(limit) = change.rate_limit {
        active.rate_limit = Set(limit);
    }
    match change.status {
        // Enabling starts afresh: the streak that disabled it is history.
        Some(EndpointStatus::Enabled) if existing_status != EndpointStatus::Enabled => {
            active.status = Set(EndpointStatus::Enabled);
            active.disabled_reason = Set(None);
            active.failing_since = Set(None);
            active.consecutive_failures = Set(0);
        }
        Some(EndpointStatus::Disabled) if existing_status != EndpointStatus::Disabled => {
            active.status = Set(EndpointStatus::Disabled);
            active.disabled_reason = Set(Some("manual".into()));
        }
        _ => {}
    }
    active.updated_at = Set(Utc::now());
    webhook_endpoints::Entity::update(active).exec(db).await
}

/// Replaces the endpoint's signing secret. The one it replaces keeps signing beside the new
/// one until `now + overlap`, so receivers can switch without dropping a webhook; rotating
/// again within the overlap retires the oldest at once.
pub async fn rotate_secret<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &EndpointId,
    overlap: std::time::Duration,
) -> Result<Option<webhook_endpoints::Model>, DbErr> {
    // Locked, so two rotations at once chain (each replaces the other's) instead of both
    // replacing the same secret and losing one of the new ones.
    let Some(existing) = webhook_endpoints::Entity::find_by_id(id.clone())
        .filter(scope.of::<webhook_endpoints::Entity>())
        .lock_exclusive()
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::days(1));
    let previous = existing.secret.clone();
    let mut active: webhook_endpoints::ActiveModel = existing.into();
    active.secret = Set(SigningKey::generate_secret());
    active.previous_secret = Set(Some(previous));
    active.previous_secret_expires_at = Set(Some(until));
    active.updated_at = Set(now);
    webhook_endpoints::Entity::update(active)
        .exec(db)
        .await
        .map(Some)
}

/// Deletes an endpoint. Its deliveries stay as history; pending ones fail as "endpoint
/// deleted" when next attempted.
pub async fn delete<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &EndpointId,
) -> Result<bool, DbErr> {
    let result = webhook_endpoints::Entity::delete_many()
        .filter(webhook_endpoints::Column::Id.eq(id))
        .filter(scope.of::<webhook_endpoints::Entity>())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
