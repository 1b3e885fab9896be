//! The webhook delivery worker, and the runtime pieces the gateway shares with it.
//!
//! - [`settings`]: every knob, read from the environment once at start-up.
//! - [`db`], [`bus`]: the backends (PostgreSQL or SQLite; RabbitMQ or in-process), chosen at
//!   start-up and used through small types, never through `if sqlite` branches.
//! - [`fanout`], [`deliveries`], [`sender`]: turning an event into delivery rows, claiming due
//!   rows, making one signed HTTP attempt and recording it.
//! - [`worker`]: the process (`Worker::build`, `sweep_once`, `run_until_stopped`).
//!
//! The gateway depends on this crate both for the shared runtime and to run the worker
//! inside its own process in embedded mode.

pub mod app;
pub mod bus;
pub mod db;
pub mod deliveries;
pub mod fanout;
pub mod logs;
pub mod metrics;
pub mod sender;
pub mod settings;
pub mod telemetry;
pub mod worker;

pub use settings::Settings;
pub use worker::Worker;
