//! A claim's token: every claim of delivery rows (a sweep's, a fan-out's, a manual retry's)
//! writes a fresh random token, and every later write of those rows by the claimant is fenced
//! on it. A lease's end can then move (a worker renews what it holds while sending) without
//! the fence moving with it: a worker that took a row over wrote a new token, so the old
//! holder's late writes match nothing.

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
                    .add_column(string_len_null("lease_token", 32))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("webhook_deliveries")
                    .drop_column("lease_token")
                    .to_owned(),
            )
            .await
    }
}
