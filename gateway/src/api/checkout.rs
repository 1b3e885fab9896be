//! The simulated provider's hosted checkout routes (`/sandbox/checkout/{id}` and its buttons).
//! The payment id in the URL is the customer's capability, as with any hosted checkout; only
//! sandbox payments of the simulated provider are served.

use entity::ids::PaymentId;
use entity::payment_status::PaymentStatus;
use poem::http::StatusCode;
use poem::web::{Data, Path, Redirect};
use poem::{IntoResponse, Response, handler};

use super::error::ApiError;
use crate::payments::service as payments;
use crate::providers::checkout;
use crate::state::AppState;

/// The hosted checkout page. The payment id in the URL is the customer's capability, as with
/// any hosted checkout; only sandbox payments of the simulated provider are served.
#[handler]
pub async fn checkout_page(state: Data<&AppState>, Path(id): Path<String>) -> Response {
    let Some(id) = PaymentId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such sandbox payment").into_response();
    };
    let Ok(Some(p)) = payments::find_simulated(&state.db, &id).await else {
        return (StatusCode::NOT_FOUND, "No such sandbox payment").into_response();
    };
    let html = checkout::render(&p);
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
    let Some(id) = PaymentId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such sandbox payment").into_response();
    };
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
    if let Err(e) = state.inbound.receive_simulated(&signature, &raw).await {
        let e = ApiError::from(e);
        return e.into_response();
    }
    Redirect::see_other(format!("/sandbox/checkout/{}", p.id)).into_response()
}
