//! The webhook delivery worker.
//!
//! - [`settings`]: the worker's section of the configuration (webhook knobs, probe port).
//! - [`fanout`]: an event from the bus becomes one delivery row per subscribed endpoint.
//! - [`subscribers`]: each merchant's enabled endpoints, kept by their version for the fan-out.
//! - [`deliveries`]: claiming due rows, making one attempt, recording it, the backlog figures.
//! - [`sender`]: the signed HTTP request to a merchant's server, public addresses only.
//! - [`worker`]: the consumer and the sweep (`Worker::new`, `sweep_once`, `run_until_stopped`).
//! - [`app`]: the worker process with its `/metrics` and `/health` server.
//! - [`metrics`]: delivery metrics and the backlog gauges.
//! - [`manual`]: what the gateway asks of the worker on a merchant's request (a test event
//!   sent now, deliveries made due again): the gateway uses nothing else of the delivery path.
//!
//! Everything below it (database, bus, settings reader, schedules) is in `runtime`. The
//! gateway depends on this crate only to run the worker inside its own process in embedded
//! mode.

pub mod app;
pub mod deliveries;
pub mod fanout;
pub mod manual;
pub mod metrics;
pub mod sender;
pub mod settings;
pub mod slots;
pub mod subscribers;
pub mod worker;

pub use settings::Settings;
pub use worker::Worker;
