//! What the edge learns about a request and hands to the handlers behind it: the request's id,
//! and the slot authentication fills with the caller (for the log store and rate-limit headers).

use std::sync::Arc;

use entity::ids::Scope;

use crate::merchants::rate_limits::Limited;

/// The request id, from `Request-Id` or `X-Request-Id` or made here; also on the response.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Filled by authentication with the caller's merchant, so an error answered later can be
/// filed in that merchant's log store, and with the rate limiter's answer, whose headers go on
/// the response whatever the handler returns.
#[derive(Clone, Debug, Default)]
pub struct MerchantSlot(Arc<std::sync::Mutex<Caller>>);

#[derive(Debug, Default)]
struct Caller {
    scope: Option<Scope>,
    rate_limit: Option<Limited>,
    /// Seconds until a refused quota resets, for `Retry-After`.
    quota_retry_after: Option<i64>,
}

impl MerchantSlot {
    pub fn set(&self, scope: Scope) {
        if let Ok(mut slot) = self.0.lock() {
            slot.scope = Some(scope);
        }
    }

    pub fn set_rate_limit(&self, limited: Limited) {
        if let Ok(mut slot) = self.0.lock() {
            slot.rate_limit = Some(limited);
        }
    }

    /// The request was refused for a monthly quota that resets in `seconds`.
    pub fn set_quota_retry_after(&self, seconds: i64) {
        if let Ok(mut slot) = self.0.lock() {
            slot.quota_retry_after = Some(seconds.max(1));
        }
    }

    pub(crate) fn quota_retry_after(&self) -> Option<i64> {
        self.0.lock().ok().and_then(|s| s.quota_retry_after)
    }

    pub(crate) fn get(&self) -> Option<Scope> {
        self.0.lock().ok().and_then(|s| s.scope.clone())
    }

    pub(crate) fn rate_limit(&self) -> Option<Limited> {
        self.0.lock().ok().and_then(|s| s.rate_limit)
    }
}
