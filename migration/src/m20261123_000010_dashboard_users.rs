//! Dashboard users (people of a merchant, with a role) and their sign-in sessions. A session
//! row is one refresh token (stored as a SHA-256 hash); each refresh replaces it, and a
//! replaced or revoked token never works again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX uq_dashboard_users_email ON dashboard_users (email)",
    "CREATE INDEX idx_dashboard_users_merchant ON dashboard_users (merchant_id)",
    "CREATE UNIQUE INDEX uq_dashboard_sessions_refresh ON dashboard_sessions (refresh_hash)",
    "CREATE INDEX idx_dashboard_sessions_user ON dashboard_sessions (user_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("dashboard_users")
                    .col(string("id").primary_key())
                    .col(string("merchant_id"))
                    .col(string("email"))
                    .col(string("password_hash"))
                    .col(string("role"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("dashboard_sessions")
                    .col(string("id").primary_key())
                    .col(string("user_id"))
                    .col(string("refresh_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(manager, INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["dashboard_sessions", "dashboard_users"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
