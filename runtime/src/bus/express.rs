//! The express lane: a copy of a just-committed event's message, pushed to a Redis list so a
//! worker can fan it out without waiting for the quorum queue's commit.
//!
//! The broker's message stays the record. The copy is best effort: a push that fails, a copy
//! trimmed from a full list or one no worker pops changes nothing, because the broker's
//! message follows and the fan-out is idempotent (rows are unique per event and endpoint, so
//! whichever copy comes second creates and sends nothing). What it removes from the webhook's
//! path is the quorum queue's disk write and hop, against one Redis round trip on each side:
//! half a millisecond of the median at 300 payments a second on this project's machine
//! (docs/benchmarks.md, "The express lane").
//!
//! The list is bounded in length ([`MAX_WAITING`]) and in time ([`KEPT_FOR`]): nothing piles up
//! when no worker runs, and a worker drops copies older than [`FRESH_FOR`], which the broker
//! delivers anyway.

use std::time::Duration;

use chrono::Utc;
use entity::bus::BusMessage;
use redis::aio::{ConnectionManager, MultiplexedConnection};

use crate::cache::Cache;

/// The list's name under the Redis prefix.
const LIST: &str = "express:events";
/// Copies the list keeps at most; a push trims the oldest beyond it.
pub const MAX_WAITING: isize = 2_000;
/// The list expires this long after its last push (no worker popping it).
pub const KEPT_FOR: Duration = Duration::from_secs(10);
/// A copy whose event is older than this is dropped by the worker: the broker's message is
/// as near by then, and a worker that starts on a backlog should not fan out twice.
pub const FRESH_FOR: chrono::Duration = chrono::Duration::seconds(2);
/// How long one pop blocks when the list is empty, so that a stopping worker is heard.
const POP_BLOCKS: Duration = Duration::from_secs(1);
/// The longest the broker's publish waits for the copies' push.
pub const PUSH_WAIT: Duration = Duration::from_millis(20);
/// Copies taken in one pop at most.
const POP_COUNT: usize = 100;

/// The gateway's end of the lane: one connection, shared by its publishes.
#[derive(Clone)]
pub struct Express {
    pushes: ConnectionManager,
    list: String,
}

impl std::fmt::Debug for Express {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Express")
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

/// The worker's end of the lane: where to open a [`Popper`] (again, after a lost connection).
/// It holds no connection of its own, the popper's is the only one.
#[derive(Clone)]
pub struct ExpressSource {
    client: redis::Client,
    list: String,
}

impl Express {
    /// The lane on the Redis at `url`, its list named under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Express, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Express {
            pushes: Cache::connection(client).await?,
            list: Cache::key(prefix, LIST),
        })
    }

    /// Pushes copies of `messages` (events already committed) in one round trip, waiting at
    /// most [`PUSH_WAIT`]: the caller publishes to the broker after it, so the copy is ahead
    /// of the broker's message. A failure is only logged, the broker's copies carry the events.
    pub async fn push(&self, messages: &[BusMessage]) {
        if messages.is_empty() {
            return;
        }
        let encoded: Vec<Vec<u8>> = messages.iter().map(BusMessage::encode).collect();
        let mut pipe = redis::pipe();
        pipe.rpush(&self.list, encoded).ignore();
        pipe.ltrim(&self.list, -MAX_WAITING, -1).ignore();
        pipe.pexpire(&self.list, KEPT_FOR.as_millis() as i64)
            .ignore();
        let mut conn = self.pushes.clone();
        match tokio::time::timeout(PUSH_WAIT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "express push failed; the broker's copies follow")
            }
            Err(_) => tracing::debug!("express push slow; the broker's copies follow"),
        }
    }
}

impl ExpressSource {
    /// The lane on the Redis at `url`, its list named under `prefix`; nothing is connected yet.
    pub fn redis(url: &str, prefix: &str) -> Result<ExpressSource, redis::RedisError> {
        Ok(ExpressSource {
            client: redis::Client::open(url)?,
            list: Cache::key(prefix, LIST),
        })
    }

    /// A connection of its own for [`Popper::pop`], whose wait would hold up anything
    /// else sent on a shared one.
    pub async fn popper(&self) -> Result<Popper, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(POP_BLOCKS + Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Popper {
            conn,
            list: self.list.clone(),
        })
    }
}

/// The popping end: one connection, blocking while the list is empty.
pub struct Popper {
    conn: MultiplexedConnection,
    list: String,
}

/// What one pop took: the fresh copies, and how many were dropped (too old, or unreadable).
#[derive(Debug, Default)]
pub struct Popped {
    pub messages: Vec<BusMessage>,
    pub dropped: usize,
}

impl Popper {
    /// Waits up to a second for copies and takes up to a hundred, oldest first.
    pub async fn pop(&mut self) -> Result<Popped, redis::RedisError> {
        let taken: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
            .arg(POP_BLOCKS.as_secs_f64())
            .arg(1)
            .arg(&self.list)
            .arg("LEFT")
            .arg("COUNT")
            .arg(POP_COUNT)
            .query_async(&mut self.conn)
            .await?;
        let mut popped = Popped::default();
        let oldest = Utc::now() - FRESH_FOR;
        for bytes in taken.map(|(_, items)| items).unwrap_or_default() {
            match BusMessage::decode(&bytes) {
                Ok(message)
                    if message
                        .carried_event()
                        .is_some_and(|e| e.created_at >= oldest) =>
                {
                    popped.messages.push(message)
                }
                _ => popped.dropped += 1,
            }
        }
        Ok(popped)
    }
}
