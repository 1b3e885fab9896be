//! The log store: merchant-scoped entries written by merchants (`POST /v1/logs`) and by
//! Payrail itself (payment failures, API 5xx, exhausted deliveries). Indexed for the reads
//! (a merchant's recent entries, by level) and for the retention job (by age).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[&str] = &[
    "CREATE INDEX idx_logs_merchant_created ON logs (merchant_id, created_at)",
    "CREATE INDEX idx_logs_merchant_level_created ON logs (merchant_id, level, created_at)",
    "CREATE INDEX idx_logs_created ON logs (created_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("logs")
                    .col(string("id").primary_key())
                    .col(string_null("merchant_id"))
                    .col(string("level"))
                    .col(text("message"))
                    .col(string("source"))
                    .col(json_binary_null("context"))
                    .col(string_null("request_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(manager, INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("logs").to_owned())
            .await
    }
}
