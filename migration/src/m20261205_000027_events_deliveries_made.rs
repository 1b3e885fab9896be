//! `events.deliveries_made`: whether the event's delivery rows were made in its own
//! transaction (see `runtime::outbox`). The relay then only announces it to live feeds
//! instead of publishing it for the fan-out, which would find the rows made: a durable write
//! to the broker and a fan-out transaction saved per event. False for events from before,
//! and on SQLite, where the fan-out makes the rows.

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
                    .add_column(boolean("deliveries_made").default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("events")
                    .drop_column("deliveries_made")
                    .to_owned(),
            )
            .await
    }
}
