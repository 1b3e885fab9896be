//! Payouts: money sent from a merchant's balance through a provider (Moneroo, or the
//! simulated one in test mode).

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
                    .table("payouts")
                    .col(string("id").primary_key())
                    .col(string("merchant_id"))
                    .col(big_integer("amount"))
                    .col(string("currency"))
                    .col(string("provider"))
                    .col(json("destination"))
                    .col(string_null("reference"))
                    .col(json_null("metadata"))
                    .col(string("status"))
                    .col(string_null("provider_reference"))
                    // Set (and committed) just before the provider is called: a pending
                    // payout without it was never sent and may be sent; one with it and no
                    // provider_reference may have reached the provider and must not be.
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .col(string_null("failure_code"))
                    .col(string_null("failure_message"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        // Lists by merchant (newest first), the balance by merchant and currency, the
        // provider's webhooks by its reference, and the open ones by status (the poller's
        // re-queries and never-sent payouts, and the unresolved gauge at every scrape).
        for (name, columns) in [
            ("payouts_merchant", vec!["merchant_id", "id"]),
            ("payouts_balance", vec!["merchant_id", "currency", "status"]),
            ("payouts_provider_reference", vec!["provider_reference"]),
            ("payouts_open", vec!["status", "updated_at"]),
        ] {
            let mut index = Index::create();
            index.name(name).table("payouts");
            for c in columns {
                index.col(c);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("payouts").to_owned())
            .await
    }
}
