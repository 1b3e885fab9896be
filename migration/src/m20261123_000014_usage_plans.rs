//! Usage plans: each merchant's plan (`free` by default, `pro`, or `custom` with its own
//! limits as JSON), and the thresholds already alerted on each month.

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
                    .table("merchants")
                    .add_column(string("plan").default("free"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("merchants")
                    .add_column(json_null("usage_limits"))
                    .to_owned(),
            )
            .await?;
        // One row per (merchant, month, metric, threshold) alerted: the key makes the alert
        // once-only, even with two gateways checking at the same time.
        manager
            .create_table(
                Table::create()
                    .table("usage_alerts")
                    .col(string("merchant_id"))
                    .col(string("month"))
                    .col(string("metric"))
                    .col(integer("threshold_percent"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col("merchant_id")
                            .col("month")
                            .col("metric")
                            .col("threshold_percent"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("usage_alerts").to_owned())
            .await?;
        for column in ["usage_limits", "plan"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("merchants")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
