//! Writing to the log store, for both processes (the worker records exhausted deliveries,
//! the gateway payment failures and API errors). Writing a log entry never fails the work it
//! describes: an error here is itself only logged. A merchant's entry is announced to the
//! dashboards once written.

use chrono::Utc;
use entity::bus::{LiveChange, LiveNotice};
use entity::ids::{LogId, Scope};
use entity::logs;
use entity::status::LogLevel;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use crate::bus::EventBus;

pub struct Entry<'a> {
    /// The merchant and mode the entry is about; none for Payrail's own.
    pub scope: Option<&'a Scope>,
    pub level: LogLevel,
    pub source: &'a str,
    pub message: &'a str,
    pub context: Option<serde_json::Value>,
    pub request_id: Option<&'a str>,
}

/// Writes an entry on `db`, which may be a transaction (the usage threshold check writes its
/// entry with its event). The dashboards are told at once; inside a transaction that may be
/// just before the commit, and the page then shows the entry at its next reload.
pub async fn write<C: ConnectionTrait>(
    db: &C,
    bus: &EventBus,
    entry: Entry<'_>,
) -> Result<logs::Model, DbErr> {
    let written = logs::Entity::insert(logs::ActiveModel {
        id: Set(LogId::generate()),
        merchant_id: Set(entry.scope.map(|s| s.merchant_id.clone())),
        livemode: Set(entry.scope.is_some_and(|s| s.livemode)),
        level: Set(entry.level),
        message: Set(entry.message.to_string()),
        source: Set(entry.source.to_string()),
        context: Set(entry.context),
        request_id: Set(entry.request_id.map(str::to_string)),
        created_at: Set(Utc::now()),
    })
    .exec_with_returning(db)
    .await?;
    if let Some(merchant_id) = &written.merchant_id {
        bus.announce(LiveNotice::new(
            merchant_id.clone(),
            LiveChange::LogEntry {
                log_id: written.id.clone(),
                level: written.level.to_string(),
            },
        ));
    }
    Ok(written)
}

/// Writes an entry Payrail makes about itself; failures are traced, not returned.
pub async fn record<C: ConnectionTrait>(db: &C, bus: &EventBus, entry: Entry<'_>) {
    if let Err(e) = write(db, bus, entry).await {
        tracing::warn!(error = %e, "could not write a log store entry");
    }
}
