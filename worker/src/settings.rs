//! The worker's section of the configuration: its probe port and the webhook delivery knobs.
//! A bad value stops start-up with a message naming the variable; every knob is a field so
//! tests build settings directly with short intervals.

use std::net::SocketAddr;
use std::time::Duration;

use runtime::settings::{Env, RuntimeSettings, SettingsError};

use crate::sender::WebhookTargets;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub sweep_interval: Duration,
    pub batch_size: u64,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub timeout: Duration,
    pub immediate: bool,
    /// Where webhooks may go: public addresses, any, or loopback only.
    pub targets: crate::sender::WebhookTargets,
    /// The proxy webhooks go through, if any (`HTTP(S)_PROXY` is not used for them).
    pub proxy: Option<String>,
    /// `PAYRAIL_WEBHOOK_RETRY_SCHEDULE`: explicit delays that replace attempts and backoff.
    pub retry_schedule: Option<entity::retry::RetryPolicy>,
    /// Requests one worker keeps in flight to one endpoint, unless the endpoint sets its own.
    pub endpoint_concurrency: u32,
    /// An endpoint failing with no success for this long is disabled.
    pub disable_after: Duration,
    /// How long the secret replaced by a rotation keeps signing beside the new one.
    pub secret_overlap: Duration,
    /// A worker's claim on the rows it sends, renewed every quarter of it while it holds them:
    /// how soon a dead worker's rows are sent again by another (or by itself, restarted).
    pub lease: Duration,
}

impl WebhookSettings {
    /// `embedded` changes one default: a laptop's receiver is usually on localhost.
    pub fn read(env: &Env, embedded: bool) -> Result<WebhookSettings, SettingsError> {
        Ok(WebhookSettings {
            sweep_interval: env.period("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", "30s")?,
            batch_size: env.positive("PAYRAIL_WEBHOOK_BATCH_SIZE", "50")?.into(),
            max_attempts: env.positive("PAYRAIL_WEBHOOK_MAX_ATTEMPTS", "5")?,
            backoff_base: env.duration("PAYRAIL_WEBHOOK_BACKOFF_BASE", "1s")?,
            backoff_max: env.duration("PAYRAIL_WEBHOOK_BACKOFF_MAX", "60s")?,
            timeout: env.period("PAYRAIL_WEBHOOK_TIMEOUT", "10s")?,
            immediate: env.bool("PAYRAIL_WEBHOOK_IMMEDIATE", "true")?,
            targets: read_targets(env, embedded)?,
            proxy: env.raw("PAYRAIL_WEBHOOK_PROXY"),
            retry_schedule: env
                .raw("PAYRAIL_WEBHOOK_RETRY_SCHEDULE")
                .map(|text| {
                    entity::retry::RetryPolicy::parse_schedule(&text).map_err(|reason| {
                        SettingsError::new("PAYRAIL_WEBHOOK_RETRY_SCHEDULE", text, reason)
                    })
                })
                .transpose()?,
            endpoint_concurrency: env.positive("PAYRAIL_WEBHOOK_ENDPOINT_CONCURRENCY", "10")?,
            disable_after: env.period("PAYRAIL_WEBHOOK_DISABLE_AFTER", "5days")?,
            secret_overlap: env.duration("PAYRAIL_WEBHOOK_SECRET_OVERLAP", "24h")?,
            lease: env.parse("PAYRAIL_WEBHOOK_LEASE", "4s", |v| {
                match runtime::settings::parse_duration(v)? {
                    d if d < MIN_LEASE => Err(format!(
                        "must be at least {} ms: it is renewed every quarter of it",
                        MIN_LEASE.as_millis()
                    )),
                    d => Ok(d),
                }
            })?,
        })
    }

    /// The schedule when one is set; otherwise exponential backoff from the base, capped.
    pub fn retry_policy(&self) -> entity::retry::RetryPolicy {
        self.retry_schedule
            .clone()
            .unwrap_or(entity::retry::RetryPolicy::Exponential {
                base: self.backoff_base,
                max: self.backoff_max,
                max_attempts: self.max_attempts,
            })
    }

    /// How attempts' results are judged: the retry policy and when a failing endpoint is
    /// disabled.
    pub fn rules(&self) -> crate::deliveries::Rules {
        crate::deliveries::Rules {
            policy: self.retry_policy(),
            disable_after: self.disable_after,
        }
    }

    /// The worker's lease, renewed while it holds the rows ([`WebhookSettings::lease`]).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// A claim that is not renewed (the gateway's one attempt now: a test event, a manual
    /// retry) outlives the HTTP timeout with room to record the result, so the worker's sweep
    /// never takes it from a live claimant, and a dead one's row comes back soon after.
    pub fn one_shot_lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// The shortest lease allowed: renewals every quarter of it must not crowd the database.
const MIN_LEASE: Duration = Duration::from_millis(500);

/// `PAYRAIL_WEBHOOK_TARGETS`, or the older `PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS` (true means
/// `any`, false `public`) so an existing deployment keeps its meaning; both at once is refused.
fn read_targets(env: &Env, embedded: bool) -> Result<WebhookTargets, SettingsError> {
    const NAME: &str = "PAYRAIL_WEBHOOK_TARGETS";
    const OLD: &str = "PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS";
    let old = env.raw(OLD);
    match (env.raw(NAME), old) {
        (Some(_), Some(old)) => Err(SettingsError::new(
            OLD,
            old,
            format!("{NAME} replaces it; set only {NAME}"),
        )),
        (None, Some(_)) => Ok(if env.bool(OLD, "false")? {
            WebhookTargets::Any
        } else {
            WebhookTargets::Public
        }),
        _ => env.parse(
            NAME,
            if embedded {
                "public_or_loopback"
            } else {
                "public"
            },
            WebhookTargets::parse,
        ),
    }
}

/// The worker's own section.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Where the worker process serves `/metrics` and `/health/*`.
    pub bind: SocketAddr,
    pub webhook: WebhookSettings,
}

impl WorkerSettings {
    pub fn read(env: &Env, embedded: bool) -> Result<WorkerSettings, SettingsError> {
        Ok(WorkerSettings {
            bind: env.addr("PAYRAIL_WORKER_BIND", "127.0.0.1:9091")?,
            webhook: WebhookSettings::read(env, embedded)?,
        })
    }
}

/// Everything the worker process reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub runtime: RuntimeSettings,
    pub worker: WorkerSettings,
}

impl Settings {
    /// The variable families this process owns: an unknown name in them is a typo. Other
    /// `PAYRAIL_*` names may belong to the gateway, which shares its environment in most
    /// deployments, so the worker leaves them to it.
    pub const OWNED_PREFIXES: &[&str] = &["PAYRAIL_WEBHOOK_", "PAYRAIL_WORKER_"];

    pub fn read(env: &Env) -> Result<Settings, SettingsError> {
        let runtime = RuntimeSettings::read(env)?;
        let worker = WorkerSettings::read(env, runtime.is_embedded())?;
        Ok(Settings { runtime, worker })
    }

    /// Reads the process environment and refuses unknown variables of its own families.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let env = Env::process();
        let settings = Settings::read(&env)?;
        env.refuse_unknown(Self::OWNED_PREFIXES)?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::read(&Env::from_pairs(&[])).unwrap();
        let w = &s.worker.webhook;
        assert_eq!(w.sweep_interval, Duration::from_secs(30));
        assert_eq!(w.batch_size, 50);
        assert_eq!(w.max_attempts, 5);
        assert_eq!(w.timeout, Duration::from_secs(10));
        assert!(w.immediate);
        assert_eq!(
            w.targets,
            WebhookTargets::PublicOrLoopback,
            "embedded mode reaches this machine and the internet, not the LAN or a metadata service"
        );
        assert_eq!(w.endpoint_concurrency, 10);
        assert_eq!(w.disable_after, Duration::from_secs(5 * 24 * 3600));
        assert_eq!(w.secret_overlap, Duration::from_secs(24 * 3600));
        assert_eq!(w.lease(), Duration::from_secs(4));
        assert_eq!(w.one_shot_lease(), Duration::from_secs(25));
        assert_eq!(w.retry_policy(), entity::retry::RetryPolicy::default());
        let real = Settings::read(&Env::from_pairs(&[
            ("DATABASE_URL", "postgres://x/db"),
            ("AMQP_URL", "amqp://x"),
            ("REDIS_URL", "redis://x"),
        ]))
        .unwrap();
        assert_eq!(
            real.worker.webhook.targets,
            WebhookTargets::Public,
            "real mode refuses private targets by default"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::read(&Env::from_pairs(&[("PAYRAIL_WEBHOOK_BATCH_SIZE", "lots")]))
            .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_BATCH_SIZE");
        assert!(err.to_string().contains("PAYRAIL_WEBHOOK_BATCH_SIZE"));
        let err = Settings::read(&Env::from_pairs(&[(
            "PAYRAIL_WEBHOOK_SWEEP_INTERVAL",
            "30",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_SWEEP_INTERVAL");
        let err =
            Settings::read(&Env::from_pairs(&[("PAYRAIL_WEBHOOK_TIMEOUT", "0s")])).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_TIMEOUT");
        assert!(Settings::read(&Env::from_pairs(&[("PAYRAIL_WORKER_BIND", "nowhere")])).is_err());
        let err = Settings::read(&Env::from_pairs(&[(
            "PAYRAIL_WEBHOOK_RETRY_SCHEDULE",
            "5s,soon",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_RETRY_SCHEDULE");
        let err =
            Settings::read(&Env::from_pairs(&[("PAYRAIL_WEBHOOK_LEASE", "100ms")])).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_LEASE");
        assert!(err.to_string().contains("at least 500 ms"), "{err}");
        let short = Settings::read(&Env::from_pairs(&[("PAYRAIL_WEBHOOK_LEASE", "1s")]))
            .expect("a 1 s lease");
        assert_eq!(short.worker.webhook.lease(), Duration::from_secs(1));
    }

    #[test]
    fn targets_are_named_and_the_old_boolean_keeps_its_meaning() {
        let targets = |pairs: &[(&str, &str)]| {
            Settings::read(&Env::from_pairs(pairs)).map(|s| s.worker.webhook.targets)
        };
        assert_eq!(
            targets(&[("PAYRAIL_WEBHOOK_TARGETS", "loopback")]).unwrap(),
            WebhookTargets::Loopback
        );
        assert_eq!(
            targets(&[("PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS", "true")]).unwrap(),
            WebhookTargets::Any
        );
        assert_eq!(
            targets(&[("PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS", "false")]).unwrap(),
            WebhookTargets::Public
        );
        let err = targets(&[("PAYRAIL_WEBHOOK_TARGETS", "private")]).unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_WEBHOOK_TARGETS");
        let err = targets(&[
            ("PAYRAIL_WEBHOOK_TARGETS", "loopback"),
            ("PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS");
    }

    #[test]
    fn a_retry_schedule_replaces_attempts_and_backoff() {
        let s = Settings::read(&Env::from_pairs(&[
            ("PAYRAIL_WEBHOOK_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h"),
            ("PAYRAIL_WEBHOOK_MAX_ATTEMPTS", "3"),
        ]))
        .unwrap();
        let policy = s.worker.webhook.retry_policy();
        assert_eq!(policy.max_attempts(), 8);
        assert_eq!(policy.span(), Duration::from_secs(99_305));
    }

    #[test]
    fn a_typo_in_the_workers_families_is_refused_and_the_gateways_names_are_left_alone() {
        let pairs = [
            ("PAYRAIL_WEBHOOK_SWEEP_INTERVALL", "1s"),
            ("PAYRAIL_RELAY_INTERVAL", "1s"),
        ];
        let env = Env::from_pairs(&pairs);
        Settings::read(&env).unwrap();
        assert_eq!(
            env.unknown(Settings::OWNED_PREFIXES),
            vec!["PAYRAIL_WEBHOOK_SWEEP_INTERVALL"]
        );
    }
}
