//! Reconciliation: the differences the daily comparison with the providers' reports found
//! (one row per kind of difference and object, re-seen on every run until it is gone), and
//! the runs themselves, one per schedule slot whichever gateways fire it.

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
                    .table("reconciliation_items")
                    .col(string("id").primary_key())
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("provider"))
                    .col(string("kind"))
                    // The payment (`pay_…`), refund or payout it is about.
                    .col(string("object_id"))
                    .col(string_null("provider_reference"))
                    // What Payrail's ledger says, and what the provider reports.
                    .col(text("expected"))
                    .col(text("reported"))
                    .col(string("status"))
                    .col(text_null("resolution"))
                    .col(timestamp_with_time_zone("first_seen_at"))
                    .col(timestamp_with_time_zone("last_seen_at"))
                    .col(timestamp_with_time_zone_null("resolved_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("reconciliation_runs")
                    .col(string("slot").primary_key())
                    .col(timestamp_with_time_zone("started_at"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .col(integer_null("checked"))
                    .col(integer_null("open_items"))
                    .col(text_null("error"))
                    .to_owned(),
            )
            .await?;
        crate::execute_all(
            manager,
            &[
                "CREATE UNIQUE INDEX uq_reconciliation_items_kind_object ON reconciliation_items (kind, object_id)",
                "CREATE INDEX idx_reconciliation_items_scope ON reconciliation_items (merchant_id, livemode, id)",
                "CREATE INDEX idx_reconciliation_items_open ON reconciliation_items (id) WHERE status = 'open'",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["reconciliation_runs", "reconciliation_items"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
