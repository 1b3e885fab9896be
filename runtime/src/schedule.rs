//! Running a job on a schedule until a stop signal, for every background job of both processes
//! (the worker's sweep, the gateway's poller and retention).
//!
//! A period is served by a plain tokio interval, so any period the settings accept works, down
//! to milliseconds (tokio-cron-scheduler ticks every 500 ms and silently never runs shorter
//! periods). Calendar schedules ("at the top of every hour") go to tokio-cron-scheduler. A run
//! never overlaps the previous one: the next tick waits until the current run returns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_cron_scheduler::{Job, JobScheduler};

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every period, the first run one period after start.
    Every(Duration),
    /// A six-field cron expression (seconds first), evaluated in UTC.
    Calendar(&'static str),
}

/// Runs `job` on `schedule` until `stop` turns true (or its sender is dropped); a run in
/// progress is allowed to finish.
pub async fn run<F, Fut>(
    name: &'static str,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
    job: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match schedule {
        Schedule::Every(period) => {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => job().await,
                    _ = stopped(&mut stop) => break,
                }
            }
        }
        Schedule::Calendar(expression) => {
            let mut scheduler = JobScheduler::new().await?;
            let job = Arc::new(job);
            let running = Arc::new(AtomicBool::new(false));
            scheduler
                .add(Job::new_async(expression, move |_, _| {
                    let job = job.clone();
                    let running = running.clone();
                    Box::pin(async move {
                        // tokio-cron-scheduler starts a run on every tick, even while the last one
                        // is still going.
                        if running.swap(true, Ordering::SeqCst) {
                            tracing::warn!(job = name, "previous run still going; tick skipped");
                            return;
                        }
                        job().await;
                        running.store(false, Ordering::SeqCst);
                    })
                })?)
                .await?;
            scheduler.start().await?;
            stopped(&mut stop).await;
            let _ = scheduler.shutdown().await;
        }
    }
    Ok(())
}

/// Checks a six-field cron expression (seconds first) as [`Schedule::Calendar`] will read it,
/// so a bad setting stops the process at start-up rather than silently never running.
pub fn valid_calendar(expression: &str) -> Result<(), String> {
    Job::new_async(expression, |_, _| Box::pin(async {}))
        .map(drop)
        .map_err(|e| {
            format!("{expression:?} is not a six-field cron expression (seconds first): {e}")
        })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn sub_second_periods_run_and_stop_ends_the_loop() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        let counter = runs.clone();
        let task = tokio::spawn(run(
            "test",
            Schedule::Every(Duration::from_millis(20)),
            rx,
            move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        let n = runs.load(Ordering::SeqCst);
        assert!(n >= 5, "a 20 ms schedule ran only {n} times in 300 ms");
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after, "runs after stop");
    }

    #[tokio::test]
    async fn calendar_schedules_are_parsed_and_stop() {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(
            "test",
            Schedule::Calendar("0 0 * * * *"),
            rx,
            || async {},
        ));
        tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        let (_tx, rx) = watch::channel(false);
        assert!(
            run("test", Schedule::Calendar("*/5 * * * *"), rx, || async {})
                .await
                .is_err()
        );
    }
}
