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
    User,
    Session,
    Payout,
    BalanceTransaction,
    ReconciliationItem,
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
            IdKind::User => "usr",
            IdKind::Session => "ses",
            IdKind::Payout => "po",
            IdKind::BalanceTransaction => "txn",
            IdKind::ReconciliationItem => "rec",
        }
    }

    /// A new id of this kind.
    pub fn generate(self) -> String {
        format!("{}_{}", self.prefix(), uuid::Uuid::now_v7().simple())
    }
}

/// Whether a string has the shape of an id of any kind: a lower-case prefix, `_`, and the
/// 32 hex digits of a UUID (what `generate` makes). Cursors are checked with it.
pub fn looks_like_id(s: &str) -> bool {
    s.split_once('_').is_some_and(|(prefix, rest)| {
        !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_lowercase())
            && rest.len() == 32
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What every typed id can do, for code generic over the kind (parsing a path parameter).
pub trait TypedId: Sized {
    fn parse(s: &str) -> Option<Self>;
}

/// Declares the id type of one [`IdKind`]: a `String` newtype stored as text, so a payment id
/// can never be passed where a merchant id is expected. It derefs to `str` for reading and
/// compares with strings; a new one comes from `generate`, one from outside (a path, a body)
/// from `parse`, which checks the prefix.
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident => $kind:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sea_orm::DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl TypedId for $name {
            fn parse(s: &str) -> Option<$name> {
                $name::parse(s)
            }
        }

        impl $name {
            pub const KIND: IdKind = IdKind::$kind;

            pub fn generate() -> $name {
                $name(IdKind::$kind.generate())
            }

            /// An id read from outside: `None` unless it carries this kind's prefix.
            pub fn parse(s: &str) -> Option<$name> {
                s.strip_prefix(IdKind::$kind.prefix())
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|tail| {
                        !tail.is_empty()
                            && tail.len() <= 64
                            && tail.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                    .then(|| $name(s.to_string()))
            }

            /// An id from a source that is already trusted (our own rows and messages).
            pub fn from_trusted(s: impl Into<String>) -> $name {
                $name(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for sea_orm::Value {
            fn from(id: &$name) -> sea_orm::Value {
                id.0.clone().into()
            }
        }

        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

typed_id!(/** `mer_…` */ MerchantId => Merchant);
typed_id!(/** `key_…` */ ApiKeyId => ApiKey);
typed_id!(/** `pay_…` */ PaymentId => Payment);
typed_id!(/** `evt_…` */ EventId => Event);
typed_id!(/** `we_…` */ EndpointId => WebhookEndpoint);
typed_id!(/** `whd_…` */ DeliveryId => WebhookDelivery);
typed_id!(/** `wha_…` */ AttemptId => WebhookAttempt);
typed_id!(/** `pev_…` */ ProviderEventId => ProviderEvent);
typed_id!(/** `re_…` */ RefundId => Refund);
typed_id!(/** `log_…` */ LogId => Log);
typed_id!(/** `usr_…` */ UserId => User);
typed_id!(/** `ses_…` */ SessionId => Session);
typed_id!(/** `po_…` */ PayoutId => Payout);
typed_id!(/** `txn_…` */ BalanceTransactionId => BalanceTransaction);
typed_id!(/** `rec_…` */ ReconciliationItemId => ReconciliationItem);

/// Whose objects, in which world: a merchant in test or live mode. Every read and write of a
/// merchant's objects is filtered by both, so an object of the other mode is as invisible as
/// another merchant's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub merchant_id: MerchantId,
    pub livemode: bool,
}

impl Scope {
    pub fn new(merchant_id: MerchantId, livemode: bool) -> Scope {
        Scope {
            merchant_id,
            livemode,
        }
    }

    pub fn test(merchant_id: MerchantId) -> Scope {
        Scope::new(merchant_id, false)
    }

    /// `test` or `live`, as logs, metrics and pages name a mode.
    pub fn mode(&self) -> &'static str {
        if self.livemode { "live" } else { "test" }
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
    fn typed_ids_check_their_prefix_and_compare_with_strings() {
        let id = PaymentId::generate();
        assert!(id.starts_with("pay_"));
        assert_eq!(PaymentId::parse(&id), Some(id.clone()));
        assert_eq!(PaymentId::parse("mer_0190"), None, "another kind's id");
        assert_eq!(PaymentId::parse("pay_"), None);
        assert_eq!(PaymentId::parse("payx_1"), None);
        assert!(id == id.as_str());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
    }

    #[test]
    fn random_tokens_differ() {
        assert_eq!(random_token(24).len(), 24);
        assert_ne!(random_token(24), random_token(24));
    }
}
