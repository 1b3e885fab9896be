//! Usage: plans, their monthly quotas and the thresholds merchants are told about.

pub mod alerts;
pub mod quotas;
