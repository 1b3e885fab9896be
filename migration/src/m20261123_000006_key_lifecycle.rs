//! API keys can be rolled (the old key stays valid until `expires_at`) and revoked
//! (`revoked_at`, at once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["expires_at", "revoked_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("api_keys")
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["expires_at", "revoked_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("api_keys")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
