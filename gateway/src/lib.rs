//! Payrail's gateway: the merchant API, the providers (with the simulated one and its
//! checkout page), inbound provider webhooks, the pending-payment poller and the outbox
//! relay. In embedded mode it also runs the worker in-process.
//!
//! Layers, each importing only those below it:
//! - [`error`], [`settings`], [`metrics`], [`pagination`]: domain errors (no HTTP), this
//!   process's configuration, its metrics, cursor pages.
//! - [`idempotency`], [`merchants`], [`rate_limits`], [`logs`], [`relay`], [`retention`]:
//!   services over a connection or a transaction (or the cache), and the outbox publisher.
//! - [`ledger`]: every movement of money, double-entry, with the balances it keeps;
//!   [`reconciliation`]: the ledger against the providers' reports.
//! - [`commit`]: the effects every payment commit has (relay, cache, metrics, log store).
//! - [`payments`], [`webhooks`]: the merchant's objects and their services.
//! - [`dashboard`]: the signed-in pages for merchants' people (users, sessions, HTML).
//! - [`providers`]: provider clients, then inbound events and the poller that apply to payments.
//! - [`state`]: the wiring handlers reach; [`api`]: HTTP only; [`app`]: build and run.

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
