//! Test and live become two worlds, and money gets a ledger.
//!
//! - Every merchant-owned object carries `livemode`, and the indexes that serve lists and
//!   reads lead with `(merchant_id, livemode)`. Existing rows take their mode from what they
//!   belong to: refunds and events from their payment (payout events from their payout),
//!   deliveries from their event, attempts from their delivery; payouts are live unless they went through the simulated
//!   provider; an endpoint is live if its merchant holds a live key (an integration that has
//!   gone live keeps receiving its production events), test otherwise; log entries are test.
//! - Idempotency records are keyed by `(merchant_id, livemode, key)`. A record from before is
//!   kept in both modes, so a retry in flight across the upgrade still gets its first answer.
//! - The ledger: `balance_transactions` (what a merchant sees, `txn_…`), `ledger_entries`
//!   (each transaction's postings; every transaction sums to zero) and `balances` (available
//!   and pending per merchant, mode and currency: the sums of the entries, stored so a refund
//!   or payout can reserve under one row lock). It is back-filled from existing payments,
//!   refunds and payouts, as if their funds were available at once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables that gain the column, with `false` until back-filled.
const MODED: [&str; 7] = [
    "refunds",
    "events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "payouts",
    "logs",
];

const BACKFILL_MODES: &[&str] = &[
    "UPDATE refunds SET livemode = COALESCE((SELECT p.livemode FROM payments p WHERE p.id = refunds.payment_id), false)",
    "UPDATE payouts SET livemode = (provider <> 'simulated')",
    "UPDATE events SET livemode = COALESCE((SELECT p.livemode FROM payments p WHERE p.id = events.payment_id), false) WHERE payment_id IS NOT NULL",
    "UPDATE webhook_endpoints SET livemode = EXISTS (SELECT 1 FROM api_keys k WHERE k.merchant_id = webhook_endpoints.merchant_id AND k.livemode AND k.revoked_at IS NULL)",
];

/// Payout events name their payout only inside `data`.
const BACKFILL_PAYOUT_EVENTS_PG: &str = "UPDATE events SET livemode = COALESCE((SELECT po.livemode FROM payouts po WHERE po.id = events.data->>'id'), false) WHERE payment_id IS NULL AND event_type LIKE 'payout.%'";
const BACKFILL_PAYOUT_EVENTS_SQLITE: &str = "UPDATE events SET livemode = COALESCE((SELECT po.livemode FROM payouts po WHERE po.id = json_extract(events.data, '$.id')), false) WHERE payment_id IS NULL AND event_type LIKE 'payout.%'";

const BACKFILL_DELIVERIES: &str = "UPDATE webhook_deliveries SET livemode = COALESCE((SELECT e.livemode FROM events e WHERE e.id = webhook_deliveries.event_id), false)";
const BACKFILL_ATTEMPTS: &str = "UPDATE webhook_attempts SET livemode = COALESCE((SELECT d.livemode FROM webhook_deliveries d WHERE d.id = webhook_attempts.delivery_id), false)";

/// Indexes replaced by their `(merchant_id, livemode, …)` versions.
const OLD_INDEXES: [(&str, &str); 11] = [
    ("idx_webhook_endpoints_merchant", "webhook_endpoints"),
    ("idx_payments_merchant_id", "payments"),
    ("idx_payments_merchant_status", "payments"),
    ("idx_payments_merchant_reference", "payments"),
    ("idx_events_merchant_id", "events"),
    ("idx_events_merchant_type", "events"),
    ("idx_webhook_deliveries_merchant", "webhook_deliveries"),
    ("idx_logs_merchant_created", "logs"),
    ("idx_logs_merchant_level_created", "logs"),
    ("payouts_merchant", "payouts"),
    ("payouts_balance", "payouts"),
];

const NEW_INDEXES: &[&str] = &[
    "CREATE INDEX idx_api_keys_scope ON api_keys (merchant_id, livemode, id)",
    "CREATE INDEX idx_webhook_endpoints_scope ON webhook_endpoints (merchant_id, livemode, id)",
    "CREATE INDEX idx_payments_scope ON payments (merchant_id, livemode, id)",
    "CREATE INDEX idx_payments_scope_status ON payments (merchant_id, livemode, status, id)",
    "CREATE INDEX idx_payments_scope_reference ON payments (merchant_id, livemode, reference, id)",
    "CREATE INDEX idx_events_scope ON events (merchant_id, livemode, id)",
    "CREATE INDEX idx_events_scope_type ON events (merchant_id, livemode, event_type, id)",
    "CREATE INDEX idx_webhook_deliveries_scope ON webhook_deliveries (merchant_id, livemode, id)",
    "CREATE INDEX idx_logs_scope_created ON logs (merchant_id, livemode, created_at)",
    "CREATE INDEX idx_logs_scope_level_created ON logs (merchant_id, livemode, level, created_at)",
    "CREATE INDEX idx_payouts_scope ON payouts (merchant_id, livemode, id)",
    "CREATE INDEX idx_balance_transactions_scope ON balance_transactions (merchant_id, livemode, id)",
    "CREATE INDEX idx_balance_transactions_source ON balance_transactions (source_id)",
    "CREATE INDEX idx_balance_transactions_maturing ON balance_transactions (available_on) WHERE status = 'pending'",
    "CREATE INDEX idx_ledger_entries_transaction ON ledger_entries (transaction_id)",
    "CREATE INDEX idx_ledger_entries_balance ON ledger_entries (merchant_id, livemode, currency, account)",
];

/// The ledger as the existing rows imply it. A transaction's id reuses its source's UUID, so
/// ids stay unique and in time order. Entries post to the merchant's `available` (funds are
/// taken as settled) and to the counter-account the money came from or went to.
const BACKFILL_LEDGER: &[&str] = &[
    // Payments that took money (succeeded, or refunded since).
    "INSERT INTO balance_transactions (id, merchant_id, livemode, currency, type, source_id, amount, status, available_on, description, created_at) \
     SELECT 'txn_' || substr(id, 5), merchant_id, livemode, currency, 'charge', id, amount, 'available', updated_at, 'Payment (back-filled)', updated_at \
     FROM payments WHERE status IN ('succeeded', 'refunded')",
    // Refunds that succeeded or are still in flight (their amount is reserved).
    "INSERT INTO balance_transactions (id, merchant_id, livemode, currency, type, source_id, amount, status, available_on, description, created_at) \
     SELECT 'txn_' || substr(r.id, 4), r.merchant_id, r.livemode, p.currency, 'refund', r.id, -r.amount, 'available', r.created_at, 'Refund (back-filled)', r.created_at \
     FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.status IN ('succeeded', 'pending')",
    // Payouts not failed.
    "INSERT INTO balance_transactions (id, merchant_id, livemode, currency, type, source_id, amount, status, available_on, description, created_at) \
     SELECT 'txn_' || substr(id, 4), merchant_id, livemode, currency, 'payout', id, -amount, 'available', created_at, 'Payout (back-filled)', created_at \
     FROM payouts WHERE status <> 'failed'",
    // Each transaction's two postings: the merchant's side…
    "INSERT INTO ledger_entries (transaction_id, merchant_id, livemode, currency, account, amount, created_at) \
     SELECT id, merchant_id, livemode, currency, 'available', amount, created_at FROM balance_transactions",
    // …and the counter-account's.
    "INSERT INTO ledger_entries (transaction_id, merchant_id, livemode, currency, account, amount, created_at) \
     SELECT id, merchant_id, livemode, currency, \
       CASE type WHEN 'charge' THEN 'customers' WHEN 'refund' THEN 'refunds' ELSE 'payouts' END, \
       -amount, created_at FROM balance_transactions",
    "INSERT INTO balances (merchant_id, livemode, currency, available, pending, updated_at) \
     SELECT merchant_id, livemode, currency, \
       SUM(CASE WHEN account = 'available' THEN amount ELSE 0 END), \
       SUM(CASE WHEN account = 'pending' THEN amount ELSE 0 END), \
       MAX(created_at) \
     FROM ledger_entries WHERE account IN ('available', 'pending') \
     GROUP BY merchant_id, livemode, currency",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in MODED {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(boolean("livemode").default(false))
                        .to_owned(),
                )
                .await?;
        }
        crate::execute_all(manager, BACKFILL_MODES).await?;
        let payout_events = match manager.get_database_backend() {
            DbBackend::Sqlite => BACKFILL_PAYOUT_EVENTS_SQLITE,
            _ => BACKFILL_PAYOUT_EVENTS_PG,
        };
        crate::execute_all(
            manager,
            &[payout_events, BACKFILL_DELIVERIES, BACKFILL_ATTEMPTS],
        )
        .await?;

        // Idempotency records, keyed by mode too: rebuilt, each old record kept in both modes.
        manager
            .create_table(
                Table::create()
                    .table("idempotency_records")
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("key"))
                    .col(string("operation"))
                    .col(string("request_hash"))
                    .col(integer("response_status"))
                    .col(text("response_body"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col("merchant_id")
                            .col("livemode")
                            .col("key"),
                    )
                    .to_owned(),
            )
            .await?;
        crate::execute_all(
            manager,
            &[
                "INSERT INTO idempotency_records (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at) \
                 SELECT merchant_id, false, key, operation, request_hash, response_status, response_body, created_at FROM idempotency_keys",
                "INSERT INTO idempotency_records (merchant_id, livemode, key, operation, request_hash, response_status, response_body, created_at) \
                 SELECT merchant_id, true, key, operation, request_hash, response_status, response_body, created_at FROM idempotency_keys",
            ],
        )
        .await?;
        manager
            .drop_table(Table::drop().table("idempotency_keys").to_owned())
            .await?;
        manager
            .rename_table(
                Table::rename()
                    .table("idempotency_records", "idempotency_keys")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("balance_transactions")
                    .col(string("id").primary_key())
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("currency"))
                    .col(string("type"))
                    .col(string_null("source_id"))
                    // The change to the merchant's balance: positive in, negative out.
                    .col(big_integer("amount"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("available_on"))
                    .col(string_null("description"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("ledger_entries")
                    .col(big_integer("id").auto_increment().primary_key())
                    .col(string("transaction_id"))
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("currency"))
                    .col(string("account"))
                    .col(big_integer("amount"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("balances")
                    .col(string("merchant_id"))
                    .col(boolean("livemode"))
                    .col(string("currency"))
                    .col(big_integer("available"))
                    .col(big_integer("pending"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(
                        Index::create()
                            .col("merchant_id")
                            .col("livemode")
                            .col("currency"),
                    )
                    .to_owned(),
            )
            .await?;
        crate::execute_all(manager, BACKFILL_LEDGER).await?;

        for (name, table) in OLD_INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        crate::execute_all(manager, NEW_INDEXES).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "test and live cannot be merged back: restore a backup taken before this migration"
                .into(),
        ))
    }
}
