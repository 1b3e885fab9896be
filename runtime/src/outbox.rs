//! The one writer of the event log, which is also the outbox: every event row, from the
//! gateway or the worker, is made here, so each carries its merchant, mode and trace context
//! the same way, and is left for the relay to publish unless it is delivered without the bus;
//! and the batched marks ([`PublishedMarks`]) by which a gateway's writer and a worker that
//! took an event's express copy say it is published.

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

/// How long the first event handed to [`PublishedMarks`] waits for others to be marked with
/// it. The mark is off the webhook's path (the relay leaves a writer's row alone for its
/// grace), so waiting costs nothing there, and at 300 payments a second one `UPDATE` and commit
/// marks about six events instead of one. A process killed meanwhile leaves them for the
/// relay, which publishes them again after the grace (the fan-out absorbs the second copy).
pub const MARK_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Marks events published in batches: the ids handed over within one linger go in one
/// `UPDATE`, made by whichever caller finds no mark running (it takes what others add
/// meanwhile). Used for what a gateway's writer published and what a worker fanned out from
/// its express copy. A mark that fails, or a process that dies before it, only leaves the
/// events to the relay, which publishes them again after its grace (the fan-out is
/// idempotent, so the second copy creates nothing).
pub struct PublishedMarks {
    db: sea_orm::DatabaseConnection,
    linger: std::time::Duration,
    waiting: std::sync::Mutex<Vec<EventId>>,
    marking: std::sync::atomic::AtomicBool,
}

impl PublishedMarks {
    pub fn new(db: sea_orm::DatabaseConnection, linger: std::time::Duration) -> PublishedMarks {
        PublishedMarks {
            db,
            linger,
            waiting: std::sync::Mutex::default(),
            marking: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks `ids` published, with the others handed over within the linger. Returns once they
    /// are marked (or the mark failed), or at once if a running mark takes them.
    pub async fn mark(&self, ids: impl IntoIterator<Item = EventId>) {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use std::sync::atomic::Ordering;
        self.waiting().extend(ids);
        while !self.marking.swap(true, Ordering::AcqRel) {
            tokio::time::sleep(self.linger).await;
            let batch = std::mem::take(&mut *self.waiting());
            if !batch.is_empty() {
                let marked = events::Entity::update_many()
                    .col_expr(events::Column::PublishedAt, Expr::value(Utc::now()))
                    .filter(events::Column::Id.is_in(crate::db::padded(batch)))
                    .exec(&self.db)
                    .await;
                if let Err(e) = marked {
                    tracing::warn!(error = %e, "marking events published failed; the relay publishes them again after its grace");
                }
            }
            self.marking.store(false, Ordering::Release);
            // Ids added while this task marked, with no one to take them, are taken now.
            if self.waiting().is_empty() {
                return;
            }
        }
    }

    /// The ids waiting; a panic while the lock was held cannot leave the list torn.
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<EventId>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
