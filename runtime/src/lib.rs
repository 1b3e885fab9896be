//! What the gateway and the worker share at run time, below both of them.
//!
//! - [`settings`]: the backends' settings and the environment reader every section uses.
//! - [`db`], [`bus`], [`cache`]: the backends (PostgreSQL or SQLite; RabbitMQ or in-process;
//!   Redis or memory), chosen at start-up and used through small types.
//! - [`metrics`]: exposition of a registry and the `/metrics` + `/health` responses.
//! - [`log_store`]: writing entries to the merchant-visible log store; [`outbox`]: every event
//!   row, from either process.
//! - [`schedule`]: running background jobs on a period or a calendar until stopped.
//! - [`telemetry`], [`trace_context`], [`shutdown`]: JSON logs, OpenTelemetry traces and the
//!   W3C context that links them across processes, and the Ctrl-C/SIGTERM signal.
//! - [`token_bucket`]: the arithmetic of API rate limits, run by the cache.
//! - [`usage`]: usage metering per merchant and month, counted in the cache, flushed to the
//!   database.
//! - [`allocator`]: the binaries' allocator and its settings ([`jemalloc!`]).

pub mod allocator;
pub mod bus;
pub mod cache;
pub mod db;
pub mod log_store;
pub mod metrics;
pub mod outbox;
pub mod partitions;
pub mod schedule;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod token_bucket;
pub mod trace_context;
pub mod usage;
