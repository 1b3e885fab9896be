//! Everything the gateway process reads: the shared backends (`runtime`), the worker's section
//! (the gateway runs the worker itself in embedded mode), and its own: the API's bind address
//! and admin token, the public URL for checkout links, the relay, providers and retention.
//!
//! The gateway knows every section, so any `PAYRAIL_*` variable it did not read is a typo and
//! stops start-up naming it.

use std::net::SocketAddr;
use std::time::Duration;

use runtime::settings::{Env, RuntimeSettings, Secret, SettingsError};
use worker::settings::WorkerSettings;

use crate::providers::settings::ProviderSettings;

/// How long old rows are kept.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Log store entries older than this are deleted.
    pub logs: Duration,
    /// Idempotency records older than this are deleted (keys are honoured at least this long).
    pub idempotency_keys: Duration,
    /// Events, deliveries and attempts older than this are deleted (`PAYRAIL_RETENTION`).
    pub events: Duration,
}

/// The gateway's own section.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub bind: SocketAddr,
    /// Where `/metrics` (and the health checks) are served, apart from the public API.
    pub metrics_bind: SocketAddr,
    pub admin_token: Option<Secret>,
    /// Base URL customers reach this gateway at (checkout links); the bound address if unset.
    pub public_url: Option<String>,
    /// The simulated provider's webhook secret; random per process if unset.
    pub simulated_webhook_secret: Option<Secret>,
    /// How often the relay republishes events left unpublished (crash, broker down).
    pub relay_interval: Duration,
    /// How long the relay leaves a new payment's event to the gateway that wrote it (which
    /// publishes it right after its commit) before taking it over: a crashed writer's events
    /// go out this long after their commit (plus up to `relay_interval`).
    pub relay_writer_grace: Duration,
    /// How often usage counts move from the cache to the database.
    pub usage_flush_interval: Duration,
    /// When usage is checked against the plans' limits (six-field cron, UTC).
    pub usage_check_schedule: &'static str,
    /// Webhook endpoints one merchant may have.
    pub max_webhook_endpoints: u32,
    pub providers: ProviderSettings,
    pub retention: RetentionSettings,
    /// Each API key's rate limit, for merchants not given their own.
    pub rate_limit: runtime::token_bucket::Quota,
    /// Each client address's limit on the public routes (checkout, QR, sign-in).
    pub public_rate_limit: runtime::token_bucket::Quota,
    pub dashboard: DashboardSettings,
    /// The plan a new merchant gets (`unlimited` unless the operator opts into quotas).
    pub default_plan: entity::status::Plan,
    /// When a payment's funds become available, and how often matured ones are released.
    pub funds: crate::ledger::FundsPolicy,
    pub funds_release_interval: Duration,
    /// When the ledger's invariants are checked (six-field cron, UTC).
    pub ledger_check_schedule: &'static str,
    /// The operator's proxies, whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
    /// When the ledger is reconciled with the providers' reports, and how far back.
    pub reconcile_schedule: &'static str,
    pub reconcile_window: Duration,
}

/// The dashboard's sessions.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Signs access tokens; every gateway must share it (required in real mode, random per
    /// process in embedded mode).
    pub secret: Option<Secret>,
    /// How long an access token is valid (renewed from the refresh token after).
    pub access_ttl: Duration,
    /// How long a refresh token (a session) lasts without use.
    pub refresh_ttl: Duration,
}

impl GatewaySettings {
    pub fn read(env: &Env) -> Result<GatewaySettings, SettingsError> {
        Ok(GatewaySettings {
            bind: env.addr("PAYRAIL_BIND", "127.0.0.1:8080")?,
            metrics_bind: env.addr("PAYRAIL_METRICS_BIND", "127.0.0.1:9090")?,
            admin_token: env.raw("PAYRAIL_ADMIN_TOKEN").map(Secret),
            public_url: env.raw("PAYRAIL_PUBLIC_URL"),
            simulated_webhook_secret: env.raw("PAYRAIL_SIMULATED_WEBHOOK_SECRET").map(Secret),
            relay_interval: env.period("PAYRAIL_RELAY_INTERVAL", "1s")?,
            // Short, for a killed gateway's events; a confirm slower than this (a blocked
            // broker) is published twice, which the worker's fan-out absorbs.
            relay_writer_grace: env.period("PAYRAIL_RELAY_WRITER_GRACE", "5s")?,
            usage_flush_interval: env.period("PAYRAIL_USAGE_FLUSH_INTERVAL", "10s")?,
            // Read once per process; the scheduler wants a `'static` expression.
            usage_check_schedule: env.parse(
                "PAYRAIL_USAGE_CHECK_SCHEDULE",
                "0 0 6 * * *",
                |v| {
                    runtime::schedule::valid_calendar(v)
                        .map(|()| &*Box::leak(v.to_string().into_boxed_str()))
                },
            )?,
            max_webhook_endpoints: env.positive("PAYRAIL_MAX_WEBHOOK_ENDPOINTS", "20")?,
            providers: ProviderSettings::read(env)?,
            rate_limit: rate_limit(env)?,
            public_rate_limit: public_rate_limit(env)?,
            dashboard: DashboardSettings {
                secret: env.raw("PAYRAIL_DASHBOARD_SECRET").map(Secret),
                access_ttl: env.period("PAYRAIL_DASHBOARD_ACCESS_TTL", "15m")?,
                refresh_ttl: env.period("PAYRAIL_DASHBOARD_REFRESH_TTL", "30d")?,
            },
            funds: crate::ledger::FundsPolicy {
                available_after: env.duration("PAYRAIL_FUNDS_AVAILABLE_AFTER", "0s")?,
            },
            funds_release_interval: env.period("PAYRAIL_FUNDS_RELEASE_INTERVAL", "60s")?,
            ledger_check_schedule: env.parse(
                "PAYRAIL_LEDGER_CHECK_SCHEDULE",
                "0 17 * * * *",
                |v| {
                    runtime::schedule::valid_calendar(v)
                        .map(|()| &*Box::leak(v.to_string().into_boxed_str()))
                },
            )?,
            trusted_proxies: env.parse(
                "PAYRAIL_TRUSTED_PROXIES",
                "",
                crate::http::client_address::TrustedProxies::parse,
            )?,
            reconcile_schedule: env.parse("PAYRAIL_RECONCILE_SCHEDULE", "0 30 3 * * *", |v| {
                runtime::schedule::valid_calendar(v)
                    .map(|()| &*Box::leak(v.to_string().into_boxed_str()))
            })?,
            reconcile_window: env.period("PAYRAIL_RECONCILE_WINDOW", "3d")?,
            default_plan: env.parse("PAYRAIL_DEFAULT_PLAN", "unlimited", |v| {
                entity::status::Plan::parse(v.trim())
                    .ok_or_else(|| format!("expected {}", entity::status::Plan::names()))
            })?,
            retention: RetentionSettings {
                logs: env.duration("PAYRAIL_LOG_RETENTION", "30d")?,
                idempotency_keys: env.duration("PAYRAIL_IDEMPOTENCY_RETENTION", "7d")?,
                events: env.period("PAYRAIL_RETENTION", "30d")?,
            },
        })
    }
}

/// `PAYRAIL_RATE_LIMIT_PER_SECOND` (100) and `PAYRAIL_RATE_LIMIT_BURST` (the rate), in bounds.
fn rate_limit(env: &Env) -> Result<runtime::token_bucket::Quota, SettingsError> {
    let per_second = env.positive("PAYRAIL_RATE_LIMIT_PER_SECOND", "100")?;
    let burst = env.positive("PAYRAIL_RATE_LIMIT_BURST", &per_second.to_string())?;
    crate::merchants::rate_limits::quota(per_second, burst).map_err(|reason| {
        SettingsError::new(
            "PAYRAIL_RATE_LIMIT_BURST",
            burst.to_string(),
            format!("{reason} (PAYRAIL_RATE_LIMIT_PER_SECOND is {per_second})"),
        )
    })
}

/// The shortest a shared secret may be in real mode: 32 bytes, what an HMAC-SHA256 key
/// should have.
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret that is long enough and not a placeholder someone forgot to replace (the compose
/// file's old fallbacks among them).
pub fn strong_secret(secret: &Secret) -> Result<(), String> {
    let value = secret.0.as_str();
    if value.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "too short: at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)"
        ));
    }
    let lower = value.to_ascii_lowercase();
    let placeholder = [
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "replaceme",
        "placeholder",
        "example",
        "your-",
        "todo",
    ]
    .iter()
    .any(|p| lower.contains(p));
    let distinct = value
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if placeholder || distinct < 8 {
        return Err(
            "a placeholder, not a secret: generate one (e.g. `openssl rand -hex 32`)".into(),
        );
    }
    Ok(())
}

/// `PAYRAIL_PUBLIC_RATE_LIMIT_PER_SECOND` (20) and `_BURST` (40): each client address's bucket
/// on the public routes.
fn public_rate_limit(env: &Env) -> Result<runtime::token_bucket::Quota, SettingsError> {
    let per_second = env.positive("PAYRAIL_PUBLIC_RATE_LIMIT_PER_SECOND", "20")?;
    let burst = env.positive(
        "PAYRAIL_PUBLIC_RATE_LIMIT_BURST",
        &(per_second * 2).to_string(),
    )?;
    crate::merchants::rate_limits::quota(per_second, burst).map_err(|reason| {
        SettingsError::new(
            "PAYRAIL_PUBLIC_RATE_LIMIT_BURST",
            burst.to_string(),
            format!("{reason} (PAYRAIL_PUBLIC_RATE_LIMIT_PER_SECOND is {per_second})"),
        )
    })
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub runtime: RuntimeSettings,
    pub worker: WorkerSettings,
    pub gateway: GatewaySettings,
}

impl Settings {
    pub fn read(env: &Env) -> Result<Settings, SettingsError> {
        let runtime = RuntimeSettings::read(env)?;
        let worker = WorkerSettings::read(env, runtime.is_embedded())?;
        let gateway = GatewaySettings::read(env)?;
        if !runtime.is_embedded() {
            for (name, value) in [
                ("PAYRAIL_ADMIN_TOKEN", &gateway.admin_token),
                ("PAYRAIL_DASHBOARD_SECRET", &gateway.dashboard.secret),
            ] {
                if let Some(secret) = value {
                    strong_secret(secret)
                        .map_err(|reason| SettingsError::new(name, "<redacted>", reason))?;
                }
            }
        }
        Ok(Settings {
            runtime,
            worker,
            gateway,
        })
    }

    /// Reads the process environment; an unknown `PAYRAIL_*` variable is refused.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let env = Env::process();
        let settings = Settings::read(&env)?;
        env.refuse_unknown(&["PAYRAIL_"])?;
        Ok(settings)
    }

    /// Embedded mode: no broker configured.
    pub fn is_embedded(&self) -> bool {
        self.runtime.is_embedded()
    }

    /// The settings a worker process started beside this gateway reads from the same
    /// environment.
    pub fn worker_process(&self) -> worker::Settings {
        worker::Settings {
            runtime: self.runtime.clone(),
            worker: self.worker.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::read(&Env::from_pairs(&[])).unwrap();
        assert!(s.is_embedded());
        assert_eq!(s.gateway.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.gateway.relay_interval, Duration::from_secs(1));
        assert_eq!(s.gateway.relay_writer_grace, Duration::from_secs(5));
        let short = Env::from_pairs(&[("PAYRAIL_RELAY_WRITER_GRACE", "300ms")]);
        assert_eq!(
            Settings::read(&short).unwrap().gateway.relay_writer_grace,
            Duration::from_millis(300)
        );
        assert_eq!(s.gateway.retention.logs, Duration::from_secs(30 * 86_400));
        assert_eq!(
            s.gateway.retention.idempotency_keys,
            Duration::from_secs(7 * 86_400)
        );
        assert!(s.gateway.providers.stripe.is_none());
        assert_eq!(s.gateway.usage_flush_interval, Duration::from_secs(10));
        assert_eq!(s.gateway.usage_check_schedule, "0 0 6 * * *");
        assert_eq!(s.gateway.default_plan, entity::status::Plan::Unlimited);
    }

    #[test]
    fn a_default_plan_is_one_of_the_plans() {
        let s = Settings::read(&Env::from_pairs(&[("PAYRAIL_DEFAULT_PLAN", "free")])).unwrap();
        assert_eq!(s.gateway.default_plan, entity::status::Plan::Free);
        let err =
            Settings::read(&Env::from_pairs(&[("PAYRAIL_DEFAULT_PLAN", "gold")])).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_DEFAULT_PLAN");
        assert!(
            err.to_string().contains("unlimited, free, pro or custom"),
            "{err}"
        );
    }

    #[test]
    fn a_usage_check_schedule_that_is_not_cron_stops_the_start() {
        let err = Settings::read(&Env::from_pairs(&[(
            "PAYRAIL_USAGE_CHECK_SCHEDULE",
            "daily",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_USAGE_CHECK_SCHEDULE");
        let s = Settings::read(&Env::from_pairs(&[(
            "PAYRAIL_USAGE_CHECK_SCHEDULE",
            "0 30 5 * * *",
        )]))
        .unwrap();
        assert_eq!(s.gateway.usage_check_schedule, "0 30 5 * * *");
    }

    #[test]
    fn real_mode_refuses_short_or_placeholder_secrets_naming_them() {
        let real = |admin: &str, dashboard: &str| {
            let pairs = [
                ("DATABASE_URL", "postgres://x/db"),
                ("AMQP_URL", "amqp://x"),
                ("REDIS_URL", "redis://x"),
                ("PAYRAIL_ADMIN_TOKEN", admin),
                ("PAYRAIL_DASHBOARD_SECRET", dashboard),
            ];
            Settings::read(&Env::from_pairs(&pairs)).map(|_| ())
        };
        let good = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        assert!(real(good, good).is_ok());
        for (admin, dashboard, named) in [
            ("change-me-admin-token", good, "PAYRAIL_ADMIN_TOKEN"),
            (
                good,
                "change-me-dashboard-secret",
                "PAYRAIL_DASHBOARD_SECRET",
            ),
            ("k3Y!vQ", good, "PAYRAIL_ADMIN_TOKEN"),
            (
                "CHANGEME-0123456789-0123456789-0123",
                good,
                "PAYRAIL_ADMIN_TOKEN",
            ),
            (good, &"a".repeat(40), "PAYRAIL_DASHBOARD_SECRET"),
        ] {
            let err = real(admin, dashboard).unwrap_err();
            assert_eq!(err.variable, named);
            assert!(
                !err.to_string().contains(admin) || admin == good,
                "the secret is not printed: {err}"
            );
        }
        // A laptop's embedded mode keeps what it is given.
        assert!(Settings::read(&Env::from_pairs(&[("PAYRAIL_ADMIN_TOKEN", "short")])).is_ok());
    }

    #[test]
    fn providers_need_both_halves_of_their_credentials_and_hide_them() {
        let err =
            Settings::read(&Env::from_pairs(&[("STRIPE_SECRET_KEY", "sk_test_x")])).unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
        let s = Settings::read(&Env::from_pairs(&[
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_y"),
            ("PAYRAIL_ADMIN_TOKEN", "adm_secret"),
        ]))
        .unwrap();
        let stripe = s.gateway.providers.stripe.clone().unwrap();
        assert_eq!(stripe.api_base, "https://api.stripe.com");
        let printed = format!("{s:?}");
        for secret in ["sk_test_x", "whsec_y", "adm_secret"] {
            assert!(!printed.contains(secret), "{secret} must not print");
        }
    }

    #[test]
    fn every_variable_of_every_section_is_known_and_a_typo_is_named() {
        let pairs = [
            ("PAYRAIL_BIND", "127.0.0.1:1"),
            ("PAYRAIL_WORKER_BIND", "127.0.0.1:2"),
            ("PAYRAIL_WEBHOOK_TIMEOUT", "1s"),
            ("PAYRAIL_PROVIDER_POLL_AGE", "1m"),
            ("PAYRAIL_LOG_RETENTION", "1d"),
            ("PAYRAIL_AMQP_PREFIX", "p"),
            ("PAYRAIL_RELAY_INTERVALL", "1s"),
        ];
        let env = Env::from_pairs(&pairs);
        Settings::read(&env).unwrap();
        assert_eq!(env.unknown(&["PAYRAIL_"]), vec!["PAYRAIL_RELAY_INTERVALL"]);
    }

    #[test]
    fn out_of_range_durations_are_refused_naming_the_variable() {
        let err = Settings::read(&Env::from_pairs(&[(
            "PAYRAIL_LOG_RETENTION",
            "213503982334602d",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_LOG_RETENTION");
    }
}
