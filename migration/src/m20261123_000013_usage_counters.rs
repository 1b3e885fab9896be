//! Usage per merchant and calendar month: counted in the cache on the hot path and added here
//! by the gateway's flush (`runtime::usage`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("usage_counters")
                    .col(string("merchant_id"))
                    .col(string("month"))
                    .col(string("metric"))
                    .col(big_integer("value"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(
                        Index::create()
                            .col("merchant_id")
                            .col("month")
                            .col("metric"),
                    )
                    .to_owned(),
            )
            .await?;
        // The operators' listing reads a month across merchants.
        manager
            .create_index(
                Index::create()
                    .name("usage_counters_month")
                    .table("usage_counters")
                    .col("month")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("usage_counters").to_owned())
            .await
    }
}
