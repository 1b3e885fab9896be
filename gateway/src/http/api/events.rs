//! `/v1/events`.

use entity::event::EventType;
use entity::ids::EventId;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::{ApiTags, path_id};
use crate::core::error::OrNotFound;
use crate::core::pagination::{CreatedRange, Page};
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::{Event, EventList};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::webhooks::events;

#[derive(Default)]
pub struct EventsApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Events")]
impl EventsApi {
    /// List events, newest first
    ///
    /// Every event of your account (each payment and refund status change, endpoint events),
    /// newest first. Filter by `type`, `types[]` and `created[gte|lte]`; page with `limit`,
    /// `starting_after` and `ending_before`.
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    // poem-openapi reads each query parameter from its own argument.
    #[allow(clippy::too_many_arguments)]
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
        /// Only events of these types (repeat it: `types[]=payment.succeeded&types[]=refund.created`).
        #[oai(name = "types[]")]
        types: Query<Vec<String>>,
        /// Only events created at or after this time (Unix seconds or RFC 3339).
        #[oai(name = "created[gte]")]
        created_gte: Query<Option<String>>,
        /// Only events created at or before this time (Unix seconds or RFC 3339).
        #[oai(name = "created[lte]")]
        created_lte: Query<Option<String>>,
    ) -> Result<Json<EventList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let created = CreatedRange::parse(created_gte.0.as_deref(), created_lte.0.as_deref())?;
        let mut wanted = types.0;
        let param = if event_type.0.is_some() {
            "type"
        } else {
            "types[]"
        };
        wanted.extend(event_type.0);
        if let Some(t) = wanted.iter().find(|t| EventType::parse(t).is_none()) {
            return Err(ApiError::invalid(
                param,
                "event_type_unknown",
                format!("Unknown event type '{t}'."),
            ));
        }
        let (rows, has_more) =
            events::list(&state.db, &merchant.scope(), &wanted, &created, &page).await?;
        Ok(Json(EventList {
            object: crate::core::object_names::ListName::default(),
            data: rows
                .iter()
                .map(Event::try_from)
                .collect::<Result<_, _>>()
                .map_err(ApiError::internal)?,
            has_more,
        }))
    }

    /// Retrieve an event
    ///
    /// One event, with the object it is about in `data`, exactly as it was sent in webhooks.
    #[oai(path = "/events/:id", method = "get", operation_id = "get_event")]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<Event>, ApiError> {
        let e = events::get(
            &state.db,
            &merchant.scope(),
            &path_id::<EventId>(&id.0, "event")?,
        )
        .await?
        .or_not_found("event", &id.0)?;
        Ok(Json(Event::try_from(&e).map_err(ApiError::internal)?))
    }
}
