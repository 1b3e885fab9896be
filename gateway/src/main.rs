//! `gateway [serve|migrate|openapi]`.

use gateway::{Application, Settings};
use runtime::{db, shutdown, telemetry};

#[tokio::main]
async fn main() {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_string());
    if command == "openapi" {
        println!("{}", gateway::api::spec_json());
        return;
    }
    telemetry::init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => fail(2, &format!("configuration: {e}")),
    };
    match command.as_str() {
        "migrate" => {
            let result = async {
                let conn = db::connect(&settings.runtime.database_url).await?;
                db::migrate(&conn).await
            }
            .await;
            match result {
                Ok(()) => println!("payrail: migrations applied"),
                Err(e) => fail(1, &format!("migration failed: {e}")),
            }
        }
        "serve" => serve(settings).await,
        other => fail(
            2,
            &format!("unknown command {other:?}; use serve, migrate or openapi"),
        ),
    }
}

async fn serve(settings: Settings) {
    let embedded = settings.is_embedded();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => fail(1, &format!("cannot start: {e:#}")),
    };
    let base = format!("http://127.0.0.1:{}", app.port());
    if embedded {
        eprintln!(
            "\n  Payrail is running in EMBEDDED mode: SQLite, in-process bus, in-memory cache, worker inside.\n  \
             For production set DATABASE_URL (PostgreSQL), AMQP_URL, REDIS_URL and run `worker` separately.\n"
        );
        match app.bootstrap_sandbox().await {
            Ok(Some(b)) => {
                eprintln!(
                    "  Sandbox merchant created. Its API key, shown only this once:\n\n    {}\n",
                    b.api_key
                );
                if let Some(t) = &b.admin_token {
                    eprintln!(
                        "  Admin token for this run (set PAYRAIL_ADMIN_TOKEN to choose your own):\n\n    {t}\n"
                    );
                }
                eprintln!(
                    "  Create a payment:\n\n    curl -s {base}/v1/payments -H 'Authorization: Bearer {}' \\\n      \
                     -H 'Content-Type: application/json' -d '{{\"amount\":2000,\"currency\":\"usd\",\"provider\":\"simulated\"}}'\n",
                    b.api_key
                );
            }
            Ok(None) => {}
            Err(e) => fail(1, &format!("cannot create the sandbox merchant: {e:#}")),
        }
    }
    eprintln!(
        "  Listening on {base}  (API docs: {base}/docs; metrics on port {})\n",
        app.metrics_port()
    );
    if let Err(e) = app.run_until_stopped(shutdown::signal()).await {
        fail(1, &format!("{e:#}"));
    }
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("payrail: {message}");
    std::process::exit(code);
}
