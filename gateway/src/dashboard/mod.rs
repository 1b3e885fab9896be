//! The dashboard at `/dashboard`: pages for the people of a merchant, signed in with an email
//! and a password (never an API key).
//!
//! - [`auth`]: users, Argon2id passwords, sessions (a JWT access token and a rotating refresh
//!   token), sign-in throttling.
//! - [`pages`]: the HTML (maud).
//! - [`routes`]: the handlers and the session cookies.
//!
//! So far: sign-in, sign-out and the overview (payments by status, the latest payments).

pub mod auth;
pub mod pages;
pub mod routes;
