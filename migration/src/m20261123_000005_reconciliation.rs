//! Payments a provider reported as succeeded after Payrail had already called them failed or
//! cancelled: money may have moved on a payment the merchant was told is over. They are
//! flagged for a person to reconcile, and listed by the partial index.

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
                    .table("payments")
                    .add_column(boolean("requires_reconciliation").default(false))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(
            manager,
            &["CREATE INDEX idx_payments_reconciliation ON payments (merchant_id, id) WHERE requires_reconciliation"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, &["DROP INDEX idx_payments_reconciliation"]).await?;
        manager
            .alter_table(
                Table::alter()
                    .table("payments")
                    .drop_column("requires_reconciliation")
                    .to_owned(),
            )
            .await
    }
}
