//! Day partitions of the tables that grow with traffic (PostgreSQL only): events, webhook
//! deliveries, webhook attempts and log entries are partitioned by range of id (migration
//! 000025), and an id's first 12 hex digits are its creation time in milliseconds, so one UTC
//! day is one range of ids and one partition, `<table>_pYYYYMMDD`.
//!
//! This module owns those partitions: [`ensure_ahead`] creates today's and the next days'
//! (at migration, at every gateway's start and hourly), and [`drop_before`] drops the days
//! past retention as whole tables, which costs the same at ten rows as at ten million, where
//! deleting them row by row was the database's main work at scale. A row whose day has no
//! partition lands in `<table>_default` rather than failing its insert; creating that day's
//! partition later moves such rows into it, and rows left in the default partition are
//! pruned row by row (the gateway's retention job).
//!
//! A day that still holds work is never dropped: an unpublished event, or a delivery still
//! `pending` or `processing`, keeps its day's events and deliveries (they leave together: a
//! delivery's id carries its event's time). Attempts and log entries are records only.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::ids::IdKind;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait,
};

/// A partitioned table and the kind of the ids that key it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioned {
    pub table: &'static str,
    pub kind: IdKind,
}

pub const EVENTS: Partitioned = Partitioned {
    table: "events",
    kind: IdKind::Event,
};
pub const DELIVERIES: Partitioned = Partitioned {
    table: "webhook_deliveries",
    kind: IdKind::WebhookDelivery,
};
pub const ATTEMPTS: Partitioned = Partitioned {
    table: "webhook_attempts",
    kind: IdKind::WebhookAttempt,
};
pub const LOGS: Partitioned = Partitioned {
    table: "logs",
    kind: IdKind::Log,
};
pub const TABLES: [Partitioned; 4] = [EVENTS, DELIVERIES, ATTEMPTS, LOGS];

/// Days created ahead of today: the hourly job can miss a week before any row lands in a
/// default partition.
pub const DAYS_AHEAD: u32 = 7;

/// Serialises partition changes between processes (several gateways start and run the hourly
/// job at once); `b"partitn"` as a number.
const LOCK_KEY: i64 = 0x70_61_72_74_69_74_6e;

/// How long a partition change waits for a lock before giving up until the next run: attaching
/// and dropping briefly lock the parent, and no insert should queue behind that for long.
const LOCK_TIMEOUT: &str = "5s";

impl Partitioned {
    /// The partition holding `day`'s rows.
    pub fn partition(&self, day: NaiveDate) -> String {
        format!("{}_p{}", self.table, day.format("%Y%m%d"))
    }

    pub fn default_partition(&self) -> String {
        format!("{}_default", self.table)
    }

    /// The ids of `day`: from its first to the next day's first (exclusive).
    pub fn bounds(&self, day: NaiveDate) -> (String, String) {
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        (
            self.kind.lower_bound(start(day)),
            self.kind.lower_bound(start(day + Duration::days(1))),
        )
    }

    /// The day a partition of this table holds, from its name.
    fn day_of(&self, partition: &str) -> Option<NaiveDate> {
        let digits = partition.strip_prefix(self.table)?.strip_prefix("_p")?;
        NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
    }
}

/// The day partitions that exist, per table, in one round trip.
async fn existing(db: &impl ConnectionTrait) -> Result<Vec<(Partitioned, NaiveDate)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT parent.relname AS parent, child.relname AS child FROM pg_inherits i \
             JOIN pg_class parent ON parent.oid = i.inhparent \
             JOIN pg_class child ON child.oid = i.inhrelid \
             WHERE parent.relnamespace = current_schema()::regnamespace",
        ))
        .await?;
    let mut found = Vec::new();
    for row in rows {
        let parent: String = row.try_get("", "parent")?;
        let child: String = row.try_get("", "child")?;
        if let Some(table) = TABLES.iter().find(|t| t.table == parent)
            && let Some(day) = table.day_of(&child)
        {
            found.push((*table, day));
        }
    }
    Ok(found)
}

/// Creates the partitions of `today` and the [`DAYS_AHEAD`] days after it that are missing;
/// how many it created. Nothing on SQLite.
pub async fn ensure_ahead(db: &DatabaseConnection, today: NaiveDate) -> Result<u32, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(0);
    }
    let have = existing(db).await?;
    let mut created = 0;
    for offset in 0..=DAYS_AHEAD {
        let day = today + Duration::days(i64::from(offset));
        for table in TABLES {
            if !have.contains(&(table, day)) && create(db, table, day).await? {
                created += 1;
            }
        }
    }
    Ok(created)
}

/// How many days, from today on and without a gap, every partitioned table has a partition
/// for: 8 when the job keeps up (today and [`DAYS_AHEAD`] more), 0 when today's is missing
/// and rows are landing in the default partitions. `None` on SQLite, which has none.
pub async fn days_covered(db: &DatabaseConnection, today: NaiveDate) -> Result<Option<u32>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let have = existing(db).await?;
    let covered = (0..)
        .take_while(|offset: &u32| {
            let day = today + Duration::days(i64::from(*offset));
            TABLES.iter().all(|table| have.contains(&(*table, day)))
        })
        .count();
    Ok(Some(u32::try_from(covered).unwrap_or(u32::MAX)))
}

/// Creates `day`'s partition of `table`, moving into it any of its rows the default partition
/// caught; false if another process made it first.
async fn create(
    db: &DatabaseConnection,
    table: Partitioned,
    day: NaiveDate,
) -> Result<bool, DbErr> {
    let name = table.partition(day);
    let (from, to) = table.bounds(day);
    let parent = table.table;
    let default = table.default_partition();
    let txn = begin_change(db).await?;
    if exists(&txn, &name).await? {
        txn.commit().await?;
        return Ok(false);
    }
    // Created apart and attached, rather than `PARTITION OF`: attaching takes a lighter lock on
    // the parent, so inserts go on meanwhile. The bounds are ids we make ourselves (a prefix
    // and hex digits), so quoting them inline is safe.
    txn.execute_unprepared(&format!(
        "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS);
         WITH moved AS (DELETE FROM {default} WHERE id >= '{from}' AND id < '{to}' RETURNING *)
         INSERT INTO {name} SELECT * FROM moved;
         ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}');"
    ))
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// A transaction for a partition change: it holds the lock that makes processes take turns,
/// and gives up on any lock it waits [`LOCK_TIMEOUT`] for.
async fn begin_change(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [LOCK_KEY.into()],
    ))
    .await?;
    Ok(txn)
}

async fn exists(db: &impl ConnectionTrait, table: &str) -> Result<bool, DbErr> {
    Ok(db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT to_regclass($1) IS NOT NULL AS present",
            [table.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false))
}

/// What [`drop_before`] did: the partitions dropped, and the days kept because work in them
/// is unfinished.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub partitions: Vec<String>,
    pub kept: Vec<String>,
}

/// Drops the day partitions of `tables` whose whole day is before `cutoff`, except a day whose
/// events or deliveries still hold work (see the module's documentation). Nothing on SQLite.
pub async fn drop_before(
    db: &DatabaseConnection,
    tables: &[Partitioned],
    cutoff: DateTime<Utc>,
) -> Result<Dropped, DbErr> {
    let mut dropped = Dropped::default();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(dropped);
    }
    let mut past: Vec<(Partitioned, NaiveDate)> = existing(db)
        .await?
        .into_iter()
        .filter(|(table, day)| {
            tables.contains(table) && *day + Duration::days(1) <= cutoff.date_naive()
        })
        .collect();
    past.sort_by_key(|(table, day)| (*day, table.table));
    let mut days: Vec<NaiveDate> = past.iter().map(|(_, day)| *day).collect();
    days.dedup();
    for day in days {
        let txn = begin_change(db).await?;
        // Read again under the lock: another gateway's job may have dropped some meanwhile.
        let present = existing(&txn).await?;
        let of_day: Vec<Partitioned> = past
            .iter()
            .filter(|entry| entry.1 == day && present.contains(entry))
            .map(|(table, _)| *table)
            .collect();
        if of_day.is_empty() {
            txn.commit().await?;
            continue;
        }
        // Locked before they are checked, so no retry can make a delivery of this day due
        // again between the check and the drop. The parents first: dropping a partition takes
        // its parent's lock anyway, and a query of the parent (the relay's locking SELECT)
        // locks the parent and then its partitions; taken the other way round, the two
        // deadlocked (seen in CI).
        let parents: Vec<&str> = of_day.iter().map(|t| t.table).collect();
        let names: Vec<String> = of_day.iter().map(|t| t.partition(day)).collect();
        txn.execute_unprepared(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            parents.join(", "),
            names.join(", ")
        ))
        .await?;
        let mut holds_work = false;
        for (table, check) in [
            (EVENTS, "published_at IS NULL"),
            (DELIVERIES, "status IN ('pending', 'processing')"),
        ] {
            if of_day.contains(&table) && !holds_work {
                let name = table.partition(day);
                holds_work = txn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        format!("SELECT EXISTS (SELECT 1 FROM {name} WHERE {check}) AS busy"),
                    ))
                    .await?
                    .map(|r| r.try_get::<bool>("", "busy"))
                    .transpose()?
                    .unwrap_or(false);
            }
        }
        for table in of_day {
            let name = table.partition(day);
            if holds_work && [EVENTS, DELIVERIES].contains(&table) {
                dropped.kept.push(name);
            } else {
                txn.execute_unprepared(&format!("DROP TABLE {name}"))
                    .await?;
                dropped.partitions.push(name);
            }
        }
        txn.commit().await?;
    }
    Ok(dropped)
}
