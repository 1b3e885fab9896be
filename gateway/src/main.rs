//! `gateway [serve|migrate|openapi|ledger check|users create --merchant mer_… --email … [--role …]]`.

use gateway::{Application, Settings};
use runtime::{db, shutdown, telemetry};
use sea_orm::EntityTrait as _;

runtime::jemalloc!(runtime::allocator::GATEWAY_JEMALLOC_CONF, 10_000);

#[tokio::main]
async fn main() {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_string());
    if command == "openapi" {
        println!("{}", gateway::http::api::spec_json());
        return;
    }
    let telemetry = telemetry::init("payrail-gateway");
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
        "users" => create_user(settings, &std::env::args().skip(2).collect::<Vec<_>>()).await,
        "ledger" => check_ledger(settings, std::env::args().nth(2).as_deref()).await,
        other => fail(
            2,
            &format!(
                "unknown command {other:?}; use serve, migrate, openapi, ledger check or users create"
            ),
        ),
    }
    telemetry.shutdown();
}

/// `ledger check`: verifies the ledger's invariants and prints what it found as JSON; exits
/// 1 when any is broken, so it can gate a deploy or a cron job.
async fn check_ledger(settings: Settings, sub: Option<&str>) {
    if sub != Some("check") {
        fail(2, "usage: gateway ledger check");
    }
    let conn = match db::connect(&settings.runtime.database_url).await {
        Ok(c) => c,
        Err(e) => fail(1, &format!("database: {e}")),
    };
    match gateway::ledger::check::run(&conn).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => fail(1, &format!("the check could not run: {e}")),
    }
}

/// `users create --merchant mer_… --email … [--role owner|developer|viewer]`: a dashboard
/// user with a random password, printed once.
async fn create_user(settings: Settings, args: &[String]) {
    let usage = "usage: gateway users create --merchant mer_… --email you@example.com [--role owner|developer|viewer]";
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.first().map(String::as_str) != Some("create") {
        fail(2, usage);
    }
    let (Some(merchant), Some(email)) = (value("--merchant"), value("--email")) else {
        fail(2, usage);
    };
    let Some(merchant_id) = entity::ids::MerchantId::parse(&merchant) else {
        fail(2, &format!("{merchant:?} is not a merchant id (mer_…)"));
    };
    let role = value("--role").unwrap_or_else(|| "owner".into());
    let Some(role) = entity::status::UserRole::parse(&role) else {
        fail(
            2,
            &format!("unknown role {role:?}; use owner, developer or viewer"),
        );
    };
    let result = async {
        let conn = db::connect(&settings.runtime.database_url).await?;
        let known = entity::merchants::Entity::find_by_id(merchant_id.clone())
            .one(&conn)
            .await?;
        if known.is_none() {
            anyhow::bail!("no merchant {merchant_id}");
        }
        gateway::merchants::users::create_user(&conn, &merchant_id, &email, role)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
    .await;
    match result {
        Ok((user, password)) => println!(
            "payrail: dashboard user {} ({}) created for {merchant_id}.\nIts password, shown only this once:\n\n    {password}\n",
            user.email, user.role
        ),
        Err(e) => fail(1, &format!("cannot create the user: {e:#}")),
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
                eprintln!(
                    "  Dashboard ({base}/dashboard): {}, password shown only this once:\n\n    {}\n",
                    b.dashboard_email, b.dashboard_password
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
