//! An idempotency claim's owner: the process that made it, named by the key of the advisory
//! lock every one of that process's connections holds (see `runtime::db::PROCESS_KEY`). A
//! retry that finds the claim unfinished asks PostgreSQL whether anyone still holds that lock:
//! nobody does once the process died, so the retry takes the claim over at once instead of
//! waiting for its heartbeat to go stale. Null for claims made before this column.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("idempotency_keys")
                    .add_column(big_integer_null("owner"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("idempotency_keys")
                    .drop_column("owner")
                    .to_owned(),
            )
            .await
    }
}
