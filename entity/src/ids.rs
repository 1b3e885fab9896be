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

    /// The smallest id of this kind created at or after `at`: every id generated from then on
    /// compares at least as great (byte order), every earlier one less. A day's partition is
    /// the ids between two of these.
    pub fn lower_bound(self, at: chrono::DateTime<chrono::Utc>) -> String {
        format!("{}_{:012x}{}", self.prefix(), millis(at), "0".repeat(20))
    }

    /// An id of this kind as if generated at `at` (backfills and benchmarks that need rows of
    /// another day in that day's partition).
    pub fn generate_at(self, at: chrono::DateTime<chrono::Utc>) -> String {
        let random: [u8; 10] = rand::rng().random();
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis(at), &random).into_uuid();
        format!("{}_{}", self.prefix(), uuid.simple())
    }
}

/// Milliseconds since the epoch as UUIDv7 carries them (48 bits; clamped at the ends).
fn millis(at: chrono::DateTime<chrono::Utc>) -> u64 {
    at.timestamp_millis().clamp(0, (1 << 48) - 1) as u64
}

/// The creation time an id carries (a UUIDv7's, or a delivery's, which is its event's), or
/// `None` for an id not in that shape.
pub fn created_at(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, hex) = id.split_once('_')?;
    let millis = u64::from_str_radix(hex.get(..12)?, 16).ok()?;
    chrono::DateTime::from_timestamp_millis(i64::try_from(millis).ok()?)
}

/// A UUID laid out as a v7 (48-bit milliseconds first, so ids sort by time) with the given 80
/// bits after it, marked version 8 (custom: the bits are not random).
fn uuid_at(millis: u64, rest: [u8; 10]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&rest);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
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

impl DeliveryId {
    /// The one delivery of `event` to `endpoint`: the event's creation time, then 80 bits of
    /// SHA-256 of the pair. Deriving the id from the pair lets the primary key enforce "one
    /// delivery per event and endpoint" on a table partitioned by id (where a unique index on
    /// the pair is impossible), and puts a delivery in its event's day partition, so both
    /// leave together.
    pub fn for_event_endpoint(event: &EventId, endpoint: &EndpointId) -> DeliveryId {
        use sha2::Digest as _;
        let millis = created_at(event).map_or_else(|| millis(chrono::Utc::now()), millis);
        let digest = sha2::Sha256::new()
            .chain_update(event.as_str())
            .chain_update([0u8])
            .chain_update(endpoint.as_str())
            .finalize();
        let mut rest = [0u8; 10];
        rest.copy_from_slice(&digest[..10]);
        DeliveryId(format!(
            "{}_{}",
            IdKind::WebhookDelivery.prefix(),
            uuid_at(millis, rest).simple()
        ))
    }
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
    fn a_days_bounds_hold_exactly_the_ids_created_that_day() {
        let day = chrono::DateTime::parse_from_rfc3339("2026-12-03T00:00:00Z")
            .unwrap()
            .to_utc();
        let next = day + chrono::Duration::days(1);
        let (lo, hi) = (
            IdKind::Event.lower_bound(day),
            IdKind::Event.lower_bound(next),
        );
        let first = IdKind::Event.generate_at(day);
        let last = IdKind::Event.generate_at(next - chrono::Duration::milliseconds(1));
        let before = IdKind::Event.generate_at(day - chrono::Duration::milliseconds(1));
        assert!(lo <= first && first < hi && lo <= last && last < hi);
        assert!(before < lo && hi <= IdKind::Event.generate_at(next));
        assert_eq!(created_at(&first), Some(day));
        assert!(looks_like_id(&first) && looks_like_id(&lo));
        let now = IdKind::Event.generate();
        let carried = created_at(&now).unwrap();
        assert!(
            (chrono::Utc::now() - carried).num_seconds().abs() < 5,
            "{carried}"
        );
    }

    #[test]
    fn a_delivery_id_is_its_pair_s_and_carries_its_event_s_time() {
        let event = EventId::from_trusted(
            IdKind::Event.generate_at(chrono::Utc::now() - chrono::Duration::days(3)),
        );
        let (a, b) = (EndpointId::generate(), EndpointId::generate());
        let id = DeliveryId::for_event_endpoint(&event, &a);
        assert_eq!(
            id,
            DeliveryId::for_event_endpoint(&event, &a),
            "the same pair, the same id"
        );
        assert_ne!(id, DeliveryId::for_event_endpoint(&event, &b));
        let other = EventId::generate();
        assert_ne!(id, DeliveryId::for_event_endpoint(&other, &a));
        assert!(id.starts_with("whd_") && looks_like_id(&id), "{id}");
        assert_eq!(
            created_at(&id),
            created_at(&event),
            "in its event's partition"
        );
    }

    #[test]
    fn random_tokens_differ() {
        assert_eq!(random_token(24).len(), 24);
        assert_ne!(random_token(24), random_token(24));
    }
}
