//! The end-to-end suite: one binary, one module per area.

mod api;
mod checkout;
mod clients;
mod control;
mod dashboard;
mod delivery;
mod edge_fuzz;
mod embedded;
mod hardening;
mod ledger_model;
mod live;
mod logs;
mod migrate_worlds;
mod ops;
mod payouts;
mod pipeline;
mod providers;
mod rate_limits;
mod reconciliation;
mod refunds;
mod spec;
mod usage;
mod worlds;
