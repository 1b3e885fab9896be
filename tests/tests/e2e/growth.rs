//! Growth (issue 24, item 6): events, deliveries, attempts and log entries live in day
//! partitions on PostgreSQL. An old database's rows survive the change and land in their day;
//! retention drops past days whole, keeps a day that still holds work, and deletes row by row
//! only what no day partition holds.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use entity::ids::IdKind;
use migration::{Migrator, MigratorTrait};
use payrail_tests::{Behavior, Options, Receiver, ScratchDatabase, TestApp, stray_id};
use runtime::partitions::{self, DAYS_AHEAD, Partitioned};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        sea_orm::DbBackend::Postgres,
        sql.to_string(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("a count")
}

/// The day partitions of `table` that exist, oldest first.
async fn days_of(db: &DatabaseConnection, table: Partitioned) -> Vec<NaiveDate> {
    let rows = db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = '{}'::regclass ORDER BY c.relname",
                table.table
            ),
        ))
        .await
        .expect("partitions");
    rows.iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .filter_map(|name| {
            let digits = name
                .strip_prefix(&format!("{}_p", table.table))?
                .to_string();
            NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
        })
        .collect()
}

fn days_from(first: NaiveDate, n: u32) -> Vec<NaiveDate> {
    (0..n)
        .map(|d| first + chrono::Duration::days(i64::from(d)))
        .collect()
}

#[tokio::test]
async fn an_old_databases_rows_survive_partitioning_and_land_in_their_day() {
    let scratch = ScratchDatabase::create().await;
    let db = Database::connect(&scratch.url).await.expect("connect");
    Migrator::up(&db, Some(24))
        .await
        .expect("the schema before");
    let now = Utc::now();
    let old = now - chrono::Duration::days(40);
    let (today_event, old_event) = (IdKind::Event.generate(), IdKind::Event.generate_at(old));
    // A delivery of the old schema: a random id, kept by the pair's unique index.
    let (today_delivery, endpoint) = (IdKind::WebhookDelivery.generate(), "we_1");
    let (attempt, log) = (
        IdKind::WebhookAttempt.generate(),
        IdKind::Log.generate_at(old),
    );
    for sql in [
        format!(
            "INSERT INTO events (id, merchant_id, event_type, data, created_at, published_at, livemode)
             VALUES ('{today_event}', 'mer_1', 'payment.succeeded', '{{}}', now(), now(), false),
                    ('{old_event}', 'mer_1', 'payment.succeeded', '{{}}', now() - interval '40 days', NULL, false)"
        ),
        format!(
            "INSERT INTO webhook_deliveries (id, merchant_id, event_id, endpoint_id, status, attempts,
               created_at, updated_at, livemode)
             VALUES ('{today_delivery}', 'mer_1', '{today_event}', '{endpoint}', 'succeeded', 1, now(), now(), false)"
        ),
        format!(
            "INSERT INTO webhook_attempts (id, delivery_id, merchant_id, attempt_number, duration_ms,
               created_at, livemode)
             VALUES ('{attempt}', '{today_delivery}', 'mer_1', 1, 5, now(), false)"
        ),
        format!(
            "INSERT INTO logs (id, merchant_id, level, message, source, created_at)
             VALUES ('{log}', 'mer_1', 'info', 'old', 'api', now() - interval '40 days')"
        ),
    ] {
        db.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    runtime::db::migrate(&db).await.expect("migration 000025");

    let today = now.date_naive();
    for table in partitions::TABLES {
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM pg_class WHERE relname = '{}' AND relkind = 'p'",
                    table.table
                )
            )
            .await,
            1,
            "{} is partitioned",
            table.table
        );
        assert_eq!(
            days_of(&db, table).await,
            days_from(today, DAYS_AHEAD + 1),
            "{}: today and the next {DAYS_AHEAD} days",
            table.table
        );
    }
    let in_partition = |table: &str, partition: String, id: &str| {
        format!("SELECT count(*) FROM {partition} WHERE id = '{id}' AND '{table}' <> ''")
    };
    for (table, id, partition) in [
        ("events", &today_event, partitions::EVENTS.partition(today)),
        ("events", &old_event, partitions::EVENTS.default_partition()),
        (
            "webhook_deliveries",
            &today_delivery,
            partitions::DELIVERIES.partition(today),
        ),
        (
            "webhook_attempts",
            &attempt,
            partitions::ATTEMPTS.partition(today),
        ),
        ("logs", &log, partitions::LOGS.default_partition()),
    ] {
        assert_eq!(
            count(&db, &in_partition(table, partition.clone(), id)).await,
            1,
            "{id} in {partition}"
        );
    }
    // The indexes the reads and the sweep use are there, on every partition.
    for index in [
        "idx_events_unpublished",
        "idx_webhook_deliveries_due",
        "idx_webhook_attempts_delivery",
        "idx_logs_created",
    ] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT count(*) FROM pg_indexes WHERE indexname = '{index}'")
            )
            .await,
            1,
            "{index}"
        );
    }
    // A lookup by id reads one partition.
    let plan = db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("EXPLAIN SELECT * FROM events WHERE id = '{today_event}'"),
        ))
        .await
        .expect("explain");
    let plan: Vec<String> = plan
        .iter()
        .filter_map(|r| r.try_get_by_index::<String>(0).ok())
        .collect();
    let scanned: Vec<&String> = plan.iter().filter(|l| l.contains(" on events_")).collect();
    assert_eq!(scanned.len(), 1, "{plan:#?}");
    db.close().await.ok();
}

/// An id expression moving the `prefix_…` id in `column` to `at`'s day, keeping its random part.
fn moved_to(prefix: &str, column: &str, at: chrono::DateTime<Utc>) -> String {
    let bound = IdKind::Event.lower_bound(at);
    let millis = &bound["evt_".len().."evt_".len() + 12];
    format!("'{prefix}_{millis}' || substr({column}, 17)")
}

#[tokio::test]
async fn retention_drops_past_days_whole_keeps_a_day_with_work_and_deletes_stray_rows() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (endpoint_id, _) = app.create_endpoint(&receiver.url).await;
    let old = Utc::now() - chrono::Duration::days(40);
    let old_day = old.date_naive();
    // 2,501 events and deliveries moved to 40 days ago, all delivered but one; an attempt each,
    // of an id no day holds (the default partition's, deleted row by row); and 3 recent ones.
    app.due_backlog(&endpoint_id, 2501).await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO webhook_attempts (id, delivery_id, merchant_id, attempt_number, http_status,
               duration_ms, created_at)
             SELECT {}, d.id, d.merchant_id, 1, 200, 5, now() - interval '40 days'
             FROM webhook_deliveries d;
             UPDATE webhook_deliveries SET status = 'succeeded'
             WHERE id <> (SELECT min(id) FROM webhook_deliveries);
             UPDATE webhook_deliveries SET id = {}, event_id = {},
               created_at = now() - interval '40 days';
             UPDATE events SET id = {}, created_at = now() - interval '40 days'",
            stray_id("wha", "d.id"),
            moved_to("whd", "id", old),
            moved_to("evt", "event_id", old),
            moved_to("evt", "id", old),
        ))
        .await
        .expect("age");
    app.due_backlog(&endpoint_id, 3).await;
    // The default partition caught the old rows; creating their day moves them into it.
    let events_of_old_day = format!(
        "SELECT count(*) FROM {}",
        partitions::EVENTS.partition(old_day)
    );
    let created = partitions::ensure_ahead(&app.db, old_day)
        .await
        .expect("old days");
    assert_eq!(created, 4 * (DAYS_AHEAD + 1));
    assert_eq!(app.count(&events_of_old_day).await, 2501);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM {}",
            partitions::DELIVERIES.partition(old_day)
        ))
        .await,
        2501
    );
    assert_eq!(app.count("SELECT count(*) FROM events_default").await, 3);

    let retention = gateway::app::retention::Retention {
        db: app.db.clone(),
        logs: Duration::from_secs(30 * 86_400),
        idempotency_keys: app.settings.gateway.retention.idempotency_keys,
        events: Duration::from_secs(30 * 86_400),
    };
    let pruned = retention.prune_once().await.expect("prune");
    assert_eq!(
        pruned.partitions_kept,
        vec![
            partitions::EVENTS.partition(old_day),
            partitions::DELIVERIES.partition(old_day)
        ],
        "a delivery of that day is still pending"
    );
    // The old day's attempts and logs, and all four tables of the 7 days after it.
    assert_eq!(pruned.partitions_dropped.len(), 2 + 4 * 7, "{pruned:?}");
    assert_eq!(
        (
            pruned.attempts,
            pruned.deliveries,
            pruned.events,
            pruned.partitions_created
        ),
        (2501, 0, 0, 0),
        "only the stray attempts go row by row: {pruned:?}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            .await,
        4,
        "the old one still waiting, and the recent ones"
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_attempts").await, 0);

    // Once it is finished, its day goes whole.
    app.db
        .execute_unprepared(&format!(
            "UPDATE {} SET status = 'failed' WHERE status = 'pending'",
            partitions::DELIVERIES.partition(old_day)
        ))
        .await
        .expect("finish");
    let pruned = retention.prune_once().await.expect("prune");
    assert_eq!(
        pruned.partitions_dropped,
        vec![
            partitions::EVENTS.partition(old_day),
            partitions::DELIVERIES.partition(old_day)
        ]
    );
    assert!(pruned.partitions_kept.is_empty());
    assert_eq!(app.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries").await,
        3
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)"
        )
        .await,
        0,
        "no delivery lost its event"
    );
    assert_eq!(
        retention.prune_once().await.expect("again"),
        gateway::app::retention::Pruned::default()
    );
    assert_eq!(
        days_of(&app.db, partitions::EVENTS).await,
        days_from(Utc::now().date_naive(), DAYS_AHEAD + 1)
    );
    // What an SRE watches: the days ahead that have their partitions, read at scrape time.
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("partitions_ahead {}", DAYS_AHEAD + 1)),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("partitions_ahead"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Rows no day partition holds (a day that had none when they were written) go row by row, by
/// the same rules as before partitions: finished deliveries, then published events no
/// delivery still refers to.
#[tokio::test]
async fn retention_deletes_old_rows_of_the_default_partitions_by_the_old_rules() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (endpoint_id, _) = app.create_endpoint(&receiver.url).await;
    // Three old events in the default partition (random ids): one delivered, one whose
    // delivery still waits, one with no delivery at all.
    app.due_backlog(&endpoint_id, 2).await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO events (id, merchant_id, event_type, data, created_at, published_at, livemode)
             VALUES ('evt_' || md5('alone'), (SELECT merchant_id FROM webhook_endpoints WHERE id = '{endpoint_id}'),
                     'payment.succeeded', '{{}}', now(), now(), false);
             UPDATE webhook_deliveries SET status = 'succeeded' WHERE id = (SELECT min(id) FROM webhook_deliveries);
             UPDATE webhook_deliveries SET created_at = now() - interval '40 days';
             UPDATE events SET created_at = now() - interval '40 days';"
        ))
        .await
        .expect("age");
    assert_eq!(app.count("SELECT count(*) FROM events_default").await, 3);
    let retention = gateway::app::retention::Retention {
        db: app.db.clone(),
        logs: Duration::from_secs(30 * 86_400),
        idempotency_keys: app.settings.gateway.retention.idempotency_keys,
        events: Duration::from_secs(30 * 86_400),
    };
    let pruned = retention.prune_once().await.expect("prune");
    assert_eq!(
        (pruned.deliveries, pruned.events),
        (1, 2),
        "the delivered one and its event, and the event alone: {pruned:?}"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events e JOIN webhook_deliveries d ON d.event_id = e.id WHERE d.status = 'pending'"
        )
        .await,
        1,
        "the waiting delivery keeps its event"
    );
}
