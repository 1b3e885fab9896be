//! Payrail's gateway: the merchant API, the providers (with the simulated one and its
//! checkout page), inbound provider webhooks, the pending-payment poller and the outbox
//! relay. In embedded mode it also runs the worker in-process.
//!
//! Sliced by feature; floors, each importing only its own and those below (checked by
//! `tests/tests/structure.rs`, described in `docs/architecture.md`):
//! [`core`] (errors, effects, idempotency, relay, metrics, pagination), [`providers`]
//! (outbound clients), [`ledger`], [`merchants`] (keys, users, rate limits, log store),
//! [`webhooks`], [`usage`], [`payouts`], [`payments`] (with inbound provider events and the
//! poller), [`reconciliation`], [`http`] (the API, the dashboard and the checkout: thin
//! adapters over the services), [`settings`], [`app`] (build and run).

pub mod app;
pub mod core;
pub mod http;
pub mod ledger;
pub mod merchants;
pub mod payments;
pub mod payouts;
pub mod providers;
pub mod reconciliation;
pub mod settings;
pub mod usage;
pub mod webhooks;

pub use app::Application;
pub use settings::Settings;
