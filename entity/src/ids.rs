//! Prefixed, time-ordered object ids (`pay_…`, `evt_…`), Stripe style.
//!
//! The suffix is a UUIDv7 in simple hex, so ids sort by creation time: list endpoints page on
//! the id alone and need no separate cursor column.

use rand::Rng as _;

/// The kinds of object that carry a public id, with their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Merchant,
    ApiKey,
    Payment,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    WebhookAttempt,
    ProviderEvent,
    Refund,
    Log,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Merchant => "mer",
            IdKind::ApiKey => "key",
            IdKind::Payment => "pay",
            IdKind::Event => "evt",
            IdKind::WebhookEndpoint => "we",
            IdKind::WebhookDelivery => "whd",
            IdKind::WebhookAttempt => "wha",
            IdKind::ProviderEvent => "pev",
            IdKind::Refund => "re",
            IdKind::Log => "log",
        }
    }

    /// A new id of this kind.
    pub fn generate(self) -> String {
        format!("{}_{}", self.prefix(), uuid::Uuid::now_v7().simple())
    }
}

/// `len` random alphanumeric characters, for secrets that are shown once.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let a = IdKind::Payment.generate();
        let b = IdKind::Payment.generate();
        assert!(a.starts_with("pay_"));
        assert!(a < b, "ids must be time ordered: {a} !< {b}");
        assert_eq!(a.len(), "pay_".len() + 32);
    }

    #[test]
    fn random_tokens_differ() {
        assert_eq!(random_token(24).len(), 24);
        assert_ne!(random_token(24), random_token(24));
    }
}
