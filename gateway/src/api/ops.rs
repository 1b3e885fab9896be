//! Routes outside the merchant API: `/metrics`, `/health/live`, `/health/ready`, and the
//! simulated provider's hosted checkout page (`/sandbox/checkout/{id}`).

use entity::payment_status::PaymentStatus;
use poem::http::StatusCode;
use poem::web::{Data, Path, Redirect};
use poem::{IntoResponse, Response, handler};

use crate::services::payments;
use crate::state::AppState;

#[handler]
pub async fn metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    if let Some(delivery) = &state.delivery_metrics {
        delivery.refresh_backlog(&state.db, &state.bus).await;
    }
    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok());
    let (content_type, body) = worker::metrics::encode_for(&state.registry, accept);
    Response::builder().content_type(content_type).body(body)
}

#[handler]
pub fn live() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

#[handler]
pub async fn ready(state: Data<&AppState>) -> Response {
    let database = worker::db::ping(&state.db).await.is_ok();
    let broker = state.bus.ping().await.is_ok();
    let cache = state.cache.ping().await;
    let ok = database && broker && cache;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "checks": {"database": database, "broker": broker, "cache": cache},
    });
    Response::builder()
        .status(if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        .content_type("application/json")
        .body(body.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The hosted checkout page. The payment id in the URL is the customer's capability, as with
/// any hosted checkout; only sandbox payments of the simulated provider are served.
#[handler]
pub async fn checkout_page(state: Data<&AppState>, Path(id): Path<String>) -> Response {
    let Ok(Some(p)) = payments::find_simulated(&state.db, &id).await else {
        return (StatusCode::NOT_FOUND, "No such sandbox payment").into_response();
    };
    let open = !PaymentStatus::parse(&p.status).is_some_and(PaymentStatus::is_final);
    let buttons = if open {
        format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/succeeded"><button>Pay</button></form>
<form method="post" action="/sandbox/checkout/{id}/failed"><button>Decline</button></form>
<form method="post" action="/sandbox/checkout/{id}/cancelled"><button>Cancel</button></form>"#,
            id = escape(&p.id)
        )
    } else {
        String::new()
    };
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Payrail sandbox checkout</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}form{{display:inline}}button{{margin:.3rem;padding:.5rem 1rem}}</style></head>
<body><h1>Sandbox checkout</h1><p>{desc}</p><p><strong>{amount} {currency}</strong> (minor units)</p>
<p>Status: <strong id="status">{status}</strong></p>{buttons}</body></html>"#,
        desc = escape(p.description.as_deref().unwrap_or("Payment")),
        amount = p.amount,
        currency = escape(&p.currency),
        status = escape(&p.status),
    );
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// A button on the checkout page: the simulated provider sends its signed webhook.
#[handler]
pub async fn checkout_action(
    state: Data<&AppState>,
    Path((id, outcome)): Path<(String, String)>,
) -> Response {
    let Ok(Some(p)) = payments::find_simulated(&state.db, &id).await else {
        return (StatusCode::NOT_FOUND, "No such sandbox payment").into_response();
    };
    let Some(outcome) = PaymentStatus::parse(&outcome).filter(|o| {
        matches!(
            o,
            PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Cancelled
        )
    }) else {
        return (StatusCode::NOT_FOUND, "No such action").into_response();
    };
    let (raw, signature) = state.simulated.event_for(&p.id, outcome);
    if let Err(e) = crate::inbound::receive_simulated(&state, &signature, &raw).await {
        return e.into_response();
    }
    Redirect::see_other(format!("/sandbox/checkout/{}", p.id)).into_response()
}
