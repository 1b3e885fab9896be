//! Group commit for attempt results. Sends finish one by one, but each result needs a few
//! writes and a commit (six statements: `BEGIN`, the plan setting, the delivery's update, the
//! attempt's insert, the endpoint's streak, `COMMIT`); the recorder takes every result waiting
//! and those that come within [`LINGER`] of the first, and commits them in one transaction, so
//! the database sees one commit (one WAL flush) and the same few statements for many attempts. The
//! linger is after the send, off the webhook's path: the endpoint's slot is already free, and
//! the row's lease (renewed meanwhile) still holds it.
//!
//! A failed transaction is tried again, with the same results, for up to two minutes. Writes
//! are fenced by each claim's token, so a retry can never overwrite a row another worker took
//! over; meanwhile the worker keeps renewing the rows' leases (and its own sweeps never take
//! them), so a database cut costs no resend unless another worker takes the rows first once
//! the database is back. Past the patience, the results fail: the rows' leases end and a later
//! sweep sends them again (at least once, never lost).
//!
//! The recorder also meters the attempts it commits (`webhook_attempts` usage), once per
//! merchant per batch: a draining worker records thousands of attempts a second, and one
//! cache round trip each was a cost of its own.

use std::sync::Arc;
use std::time::Duration;

use entity::webhook_deliveries;
use entity::webhook_endpoints;
use runtime::bus::EventBus;
use runtime::cache::Cache;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::record::{AttemptOutcome, DisabledReason, Rules, ToRecord, after_commit, record_in};
use crate::sender::AttemptResult;

/// Most results committed in one transaction.
const MOST_PER_COMMIT: usize = 100;
/// Transactions that may be open at once: one commit waiting on the disk does not stop the
/// next batch from being written.
const LANES: usize = 3;
/// How long a lane waits, after a batch's first result, for others to commit with it. At 300
/// sends a second, 10 ms gathers three results per commit instead of one; under load a batch
/// fills to [`MOST_PER_COMMIT`] before then and nothing waits.
const LINGER: Duration = Duration::from_millis(10);

struct Job {
    delivery: webhook_deliveries::Model,
    endpoint: Arc<webhook_endpoints::Model>,
    result: AttemptResult,
    done: oneshot::Sender<Result<AttemptOutcome, String>>,
}

/// Hands attempt results to the recording lanes. Cheap to clone; the lanes stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Recorder {
    pub fn start(db: DatabaseConnection, bus: EventBus, cache: Cache, rules: Rules) -> Recorder {
        Recorder::lingering(db, bus, cache, rules, LINGER)
    }

    /// A recorder whose lanes wait `linger` for more results rather than [`LINGER`] (a test's,
    /// to make it longer than a busy machine's hiccup).
    pub fn lingering(
        db: DatabaseConnection,
        bus: EventBus,
        cache: Cache,
        rules: Rules,
        linger: Duration,
    ) -> Recorder {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..LANES {
            tokio::spawn(lane(
                db.clone(),
                bus.clone(),
                cache.clone(),
                rules.clone(),
                queue.clone(),
                linger,
            ));
        }
        Recorder { jobs }
    }

    /// Records one attempt's result; returns once it is committed.
    pub async fn record(
        &self,
        delivery: webhook_deliveries::Model,
        endpoint: Arc<webhook_endpoints::Model>,
        result: AttemptResult,
    ) -> Result<AttemptOutcome, DbErr> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job {
                delivery,
                endpoint,
                result,
                done,
            })
            .map_err(|_| DbErr::Custom("the recorder has stopped".into()))?;
        outcome
            .await
            .map_err(|_| DbErr::Custom("the recorder has stopped".into()))?
            .map_err(DbErr::Custom)
    }
}

async fn lane(
    db: DatabaseConnection,
    bus: EventBus,
    cache: Cache,
    rules: Rules,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    linger: Duration,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            let until = tokio::time::Instant::now() + linger;
            // A result already waiting is taken even past the linger (the timeout polls the
            // queue first).
            while batch.len() < MOST_PER_COMMIT {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    // Past the linger, or the last sender gone: what was gathered is committed.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        match commit_patiently(&db, &rules, &batch).await {
            Ok(outcomes) => {
                let written = written(&batch, &outcomes);
                for (job, (outcome, disabled)) in batch.into_iter().zip(outcomes) {
                    after_commit(
                        &db,
                        &bus,
                        &job.delivery,
                        &job.endpoint,
                        &rules,
                        &outcome,
                        disabled,
                    )
                    .await;
                    let _ = job.done.send(Ok(outcome));
                }
                // Metered once the waiting senders have their answers, not before.
                cache
                    .count_usage_of_each(runtime::usage::metric::WEBHOOK_ATTEMPTS, written)
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, results = batch.len(), "could not record attempt results; their rows are sent again once their leases end");
                for job in batch {
                    let _ = job.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// The attempts a batch wrote, by merchant and mode (a result whose claim was lost wrote
/// none), for its `webhook_attempts` usage.
fn written(
    batch: &[Job],
    outcomes: &[(AttemptOutcome, Option<DisabledReason>)],
) -> Vec<(entity::ids::Scope, i64)> {
    batch
        .iter()
        .zip(outcomes)
        .filter(|(_, (outcome, _))| *outcome != AttemptOutcome::Skipped)
        .map(|(job, _)| {
            let d = &job.delivery;
            (
                entity::ids::Scope::new(d.merchant_id.clone(), d.livemode),
                1,
            )
        })
        .collect()
}

/// How long a failed commit is tried again. Writes are fenced by the claims' tokens, so a
/// late write can never overwrite a row another worker took over: the only limit is how long
/// a result is worth holding (the worker renews the rows' leases meanwhile, so a database
/// cut shorter than this, once the database is back, resends nothing).
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);
/// The first pause before a failed commit is tried again; it doubles up to [`MOST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MOST_PAUSE: Duration = Duration::from_secs(1);

/// [`commit`], tried again after a failure for up to [`PATIENCE`].
async fn commit_patiently(
    db: &DatabaseConnection,
    rules: &Rules,
    batch: &[Job],
) -> Result<Vec<(AttemptOutcome, Option<DisabledReason>)>, DbErr> {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    let mut pause = FIRST_PAUSE;
    let mut tries = 1u32;
    loop {
        let failure = match commit(db, rules, batch).await {
            Ok(outcomes) => {
                if tries > 1 {
                    tracing::info!(
                        tries,
                        results = batch.len(),
                        "attempt results recorded after retrying"
                    );
                }
                return Ok(outcomes);
            }
            Err(e) => e,
        };
        if tokio::time::Instant::now() + pause >= give_up {
            return Err(failure);
        }
        tracing::warn!(error = %failure, tries, results = batch.len(), "could not record attempt results yet; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MOST_PAUSE);
        tries += 1;
    }
}

async fn commit(
    db: &DatabaseConnection,
    rules: &Rules,
    batch: &[Job],
) -> Result<Vec<(AttemptOutcome, Option<DisabledReason>)>, DbErr> {
    let items: Vec<ToRecord<'_>> = batch
        .iter()
        .map(|job| ToRecord {
            delivery: &job.delivery,
            endpoint: &job.endpoint,
            result: &job.result,
        })
        .collect();
    let txn = db.begin().await?;
    let outcomes = record_in(&txn, &items, rules).await?;
    txn.commit().await?;
    Ok(outcomes)
}
