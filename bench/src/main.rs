//! Payrail's load harness. It drives an already running server over HTTP (Payrail's gateway,
//! or svix-server for the side-by-side figures); it is not a test and asserts nothing. The
//! merchant's receiver runs in its own process (`bench receive`, started by the modes that
//! need it), so its CPU is not the driver's and its clock is the wall clock.
//!
//! ```text
//! bench create    --admin-token T [--system payrail|svix] [--base URL] [--concurrency 32]
//!                 [--seconds 10] [--deliver] [--cpu-of NAMES] [--rss-of NAMES]
//! bench sustained --admin-token T [--system payrail|svix] [--base URL] [--rate 400]
//!                 [--seconds 60 | --events N] [--cpu-of NAMES] [--rss-of NAMES]
//! bench drain     --admin-token T [--base URL] [--count 50000] [--workers 1] --worker-bin PATH
//! bench receive   [--bind 127.0.0.1:0]
//! bench compare   FILE...
//! bench fill      --database-url URL [--attempts 10000000] [--days 25]
//! bench retention-cost --database-url URL
//! ```
//! Every run makes a fresh merchant (or svix application), so runs do not see each other's
//! webhooks. Each run ends with a `RESULT {json}` line; `bench compare` tabulates those lines.

mod figures;
mod growth;
mod procs;
mod receiver;
mod systems;

use std::collections::HashMap;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use figures::{Better, Report, percentile, summary};
use receiver::{ReceiverProcess, unix_micros};
use systems::{Harness, SystemKind, Target};

/// Payrail's load harness: drives a running gateway (and worker), or svix-server, and reports
/// throughput, latency percentiles and what the run cost.
#[derive(Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What a run costs, measured from `/proc` over the measured part of the run.
#[derive(clap::Args, Clone)]
struct Cost {
    /// Comma-separated command names whose CPU time the run is charged with (the system's
    /// processes and its infrastructure's, e.g. `gateway,worker,postgres,beam.smp,redis-server`).
    #[arg(long, default_value = "")]
    cpu_of: String,
    /// Comma-separated command names whose resident memory is reported at the end of the run.
    #[arg(long, default_value = "")]
    rss_of: String,
    /// The scenario's name in the `RESULT` line (default: the mode and its rate or concurrency).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Closed loop: creations from a fixed number of connections, each sending its next
    /// request when the last one is answered: accepted/s and latency percentiles; with
    /// `--deliver`, also request start → webhook received.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Subscribe a receiver and measure when each event's webhook arrives.
        #[arg(long)]
        deliver: bool,
        #[command(flatten)]
        cost: Cost,
    },
    /// Creations at a fixed rate with a receiver subscribed: request start → webhook received,
    /// answer → webhook received and the API call alone, deliveries/s, and whether the backlog
    /// stayed flat.
    Sustained {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 400)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// How many events to measure (default: rate × seconds).
        #[arg(long)]
        events: Option<u64>,
        #[command(flatten)]
        cost: Cost,
    },
    /// Payrail only. Builds a backlog with no worker running, then starts `--workers` worker
    /// processes and measures how fast they drain it. The workers inherit this environment.
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
    /// The merchant's receiver: answers 200 at once and records each event's first webhook.
    Receive {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
    },
    /// The side-by-side table (markdown) of the `RESULT` lines in the given files.
    Compare { files: Vec<String> },
    /// Payrail only. Gives the database `--days` past days of history in their day partitions:
    /// `--attempts` attempt rows in all, a fifth as many events and deliveries.
    Fill {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000_000)]
        attempts: u64,
        #[arg(long, default_value_t = 25)]
        days: u32,
    },
    /// Payrail only. Removes the oldest filled day row by row and the next by dropping its
    /// partitions, and prints what each cost (time, WAL).
    RetentionCost {
        #[arg(long)]
        database_url: String,
    },
}

/// When an event's request started and when its answer arrived (µs since the epoch).
#[derive(Clone, Copy)]
struct Sent {
    started: i64,
    answered: i64,
}

type SentLog = Arc<Mutex<HashMap<String, Sent>>>;

/// Creates one event and logs when its request started and was answered.
async fn create_logged(h: &Harness, log: &SentLog) -> anyhow::Result<()> {
    let started = unix_micros();
    let id = h.create_event().await?;
    let answered = unix_micros();
    if let Ok(mut l) = log.lock() {
        l.insert(id, Sent { started, answered });
    }
    Ok(())
}

impl Harness {
    /// `count` creations from `concurrency` tasks; how many failed.
    async fn create_many(self: &Arc<Self>, count: u64, concurrency: u64) -> anyhow::Result<u64> {
        let next = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (h, next, errors) = (self.clone(), next.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    if h.create_event().await.is_err() {
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

/// A receiver subscribed to the run's events, warmed up: `warm` events created and received
/// before anything is measured, so connection pools are open. The receiver's count then.
async fn subscribed_receiver(
    h: &Arc<Harness>,
    warm: u64,
) -> anyhow::Result<(ReceiverProcess, u64)> {
    let rx = ReceiverProcess::start()?;
    h.endpoint(&rx.hook_url()).await?;
    h.create_many(warm, 8).await?;
    wait_for(&rx, warm, Duration::from_secs(30)).await?;
    let base = rx.count().await?;
    Ok((rx, base))
}

/// The CPU and memory figures of a run, and CPU per event.
struct Meter {
    cpu_of: Vec<String>,
    rss_of: Vec<String>,
    cpu_at_start: Vec<f64>,
}

impl Meter {
    fn start(cost: &Cost) -> Meter {
        let cpu_of = procs::names(&cost.cpu_of);
        let cpu_at_start = procs::cpu_seconds(&cpu_of);
        Meter {
            cpu_of,
            rss_of: procs::names(&cost.rss_of),
            cpu_at_start,
        }
    }

    fn finish(&self, events: usize, report: &mut Report) {
        if !self.cpu_of.is_empty() && events > 0 {
            let now = procs::cpu_seconds(&self.cpu_of);
            let mut used = 0.0;
            for ((name, start), end) in self.cpu_of.iter().zip(&self.cpu_at_start).zip(now) {
                used += end - start;
                println!(
                    "CPU of {name}: {:.2}s, {:.3} ms per event",
                    end - start,
                    (end - start) * 1000.0 / events as f64
                );
            }
            let per_event = used * 1000.0 / events as f64;
            println!("CPU of all: {used:.2}s, {per_event:.3} ms per event");
            report.add("CPU per event, ms", per_event, Better::Lower);
        }
        if !self.rss_of.is_empty() {
            let rss = procs::rss_mib(&self.rss_of);
            println!("RSS of {}: {rss:.1} MiB", self.rss_of.join(","));
            report.add("RSS at the end, MiB", rss, Better::Lower);
        }
    }
}

/// Adds p50 and p99 of `ms` (sorted) to the report under `label`.
fn add_percentiles(report: &mut Report, label: &str, ms: &[f64], which: &[f64]) {
    for p in which {
        report.add(
            &format!("{label} p{p}, ms"),
            percentile(ms, *p),
            Better::Lower,
        );
    }
}

/// Each logged request's start → answer, in ms.
fn api_calls(sent: &HashMap<String, Sent>) -> Vec<f64> {
    sent.values()
        .map(|s| (s.answered - s.started) as f64 / 1000.0)
        .collect()
}

/// Start → receipt and answer → receipt of every logged event the receiver got.
fn lags(sent: &HashMap<String, Sent>, receipts: &HashMap<String, i64>) -> (Vec<f64>, Vec<f64>) {
    let (mut from_start, mut from_answer) = (Vec::new(), Vec::new());
    for (id, s) in sent {
        if let Some(at) = receipts.get(id) {
            from_start.push((at - s.started) as f64 / 1000.0);
            from_answer.push((at - s.answered) as f64 / 1000.0);
        }
    }
    (from_start, from_answer)
}

async fn bench_create(
    target: &Target,
    concurrency: u64,
    seconds: u64,
    deliver: bool,
    cost: &Cost,
) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let receiver = if deliver {
        Some(subscribed_receiver(&h, 200).await?)
    } else {
        // Warm up connections and caches.
        h.create_many(concurrency, concurrency).await?;
        None
    };
    let meter = Meter::start(cost);
    let log: SentLog = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (h, log) = (h.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            while Instant::now() < deadline {
                if create_logged(&h, &log).await.is_err() {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = log.lock().map(|l| l.clone()).unwrap_or_default();
    let throughput = sent.len() as f64 / elapsed;
    println!(
        "create: concurrency={concurrency} seconds={seconds} throughput={throughput:.0}/s errors={errors}"
    );
    let name = cost
        .name
        .clone()
        .unwrap_or_else(|| format!("closed loop, {concurrency} connections"));
    let mut report = Report::new(target.system.name(), name);
    report.add("accepted/s", throughput, Better::Higher);
    let api = summary("create latency", api_calls(&sent));
    add_percentiles(&mut report, "API call", &api, &[50.0, 99.0]);
    if let Some((rx, base)) = receiver {
        let received = wait_for(&rx, base + sent.len() as u64, Duration::from_secs(120)).await?;
        println!("received={}", received - base);
        let (from_start, _) = lags(&sent, &rx.receipts().await?);
        let from_start = summary("request start -> webhook received", from_start);
        add_percentiles(&mut report, "start → receipt", &from_start, &[99.0]);
    }
    meter.finish(sent.len(), &mut report);
    report.print();
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

async fn bench_sustained(
    target: &Target,
    rate: u64,
    total: u64,
    cost: &Cost,
) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(target).await?);
    let (rx, base) = subscribed_receiver(&h, 200).await?;
    let meter = Meter::start(cost);

    let rate = rate.max(1);
    let seconds = total.div_ceil(rate);
    let log: SentLog = Arc::default();
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
        let (h, log, created, errors) = (h.clone(), log.clone(), created.clone(), errors.clone());
        tokio::spawn(async move {
            match create_logged(&h, &log).await {
                Ok(()) => created.fetch_add(1, Ordering::Relaxed),
                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
    let sent_in = started.elapsed().as_secs_f64();
    let samples = sampler.await?;
    let received = wait_for(&rx, base + total, Duration::from_secs(60)).await? - base;
    let receipts = rx.receipts().await?;
    let sent = log.lock().map(|l| l.clone()).unwrap_or_default();
    let (from_start, from_answer) = lags(&sent, &receipts);
    let (first, last) = sent
        .keys()
        .filter_map(|id| receipts.get(id))
        .fold((i64::MAX, i64::MIN), |(f, l), at| (f.min(*at), l.max(*at)));
    println!(
        "sustained: target_rate={rate}/s achieved_rate={:.0}/s created={} errors={} received={received}",
        total as f64 / sent_in,
        created.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    println!(
        "deliveries/s over the run: {:.0}",
        from_start.len() as f64 / ((last - first) as f64 / 1e6)
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
    let name = cost.name.clone().unwrap_or_else(|| format!("{rate}/s"));
    let mut report = Report::new(target.system.name(), name);
    let from_start = summary("request start -> webhook received", from_start);
    add_percentiles(&mut report, "start → receipt", &from_start, &[50.0, 99.0]);
    let from_answer = summary("answer -> webhook received", from_answer);
    add_percentiles(&mut report, "answer → receipt", &from_answer, &[99.0]);
    let api = summary("API call", api_calls(&sent));
    add_percentiles(&mut report, "API call", &api, &[50.0, 99.0]);
    meter.finish(sent.len(), &mut report);
    report.print();
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
    anyhow::ensure!(
        target.system == SystemKind::Payrail,
        "drain starts Payrail's workers; it has no svix mode"
    );
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
    let mut report = Report::new(
        target.system.name(),
        format!("drain {count}, {workers} worker(s)"),
    );
    report.add("deliveries/s", got as f64 / seconds, Better::Higher);
    report.print();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create {
            target,
            concurrency,
            seconds,
            deliver,
            cost,
        } => bench_create(&target, concurrency, seconds, deliver, &cost).await,
        Command::Sustained {
            target,
            rate,
            seconds,
            events,
            cost,
        } => bench_sustained(&target, rate, events.unwrap_or(rate * seconds), &cost).await,
        Command::Drain {
            target,
            count,
            workers,
            worker_bin,
            concurrency,
        } => bench_drain(&target, count, workers, &worker_bin, concurrency).await,
        Command::Receive { bind } => receiver::serve(&bind).await,
        Command::Compare { files } => figures::compare(&files),
        Command::Fill {
            database_url,
            attempts,
            days,
        } => growth::fill(&database_url, attempts, days).await,
        Command::RetentionCost { database_url } => growth::retention_cost(&database_url).await,
    }
}
