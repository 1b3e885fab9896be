//! Merchants and their API keys. Keys are random, shown once, and stored as SHA-256 hashes;
//! `sk_live_` keys move real money, `sk_test_` keys never do. Keys are listed, issued, rolled
//! (the old one valid for a grace period) and revoked (at once).
//!
//! Who manages which keys ([`KeyManager`]): an API key manages the keys of its own mode only
//! (a test key can never mint, roll, see or revoke a live key), a dashboard owner both. A
//! merchant has at most [`MAX_ACTIVE_KEYS`] active keys in each mode.

pub mod logs;
pub mod passwords;
pub mod rate_limits;
pub mod users;

use chrono::Utc;
use entity::ids::{ApiKeyId, MerchantId, random_token};
use entity::{api_keys, merchants};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, TransactionSession, TransactionTrait,
};

use crate::core::error::{OrNotFound, ServiceError};
use crate::core::idempotency::Idempotent;
use entity::ids::Scope;
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use entity::signature::sha256_hex;

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedMerchant {
    pub merchant_id: MerchantId,
    pub livemode: bool,
    /// The key presented: each key has its own rate-limit bucket.
    pub key_id: ApiKeyId,
    /// The merchant's own rate limit, if it was given one (else the server's default).
    pub rate_limit: MerchantRateLimit,
}

/// A merchant's rate-limit columns, as stored: each null means the server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MerchantRateLimit {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

impl MerchantRateLimit {
    pub fn of(merchant: &merchants::Model) -> MerchantRateLimit {
        let positive = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
        MerchantRateLimit {
            per_second: positive(merchant.rate_limit_per_second),
            burst: positive(merchant.rate_limit_burst),
        }
    }
}

/// How long a verified key is remembered in the shared cache.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The cache entry of a key, by the SHA-256 of its secret.
pub fn key_cache_key(hash: &str) -> String {
    format!("api_key:{hash}")
}

impl AuthedMerchant {
    /// The merchant in the key's mode: what every read and write of this request is limited to.
    pub fn scope(&self) -> entity::ids::Scope {
        entity::ids::Scope::new(self.merchant_id.clone(), self.livemode)
    }

    pub fn to_cached(&self) -> String {
        let limit = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{}",
            self.merchant_id,
            self.livemode,
            self.key_id,
            limit(self.rate_limit.per_second),
            limit(self.rate_limit.burst)
        )
    }

    /// An entry written by [`Self::to_cached`]; anything else (an older format) is a miss.
    pub fn from_cached(value: &str) -> Option<AuthedMerchant> {
        let mut parts = value.split('|');
        let mut next = || parts.next();
        let merchant_id = MerchantId::parse(next()?)?;
        let livemode = next()?.parse().ok()?;
        let key_id = ApiKeyId::parse(next()?)?;
        let mut limit = || -> Option<Option<u32>> {
            match next()? {
                "" => Some(None),
                v => v.parse().ok().map(Some),
            }
        };
        Some(AuthedMerchant {
            merchant_id,
            livemode,
            key_id,
            rate_limit: MerchantRateLimit {
                per_second: limit()?,
                burst: limit()?,
            },
        })
    }
}

pub struct CreatedMerchant {
    pub merchant: merchants::Model,
    pub api_key: String,
}

/// A merchant on `plan` (the operator's `PAYRAIL_DEFAULT_PLAN` unless it chose one).
pub async fn create<C: TransactionTrait>(
    db: &C,
    name: &str,
    plan: entity::status::Plan,
) -> Result<CreatedMerchant, ServiceError> {
    let now = Utc::now();
    let merchant_id = MerchantId::generate();
    let txn = db.begin().await?;
    let merchant = merchants::Entity::insert(merchants::ActiveModel {
        id: Set(merchant_id.clone()),
        name: Set(name.to_string()),
        created_at: Set(now),
        rate_limit_per_second: Set(None),
        rate_limit_burst: Set(None),
        plan: Set(plan),
        usage_limits: Set(None),
    })
    .exec_with_returning(&txn)
    .await?;
    let (_, api_key) = issue_key(&txn, &merchant_id, false).await?;
    txn.commit().await?;
    Ok(CreatedMerchant { merchant, api_key })
}

/// Active keys (not revoked, not on their way out after a roll) a merchant may hold in one
/// mode: enough for every service of a deployment, few enough that a leaked key cannot mint
/// an unbounded number of rate-limit buckets.
pub const MAX_ACTIVE_KEYS: u64 = 50;

/// Who is managing keys, and so which keys it reaches.
#[derive(Debug, Clone)]
pub enum KeyManager {
    /// An API key: its own mode's keys only.
    ApiKey(entity::ids::Scope),
    /// A dashboard owner: the merchant's keys of both modes.
    Owner(MerchantId),
}

impl KeyManager {
    fn merchant_id(&self) -> &MerchantId {
        match self {
            KeyManager::ApiKey(scope) => &scope.merchant_id,
            KeyManager::Owner(merchant_id) => merchant_id,
        }
    }

    /// The keys it reaches.
    fn reach(&self) -> sea_orm::Condition {
        match self {
            KeyManager::ApiKey(scope) => scope.of::<api_keys::Entity>(),
            KeyManager::Owner(merchant_id) => {
                sea_orm::Condition::all().add(api_keys::Column::MerchantId.eq(merchant_id))
            }
        }
    }

    /// Refuses a key of a mode it may not manage.
    fn may_manage(&self, livemode: bool) -> Result<(), ServiceError> {
        match self {
            KeyManager::ApiKey(scope) if scope.livemode != livemode => {
                Err(ServiceError::Forbidden {
                    code: "livemode_mismatch",
                    message: if scope.livemode {
                        "A live key manages live keys only; test keys are managed with a test key or in the dashboard.".into()
                    } else {
                        "A test key manages test keys only; live keys are managed with a live key or by an owner in the dashboard.".into()
                    },
                })
            }
            _ => Ok(()),
        }
    }
}

/// A new key (`sk_live_…` or `sk_test_…`) and its secret, shown once, if the merchant has
/// fewer than [`MAX_ACTIVE_KEYS`] active keys in that mode (422 `api_key_limit_reached`
/// otherwise). The merchant's row is locked for the count, so concurrent issues cannot pass
/// the cap together.
pub async fn issue_key<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    livemode: bool,
) -> Result<(api_keys::Model, String), ServiceError> {
    merchants::Entity::find_by_id(merchant_id.clone())
        .lock_exclusive()
        .one(db)
        .await?;
    let active = api_keys::Entity::find()
        .filter(entity::ids::Scope::new(merchant_id.clone(), livemode).of::<api_keys::Entity>())
        .filter(api_keys::Column::RevokedAt.is_null())
        .filter(api_keys::Column::ExpiresAt.is_null())
        .count(db)
        .await?;
    if active >= MAX_ACTIVE_KEYS {
        return Err(crate::core::error::ValidationError::new(
            "livemode",
            "api_key_limit_reached",
            format!(
                "A merchant can have at most {MAX_ACTIVE_KEYS} active {} keys; revoke one first.",
                if livemode { "live" } else { "test" }
            ),
        )
        .into());
    }
    let secret = format!(
        "{}{}",
        if livemode { "sk_live_" } else { "sk_test_" },
        random_token(32)
    );
    let key = api_keys::Entity::insert(api_keys::ActiveModel {
        id: Set(ApiKeyId::generate()),
        merchant_id: Set(merchant_id.clone()),
        key_hash: Set(sha256_hex(secret.as_bytes())),
        prefix: Set(secret[..12].to_string()),
        livemode: Set(livemode),
        created_at: Set(Utc::now()),
        expires_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_with_returning(db)
    .await?;
    Ok((key, secret))
}

/// The merchant a presented key belongs to, by the SHA-256 of the key (`key_hash`), if the
/// key is neither revoked nor expired, and when it expires (a rolled key).
pub async fn authenticate<C: ConnectionTrait>(
    db: &C,
    key_hash: &str,
) -> Result<Option<(AuthedMerchant, Option<chrono::DateTime<Utc>>)>, DbErr> {
    let now = Utc::now();
    let Some(key) = api_keys::Entity::find()
        .filter(api_keys::Column::KeyHash.eq(key_hash))
        .filter(api_keys::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .filter(|k| k.expires_at.is_none_or(|at| at > now))
    else {
        return Ok(None);
    };
    let rate_limit = merchants::Entity::find_by_id(key.merchant_id.clone())
        .one(db)
        .await?
        .map(|m| MerchantRateLimit::of(&m))
        .unwrap_or_default();
    Ok(Some((
        AuthedMerchant {
            merchant_id: key.merchant_id,
            livemode: key.livemode,
            key_id: key.id,
            rate_limit,
        },
        key.expires_at,
    )))
}

/// Changes a merchant's plan and/or its custom limits (`Some(None)` removes them). Every
/// gateway applies it within `quotas::SNAPSHOT_TTL`.
pub async fn set_plan<C: ConnectionTrait>(
    db: &C,
    merchant: merchants::Model,
    plan: Option<entity::status::Plan>,
    usage_limits: Option<Option<serde_json::Value>>,
) -> Result<merchants::Model, DbErr> {
    let mut changed: merchants::ActiveModel = merchant.into();
    if let Some(plan) = plan {
        changed.plan = Set(plan);
    }
    if let Some(limits) = usage_limits {
        changed.usage_limits = Set(limits);
    }
    merchants::Entity::update(changed).exec(db).await
}

/// Sets (or, with `None`, returns to the server's default) a merchant's rate limit, and
/// forgets its keys' cached entries so every gateway applies the new limit at once.
pub async fn set_rate_limit<C: ConnectionTrait>(
    db: &C,
    cache: &runtime::cache::Cache,
    merchant_id: &MerchantId,
    limit: MerchantRateLimit,
) -> Result<merchants::Model, ServiceError> {
    let merchant = merchants::Entity::find_by_id(merchant_id.clone())
        .one(db)
        .await?
        .or_not_found("merchant", merchant_id.as_str())?;
    let as_column = |v: Option<u32>| v.and_then(|v| i32::try_from(v).ok());
    let mut changed: merchants::ActiveModel = merchant.into();
    changed.rate_limit_per_second = Set(as_column(limit.per_second));
    changed.rate_limit_burst = Set(as_column(limit.burst));
    let merchant = merchants::Entity::update(changed).exec(db).await?;
    let all = api_keys::Entity::find()
        .filter(api_keys::Column::MerchantId.eq(merchant_id))
        .all(db)
        .await?;
    for key in all {
        cache.delete(&key_cache_key(&key.key_hash)).await;
    }
    Ok(merchant)
}

/// The keys `manager` reaches, newest first, a page at a time.
pub async fn list_keys<C: ConnectionTrait>(
    db: &C,
    manager: &KeyManager,
    page: &crate::core::pagination::Page,
) -> Result<(Vec<api_keys::Model>, bool), DbErr> {
    let select = api_keys::Entity::find().filter(manager.reach());
    page.fetch(db, select, api_keys::Column::Id).await
}

/// Issues a key of `livemode`, if `manager` may manage that mode.
pub async fn create_key<C: ConnectionTrait>(
    db: &C,
    manager: &KeyManager,
    livemode: bool,
) -> Result<(api_keys::Model, String), ServiceError> {
    manager.may_manage(livemode)?;
    issue_key(db, manager.merchant_id(), livemode).await
}

/// A merchant by id, or a not-found error naming it.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    id: &MerchantId,
) -> Result<merchants::Model, ServiceError> {
    merchants::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .or_not_found("merchant", id.as_str())
}

/// A key made by [`create_key_once`]: its secret only in the answer that made it.
pub struct NewKey {
    pub key: api_keys::Model,
    pub secret: Option<String>,
    pub replayed: bool,
}

/// Issues a key through an API key, once per `Idempotency-Key`: a retry with the same key
/// answers the key the first request made, without its secret, which is stored nowhere (an
/// idempotency record is no place for one). A client that lost the first answer revokes that
/// key and makes another; a retry never leaves a second live key behind.
pub async fn create_key_once(
    db: &DatabaseConnection,
    scope: &Scope,
    livemode: bool,
    idempotency_key: Option<&str>,
) -> Result<NewKey, ServiceError> {
    let manager = KeyManager::ApiKey(scope.clone());
    let request = Idempotent {
        scope,
        key: idempotency_key,
        operation: "POST /v1/api_keys",
        fingerprint: format!("livemode={livemode}"),
    };
    let mut secret = None;
    let outcome = request
        .run(
            db,
            async |txn: &DatabaseTransaction| -> Result<String, ServiceError> {
                let (key, made) = create_key(txn, &manager, livemode).await?;
                secret = Some(made);
                Ok(key.id.to_string())
            },
        )
        .await?;
    let id = ApiKeyId::parse(&outcome.value)
        .ok_or_else(|| ServiceError::Db(DbErr::Custom("stored api key id is malformed".into())))?;
    let key = api_keys::Entity::find_by_id(id)
        .filter(manager.reach())
        .one(db)
        .await?
        .or_not_found("api_key", &outcome.value)?;
    Ok(NewKey {
        key,
        secret,
        replayed: outcome.replayed,
    })
}

/// A key `manager` reaches that is still active; any other (another mode's for an API key,
/// another merchant's) is a 404, as if it did not exist.
async fn active_key<C: ConnectionTrait>(
    db: &C,
    manager: &KeyManager,
    id: &ApiKeyId,
) -> Result<api_keys::Model, ServiceError> {
    let now = Utc::now();
    api_keys::Entity::find_by_id(id.clone())
        .filter(manager.reach())
        .filter(api_keys::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .filter(|k| k.expires_at.is_none_or(|at| at > now))
        .or_not_found("api_key", id)
}

/// Replaces a key with a new one of the same mode; the old one keeps working for `grace`
/// (zero: it stops now), so deployments can switch without downtime.
pub async fn roll_key<C: TransactionTrait>(
    db: &C,
    manager: &KeyManager,
    id: &ApiKeyId,
    grace: std::time::Duration,
) -> Result<(api_keys::Model, String, api_keys::Model), ServiceError> {
    let txn = db.begin().await?;
    let old = active_key(&txn, manager, id).await?;
    let expires = Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default();
    let mut rolled: api_keys::ActiveModel = old.clone().into();
    rolled.expires_at = Set(Some(expires));
    let rolled = api_keys::Entity::update(rolled).exec(&txn).await?;
    let (new, secret) = issue_key(&txn, &old.merchant_id, old.livemode).await?;
    txn.commit().await?;
    Ok((new, secret, rolled))
}

/// Revokes a key at once.
pub async fn revoke_key<C: ConnectionTrait>(
    db: &C,
    manager: &KeyManager,
    id: &ApiKeyId,
) -> Result<api_keys::Model, ServiceError> {
    let key = active_key(db, manager, id).await?;
    let mut revoked: api_keys::ActiveModel = key.into();
    revoked.revoked_at = Set(Some(Utc::now()));
    Ok(api_keys::Entity::update(revoked).exec(db).await?)
}

pub async fn any_exist<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    Ok(merchants::Entity::find().one(db).await?.is_some())
}
