//! Test support for the end-to-end suite: a gateway and a worker started through the same
//! `build`/`run_until_stopped` code as production, against the real PostgreSQL, RabbitMQ and
//! Redis of this machine. Each [`TestApp`] gets its own database, queue prefix and Redis key
//! prefix, so tests run in parallel; all three are removed when it is dropped.
//!
//! Only the outside world is mocked: [`Receiver`] plays a merchant's server, [`TcpProxy`]
//! plays a network path to the broker that can be cut.
//!
//! Nothing a test starts sends a byte beyond this machine: every worker (and the gateway's
//! test sends) delivers webhooks under `WebhookTargets::Loopback`, which refuses any other
//! target before a connection or a name lookup; [`TestApp::spawn_with`] refuses options that
//! would loosen it. Fuzzers, which invent URLs, go through [`LoopbackEgress`] as well.

pub mod egress;
pub mod mocks;
pub mod proxy;
pub mod receiver;

use std::time::Duration;

use gateway::providers::settings::ProviderSettings;
use gateway::settings::{GatewaySettings, RetentionSettings};
use gateway::{Application, Settings};
use runtime::bus::EventBus;
use runtime::db;
use runtime::settings::{Mode, RuntimeSettings, Secret};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use worker::Worker;
use worker::app::WorkerApplication;
use worker::sender::WebhookTargets;
use worker::settings::{WebhookSettings, WorkerSettings};

pub use egress::LoopbackEgress;
pub use proxy::TcpProxy;
pub use receiver::{Behavior, Receiver};

pub const ADMIN_TOKEN: &str = "test-admin-token-5f0c9a7e1d3b4862";
/// Shared by every gateway of a test, as by every replica of a deployment.
pub const DASHBOARD_SECRET: &str = "test-dashboard-secret-of-some-length";
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Knobs a test may change before spawning.
#[derive(Clone)]
pub struct Options {
    pub webhook: WebhookSettings,
    /// Start the worker process (consumer + scheduled sweeps). Tests that drive
    /// `sweep_once` themselves turn it off and use [`TestApp::standalone_worker`].
    pub start_worker: bool,
    /// Route the gateway's AMQP connection through a cuttable proxy.
    pub gateway_amqp_url: Option<String>,
    /// Route the gateway's Redis connection through a cuttable proxy.
    pub gateway_redis_url: Option<String>,
    /// Route the gateway's PostgreSQL connections through a cuttable proxy at this port (the
    /// test's own database; the test's `db` handle stays direct).
    pub gateway_database_port: Option<u16>,
    /// Providers (pointing at local mocks); none by default.
    pub providers: ProviderSettings,
    /// The relay's periodic pass (it also runs after every commit that wrote events).
    pub relay_interval: Duration,
    /// How long the relay leaves a new payment's event to the gateway that publishes it.
    pub relay_writer_grace: Duration,
    /// How long a dashboard access token (and a page's socket) lives.
    pub dashboard_access_ttl: Duration,
    /// When usage is checked against plan limits (cron with seconds).
    pub usage_check_schedule: &'static str,
    /// The express lane beside the broker (on, as in production). Tests of what the broker
    /// and the outbox alone do turn it off.
    pub express_lane: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            webhook: WebhookSettings {
                sweep_interval: Duration::from_millis(100),
                batch_size: 50,
                max_attempts: 5,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
                timeout: Duration::from_secs(2),
                immediate: true,
                targets: WebhookTargets::Loopback,
                proxy: None,
                retry_schedule: None,
                endpoint_concurrency: 10,
                disable_after: Duration::from_secs(5 * 86_400),
                secret_overlap: Duration::from_secs(86_400),
                lease: Duration::from_secs(3),
            },
            start_worker: true,
            gateway_amqp_url: None,
            gateway_redis_url: None,
            gateway_database_port: None,
            providers: ProviderSettings::default(),
            relay_interval: Duration::from_millis(100),
            relay_writer_grace: Duration::from_secs(2),
            dashboard_access_ttl: Duration::from_secs(15 * 60),
            usage_check_schedule: "0 0 6 * * *",
            express_lane: true,
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// The gateway's operators' listener (`/metrics`).
    pub metrics_base: String,
    pub worker_base: Option<String>,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    pub api_key: String,
    pub prefix: String,
    pub settings: Settings,
    pub state: gateway::http::state::AppState,
    database_name: String,
    stops: Vec<Running>,
}

/// A process of the test (a gateway, a worker): how to stop it, and its end.
struct Running {
    stop: oneshot::Sender<()>,
    ended: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Running {
            stop,
            ended: tokio::spawn(run(stopped)),
        }
    }
}

/// A worker started through its production entry point (`WorkerApplication::build`, then
/// `run_until_stopped`); it stops when [`RunningWorker::stop`] is called or it is dropped.
pub struct RunningWorker {
    /// Its operators' listener (`/metrics`, probes).
    pub base: String,
    stop: oneshot::Sender<()>,
    ended: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub async fn start(settings: worker::Settings) -> RunningWorker {
        let worker = WorkerApplication::build(settings)
            .await
            .expect("worker builds");
        let base = format!("http://127.0.0.1:{}", worker.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let ended = tokio::spawn(worker.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        RunningWorker { base, stop, ended }
    }

    /// Stops it and waits for its entry point to return, which it must do cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.ended
            .await
            .expect("worker task")
            .expect("worker stops cleanly");
    }
}

/// A port nothing listens on right now, for a binary the test starts (and may restart on
/// the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (at most a minute) until the gateway at `base` answers ready.
pub async fn until_ready(client: &reqwest::Client, base: &str) {
    let started = std::time::Instant::now();
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the gateway at {base} never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Removes a test's SQLite database and the write-ahead log and shared-memory files beside it
/// (SQLite leaves them while a connection is open, and a killed process never closes one).
pub fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A fresh name for a test's database, queues and keys: `payrail_t_`, the start of the test's
/// own name (libtest names the thread that runs it) and a UUID, so whatever a test leaves
/// behind on the broker, in Redis or in PostgreSQL says which test made it. At most 59
/// characters: PostgreSQL keeps 63 of a database's name.
pub fn unique_name() -> String {
    let test: String = std::thread::current()
        .name()
        .and_then(|path| path.rsplit("::").next())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("payrail_t_{test}_{}", uuid::Uuid::new_v4().simple())
}

/// Settings for a test: its own database, prefixes and port 0.
pub fn test_settings(database_url: &str, prefix: &str, webhook: WebhookSettings) -> Settings {
    Settings {
        runtime: RuntimeSettings {
            mode: Mode::Distributed,
            database_url: database_url.to_string(),
            amqp_url: Some(AMQP_URL.to_string()),
            redis_url: Some(REDIS_URL.to_string()),
            amqp_prefix: prefix.to_string(),
            redis_prefix: prefix.to_string(),
            db_pool_size: None,
            express_lane: true,
        },
        worker: WorkerSettings {
            bind: "127.0.0.1:0".parse().expect("address"),
            webhook,
        },
        gateway: GatewaySettings {
            bind: "127.0.0.1:0".parse().expect("address"),
            metrics_bind: "127.0.0.1:0".parse().expect("address"),
            admin_token: Some(Secret(ADMIN_TOKEN.to_string())),
            public_url: None,
            simulated_webhook_secret: None,
            relay_interval: Duration::from_millis(100),
            relay_writer_grace: Duration::from_secs(2),
            usage_flush_interval: Duration::from_millis(200),
            usage_check_schedule: "0 0 6 * * *",
            max_webhook_endpoints: 20,
            default_plan: entity::status::Plan::Unlimited,
            funds: gateway::ledger::FundsPolicy::default(),
            funds_release_interval: Duration::from_millis(200),
            ledger_check_schedule: "0 17 * * * *",
            trusted_proxies: Default::default(),
            reconcile_schedule: "0 30 3 * * *",
            reconcile_window: Duration::from_secs(3 * 86_400),
            providers: ProviderSettings::default(),
            retention: RetentionSettings {
                logs: Duration::from_secs(30 * 86_400),
                idempotency_keys: Duration::from_secs(7 * 86_400),
                events: Duration::from_secs(30 * 86_400),
            },
            // Far above what any test sends, so only the rate-limit tests (which give their
            // merchant its own limit) ever meet a 429.
            rate_limit: runtime::token_bucket::Quota {
                per_second: 10_000,
                burst: 100_000,
            },
            public_rate_limit: runtime::token_bucket::Quota {
                per_second: 10_000,
                burst: 100_000,
            },
            dashboard: gateway::settings::DashboardSettings {
                secret: Some(Secret(DASHBOARD_SECRET.to_string())),
                access_ttl: Duration::from_secs(15 * 60),
                refresh_ttl: Duration::from_secs(30 * 86_400),
            },
        },
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        assert_eq!(
            options.webhook.targets,
            WebhookTargets::Loopback,
            "tests send nothing beyond this machine: webhooks go to loopback only"
        );
        let prefix = unique_name();
        let admin = Database::connect(PG_ADMIN_URL)
            .await
            .expect("postgres is running");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{prefix}\""))
            .await
            .expect("create test database");
        let database_url = format!("postgres://postgres@127.0.0.1:5432/{prefix}");
        let mut app = TestApp::start(options, prefix.clone(), &database_url).await;
        app.database_name = prefix;
        app
    }

    /// An app on a database of the caller's (migrated here if it is behind), which the
    /// caller owns and drops; its own merchant and key are made as usual.
    pub async fn spawn_on_database(database_url: &str) -> TestApp {
        TestApp::start(Options::default(), unique_name(), database_url).await
    }

    async fn start(options: Options, prefix: String, database_url: &str) -> TestApp {
        let conn = db::connect(database_url)
            .await
            .expect("connect test database");
        db::migrate(&conn).await.expect("migrate");
        let mut settings = test_settings(database_url, &prefix, options.webhook.clone());
        settings.gateway.providers = options.providers.clone();
        settings.gateway.relay_interval = options.relay_interval;
        settings.gateway.relay_writer_grace = options.relay_writer_grace;
        settings.gateway.dashboard.access_ttl = options.dashboard_access_ttl;
        settings.gateway.usage_check_schedule = options.usage_check_schedule;
        settings.runtime.express_lane = options.express_lane;
        let mut gateway_settings = settings.clone();
        if let Some(url) = &options.gateway_amqp_url {
            gateway_settings.runtime.amqp_url = Some(url.clone());
        }
        if let Some(url) = &options.gateway_redis_url {
            gateway_settings.runtime.redis_url = Some(url.clone());
        }
        if let Some(port) = options.gateway_database_port {
            gateway_settings.runtime.database_url =
                format!("postgres://postgres@127.0.0.1:{port}/{prefix}");
        }
        let app = Application::build(gateway_settings)
            .await
            .expect("gateway builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics_base = format!("http://127.0.0.1:{}", app.metrics_port());
        let state = app.state().clone();
        let mut stops = vec![Running::start(|stopped| async move {
            let _ = app
                .run_until_stopped(async move {
                    let _ = stopped.await;
                })
                .await;
        })];
        let worker_base = if options.start_worker {
            let w = WorkerApplication::build(settings.worker_process())
                .await
                .expect("worker builds");
            let worker_base = format!("http://127.0.0.1:{}", w.port());
            stops.push(Running::start(|stopped| async move {
                let _ = w
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await;
            }));
            Some(worker_base)
        } else {
            None
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let mut app = TestApp {
            base,
            metrics_base,
            worker_base,
            client,
            db: conn,
            api_key: String::new(),
            prefix,
            settings,
            state,
            database_name: String::new(),
            stops,
        };
        app.api_key = app.create_merchant("Test merchant").await;
        app
    }

    /// Another gateway on the same database, broker and Redis prefix, as a second replica
    /// behind a load balancer would be; returns its base URL and its metrics listener's. It
    /// stops with this app.
    pub async fn spawn_second_gateway(&mut self) -> (String, String) {
        self.spawn_second_gateway_with(self.settings.clone()).await
    }

    /// Another gateway on this app's database, broker and prefixes, with settings of its own
    /// (a knob under test), started through `build` and `run_until_stopped`.
    pub async fn spawn_second_gateway_with(&mut self, settings: Settings) -> (String, String) {
        let app = Application::build(settings)
            .await
            .expect("second gateway builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics_base = format!("http://127.0.0.1:{}", app.metrics_port());
        self.stops.push(Running::start(|stopped| async move {
            let _ = app
                .run_until_stopped(async move {
                    let _ = stopped.await;
                })
                .await;
        }));
        (base, metrics_base)
    }

    /// Stops every gateway and worker of this app and waits until each has shut down
    /// (sends in flight finished and recorded); the database stays until the app is dropped.
    pub async fn stop(&mut self) {
        let mut ended = Vec::new();
        for r in self.stops.drain(..) {
            let _ = r.stop.send(());
            ended.push(r.ended);
        }
        for e in ended {
            let _ = e.await;
        }
    }

    /// A worker that is not running: the test calls `sweep_once`/`handle` itself.
    /// The `worker` binary at `path` (a test's `env!("CARGO_BIN_EXE_worker")`), set up for this
    /// app's database, queues and cache keys, its probes on a free port and its webhooks on
    /// loopback, with nothing else from the environment; the caller adds its own knobs.
    pub fn worker_command(&self, path: &str) -> std::process::Command {
        let mut command = self.binary_command(path);
        command.env("PAYRAIL_WORKER_BIND", "127.0.0.1:0");
        command
    }

    /// The `gateway` binary at `path` (a test's `env!("CARGO_BIN_EXE_gateway")`), on this
    /// app's database, queues and cache keys, with its secrets, listening on `bind`.
    pub fn gateway_command(&self, path: &str, bind: &str) -> std::process::Command {
        let mut command = self.binary_command(path);
        command
            .env("PAYRAIL_BIND", bind)
            .env("PAYRAIL_METRICS_BIND", "127.0.0.1:0")
            .env("PAYRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PAYRAIL_DASHBOARD_SECRET", DASHBOARD_SECRET);
        command
    }

    fn binary_command(&self, path: &str) -> std::process::Command {
        let mut command = std::process::Command::new(path);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.settings.runtime.database_url)
            .env("AMQP_URL", AMQP_URL)
            .env("REDIS_URL", REDIS_URL)
            .env("PAYRAIL_AMQP_PREFIX", &self.prefix)
            .env("PAYRAIL_REDIS_PREFIX", &self.prefix)
            .env("PAYRAIL_WEBHOOK_TARGETS", "loopback");
        command
    }

    pub fn standalone_worker(&self) -> Worker {
        let mut registry = prometheus_client_registry();
        let metrics = std::sync::Arc::new(worker::metrics::DeliveryMetrics::new(&mut registry));
        let bus = EventBus::amqp(AMQP_URL, entity::bus::QueueNames::new(&self.prefix));
        Worker::new(
            self.db.clone(),
            bus,
            self.state.cache.clone(),
            self.settings.worker.webhook.clone(),
            metrics,
        )
        .expect("worker")
    }

    /// A merchant of its own: its id and its first (test) API key.
    pub async fn create_merchant_with_id(&self, name: &str) -> (String, String) {
        let r = self
            .client
            .post(format!("{}/v1/admin/merchants", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("admin request");
        assert_eq!(r.status(), 201, "merchant creation");
        let body: Value = r.json().await.expect("json");
        (
            body["id"].as_str().expect("id").to_string(),
            body["api_key"].as_str().expect("api_key").to_string(),
        )
    }

    pub async fn create_merchant(&self, name: &str) -> String {
        self.create_merchant_with_id(name).await.1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// POSTs and returns (status, JSON body).
    pub async fn post_json(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(key, path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// PATCHes and returns (status, JSON body).
    pub async fn patch_json(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .patch(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self.get(key, path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates an endpoint subscribed to everything; returns (id, secret).
    pub async fn create_endpoint(&self, url: &str) -> (String, String) {
        let (status, body) = self
            .post_json(
                &self.api_key,
                "/v1/webhook_endpoints",
                json!({"url": url, "enabled_events": ["*"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().expect("id").into(),
            body["secret"].as_str().expect("secret").into(),
        )
    }

    pub async fn create_payment(&self, amount: i64) -> Value {
        let (status, body) = self
            .post_json(
                &self.api_key,
                "/v1/payments",
                json!({"amount": amount, "currency": "usd", "provider": "simulated"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Polls `check` every 25 ms until it returns Some, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the count `sql` selects is `n`, or panics after `timeout`.
    pub async fn until_count(&self, timeout: Duration, what: &str, sql: &str, n: i64) {
        self.eventually(timeout, what, || async {
            (self.count(sql).await == n).then_some(())
        })
        .await
    }

    /// Waits until the relay has marked every event published. It marks one once the broker
    /// confirmed it, which may be after the worker, fed by that very publish, delivered it.
    pub async fn until_outbox_empty(&self, timeout: Duration) {
        self.until_count(
            timeout,
            "the outbox empty",
            "SELECT count(*) FROM events WHERE published_at IS NULL",
            0,
        )
        .await
    }

    /// Waits until a worker is heard popping this app's express lane, so that the next payment's
    /// event goes through it.
    pub async fn until_express_heard(&self, timeout: Duration) {
        let redis = redis::Client::open(REDIS_URL)
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let heard = runtime::bus::express::heard_key(&self.prefix);
        self.eventually(timeout, "a worker heard on the express lane", || {
            let (mut redis, heard) = (redis.clone(), heard.clone());
            async move {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&heard)
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                exists.then_some(())
            }
        })
        .await
    }

    /// Makes every insert into `webhook_deliveries` fail (`true`), as a database refusing
    /// writes would, or go through again (`false`).
    pub async fn refuse_delivery_inserts(&self, refuse: bool) {
        let sql = if refuse {
            "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'deliveries refused by the test'; END $$;
             CREATE TRIGGER refuse_deliveries BEFORE INSERT ON webhook_deliveries
               FOR EACH ROW EXECUTE FUNCTION refuse_deliveries();"
        } else {
            "DROP TRIGGER refuse_deliveries ON webhook_deliveries;
             DROP FUNCTION refuse_deliveries();"
        };
        self.db.execute_unprepared(sql).await.expect("trigger");
    }

    /// The status of `payment`'s one delivery and how many attempt rows it has, if it has one.
    pub async fn delivery_of_payment(&self, payment: &str) -> Option<(String, i64)> {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT d.status::text, (SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id)
                     FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
                     WHERE e.payment_id = '{payment}'"
                ),
            ))
            .await
            .expect("query")?;
        Some((
            row.try_get_by_index(0).expect("status"),
            row.try_get_by_index(1).expect("attempts"),
        ))
    }

    /// How many attempt rows (`a`) of `payment`'s deliveries have `number` and match `condition`.
    pub async fn attempts_of_payment(&self, payment: &str, number: i32, condition: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
             JOIN events e ON e.id = d.event_id
             WHERE e.payment_id = '{payment}' AND a.attempt_number = {number} AND {condition}"
        ))
        .await
    }

    /// The gateway's `/metrics` text (from its operators' port).
    pub async fn metrics_text(&self) -> String {
        self.metrics_text_of(&self.metrics_base).await
    }

    /// A scrape of the `/metrics` of the listener at `metrics_base` (a second gateway's, a
    /// worker's).
    pub async fn metrics_text_of(&self, metrics_base: &str) -> String {
        self.client
            .get(format!("{metrics_base}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }

    /// `n` events and one due delivery each to `endpoint_id`, written straight to the tables: the
    /// backlog a worker finds after a restart. Their ids are [`stray_id`]s, so they sit in the
    /// default partitions until a test moves them to a day.
    pub async fn due_backlog(&self, endpoint_id: &str, n: u32) {
        self.db
            .execute_unprepared(&format!(
                "WITH ev AS (
                   INSERT INTO events (id, merchant_id, event_type, payment_id, data, request_id, created_at, published_at)
                   SELECT {}, w.merchant_id, 'payment.pending', NULL,
                          jsonb_build_object('n', g), NULL, now(), now()
                   FROM generate_series(1, {n}) g, webhook_endpoints w WHERE w.id = '{endpoint_id}'
                   RETURNING id, merchant_id)
                 INSERT INTO webhook_deliveries (id, merchant_id, event_id, endpoint_id, status, attempts,
                   next_retry_at, locked_until, last_attempt_at, http_status, error_message, delivered_at,
                   created_at, updated_at)
                 SELECT {}, ev.merchant_id, ev.id, '{endpoint_id}',
                        'pending', 0, now(), NULL, NULL, NULL, NULL, NULL, now(), now()
                 FROM ev",
                stray_id("evt", "random()::text || g"),
                stray_id("whd", "random()::text || ev.id"),
            ))
            .await
            .expect("backlog");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql.to_string(),
            ))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("count")
    }
}

/// A counter's value in a `/metrics` text (`name` with its labels, if any); panics if absent.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// A PostgreSQL database of a test's own, dropped with it.
pub struct ScratchDatabase {
    pub name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create() -> ScratchDatabase {
        let name = unique_name();
        let admin = Database::connect(PG_ADMIN_URL)
            .await
            .expect("postgres is running");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create scratch database");
        ScratchDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

/// A scratch database also names its queues and cache keys (a process started on it takes
/// its name as prefix): all go when it is dropped, even when the test failed.
impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        clean_up(self.name.clone(), self.name.clone());
    }
}

/// Deletes a test's queues (prefix), its Redis keys (prefix) and its database, from a thread
/// with its own runtime: `Drop` cannot await.
fn clean_up(prefix: String, database: String) {
    let cleanup = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let EventBus::Amqp(bus) =
                EventBus::amqp(AMQP_URL, entity::bus::QueueNames::new(&prefix))
            {
                let _ = bus.delete_topology().await;
            }
            if let Ok(client) = redis::Client::open(REDIS_URL)
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                }
            }
            if !database.is_empty()
                && let Ok(admin) = Database::connect(PG_ADMIN_URL).await
            {
                let _ = admin
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .await;
            }
        });
    });
    let _ = cleanup.join();
}

fn prometheus_client_registry() -> prometheus_client::registry::Registry {
    prometheus_client::registry::Registry::default()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let mut ended = Vec::new();
        for running in self.stops.drain(..) {
            let _ = running.stop.send(());
            ended.push(running.ended);
        }
        // On a multi-threaded runtime the gateway and worker go on running on the other
        // threads while this one cleans up: a publish after the queues were deleted would
        // declare them again and leave them behind. They are let stop first. (On a
        // current-thread runtime nothing else runs until the runtime drops their tasks.)
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(20),
                        futures_util::future::join_all(ended),
                    )
                    .await;
                })
            });
        }
        clean_up(self.prefix.clone(), self.database_name.clone());
    }
}

/// A process a test started (a `worker` or `gateway` binary): SIGKILLed and reaped when
/// dropped, so a failing test leaves nothing running.
pub struct Process(pub std::process::Child);

impl Process {
    /// Starts `command` with its output discarded.
    pub fn spawn_quiet(mut command: std::process::Command) -> Process {
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the binary");
        Process(child)
    }

    /// SIGKILL, as a crash: nothing runs after it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the process");
        self.0.wait().expect("reap");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SQL expression for an id of `prefix` that no day partition's range holds, whatever the
/// date: its time part starts `ffff` (thousands of years ahead), the rest is `md5(seed)`. A bare
/// md5 id falls in one of the ~16 days a retention test partitions about once in 200,000 rows,
/// so a test counting 2,501 such rows in the default partition failed about once in 80 runs.
pub fn stray_id(prefix: &str, seed_sql: &str) -> String {
    format!("'{prefix}_ffff' || substr(md5({seed_sql}), 5)")
}
