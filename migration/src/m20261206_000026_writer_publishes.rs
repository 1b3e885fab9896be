//! Events whose writer publishes them itself, right after its commit (a new payment's
//! `payment.pending`): the relay leaves such a row alone while it is young, so that the two
//! do not both publish it, and takes it over once it is older than the relay's grace (the
//! writer crashed, or its broker call failed).

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
                    .table("events")
                    .add_column(boolean("writer_publishes").default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("events")
                    .drop_column("writer_publishes")
                    .to_owned(),
            )
            .await
    }
}
