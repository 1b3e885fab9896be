//! Events, webhook deliveries, webhook attempts and log entries become tables partitioned by
//! range of id on PostgreSQL, so retention drops a day's partition instead of deleting its
//! rows one batch at a time. Ids are `prefix_` + 32 hex digits whose first 12 are the
//! creation time in milliseconds (UUIDv7), so a day is a range of ids and a lookup by id reads
//! one partition. This migration makes each table a partitioned parent with a DEFAULT
//! partition only, holding the rows it had; the day partitions are the runtime's
//! (`runtime::partitions`), created ahead of time and dropped when past retention.
//!
//! A partitioned table's unique indexes must contain the partition key, so the unique index
//! on deliveries' `(event_id, endpoint_id)` goes: a delivery's id is now derived from that
//! pair (`DeliveryId::for_event_endpoint`), so the primary key enforces it. SQLite keeps its
//! tables as they are.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 4] = ["events", "webhook_deliveries", "webhook_attempts", "logs"];

/// Indexes the partitioned tables cannot have (a unique index without the partition key).
const DROPPED: &[&str] = &["uq_webhook_deliveries_event_endpoint"];

/// A table's indexes, by name, as PostgreSQL would write them: what to recreate on the table
/// that replaces it (on a partitioned table, each partition gets its own).
async fn indexes_of(
    db: &impl ConnectionTrait,
    table: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT indexname, indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
            [table.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "indexname")?, row.try_get("", "indexdef")?)))
        .collect()
}

/// Replaces `table` by a copy of it with its rows, its primary key and its indexes but those
/// in `skipped`: partitioned by range of id with a DEFAULT partition, or a plain table.
async fn rebuild(
    db: &impl ConnectionTrait,
    table: &str,
    partitioned: bool,
    skipped: &[&str],
) -> Result<(), DbErr> {
    let indexes = indexes_of(db, table).await?;
    let (shape, default) = if partitioned {
        (
            "PARTITION BY RANGE (id)",
            format!("CREATE TABLE {table}_default PARTITION OF {table}_new DEFAULT;"),
        )
    } else {
        ("", String::new())
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE {table}_new (LIKE {table} INCLUDING DEFAULTS) {shape};
         {default}
         INSERT INTO {table}_new SELECT * FROM {table};
         DROP TABLE {table};
         ALTER TABLE {table}_new RENAME TO {table};
         ALTER TABLE {table} ADD PRIMARY KEY (id);"
    ))
    .await?;
    for (name, definition) in indexes {
        if name != format!("{table}_pkey") && !skipped.contains(&name.as_str()) {
            db.execute_unprepared(&definition).await?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for table in TABLES {
            rebuild(db, table, true, DROPPED).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for table in TABLES {
            rebuild(db, table, false, &[]).await?;
        }
        db.execute_unprepared(
            "CREATE UNIQUE INDEX uq_webhook_deliveries_event_endpoint ON webhook_deliveries (event_id, endpoint_id)",
        )
        .await?;
        Ok(())
    }
}
