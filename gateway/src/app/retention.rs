//! Retention: a job at the start and then the top of every hour (a `runtime::schedule`
//! calendar) keeps the time-partitioned tables' coming days created and drops the days past
//! retention whole (`runtime::partitions`, PostgreSQL): webhook attempts, finished deliveries
//! and published events older than `PAYRAIL_RETENTION`, log entries older than
//! `PAYRAIL_LOG_RETENTION`. Rows no day partition holds (SQLite's tables, PostgreSQL's default
//! partitions) are deleted row by row, in batches of [`BATCH`], each its own short statement so
//! no lock is held for long; so are idempotency records older than
//! `PAYRAIL_IDEMPOTENCY_RETENTION`. Every step is idempotent, so several gateways running it
//! at once only repeat each other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::idempotency_keys;
use runtime::partitions::{self, Partitioned};
use runtime::schedule::{self, Schedule};
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
};

#[derive(Clone)]
pub struct Retention {
    pub db: DatabaseConnection,
    pub logs: Duration,
    pub idempotency_keys: Duration,
    pub events: Duration,
}

/// Rows one delete statement removes at most.
pub const BATCH: u64 = 1000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Rows deleted one by one (the tables no partition holds).
    pub logs: u64,
    pub idempotency_keys: u64,
    pub attempts: u64,
    pub deliveries: u64,
    pub events: u64,
    /// Day partitions created ahead, dropped whole, and kept past retention because a
    /// delivery or event in them is unfinished.
    pub partitions_created: u32,
    pub partitions_dropped: Vec<String>,
    pub partitions_kept: Vec<String>,
}

/// Deletes from `table` the rows created before `cutoff` that also meet `condition`, at most
/// [`BATCH`] a statement, until a statement deletes fewer.
async fn delete_older(
    db: &DatabaseConnection,
    table: &str,
    cutoff: DateTime<Utc>,
    condition: Option<Expr>,
) -> Result<u64, DbErr> {
    let mut select = Query::select()
        .column(Alias::new("id"))
        .from(Alias::new(table))
        .and_where(Expr::col((Alias::new(table), Alias::new("created_at"))).lt(cutoff))
        .limit(BATCH)
        .to_owned();
    if let Some(condition) = condition {
        select.and_where(condition);
    }
    let statement = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(Alias::new("id")).in_subquery(select))
        .to_owned();
    let mut total = 0;
    loop {
        let deleted = db.execute(&statement).await?.rows_affected();
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

impl Retention {
    pub async fn prune_once(&self) -> Result<Pruned, DbErr> {
        let now = Utc::now();
        let partitions_created = partitions::ensure_ahead(&self.db, now.date_naive()).await?;
        let cutoff = now - chrono::Duration::from_std(self.events).unwrap_or_default();
        let logs_cutoff = now - chrono::Duration::from_std(self.logs).unwrap_or_default();
        let mut dropped = partitions::drop_before(
            &self.db,
            &[
                partitions::EVENTS,
                partitions::DELIVERIES,
                partitions::ATTEMPTS,
            ],
            cutoff,
        )
        .await?;
        let logs_dropped =
            partitions::drop_before(&self.db, &[partitions::LOGS], logs_cutoff).await?;
        dropped.partitions.extend(logs_dropped.partitions);
        if !dropped.kept.is_empty() {
            tracing::warn!(
                kept = ?dropped.kept,
                "retention kept day partitions past their time: a delivery or event in them is unfinished"
            );
        }
        let logs =
            delete_older(&self.db, &self.rows_of(partitions::LOGS), logs_cutoff, None).await?;
        let before =
            Utc::now() - chrono::Duration::from_std(self.idempotency_keys).unwrap_or_default();
        let keys = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected;
        let (attempts, deliveries, events) = self.prune_deliveries(cutoff).await?;
        Ok(Pruned {
            logs,
            idempotency_keys: keys,
            attempts,
            deliveries,
            events,
            partitions_created,
            partitions_dropped: dropped.partitions,
            partitions_kept: dropped.kept,
        })
    }

    /// Where the rows of `table` that no day partition holds are: the default partition on
    /// PostgreSQL, the table itself on SQLite.
    fn rows_of(&self, table: Partitioned) -> String {
        match self.db.get_database_backend() {
            DbBackend::Postgres => table.default_partition(),
            _ => table.table.to_string(),
        }
    }

    /// Attempts first, then finished deliveries, then published events no delivery refers to:
    /// nothing is left pointing at a deleted row, and nothing waiting is touched.
    async fn prune_deliveries(&self, cutoff: DateTime<Utc>) -> Result<(u64, u64, u64), DbErr> {
        use entity::status::DeliveryStatus;
        let attempts =
            delete_older(&self.db, &self.rows_of(partitions::ATTEMPTS), cutoff, None).await?;
        let finished = Expr::col(Alias::new("status"))
            .is_in([DeliveryStatus::Succeeded, DeliveryStatus::Failed]);
        let deliveries = delete_older(
            &self.db,
            &self.rows_of(partitions::DELIVERIES),
            cutoff,
            Some(finished),
        )
        .await?;
        let events_table = self.rows_of(partitions::EVENTS);
        let delivered = Expr::col(Alias::new("published_at")).is_not_null().and(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1i32))
                    .from_as(Alias::new("webhook_deliveries"), Alias::new("d"))
                    .and_where(
                        Expr::col((Alias::new("d"), Alias::new("event_id")))
                            .equals((Alias::new(&events_table), Alias::new("id"))),
                    )
                    .to_owned(),
            )
            .not(),
        );
        let events = delete_older(&self.db, &events_table, cutoff, Some(delivered)).await?;
        Ok((attempts, deliveries, events))
    }

    /// Creates the coming days' partitions now (a gateway started on a database migrated days
    /// ago), then prunes at the top of every hour until `stop` fires.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        match partitions::ensure_ahead(&self.db, Utc::now().date_naive()).await {
            Ok(created) => tracing::info!(created, "day partitions ahead"),
            Err(e) => {
                tracing::error!(error = %e, "could not create the coming days' partitions; rows go to the default partitions until the next run")
            }
        }
        let job = self.clone();
        schedule::run(
            "retention",
            Schedule::Calendar("0 0 * * * *"),
            stop,
            move || {
                let job = job.clone();
                async move { job.prune_and_log().await }
            },
        )
        .await
    }

    async fn prune_and_log(&self) {
        match self.prune_once().await {
            Ok(p) => tracing::info!(
                logs = p.logs,
                idempotency_keys = p.idempotency_keys,
                attempts = p.attempts,
                deliveries = p.deliveries,
                events = p.events,
                partitions_created = p.partitions_created,
                partitions_dropped = ?p.partitions_dropped,
                partitions_kept = ?p.partitions_kept,
                "retention"
            ),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}
