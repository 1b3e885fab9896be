//! Attempts a delivery made before its latest manual retry or recovery (which start a new
//! round of attempts from 0), so an attempt's number counts the delivery's whole history:
//! after five failures and a retry, the next attempt is number 6, not a second number 1.

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
                    .table("webhook_deliveries")
                    .add_column(integer("earlier_attempts").default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("webhook_deliveries")
                    .drop_column("earlier_attempts")
                    .to_owned(),
            )
            .await
    }
}
