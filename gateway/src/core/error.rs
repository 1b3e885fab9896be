//! The gateway's domain errors. None of them knows HTTP: `api::error` maps each variant to
//! exactly one status code, so services and background jobs (the poller) share them.

use sea_orm::{DbErr, SqlErr};

/// A value was read but is not acceptable. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ValidationError {
    /// The request parameter at fault, as the merchant wrote it (`customer[email]`).
    pub param: String,
    /// A stable, machine-readable code.
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            param: param.into(),
            code,
            message: message.into(),
        }
    }
}

/// Refuses control characters (NUL above all: PostgreSQL cannot store it in text or JSON)
/// in a value from outside. Tabs and line breaks are text; the rest is not.
pub fn plain_text(param: &str, value: &str) -> Result<(), ValidationError> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValidationError::new(
            param,
            "invalid_characters",
            format!("{param} contains control characters (such as NUL), which are not accepted."),
        ));
    }
    Ok(())
}

/// [`plain_text`] over every key and string of a JSON value.
pub fn plain_json(param: &str, value: &serde_json::Value) -> Result<(), ValidationError> {
    match value {
        serde_json::Value::String(s) => plain_text(param, s),
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| plain_json(param, v)),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            plain_text(param, k)?;
            plain_json(param, v)
        }),
        _ => Ok(()),
    }
}

/// The failures every service shares. Areas with failures of their own (payments, inbound
/// provider webhooks) have their own enum that wraps this one.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such object for this merchant.
    #[error("no such {object}: {id}")]
    NotFound { object: &'static str, id: String },
    /// The object's state does not allow this.
    #[error("{message}")]
    State { code: &'static str, message: String },
    /// The caller may not do this (a test key managing live keys).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// A unique constraint: the object exists already.
    #[error("already exists ({constraint})")]
    Duplicate { constraint: String },
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// The provider failed or did not answer; nothing was changed here.
    #[error("the provider failed: {0}")]
    Provider(String),
    #[error("database: {0}")]
    Db(DbErr),
    /// The database could not be reached: nothing was changed, and a retry may succeed.
    #[error("database unreachable: {0}")]
    Unavailable(DbErr),
}

/// Whether the database could not be reached (no connection to be had, or one lost
/// mid-statement) rather than refusing a statement: the first is worth retrying, the second
/// is a bug of ours.
pub fn is_unreachable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            matches!(
                inner.as_ref(),
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
            )
        }
        _ => false,
    }
}

impl From<DbErr> for ServiceError {
    /// Unique constraints are conflicts the caller can act on, named by their constraint;
    /// an unreachable database is a retry's business; anything else is ours.
    fn from(e: DbErr) -> ServiceError {
        if is_unreachable(&e) {
            return ServiceError::Unavailable(e);
        }
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(constraint)) => {
                ServiceError::Duplicate { constraint }
            }
            _ => ServiceError::Db(e),
        }
    }
}

impl ServiceError {
    pub fn not_found(object: &'static str, id: &str) -> ServiceError {
        ServiceError::NotFound {
            object,
            id: id.to_string(),
        }
    }

    pub fn state(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::State {
            code,
            message: message.into(),
        }
    }
}

/// Why a key could not be honoured.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used before with another request or operation.
    #[error(
        "This Idempotency-Key was already used with a different request. Use a new key for a new request."
    )]
    Reused,
    /// Another request with this key has not finished yet.
    #[error(
        "Another request with this Idempotency-Key is still in progress. Retry it in a moment to get its result."
    )]
    InUse,
    /// The stored response does not parse: ours to fix, never the caller's.
    #[error("stored idempotent response is unreadable: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// `Option` → the object, or a not-found error naming it.
pub trait OrNotFound<T> {
    fn or_not_found(self, object: &'static str, id: &str) -> Result<T, ServiceError>;
}

impl<T> OrNotFound<T> for Option<T> {
    fn or_not_found(self, object: &'static str, id: &str) -> Result<T, ServiceError> {
        self.ok_or_else(|| ServiceError::not_found(object, id))
    }
}
