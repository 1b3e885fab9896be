//! The schema, as sea-orm migrations. Migrations never import entities: they describe tables
//! as they were when written, so a later entity change cannot rewrite history.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_core;
mod m20261122_000002_providers;
mod m20261122_000003_logs;
mod m20261123_000004_refund_keys;
mod m20261123_000005_reconciliation;
mod m20261123_000006_key_lifecycle;
mod m20261123_000007_delivery_control;
mod m20261123_000008_rate_limits;
mod m20261123_000009_qr_code_url;
mod m20261123_000010_dashboard_users;
mod m20261123_000011_session_families;
mod m20261123_000012_event_traceparent;
mod m20261123_000013_usage_counters;
mod m20261123_000014_usage_plans;
mod m20261123_000015_payouts;
mod m20261123_000016_earlier_attempts;
mod m20261202_000017_two_worlds;
mod m20261202_000018_reconciliation_items;
mod m20261202_000019_usage_by_mode;
mod m20261202_000020_lease_tokens;
mod m20261203_000021_idempotency_owners;
mod m20261203_000022_refund_reasons;
mod m20261203_000023_attempt_request_headers;
mod m20261203_000024_payments_by_month;
mod m20261203_000025_time_partitions;
mod m20261206_000026_writer_publishes;
mod m20261207_000027_endpoints_version;

/// Runs raw statements (named and partial indexes, which the schema builder cannot express
/// for both backends) in order.
pub(crate) async fn execute_all(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_core::Migration),
            Box::new(m20261122_000002_providers::Migration),
            Box::new(m20261122_000003_logs::Migration),
            Box::new(m20261123_000004_refund_keys::Migration),
            Box::new(m20261123_000005_reconciliation::Migration),
            Box::new(m20261123_000006_key_lifecycle::Migration),
            Box::new(m20261123_000007_delivery_control::Migration),
            Box::new(m20261123_000008_rate_limits::Migration),
            Box::new(m20261123_000009_qr_code_url::Migration),
            Box::new(m20261123_000010_dashboard_users::Migration),
            Box::new(m20261123_000011_session_families::Migration),
            Box::new(m20261123_000012_event_traceparent::Migration),
            Box::new(m20261123_000013_usage_counters::Migration),
            Box::new(m20261123_000014_usage_plans::Migration),
            Box::new(m20261123_000015_payouts::Migration),
            Box::new(m20261123_000016_earlier_attempts::Migration),
            Box::new(m20261202_000017_two_worlds::Migration),
            Box::new(m20261202_000018_reconciliation_items::Migration),
            Box::new(m20261202_000019_usage_by_mode::Migration),
            Box::new(m20261202_000020_lease_tokens::Migration),
            Box::new(m20261203_000021_idempotency_owners::Migration),
            Box::new(m20261203_000022_refund_reasons::Migration),
            Box::new(m20261203_000023_attempt_request_headers::Migration),
            Box::new(m20261203_000024_payments_by_month::Migration),
            Box::new(m20261203_000025_time_partitions::Migration),
            Box::new(m20261206_000026_writer_publishes::Migration),
            Box::new(m20261207_000027_endpoints_version::Migration),
        ]
    }
}
