//! Refunds remember the idempotency key they were sent to the provider with, so a refund
//! left pending by a crash can be asked about again with the same key (the provider answers
//! with the refund it already made, never a second one), and a retried request finds the
//! refund it started instead of reserving a new one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX uq_refunds_provider_key ON refunds (provider_key)",
    "CREATE INDEX idx_refunds_pending ON refunds (updated_at) WHERE status = 'pending'",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("refunds")
                    .add_column(string_null("provider_key"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(manager, INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(
            manager,
            &[
                "DROP INDEX idx_refunds_pending",
                "DROP INDEX uq_refunds_provider_key",
            ],
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("refunds")
                    .drop_column("provider_key")
                    .to_owned(),
            )
            .await
    }
}
