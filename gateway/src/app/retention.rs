//! Retention: a job at the top of every hour (a `runtime::schedule` calendar) deletes log store
//! entries older than `PAYRAIL_LOG_RETENTION`, idempotency records older than
//! `PAYRAIL_IDEMPOTENCY_RETENTION`, and webhook attempts, finished deliveries and published
//! events older than `PAYRAIL_RETENTION`. The last three go in batches of [`BATCH`] rows, each
//! its own short statement, so no lock is held for long and the hot tables stay writable.
//! Deleting is idempotent, so several gateways running it at once only repeat each other.

use std::time::Duration;

use chrono::Utc;
use entity::idempotency_keys;
use runtime::schedule::{self, Schedule};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

#[derive(Clone)]
pub struct Retention {
    pub db: DatabaseConnection,
    pub logs: Duration,
    pub idempotency_keys: Duration,
    pub events: Duration,
}

/// Rows one delete statement removes at most.
pub const BATCH: u64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub logs: u64,
    pub idempotency_keys: u64,
    pub attempts: u64,
    pub deliveries: u64,
    pub events: u64,
}

/// Deletes, [`BATCH`] at a time, the rows of `E` whose id `select` returns (it must carry
/// its own limit), until a batch comes back short.
async fn in_batches<E>(
    db: &DatabaseConnection,
    select: impl Fn() -> sea_orm::sea_query::SelectStatement,
) -> Result<u64, DbErr>
where
    E: EntityTrait,
{
    use sea_orm::sea_query::{Expr, ExprTrait as _};
    let mut total = 0;
    loop {
        let deleted = E::delete_many()
            .filter(Expr::col(sea_orm::sea_query::Alias::new("id")).in_subquery(select()))
            .exec(db)
            .await?
            .rows_affected;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

impl Retention {
    pub async fn prune_once(&self) -> Result<Pruned, DbErr> {
        let logs = crate::merchants::logs::prune(&self.db, self.logs).await?;
        let before =
            Utc::now() - chrono::Duration::from_std(self.idempotency_keys).unwrap_or_default();
        let keys = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected;
        let cutoff = Utc::now() - chrono::Duration::from_std(self.events).unwrap_or_default();
        let (attempts, deliveries, events) = self.prune_deliveries(cutoff).await?;
        Ok(Pruned {
            logs,
            idempotency_keys: keys,
            attempts,
            deliveries,
            events,
        })
    }

    /// Attempts first, then finished deliveries, then published events no delivery refers to:
    /// nothing is left pointing at a deleted row, and nothing waiting is touched.
    async fn prune_deliveries(
        &self,
        cutoff: chrono::DateTime<Utc>,
    ) -> Result<(u64, u64, u64), DbErr> {
        use entity::status::DeliveryStatus;
        use entity::{events, webhook_attempts, webhook_deliveries};
        use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
        let attempts = in_batches::<webhook_attempts::Entity>(&self.db, || {
            Query::select()
                .column(webhook_attempts::Column::Id)
                .from(webhook_attempts::Entity)
                .and_where(Expr::col(webhook_attempts::Column::CreatedAt).lt(cutoff))
                .limit(BATCH)
                .to_owned()
        })
        .await?;
        let deliveries = in_batches::<webhook_deliveries::Entity>(&self.db, || {
            Query::select()
                .column(webhook_deliveries::Column::Id)
                .from(webhook_deliveries::Entity)
                .and_where(Expr::col(webhook_deliveries::Column::CreatedAt).lt(cutoff))
                .and_where(
                    Expr::col(webhook_deliveries::Column::Status)
                        .is_in([DeliveryStatus::Succeeded, DeliveryStatus::Failed]),
                )
                .limit(BATCH)
                .to_owned()
        })
        .await?;
        let events = in_batches::<events::Entity>(&self.db, || {
            Query::select()
                .column((events::Entity, events::Column::Id))
                .from(events::Entity)
                .and_where(Expr::col((events::Entity, events::Column::CreatedAt)).lt(cutoff))
                .and_where(Expr::col((events::Entity, events::Column::PublishedAt)).is_not_null())
                .and_where(
                    Expr::exists(
                        Query::select()
                            .expr(Expr::val(1i32))
                            .from(webhook_deliveries::Entity)
                            .and_where(
                                Expr::col((
                                    webhook_deliveries::Entity,
                                    webhook_deliveries::Column::EventId,
                                ))
                                .equals((events::Entity, events::Column::Id)),
                            )
                            .to_owned(),
                    )
                    .not(),
                )
                .limit(BATCH)
                .to_owned()
        })
        .await?;
        Ok((attempts, deliveries, events))
    }

    /// Prunes at the top of every hour until `stop` fires.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let job = self.clone();
        schedule::run(
            "retention",
            Schedule::Calendar("0 0 * * * *"),
            stop,
            move || {
                let job = job.clone();
                async move {
                    match job.prune_once().await {
                        Ok(p) => tracing::info!(
                            logs = p.logs,
                            idempotency_keys = p.idempotency_keys,
                            attempts = p.attempts,
                            deliveries = p.deliveries,
                            events = p.events,
                            "retention"
                        ),
                        Err(e) => tracing::error!(error = %e, "retention failed"),
                    }
                }
            },
        )
        .await
    }
}
