//! The core pipeline's tables: merchants and keys, endpoints, payments, the event log/outbox,
//! deliveries and their attempts, idempotency records and inbound provider events.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn ts(name: &'static str) -> ColumnDef {
    timestamp_with_time_zone(name)
}

fn ts_null(name: &'static str) -> ColumnDef {
    timestamp_with_time_zone_null(name)
}

/// Indexes, named so that plans and constraint errors are readable. Partial indexes keep the
/// sweep's and the relay's scans proportional to the work waiting, not to the table.
const INDEXES: &[&str] = &[
    "CREATE INDEX idx_api_keys_merchant ON api_keys (merchant_id)",
    "CREATE INDEX idx_webhook_endpoints_merchant ON webhook_endpoints (merchant_id, id)",
    "CREATE INDEX idx_payments_merchant_id ON payments (merchant_id, id)",
    "CREATE INDEX idx_payments_merchant_status ON payments (merchant_id, status, id)",
    "CREATE INDEX idx_payments_merchant_reference ON payments (merchant_id, reference, id)",
    "CREATE INDEX idx_events_merchant_id ON events (merchant_id, id)",
    "CREATE INDEX idx_events_merchant_type ON events (merchant_id, event_type, id)",
    "CREATE INDEX idx_events_unpublished ON events (id) WHERE published_at IS NULL",
    "CREATE UNIQUE INDEX uq_webhook_deliveries_event_endpoint ON webhook_deliveries (event_id, endpoint_id)",
    "CREATE INDEX idx_webhook_deliveries_merchant ON webhook_deliveries (merchant_id, id)",
    "CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (next_retry_at) WHERE status = 'pending'",
    "CREATE INDEX idx_webhook_deliveries_leased ON webhook_deliveries (locked_until) WHERE status = 'processing'",
    "CREATE INDEX idx_webhook_deliveries_failed ON webhook_deliveries (updated_at) WHERE status = 'failed'",
    "CREATE INDEX idx_webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt_number)",
    "CREATE UNIQUE INDEX uq_provider_events_provider_event ON provider_events (provider, provider_event_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("merchants")
                .col(string("id").primary_key())
                .col(string("name"))
                .col(ts("created_at"))
                .to_owned(),
            Table::create()
                .table("api_keys")
                .col(string("id").primary_key())
                .col(string("merchant_id"))
                .col(string_uniq("key_hash"))
                .col(string("prefix"))
                .col(boolean("livemode"))
                .col(ts("created_at"))
                .to_owned(),
            Table::create()
                .table("webhook_endpoints")
                .col(string("id").primary_key())
                .col(string("merchant_id"))
                .col(text("url"))
                .col(text_null("description"))
                .col(json_binary("enabled_events"))
                .col(string("secret"))
                .col(string("status"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
            Table::create()
                .table("payments")
                .col(string("id").primary_key())
                .col(string("merchant_id"))
                .col(big_integer("amount"))
                .col(string_len("currency", 3))
                .col(string("status"))
                .col(string("provider"))
                .col(string_null("provider_reference"))
                .col(text_null("checkout_url"))
                .col(string_null("reference"))
                .col(text_null("description"))
                .col(json_binary_null("customer"))
                .col(json_binary("metadata"))
                .col(json_binary_null("payment_method"))
                .col(big_integer("amount_refunded"))
                .col(string_null("failure_code"))
                .col(text_null("failure_message"))
                .col(boolean("livemode"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
            Table::create()
                .table("events")
                .col(string("id").primary_key())
                .col(string("merchant_id"))
                .col(string("event_type"))
                .col(string_null("payment_id"))
                .col(json_binary("data"))
                .col(string_null("request_id"))
                .col(ts("created_at"))
                .col(ts_null("published_at"))
                .to_owned(),
            Table::create()
                .table("webhook_deliveries")
                .col(string("id").primary_key())
                .col(string("merchant_id"))
                .col(string("event_id"))
                .col(string("endpoint_id"))
                .col(string("status"))
                .col(integer("attempts"))
                .col(ts_null("next_retry_at"))
                .col(ts_null("locked_until"))
                .col(ts_null("last_attempt_at"))
                .col(integer_null("http_status"))
                .col(text_null("error_message"))
                .col(ts_null("delivered_at"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
            Table::create()
                .table("webhook_attempts")
                .col(string("id").primary_key())
                .col(string("delivery_id"))
                .col(string("merchant_id"))
                .col(integer("attempt_number"))
                .col(integer_null("http_status"))
                .col(text_null("error_message"))
                .col(text_null("response_body"))
                .col(big_integer("duration_ms"))
                .col(ts("created_at"))
                .to_owned(),
            Table::create()
                .table("idempotency_keys")
                .col(string("merchant_id"))
                .col(string("key"))
                .col(string("operation"))
                .col(string("request_hash"))
                .col(integer("response_status"))
                .col(text("response_body"))
                .col(ts("created_at"))
                .primary_key(Index::create().col("merchant_id").col("key"))
                .to_owned(),
            Table::create()
                .table("provider_events")
                .col(string("id").primary_key())
                .col(string("provider"))
                .col(string("provider_event_id"))
                .col(string("event_type"))
                .col(string_null("payment_id"))
                .col(string("outcome"))
                .col(text("raw_body"))
                .col(ts("received_at"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        crate::execute_all(manager, INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "provider_events",
            "idempotency_keys",
            "webhook_attempts",
            "webhook_deliveries",
            "events",
            "payments",
            "webhook_endpoints",
            "api_keys",
            "merchants",
        ] {
            manager
                .drop_table(Table::drop().table(name).to_owned())
                .await?;
        }
        Ok(())
    }
}
