//! What every slice stands on: domain errors, request text, cursor pages, `Idempotency-Key`,
//! the outbox relay, the effects of a commit and the gateway's metrics.

pub mod cache_keys;
pub mod deps;
pub mod effects;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod object_names;
pub mod pagination;
pub mod relay;
pub mod text;
