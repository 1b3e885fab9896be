//! The cache keys a commit drops, named in one place: the slices that fill these entries read
//! them from here, and [`super::effects`] drops them after every write that changes them.

use entity::ids::Scope;

/// A merchant's latest payments in one mode (`GET /v1/payments/recent`, the dashboard).
pub fn recent_payments(scope: &Scope) -> String {
    format!("recent_payments:{}:{}", scope.merchant_id, scope.mode())
}

/// A merchant's latest error and critical log entries in one mode.
pub fn recent_logs(scope: &Scope) -> String {
    format!("recent_logs:{}:{}", scope.merchant_id, scope.mode())
}
