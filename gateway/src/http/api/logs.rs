//! `/v1/logs`: the merchant's log store.

use entity::status::LogLevel as Level;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use runtime::log_store::Entry;

use super::{ApiTags, request_id};
use crate::core::error::{plain_json, plain_text};
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::{CreateLogRequest, LogEntry, LogList, LogStats};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::merchants::logs;

#[derive(Default)]
pub struct LogsApi;

#[derive(ApiResponse)]
pub enum CreatedLog {
    #[oai(status = 201)]
    Created(Json<LogEntry>),
}

#[derive(ApiResponse)]
pub enum RecentLogs {
    /// The latest error and critical entries; `X-Cache: hit` when served from the cache.
    #[oai(status = 200)]
    Ok(Json<LogList>, #[oai(header = "X-Cache")] String),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Logs")]
impl LogsApi {
    /// Write a log entry
    ///
    /// Adds an entry to your log store (your own services' errors, next to Payrail's). Entries
    /// are kept 30 days by default.
    #[oai(path = "/logs", method = "post", operation_id = "create_log")]
    async fn create(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        req: &Request,
        body: Json<CreateLogRequest>,
    ) -> Result<CreatedLog, ApiError> {
        let b = body.0;
        plain_text("message", &b.message)?;
        plain_text("source", &b.source)?;
        if let Some(context) = &b.context {
            plain_json("context", context)?;
        }
        let level = Level::parse(&b.level).ok_or_else(|| {
            ApiError::invalid(
                "level",
                "level_invalid",
                "level must be debug, info, warning, error or critical.",
            )
        })?;
        if b.message.is_empty() || b.message.len() > 10_000 {
            return Err(ApiError::invalid(
                "message",
                "message_invalid",
                "message must be 1 to 10,000 bytes.",
            ));
        }
        if b.source.is_empty() || b.source.len() > 100 {
            return Err(ApiError::invalid(
                "source",
                "source_invalid",
                "source must be 1 to 100 bytes.",
            ));
        }
        if b.context.as_ref().is_some_and(|c| !c.is_object()) {
            return Err(ApiError::invalid(
                "context",
                "context_invalid",
                "context must be a JSON object.",
            ));
        }
        let source = format!("merchant:{}", b.source);
        let rid = request_id(req);
        let entry = runtime::log_store::write(
            &state.db,
            &state.bus,
            Entry {
                scope: Some(&merchant.scope()),
                level,
                source: &source,
                message: &b.message,
                context: b.context,
                request_id: rid.as_deref(),
            },
        )
        .await?;
        // The merchant's own entries count against its log store: message and context.
        let stored =
            entry.message.len() + entry.context.as_ref().map_or(0, |c| c.to_string().len());
        state
            .cache
            .count_usage(
                &merchant.scope(),
                &[(
                    runtime::usage::metric::LOG_BYTES,
                    i64::try_from(stored).unwrap_or(i64::MAX),
                )],
            )
            .await;
        if level.is_alarming() {
            state
                .cache
                .delete(&crate::core::cache_keys::recent_logs(&merchant.scope()))
                .await;
        }
        Ok(CreatedLog::Created(Json(LogEntry::from(&entry))))
    }

    /// Latest error and critical entries (served from the cache)
    ///
    /// Your latest `error` and `critical` entries, Payrail's and yours, served from the cache
    /// for a few seconds.
    #[oai(path = "/logs/recent", method = "get", operation_id = "recent_logs")]
    async fn recent(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
    ) -> Result<RecentLogs, ApiError> {
        let (data, hit) = logs::recent(&state.db, &state.cache, &merchant.scope()).await?;
        Ok(RecentLogs::Ok(
            Json(LogList {
                object: crate::core::object_names::ListName::default(),
                data,
                has_more: false,
            }),
            if hit { "hit" } else { "miss" }.into(),
        ))
    }

    /// Counts by level and source over a window (default 1h)
    ///
    /// How many entries were written in the window, by level and by source.
    #[oai(path = "/logs/stats", method = "get", operation_id = "log_stats")]
    async fn stats(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        window: Query<Option<String>>,
    ) -> Result<Json<LogStats>, ApiError> {
        let window = match window.0.as_deref() {
            None => std::time::Duration::from_secs(3600),
            Some(w) => runtime::settings::parse_duration(w)
                .ok()
                .filter(|d| !d.is_zero() && d.as_secs() <= 90 * 86_400)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "window",
                        "window_invalid",
                        "window is a duration like 15m, 1h or 7d, up to 90d.",
                    )
                })?,
        };
        let s = logs::stats(&state.db, &merchant.scope(), window).await?;
        Ok(Json(LogStats {
            window_seconds: window.as_secs(),
            total: s.total,
            by_level: s.by_level,
            by_source: s.by_source,
        }))
    }
}
