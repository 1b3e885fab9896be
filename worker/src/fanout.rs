//! Turning committed events into delivery rows, one per subscribed endpoint, a batch of bus
//! messages at a time.
//!
//! Rows are unique on `(event_id, endpoint_id)`, so a message the broker redelivers creates
//! nothing new. With immediate delivery the new rows are inserted already claimed by this
//! worker (`processing` with a lease): it sends them at once after commit, and if it dies
//! first the lease runs out and the sweep picks them up. A batch is planned
//! ([`plan_batch`]) before it is inserted ([`Planned::insert`]), so the express lane can send
//! the planned claims while the insert commits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::bus::BusMessage;
use entity::event::subscribes;
use entity::ids::{DeliveryId, EventId};
use entity::{events, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionSession,
    TransactionTrait, TryIntoModel,
};

use crate::deliveries::{AttemptContext, Lease, ROWS_PER_INSERT, new_row, record_unknown_outcomes};
use crate::subscribers::EndpointCopies;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Rows created now and claimed for an immediate attempt, with what the attempt needs.
    pub claimed: Vec<AttemptContext>,
    /// Rows created as due now (immediate delivery off).
    pub queued: usize,
    /// Subscribed endpoints that already had a row for this event (a redelivered message), or
    /// whose row an earlier message of the batch made (the event was published twice).
    pub already_present: usize,
    /// The event's mode (its deliveries are metered in it).
    pub livemode: bool,
    /// Rows created with an attempt of unknown outcome first (the event was taken over from
    /// the express lane: `EventOnBus::taken_over_from_lane`).
    pub unknown_outcomes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("event {0} does not exist (or does not match its message)")]
    UnknownEvent(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A batch's fan-out worked out before anything is written: per message its event and the
/// rows it wants, or why not.
pub struct Planned {
    immediate: bool,
    /// Per message its plan, or the id of the event it names that does not exist.
    messages: Vec<Result<MessagePlan, String>>,
    rows: Vec<webhook_deliveries::ActiveModel>,
}

struct MessagePlan {
    event: Option<Arc<events::Model>>,
    /// Each planned row with its endpoint.
    rows: Vec<(webhook_deliveries::Model, Arc<webhook_endpoints::Model>)>,
    /// Rows an earlier message of the batch planned.
    planned_before: usize,
    /// Each row made gets an attempt of unknown outcome first.
    unknown_first: bool,
}

/// Works out the rows a batch of bus messages wants.
///
/// The whole batch costs one query for the subscribed endpoints (none when `copies` hold the
/// versions its messages name: [`crate::subscribers`]), plus one read of the events that v1
/// messages only name (a v2 message carries its event: the relay read the row it publishes,
/// so it is trusted as the bus is). A v1 message whose event does not exist gets
/// [`FanOutError::UnknownEvent`] without holding back the rest.
pub async fn plan_batch<C: ConnectionTrait>(
    db: &C,
    copies: &EndpointCopies,
    messages: &[BusMessage],
    immediate: bool,
    lease: Duration,
) -> Result<Planned, DbErr> {
    let endpoints_of = copies.enabled_of(db, messages).await?;
    // Per message, the endpoints subscribed to its event type.
    let subscribed: Vec<Vec<&Arc<webhook_endpoints::Model>>> = messages
        .iter()
        .map(|m| {
            endpoints_of
                .get(m.merchant_id())
                .map(|all| {
                    all.iter()
                        .filter(|e| subscribes(e.enabled_event_types(), m.event_type()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let mut planned = Planned {
        immediate,
        messages: Vec::with_capacity(messages.len()),
        rows: Vec::new(),
    };
    if subscribed.iter().all(Vec::is_empty) {
        planned
            .messages
            .extend(messages.iter().map(|_| Ok(MessagePlan::nothing())));
        return Ok(planned);
    }
    // A v2 message carries its event as committed; only v1 messages' events are read.
    let mut events: HashMap<String, Arc<events::Model>> = HashMap::new();
    let mut wanted: Vec<EventId> = Vec::new();
    for (message, _) in messages
        .iter()
        .zip(&subscribed)
        .filter(|(_, s)| !s.is_empty())
    {
        match message.carried_event() {
            Some(e) => {
                events.insert(e.event_id.to_string(), Arc::new(e.to_model()));
            }
            None => wanted.push(message.event_id().clone()),
        }
    }
    if !wanted.is_empty() {
        events.extend(
            events::Entity::find()
                .filter(events::Column::Id.is_in(runtime::db::padded(wanted)))
                .all(db)
                .await?
                .into_iter()
                .map(|e| (e.id.to_string(), Arc::new(e))),
        );
    }
    let now = Utc::now();
    let claim = Lease::new(now, lease);
    // One event published twice (a relay killed between the broker's confirm and its mark)
    // may come twice in one batch. The insert skips the second row as a conflict but returns
    // the id once, so both messages would claim it and send it twice: a row an earlier
    // message of the batch planned is already present for the later one.
    let mut planned_ids: HashSet<DeliveryId> = HashSet::new();
    for (message, endpoints) in messages.iter().zip(&subscribed) {
        if endpoints.is_empty() {
            planned.messages.push(Ok(MessagePlan::nothing()));
            continue;
        }
        let event = events.get(message.event_id().as_str()).filter(|e| {
            &e.merchant_id == message.merchant_id() && e.event_type == message.event_type()
        });
        let Some(event) = event else {
            planned.messages.push(Err(message.event_id().to_string()));
            continue;
        };
        let mut mine = Vec::with_capacity(endpoints.len());
        let mut planned_before = 0;
        // An endpoint hears only its own mode's events.
        for endpoint in endpoints.iter().filter(|e| e.livemode == event.livemode) {
            let row = new_row(event, &endpoint.id, immediate.then_some(&claim), now);
            let model = row.clone().try_into_model()?;
            if !planned_ids.insert(model.id.clone()) {
                planned_before += 1;
                continue;
            }
            mine.push((model, Arc::clone(endpoint)));
            planned.rows.push(row);
        }
        planned.messages.push(Ok(MessagePlan {
            event: Some(Arc::clone(event)),
            rows: mine,
            planned_before,
            unknown_first: message
                .carried_event()
                .is_some_and(|e| e.taken_over_from_lane),
        }));
    }
    Ok(planned)
}

impl MessagePlan {
    fn nothing() -> MessagePlan {
        MessagePlan {
            event: None,
            rows: Vec::new(),
            planned_before: 0,
            unknown_first: false,
        }
    }
}

impl Planned {
    /// The attempts the rows would be claimed for, were they all inserted now (none when
    /// delivery is not immediate): what a worker may send while [`Planned::insert`] commits.
    pub fn claims(&self) -> Vec<AttemptContext> {
        if !self.immediate {
            return Vec::new();
        }
        self.messages
            .iter()
            .flatten()
            .flat_map(|plan| {
                plan.event.iter().flat_map(|event| {
                    plan.rows.iter().map(|(delivery, endpoint)| AttemptContext {
                        delivery: delivery.clone(),
                        endpoint: Some(Arc::clone(endpoint)),
                        event: Arc::clone(event),
                    })
                })
            })
            .collect()
    }

    /// Inserts the planned rows; one result per message in order. A database error fails the
    /// whole batch (nothing was committed), and the plan can be inserted again.
    ///
    /// Rows already there (a redelivered message) are skipped by the unique key; the ones
    /// returned are the ones this batch created. One INSERT is atomic on its own, so only a
    /// batch that needs several (past [`ROWS_PER_INSERT`] rows), or whose rows get an attempt
    /// of unknown outcome with them, pays for a transaction's two extra round trips.
    pub async fn insert<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<Result<FanOut, FanOutError>>, DbErr> {
        let unknown_first = self.messages.iter().flatten().any(|p| p.unknown_first);
        let mut inserted: HashSet<DeliveryId> = HashSet::with_capacity(self.rows.len());
        if self.rows.len() <= ROWS_PER_INSERT && !unknown_first {
            inserted.extend(insert_new(db, self.rows.clone()).await?);
        } else {
            let txn = db.begin().await?;
            for chunk in self.rows.chunks(ROWS_PER_INSERT) {
                inserted.extend(insert_new(&txn, chunk.to_vec()).await?);
            }
            let unknown: Vec<DeliveryId> = self
                .messages
                .iter()
                .flatten()
                .filter(|p| p.unknown_first)
                .flat_map(|p| p.rows.iter().map(|(d, _)| &d.id))
                .filter(|id| inserted.contains(*id))
                .cloned()
                .collect();
            record_unknown_outcomes(&txn, &unknown, Utc::now()).await?;
            txn.commit().await?;
        }
        Ok(self
            .messages
            .iter()
            .map(|plan| {
                let plan = plan
                    .as_ref()
                    .map_err(|id| FanOutError::UnknownEvent(id.clone()))?;
                let mut outcome = FanOut {
                    livemode: plan.event.as_ref().is_some_and(|e| e.livemode),
                    already_present: plan.planned_before,
                    ..FanOut::default()
                };
                for (delivery, endpoint) in &plan.rows {
                    match (inserted.contains(&delivery.id), self.immediate, &plan.event) {
                        (false, _, _) => {
                            outcome.already_present += 1;
                            continue;
                        }
                        (true, true, Some(event)) => {
                            let mut delivery = delivery.clone();
                            // As written by the unknown outcome's record.
                            delivery.attempts += i32::from(plan.unknown_first);
                            outcome.claimed.push(AttemptContext {
                                delivery,
                                endpoint: Some(Arc::clone(endpoint)),
                                event: Arc::clone(event),
                            });
                        }
                        (true, _, _) => outcome.queued += 1,
                    }
                    outcome.unknown_outcomes += usize::from(plan.unknown_first);
                }
                Ok(outcome)
            })
            .collect())
    }
}

/// Inserts the rows not already there (one per `(event_id, endpoint_id)`); the ids it inserted.
async fn insert_new<C: ConnectionTrait>(
    db: &C,
    rows: Vec<webhook_deliveries::ActiveModel>,
) -> Result<Vec<DeliveryId>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Padded to one of a few lengths by repeating the last row, which its own copy makes
    // conflict and skip: one statement text per length (`runtime::db::padded`).
    let result = webhook_deliveries::Entity::insert_many(runtime::db::padded(rows))
        // No conflict target: a row already there conflicts on its id (derived from the
        // pair) and, on a database from before the ids were, on the pair's unique index.
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_with_returning_keys(db)
        .await;
    match result {
        Ok(ids) => Ok(ids),
        Err(DbErr::RecordNotInserted) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
