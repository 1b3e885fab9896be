//! The one writer of the event log, which is also the outbox: every event row, from the
//! gateway or the worker, is made here, so each carries its merchant, mode and trace context
//! the same way, and is left for the relay to publish unless it is delivered without the bus.

use chrono::Utc;
use entity::event::EventType;
use entity::events;
use entity::ids::{EventId, PaymentId, Scope};
use sea_orm::ActiveValue::Set;

/// How an event reaches endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the bus: the relay publishes it after the commit (`published_at` unset).
    Bus,
    /// Through the bus, published by its writer right after the commit, without waiting for
    /// the relay's turn; the relay takes it over only if it is still unpublished after its
    /// grace (the writer crashed, or the broker failed it).
    Writer,
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
        writer_publishes: Set(route == Route::Writer),
        traceparent: Set(crate::trace_context::current()),
    };
    (id, row)
}
