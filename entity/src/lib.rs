//! The shared contract between the gateway and the worker.
//!
//! Tables (sea-orm entities) and the domain types both processes rely on: prefixed ids, money,
//! the payment status machine, event types and the envelope merchants receive, the webhook
//! signature scheme, the retry policy, and the bus message with its queue names. Nothing in
//! this crate does I/O, so everything here is unit-tested without infrastructure.

pub mod bus;
pub mod event;
pub mod ids;
pub mod money;
pub mod payment_status;
pub mod retry;
pub mod scoped;
pub mod signature;
pub mod status;
pub mod tables;

pub use tables::*;
