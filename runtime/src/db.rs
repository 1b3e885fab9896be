//! Connecting to the database (PostgreSQL in production, SQLite in embedded mode) and
//! migrating it. Everything else talks to it through sea-orm, so one code path serves both.

use std::sync::LazyLock;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// A gateway's PostgreSQL connections unless `PAYRAIL_DB_POOL_SIZE` says otherwise: enough for
/// its API's concurrency, small enough that two gateways and two workers fit a default server
/// (`max_connections` 100, 3 reserved): 2 × 24 + 2 × 16 = 80.
pub const GATEWAY_POOL_SIZE: u32 = 24;
/// A worker's: its deliveries are recorded in batches, so it needs fewer.
pub const WORKER_POOL_SIZE: u32 = 16;

/// This process, as PostgreSQL sees it: every connection of its pools holds a shared advisory
/// lock on this random key for as long as the connection lives. The lock is gone the moment
/// the process is (its connections close with it), so work a process claimed (an
/// `Idempotency-Key`) records this key, and whoever finds that work unfinished can ask the
/// server, without waiting for a heartbeat to go stale, whether its owner is still there
/// (see [`owner_is_alive`]). Positive, so it splits into the two 32-bit halves `pg_locks`
/// shows.
pub static PROCESS_KEY: LazyLock<i64> =
    LazyLock::new(|| (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64);

/// Whether a process whose [`PROCESS_KEY`] is `owner` still has a connection to this
/// database. PostgreSQL only: the caller decides what a claim's owner means elsewhere.
pub async fn owner_is_alive(db: &impl ConnectionTrait, owner: i64) -> Result<bool, DbErr> {
    // A bigint advisory key shows as its high half in classid, its low half in objid.
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = ($1 >> 32)::bigint::oid AND objid = ($1 & 4294967295)::bigint::oid \
             AND objsubid = 1 AND granted) AS alive",
            [owner.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "alive"))
        .transpose()?
        .unwrap_or(false))
}

/// Makes the rest of a transaction reuse its statements' generic plans (PostgreSQL), when it
/// handles a batch of `batch` rows.
///
/// Our statements are prepared, and by default PostgreSQL plans each call afresh whenever a
/// plan made for its values looks cheaper than the generic one. On a partitioned table that is
/// always so for a lookup by id (a plan for the values prunes the other partitions when it is
/// made), so the hottest writes (the relay's mark, the recorder's delivery updates) were
/// planned on every call: at 300 payments a second, planning took more of the database's
/// time than running them. A generic plan prunes the same partitions when it starts.
///
/// Only for transactions whose statements find rows by key (a generic plan cannot use a
/// partial index whose condition the query states with a parameter, such as the sweep's
/// `status = 'pending'`), and only for batches of at most [`GENERIC_PLANS_UP_TO`] rows: an
/// `IN` list's length is part of the statement's text, so only short lists recur often
/// enough for a kept plan to pay; for a long one a generic plan is dearer to make and to
/// start than a pruned one (measured: the closed loop lost 9% of its throughput with it).
pub async fn keep_generic_plans(txn: &impl ConnectionTrait, batch: usize) -> Result<(), DbErr> {
    if batch <= GENERIC_PLANS_UP_TO && txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
    }
    Ok(())
}

/// The largest batch whose statements [`keep_generic_plans`] applies to.
const GENERIC_PLANS_UP_TO: usize = 2;

/// `items` lengthened, by repeating the last one, to one of the few lengths batch statements
/// are given (see [`batch_length`]), for an `IN (…)` list or a tuple list: a repeated value
/// matches nothing more. Empty stays empty.
///
/// Why: a list's length is part of its statement's text, and each pooled connection keeps
/// every text it prepares (sqlx keeps 100, each with its parameters' and columns'
/// descriptions: a few KiB, tens for a long list). Batches of every length filled the worker's
/// caches in the closed loop: about 10 MiB of statements, most used once (docs/benchmarks.md).
pub fn padded<T: Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    if let Some(last) = items.last().cloned() {
        items.resize(batch_length(items.len()), last);
    }
    items
}

/// The row counts a multi-row `INSERT` of `rows` rows is split into, in order, none above
/// `at_most`: each one of the lengths of [`batch_length`] (the largest that fits, then the
/// rest), so that, as with [`padded`], a table's inserts have few texts. Fewer than eight rows
/// stay one statement, and so does any rest below eight: 50 rows are two (48 and 2), 37 two
/// (32 and 5), 1,000 five (384, 384, 192, 32 and 8).
pub fn insert_pieces(rows: usize, at_most: usize) -> impl Iterator<Item = usize> {
    let mut left = rows;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let take = batch_length_within(left.min(at_most));
        left -= take;
        Some(take)
    })
}

/// `rows` in the pieces of [`insert_pieces`].
pub fn in_insert_pieces<T>(rows: Vec<T>, at_most: usize) -> Vec<Vec<T>> {
    let mut rows = rows.into_iter();
    insert_pieces(rows.len(), at_most)
        .map(|n| rows.by_ref().take(n).collect())
        .collect()
}

/// The length a batch statement of `n` items is given: `n` below 8, then the next of 8, 12,
/// 16, 24, 32, 48, … (a power of two or one and a half times one): sixteen texts up to 128,
/// and a padded list at most half as long again as it was.
pub fn batch_length(n: usize) -> usize {
    if n < 8 {
        return n;
    }
    let power = 1 << n.ilog2();
    if n == power {
        power
    } else if n <= power + power / 2 {
        power + power / 2
    } else {
        power * 2
    }
}

/// The largest of [`batch_length`]'s lengths that is at most `n`.
fn batch_length_within(n: usize) -> usize {
    if n < 8 {
        return n;
    }
    let power = 1 << n.ilog2();
    if n >= power + power / 2 {
        power + power / 2
    } else {
        power
    }
}

/// Opens a pool of the gateway's default size (tools and tests); see [`connect_with`].
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, GATEWAY_POOL_SIZE).await
}

/// Opens a pool of at most `pool_size` connections (one on SQLite). SQLite gets WAL and a busy
/// timeout so the embedded worker and the API can write from several tasks without "database
/// is locked".
pub async fn connect_with(url: &str, pool_size: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    let sqlite = url.starts_with("sqlite:");
    options
        .max_connections(if sqlite { 1 } else { pool_size.max(1) })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // No round trip to check a connection before every use (sqlx's default): a pooled
        // connection that died fails its statement instead, which the callers already treat
        // as the database being unreachable (503 and Retry-After, a requeue, a retry), and
        // the pool then replaces it.
        .test_before_acquire(false)
        .sqlx_logging(false)
        .map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::query("SELECT pg_advisory_lock_shared($1)")
                        .bind(*PROCESS_KEY)
                        .execute(connection)
                        .await
                        .map(|_| ())
                })
            })
        });
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;",
        )
        .await?;
    }
    Ok(db)
}

/// Opens a process's pool: `PAYRAIL_DB_POOL_SIZE` or its role's `default_size`, warning at
/// start-up when it cannot fit the server's budget. The pool and its size (for the gauges).
pub async fn connect_process_pool(
    settings: &crate::settings::RuntimeSettings,
    default_size: u32,
) -> Result<(DatabaseConnection, u32), DbErr> {
    let pool_size = settings.db_pool_size.unwrap_or(default_size);
    let db = connect_with(&settings.database_url, pool_size).await?;
    warn_if_over_budget(&db, pool_size).await;
    Ok((db, pool_size))
}

/// Applies the migrations, then makes sure the coming days' partitions exist (PostgreSQL).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await?;
    crate::partitions::ensure_ahead(db, chrono::Utc::now().date_naive()).await?;
    Ok(())
}

/// `SELECT 1`, for readiness checks.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

/// The server's connections as one process sees them at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_connections: i64,
    /// Kept for superusers: no application may use them.
    pub reserved: i64,
    /// Held by everyone else now (other processes, consoles).
    pub held_by_others: i64,
    pub pool_size: u32,
}

impl Budget {
    /// Whether this pool, full, fits beside what the others hold now.
    pub fn fits(&self) -> bool {
        self.held_by_others + i64::from(self.pool_size) <= self.max_connections - self.reserved
    }
}

/// What the server allows and what others hold, beside this process's pool; `None` on
/// SQLite, which has no such limit.
pub async fn budget(db: &DatabaseConnection, pool_size: u32) -> Result<Option<Budget>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('max_connections')::bigint AS max_connections, \
             current_setting('superuser_reserved_connections')::bigint AS reserved, \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS held",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no answer to the connection budget query".into()))?;
    let ours = i64::from(db.get_postgres_connection_pool().size());
    Ok(Some(Budget {
        max_connections: row.try_get("", "max_connections")?,
        reserved: row.try_get("", "reserved")?,
        held_by_others: (row.try_get::<i64>("", "held")? - ours).max(0),
        pool_size,
    }))
}

/// Logs, at start-up, a warning when this pool cannot fit the server's `max_connections`
/// beside the connections others hold: a fleet that will fail under load says so now.
async fn warn_if_over_budget(db: &DatabaseConnection, pool_size: u32) {
    match budget(db, pool_size).await {
        Ok(Some(b)) if !b.fits() => tracing::warn!(
            pool_size = b.pool_size,
            held_by_others = b.held_by_others,
            max_connections = b.max_connections,
            reserved = b.reserved,
            "this process's database pool cannot fit the server's max_connections beside the \
             connections others hold: lower PAYRAIL_DB_POOL_SIZE on some processes or raise \
             max_connections (see docs/operations.md, connection budget)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the database's connection budget"),
    }
}

/// The pool's connections at scrape time: `db_pool_connections{state="in_use"|"idle"}` and
/// `db_pool_max_connections`. In use at the maximum for long means callers wait for one.
#[derive(Debug)]
pub struct PoolCollector {
    db: DatabaseConnection,
    max: u32,
}

impl PoolCollector {
    /// `max` is the configured size; SQLite's pool is always one connection.
    pub fn new(db: DatabaseConnection, max: u32) -> PoolCollector {
        let max = match db.get_database_backend() {
            DbBackend::Postgres => max,
            _ => 1,
        };
        PoolCollector { db, max }
    }

    /// `(in use, idle)` connections now.
    pub fn counts(&self) -> (u32, u32) {
        let (size, idle) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                )
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                )
            }
        };
        (size.saturating_sub(idle), idle)
    }
}

impl prometheus_client::collector::Collector for PoolCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::gauge::ConstGauge;
        let (in_use, idle) = self.counts();
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "db_pool_connections",
            "This process's database connections, by state (in_use at db_pool_max_connections for long: callers wait)",
            None,
            probe.metric_type(),
        )?;
        for (state, value) in [("in_use", in_use), ("idle", idle)] {
            ConstGauge::new(i64::from(value)).encode(family.encode_family(&[("state", state)])?)?;
        }
        let max = ConstGauge::new(i64::from(self.max));
        max.encode(encoder.encode_descriptor(
            "db_pool_max_connections",
            "The most connections this process's pool may hold (PAYRAIL_DB_POOL_SIZE)",
            None,
            max.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_fits_when_it_and_the_others_leave_the_reserved_connections() {
        let budget = |held_by_others, pool_size| Budget {
            max_connections: 100,
            reserved: 3,
            held_by_others,
            pool_size,
        };
        assert!(budget(73, 24).fits(), "97 of 97");
        assert!(!budget(74, 24).fits(), "98 of 97");
        assert!(!budget(0, 100).fits(), "a pool alone can be too big");
    }

    #[test]
    fn batch_statements_take_few_lengths() {
        let lengths: std::collections::BTreeSet<usize> = (1..=128).map(batch_length).collect();
        assert_eq!(
            lengths.into_iter().collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128]
        );
        for n in 1..=1000 {
            let length = batch_length(n);
            assert!(length >= n && length < n + n / 2 + 1, "{n} -> {length}");
        }
    }

    #[test]
    fn a_padded_list_repeats_its_last_item_and_keeps_the_others_in_order() {
        assert_eq!(padded(Vec::<u32>::new()), Vec::<u32>::new());
        assert_eq!(padded([1, 2, 3]), [1, 2, 3]);
        let nine = padded(1..=9);
        assert_eq!(nine, [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]);
    }

    #[test]
    fn insert_pieces_cover_every_row_once_in_few_lengths() {
        assert_eq!(insert_pieces(0, 500).count(), 0);
        assert_eq!(insert_pieces(5, 500).collect::<Vec<_>>(), [5]);
        assert_eq!(insert_pieces(50, 500).collect::<Vec<_>>(), [48, 2]);
        assert_eq!(insert_pieces(37, 500).collect::<Vec<_>>(), [32, 5]);
        assert_eq!(
            insert_pieces(1000, 500).collect::<Vec<_>>(),
            [384, 384, 192, 32, 8]
        );
        for n in 0..=2000 {
            let pieces: Vec<usize> = insert_pieces(n, 500).collect();
            assert_eq!(pieces.iter().sum::<usize>(), n);
            assert!(
                pieces
                    .iter()
                    .all(|&p| p <= 500 && (p < 8 || batch_length(p) == p))
            );
        }
        let rows = in_insert_pieces((0..37).collect(), 500);
        assert_eq!(rows.iter().map(Vec::len).collect::<Vec<_>>(), [32, 5]);
        assert_eq!(rows.concat(), (0..37).collect::<Vec<_>>());
    }
}
