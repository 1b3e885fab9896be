//! Routes outside the merchant API for operators: `/metrics` and `/health/ready`
//! (`/health/live` is `runtime::metrics::live`).

use poem::web::Data;
use poem::{Response, handler};

use crate::http::state::AppState;

#[handler]
pub async fn metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    if let Some(delivery) = &state.delivery_metrics {
        delivery.refresh_backlog(&state.db, &state.bus).await;
    }
    state.metrics.refresh(&state.db, &state.providers).await;
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
