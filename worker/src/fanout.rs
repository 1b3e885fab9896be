//! Turning committed events into delivery rows, one per subscribed endpoint, a batch of bus
//! messages at a time.
//!
//! A batch costs one query for the subscribed endpoints and, if anyone listens, one read of the
//! events ([`Plan::read`]) and one multi-row insert ([`insert_rows`]; a transaction only past
//! [`ROWS_PER_INSERT`] rows). A message whose event does not exist is told apart without
//! holding back the rest.
//!
//! Rows are unique on `(event_id, endpoint_id)`, so a message the broker redelivers creates
//! nothing new. With immediate delivery the new rows are inserted already claimed by this
//! worker (`processing` with a lease): it sends them while the insert commits, and if it dies
//! before recording them the lease runs out and the sweep picks them up.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use entity::bus::BusMessage;
use entity::event::subscribes;
use entity::ids::{DeliveryId, EventId};
use entity::{events, webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, TransactionSession,
    TransactionTrait, TryIntoModel,
};

use entity::status::EndpointStatus;

use crate::deliveries::{AttemptContext, Lease, ROWS_PER_INSERT, new_row};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Rows created now and claimed for an immediate attempt, with what the attempt needs.
    pub claimed: Vec<AttemptContext>,
    /// Rows created for a sweep to send (immediate delivery off, or a redelivered message).
    pub queued: usize,
    /// Subscribed endpoints that already had a row for this event (a redelivered message).
    pub already_present: usize,
    /// The event's mode (its deliveries are metered in it).
    pub livemode: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("event {0} does not exist (or does not match its message)")]
    UnknownEvent(String),
}

/// A batch's fan-out worked out from reads alone: the rows each message wants, not inserted.
pub struct Plan {
    /// Per message: its event and its rows with their endpoints, or why not.
    planned: Vec<Result<Planned, FanOutError>>,
    rows: Vec<webhook_deliveries::ActiveModel>,
}

struct Planned {
    event: Option<events::Model>,
    rows: Vec<(webhook_deliveries::Model, webhook_endpoints::Model)>,
    /// Rows claimed for this worker's immediate attempt.
    claimed: bool,
}

/// How a message's new rows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Due now, for the next sweep (immediate delivery off).
    Due,
    /// Claimed by this worker, to be sent at once.
    Claimed,
    /// Claimed under a lease that has already run out, for the next sweep to take over with an
    /// attempt of unknown outcome: the message was handed out before, and whoever had it may
    /// have sent its requests ahead of the rows and died (or failed to insert them).
    MaybeSentBefore,
}

impl Plan {
    /// Reads the subscribed endpoints and the events, and plans a row per pair.
    /// `start` says how each message's rows start, `lease` how long a claim lasts.
    pub async fn read<C: ConnectionTrait>(
        db: &C,
        messages: &[BusMessage],
        start: &[Start],
        lease: Duration,
    ) -> Result<Plan, DbErr> {
        let nothing = || {
            Ok(Planned {
                event: None,
                rows: Vec::new(),
                claimed: false,
            })
        };
        let empty = |messages: &[BusMessage]| Plan {
            planned: messages.iter().map(|_| nothing()).collect(),
            rows: Vec::new(),
        };
        let merchants: HashSet<&str> = messages.iter().map(|m| m.merchant_id().as_str()).collect();
        let mut endpoints_of: HashMap<String, Vec<webhook_endpoints::Model>> = HashMap::new();
        for endpoint in webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::MerchantId.is_in(merchants))
            .filter(webhook_endpoints::Column::Status.eq(EndpointStatus::Enabled))
            .all(db)
            .await?
        {
            endpoints_of
                .entry(endpoint.merchant_id.to_string())
                .or_default()
                .push(endpoint);
        }
        // Per message, the endpoints subscribed to its event type.
        let subscribed: Vec<Vec<&webhook_endpoints::Model>> = messages
            .iter()
            .map(|m| {
                endpoints_of
                    .get(m.merchant_id().as_str())
                    .map(|all| {
                        all.iter()
                            .filter(|e| subscribes(&e.enabled_event_names(), m.event_type()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if subscribed.iter().all(Vec::is_empty) {
            return Ok(empty(messages));
        }
        let wanted: Vec<EventId> = messages
            .iter()
            .zip(&subscribed)
            .filter(|(_, s)| !s.is_empty())
            .map(|(m, _)| m.event_id().clone())
            .collect();
        let events: HashMap<String, events::Model> = events::Entity::find()
            .filter(events::Column::Id.is_in(wanted))
            .all(db)
            .await?
            .into_iter()
            .map(|e| (e.id.to_string(), e))
            .collect();
        let now = Utc::now();
        let claim = Lease::new(now, lease);
        let ran_out = Lease::new(now, Duration::ZERO);
        let mut planned = Vec::with_capacity(messages.len());
        let mut rows = Vec::new();
        for ((message, endpoints), start) in messages.iter().zip(&subscribed).zip(start) {
            if endpoints.is_empty() {
                planned.push(nothing());
                continue;
            }
            let event = events.get(message.event_id().as_str()).filter(|e| {
                &e.merchant_id == message.merchant_id() && e.event_type == message.event_type()
            });
            let Some(event) = event else {
                planned.push(Err(FanOutError::UnknownEvent(
                    message.event_id().to_string(),
                )));
                continue;
            };
            let lease = match start {
                Start::Due => None,
                Start::Claimed => Some(&claim),
                Start::MaybeSentBefore => Some(&ran_out),
            };
            let mut mine = Vec::with_capacity(endpoints.len());
            // An endpoint hears only its own mode's events.
            for endpoint in endpoints.iter().filter(|e| e.livemode == event.livemode) {
                let row = new_row(event, &endpoint.id, lease, now);
                mine.push((row.clone().try_into_model()?, (*endpoint).clone()));
                rows.push(row);
            }
            planned.push(Ok(Planned {
                event: Some(event.clone()),
                rows: mine,
                claimed: *start == Start::Claimed,
            }));
        }
        Ok(Plan { planned, rows })
    }

    /// The rows to insert (once: later calls get none).
    pub fn take_rows(&mut self) -> Vec<webhook_deliveries::ActiveModel> {
        std::mem::take(&mut self.rows)
    }

    /// Of the planned rows, those already in the table (a message published twice).
    pub async fn present<C: ConnectionTrait>(&self, db: &C) -> Result<HashSet<DeliveryId>, DbErr> {
        let ids: Vec<DeliveryId> = self.planned_rows().map(|row| row.id.clone()).collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // By id: the ids carry their day, so only that day's partition is read.
        Ok(webhook_deliveries::Entity::find()
            .select_only()
            .column(webhook_deliveries::Column::Id)
            .filter(webhook_deliveries::Column::Id.is_in(ids))
            .into_tuple::<DeliveryId>()
            .all(db)
            .await?
            .into_iter()
            .collect())
    }

    /// Per message, what an immediate attempt of each of its claimed rows needs, but for the
    /// rows in `except`.
    pub fn contexts_except(&self, except: &HashSet<DeliveryId>) -> Vec<Vec<AttemptContext>> {
        self.planned
            .iter()
            .map(|plan| match plan {
                Ok(Planned {
                    event: Some(event),
                    rows,
                    claimed: true,
                }) => rows
                    .iter()
                    .filter(|(row, _)| !except.contains(&row.id))
                    .map(|(row, endpoint)| AttemptContext {
                        delivery: row.clone(),
                        endpoint: Some(endpoint.clone()),
                        event: event.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn planned_rows(&self) -> impl Iterator<Item = &webhook_deliveries::Model> {
        self.planned
            .iter()
            .flatten()
            .flat_map(|p| p.rows.iter().map(|(row, _)| row))
    }

    /// Each message's result, given the rows the insert created.
    pub fn outcomes(self, inserted: &HashSet<DeliveryId>) -> Vec<Result<FanOut, FanOutError>> {
        self.planned
            .into_iter()
            .map(|plan| {
                let Planned {
                    event,
                    rows,
                    claimed,
                } = plan?;
                let mut outcome = FanOut {
                    livemode: event.as_ref().is_some_and(|e| e.livemode),
                    ..FanOut::default()
                };
                for (delivery, endpoint) in rows {
                    match (inserted.contains(&delivery.id), claimed, &event) {
                        (false, _, _) => outcome.already_present += 1,
                        (true, true, Some(event)) => outcome.claimed.push(AttemptContext {
                            delivery,
                            endpoint: Some(endpoint),
                            event: event.clone(),
                        }),
                        (true, _, _) => outcome.queued += 1,
                    }
                }
                Ok(outcome)
            })
            .collect()
    }
}

/// Inserts planned rows, the ones already there skipped; the ids it inserted. One INSERT is
/// atomic on its own, so only a batch that needs several pays for a transaction's two extra
/// round trips.
pub async fn insert_rows<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    rows: Vec<webhook_deliveries::ActiveModel>,
) -> Result<HashSet<DeliveryId>, DbErr> {
    let mut inserted: HashSet<DeliveryId> = HashSet::with_capacity(rows.len());
    if rows.len() <= ROWS_PER_INSERT {
        inserted.extend(insert_new(db, rows).await?);
    } else {
        let txn = db.begin().await?;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_INSERT).collect();
            inserted.extend(insert_new(&txn, chunk).await?);
        }
        txn.commit().await?;
    }
    Ok(inserted)
}

/// Inserts the rows not already there (one per `(event_id, endpoint_id)`); the ids it inserted.
async fn insert_new<C: ConnectionTrait>(
    db: &C,
    rows: Vec<webhook_deliveries::ActiveModel>,
) -> Result<Vec<DeliveryId>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let result = webhook_deliveries::Entity::insert_many(rows)
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
