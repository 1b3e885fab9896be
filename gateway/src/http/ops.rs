//! Routes outside the merchant API for operators: `/metrics` and `/health/ready`
//! (`/health/live` is `runtime::metrics::live`).

use poem::web::Data;
use poem::{Response, handler};

use crate::core::metrics::{ApiMetrics, CircuitLabels};
use crate::http::state::AppState;

#[handler]
pub async fn metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    if let Some(delivery) = &state.delivery_metrics {
        delivery.refresh_backlog(&state.db, &state.bus).await;
    }
    refresh_gauges(&state.metrics, &state.db, &state.providers).await;
    state
        .metrics
        .dashboard_sockets
        .set(i64::try_from(state.live.sockets()).unwrap_or(i64::MAX));
    state
        .metrics
        .dashboard_listening
        .set(i64::from(state.live.listening()));
    runtime::metrics::scrape(&state.registry, req)
}

#[handler]
pub async fn ready(state: Data<&AppState>) -> Response {
    let database = runtime::db::ping(&state.db).await.is_ok();
    let broker = state.bus.ping().await.is_ok();
    let cache = state.cache.ping().await;
    for (dependency, up) in [("database", database), ("broker", broker), ("cache", cache)] {
        state.metrics.dependency_up(dependency, up);
    }
    // Ready means "can take payments": the database. Without the broker events wait in the
    // outbox; without the cache reads go to the database. Both only degrade.
    runtime::metrics::readiness(
        &[("database", database)],
        &[("broker", broker), ("cache", cache)],
    )
}

/// Reads the outbox, the unresolved payouts and the circuits into their gauges (at scrape
/// time, so they are right after any restart). A database that does not answer within a
/// second leaves them as they were.
async fn refresh_gauges(
    gauges: &ApiMetrics,
    db: &sea_orm::DatabaseConnection,
    providers: &crate::providers::Providers,
) {
    if let Ok(Ok((depth, oldest))) = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::core::relay::outbox(db),
    )
    .await
    {
        gauges
            .outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        gauges.outbox_oldest_age.set(oldest);
    }
    if let Ok(Ok(n)) = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::payouts::unresolved_count(db),
    )
    .await
    {
        gauges
            .payouts_unresolved
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Ok(Ok(n)) = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::reconciliation::open_count(db),
    )
    .await
    {
        gauges
            .reconciliation_open
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Ok(Ok(Some(days))) = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        runtime::partitions::days_covered(db, chrono::Utc::now().date_naive()),
    )
    .await
    {
        gauges.partitions_ahead.set(i64::from(days));
    }
    for (provider, circuit, state) in providers.circuits() {
        gauges
            .circuits
            .get_or_create(&CircuitLabels {
                provider: provider.into(),
                circuit: circuit.into(),
            })
            .set(state);
    }
}
