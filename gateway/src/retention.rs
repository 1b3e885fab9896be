//! Retention: a job at the top of every hour (a `runtime::schedule` calendar) deletes log store entries older than
//! `PAYRAIL_LOG_RETENTION` and idempotency records older than `PAYRAIL_IDEMPOTENCY_RETENTION`.
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
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub logs: u64,
    pub idempotency_keys: u64,
}

impl Retention {
    pub async fn prune_once(&self) -> Result<Pruned, DbErr> {
        let logs = crate::logs::prune(&self.db, self.logs).await?;
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
