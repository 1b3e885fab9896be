//! Configuration shared by both processes (database, broker, cache, their key prefixes) and the
//! reader every component uses for its own section.
//!
//! Each component owns its section (`worker::settings`, `gateway::settings`) and reads it
//! through one [`Env`], which remembers every name it was asked for. After all sections are
//! read, the binary asks [`Env::unknown`] for `PAYRAIL_*` variables nobody read: a typo stops
//! start-up naming the variable instead of being silently ignored. A malformed value stops it
//! too, naming the variable and saying what was expected.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// A secret from the environment: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl SettingsError {
    pub fn new(
        variable: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        SettingsError {
            variable,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// The longest duration any setting or query window accepts (about 100 years): far beyond
/// any sensible value, far below where `chrono` or `Instant` arithmetic would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `250ms`, `30s`, `5m`, `1h`, `30d`, `1h 30m` (humantime), bounded by [`MAX_DURATION`].
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e}; expected a duration such as 250ms, 30s, 5m, 1h or 30d"))?;
    if d > MAX_DURATION {
        return Err("longer than 100 years".into());
    }
    Ok(d)
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

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// A view of the environment (or of a map, in tests) that records what was read.
pub struct Env<'a> {
    lookup: Lookup<'a>,
    /// Every variable set, for [`Env::unknown`]; empty when reading from a map.
    present: Vec<String>,
    read: RefCell<BTreeSet<String>>,
}

impl Env<'static> {
    /// The process environment; empty values count as unset.
    pub fn process() -> Env<'static> {
        Env {
            lookup: Box::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            present: std::env::vars().map(|(k, _)| k).collect(),
            read: RefCell::default(),
        }
    }
}

impl<'a> Env<'a> {
    /// Reads through `lookup`, so tests can feed a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'a) -> Env<'a> {
        Env {
            lookup: Box::new(lookup),
            present: Vec::new(),
            read: RefCell::default(),
        }
    }

    /// Like [`Env::from_lookup`], with the names that are set, so [`Env::unknown`] can see them.
    pub fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Env<'a> {
        Env {
            lookup: Box::new(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
                    .filter(|v| !v.is_empty())
            }),
            present: pairs.iter().map(|(k, _)| k.to_string()).collect(),
            read: RefCell::default(),
        }
    }

    pub fn raw(&self, name: &str) -> Option<String> {
        self.read.borrow_mut().insert(name.to_string());
        (self.lookup)(name)
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    /// The variable parsed by `parse`, or `default` parsed the same way.
    pub fn parse<T>(
        &self,
        name: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SettingsError> {
        let value = self.string(name, default);
        parse(&value).map_err(|reason| SettingsError::new(name, value, reason))
    }

    pub fn duration(&self, name: &'static str, default: &str) -> Result<Duration, SettingsError> {
        self.parse(name, default, parse_duration)
    }

    /// A duration that must be longer than zero (an interval or a timeout).
    pub fn period(&self, name: &'static str, default: &str) -> Result<Duration, SettingsError> {
        self.parse(name, default, |v| match parse_duration(v)? {
            d if d.is_zero() => Err("must be longer than zero".into()),
            d => Ok(d),
        })
    }

    pub fn positive(&self, name: &'static str, default: &str) -> Result<u32, SettingsError> {
        self.parse(name, default, parse_positive)
    }

    pub fn bool(&self, name: &'static str, default: &str) -> Result<bool, SettingsError> {
        self.parse(name, default, parse_bool)
    }

    pub fn addr(&self, name: &'static str, default: &str) -> Result<SocketAddr, SettingsError> {
        self.parse(name, default, parse_addr)
    }

    /// A name-safe prefix for queues and cache keys.
    pub fn prefix(&self, name: &'static str) -> Result<String, SettingsError> {
        self.parse(name, "payrail", |v| {
            if v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                Ok(v.to_string())
            } else {
                Err("use letters, digits, '-', '_' or '.'".into())
            }
        })
    }

    /// Variables that are set, start with one of `prefixes`, and that no section read: typos.
    pub fn unknown(&self, prefixes: &[&str]) -> Vec<String> {
        let read = self.read.borrow();
        let mut unknown: Vec<String> = self
            .present
            .iter()
            .filter(|name| prefixes.iter().any(|p| name.starts_with(p)))
            .filter(|name| !read.contains(name.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        unknown
    }

    /// Fails on the first unknown variable under `prefixes`.
    pub fn refuse_unknown(&self, prefixes: &[&str]) -> Result<(), SettingsError> {
        match self.unknown(prefixes).into_iter().next() {
            None => Ok(()),
            Some(name) => Err(SettingsError {
                variable: "environment",
                value: name.clone(),
                reason: format!(
                    "{name} is not a setting this process knows (a typo?); see docs/configuration.md"
                ),
            }),
        }
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://payrail.db?mode=rwc";

/// How the processes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process: in-process bus, in-memory cache, the worker inside the gateway.
    Embedded,
    /// Gateways and workers apart, over RabbitMQ and Redis.
    Distributed,
}

/// The backends both processes connect to.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `PAYRAIL_MODE`; by default embedded only on SQLite with neither broker nor cache.
    pub mode: Mode,
    pub database_url: String,
    /// `None` selects embedded mode: in-process bus, in-memory cache, worker in the gateway.
    pub amqp_url: Option<String>,
    pub redis_url: Option<String>,
    pub amqp_prefix: String,
    pub redis_prefix: String,
    /// `PAYRAIL_DB_POOL_SIZE`: PostgreSQL connections this process may hold; unset, its role's
    /// default (`db::GATEWAY_POOL_SIZE`, `db::WORKER_POOL_SIZE`). SQLite always uses one.
    pub db_pool_size: Option<u32>,
    /// `PAYRAIL_EXPRESS_LANE` (distributed mode, default true): gateways push a copy of each
    /// event they publish at once to Redis, and workers fan those copies out without waiting
    /// for the broker's ([`crate::bus::express`]).
    pub express_lane: bool,
}

impl RuntimeSettings {
    /// Reads the backends and the mode, refusing a mixed configuration with a message that
    /// says what to change: a broker with SQLite, PostgreSQL without a broker and cache, or a
    /// mode that contradicts the URLs.
    pub fn read(env: &Env) -> Result<RuntimeSettings, SettingsError> {
        let database_url = env.string("DATABASE_URL", DEFAULT_DATABASE_URL);
        let amqp_url = env.raw("AMQP_URL");
        let redis_url = env.raw("REDIS_URL");
        let sqlite = database_url.starts_with("sqlite:");
        let mode = match env.raw("PAYRAIL_MODE").as_deref() {
            Some("embedded") => Mode::Embedded,
            Some("distributed") => Mode::Distributed,
            Some(other) => {
                return Err(SettingsError::new(
                    "PAYRAIL_MODE",
                    other,
                    "use embedded or distributed",
                ));
            }
            None if sqlite => Mode::Embedded,
            None => Mode::Distributed,
        };
        match mode {
            Mode::Embedded => {
                for (name, url) in [("AMQP_URL", &amqp_url), ("REDIS_URL", &redis_url)] {
                    if let Some(url) = url {
                        return Err(SettingsError::new(
                            name,
                            url.clone(),
                            "embedded mode uses an in-process bus and cache: unset it, or set PAYRAIL_MODE=distributed with a PostgreSQL DATABASE_URL",
                        ));
                    }
                }
            }
            Mode::Distributed => {
                if sqlite {
                    return Err(SettingsError::new(
                        "DATABASE_URL",
                        database_url,
                        "distributed mode needs PostgreSQL (several processes share it); for one process on SQLite set PAYRAIL_MODE=embedded and unset AMQP_URL and REDIS_URL",
                    ));
                }
                for (name, url) in [("AMQP_URL", &amqp_url), ("REDIS_URL", &redis_url)] {
                    if url.is_none() {
                        return Err(SettingsError::new(
                            name,
                            "",
                            "distributed mode (PostgreSQL) needs it; for one process set PAYRAIL_MODE=embedded",
                        ));
                    }
                }
            }
        }
        Ok(RuntimeSettings {
            mode,
            database_url,
            amqp_url,
            redis_url,
            amqp_prefix: env.prefix("PAYRAIL_AMQP_PREFIX")?,
            redis_prefix: env.prefix("PAYRAIL_REDIS_PREFIX")?,
            db_pool_size: env
                .raw("PAYRAIL_DB_POOL_SIZE")
                .map(|v| {
                    parse_positive(&v)
                        .map_err(|reason| SettingsError::new("PAYRAIL_DB_POOL_SIZE", v, reason))
                })
                .transpose()?,
            express_lane: env.bool("PAYRAIL_EXPRESS_LANE", "true")? && mode == Mode::Distributed,
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.mode == Mode::Embedded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_forms_and_are_bounded() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        // The value that wrapped around before: now refused instead of overflowing.
        assert!(parse_duration("213503982334602d").is_err());
        assert!(parse_duration("101y").is_err());
    }

    #[test]
    fn defaults_and_prefixes() {
        let env = Env::from_pairs(&[]);
        let s = RuntimeSettings::read(&env).unwrap();
        assert!(s.is_embedded());
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.amqp_prefix, "payrail");
        let env = Env::from_pairs(&[("PAYRAIL_AMQP_PREFIX", "a b")]);
        assert_eq!(
            RuntimeSettings::read(&env).unwrap_err().variable,
            "PAYRAIL_AMQP_PREFIX"
        );
    }

    #[test]
    fn a_pool_size_is_a_positive_number_or_the_roles_default() {
        let read =
            |v: &str| RuntimeSettings::read(&Env::from_pairs(&[("PAYRAIL_DB_POOL_SIZE", v)]));
        assert_eq!(read("12").unwrap().db_pool_size, Some(12));
        for bad in ["0", "-3", "many"] {
            assert_eq!(
                read(bad).unwrap_err().variable,
                "PAYRAIL_DB_POOL_SIZE",
                "{bad:?}"
            );
        }
        let unset = RuntimeSettings::read(&Env::from_pairs(&[])).unwrap();
        assert_eq!(unset.db_pool_size, None);
    }

    #[test]
    fn the_express_lane_is_on_in_distributed_mode_unless_turned_off() {
        let read = |pairs: &[(&str, &str)]| RuntimeSettings::read(&Env::from_pairs(pairs));
        let distributed = [
            ("DATABASE_URL", "postgres://x/db"),
            ("AMQP_URL", "amqp://x"),
            ("REDIS_URL", "redis://x"),
        ];
        assert!(read(&distributed).unwrap().express_lane);
        let off = [&distributed[..], &[("PAYRAIL_EXPRESS_LANE", "false")]].concat();
        assert!(!read(&off).unwrap().express_lane);
        let bad = [&distributed[..], &[("PAYRAIL_EXPRESS_LANE", "sometimes")]].concat();
        assert_eq!(read(&bad).unwrap_err().variable, "PAYRAIL_EXPRESS_LANE");
        // Embedded mode has no Redis to run it on.
        assert!(
            !read(&[("PAYRAIL_EXPRESS_LANE", "true")])
                .unwrap()
                .express_lane
        );
    }

    #[test]
    fn a_variable_no_section_read_is_named() {
        let env = Env::from_pairs(&[
            ("PAYRAIL_AMQP_PREFIX", "x"),
            ("PAYRAIL_WEBHOK_TIMEOUT", "1s"),
            ("HOME", "/root"),
        ]);
        RuntimeSettings::read(&env).unwrap();
        assert_eq!(env.unknown(&["PAYRAIL_"]), vec!["PAYRAIL_WEBHOK_TIMEOUT"]);
        let err = env.refuse_unknown(&["PAYRAIL_"]).unwrap_err();
        assert!(err.to_string().contains("PAYRAIL_WEBHOK_TIMEOUT"), "{err}");
        assert!(env.refuse_unknown(&["PAYRAIL_AMQP_"]).is_ok());
    }

    #[test]
    fn the_mode_is_explicit_or_follows_the_database_and_mixed_setups_are_refused() {
        let read = |pairs: &[(&str, &str)]| RuntimeSettings::read(&Env::from_pairs(pairs));
        let pg = ("DATABASE_URL", "postgres://x/db");
        let amqp = ("AMQP_URL", "amqp://x");
        let redis = ("REDIS_URL", "redis://x");
        assert_eq!(read(&[]).unwrap().mode, Mode::Embedded);
        assert_eq!(read(&[pg, amqp, redis]).unwrap().mode, Mode::Distributed);
        // PostgreSQL without a broker used to mean an in-memory bus, silently.
        assert_eq!(read(&[pg]).unwrap_err().variable, "AMQP_URL");
        assert_eq!(read(&[pg, amqp]).unwrap_err().variable, "REDIS_URL");
        // A broker on SQLite is neither mode.
        assert_eq!(read(&[amqp]).unwrap_err().variable, "AMQP_URL");
        assert_eq!(
            read(&[("PAYRAIL_MODE", "distributed"), amqp, redis])
                .unwrap_err()
                .variable,
            "DATABASE_URL"
        );
        // Chosen on purpose, embedded on PostgreSQL is allowed.
        assert_eq!(
            read(&[("PAYRAIL_MODE", "embedded"), pg]).unwrap().mode,
            Mode::Embedded
        );
        assert_eq!(
            read(&[("PAYRAIL_MODE", "cluster")]).unwrap_err().variable,
            "PAYRAIL_MODE"
        );
    }

    #[test]
    fn zero_periods_are_refused() {
        let env = Env::from_pairs(&[("X_INTERVAL", "0s")]);
        assert_eq!(
            env.period("X_INTERVAL", "1s").unwrap_err().variable,
            "X_INTERVAL"
        );
    }
}
