//! Usage counted per mode: `usage_counters` gains `livemode` in its key. It is rebuilt (SQLite
//! cannot change a primary key in place); counts from before are test mode's, since they
//! cannot be told apart, and plans add both modes, so no quota changes.

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
                    .table("usage_counters_by_mode")
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("month"))
                    .col(string("metric"))
                    .col(big_integer("value"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(
                        Index::create()
                            .col("merchant_id")
                            .col("livemode")
                            .col("month")
                            .col("metric"),
                    )
                    .to_owned(),
            )
            .await?;
        crate::execute_all(
            manager,
            &["INSERT INTO usage_counters_by_mode (merchant_id, livemode, month, metric, value, updated_at) \
               SELECT merchant_id, false, month, metric, value, updated_at FROM usage_counters"],
        )
        .await?;
        manager
            .drop_table(Table::drop().table("usage_counters").to_owned())
            .await?;
        manager
            .rename_table(
                Table::rename()
                    .table("usage_counters_by_mode", "usage_counters")
                    .to_owned(),
            )
            .await?;
        // The operators' listing reads a month across merchants.
        crate::execute_all(
            manager,
            &["CREATE INDEX usage_counters_by_month ON usage_counters (month)"],
        )
        .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "usage counted per mode cannot be merged back: restore a backup".into(),
        ))
    }
}
