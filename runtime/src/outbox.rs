//! The one writer of the event log, which is also the outbox: every event row, from the
//! gateway or the worker, is made here, so each carries its merchant, mode and trace context
//! the same way, and is left for the relay to publish unless it is delivered without the bus.
//!
//! On PostgreSQL, [`insert`] also makes the event's delivery rows in the same statement (one
//! per enabled endpoint of its merchant and mode that subscribes to it, due now), and marks
//! the event `deliveries_made`. The relay, woken after the commit, then notifies
//! [`DELIVERIES_CHANNEL`] with the event's id in its own transaction: a worker listening there
//! claims and sends the rows at once, without a broker, a consume or a fan-out. The database
//! is the record and the notice only a wake-up: one nobody heard (no worker listening, a lost
//! connection) leaves the rows due, and the sweep sends them. The notice is not sent by the
//! event's own transaction because a notifying commit holds PostgreSQL's global notify lock
//! through its WAL flush: API commits would queue behind each other instead of flushing
//! together (measured: half the closed loop's throughput). SQLite has neither the id function
//! nor notices: there the relay publishes the event and the fan-out makes the rows, as for
//! events from before.

use chrono::Utc;
use entity::event::EventType;
use entity::events;
use entity::ids::{EventId, PaymentId, Scope};
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait};

/// The PostgreSQL channel the relay notifies with the id of each event whose delivery rows
/// its commit made, and its `traceparent` after a space when it has one (see [`notice`]).
/// Per database, so each test's database has its own.
pub const DELIVERIES_CHANNEL: &str = "payrail_deliveries";

/// How an event reaches endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the bus: the relay publishes it after the commit (`published_at` unset).
    Bus,
    /// Delivered directly by its writer (a test event to one endpoint): marked published, so
    /// the relay never fans it out to the merchant's other endpoints.
    Direct,
}

/// One event, with its id, to be inserted in the transaction of the change it describes.
pub fn event(
    scope: &Scope,
    event_type: EventType,
    payment_id: Option<&PaymentId>,
    data: serde_json::Value,
    request_id: Option<&str>,
    route: Route,
) -> (EventId, events::ActiveModel) {
    let now = Utc::now();
    let id = EventId::generate();
    let row = events::ActiveModel {
        id: Set(id.clone()),
        merchant_id: Set(scope.merchant_id.clone()),
        livemode: Set(scope.livemode),
        event_type: Set(event_type.as_str().to_string()),
        payment_id: Set(payment_id.cloned()),
        data: Set(data),
        request_id: Set(request_id.map(str::to_string)),
        created_at: Set(now),
        published_at: Set((route == Route::Direct).then_some(now)),
        traceparent: Set(crate::trace_context::current()),
        deliveries_made: Set(false),
    };
    (id, row)
}

/// A notice's payload for an event: its id, and its `traceparent` after a space.
pub fn notice_payload(event: &events::Model) -> String {
    match &event.traceparent {
        Some(traceparent) => format!("{} {traceparent}", event.id),
        None => event.id.to_string(),
    }
}

/// What a notice on [`DELIVERIES_CHANNEL`] says: the event, and the trace context it was
/// written in. `None` for a payload that names no event.
pub fn notice(payload: &str) -> Option<(EventId, Option<String>)> {
    let (id, traceparent) = match payload.split_once(' ') {
        Some((id, traceparent)) => (id, Some(traceparent.to_string())),
        None => (payload, None),
    };
    Some((EventId::parse(id)?, traceparent))
}

/// Inserts an event of [`Route::Bus`] and, on PostgreSQL, its delivery rows (see the
/// module's documentation). A [`Route::Direct`] event
/// is inserted by its writer, with the one row it delivers itself.
pub async fn insert<C: ConnectionTrait>(db: &C, mut row: events::ActiveModel) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return events::Entity::insert(row)
            .exec_without_returning(db)
            .await
            .map(|_| ());
    }
    row.deliveries_made = Set(true);
    let event = events::Entity::insert(row).build(DbBackend::Postgres);
    db.execute_raw(sea_orm::Statement {
        sql: with_deliveries(&event.sql),
        ..event
    })
    .await?;
    Ok(())
}

/// The event's `INSERT` as the first step of one statement that also inserts its delivery
/// rows (ids as `DeliveryId::for_event_endpoint` makes them, by the SQL function of the same
/// name; a row already there is left alone).
fn with_deliveries(insert_event: &str) -> String {
    use entity::status::{DeliveryStatus, EndpointStatus};
    format!(
        "WITH event AS ({insert_event} RETURNING id, merchant_id, livemode, event_type, created_at) \
         INSERT INTO webhook_deliveries (id, merchant_id, livemode, event_id, endpoint_id, \
           status, attempts, earlier_attempts, next_retry_at, created_at, updated_at) \
         SELECT payrail_delivery_id(ev.id, ep.id), ev.merchant_id, ev.livemode, ev.id, ep.id, \
           '{pending}', 0, 0, ev.created_at, ev.created_at, ev.created_at \
         FROM event ev JOIN webhook_endpoints ep \
           ON ep.merchant_id = ev.merchant_id AND ep.livemode = ev.livemode \
           AND ep.status = '{enabled}' \
           AND (ep.enabled_events @> '[\"*\"]'::jsonb \
                OR ep.enabled_events @> jsonb_build_array(ev.event_type)) \
         ON CONFLICT DO NOTHING",
        pending = DeliveryStatus::Pending.as_str(),
        enabled = EndpointStatus::Enabled.as_str(),
    )
}
