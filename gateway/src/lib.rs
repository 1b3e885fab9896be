//! Payrail's gateway: the merchant API, the simulated provider, inbound provider webhooks and
//! the outbox relay. In embedded mode it also runs the worker in-process.
//!
//! - [`app`]: `Application::build` / `run_until_stopped`.
//! - [`api`]: HTTP handlers (thin) and request/response bodies.
//! - [`domain`]: request bodies parsed into valid domain types.
//! - [`services`]: the logic, over a connection or a transaction.
//! - [`relay`]: the outbox → bus publisher.
//! - [`cache`], [`auth`], [`error`], [`metrics`], [`sandbox`], [`state`].

pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod domain;
pub mod error;
pub mod inbound;
pub mod metrics;
pub mod poller;
pub mod providers;
pub mod relay;
pub mod retention;
pub mod sandbox;
pub mod services;
pub mod state;

pub use app::Application;
