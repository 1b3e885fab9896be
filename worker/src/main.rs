//! `worker`: delivers merchant webhooks (real mode: PostgreSQL + RabbitMQ).

use runtime::{shutdown, telemetry};
use worker::Settings;
use worker::app::WorkerApplication;

#[tokio::main]
async fn main() {
    telemetry::init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payrail worker: {e}");
            std::process::exit(2);
        }
    };
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
