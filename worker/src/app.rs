//! The worker process: the [`Worker`] plus its own small HTTP server for `/metrics` and the
//! health checks. `build` binds (port 0 in tests), `run_until_stopped` takes the shutdown
//! signal, so tests start it exactly as production does.

use std::future::Future;
use std::sync::Arc;

use entity::bus::QueueNames;
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{EndpointExt, Response, Route, Server, get, handler};
use prometheus_client::registry::Registry;
use sea_orm::DatabaseConnection;

use runtime::bus::{EventBus, ExpressSource};
use runtime::cache::Cache;
use runtime::db;

use crate::metrics::DeliveryMetrics;
use crate::{Settings, Worker};

pub struct WorkerApplication {
    worker: Worker,
    acceptor: TcpAcceptor,
    port: u16,
    probe: Probe,
}

/// What `/metrics` and `/health/ready` look at.
#[derive(Clone)]
pub struct Probe {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub registry: Arc<Registry>,
    pub metrics: Arc<DeliveryMetrics>,
}

impl WorkerApplication {
    pub async fn build(settings: Settings) -> anyhow::Result<WorkerApplication> {
        let amqp_url = settings
            .runtime
            .amqp_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the worker runs on its own only with AMQP_URL set; in embedded mode it runs inside the gateway"))?;
        let (db, pool_size) =
            db::connect_process_pool(&settings.runtime, db::WORKER_POOL_SIZE).await?;
        let bus = EventBus::amqp(&amqp_url, QueueNames::new(&settings.runtime.amqp_prefix));
        if let Err(e) = bus.declare().await {
            tracing::warn!(error = %e, "could not declare the broker topology yet; the consumer retries");
        }
        // Endpoints' rate limits are counted in Redis, so they hold across workers.
        let counters = match &settings.runtime.redis_url {
            Some(url) => Cache::redis(url, &settings.runtime.redis_prefix).await?,
            None => Cache::memory(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(db::PoolCollector::new(db.clone(), pool_size)));
        let (worker, metrics) = Worker::registered(
            db.clone(),
            bus.clone(),
            counters,
            settings.worker.webhook.clone(),
            &mut registry,
        )?;
        let express = match (&settings.runtime.redis_url, settings.runtime.express_lane) {
            (Some(url), true) => Some(ExpressSource::redis(url, &settings.runtime.redis_prefix)?),
            _ => None,
        };
        let worker = worker.with_express(express);
        let (acceptor, local) = runtime::metrics::bind(settings.worker.bind).await?;
        let port = local.port();
        let probe = Probe {
            db,
            bus,
            registry: Arc::new(registry),
            metrics,
        };
        Ok(WorkerApplication {
            worker,
            acceptor,
            port,
            probe,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let routes = probe_routes().data(self.probe);
        let server = tokio::spawn(async move {
            let mut rx = rx;
            Server::new_with_acceptor(self.acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async move {
                        let _ = rx.changed().await;
                    },
                    None,
                )
                .await
        });
        self.worker.run_until_stopped(shutdown).await?;
        let _ = tx.send(true);
        let _ = server.await;
        Ok(())
    }
}

/// `/metrics`, `/health/live`, `/health/ready`, for the worker process.
pub fn probe_routes() -> Route {
    Route::new()
        .at("/metrics", get(metrics_endpoint))
        .at("/health/live", get(runtime::metrics::live))
        .at("/health/ready", get(ready))
}

#[handler]
async fn metrics_endpoint(req: &poem::Request, probe: Data<&Probe>) -> Response {
    probe.metrics.refresh_backlog(&probe.db, &probe.bus).await;
    runtime::metrics::scrape(&probe.registry, req)
}

#[handler]
async fn ready(probe: Data<&Probe>) -> Response {
    let database = db::ping(&probe.db).await.is_ok();
    let broker = probe.bus.ping().await.is_ok();
    // The worker cannot deliver without either.
    runtime::metrics::readiness(&[("database", database), ("broker", broker)], &[])
}
