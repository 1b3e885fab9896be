//! Growth (issue 24, item 6): `bench fill` gives a database past days of history, in the day
//! partitions retention would drop (events, a delivery each, five attempts per delivery, as
//! failing endpoints make them), so creation and delivery can be measured at millions of rows
//! as at none; `bench retention-cost` measures what removing one day costs each way: deleting
//! its rows in batches of 1,000 (the job before partitions) against dropping its partitions.
//! Both talk to PostgreSQL directly, through `runtime::partitions` for the partitions.

use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use runtime::partitions::{self, DELIVERIES, EVENTS, Partitioned};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// The merchant and endpoint the history belongs to; not one a run creates, so the measured
/// runs share nothing with it but the tables.
const MERCHANT: &str = "mer_history";
const ENDPOINT: &str = "we_history";
const ATTEMPTS_PER_DELIVERY: u64 = 5;

/// A `prefix_` id of `day`, the `n`th of `per_day` spread evenly over it, fixed by `n`: the
/// id of an event, its delivery and their attempts share their time and sequence number.
fn id_sql(prefix: &str, day: NaiveDate, n: &str, per_day: u64) -> String {
    let start = day
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis();
    format!(
        "'{prefix}_' || lpad(to_hex({start}::bigint + ({n})::bigint * 86400000 / {per_day}), 12, '0') \
         || lpad(to_hex({n}), 20, '0')"
    )
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string()))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Fills the `days` days before today with `attempts` attempt rows in all (and a fifth as many
/// events and deliveries), day by day, then vacuums and checkpoints. With none, it only creates
/// the days' partitions (the same schema, empty).
pub async fn fill(database_url: &str, attempts: u64, days: u32) -> anyhow::Result<()> {
    let db = runtime::db::connect_with(database_url, 2).await?;
    let today = Utc::now().date_naive();
    let first = today - Duration::days(i64::from(days));
    let created = partitions::ensure_ahead(&db, first).await?;
    let mut day = first + Duration::days(i64::from(partitions::DAYS_AHEAD) + 1);
    let mut more = created;
    while day < today {
        more += partitions::ensure_ahead(&db, day).await?;
        day += Duration::days(i64::from(partitions::DAYS_AHEAD) + 1);
    }
    println!("fill: {more} day partitions created from {first}");
    let deliveries_per_day = attempts / ATTEMPTS_PER_DELIVERY / u64::from(days.max(1));
    let started = Instant::now();
    for offset in (0..days).filter(|_| deliveries_per_day > 0) {
        let day = first + Duration::days(i64::from(offset));
        let (event, delivery) = (
            id_sql("evt", day, "g", deliveries_per_day),
            id_sql("whd", day, "g", deliveries_per_day),
        );
        let attempt = id_sql(
            "wha",
            day,
            &format!("g * {ATTEMPTS_PER_DELIVERY} + k"),
            deliveries_per_day * ATTEMPTS_PER_DELIVERY,
        );
        let at = format!(
            "'{day}'::timestamptz + (g::bigint * 86400000 / {deliveries_per_day}) * interval '1 ms'"
        );
        db.execute_unprepared(&format!(
            "INSERT INTO events (id, merchant_id, livemode, event_type, payment_id, data, created_at, published_at)
             SELECT {event}, '{MERCHANT}', false, 'payment.succeeded', 'pay_history',
                    jsonb_build_object('object', 'payment', 'id', 'pay_history', 'amount', g,
                      'currency', 'USD', 'status', 'succeeded', 'metadata', jsonb_build_object('order', g)),
                    {at}, {at}
             FROM generate_series(0, {deliveries_per_day} - 1) g;
             INSERT INTO webhook_deliveries (id, merchant_id, livemode, event_id, endpoint_id, status,
               attempts, earlier_attempts, http_status, created_at, updated_at)
             SELECT {delivery}, '{MERCHANT}', false, {event}, '{ENDPOINT}', 'failed',
                    {ATTEMPTS_PER_DELIVERY}, 0, 503, {at}, {at}
             FROM generate_series(0, {deliveries_per_day} - 1) g;
             INSERT INTO webhook_attempts (id, delivery_id, merchant_id, livemode, attempt_number,
               http_status, error_class, response_body, duration_ms, created_at)
             SELECT {attempt}, {delivery}, '{MERCHANT}', false, k + 1, 503, 'http_5xx',
                    'Service Unavailable', 12, {at}
             FROM generate_series(0, {deliveries_per_day} - 1) g,
                  generate_series(0, {ATTEMPTS_PER_DELIVERY} - 1) k;"
        ))
        .await?;
        println!(
            "fill: {day}: {deliveries_per_day} events and deliveries, {} attempts ({:.0}s so far)",
            deliveries_per_day * ATTEMPTS_PER_DELIVERY,
            started.elapsed().as_secs_f64()
        );
    }
    // What autovacuum and the checkpointer would have done by the time such history is old,
    // done now so that the measurements after the fill do not pay for it.
    db.execute_unprepared("VACUUM (ANALYZE) events, webhook_deliveries, webhook_attempts")
        .await?;
    db.execute_unprepared("CHECKPOINT").await?;
    let rows = scalar_i64(&db, "SELECT count(*) FROM webhook_attempts").await?;
    let size = scalar_i64(
        &db,
        "SELECT (pg_database_size(current_database()) / 1048576)::bigint",
    )
    .await?;
    println!(
        "fill: done in {:.0}s: {rows} attempt rows, database {size} MiB",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn wal_lsn_bytes(db: &DatabaseConnection) -> anyhow::Result<i64> {
    scalar_i64(
        db,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
    )
    .await
}

/// The oldest day `table` has a partition of (within 400 days).
async fn oldest_filled_day(
    db: &DatabaseConnection,
    table: Partitioned,
) -> anyhow::Result<NaiveDate> {
    let today = Utc::now().date_naive();
    for back in (1..400).rev() {
        let day = today - Duration::days(back);
        let sql = format!(
            "SELECT count(*) FROM pg_class WHERE relname = '{}'",
            table.partition(day)
        );
        if scalar_i64(db, &sql).await? == 1 {
            return Ok(day);
        }
    }
    anyhow::bail!("no filled day: run `bench fill` first")
}

/// The rows `day`'s partitions of `tables` hold.
async fn rows_of_day(
    db: &DatabaseConnection,
    tables: &[Partitioned],
    day: NaiveDate,
) -> anyhow::Result<i64> {
    let mut rows = 0;
    for table in tables {
        rows += scalar_i64(
            db,
            &format!("SELECT count(*) FROM {}", table.partition(day)),
        )
        .await?;
    }
    Ok(rows)
}

/// Removes the oldest filled day row by row, as the job before partitions did (attempts,
/// deliveries, events, 1,000 a statement), and the day after it by dropping its partitions;
/// prints the time and WAL each took.
pub async fn retention_cost(database_url: &str) -> anyhow::Result<()> {
    let db = runtime::db::connect_with(database_url, 2).await?;
    let day = oldest_filled_day(&db, EVENTS).await?;
    let tables = [partitions::ATTEMPTS, DELIVERIES, EVENTS];
    let rows = rows_of_day(&db, &tables, day).await?;
    let (wal, started) = (wal_lsn_bytes(&db).await?, Instant::now());
    let mut statements = 0;
    for table in tables {
        loop {
            let deleted = db
                .execute_unprepared(&format!(
                    "DELETE FROM {parent} WHERE id IN (SELECT id FROM {partition} LIMIT 1000)",
                    parent = table.table,
                    partition = table.partition(day)
                ))
                .await?
                .rows_affected();
            statements += 1;
            if deleted < 1000 {
                break;
            }
        }
    }
    let (deleting, deleting_wal) = (started.elapsed(), wal_lsn_bytes(&db).await? - wal);
    println!(
        "retention-cost: {day}: {rows} rows deleted by {statements} statements in {:.2}s, {:.1} MiB of WAL (and as much dead space for vacuum)",
        deleting.as_secs_f64(),
        deleting_wal as f64 / 1048576.0
    );
    let next = day + Duration::days(1);
    let next_rows = rows_of_day(&db, &tables, next).await?;
    let (wal, started) = (wal_lsn_bytes(&db).await?, Instant::now());
    let dropped = partitions::drop_before(
        &db,
        &tables,
        (next + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc(),
    )
    .await?;
    let (dropping, dropping_wal) = (started.elapsed(), wal_lsn_bytes(&db).await? - wal);
    println!(
        "retention-cost: {next}: {next_rows} rows dropped with {} partitions in {:.3}s, {:.3} MiB of WAL",
        dropped.partitions.len(),
        dropping.as_secs_f64(),
        dropping_wal as f64 / 1048576.0
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "scenario": "retention of one day",
            "rows_deleted": rows, "delete_seconds": deleting.as_secs_f64(), "delete_wal_bytes": deleting_wal,
            "rows_dropped": next_rows, "drop_seconds": dropping.as_secs_f64(), "drop_wal_bytes": dropping_wal,
        })
    );
    Ok(())
}
