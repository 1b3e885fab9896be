//! Retention: an hourly job (tokio-cron-scheduler) deletes log store entries older than
//! `PAYRAIL_LOG_RETENTION` and idempotency records older than `PAYRAIL_IDEMPOTENCY_RETENTION`.
//! Deleting is idempotent, so several gateways running it at once only repeat each other.

use std::time::Duration;

use chrono::Utc;
use entity::idempotency_keys;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tokio_cron_scheduler::{Job, JobScheduler};

#[derive(Clone)]
pub struct Retention {
    pub db: DatabaseConnection,
    pub logs: Duration,
    pub idempotency_keys: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub logs: u64,
    pub idempotency_keys: u64,
}

impl Retention {
    pub async fn prune_once(&self) -> Result<Pruned, DbErr> {
        let logs = crate::services::logs::prune(&self.db, self.logs).await?;
        let before =
            Utc::now() - chrono::Duration::from_std(self.idempotency_keys).unwrap_or_default();
        let keys = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(Pruned {
            logs,
            idempotency_keys: keys,
        })
    }

    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut scheduler = JobScheduler::new().await?;
        let job = self.clone();
        scheduler
            .add(Job::new_repeated_async(
                Duration::from_secs(3600),
                move |_, _| {
                    let job = job.clone();
                    Box::pin(async move {
                        match job.prune_once().await {
                            Ok(p) => tracing::info!(
                                logs = p.logs,
                                idempotency_keys = p.idempotency_keys,
                                "retention"
                            ),
                            Err(e) => tracing::error!(error = %e, "retention failed"),
                        }
                    })
                },
            )?)
            .await?;
        scheduler.start().await?;
        let _ = stop.changed().await;
        let _ = scheduler.shutdown().await;
        Ok(())
    }
}
