//! The dashboard at `/dashboard`: pages for the people of a merchant, signed in with an email
//! and a password (never an API key).
//!
//! - [`auth`]: users, Argon2id passwords, sessions (a JWT access token and a rotating refresh
//!   token), sign-in throttling.
//! - [`pages`]: the HTML (maud).
//! - [`routes`]: the handlers and the session cookies; [`webhooks`]: the webhook pages.
//! - [`live`]: real time, the WebSocket `/dashboard/stream` and the page script `live.js`.

pub mod hub;
pub mod live;
pub mod overview;
pub mod pages;
pub mod routes;
pub mod webhooks;
