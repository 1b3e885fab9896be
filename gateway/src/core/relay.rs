//! The outbox relay: publishes committed, unpublished events to the bus (each with its row,
//! so the worker need not read it back), then marks them.
//!
//! It runs after every commit that wrote an event (a [`Relay::notify`]) and on an interval,
//! which republishes anything a crash or a broker outage left behind. Rows are selected
//! `FOR UPDATE SKIP LOCKED` so several gateways share the work; publishing twice is allowed
//! (the worker's fan-out is idempotent), losing is not: rows are marked only after the
//! broker confirmed them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::bus::BusMessage;
use entity::events;
use entity::ids::EventId;
use runtime::bus::EventBus;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tokio::sync::Notify;

const BATCH: u64 = 500;

/// The longest a batch's publish may take while it holds its rows locked: a broker that
/// hangs (a blocked connection, a lost confirm) must not hold them, nor the relay, for ever.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    bus: EventBus,
    wake: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Bus(#[from] runtime::bus::BusError),
    #[error("the broker did not confirm within {0:?}; the events stay unpublished")]
    Timeout(Duration),
}

impl Relay {
    pub fn new(db: DatabaseConnection, bus: EventBus) -> Relay {
        Relay {
            inner: Arc::new(Inner {
                db,
                bus,
                wake: Notify::new(),
            }),
        }
    }

    /// Asks the relay to run soon (after a commit that wrote events).
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }

    /// Publishes one batch of unpublished events; returns how many were published.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let txn = self.inner.db.begin().await?;
        let pending = events::Entity::find()
            .filter(events::Column::PublishedAt.is_null())
            .order_by_asc(events::Column::Id)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        // Each event's publish is a span of the trace that caused it (the batch is many traces).
        let spans: Vec<tracing::Span> = pending
            .iter()
            .map(|e| {
                let span = tracing::info_span!(
                    "outbox.publish",
                    otel.kind = "producer",
                    event_id = %e.id,
                    event_type = %e.event_type,
                    trace_id = tracing::field::Empty,
                );
                runtime::trace_context::continue_from(&span, e.traceparent.as_deref());
                span
            })
            .collect();
        let messages: Vec<BusMessage> = pending
            .into_iter()
            .map(|e| BusMessage::V2(e.into()))
            .collect();
        // On a bus error (or no confirm in time) the transaction rolls back: the rows stay
        // unpublished for next time, and their locks are released.
        tokio::time::timeout(PUBLISH_TIMEOUT, self.inner.bus.publish(&messages))
            .await
            .map_err(|_| RelayError::Timeout(PUBLISH_TIMEOUT))??;
        drop(spans);
        let ids: Vec<&EventId> = messages.iter().map(BusMessage::event_id).collect();
        let count = ids.len();
        runtime::db::keep_generic_plans(&txn, count).await?;
        events::Entity::update_many()
            .col_expr(events::Column::PublishedAt, Expr::value(Utc::now()))
            .filter(events::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(count)
    }

    /// Drains everything unpublished now.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.relay_once().await?;
            total += n;
            if (n as u64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs until `stop` fires: on every notify, and every `interval` regardless.
    pub async fn run(self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            match self.drain().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("relay publishing again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "relay cannot publish; events stay in the outbox and will be retried");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.inner.wake.notified(), if !failing => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// The outbox's depth (events not yet published) and its oldest event's age in seconds.
pub async fn outbox<C: sea_orm::ConnectionTrait>(db: &C) -> Result<(u64, f64), sea_orm::DbErr> {
    use sea_orm::PaginatorTrait as _;
    let unpublished = || events::Entity::find().filter(events::Column::PublishedAt.is_null());
    let depth = unpublished().count(db).await?;
    let oldest: Option<Option<chrono::DateTime<Utc>>> = unpublished()
        .select_only()
        .column_as(events::Column::CreatedAt.min(), "oldest")
        .into_tuple()
        .one(db)
        .await?;
    let age = oldest
        .flatten()
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok((depth, age))
}
