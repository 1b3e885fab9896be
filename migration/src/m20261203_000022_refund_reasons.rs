//! A refund's reason (`duplicate`, `fraudulent`, `requested_by_customer`), as the merchant
//! gave it; null when they gave none, and for refunds made before this column.

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
                    .table("refunds")
                    .add_column(text_null("reason"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("refunds")
                    .drop_column("reason")
                    .to_owned(),
            )
            .await
    }
}
