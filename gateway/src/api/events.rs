//! `/v1/events`.

use entity::event::EventType;
use entity::ids::EventId;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::dto::{Event, EventList};
use super::{ApiTags, path_id};
use crate::api::auth::ApiKey;
use crate::api::error::ApiError;
use crate::error::OrNotFound;
use crate::pagination::Page;
use crate::state::AppState;
use crate::webhooks::events;

#[derive(Default)]
pub struct EventsApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Events")]
impl EventsApi {
    /// List events, newest first
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// Only events of this type, e.g. `payment.succeeded`.
        #[oai(name = "type")]
        event_type: Query<Option<String>>,
    ) -> Result<Json<EventList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        if let Some(t) = event_type.0.as_deref()
            && EventType::parse(t).is_none()
        {
            return Err(ApiError::invalid(
                "type",
                "event_type_unknown",
                format!("Unknown event type '{t}'."),
            ));
        }
        let (rows, has_more) = events::list(
            &state.db,
            &merchant.merchant_id,
            event_type.0.as_deref(),
            &page,
        )
        .await?;
        Ok(Json(EventList {
            object: "list".into(),
            data: rows.iter().map(Event::from).collect(),
            has_more,
        }))
    }

    /// Retrieve an event
    #[oai(path = "/events/:id", method = "get", operation_id = "get_event")]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<Event>, ApiError> {
        let e = events::get(
            &state.db,
            &merchant.merchant_id,
            &path_id::<EventId>(&id.0, "event")?,
        )
        .await?
        .or_not_found("event", &id.0)?;
        Ok(Json(Event::from(&e)))
    }
}
