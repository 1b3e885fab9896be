//! The dashboard at `/dashboard`: pages for the people of a merchant, signed in with an email
//! and a password (never an API key). Every page is a thin adapter over the services the API
//! uses: a handler reads the session ([`session::SignedIn`], [`session::Posted`]), calls the
//! services, and draws its page (maud) in the same file.
//!
//! - [`session`]: cookies, the page and form extractors, roles, [`session::PageError`].
//! - [`frame`]: the frame and widgets every page shares.
//! - [`sign_in`]: signing in and out, the mode switch.
//! - [`overview`], [`payments_list`], [`payments`], [`balance`], [`usage`], [`webhooks`], [`endpoint`], [`deliveries`], [`logs`], [`keys`], [`reconciliation`]: the pages.
//! - [`live`] and [`hub`]: real time, the WebSocket `/dashboard/stream` and `live.js`.
//!
//! Users, passwords and sessions themselves are `crate::merchants::users`.

pub mod balance;
pub mod deliveries;
pub mod endpoint;
pub mod export;
pub mod frame;
pub mod hub;
pub mod keys;
pub mod live;
pub mod logs;
pub mod overview;
pub mod payments;
pub mod payments_list;
pub mod reconciliation;
pub mod session;
pub mod sign_in;
pub mod usage;
pub mod webhooks;

use poem::{EndpointExt as _, Route, get, post};

/// The dashboard's routes, each answer carrying the cookies its request chose.
pub fn routes() -> impl poem::Endpoint {
    Route::new()
        .at("/", get(overview::overview))
        .at(
            "/login",
            get(sign_in::sign_in_page)
                .post(sign_in::sign_in)
                .around(crate::http::middleware::public_limit),
        )
        .at("/logout", post(sign_in::sign_out))
        .at("/mode", post(sign_in::switch_mode))
        .at("/stream", get(live::stream))
        .at("/live.js", get(live::script))
        .at("/style.css", get(frame::stylesheet))
        .at("/favicon.svg", get(frame::favicon))
        .at(
            "/webhooks",
            get(webhooks::webhooks_page).post(webhooks::create_endpoint),
        )
        .at("/webhooks/:id", get(endpoint::endpoint_page))
        .at("/webhooks/:id/:action", post(webhooks::endpoint_action))
        .at("/deliveries/:id", get(deliveries::delivery_page))
        .at("/deliveries/:id/retry", post(deliveries::retry_delivery))
        .at("/logs", get(logs::logs_page))
        .at("/logs.csv", get(logs::export_logs))
        .at("/reconciliation", get(reconciliation::reconciliation_page))
        .at("/payments", get(payments_list::payments_page))
        .at("/payments.csv", get(payments_list::export_payments))
        .at("/payments/:id", get(payments::payment_detail))
        .at("/payments/:id/cancel", post(payments::cancel_payment))
        .at("/payments/:id/refund", post(payments::refund_payment))
        .at("/balance", get(balance::balance_page))
        .at("/usage", get(usage::usage_page))
        .at("/keys", get(keys::keys_page).post(keys::create_key))
        .at("/keys/:id/:action", post(keys::key_action))
        .around(session::keep_cookies)
}
