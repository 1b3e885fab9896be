//! Group commit for attempt results. Sends finish one by one, but each result needs a few
//! writes and a commit; under load the recorder takes every result waiting at that moment and
//! commits them in one transaction, so the database sees one commit (one WAL flush) for many
//! attempts instead of one each. At low load a batch is a single result and nothing waits.
//!
//! A failed transaction is tried again, with the same results, while every row in it is still
//! leased to this worker (writes are fenced by the lease, so a retry can never overwrite
//! another worker's row): a database cut shorter than the lease costs no resend. Past the
//! lease, the results fail: the rows are due again and a later sweep sends them again (at
//! least once, never lost).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use entity::webhook_deliveries;
use entity::webhook_endpoints;
use runtime::bus::EventBus;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::record::{AttemptOutcome, DisabledReason, Rules, ToRecord, after_commit, record_in};
use crate::sender::AttemptResult;

/// Most results committed in one transaction.
const MOST_PER_COMMIT: usize = 100;
/// Transactions that may be open at once: one commit waiting on the disk does not stop the
/// next batch from being written.
const LANES: usize = 3;

struct Job {
    delivery: webhook_deliveries::Model,
    endpoint: webhook_endpoints::Model,
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
    pub fn start(db: DatabaseConnection, bus: EventBus, rules: Rules) -> Recorder {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..LANES {
            tokio::spawn(lane(db.clone(), bus.clone(), rules.clone(), queue.clone()));
        }
        Recorder { jobs }
    }

    /// Records one attempt's result; returns once it is committed.
    pub async fn record(
        &self,
        delivery: webhook_deliveries::Model,
        endpoint: webhook_endpoints::Model,
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
    rules: Rules,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MOST_PER_COMMIT {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        match commit_while_leased(&db, &rules, &batch).await {
            Ok(outcomes) => {
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
            }
            Err(e) => {
                tracing::error!(error = %e, results = batch.len(), "could not record attempt results while their leases lasted; they are sent again");
                for job in batch {
                    let _ = job.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Before a lease's end, the last moment a retried commit may start.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// The first pause before a failed commit is tried again; it doubles up to [`MOST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MOST_PAUSE: Duration = Duration::from_secs(2);

/// [`commit`], tried again after a failure while the batch's earliest lease lasts.
async fn commit_while_leased(
    db: &DatabaseConnection,
    rules: &Rules,
    batch: &[Job],
) -> Result<Vec<(AttemptOutcome, Option<DisabledReason>)>, DbErr> {
    let lease_ends = batch.iter().filter_map(|j| j.delivery.locked_until).min();
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
        let next_try = Utc::now()
            + chrono::Duration::from_std(pause + LEASE_MARGIN).unwrap_or(chrono::Duration::MAX);
        if lease_ends.is_none_or(|ends| next_try >= ends) {
            return Err(failure);
        }
        tracing::warn!(error = %failure, tries, results = batch.len(), "could not record attempt results yet; trying again while their leases last");
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
