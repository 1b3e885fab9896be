//! Payrail's load harness. It drives an already running gateway (and worker) over HTTP and
//! runs its own merchant receiver on loopback; it is not a test and asserts nothing.
//!
//! ```text
//! bench create     --base URL --admin-token T [--concurrency 32] [--seconds 10]
//! bench latency    --base URL --admin-token T [--rate 500] [--seconds 10]
//! bench deliveries --base URL --admin-token T [--count 20000] [--concurrency 32]
//! ```
//! Every run makes a fresh merchant, so runs do not see each other's webhooks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler};
use serde_json::{Value, json};

/// Payrail's load harness: drives a running gateway (and worker) and reports throughput and
/// latency percentiles. Every run makes a fresh merchant.
#[derive(Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which gateway to drive.
#[derive(clap::Args, Clone)]
struct Target {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The gateway's admin token (PAYRAIL_ADMIN_TOKEN), to create the run's merchant.
    #[arg(long)]
    admin_token: String,
}

#[derive(Subcommand)]
enum Command {
    /// Payment creations at a fixed concurrency: creations/s and latency percentiles.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Status change → webhook received, at a fixed rate of changes per second.
    Latency {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Builds a backlog of deliveries, then measures how fast the worker drains it.
    Deliveries {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 20000)]
        count: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

struct Harness {
    base: String,
    client: reqwest::Client,
    key: String,
}

impl Harness {
    async fn new(target: &Target) -> anyhow::Result<Harness> {
        let base = target.base.clone();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?;
        let admin = &target.admin_token;
        let r: Value = client
            .post(format!("{base}/v1/admin/merchants"))
            .bearer_auth(admin)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = r["api_key"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no api_key in {r}"))?
            .to_string();
        Ok(Harness { base, client, key })
    }

    async fn create_payment(&self) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"amount": 2000, "currency": "usd", "provider": "simulated"}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn endpoint(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/v1/webhook_endpoints", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"url": url, "enabled_events": ["*"]}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// A merchant receiver: answers 200 at once and records when each event arrived relative to
/// the event's `created_at` (the status change), in milliseconds.
#[derive(Default)]
struct Recorder {
    count: AtomicU64,
    lags_ms: Mutex<Vec<f64>>,
    first_last: Mutex<Option<(Instant, Instant)>>,
}

#[handler]
async fn receive(body: poem::Body, rec: Data<&Arc<Recorder>>) -> &'static str {
    let now = chrono::Utc::now();
    let t = Instant::now();
    if let Ok(bytes) = body.into_vec().await
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        && let Some(created) = v["created_at"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        let lag = (now - created.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        if let Ok(mut l) = rec.lags_ms.lock() {
            l.push(lag);
        }
    }
    rec.count.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut fl) = rec.first_last.lock() {
        *fl = Some(fl.map_or((t, t), |(f, _)| (f, t)));
    }
    "ok"
}

async fn start_receiver() -> anyhow::Result<(String, Arc<Recorder>)> {
    let rec = Arc::new(Recorder::default());
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .map(|a| a.port())
        .unwrap_or(0);
    tokio::spawn(
        Server::new_with_acceptor(acceptor)
            .run(Route::new().at("/hook", receive).data(rec.clone())),
    );
    Ok((format!("http://127.0.0.1:{port}/hook"), rec))
}

async fn bench_create(target: &Target, concurrency: u64, seconds: u64) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    // Warm up connections and caches.
    for _ in 0..concurrency {
        h.create_payment().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match h.create_payment().await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "create: concurrency={concurrency} seconds={seconds} throughput={:.0}/s errors={errors}",
        all.len() as f64 / elapsed
    );
    summary("create latency", all);
    Ok(())
}

async fn bench_latency(target: &Target, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let (url, rec) = start_receiver().await?;
    h.endpoint(&url).await?;
    let rate = rate.max(1);
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for _ in 0..total {
        ticker.tick().await;
        let h = h.clone();
        tokio::spawn(async move {
            let _ = h.create_payment().await;
        });
    }
    let sent_in = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rec.count.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "latency: target_rate={rate}/s achieved_rate={:.0}/s events={total} received={}",
        total as f64 / sent_in,
        rec.count.load(Ordering::Relaxed)
    );
    let lags = rec.lags_ms.lock().map(|l| l.clone()).unwrap_or_default();
    summary("status change -> webhook received", lags);
    Ok(())
}

async fn bench_deliveries(target: &Target, count: u64, concurrency: u64) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let (url, rec) = start_receiver().await?;
    h.endpoint(&url).await?;

    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (h, next) = (h.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let _ = h.create_payment().await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while rec.count.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = rec.count.load(Ordering::Relaxed);
    let window = rec
        .first_last
        .lock()
        .ok()
        .and_then(|fl| *fl)
        .map(|(f, l)| (l - f).as_secs_f64())
        .unwrap_or(f64::NAN);
    println!(
        "deliveries: received={received}/{count} in {window:.2}s => {:.0} deliveries/s",
        received as f64 / window
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create {
            target,
            concurrency,
            seconds,
        } => bench_create(&target, concurrency, seconds).await,
        Command::Latency {
            target,
            rate,
            seconds,
        } => bench_latency(&target, rate, seconds).await,
        Command::Deliveries {
            target,
            count,
            concurrency,
        } => bench_deliveries(&target, count, concurrency).await,
    }
}
