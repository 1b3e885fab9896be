//! The real `gateway` and `worker` binaries on a scratch database, the broker and the
//! database each behind a proxy the test can cut, and what the fault and fleet suites ask of
//! them afterwards: every payment accepted once, every event delivered, every delivery row
//! final, few duplicates, nothing stranded past a fault.

#![allow(dead_code)] // Each suite uses its own part of it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use payrail_tests::{Process, Receiver, ScratchDatabase, TcpProxy};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "faults-admin-token-3f9c2a71be5d4e08";

/// A knob from the environment, for runs at the scale.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binaries these suites run: the worker's own, and the gateway built beside it (a
/// workspace test run builds both).
fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_worker")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the workspace's tests (cargo nextest run --workspace), or cargo build -p gateway first",
        path.display()
    );
    path
}

/// Everything the binaries share: the scratch database and the broker, both through proxies
/// the test can cut, and the test's queue and key prefix.
pub struct Stack {
    pub name: String,
    pub db_proxy: TcpProxy,
    pub amqp_proxy: TcpProxy,
    /// What the binaries get as `AMQP_URL`: the proxy, or a cluster's nodes.
    amqp_url: String,
}

impl Stack {
    /// Proxies in front of PostgreSQL and RabbitMQ for `scratch`, and its schema migrated by
    /// the gateway binary.
    pub async fn on(scratch: &ScratchDatabase) -> Stack {
        let amqp_proxy = TcpProxy::start("127.0.0.1:5672", true).await;
        let stack = Stack {
            name: scratch.name.clone(),
            db_proxy: TcpProxy::start("127.0.0.1:5432", true).await,
            amqp_url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp_proxy.port),
            amqp_proxy,
        };
        let status = stack
            .command("gateway")
            .arg("migrate")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run gateway migrate");
        assert!(status.success(), "gateway migrate: {status}");
        stack
    }

    /// The binaries talk to this broker instead (one URL, or a cluster's, comma-separated);
    /// `amqp_proxy` then cuts nothing.
    pub fn with_broker(mut self, amqp_url: &str) -> Stack {
        self.amqp_url = amqp_url.to_string();
        self
    }

    fn command(&self, binary_name: &str) -> std::process::Command {
        let mut c = std::process::Command::new(binary(binary_name));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                format!(
                    "postgres://postgres@127.0.0.1:{}/{}",
                    self.db_proxy.port, self.name
                ),
            )
            .env("AMQP_URL", &self.amqp_url)
            .env("REDIS_URL", payrail_tests::REDIS_URL)
            .env("PAYRAIL_AMQP_PREFIX", &self.name)
            .env("PAYRAIL_REDIS_PREFIX", &self.name)
            .env("PAYRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env(
                "PAYRAIL_DASHBOARD_SECRET",
                "faults-dashboard-secret-of-some-length",
            )
            .env("PAYRAIL_WEBHOOK_TARGETS", "loopback")
            .env(
                "RUST_LOG",
                std::env::var("PAYRAIL_SUITE_RUST_LOG").unwrap_or("error".into()),
            );
        c
    }

    /// Starts a binary with its output discarded, or, when `PAYRAIL_SUITE_LOGS` names a
    /// directory, appended to `<directory>/<name>.log` (with `PAYRAIL_SUITE_RUST_LOG`, to see
    /// what a binary did in a run at scale that failed).
    fn spawn(&self, mut command: std::process::Command, name: &str) -> Process {
        let Ok(directory) = std::env::var("PAYRAIL_SUITE_LOGS") else {
            return Process::spawn_quiet(command);
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(directory).join(format!("{name}.log")))
            .expect("open the binary's log");
        let child = command
            .stdout(log.try_clone().expect("the log, twice"))
            .stderr(log)
            .spawn()
            .expect("start the binary");
        Process(child)
    }

    /// A gateway on `port`, its `/metrics` on `metrics_port`.
    pub fn start_gateway(&self, port: u16, metrics_port: u16) -> Process {
        let mut c = self.command("gateway");
        c.env("PAYRAIL_BIND", format!("127.0.0.1:{port}"))
            .env("PAYRAIL_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("PAYRAIL_RELAY_INTERVAL", "500ms")
            // A killed gateway's unpublished events are taken over this long after commit.
            .env("PAYRAIL_RELAY_WRITER_GRACE", "2s");
        self.spawn(c, &format!("gateway-{port}"))
    }

    /// A worker, its probes and `/metrics` on `probes_port`.
    pub fn start_worker(&self, probes_port: u16) -> Process {
        let mut c = self.command("worker");
        c.env("PAYRAIL_WORKER_BIND", format!("127.0.0.1:{probes_port}"))
            .env("PAYRAIL_WEBHOOK_LEASE", "2s")
            .env("PAYRAIL_WEBHOOK_BACKOFF_BASE", "200ms")
            .env("PAYRAIL_WEBHOOK_BACKOFF_MAX", "1s")
            .env("PAYRAIL_WEBHOOK_MAX_ATTEMPTS", "30");
        self.spawn(c, "worker")
    }
}

/// How hard a suite pushes: payments a second, time between faults, and the longest anything
/// may wait past a fault; read from `{PREFIX}_RATE`, `_EVERY` (seconds, at least 6) and
/// `_STRANDED` (seconds), for runs at the scale.
pub struct Knobs {
    pub rate: u64,
    pub every: Duration,
    pub most_wait: Duration,
}

impl Knobs {
    pub fn read(prefix: &str, rate: u64, most_wait_seconds: u64) -> Knobs {
        Knobs {
            rate: knob(&format!("{prefix}_RATE"), rate).max(1),
            every: Duration::from_secs(knob(&format!("{prefix}_EVERY"), 10).max(6)),
            most_wait: Duration::from_secs(knob(&format!("{prefix}_STRANDED"), most_wait_seconds)),
        }
    }
}

/// What every suite sets up once its gateways run: a client, the merchant's server (a
/// receiver answering 200), and a merchant with an endpoint there.
pub struct Shop {
    pub client: reqwest::Client,
    pub receiver: Receiver,
    pub merchant_id: String,
    pub key: String,
}

impl Shop {
    /// Waits for every gateway of `bases`, then makes the merchant through the first.
    pub async fn open(bases: &[String]) -> Shop {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        for base in bases {
            payrail_tests::until_ready(&client, base).await;
        }
        let receiver = Receiver::start(payrail_tests::Behavior::Statuses(vec![], 200)).await;
        let (merchant_id, key) = merchant_with_endpoint(&client, &bases[0], &receiver).await;
        Shop {
            client,
            receiver,
            merchant_id,
            key,
        }
    }
}

/// A merchant with no plan limits and a rate limit above any test's, and an endpoint for every
/// event at `receiver`; its API key.
async fn merchant_with_endpoint(
    client: &reqwest::Client,
    base: &str,
    receiver: &Receiver,
) -> (String, String) {
    let merchant: Value = client
        .post(format!("{base}/v1/admin/merchants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "faults"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("create the merchant")
        .json()
        .await
        .expect("merchant json");
    let key = merchant["api_key"].as_str().expect("api_key").to_string();
    let merchant_id = merchant["id"].as_str().expect("id").to_string();
    client
        .patch(format!("{base}/v1/admin/merchants/{merchant_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"plan": "custom", "usage_limits": {},
                      "rate_limit_per_second": 10000, "rate_limit_burst": 10000}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("lift the merchant's limits");
    client
        .post(format!("{base}/v1/webhook_endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url, "enabled_events": ["*"]}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("create the endpoint");
    (merchant_id, key)
}

/// One payment as the client saw it.
pub struct Asked {
    pub started: Instant,
    pub accepted: Option<(Instant, String)>,
    /// Each try that did not succeed: when it ended, after `started`, and what it got (a
    /// status, or the client's error), so a payment held past a fault says how.
    pub failed_tries: Vec<(Duration, String)>,
}

/// Creates one payment, retrying with the same key on anything but a success (a gateway
/// down, a 503, a 409 for a key still in use) for up to two minutes. Each try goes to the next
/// of `bases`, from `first`: as a load balancer would, a dead gateway's retry lands on another.
pub async fn create_payment(
    client: &reqwest::Client,
    bases: &[String],
    first: usize,
    key: &str,
) -> Asked {
    let started = Instant::now();
    let idempotency_key = uuid::Uuid::new_v4().to_string();
    let mut tries = first;
    let mut failed_tries = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        let base = &bases[tries % bases.len()];
        tries += 1;
        let answer = client
            .post(format!("{base}/v1/payments"))
            .bearer_auth(key)
            .header("Idempotency-Key", &idempotency_key)
            .json(&json!({"amount": 1500, "currency": "usd", "provider": "simulated"}))
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(body) => match body["id"].as_str() {
                    Some(id) => {
                        return Asked {
                            started,
                            accepted: Some((Instant::now(), id.to_string())),
                            failed_tries,
                        };
                    }
                    None => format!("a success without an id: {body}"),
                },
                Err(e) => format!("a success's body: {e}"),
            },
            Ok(r) => {
                let status = r.status();
                let code = r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|b| b["error"]["code"].clone());
                format!("{} {}", status.as_u16(), code.unwrap_or_default())
            }
            Err(e) if e.is_timeout() => "timed out".to_string(),
            Err(e) if e.is_connect() => "could not connect".to_string(),
            Err(e) => format!("{e:?}"),
        };
        failed_tries.push((started.elapsed(), failure));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Asked {
        started,
        accepted: None,
        failed_tries,
    }
}

/// A steady stream of payments: `rate` a second, each in its own task (so a stalled request
/// never slows the rate), the n-th starting at gateway n of `bases`.
pub struct Load {
    /// The same instant on both clocks, taken as the load began.
    pub anchor: (Instant, SystemTime),
    asked: Arc<Mutex<Vec<Asked>>>,
    stop: tokio::sync::watch::Sender<bool>,
    running: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(client: &reqwest::Client, bases: &[String], key: &str, rate: u64) -> Load {
        let anchor = (Instant::now(), SystemTime::now());
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (client, bases, key, all) = (
            client.clone(),
            bases.to_vec(),
            key.to_string(),
            asked.clone(),
        );
        let running = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
            let mut tasks = Vec::new();
            for n in 0usize.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (client, bases, key, all) =
                    (client.clone(), bases.clone(), key.clone(), all.clone());
                tasks.push(tokio::spawn(async move {
                    let result = create_payment(&client, &bases, n, &key).await;
                    all.lock().expect("lock").push(result);
                }));
            }
            futures_util::future::join_all(tasks).await;
        });
        Load {
            anchor,
            asked,
            stop,
            running,
        }
    }

    /// Stops starting payments, waits for those under way, and says how each went.
    pub async fn stop(self) -> Vec<Asked> {
        let _ = self.stop.send(true);
        self.running.await.expect("the load");
        std::mem::take(&mut *self.asked.lock().expect("lock"))
    }
}

pub async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    rows(db, sql)
        .await
        .first()
        .map(|r| r.try_get_by_index::<i64>(0).expect("a count"))
        .unwrap_or(0)
}

/// A fault: its name and when it held things up.
pub type Fault = (&'static str, Instant, Instant);

/// How long `done` came after the later of `start` and the end of the last fault that began
/// before `done`, and that fault's name ("none" when none began before).
fn stranded(start: Instant, done: Instant, faults: &[Fault]) -> (Duration, &'static str) {
    let (name, held_until) = faults.iter().filter(|(_, began, _)| *began <= done).fold(
        ("none", start),
        |(name, until), (n, _, ended)| {
            if *ended > until {
                (*n, *ended)
            } else {
                (name, until)
            }
        },
    );
    (done.saturating_duration_since(held_until), name)
}

/// The longest wait past each fault.
fn worst_by_fault(
    waits: impl Iterator<Item = (Duration, &'static str)>,
) -> Vec<(&'static str, Duration)> {
    let mut worst: HashMap<&'static str, Duration> = HashMap::new();
    for (wait, name) in waits {
        let w = worst.entry(name).or_default();
        *w = (*w).max(wait);
    }
    let mut worst: Vec<_> = worst.into_iter().collect();
    worst.sort();
    worst
}

/// Waits until there is a delivery row for each event and every one is `succeeded`; the
/// number of events.
pub async fn settled(db: &DatabaseConnection, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let open = count(
            db,
            "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'",
        )
        .await;
        let rows = count(db, "SELECT count(*) FROM webhook_deliveries").await;
        let events = count(db, "SELECT count(*) FROM events").await;
        if open == 0 && rows == events {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{open} delivery rows not succeeded, {rows} rows for {events} events"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Stops `load` and asserts what every run under faults must show: each payment asked for accepted exactly
/// once and none the client did not get; every event delivered (a 2xx reached the receiver)
/// and every delivery row `succeeded`, within two minutes; every request the receiver saw is
/// an attempt row (a send that died with its worker counts as `unknown`); duplicates at most
/// 0.1 % of the events; and nothing accepted or received more than `most_wait` after the end
/// of the fault that held it. Returns the number of events.
pub async fn judge(
    db: &DatabaseConnection,
    shop: &Shop,
    label: &str,
    knobs: &Knobs,
    load: Load,
    faults: &[Fault],
) -> i64 {
    let (anchor_instant, anchor_time) = load.anchor;
    let asked = &load.stop().await;
    let receiver = &shop.receiver;
    let refused = asked.iter().filter(|a| a.accepted.is_none()).count();
    assert_eq!(
        refused, 0,
        "payments never accepted in two minutes of retries"
    );
    let payments: HashSet<&str> = asked
        .iter()
        .filter_map(|a| a.accepted.as_ref().map(|(_, id)| id.as_str()))
        .collect();
    assert_eq!(
        payments.len(),
        asked.len(),
        "one payment per Idempotency-Key"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM payments").await,
        asked.len() as i64,
        "no payment created that the client did not get"
    );
    let payment_waits = worst_by_fault(asked.iter().filter_map(|a| {
        a.accepted
            .as_ref()
            .map(|(at, _)| stranded(a.started, *at, faults))
    }));
    // The payments held too long, each with the tries that failed, so a run that breaks the
    // bound says whether the gateway held a request or refused it again and again.
    let since = |at: Instant| at.saturating_duration_since(anchor_instant).as_secs_f64();
    let held: Vec<(u64, String)> = asked
        .iter()
        .filter_map(|a| {
            let (at, id) = a.accepted.as_ref()?;
            let (wait, fault) = stranded(a.started, *at, faults);
            (wait > knobs.most_wait).then(|| {
                let told = format!(
                    "  {id}: asked at {:.3}, accepted at {:.3}, {wait:.1?} past {fault}; failed tries (s after asking, outcome): {:.1?}",
                    since(a.started),
                    since(*at),
                    a.failed_tries
                );
                (since(*at) as u64, told)
            })
        })
        .collect();
    if !held.is_empty() {
        let mut by_second: std::collections::BTreeMap<u64, usize> = Default::default();
        for (second, _) in &held {
            *by_second.entry(*second).or_default() += 1;
        }
        println!("{label}: those payments by the second they were accepted in: {by_second:?}");
        println!(
            "{label}: {} payments accepted more than {:?} past their fault (faults {}), the first 10:\n{}",
            held.len(),
            knobs.most_wait,
            faults_told(faults, anchor_instant),
            held.iter()
                .take(10)
                .map(|(_, told)| told.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Every event delivered, every row final.
    let events = settled(db, Duration::from_secs(120)).await;

    let received = receiver.received();
    let mut first_ok: HashMap<String, Instant> = HashMap::new();
    let mut oks = 0usize;
    for r in received
        .iter()
        .filter(|r| r.answered.is_some_and(|s| s < 300))
    {
        oks += 1;
        let id = r.header("webhook-id").unwrap_or_default().to_string();
        first_ok
            .entry(id)
            .and_modify(|t| *t = (*t).min(r.at))
            .or_insert(r.at);
    }
    let created: Vec<(String, i64)> = rows(
        db,
        "SELECT id, (extract(epoch from created_at) * 1000000)::bigint FROM events",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get_by_index::<String>(0).expect("id"),
            r.try_get_by_index::<i64>(1).expect("micros"),
        )
    })
    .collect();
    let lost: Vec<&str> = created
        .iter()
        .filter(|(id, _)| !first_ok.contains_key(id))
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "events never received: {:?}",
        &lost[..lost.len().min(5)]
    );
    let duplicates = oks - first_ok.len();
    let webhook_waits = worst_by_fault(created.iter().filter_map(|(id, micros)| {
        let created = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(*micros).ok()?);
        let created = match created.duration_since(anchor_time) {
            Ok(after) => anchor_instant + after,
            Err(before) => anchor_instant.checked_sub(before.duration())?,
        };
        Some(stranded(created, *first_ok.get(id)?, faults))
    }));

    // Attempts match sends: every request seen is an attempt row; the sends whose outcome died
    // with a worker are the `unknown` ones (the receiver may or may not have seen them).
    let with_status = count(
        db,
        "SELECT count(*) FROM webhook_attempts WHERE http_status IS NOT NULL",
    )
    .await;
    let unknown = count(
        db,
        "SELECT count(*) FROM webhook_attempts WHERE error_class = 'unknown'",
    )
    .await;
    let answered = received.iter().filter(|r| r.answered.is_some()).count() as i64;
    let seen = received.len() as i64;
    println!(
        "{}: {} payments at {}/s, {events} events, {seen} requests ({oks} answered 2xx), \
         {duplicates} duplicates, {unknown} unknown attempts, {with_status} attempts with a status; \
         longest wait past each fault: payments {payment_waits:?}, webhooks {webhook_waits:?}",
        label,
        asked.len(),
        knobs.rate,
    );
    let matched = with_status <= answered && seen <= with_status + unknown;
    let unmatched = if matched {
        String::new()
    } else {
        stories(
            db,
            &received,
            &created,
            (anchor_instant, anchor_time),
            |seen, _, counted| seen > counted,
        )
        .await
    };
    assert!(
        matched,
        "attempts with a status {with_status}, unknown {unknown}; requests seen {seen}, answered {answered}\n\
         faults (seconds after the anchor): {}\n{unmatched}",
        faults_told(faults, anchor_instant)
    );
    // Told whenever there are any, so a run within the limit still shows what made them.
    if duplicates > 0 {
        let twice = stories(
            db,
            &received,
            &created,
            (anchor_instant, anchor_time),
            |_, oks, _| oks > 1,
        )
        .await;
        println!(
            "{label}: events received twice (seconds after the anchor; faults {}):\n{twice}",
            faults_told(faults, anchor_instant)
        );
    }
    assert!(
        (duplicates as i64) * 1000 <= events,
        "{duplicates} duplicates for {events} events (more than 0.1 %)"
    );
    for (what, waits) in [
        ("a payment was accepted", &payment_waits),
        ("a webhook arrived", &webhook_waits),
    ] {
        for (fault, wait) in waits {
            assert!(
                *wait <= knobs.most_wait,
                "{what} {wait:?} after the end of: {fault}"
            );
        }
    }
    events
}

/// Each fault's span in seconds after the anchor.
fn faults_told(faults: &[Fault], anchor_instant: Instant) -> String {
    let since = |at: &Instant| at.saturating_duration_since(anchor_instant).as_secs_f64();
    faults
        .iter()
        .map(|(name, began, ended)| format!("{name} {:.3}..{:.3}", since(began), since(ended)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What happened to some events, each with its creation, every request's time and answer,
/// and every attempt row (times in seconds after the anchor), so a failed run says which send
/// went unrecorded, or went twice, and when. `pick(requests, answered 2xx, attempts with a
/// status or of unknown outcome)` chooses the events; five at most are told. `created` is
/// each event's id and creation (microseconds since the epoch), as [`judge`] read them.
async fn stories(
    db: &DatabaseConnection,
    received: &[payrail_tests::receiver::Received],
    created: &[(String, i64)],
    (anchor_instant, anchor_time): (Instant, SystemTime),
    pick: impl Fn(usize, usize, usize) -> bool,
) -> String {
    let since = |at: Instant| at.saturating_duration_since(anchor_instant).as_secs_f64();
    let mut requests: HashMap<String, (Vec<String>, usize)> = HashMap::new();
    for r in received {
        let entry = requests
            .entry(r.header("webhook-id").unwrap_or_default().to_string())
            .or_default();
        entry
            .0
            .push(format!("{:.3}s answered {:?}", since(r.at), r.answered));
        entry.1 += usize::from(r.answered.is_some_and(|s| s < 300));
    }
    let anchor_micros = anchor_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let at = |micros: i64| (micros - anchor_micros) as f64 / 1e6;
    let mut attempts: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    for row in rows(
        db,
        "SELECT d.event_id, a.attempt_number, a.http_status, a.error_class, \
         (extract(epoch from a.created_at) * 1000000)::bigint, d.status, \
         (extract(epoch from d.created_at) * 1000000)::bigint, d.attempts \
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
         ORDER BY a.created_at",
    )
    .await
    {
        let event: String = row.try_get_by_index(0).expect("event_id");
        let number: i32 = row.try_get_by_index(1).expect("attempt_number");
        let status: Option<i32> = row.try_get_by_index(2).expect("http_status");
        let class: Option<String> = row.try_get_by_index(3).expect("error_class");
        let micros: i64 = row.try_get_by_index(4).expect("created_at");
        let delivery: String = row.try_get_by_index(5).expect("status");
        let delivery_made: i64 = row.try_get_by_index(6).expect("delivery created_at");
        let delivery_attempts: i32 = row.try_get_by_index(7).expect("attempts");
        let counted = status.is_some() || class.as_deref() == Some("unknown");
        let entry = attempts.entry(event).or_default();
        entry.0 += usize::from(counted);
        entry.1.push(format!(
            "#{number} at {:.3}s status {status:?} class {class:?} (delivery made at {:.3}s, \
             {delivery} after {delivery_attempts})",
            at(micros),
            at(delivery_made)
        ));
    }
    let mut out = Vec::new();
    for (event, (seen, oks)) in &requests {
        let (counted, rows_told) = attempts.get(event).cloned().unwrap_or_default();
        if pick(seen.len(), *oks, counted) && out.len() < 5 {
            let made_at = created
                .iter()
                .find(|(id, _)| id == event)
                .map(|(_, micros)| format!("{:.3}s", at(*micros)))
                .unwrap_or_else(|| "?".to_string());
            out.push(format!(
                "event {event} created at {made_at}: requests [{}]; attempts [{}]",
                seen.join("; "),
                rows_told.join("; ")
            ));
        }
    }
    out.join("\n")
}
