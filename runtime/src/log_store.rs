//! Writing to the log store, for both processes (the worker records exhausted deliveries,
//! the gateway payment failures and API errors). Writing a log entry never fails the work it
//! describes: an error here is itself only logged.

use chrono::Utc;
use entity::ids::{LogId, MerchantId};
use entity::logs;
use entity::status::LogLevel;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

pub struct Entry<'a> {
    pub merchant_id: Option<&'a MerchantId>,
    pub level: LogLevel,
    pub source: &'a str,
    pub message: &'a str,
    pub context: Option<serde_json::Value>,
    pub request_id: Option<&'a str>,
}

pub async fn write<C: ConnectionTrait>(db: &C, entry: Entry<'_>) -> Result<logs::Model, DbErr> {
    logs::Entity::insert(logs::ActiveModel {
        id: Set(LogId::generate()),
        merchant_id: Set(entry.merchant_id.cloned()),
        level: Set(entry.level),
        message: Set(entry.message.to_string()),
        source: Set(entry.source.to_string()),
        context: Set(entry.context),
        request_id: Set(entry.request_id.map(str::to_string)),
        created_at: Set(Utc::now()),
    })
    .exec_with_returning(db)
    .await
}

/// Writes an entry Payrail makes about itself; failures are traced, not returned.
pub async fn record<C: ConnectionTrait>(db: &C, entry: Entry<'_>) {
    if let Err(e) = write(db, entry).await {
        tracing::warn!(error = %e, "could not write a log store entry");
    }
}
