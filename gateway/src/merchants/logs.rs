//! The log store's reads and upkeep: a merchant's recent error and critical entries (through
//! the cache, with a TTL), counts by level and source over a window, and retention.

use entity::ids::Scope;
use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use entity::logs;
use entity::status::LogLevel as Level;
use sea_orm::sea_query::{Expr, ExprTrait as _, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use entity::event::rfc3339;
use poem_openapi::Object;
use runtime::cache::Cache;
use serde::{Deserialize, Serialize};

const RECENT: u64 = 50;
const RECENT_TTL: Duration = Duration::from_secs(30);

/// The merchant's latest error and critical entries; `true` when served from the cache.
/// Entries written by the gateway drop the cached list; the worker's show within the TTL.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    scope: &Scope,
) -> Result<(Vec<LogEntry>, bool), DbErr> {
    let key = crate::core::cache_keys::recent_logs(scope);
    if let Some(hit) = cache.get(&key).await
        && let Ok(entries) = serde_json::from_str::<Vec<LogEntry>>(&hit)
    {
        return Ok((entries, true));
    }
    let rows = logs::Entity::find()
        .filter(scope.of::<logs::Entity>())
        .filter(logs::Column::Level.is_in([Level::Error.as_str(), Level::Critical.as_str()]))
        .order_by_desc(logs::Column::CreatedAt)
        .order_by_desc(logs::Column::Id)
        .limit(RECENT)
        .all(db)
        .await?;
    let entries: Vec<LogEntry> = rows.iter().map(LogEntry::from).collect();
    if let Ok(json) = serde_json::to_string(&entries) {
        cache.set(&key, &json, RECENT_TTL).await;
    }
    Ok((entries, false))
}

/// What the dashboard's log page looks for: entries since a time, of a level and a source if
/// given, whose message contains some text (any case; `%` and `_` are plain letters).
#[derive(Debug, Clone)]
pub struct LogSearch {
    pub level: Option<Level>,
    pub source: Option<String>,
    pub text: Option<String>,
    pub window: Duration,
}

impl LogSearch {
    fn select(&self, scope: &Scope) -> sea_orm::Select<logs::Entity> {
        let since = Utc::now() - chrono::Duration::from_std(self.window).unwrap_or_default();
        let mut query = logs::Entity::find()
            .filter(scope.of::<logs::Entity>())
            .filter(logs::Column::CreatedAt.gte(since));
        if let Some(level) = self.level {
            query = query.filter(logs::Column::Level.eq(level.as_str()));
        }
        if let Some(source) = &self.source {
            query = query.filter(logs::Column::Source.eq(source.as_str()));
        }
        if let Some(text) = &self.text {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            query = query.filter(
                Expr::expr(Func::lower(Expr::col(logs::Column::Message)))
                    .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        }
        query
    }

    /// One page of what it finds, newest first (ids are time-ordered), and whether there are
    /// more on the page's far side.
    pub async fn page<C: ConnectionTrait>(
        &self,
        db: &C,
        scope: &Scope,
        page: &crate::core::pagination::Page,
    ) -> Result<(Vec<logs::Model>, bool), DbErr> {
        page.fetch(db, self.select(scope), logs::Column::Id).await
    }

    /// How many entries it finds.
    pub async fn count<C: ConnectionTrait>(&self, db: &C, scope: &Scope) -> Result<u64, DbErr> {
        self.select(scope).count(db).await
    }
}

pub struct Stats {
    pub total: i64,
    pub by_level: HashMap<String, i64>,
    pub by_source: HashMap<String, i64>,
}

/// Counts of the merchant's entries over the last `window`.
pub async fn stats<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    window: Duration,
) -> Result<Stats, DbErr> {
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
    let count = |column: logs::Column| {
        logs::Entity::find()
            .select_only()
            .column(column)
            .column_as(logs::Column::Id.count(), "n")
            .filter(scope.of::<logs::Entity>())
            .filter(logs::Column::CreatedAt.gte(since))
            .group_by(column)
            .into_tuple::<(String, i64)>()
    };
    let by_level: HashMap<String, i64> = count(logs::Column::Level)
        .all(db)
        .await?
        .into_iter()
        .collect();
    let by_source: HashMap<String, i64> = count(logs::Column::Source)
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(Stats {
        total: by_level.values().sum(),
        by_level,
        by_source,
    })
}

// A log store entry as merchants see it (API responses and the recent-errors cache).
#[derive(Object, Serialize, Deserialize, Clone)]
pub struct LogEntry {
    pub id: String,
    pub object: crate::core::object_names::LogName,
    pub level: Level,
    pub message: String,
    /// `merchant:<your source>` for entries you wrote; `payments`, `api`, `webhooks` for Payrail's.
    pub source: String,
    pub context: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: String,
}

impl From<&entity::logs::Model> for LogEntry {
    fn from(l: &entity::logs::Model) -> LogEntry {
        LogEntry {
            id: l.id.to_string(),
            object: crate::core::object_names::LogName::default(),
            level: l.level,
            message: l.message.clone(),
            source: l.source.clone(),
            context: l.context.clone(),
            request_id: l.request_id.clone(),
            created_at: rfc3339(l.created_at),
        }
    }
}
