//! Building and running the gateway. `Application::build` binds the listener (port 0 in
//! tests) and wires the backends chosen by the settings; `run_until_stopped` serves until
//! the shutdown signal, then stops taking requests, finishes those in flight, drains the
//! outbox once more and (embedded mode) stops the worker.

pub mod retention;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use entity::bus::QueueNames;
use entity::signature::sha256_hex;
use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Route, Server, get, post};
use prometheus_client::registry::Registry;
use runtime::bus::{EventBus, Express};
use runtime::cache::Cache;
use runtime::db;
use tokio::sync::watch;
use worker::Worker;

use crate::app::retention::Retention;
use crate::core::effects::Effects;
use crate::core::metrics::ApiMetrics;
use crate::core::relay::Relay;
use crate::http::api;
use crate::http::dashboard;
use crate::http::middleware::{observe, public_limit};
use crate::http::state::AppState;
use crate::merchants;
use crate::payments::inbound::poller::Poller;
use crate::payments::inbound::{Inbound, RequeryThrottle};
use crate::providers::Providers;
use crate::providers::simulated::SimulatedProvider;
use crate::settings::Settings;

pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    metrics_acceptor: TcpAcceptor,
    metrics_port: u16,
    state: AppState,
    relay_interval: Duration,
    embedded_worker: Option<Worker>,
    poller: Poller,
    usage_check_schedule: &'static str,
    usage_flush_interval: Duration,
    funds_release_interval: Duration,
    ledger_check_schedule: &'static str,
    reconcile_schedule: &'static str,
    reconcile_window: Duration,
    retention: Retention,
}

/// What embedded mode printed at first start.
pub struct Bootstrap {
    pub api_key: String,
    pub admin_token: Option<String>,
    /// The dashboard owner made at first start, and its password (shown once).
    pub dashboard_email: String,
    pub dashboard_password: String,
}

/// Embedded mode's first dashboard user.
pub const BOOTSTRAP_OWNER_EMAIL: &str = "owner@payrail.localhost";

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let embedded = settings.is_embedded();
        let mut admin_hashes = Vec::new();
        match (&settings.gateway.admin_token, embedded) {
            (Some(token), _) => admin_hashes.push(sha256_hex(token.0.as_bytes())),
            (None, false) => {
                anyhow::bail!("PAYRAIL_ADMIN_TOKEN is required when AMQP_URL is set (real mode)")
            }
            (None, true) => {}
        }
        let dashboard_secret = match (&settings.gateway.dashboard.secret, embedded) {
            (Some(secret), _) => secret.0.clone(),
            (None, false) => anyhow::bail!(
                "PAYRAIL_DASHBOARD_SECRET is required when AMQP_URL is set (real mode): every gateway signs and checks dashboard sessions with it"
            ),
            (None, true) => entity::ids::random_token(48),
        };
        let (db, pool_size) =
            db::connect_process_pool(&settings.runtime, db::GATEWAY_POOL_SIZE).await?;
        if embedded {
            db::migrate(&db).await?;
        }
        let bus = match &settings.runtime.amqp_url {
            Some(url) => EventBus::amqp(url, QueueNames::new(&settings.runtime.amqp_prefix)),
            None => EventBus::in_process(),
        };
        // Declare the topology now, so a gateway started before any worker (the README's
        // order) publishes into a queue that exists. A broker that is down only delays it:
        // the outbox holds events and every later connection declares again.
        if let Err(e) = bus.declare().await {
            tracing::warn!(error = %e, "could not declare the broker topology yet; the outbox holds events until the broker answers");
        }
        let cache = match (&settings.runtime.redis_url, embedded) {
            (Some(url), _) => Cache::redis(url, &settings.runtime.redis_prefix).await?,
            (None, true) => Cache::memory(),
            (None, false) => {
                anyhow::bail!("REDIS_URL is required when AMQP_URL is set (real mode)")
            }
        };
        let (acceptor, local) = runtime::metrics::bind(settings.gateway.bind).await?;
        let (metrics_acceptor, metrics_local) =
            runtime::metrics::bind(settings.gateway.metrics_bind).await?;
        let metrics_port = metrics_local.port();
        let public_url = settings
            .gateway
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let mut registry = Registry::default();
        let metrics = Arc::new(ApiMetrics::new(&mut registry));
        registry.register_collector(Box::new(db::PoolCollector::new(db.clone(), pool_size)));
        let password_checks = crate::merchants::users::PasswordChecks::new();
        let limiter = crate::merchants::rate_limits::Limiter::new(cache.clone());
        registry.register(
            "rate_limit_fallbacks",
            "Rate-limit decisions taken by this gateway's own buckets because Redis failed or was slow",
            limiter.fallbacks.clone(),
        );
        registry.register(
            "dashboard_password_checks",
            "Dashboard passwords checked (Argon2id); a sign-in refused before its check is not counted",
            password_checks.done.clone(),
        );
        let (delivery_metrics, embedded_worker) = if embedded {
            let (w, dm) = Worker::registered(
                db.clone(),
                bus.clone(),
                cache.clone(),
                settings.worker.webhook.clone(),
                &mut registry,
            )?;
            (Some(dm), Some(w))
        } else {
            (None, None)
        };
        let express = match (&settings.runtime.redis_url, settings.runtime.express_lane) {
            (Some(url), true) => Some(Express::redis(url, &settings.runtime.redis_prefix).await?),
            _ => None,
        };
        let relay = Relay::new(db.clone(), bus.clone(), settings.gateway.relay_writer_grace)
            .with_express(
                express,
                metrics.express_pushes.clone(),
                metrics.express_slow_pushes.clone(),
            );
        let effects = Effects {
            db: db.clone(),
            bus: bus.clone(),
            relay,
            cache: cache.clone(),
            metrics: metrics.clone(),
        };
        let providers = Arc::new(Providers::new(&settings.gateway.providers)?);
        let simulated = Arc::new(SimulatedProvider::new(
            settings
                .gateway
                .simulated_webhook_secret
                .as_ref()
                .map(|s| s.0.as_str()),
        ));
        let inbound = Inbound {
            effects: effects.clone(),
            providers: providers.clone(),
            simulated: simulated.clone(),
            throttle: RequeryThrottle::new(settings.gateway.providers.requery_interval),
            funds: settings.gateway.funds,
        };
        let poller = Poller::new(inbound.clone(), &settings.gateway.providers);
        let retention = Retention {
            db: db.clone(),
            logs: settings.gateway.retention.logs,
            idempotency_keys: settings.gateway.retention.idempotency_keys,
            events: settings.gateway.retention.events,
        };
        let state = AppState {
            db,
            bus,
            cache,
            metrics,
            effects,
            inbound,
            delivery_metrics,
            registry: Arc::new(registry),
            providers,
            simulated,
            public_url,
            max_webhook_endpoints: settings.gateway.max_webhook_endpoints,
            default_plan: settings.gateway.default_plan,
            funds: settings.gateway.funds,
            reconcile_window: settings.gateway.reconcile_window,
            test_sender: worker::manual::WebhookSender::new(
                settings.worker.webhook.timeout,
                settings.worker.webhook.targets,
                settings.worker.webhook.proxy.as_deref(),
            )?,
            webhook: settings.worker.webhook.clone(),
            rate_limit: settings.gateway.rate_limit,
            limiter: limiter.clone(),
            public_rate_limit: settings.gateway.public_rate_limit,
            live: crate::http::dashboard::live::LiveHub::default(),
            quotas: Arc::default(),
            dashboard: crate::merchants::users::SessionKeys::new(
                dashboard_secret.as_bytes(),
                settings.gateway.dashboard.access_ttl,
                settings.gateway.dashboard.refresh_ttl,
            ),
            admin_token_hashes: Arc::new(RwLock::new(admin_hashes)),
            password_checks,
            trusted_proxies: settings.gateway.trusted_proxies.clone(),
        };
        Ok(Application {
            acceptor,
            port: local.port(),
            metrics_acceptor,
            metrics_port,
            state,
            relay_interval: settings.gateway.relay_interval,
            embedded_worker,
            poller,
            retention,
            usage_flush_interval: settings.gateway.usage_flush_interval,
            usage_check_schedule: settings.gateway.usage_check_schedule,
            funds_release_interval: settings.gateway.funds_release_interval,
            ledger_check_schedule: settings.gateway.ledger_check_schedule,
            reconcile_schedule: settings.gateway.reconcile_schedule,
            reconcile_window: settings.gateway.reconcile_window,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the operators' listener (`/metrics`, `/health/*`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Embedded mode's first start: a sandbox merchant, its key, and (unless one is
    /// configured) an admin token valid for this process. `None` when merchants exist.
    pub async fn bootstrap_sandbox(&self) -> anyhow::Result<Option<Bootstrap>> {
        if merchants::any_exist(&self.state.db).await? {
            return Ok(None);
        }
        let created =
            merchants::create(&self.state.db, "Sandbox merchant", self.state.default_plan).await?;
        let (owner, password) = merchants::users::create_user(
            &self.state.db,
            &created.merchant.id,
            BOOTSTRAP_OWNER_EMAIL,
            entity::status::UserRole::Owner,
        )
        .await
        .map_err(|e| anyhow::anyhow!("dashboard owner: {e}"))?;
        let mut hashes = self
            .state
            .admin_token_hashes
            .write()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        let admin_token = if hashes.is_empty() {
            let token = format!("adm_{}", entity::ids::random_token(32));
            hashes.push(sha256_hex(token.as_bytes()));
            Some(token)
        } else {
            None
        };
        Ok(Some(Bootstrap {
            api_key: created.api_key,
            admin_token,
            dashboard_email: owner.email,
            dashboard_password: password,
        }))
    }

    pub fn routes(state: &AppState) -> impl poem::Endpoint + 'static {
        let service = api::service(&state.public_url);
        let documents = api::Documents::new(&state.public_url);
        let docs = get(poem::endpoint::make_sync({
            let documents = documents.clone();
            move |_| documents.page()
        }));
        let spec = get(poem::endpoint::make_sync(move |_| documents.spec()));
        let metrics = state.metrics.clone();
        let db = state.db.clone();
        let bus = state.bus.clone();
        let cache = state.cache.clone();
        Route::new()
            .nest("/", service)
            .at("/docs", docs)
            .at("/openapi.json", spec)
            .at("/health/live", get(runtime::metrics::live))
            .at("/health/ready", get(crate::http::ops::ready))
            .at(
                "/v1/payments/:id/qr",
                get(crate::http::checkout::qr::payment_qr).around(public_limit),
            )
            .nest("/dashboard", dashboard::routes())
            .at(
                "/sandbox/checkout/:id",
                get(crate::http::checkout::checkout_page).around(public_limit),
            )
            .at(
                "/sandbox/checkout/:id/:outcome",
                post(crate::http::checkout::checkout_action).around(public_limit),
            )
            .data(state.clone())
            .around(move |ep, req| {
                observe(
                    ep,
                    req,
                    metrics.clone(),
                    db.clone(),
                    bus.clone(),
                    cache.clone(),
                )
            })
    }

    /// The operators' routes, on their own listener so `/metrics` is not on the public port.
    pub fn probe_routes(state: &AppState) -> impl poem::Endpoint + 'static {
        Route::new()
            .at("/metrics", get(crate::http::ops::metrics))
            .at("/health/live", get(runtime::metrics::live))
            .at("/health/ready", get(crate::http::ops::ready))
            .data(state.clone())
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let relay = tokio::spawn(
            self.state
                .effects
                .relay
                .clone()
                .run(self.relay_interval, stop_rx.clone()),
        );
        let poller = tokio::spawn(self.poller.run(stop_rx.clone()));
        let live = self.state.live.clone();
        let hub = tokio::spawn(live.clone().run(self.state.bus.clone(), stop_rx.clone()));
        // Open dashboard sockets would hold the graceful shutdown to its timeout: they are
        // closed as soon as shutdown begins.
        let shutdown = async move {
            shutdown.await;
            live.close();
        };
        let retention = tokio::spawn(self.retention.run(stop_rx.clone()));
        let usage_check = tokio::spawn(check_usage_until_stopped(
            self.state.clone(),
            self.usage_check_schedule,
            stop_rx.clone(),
        ));
        let usage = tokio::spawn(flush_usage_until_stopped(
            self.state.clone(),
            self.usage_flush_interval,
            stop_rx.clone(),
        ));
        let funds = tokio::spawn(release_funds_until_stopped(
            self.state.clone(),
            self.funds_release_interval,
            stop_rx.clone(),
        ));
        let ledger_check = tokio::spawn(check_ledger_until_stopped(
            self.state.clone(),
            self.ledger_check_schedule,
            stop_rx.clone(),
        ));
        let reconcile = tokio::spawn(reconcile_until_stopped(
            self.state.clone(),
            self.reconcile_schedule,
            self.reconcile_window,
            stop_rx.clone(),
        ));
        let worker = self.embedded_worker.map(|w| {
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                w.run_until_stopped(async move {
                    let _ = rx.changed().await;
                })
                .await
            })
        });
        let probes = Self::probe_routes(&self.state);
        let mut probes_stop = stop_rx.clone();
        let probes = tokio::spawn(
            Server::new_with_acceptor(self.metrics_acceptor).run_with_graceful_shutdown(
                probes,
                async move {
                    let _ = probes_stop.changed().await;
                },
                Some(Duration::from_secs(5)),
            ),
        );
        let app = Self::routes(&self.state);
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(15)))
            .await?;
        tracing::info!("gateway stopped accepting; draining the outbox");
        let _ = stop_tx.send(true);
        let _ = relay.await;
        let _ = poller.await;
        let _ = hub.await;
        let _ = retention.await;
        let _ = usage.await;
        let _ = usage_check.await;
        let _ = funds.await;
        let _ = ledger_check.await;
        let _ = reconcile.await;
        // What was counted since the last flush (all of it, in embedded mode) is kept.
        if let Err(e) = runtime::usage::flush(&self.state.db, &self.state.cache).await {
            tracing::warn!(error = %e, "final usage flush failed; Redis keeps the counts for the next start");
        }
        let _ = probes.await;
        if let Err(e) = self.state.effects.relay.drain_before_stop().await {
            tracing::warn!(error = %e, "final outbox drain failed; the next start publishes what is left");
        }
        if let Some(w) = worker {
            let _ = w.await;
        }
        Ok(())
    }
}

/// Makes matured pending funds available every `every` until stopped.
async fn release_funds_until_stopped(
    state: AppState,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    runtime::schedule::run(
        "funds release",
        runtime::schedule::Schedule::Every(every),
        stop,
        move || {
            let state = state.clone();
            async move {
                match crate::ledger::release_matured(&state.db, 500).await {
                    Ok(n) => state.metrics.funds_released.inc_by(n as u64),
                    Err(e) => {
                        tracing::warn!(error = %e, "releasing matured funds failed; the next pass retries");
                        0
                    }
                };
            }
        },
    )
    .await
}

/// Verifies the ledger's invariants on `schedule` (hourly by default); what breaks them is
/// counted in `ledger_invariant_violations_total`, which pages, and logged.
async fn check_ledger_until_stopped(
    state: AppState,
    schedule: &'static str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    runtime::schedule::run(
        "ledger check",
        runtime::schedule::Schedule::Calendar(schedule),
        stop,
        move || {
            let state = state.clone();
            async move { crate::ledger::check::run_and_count(&state.db, &state.metrics).await }
        },
    )
    .await
}

/// Reconciles the ledger with the providers' reports on `schedule` (daily by default), once
/// per firing across all gateways.
async fn reconcile_until_stopped(
    state: AppState,
    schedule: &'static str,
    window: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    runtime::schedule::run(
        "reconciliation",
        runtime::schedule::Schedule::Calendar(schedule),
        stop,
        move || {
            let state = state.clone();
            async move {
                // Every gateway fires the same cron second: the minute names the run.
                let slot = chrono::Utc::now().format("%Y-%m-%dT%H:%M").to_string();
                match crate::reconciliation::run_once(&state.db, &state.providers, window, Some(&slot))
                    .await
                {
                    Ok(Some(summary)) => {
                        state.metrics.reconciliation_run("completed");
                        tracing::info!(checked = summary.checked, found = summary.found, matched = summary.matched, open = summary.open, "reconciliation run");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        state.metrics.reconciliation_run("failed");
                        tracing::error!(error = %e, "reconciliation run failed; the next one retries");
                    }
                }
            }
        },
    )
    .await
}

/// Moves usage counts from the cache to the database every `every` until stopped.
async fn flush_usage_until_stopped(
    state: AppState,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    runtime::schedule::run(
        "usage flush",
        runtime::schedule::Schedule::Every(every),
        stop,
        move || {
            let state = state.clone();
            async move {
                match runtime::usage::flush(&state.db, &state.cache).await {
                    Ok(n) => {
                        state.metrics.usage_flushed.inc_by(n as u64);
                    }
                    Err(e) => {
                        state.metrics.usage_flush_failures.inc();
                        tracing::warn!(error = %e, "usage flush failed; the counts wait in the cache");
                    }
                };
            }
        },
    )
    .await
}

/// Checks usage against the plans' limits on `schedule` (daily at 06:00 UTC by default): the
/// first crossing of 80 % and 95 % each month is alerted once (log entry + webhook).
async fn check_usage_until_stopped(
    state: AppState,
    schedule: &'static str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    runtime::schedule::run(
        "usage thresholds",
        runtime::schedule::Schedule::Calendar(schedule),
        stop,
        move || {
            let state = state.clone();
            async move {
                match crate::usage::alerts::check_thresholds_once(&state.deps(), chrono::Utc::now()).await {
                    Ok(alerted) => {
                        state.metrics.usage_thresholds.inc_by(alerted.len() as u64);
                        if !alerted.is_empty() {
                            tracing::info!(alerts = alerted.len(), "usage thresholds reached");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "usage threshold check failed; the next run retries"),
                }
            }
        },
    )
    .await
}
