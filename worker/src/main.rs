//! `worker`: delivers merchant webhooks (real mode: PostgreSQL + RabbitMQ).
//!
//! `worker` runs until SIGTERM/SIGINT; `worker redrive` moves the dead-letter queue's messages
//! back to the fan-out queue and exits.

use entity::bus::QueueNames;
use runtime::bus::EventBus;
use runtime::{shutdown, telemetry};
use worker::Settings;
use worker::app::WorkerApplication;

runtime::jemalloc!();

const USAGE: &str = "usage: worker            deliver webhooks until stopped
       worker redrive    move dead-lettered bus messages back to the fan-out queue";

#[tokio::main]
async fn main() {
    let telemetry = telemetry::init("payrail-worker");
    let command = std::env::args().nth(1);
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payrail worker: {e}");
            std::process::exit(2);
        }
    };
    match command.as_deref() {
        None => run(settings).await,
        Some("redrive") => redrive(settings).await,
        Some("-h" | "--help" | "help") => println!("{USAGE}"),
        Some(other) => {
            eprintln!("payrail worker: unknown command '{other}'\n{USAGE}");
            std::process::exit(2);
        }
    }
    telemetry.shutdown();
}

async fn run(settings: Settings) {
    let app = match WorkerApplication::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("payrail worker: cannot start: {e:#}");
            std::process::exit(1);
        }
    };
    tracing::info!(port = app.port(), "worker metrics and health listening");
    if let Err(e) = app.run_until_stopped(shutdown::signal()).await {
        eprintln!("payrail worker: {e:#}");
        std::process::exit(1);
    }
}

async fn redrive(settings: Settings) {
    let Some(url) = settings.runtime.amqp_url.as_deref() else {
        eprintln!(
            "payrail worker: redrive needs AMQP_URL (embedded mode has no dead-letter queue)"
        );
        std::process::exit(2);
    };
    let bus = EventBus::amqp(url, QueueNames::new(&settings.runtime.amqp_prefix));
    match bus.redrive().await {
        Ok(moved) => println!("redrove {moved} message(s) from the dead-letter queue"),
        Err(e) => {
            eprintln!("payrail worker: redrive failed: {e}");
            std::process::exit(1);
        }
    }
}
