//! Delivery control: per-endpoint concurrency and rate limits, why an endpoint was disabled,
//! the previous secret kept signing during a rotation's overlap, the failing streak that
//! drives automatic disabling, and each attempt's failure class.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn endpoint_columns() -> Vec<ColumnDef> {
    vec![
        integer_null("max_concurrency"),
        integer_null("rate_limit"),
        string_null("disabled_reason"),
        string_null("previous_secret"),
        timestamp_with_time_zone_null("previous_secret_expires_at"),
        timestamp_with_time_zone_null("failing_since"),
        integer("consecutive_failures").default(0).to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for mut column in endpoint_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table("webhook_endpoints")
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("webhook_attempts")
                    .add_column(string_null("error_class"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(
            manager,
            &[
                // Retention deletes by age in batches; these keep each batch an index range.
                "CREATE INDEX idx_webhook_attempts_created ON webhook_attempts (created_at)",
                "CREATE INDEX idx_webhook_deliveries_created ON webhook_deliveries (created_at)",
                "CREATE INDEX idx_events_created ON events (created_at)",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in endpoint_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table("webhook_endpoints")
                        .drop_column(column.get_column_name())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("webhook_attempts")
                    .drop_column("error_class")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
