//! Refresh-token families: every session a sign-in starts and the ones its refreshes replace it
//! with share a `family_id`. A token presented again after it was replaced (past a few
//! seconds' grace for requests that raced) ends the whole family, as OAuth's rotation advice
//! asks: one of the two holders is a thief.

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
                    .table("dashboard_sessions")
                    .add_column(string_null("family_id"))
                    .to_owned(),
            )
            .await?;
        // Each existing session starts its own family.
        manager
            .get_connection()
            .execute_unprepared("UPDATE dashboard_sessions SET family_id = id")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dashboard_sessions_family")
                    .table("dashboard_sessions")
                    .col("family_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("dashboard_sessions_family")
                    .table("dashboard_sessions")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("dashboard_sessions")
                    .drop_column("family_id")
                    .to_owned(),
            )
            .await
    }
}
