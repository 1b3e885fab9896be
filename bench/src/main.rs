//! Payrail's load harness. It drives an already running gateway over HTTP; it is not a test and
//! asserts nothing. The merchant's receiver runs in its own process (`bench receive`, started by
//! the modes that need it), so its CPU is not the driver's and its clock is the wall clock.
//!
//! ```text
//! bench create    --admin-token T [--base URL] [--concurrency 32] [--seconds 10]
//! bench sustained --admin-token T [--base URL] [--rate 400] [--seconds 60]
//! bench drain     --admin-token T [--base URL] [--count 50000] [--workers 1] --worker-bin PATH
//! bench receive   [--bind 127.0.0.1:0]
//! ```
//! Every run makes a fresh merchant, so runs do not see each other's webhooks.

mod receiver;

use std::collections::HashMap;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use receiver::{ReceiverProcess, unix_micros};

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
    /// Payment creations at a fixed rate with a worker running: 201 → webhook received
    /// percentiles, deliveries/s, and whether the backlog stayed flat.
    Sustained {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 400)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Builds a backlog with no worker running, then starts `--workers` worker processes and
    /// measures how fast they drain it. The workers inherit this environment.
    Drain {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 50_000)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        workers: u64,
        /// The worker binary to start (`target/release/worker`).
        #[arg(long)]
        worker_bin: String,
        /// Concurrent creations while building the backlog.
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
    },
    /// The merchant's receiver: answers 200 at once and records each payment's first webhook.
    Receive {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
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
        // A load test must measure the gateway, not meet the free plan's monthly limits or
        // the default per-key rate limit (100/s).
        let id = r["id"].as_str().unwrap_or_default();
        client
            .patch(format!("{base}/v1/admin/merchants/{id}"))
            .bearer_auth(admin)
            .json(&json!({"plan": "custom", "usage_limits": {},
                          "rate_limit_per_second": 10000, "rate_limit_burst": 10000}))
            .send()
            .await?
            .error_for_status()?;
        Ok(Harness { base, client, key })
    }

    /// Creates a payment; its id.
    async fn create_payment(&self) -> anyhow::Result<String> {
        let body: Value = self
            .client
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"amount": 2000, "currency": "usd", "provider": "simulated"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no id in {body}"))
    }

    async fn endpoint(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/v1/webhook_endpoints", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"url": url, "enabled_events": ["payment.pending"]}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `count` creations from `concurrency` tasks; how many failed.
    async fn create_many(self: &Arc<Self>, count: u64, concurrency: u64) -> anyhow::Result<u64> {
        let next = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (h, next, errors) = (self.clone(), next.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    if h.create_payment().await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        Ok(errors.load(Ordering::Relaxed))
    }
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
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
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

/// Waits until the receiver has `count` webhooks or `limit` passes; the count it reached.
async fn wait_for(rx: &ReceiverProcess, count: u64, limit: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let got = rx.count().await?;
        if got >= count || Instant::now() >= deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bench_sustained(target: &Target, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let rx = ReceiverProcess::start()?;
    h.endpoint(&rx.hook_url()).await?;
    // Warm-up: open the gateway's and the worker's connection pools before measuring.
    let warm = 200;
    h.create_many(warm, 8).await?;
    wait_for(&rx, warm, Duration::from_secs(30)).await?;
    let base = rx.count().await?;

    let rate = rate.max(1);
    let total = rate * seconds;
    let answered: Arc<Mutex<HashMap<String, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    let created = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // The backlog (created and not yet received) once a second, by a task of its own.
    let sampler = {
        let (rx_url, created) = (rx.base.clone(), created.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let got = receiver::count_at(&rx_url).await.unwrap_or(0);
                let backlog = created.load(Ordering::Relaxed) as i64 - (got - base) as i64;
                samples.push(backlog);
                if samples.len() as u64 > seconds {
                    return samples;
                }
            }
        })
    };
    let started = Instant::now();
    for _ in 0..total {
        ticker.tick().await;
        let (h, answered, created, errors) =
            (h.clone(), answered.clone(), created.clone(), errors.clone());
        tokio::spawn(async move {
            match h.create_payment().await {
                Ok(id) => {
                    let at = unix_micros();
                    if let Ok(mut a) = answered.lock() {
                        a.insert(id, at);
                    }
                    created.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let sent_in = started.elapsed().as_secs_f64();
    let samples = sampler.await?;
    let received = wait_for(&rx, base + total, Duration::from_secs(60)).await? - base;
    let receipts = rx.receipts().await?;
    let answered = answered.lock().map(|a| a.clone()).unwrap_or_default();
    let mut lags = Vec::with_capacity(answered.len());
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (id, at201) in &answered {
        if let Some(at) = receipts.get(id) {
            lags.push((at - at201) as f64 / 1000.0);
            first = first.min(*at);
            last = last.max(*at);
        }
    }
    println!(
        "sustained: target_rate={rate}/s achieved_rate={:.0}/s created={} errors={} received={received}",
        total as f64 / sent_in,
        created.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    println!(
        "deliveries/s over the run: {:.0}",
        lags.len() as f64 / ((last - first) as f64 / 1e6)
    );
    let half = samples.len() / 2;
    let early = samples[..half].iter().max().copied().unwrap_or(0);
    let late = samples[half..].iter().max().copied().unwrap_or(0);
    // Flat: the second half never holds more than the first half's worst plus a tenth of a
    // second's worth of creations.
    let flat = late <= early + (rate as i64) / 10;
    println!(
        "backlog once a second: {samples:?}\nbacklog flat: {} (max first half {early}, second half {late})",
        if flat { "yes" } else { "NO" }
    );
    summary("201 -> webhook received", lags);
    Ok(())
}

fn start_workers(bin: &str, n: u64) -> anyhow::Result<Vec<Child>> {
    (0..n)
        .map(|_| {
            Process::new(bin)
                .env("PAYRAIL_WORKER_BIND", "127.0.0.1:0")
                // A benchmark's webhooks stay on this machine, whatever the caller's env says.
                .env("PAYRAIL_WEBHOOK_TARGETS", "loopback")
                .env_remove("PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS")
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| anyhow::anyhow!("start {bin}: {e}"))
        })
        .collect()
}

async fn bench_drain(
    target: &Target,
    count: u64,
    workers: u64,
    worker_bin: &str,
    concurrency: u64,
) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let rx = ReceiverProcess::start()?;
    h.endpoint(&rx.hook_url()).await?;
    let t = Instant::now();
    let errors = h.create_many(count, concurrency).await?;
    println!(
        "backlog: {count} payments created in {:.1}s ({errors} errors); no worker running",
        t.elapsed().as_secs_f64()
    );
    // Let the gateway's relay publish the last events to the broker.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expected = count - errors;
    let mut children = start_workers(worker_bin, workers)?;
    let started = unix_micros();
    let got = wait_for(&rx, expected, Duration::from_secs(300)).await;
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let got = got?;
    let receipts = rx.receipts().await?;
    let last = receipts.values().max().copied().unwrap_or(started);
    let seconds = (last - started) as f64 / 1e6;
    println!(
        "drain: workers={workers} received={got}/{expected} in {seconds:.2}s from the workers' start => {:.0} deliveries/s",
        got as f64 / seconds
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
        Command::Sustained {
            target,
            rate,
            seconds,
        } => bench_sustained(&target, rate, seconds).await,
        Command::Drain {
            target,
            count,
            workers,
            worker_bin,
            concurrency,
        } => bench_drain(&target, count, workers, &worker_bin, concurrency).await,
        Command::Receive { bind } => receiver::serve(&bind).await,
    }
}
