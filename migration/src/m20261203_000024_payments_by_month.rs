//! Usage counts payments created in a month, and their volume, from the payments table itself
//! (exact, where a metered count could be lost to a crash): this index serves that read for
//! one merchant and mode, and the quota check that repeats it every few seconds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(
            manager,
            &["CREATE INDEX idx_payments_scope_created ON payments (merchant_id, livemode, created_at)"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, &["DROP INDEX idx_payments_scope_created"]).await
    }
}
