//! The simulated provider's hosted checkout routes (`/sandbox/checkout/{id}` and its buttons).
//! The payment id in the URL is the customer's capability, as with any hosted checkout; only
//! sandbox payments of the simulated provider are served.
//!
//! The buttons are form posts protected against cross-site request forgery by a double-submit
//! token: the page sets a random token in a `SameSite=Strict`, `HttpOnly` cookie and in each
//! form; a post whose two copies differ (or lack one) is refused with 403 and changes nothing.
//! Once the payment is final the customer is sent to the merchant's `return_url`, with
//! `payment_id` and `status` added to its query.

pub mod page;
pub mod qr;

use entity::ids::PaymentId;
use entity::payment_status::PaymentStatus;
use entity::payments;
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Path, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use self::page::CheckoutView;
use crate::http::api::error::ApiError;
use crate::http::csrf;
use crate::http::state::AppState;
use crate::payments::service as payments_service;

const CSRF_COOKIE: &str = "payrail_checkout_csrf";

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "No such sandbox payment").into_response()
}

/// The merchant's `return_url` with the payment's id and status, for a final payment.
fn return_to(p: &payments::Model) -> Option<String> {
    let mut url = url::Url::parse(p.return_url.as_deref()?).ok()?;
    if !p.status.is_final() {
        return None;
    }
    url.query_pairs_mut()
        .append_pair("payment_id", &p.id)
        .append_pair("status", p.status.as_str());
    Some(url.to_string())
}

/// The checkout's pages: their own inline style, images from here, forms posting here (and
/// on to the merchant's `return_url`), never framed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'";

/// The hosted checkout page, with a fresh CSRF token in its forms and its cookie.
#[handler]
pub async fn checkout_page(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else {
        return not_found();
    };
    let Ok(Some(p)) = payments_service::find_simulated(&state.db, &id).await else {
        return not_found();
    };
    // The token this browser already holds, when it holds one: a checkout open in two tabs
    // (or reloaded) keeps both forms valid; a new token would void the other tab's.
    let token = csrf::held_token(req, CSRF_COOKIE).unwrap_or_else(csrf::new_token);
    let merchant = crate::merchants::get(&state.db, &p.merchant_id)
        .await
        .map(|m| m.name)
        .unwrap_or_default();
    let qr = p
        .checkout_url
        .as_deref()
        .and_then(|url| crate::http::checkout::qr::svg(url, "QR code of this checkout page").ok());
    let return_url = return_to(&p);
    let html = page::render(
        &p,
        &CheckoutView {
            csrf_token: &token,
            merchant: &merchant,
            qr_svg: qr.as_deref(),
            return_to: return_url.as_deref(),
        },
    );
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(
            header::SET_COOKIE,
            csrf::cookie(
                CSRF_COOKIE,
                &token,
                "/sandbox/checkout",
                state.public_url.starts_with("https://"),
            ),
        )
        // The page holds a token: never from a shared cache, never in a frame.
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        .header("content-security-policy", CSP)
        .body(html)
}

#[derive(Deserialize)]
pub struct CheckoutForm {
    csrf_token: Option<String>,
}

/// A button on the checkout page: the simulated provider sends its signed webhook, then the
/// customer goes to the merchant's `return_url` (or back to the page when there is none).
#[handler]
pub async fn checkout_action(
    req: &Request,
    state: Data<&AppState>,
    Path((id, outcome)): Path<(String, String)>,
    form: Option<Form<CheckoutForm>>,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else {
        return not_found();
    };
    let Ok(Some(p)) = payments_service::find_simulated(&state.db, &id).await else {
        return not_found();
    };
    let Some(outcome) = PaymentStatus::parse(&outcome).filter(|o| {
        matches!(
            o,
            PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Cancelled
        )
    }) else {
        return (StatusCode::NOT_FOUND, "No such action").into_response();
    };
    let sent = form.as_ref().and_then(|f| f.0.csrf_token.as_deref());
    if !csrf::verify(req, CSRF_COOKIE, sent) {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .header("content-security-policy", CSP)
            .body(page::expired(&p.id));
    }
    let (raw, signature) = state.simulated.event_for(&p.id, outcome);
    if let Err(e) = state.inbound.receive_simulated(&signature, &raw).await {
        return ApiError::from(e).into_response();
    }
    let now = payments_service::find_simulated(&state.db, &id)
        .await
        .ok()
        .flatten();
    match now.as_ref().and_then(return_to) {
        Some(url) => Redirect::see_other(url).into_response(),
        None => Redirect::see_other(format!("/sandbox/checkout/{}", p.id)).into_response(),
    }
}
