//! External providers: what a payment needs to resume at its provider (client secret, return
//! URL, last poll), refunds as objects of their own, and the indexes the inbound webhooks and
//! the pending-payment poller query by.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[&str] = &[
    "CREATE INDEX idx_payments_provider_reference ON payments (provider, provider_reference)",
    "CREATE INDEX idx_payments_open_at_provider ON payments (last_polled_at, created_at) \
     WHERE status IN ('pending', 'processing') AND provider <> 'simulated'",
    "CREATE INDEX idx_refunds_payment ON refunds (payment_id, id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite cannot add several in one ALTER.
        for column in [
            text_null("client_secret"),
            text_null("return_url"),
            timestamp_with_time_zone_null("last_polled_at"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("payments")
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("provider_events")
                    .add_column(text_null("headers"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("refunds")
                    .col(string("id").primary_key())
                    .col(string("merchant_id"))
                    .col(string("payment_id"))
                    .col(big_integer("amount"))
                    .col(string("status"))
                    .col(string_null("provider_reference"))
                    .col(text_null("failure_message"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(manager, INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("refunds").to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("provider_events")
                    .drop_column("headers")
                    .to_owned(),
            )
            .await?;
        for column in ["client_secret", "return_url", "last_polled_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("payments")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
