//! Delivery rows: claiming due ones, making an attempt, recording it, and manual retries.
//!
//! A claim moves rows to `processing` with a lease (`locked_until`) inside one transaction that
//! selected them `FOR UPDATE SKIP LOCKED`, so concurrent workers never claim the same row; a
//! row whose lease ran out (its worker died) is due again. Each HTTP call leaves one
//! `webhook_attempts` row, written in the same transaction as the delivery's new state.
//!
//! - [`claim`](mod@claim): taking due rows; [`rows`]: a row's life outside an attempt;
//! - [`attempt`](mod@attempt): one attempt; [`record`]: recording attempts and what follows; [`recorder`]:
//!   several attempts' results committed together (group commit);
//! - [`backlog`](mod@backlog): what waits.

pub mod attempt;
pub mod backlog;
pub mod claim;
pub mod record;
pub mod recorder;
pub mod rows;

pub use attempt::*;
pub use backlog::*;
pub use claim::*;
pub use record::*;
pub use rows::*;

/// Rows written per INSERT (fan-out, attempts): well under PostgreSQL's 65 535 bind
/// parameters, and few enough statements for a large batch.
pub(crate) const ROWS_PER_INSERT: usize = 500;
