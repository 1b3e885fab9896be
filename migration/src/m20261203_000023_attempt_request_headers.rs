//! The headers each webhook attempt sent (a JSON array of `[name, value]` pairs, in order),
//! so a delivery's page shows the request exactly as the receiver got it: the signature and
//! timestamp change with every attempt. Null for attempts made before this column and for
//! requests never made.

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
                    .table("webhook_attempts")
                    .add_column(text_null("request_headers"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("webhook_attempts")
                    .drop_column("request_headers")
                    .to_owned(),
            )
            .await
    }
}
