//! The `gateway` binary itself: configuration errors stop it before anything starts.

#[test]
fn an_unknown_variable_stops_the_gateway_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("PAYRAIL_WEBHOK_TIMEOUT", "1s")
        // Without the check it would fail later and differently (exit 1): nothing listens
        // on port 1, so it cannot hang.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://127.0.0.1:1/%2f")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAYRAIL_BIND", "127.0.0.1:0")
        .env("PAYRAIL_METRICS_BIND", "127.0.0.1:0")
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PAYRAIL_WEBHOK_TIMEOUT"), "{stderr}");
}

/// The compose file's old fallbacks (issue 20): a forged session signed with a known secret
/// opened any merchant's keys page. Real mode now refuses them, naming the variable only.
#[test]
fn real_mode_refuses_placeholder_secrets_at_start_naming_the_variable() {
    for (admin, dashboard, named) in [
        (
            "change-me-admin-token",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0aa",
            "PAYRAIL_ADMIN_TOKEN",
        ),
        (
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0aa",
            "change-me-dashboard-secret",
            "PAYRAIL_DASHBOARD_SECRET",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env("AMQP_URL", "amqp://127.0.0.1:1/%2f")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("PAYRAIL_ADMIN_TOKEN", admin)
            .env("PAYRAIL_DASHBOARD_SECRET", dashboard)
            .output()
            .expect("run the gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(
            !stderr.contains("change-me"),
            "the value is not printed: {stderr}"
        );
    }
}

#[test]
fn a_mixed_configuration_stops_the_gateway_saying_what_to_change() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env_remove("AMQP_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AMQP_URL"), "{stderr}");
}

#[tokio::test]
async fn users_create_makes_a_dashboard_user_who_can_sign_in_with_the_printed_password() {
    let path = std::env::temp_dir().join(format!("payrail_cli_{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = runtime::db::connect(&url).await.expect("sqlite");
    runtime::db::migrate(&db).await.expect("migrate");
    let merchant = gateway::merchants::create(&db, "CLI shop", entity::status::Plan::Unlimited)
        .await
        .expect("merchant")
        .merchant;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .expect("gateway runs")
    };
    let made = run(&[
        "users",
        "create",
        "--merchant",
        &merchant.id,
        "--email",
        "Cli@Example.com",
        "--role",
        "developer",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let printed = String::from_utf8_lossy(&made.stdout).to_string();
    let password = printed
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .expect("the password, last")
        .to_string();
    let keys = gateway::merchants::users::SessionKeys::new(
        b"secret",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(60),
    );
    let cache = runtime::cache::Cache::memory();
    let checks = gateway::merchants::users::PasswordChecks::new();
    let deps = gateway::merchants::users::SignInDeps {
        cache: &cache,
        keys: &keys,
        checks: &checks,
    };
    let tokens =
        gateway::merchants::users::sign_in(&db, &deps, "cli@example.com", &password, "127.0.0.1")
            .await
            .expect("the printed password signs in");
    assert_eq!(tokens.user.role, entity::status::UserRole::Developer);
    assert!(
        !printed.contains("$argon2"),
        "only the password is shown, never the hash"
    );

    let unknown = run(&[
        "users",
        "create",
        "--merchant",
        "mer_019ab3f0c1d27e8a9b4c5d6e7f801234",
        "--email",
        "x@example.com",
    ]);
    assert_eq!(unknown.status.code(), Some(1), "an unknown merchant");
    let bad_role = run(&[
        "users",
        "create",
        "--merchant",
        &merchant.id,
        "--email",
        "y@example.com",
        "--role",
        "admin",
    ]);
    assert_eq!(bad_role.status.code(), Some(2));
    payrail_tests::remove_sqlite(&path);
}

#[tokio::test]
async fn ledger_check_prints_its_report_and_fails_on_a_broken_invariant() {
    use sea_orm::ConnectionTrait as _;
    let path = std::env::temp_dir().join(format!("payrail_ledger_{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = runtime::db::connect(&url).await.expect("sqlite");
    runtime::db::migrate(&db).await.expect("migrate");
    let merchant = gateway::merchants::create(&db, "Ledger shop", entity::status::Plan::Unlimited)
        .await
        .expect("merchant")
        .merchant;
    let scope = entity::ids::Scope::test(merchant.id.clone());
    gateway::ledger::adjust(&db, &scope, "EUR", 1234, "Opening balance")
        .await
        .expect("adjustment");
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["ledger", "check"])
            .env("DATABASE_URL", &url)
            .output()
            .expect("gateway runs")
    };
    let clean = check();
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("JSON");
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["transactions"], 1);
    db.execute_unprepared("UPDATE balances SET available = available - 34")
        .await
        .expect("tamper");
    let broken = check();
    assert_eq!(broken.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&broken.stdout).expect("JSON");
    assert_eq!(report["violations"][0]["kind"], "balance_mismatch");
    assert!(
        report["violations"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1200") && d.contains("1234")),
        "{report}"
    );
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["ledger", "fix"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("gateway runs");
    assert_eq!(usage.status.code(), Some(2));
    payrail_tests::remove_sqlite(&path);
}

/// Day partitions (issue 24, item 6) come from the binaries: `gateway migrate` creates the
/// coming days', and a gateway's start creates any missing (a database migrated a week ago).
#[tokio::test]
async fn migrate_and_a_gateways_start_create_the_coming_days_partitions() {
    use runtime::partitions::{DAYS_AHEAD, TABLES};
    use sea_orm::ConnectionTrait as _;
    let app = payrail_tests::TestApp::spawn().await;
    let last = chrono::Utc::now().date_naive() + chrono::Duration::days(i64::from(DAYS_AHEAD));
    let last_days: Vec<String> = TABLES.iter().map(|t| t.partition(last)).collect();
    let present = || async {
        app.count(&format!(
            "SELECT count(*) FROM pg_class WHERE relname IN ('{}')",
            last_days.join("', '")
        ))
        .await
    };
    assert_eq!(present().await, 4, "the test's own migration made them");
    let drop_them = || async {
        app.db
            .execute_unprepared(&format!("DROP TABLE {}", last_days.join(", ")))
            .await
            .expect("drop");
    };

    drop_them().await;
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        runtime::partitions::days_covered(&app.db, today)
            .await
            .expect("read"),
        Some(DAYS_AHEAD),
        "the last day is missing: what partitions_ahead exports"
    );
    let out = app
        .gateway_command(env!("CARGO_BIN_EXE_gateway"), "127.0.0.1:0")
        .arg("migrate")
        .output()
        .expect("gateway migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(present().await, 4, "gateway migrate");
    assert_eq!(
        runtime::partitions::days_covered(&app.db, today)
            .await
            .expect("read"),
        Some(DAYS_AHEAD + 1)
    );

    drop_them().await;
    let bind = format!("127.0.0.1:{}", payrail_tests::free_port());
    let _gateway = payrail_tests::Process::spawn_quiet(
        app.gateway_command(env!("CARGO_BIN_EXE_gateway"), &bind),
    );
    app.eventually(
        std::time::Duration::from_secs(30),
        "a started gateway creates them",
        || async { (present().await == 4).then_some(()) },
    )
    .await;
}
