//! Configuration from the environment. A bad value stops start-up with a message naming the
//! variable; every knob is a field so tests build `Settings` directly with short intervals.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// `None` selects embedded mode: in-process bus, in-memory cache, worker in the gateway.
    pub amqp_url: Option<String>,
    pub redis_url: Option<String>,
    pub bind: SocketAddr,
    pub worker_bind: SocketAddr,
    pub admin_token: Option<String>,
    pub amqp_prefix: String,
    pub redis_prefix: String,
    pub webhook: WebhookSettings,
    /// How often the relay republishes events left unpublished (crash, broker down).
    pub relay_interval: Duration,
    pub providers: ProviderSettings,
    /// Log store entries older than this are deleted by the retention job.
    pub log_retention: Duration,
    /// Idempotency records older than this are deleted (keys are honoured at least this long).
    pub idempotency_retention: Duration,
}

/// A secret from the environment: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// External providers. A provider is configured when its credentials are set; base URLs are
/// configurable so tests point them at local mocks.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub stripe: Option<StripeSettings>,
    pub moneroo: Option<MonerooSettings>,
    pub ebilling: Option<EbillingSettings>,
    /// Per-call timeout for provider APIs.
    pub timeout: Duration,
    /// How often the poller re-queries payments still open at a provider.
    pub poll_interval: Duration,
    /// How long a payment must have been open before the poller asks about it.
    pub poll_age: Duration,
    /// Consecutive failures that open a provider's circuit, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            stripe: None,
            moneroo: None,
            ebilling: None,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(60),
            poll_age: Duration::from_secs(300),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub secret_key: Secret,
    pub webhook_secret: Secret,
    pub api_base: String,
}

#[derive(Debug, Clone)]
pub struct MonerooSettings {
    pub secret_key: Secret,
    pub webhook_secret: Secret,
    pub api_base: String,
}

#[derive(Debug, Clone)]
pub struct EbillingSettings {
    pub username: String,
    pub shared_key: Secret,
    pub api_base: String,
    pub portal_base: String,
}

fn provider_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderSettings, SettingsError> {
    // Both or neither: half a configuration is a mistake worth stopping for.
    let pair =
        |a: &'static str, b: &'static str| -> Result<Option<(String, String)>, SettingsError> {
            match (lookup(a), lookup(b)) {
                (Some(x), Some(y)) => Ok(Some((x, y))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(SettingsError {
                    variable: b,
                    value: String::new(),
                    reason: format!("must be set together with {a}"),
                }),
                (None, Some(_)) => Err(SettingsError {
                    variable: a,
                    value: String::new(),
                    reason: format!("must be set together with {b}"),
                }),
            }
        };
    let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_string());
    let defaults = ProviderSettings::default();
    let duration = |name: &'static str, default: Duration| -> Result<Duration, SettingsError> {
        match lookup(name) {
            Some(v) => parse_with(name, &v, parse_duration),
            None => Ok(default),
        }
    };
    Ok(ProviderSettings {
        stripe: pair("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")?.map(|(k, w)| StripeSettings {
            secret_key: Secret(k),
            webhook_secret: Secret(w),
            api_base: get("STRIPE_API_BASE", "https://api.stripe.com"),
        }),
        moneroo: pair("MONEROO_SECRET_KEY", "MONEROO_WEBHOOK_SECRET")?.map(|(k, w)| {
            MonerooSettings {
                secret_key: Secret(k),
                webhook_secret: Secret(w),
                api_base: get("MONEROO_API_BASE", "https://api.moneroo.io"),
            }
        }),
        ebilling: pair("EBILLING_USERNAME", "EBILLING_SHARED_KEY")?.map(|(u, k)| {
            EbillingSettings {
                username: u,
                shared_key: Secret(k),
                api_base: get("EBILLING_API_BASE", "https://lab.billing-easy.net"),
                portal_base: get("EBILLING_PORTAL_BASE", "https://test.billing-easy.net"),
            }
        }),
        timeout: duration("PAYRAIL_PROVIDER_TIMEOUT", defaults.timeout)?,
        poll_interval: duration("PAYRAIL_PROVIDER_POLL_INTERVAL", defaults.poll_interval)?,
        poll_age: duration("PAYRAIL_PROVIDER_POLL_AGE", defaults.poll_age)?,
        breaker_threshold: match lookup("PAYRAIL_PROVIDER_BREAKER_THRESHOLD") {
            Some(v) => parse_with("PAYRAIL_PROVIDER_BREAKER_THRESHOLD", &v, parse_positive)?,
            None => defaults.breaker_threshold,
        },
        breaker_cooldown: duration(
            "PAYRAIL_PROVIDER_BREAKER_COOLDOWN",
            defaults.breaker_cooldown,
        )?,
    })
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub sweep_interval: Duration,
    pub batch_size: u64,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub timeout: Duration,
    pub immediate: bool,
    pub allow_private_urls: bool,
}

impl WebhookSettings {
    pub fn retry_policy(&self) -> entity::retry::RetryPolicy {
        entity::retry::RetryPolicy {
            base: self.backoff_base,
            max: self.backoff_max,
            max_attempts: self.max_attempts,
        }
    }

    /// A claim outlives the HTTP timeout with room to record the result, so a live worker
    /// never loses its row to another, and a dead one's rows come back soon after.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://payrail.db?mode=rwc";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `lookup`, so tests can feed a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get =
            |name: &'static str, default: &str| lookup(name).unwrap_or_else(|| default.to_string());
        let amqp_url = lookup("AMQP_URL");
        let embedded = amqp_url.is_none();
        let webhook = WebhookSettings {
            sweep_interval: parse_with(
                "PAYRAIL_WEBHOOK_SWEEP_INTERVAL",
                &get("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "30s"),
                parse_duration,
            )?,
            batch_size: parse_with(
                "PAYRAIL_WEBHOOK_BATCH_SIZE",
                &get("PAYRAIL_WEBHOOK_BATCH_SIZE", "50"),
                |v| parse_positive(v).map(u64::from),
            )?,
            max_attempts: parse_with(
                "PAYRAIL_WEBHOOK_MAX_ATTEMPTS",
                &get("PAYRAIL_WEBHOOK_MAX_ATTEMPTS", "5"),
                parse_positive,
            )?,
            backoff_base: parse_with(
                "PAYRAIL_WEBHOOK_BACKOFF_BASE",
                &get("PAYRAIL_WEBHOOK_BACKOFF_BASE", "1s"),
                parse_duration,
            )?,
            backoff_max: parse_with(
                "PAYRAIL_WEBHOOK_BACKOFF_MAX",
                &get("PAYRAIL_WEBHOOK_BACKOFF_MAX", "60s"),
                parse_duration,
            )?,
            timeout: parse_with(
                "PAYRAIL_WEBHOOK_TIMEOUT",
                &get("PAYRAIL_WEBHOOK_TIMEOUT", "10s"),
                parse_duration,
            )?,
            immediate: parse_with(
                "PAYRAIL_WEBHOOK_IMMEDIATE",
                &get("PAYRAIL_WEBHOOK_IMMEDIATE", "true"),
                parse_bool,
            )?,
            allow_private_urls: parse_with(
                "PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS",
                &get(
                    "PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS",
                    if embedded { "true" } else { "false" },
                ),
                parse_bool,
            )?,
        };
        if webhook.sweep_interval.is_zero() || webhook.timeout.is_zero() {
            return Err(SettingsError {
                variable: "PAYRAIL_WEBHOOK_SWEEP_INTERVAL/PAYRAIL_WEBHOOK_TIMEOUT",
                value: "0".into(),
                reason: "must be longer than zero".into(),
            });
        }
        let prefix_of = |name: &'static str| -> Result<String, SettingsError> {
            let value = get(name, "payrail");
            if value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                Ok(value)
            } else {
                Err(SettingsError {
                    variable: name,
                    value,
                    reason: "use letters, digits, '-', '_' or '.'".into(),
                })
            }
        };
        Ok(Settings {
            database_url: get("DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url: lookup("REDIS_URL"),
            bind: parse_with(
                "PAYRAIL_BIND",
                &get("PAYRAIL_BIND", "127.0.0.1:8080"),
                parse_addr,
            )?,
            worker_bind: parse_with(
                "PAYRAIL_WORKER_BIND",
                &get("PAYRAIL_WORKER_BIND", "127.0.0.1:9091"),
                parse_addr,
            )?,
            admin_token: lookup("PAYRAIL_ADMIN_TOKEN"),
            amqp_prefix: prefix_of("PAYRAIL_AMQP_PREFIX")?,
            redis_prefix: prefix_of("PAYRAIL_REDIS_PREFIX")?,
            relay_interval: parse_with(
                "PAYRAIL_RELAY_INTERVAL",
                &get("PAYRAIL_RELAY_INTERVAL", "1s"),
                parse_duration,
            )?,
            providers: provider_settings(&lookup)?,
            log_retention: parse_with(
                "PAYRAIL_LOG_RETENTION",
                &get("PAYRAIL_LOG_RETENTION", "30d"),
                parse_duration,
            )?,
            idempotency_retention: parse_with(
                "PAYRAIL_IDEMPOTENCY_RETENTION",
                &get("PAYRAIL_IDEMPOTENCY_RETENTION", "7d"),
                parse_duration,
            )?,
            amqp_url,
            webhook,
        })
    }

    /// Embedded mode: no broker configured.
    pub fn is_embedded(&self) -> bool {
        self.amqp_url.is_none()
    }
}

fn parse_with<T>(
    variable: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, SettingsError> {
    parse(value).map_err(|reason| SettingsError {
        variable,
        value: value.to_string(),
        reason,
    })
}

/// `250ms`, `30s`, `5m`, `1h`, `30d`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("missing a unit (ms, s, m or h)")?;
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a number followed by ms, s, m or h".to_string())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    }
}

fn parse_positive(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number above zero".into()),
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected host:port, e.g. 127.0.0.1:8080".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = settings(&[]).unwrap();
        assert!(s.is_embedded());
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.webhook.sweep_interval, Duration::from_secs(30));
        assert_eq!(s.webhook.batch_size, 50);
        assert_eq!(s.webhook.max_attempts, 5);
        assert_eq!(s.webhook.timeout, Duration::from_secs(10));
        assert!(s.webhook.immediate);
        assert!(
            s.webhook.allow_private_urls,
            "embedded mode allows private targets"
        );
        let real = settings(&[("AMQP_URL", "amqp://x")]).unwrap();
        assert!(
            !real.webhook.allow_private_urls,
            "real mode refuses private targets by default"
        );
    }

    #[test]
    fn providers_need_both_halves_of_their_credentials_and_hide_them() {
        assert!(settings(&[]).unwrap().providers.stripe.is_none());
        let err = settings(&[("STRIPE_SECRET_KEY", "sk_test_x")]).unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
        let s = settings(&[
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_y"),
        ])
        .unwrap();
        let stripe = s.providers.stripe.clone().unwrap();
        assert_eq!(stripe.api_base, "https://api.stripe.com");
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("sk_test_x") && !printed.contains("whsec_y"),
            "secrets must not print"
        );
    }

    #[test]
    fn durations_parse_in_the_usual_forms() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = settings(&[("PAYRAIL_WEBHOOK_BATCH_SIZE", "lots")]).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_BATCH_SIZE");
        assert!(err.to_string().contains("PAYRAIL_WEBHOOK_BATCH_SIZE"));
        let err = settings(&[("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "30")]).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_SWEEP_INTERVAL");
        assert!(settings(&[("PAYRAIL_BIND", "nowhere")]).is_err());
        assert!(settings(&[("PAYRAIL_AMQP_PREFIX", "a b")]).is_err());
    }
}
