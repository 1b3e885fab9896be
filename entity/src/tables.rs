//! sea-orm entities: one module per table. The migration crate owns the schema; these mirror it.

pub mod api_keys;
pub mod balance_transactions;
pub mod balances;
pub mod dashboard_sessions;
pub mod dashboard_users;
pub mod events;
pub mod idempotency_keys;
pub mod ledger_entries;
pub mod logs;
pub mod merchants;
pub mod payments;
pub mod payouts;
pub mod provider_events;
pub mod reconciliation_items;
pub mod refunds;
pub mod usage_alerts;
pub mod usage_counters;
pub mod webhook_attempts;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
