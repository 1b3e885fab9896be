//! The providers' section of the configuration. A provider is configured when its
//! credentials are set; base URLs are configurable so tests point them at local mocks.

use std::time::Duration;

use runtime::settings::{Env, Secret, SettingsError};

/// External providers.
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
    /// How long the poller keeps asking about a payment still open: an intent its customer
    /// abandoned is not asked about for ever.
    pub poll_max_age: Duration,
    /// Unsigned callbacks (eBilling) re-query a bill at most once per this interval.
    pub requery_interval: Duration,
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
            poll_max_age: Duration::from_secs(7 * 86_400),
            requery_interval: Duration::from_secs(5),
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
    /// Whether these credentials move real money (`MONEROO_LIVEMODE`): only live keys use them
    /// then, only test keys otherwise.
    pub livemode: bool,
}

#[derive(Debug, Clone)]
pub struct EbillingSettings {
    pub username: String,
    pub shared_key: Secret,
    pub api_base: String,
    pub portal_base: String,
    /// Whether these credentials move real money (`EBILLING_LIVEMODE`).
    pub livemode: bool,
}

impl ProviderSettings {
    pub fn read(env: &Env) -> Result<ProviderSettings, SettingsError> {
        // Both or neither: half a configuration is a mistake worth stopping for.
        let pair =
            |a: &'static str, b: &'static str| -> Result<Option<(String, String)>, SettingsError> {
                match (env.raw(a), env.raw(b)) {
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
        let get = |name: &str, default: &str| env.string(name, default);
        let moneroo_live = env.bool("MONEROO_LIVEMODE", "false")?;
        let ebilling_live = env.bool("EBILLING_LIVEMODE", "false")?;
        Ok(ProviderSettings {
            stripe: pair("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")?.map(|(k, w)| {
                StripeSettings {
                    secret_key: Secret(k),
                    webhook_secret: Secret(w),
                    api_base: get("STRIPE_API_BASE", "https://api.stripe.com"),
                }
            }),
            moneroo: pair("MONEROO_SECRET_KEY", "MONEROO_WEBHOOK_SECRET")?.map(|(k, w)| {
                MonerooSettings {
                    secret_key: Secret(k),
                    webhook_secret: Secret(w),
                    api_base: get("MONEROO_API_BASE", "https://api.moneroo.io"),
                    livemode: moneroo_live,
                }
            }),
            ebilling: pair("EBILLING_USERNAME", "EBILLING_SHARED_KEY")?.map(|(u, k)| {
                EbillingSettings {
                    username: u,
                    shared_key: Secret(k),
                    api_base: get("EBILLING_API_BASE", "https://lab.billing-easy.net"),
                    portal_base: get("EBILLING_PORTAL_BASE", "https://test.billing-easy.net"),
                    livemode: ebilling_live,
                }
            }),
            timeout: env.period("PAYRAIL_PROVIDER_TIMEOUT", "10s")?,
            poll_interval: env.period("PAYRAIL_PROVIDER_POLL_INTERVAL", "60s")?,
            poll_age: env.duration("PAYRAIL_PROVIDER_POLL_AGE", "5m")?,
            poll_max_age: env.period("PAYRAIL_PROVIDER_POLL_MAX_AGE", "7d")?,
            requery_interval: env.duration("PAYRAIL_PROVIDER_REQUERY_INTERVAL", "5s")?,
            breaker_threshold: env.positive("PAYRAIL_PROVIDER_BREAKER_THRESHOLD", "5")?,
            breaker_cooldown: env.duration("PAYRAIL_PROVIDER_BREAKER_COOLDOWN", "30s")?,
        })
    }
}
