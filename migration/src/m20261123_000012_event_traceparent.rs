//! The W3C `traceparent` of the request that caused an event, kept with the event (the
//! outbox) so the relay, the worker's fan-out and every delivery attempt, retries included,
//! join the same trace. Empty when tracing is off.

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
                    .add_column(string_null("traceparent"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("events")
                    .drop_column("traceparent")
                    .to_owned(),
            )
            .await
    }
}
