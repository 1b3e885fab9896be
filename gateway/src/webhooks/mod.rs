//! Merchants' side of webhooks: their endpoints, the event log they can read, and the
//! deliveries (with attempts) they can inspect and retry. Sending is the worker's.

pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod health;
