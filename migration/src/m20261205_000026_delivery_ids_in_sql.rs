//! `payrail_delivery_id(event_id, endpoint_id)`: the id of the one delivery of an event to an
//! endpoint, computed by PostgreSQL exactly as `DeliveryId::for_event_endpoint` computes it in
//! Rust (the event's 48-bit creation time, then 80 bits of SHA-256 of the pair, marked UUID
//! version 8). The gateway inserts an event's delivery rows in the transaction that writes the
//! event with one `INSERT … SELECT` over the merchant's endpoints, which needs the id in SQL;
//! rows made either way collide on the primary key, so an event is never delivered twice to
//! one endpoint. Nothing on SQLite, where the worker makes the rows.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Byte 6 of the UUID (the first of the digest's) carries the version (8) in its high nibble;
/// byte 8 (the digest's third) the variant (`10`) in its two high bits.
const CREATE: &str = r"
CREATE OR REPLACE FUNCTION payrail_delivery_id(event_id text, endpoint_id text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT 'whd_' || substr(split_part(event_id, '_', 2), 1, 12) || encode(
    set_byte(set_byte(substr(d, 1, 10), 0, (get_byte(d, 0) & 15) | 128),
             2, (get_byte(d, 2) & 63) | 128),
    'hex')
  FROM (SELECT sha256(convert_to(event_id, 'UTF8') || '\x00'::bytea
                      || convert_to(endpoint_id, 'UTF8')) AS d) AS digest
$$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS payrail_delivery_id(text, text)")
            .await?;
        Ok(())
    }
}
