//! Who is signed in to the dashboard: people (not API keys), each a user of one merchant with
//! a role. Passwords are Argon2id hashes. Signing in gives a short-lived access token (a JWT,
//! HS256, checked without a database read) and a refresh token (random, stored hashed) that is
//! replaced at every use, so a stolen one works once at most; signing out revokes it. A
//! replaced token presented again within [`REFRESH_REUSE_GRACE`] (two requests of one page
//! racing with the same cookie) gets an access token only; later, it ends every session of
//! its family, since one of its two holders is a thief.
//!
//! Guessing is bounded. Every attempt on an account is counted in the shared cache *before*
//! its password is checked, so a burst of concurrent guesses cannot all be checked: past
//! [`MAX_FAILURES_PER_ACCOUNT`] the account is locked for [`FAILURE_WINDOW`]. An address past
//! [`MAX_FAILURES_PER_ADDRESS`] is slowed (each attempt waits longer before its check), never
//! locked out: behind a proxy many people share one, and an account's owner who is not
//! locked always gets in with the right password. Passwords are checked by a small pool of
//! threads of their own ([`PasswordChecks`]) with a short queue; beyond it, a sign-in is told
//! to retry (429), so a flood costs the gateway a bounded amount of memory.

use std::time::Duration;

use chrono::Utc;
use entity::ids::{MerchantId, SessionId, UserId, random_token};
use entity::signature::sha256_hex;
use entity::status::UserRole;
use entity::{dashboard_sessions, dashboard_users};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use runtime::cache::Cache;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    TransactionSession, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::core::error::ServiceError;

pub use super::passwords::{PasswordChecks, hash_password};

/// Failed sign-ins an account may have in [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES_PER_ACCOUNT: u64 = 5;
/// Failed sign-ins one address may have in [`FAILURE_WINDOW`] (over any accounts) before its
/// attempts are slowed.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// The longest an over-limit address waits before its password is checked.
pub const MOST_ADDRESS_DELAY: Duration = Duration::from_secs(5);

/// How long failures count against an account or an address.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the dashboard's tokens are made with.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Keys the signed-in pages' CSRF tokens (kept apart from the JWT key by derivation).
    csrf_key: Vec<u8>,
}

impl SessionKeys {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> SessionKeys {
        SessionKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            refresh_ttl,
            csrf_key: mac(secret, b"payrail dashboard csrf"),
        }
    }

    /// The CSRF token of a signed-in session's forms: bound to its family, so a token taken
    /// from another session (or kept from before a sign-out) is refused.
    pub fn csrf_for(&self, family: &SessionId) -> String {
        hex::encode(&mac(&self.csrf_key, family.as_bytes())[..16])
    }

    /// Whether `sent` is this session's token (compared in constant time).
    pub fn csrf_matches(&self, family: &SessionId, sent: Option<&str>) -> bool {
        use subtle::ConstantTimeEq as _;
        sent.is_some_and(|sent| bool::from(self.csrf_for(family).as_bytes().ct_eq(sent.as_bytes())))
    }
}

/// HMAC-SHA256 of `data` under `key`.
fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut m = entity::signature::hmac_sha256(key);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The access token's claims: enough to serve a page without reading the user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's merchant: every page shows this merchant's data only.
    pub mer: String,
    pub role: String,
    /// The session family (one sign-in and its refreshes): the token dies with it, at
    /// sign-out or when a replayed refresh token ends it.
    #[serde(default)]
    pub fam: String,
    pub exp: u64,
    pub iat: u64,
}

/// A signed-in user, from a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUser {
    pub user_id: UserId,
    pub merchant_id: MerchantId,
    pub role: UserRole,
    /// The session family the access token belongs to (see [`family_lives`]).
    pub family: SessionId,
    /// When the access token presented expires (Unix seconds): a live socket ends then.
    pub expires_at: u64,
    /// The mode the user is viewing (their choice, kept in a cookie): pages show and act on
    /// that mode's objects only.
    pub livemode: bool,
}

impl DashboardUser {
    /// The merchant in the mode being viewed.
    pub fn scope(&self) -> entity::ids::Scope {
        entity::ids::Scope::new(self.merchant_id.clone(), self.livemode)
    }

    /// Owners and developers act on payments and webhooks; viewers only look.
    pub fn can_act(&self) -> bool {
        matches!(self.role, UserRole::Owner | UserRole::Developer)
    }
}

/// How long a replaced refresh token still gets an access token (not a new refresh token):
/// the requests a page sent at once with the same expired session all succeed.
pub const REFRESH_REUSE_GRACE: Duration = Duration::from_secs(10);

/// What a sign-in or a refresh hands out: an access token, and a new refresh token unless the
/// one presented had just been replaced (the browser keeps the replacement it already got).
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub user: DashboardUser,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    Invalid,
    #[error("too many failed sign-ins; try again later")]
    Throttled { retry_after: Duration },
    /// Too many sign-ins are being checked right now.
    #[error("sign-ins are busy; try again in a moment")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("token: {0}")]
    Token(String),
}

fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// A hash of nothing anyone knows, verified when the email is unknown so that an unknown
/// account takes as long to refuse as a wrong password.
static DECOY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&random_token(24)).unwrap_or_default());

/// A new user with a random password, returned once (only its hash is kept).
pub async fn create_user<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    email: &str,
    role: UserRole,
) -> Result<(dashboard_users::Model, String), ServiceError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        return Err(crate::core::error::ValidationError::new(
            "email",
            "email_invalid",
            "email must be an address such as ada@example.com.",
        )
        .into());
    }
    let password = random_token(20);
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .map_err(DbErr::Custom)?
    };
    let user = dashboard_users::Entity::insert(dashboard_users::ActiveModel {
        id: Set(UserId::generate()),
        merchant_id: Set(merchant_id.clone()),
        email: Set(email),
        password_hash: Set(hash),
        role: Set(role),
        created_at: Set(Utc::now()),
    })
    .exec_with_returning(db)
    .await?;
    Ok((user, password))
}

fn failure_keys(email: &str, address: &str) -> [String; 2] {
    [
        format!(
            "dashboard_signin_failures:account:{}",
            sha256_hex(email.as_bytes())
        ),
        format!("dashboard_signin_failures:address:{address}"),
    ]
}

/// What a sign-in needs besides the database.
pub struct SignInDeps<'a> {
    pub cache: &'a Cache,
    pub keys: &'a SessionKeys,
    pub checks: &'a PasswordChecks,
}

/// Checks the password (unless the account is locked) and opens a session.
pub async fn sign_in<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    deps: &SignInDeps<'_>,
    email: &str,
    password: &str,
    address: &str,
) -> Result<Tokens, SignInError> {
    let email = email.trim().to_lowercase();
    let [account_key, address_key] = failure_keys(&email, address);
    // Counted before the check: concurrent guesses beyond the limit are never checked.
    let attempts = deps
        .cache
        .hit(&account_key, FAILURE_WINDOW)
        .await
        .unwrap_or(0);
    if attempts > MAX_FAILURES_PER_ACCOUNT {
        return Err(SignInError::Throttled {
            retry_after: FAILURE_WINDOW,
        });
    }
    let from_address = deps
        .cache
        .get(&address_key)
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if from_address >= MAX_FAILURES_PER_ADDRESS {
        let over = u32::try_from(from_address - MAX_FAILURES_PER_ADDRESS).unwrap_or(u32::MAX);
        let delay = Duration::from_millis(250)
            .saturating_mul(2u32.saturating_pow(over.min(8)))
            .min(MOST_ADDRESS_DELAY);
        tokio::time::sleep(delay).await;
    }
    let user = dashboard_users::Entity::find()
        .filter(dashboard_users::Column::Email.eq(&email))
        .one(db)
        .await?;
    let hash = user
        .as_ref()
        .map_or_else(|| DECOY_HASH.clone(), |u| u.password_hash.clone());
    // A sign-in refused as busy still counted: a flood locks the account it aims at, as
    // guesses would, and the owner gets in again after the window.
    let matches = deps
        .checks
        .check(hash, password.to_string())
        .await
        .map_err(|_| SignInError::Busy)?;
    let Some(user) = user.filter(|_| matches) else {
        deps.cache.hit(&address_key, FAILURE_WINDOW).await;
        return Err(SignInError::Invalid);
    };
    deps.cache.delete(&account_key).await;
    let keys = deps.keys;
    open_session(db, keys, &user, None)
        .await
        .map(|(tokens, _)| tokens)
}

/// A new refresh token (stored hashed, in `family` or a new one) and an access token for
/// `user`; and the new session's id.
async fn open_session<C: ConnectionTrait>(
    db: &C,
    keys: &SessionKeys,
    user: &dashboard_users::Model,
    family: Option<SessionId>,
) -> Result<(Tokens, SessionId), SignInError> {
    let refresh = random_token(48);
    let now = Utc::now();
    let id = SessionId::generate();
    let family = family.unwrap_or_else(|| id.clone());
    dashboard_sessions::Entity::insert(dashboard_sessions::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user.id.clone()),
        refresh_hash: Set(sha256_hex(refresh.as_bytes())),
        expires_at: Set(now + chrono::Duration::from_std(keys.refresh_ttl).unwrap_or_default()),
        revoked_at: Set(None),
        created_at: Set(now),
        family_id: Set(family.clone()),
    })
    .exec(db)
    .await?;
    let tokens = Tokens {
        access: access_token(keys, user, &family)?,
        refresh: Some(refresh),
        user: DashboardUser {
            user_id: user.id.clone(),
            merchant_id: user.merchant_id.clone(),
            role: user.role,
            family,
            expires_at: now_secs() + keys.access_ttl.as_secs(),
            livemode: false,
        },
    };
    Ok((tokens, id))
}

/// A signed access token for `user`, valid `keys.access_ttl`.
fn access_token(
    keys: &SessionKeys,
    user: &dashboard_users::Model,
    family: &SessionId,
) -> Result<String, SignInError> {
    let iat = now_secs();
    let claims = Claims {
        sub: user.id.to_string(),
        mer: user.merchant_id.to_string(),
        role: user.role.as_str().to_string(),
        fam: family.to_string(),
        iat,
        exp: iat + keys.access_ttl.as_secs(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
        .map_err(|e| SignInError::Token(e.to_string()))
}

/// The user an access token names, if it is ours, unexpired and well-formed.
pub fn verify_access(keys: &SessionKeys, token: &str) -> Option<DashboardUser> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
        .ok()?
        .claims;
    // Good until its `exp` second begins (jsonwebtoken accepts it through that second). A
    // page's socket ends within that second, its lifetime being whole seconds, and the page's
    // reconnect must find the token expired and renew the session, not reuse it for the few
    // hundred milliseconds it had left (the browser test caught the reconnect doing so).
    if claims.exp <= now_secs() {
        return None;
    }
    Some(DashboardUser {
        user_id: UserId::parse(&claims.sub)?,
        merchant_id: MerchantId::parse(&claims.mer)?,
        role: UserRole::parse(&claims.role)?,
        // A token without a family (from before families were named) is refused.
        family: SessionId::parse(&claims.fam)?,
        expires_at: claims.exp,
        livemode: false,
    })
}

/// Replaces a live refresh token by a new pair; `None` when the token is unknown, expired,
/// revoked or already used (it is revoked by the replacement, in the same transaction).
pub async fn refresh<C: TransactionTrait>(
    db: &C,
    keys: &SessionKeys,
    refresh_token: &str,
) -> Result<Option<Tokens>, SignInError> {
    let txn = db.begin().await?;
    let now = Utc::now();
    let hash = sha256_hex(refresh_token.as_bytes());
    let revoked = dashboard_sessions::Entity::update_many()
        .col_expr(
            dashboard_sessions::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(dashboard_sessions::Column::RefreshHash.eq(&hash))
        .filter(dashboard_sessions::Column::RevokedAt.is_null())
        .filter(dashboard_sessions::Column::ExpiresAt.gt(now))
        .exec_with_returning(&txn)
        .await?;
    let tokens = match revoked.into_iter().next() {
        Some(session) => match user_of(&txn, &session).await? {
            Some(user) => Some(
                open_session(&txn, keys, &user, Some(session.family_id))
                    .await?
                    .0,
            ),
            None => None,
        },
        None => reused(&txn, keys, &hash, now).await?,
    };
    txn.commit().await?;
    Ok(tokens)
}

async fn user_of<C: ConnectionTrait>(
    db: &C,
    session: &dashboard_sessions::Model,
) -> Result<Option<dashboard_users::Model>, DbErr> {
    dashboard_users::Entity::find_by_id(session.user_id.clone())
        .one(db)
        .await
}

/// A refresh token that is not live: unknown, expired, signed out, or replaced. Replaced
/// within the grace while its family lives on, it gets an access token; replaced longer ago,
/// it ends the family.
async fn reused<C: ConnectionTrait>(
    txn: &C,
    keys: &SessionKeys,
    hash: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Option<Tokens>, SignInError> {
    let Some(old) = dashboard_sessions::Entity::find()
        .filter(dashboard_sessions::Column::RefreshHash.eq(hash))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let Some(revoked_at) = old.revoked_at else {
        // Live but expired.
        return Ok(None);
    };
    let family_lives = dashboard_sessions::Entity::find()
        .filter(dashboard_sessions::Column::FamilyId.eq(&old.family_id))
        .filter(dashboard_sessions::Column::RevokedAt.is_null())
        .filter(dashboard_sessions::Column::ExpiresAt.gt(now))
        .one(txn)
        .await?
        .is_some();
    if !family_lives {
        // Signed out (the whole family is revoked) or long over.
        return Ok(None);
    }
    let grace = chrono::Duration::from_std(REFRESH_REUSE_GRACE).unwrap_or_default();
    if now - revoked_at <= grace {
        let Some(user) = user_of(txn, &old).await? else {
            return Ok(None);
        };
        return Ok(Some(Tokens {
            access: access_token(keys, &user, &old.family_id)?,
            refresh: None,
            user: DashboardUser {
                user_id: user.id.clone(),
                merchant_id: user.merchant_id.clone(),
                role: user.role,
                family: old.family_id.clone(),
                expires_at: now_secs() + keys.access_ttl.as_secs(),
                livemode: false,
            },
        }));
    }
    tracing::warn!(user_id = %old.user_id, "a replaced dashboard refresh token was presented again; its sessions are ended");
    end_family(txn, &old.family_id, now).await?;
    Ok(None)
}

/// Whether a session family still lives: one of its sessions is neither revoked nor
/// expired. Sign-out and a replayed refresh token end the family, and with it every access
/// token it issued, at once.
/// A user's email address, to show who is signed in.
pub async fn email_of<C: ConnectionTrait>(db: &C, user: &UserId) -> Result<Option<String>, DbErr> {
    Ok(dashboard_users::Entity::find_by_id(user.clone())
        .one(db)
        .await?
        .map(|u| u.email))
}

pub async fn family_lives<C: ConnectionTrait>(db: &C, family: &SessionId) -> Result<bool, DbErr> {
    Ok(dashboard_sessions::Entity::find()
        .filter(dashboard_sessions::Column::FamilyId.eq(family))
        .filter(dashboard_sessions::Column::RevokedAt.is_null())
        .filter(dashboard_sessions::Column::ExpiresAt.gt(Utc::now()))
        .one(db)
        .await?
        .is_some())
}

async fn end_family<C: ConnectionTrait>(
    db: &C,
    family_id: &SessionId,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    dashboard_sessions::Entity::update_many()
        .col_expr(
            dashboard_sessions::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(dashboard_sessions::Column::FamilyId.eq(family_id))
        .filter(dashboard_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Ends the session a refresh token belongs to, with every session of its family (the
/// tokens it replaced get no grace after sign-out).
pub async fn sign_out<C: ConnectionTrait>(db: &C, refresh_token: &str) -> Result<(), DbErr> {
    let session = dashboard_sessions::Entity::find()
        .filter(dashboard_sessions::Column::RefreshHash.eq(sha256_hex(refresh_token.as_bytes())))
        .one(db)
        .await?;
    if let Some(session) = session {
        end_family(db, &session.family_id, Utc::now()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_verify_with_their_key_only_and_expire() {
        let keys = SessionKeys::new(b"k1", Duration::from_secs(60), Duration::from_secs(60));
        let other = SessionKeys::new(b"k2", Duration::from_secs(60), Duration::from_secs(60));
        let claims = |exp| Claims {
            sub: UserId::generate().to_string(),
            mer: MerchantId::generate().to_string(),
            role: "viewer".into(),
            fam: SessionId::generate().to_string(),
            iat: now_secs(),
            exp,
        };
        let sign = |c: &Claims, k: &SessionKeys| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), c, &k.encoding).unwrap()
        };
        let fresh = claims(now_secs() + 60);
        let user = verify_access(&keys, &sign(&fresh, &keys)).expect("valid");
        assert_eq!(user.role, UserRole::Viewer);
        assert!(!user.can_act());
        assert!(
            verify_access(&keys, &sign(&fresh, &other)).is_none(),
            "another key"
        );
        assert!(
            verify_access(&keys, &sign(&claims(now_secs() - 1), &keys)).is_none(),
            "expired"
        );
        assert!(
            verify_access(&keys, &sign(&claims(now_secs()), &keys)).is_none(),
            "expired once its exp second has begun"
        );
        assert!(
            verify_access(&keys, "sk_test_notajwt").is_none(),
            "an API key is not a session"
        );
        let no_family = Claims {
            fam: String::new(),
            ..fresh
        };
        assert!(
            verify_access(&keys, &sign(&no_family, &keys)).is_none(),
            "a token that names no session family"
        );
    }
}
