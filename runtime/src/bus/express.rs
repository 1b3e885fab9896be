//! The express lane: a copy of a just-committed event's message, pushed to a Redis list for a
//! worker to fan out, so that most events never ride the broker.
//!
//! A worker that pops the list says so: each pop refreshes a key that lives
//! [`POPPER_HEARD_FOR`] ([`HEARD`]), read in the push's own round trip. While that key is
//! there, the gateway publishes nothing to the broker for the copies it pushed
//! ([`Pushed::ForAWorker`]): the worker fans them out and marks their events published. The
//! outbox row stays the record, so a copy that is lost on the way (trimmed from a full list,
//! expired, popped by a worker that died, or whose fan-out failed) leaves an unpublished event
//! that the relay publishes after the writer's grace; the fan-out is idempotent, so an event
//! that goes both ways is sent once. With no worker heard (none running, the lane off on the
//! workers, or all of them too busy to pop), the broker carries the event at once and the copy
//! only races it. What this removes from most events' path is the quorum queue's disk write,
//! its confirm and its delivery, and the broker's CPU for them (docs/benchmarks.md).
//!
//! The list is bounded in length ([`MAX_WAITING`]) and in time ([`KEPT_FOR`]): nothing piles up
//! when no worker runs, and a worker drops copies older than [`FRESH_FOR`], by then the relay's
//! to publish.

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
/// A copy whose event is older than this is dropped by the worker: it is close to the writer's
/// grace (5 s by default), after which the relay publishes what no worker marked, and a worker
/// that starts on a backlog should not fan out twice.
pub const FRESH_FOR: chrono::Duration = chrono::Duration::seconds(4);
/// The key a popping worker refreshes, under the Redis prefix.
pub const HEARD: &str = "express:heard";
/// How many times a stopping worker deleted [`HEARD`], under the Redis prefix: the other
/// workers read it with each pop, since the gateways published to the broker too until one of
/// them beat again.
const LEAVES: &str = "express:leaves";
/// The full name of [`HEARD`] under `prefix`: its presence is what makes gateways leave events
/// to the lane (`redis-cli EXISTS <prefix>:express:heard` answers whether a worker pops it).
pub fn heard_key(prefix: &str) -> String {
    Cache::key(prefix, HEARD)
}
/// How long a worker's pop counts as "a worker takes the copies": a worker that has not popped
/// for this long (stopped, or too busy) makes the gateways publish to the broker again.
pub const POPPER_HEARD_FOR: Duration = Duration::from_secs(3);
/// How often a popping worker refreshes [`HEARD`] at most (in its pop's round trip).
const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A gap between a popper's refreshes this long may have let [`HEARD`] lapse (it lives
/// [`POPPER_HEARD_FOR`]), with time to spare for the round trips.
const BEATS_BROKEN_AFTER: Duration = Duration::from_millis(2_500);
/// How long one pop blocks when the list is empty, so that a stopping worker is heard.
const POP_BLOCKS: Duration = Duration::from_secs(1);
/// The longest the broker's publish waits for the copies' push.
pub const PUSH_WAIT: Duration = Duration::from_millis(20);
/// How much longer a slow push's answer is awaited ([`SlowPush::answer`]), off the publishing
/// batch's place, before its events are left to the relay's grace.
pub const LATE_PUSH_WAIT: Duration = Duration::from_secs(1);
/// Copies taken in one pop at most.
const POP_COUNT: usize = 100;

/// The gateway's end of the lane: one connection, shared by its publishes.
#[derive(Clone)]
pub struct Express {
    pushes: ConnectionManager,
    list: String,
    heard: String,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The copies wait in the list and a worker popped it within [`POPPER_HEARD_FOR`]: it
    /// takes them and marks their events published, the broker need not carry them.
    ForAWorker,
    /// The copies wait, but no worker popped the list lately: the broker must carry the events.
    Unheard,
    /// The push failed (the copies are not there, unless the connection broke after sending
    /// them): the broker must carry the events.
    Failed,
    /// No answer even after [`LATE_PUSH_WAIT`]: the copies may be in the list, and a worker
    /// may send them early, so the broker must not carry them at once as well; the relay
    /// takes the events over after its grace, as it does a crashed writer's.
    Unanswered,
}

/// What a push came to within [`PUSH_WAIT`]: an answer, or a push still under way.
pub enum Push {
    Answered(Pushed),
    /// The copies were sent and may already be in the list for a worker to pop: publishing
    /// the events to the broker now as well would race that worker's early send with another
    /// worker's fan-out of the broker's message (two webhooks). Await its answer instead.
    Slow(SlowPush),
}

type PushReply =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(bool,), redis::RedisError>> + Send>>;

/// A push whose answer has not come within [`PUSH_WAIT`].
pub struct SlowPush(PushReply);

impl SlowPush {
    /// The push's answer, waiting at most [`LATE_PUSH_WAIT`] more.
    pub async fn answer(self) -> Pushed {
        match tokio::time::timeout(LATE_PUSH_WAIT, self.0).await {
            Ok(reply) => Pushed::from_reply(reply),
            Err(_) => {
                tracing::warn!(
                    "express push unanswered; the relay publishes its events after the grace"
                );
                Pushed::Unanswered
            }
        }
    }
}

impl Pushed {
    /// Its name in metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Pushed::ForAWorker => "for_a_worker",
            Pushed::Unheard => "unheard",
            Pushed::Failed => "failed",
            Pushed::Unanswered => "unanswered",
        }
    }

    fn from_reply(reply: Result<(bool,), redis::RedisError>) -> Pushed {
        match reply {
            Ok((true,)) => Pushed::ForAWorker,
            Ok((false,)) => Pushed::Unheard,
            Err(e) => {
                tracing::debug!(error = %e, "express push failed; the broker carries the events");
                Pushed::Failed
            }
        }
    }
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
    heard: String,
    leaves: String,
}

impl Express {
    /// The lane on the Redis at `url`, its list named under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Express, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Express {
            pushes: Cache::connection(client).await?,
            list: Cache::key(prefix, LIST),
            heard: heard_key(prefix),
        })
    }

    /// Pushes copies of `messages` (events already committed) in one round trip and says,
    /// within [`PUSH_WAIT`], whether a worker takes them; a slower push is handed back to be
    /// awaited off the caller's hot path. A failure is only logged: the caller publishes to
    /// the broker on [`Pushed::Unheard`] and [`Pushed::Failed`].
    pub async fn push(&self, messages: &[BusMessage]) -> Push {
        if messages.is_empty() {
            return Push::Answered(Pushed::Failed);
        }
        let encoded: Vec<Vec<u8>> = messages.iter().map(BusMessage::encode).collect();
        let mut pipe = redis::pipe();
        pipe.rpush(&self.list, encoded).ignore();
        pipe.ltrim(&self.list, -MAX_WAITING, -1).ignore();
        pipe.pexpire(&self.list, KEPT_FOR.as_millis() as i64)
            .ignore();
        pipe.exists(&self.heard);
        let mut conn = self.pushes.clone();
        // Owned, so that a slow reply can still be awaited after this returns: the copies
        // may be in the list already.
        let mut reply: PushReply =
            Box::pin(async move { pipe.query_async::<(bool,)>(&mut conn).await });
        match tokio::time::timeout(PUSH_WAIT, &mut reply).await {
            Ok(answered) => Push::Answered(Pushed::from_reply(answered)),
            Err(_) => Push::Slow(SlowPush(reply)),
        }
    }
}

impl ExpressSource {
    /// The lane on the Redis at `url`, its list named under `prefix`; nothing is connected yet.
    pub fn redis(url: &str, prefix: &str) -> Result<ExpressSource, redis::RedisError> {
        Ok(ExpressSource {
            client: redis::Client::open(url)?,
            list: Cache::key(prefix, LIST),
            heard: heard_key(prefix),
            leaves: Cache::key(prefix, LEAVES),
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
            heard: self.heard.clone(),
            leaves: self.leaves.clone(),
            leaves_seen: None,
            last_beat: None,
            heard_since: None,
        })
    }

    /// Tells the gateways this worker no longer takes copies (it is stopping), so they publish
    /// to the broker at once rather than leave the next events to the relay's grace; another
    /// worker popping says otherwise within a second. On a connection of its own: the
    /// popper's is blocked by its pop.
    pub async fn leave(&self) {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_connection_timeout(Some(Duration::from_secs(1)));
        let left = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::pipe()
                .del(&self.heard)
                .ignore()
                .incr(&self.leaves, 1)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        };
        if let Err(e) = left.await {
            tracing::debug!(error = %e, "could not withdraw from the express lane; it lapses by itself");
        }
    }
}

/// The popping end: one connection, blocking while the list is empty.
pub struct Popper {
    conn: MultiplexedConnection,
    list: String,
    heard: String,
    leaves: String,
    /// [`LEAVES`] as the last pop read it.
    leaves_seen: Option<i64>,
    /// When this popper last refreshed [`HEARD`].
    last_beat: Option<std::time::Instant>,
    /// Since when its refreshes have kept [`HEARD`] there without a gap, and no other worker
    /// deleted it (stopping).
    heard_since: Option<chrono::DateTime<Utc>>,
}

/// What one pop took: the fresh copies, and how many were dropped (too old, or unreadable).
#[derive(Debug, Default)]
pub struct Popped {
    pub messages: Vec<BusMessage>,
    pub dropped: usize,
    /// Since when this popper has kept [`HEARD`] there without a gap, and no stopping worker
    /// deleted it. A gateway pushing after
    /// that saw a worker heard and left its event to the lane alone ([`Pushed::ForAWorker`]);
    /// a copy of an event from before may be racing its broker message.
    pub heard_since: Option<chrono::DateTime<Utc>>,
}

impl Popper {
    /// Waits up to a second for copies and takes up to a hundred, oldest first; once a second
    /// it also tells the gateways, in the same round trip, that a worker takes copies.
    pub async fn pop(&mut self) -> Result<Popped, redis::RedisError> {
        let now = std::time::Instant::now();
        let beat_at = Utc::now();
        let beat = self
            .last_beat
            .is_none_or(|at| now.duration_since(at) >= BEAT_EVERY);
        let mut pipe = redis::pipe();
        if beat {
            pipe.pset_ex(&self.heard, 1, POPPER_HEARD_FOR.as_millis() as u64)
                .ignore();
        }
        pipe.cmd("BLMPOP")
            .arg(POP_BLOCKS.as_secs_f64())
            .arg(1)
            .arg(&self.list)
            .arg("LEFT")
            .arg("COUNT")
            .arg(POP_COUNT);
        // After the pop: a worker that deleted the key before a copy was pushed is seen here.
        pipe.get(&self.leaves);
        type Taken = Option<(String, Vec<Vec<u8>>)>;
        let (taken, leaves): (Taken, Option<i64>) = pipe.query_async(&mut self.conn).await?;
        if beat {
            if self
                .last_beat
                .is_none_or(|at| now.duration_since(at) >= BEATS_BROKEN_AFTER)
            {
                self.heard_since = Some(beat_at);
            }
            self.last_beat = Some(now);
        }
        // Last: a reset here is later than one for a gap.
        let leaves = leaves.unwrap_or_default();
        if self.leaves_seen.is_some_and(|seen| seen != leaves) {
            self.heard_since = Some(Utc::now());
        }
        self.leaves_seen = Some(leaves);
        let mut popped = Popped {
            heard_since: self.heard_since,
            ..Popped::default()
        };
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
