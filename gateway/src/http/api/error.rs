//! API errors in Stripe's shape: `{"error":{"type","code","message","param"}}`.
//!
//! Every variant documents its status code. Handlers return [`ApiError`]; each domain error
//! converts into exactly one variant (`From` below); errors raised by
//! poem itself (malformed JSON, a missing header, an unknown route, a body over the limit)
//! are rewritten into the same shape by [`into_stripe_shape`], so no client ever sees another.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};
use sea_orm::DbErr;

use crate::core::error::{IdempotencyError, ServiceError, ValidationError};
use crate::payments::inbound::InboundError;
use serde::{Deserialize, Serialize};

/// Which kind of error (Stripe's types).
#[derive(
    poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request was wrong: fix it before sending it again.
    InvalidRequestError,
    /// No valid API key or admin token.
    AuthenticationError,
    /// An `Idempotency-Key` was reused with another request, or is in use.
    IdempotencyError,
    /// Too many requests: wait `Retry-After` seconds.
    RateLimitError,
    /// Our side, or a provider, failed.
    ApiError,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `idempotency_error`,
    /// `rate_limit_error` or `api_error`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    /// A stable, machine-readable code.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// The request parameter at fault, when there is one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The payment concerned, when the error left one behind (a provider failure).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request could not be read: malformed JSON, a wrong type, a missing field.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid API key (or admin token) was given.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The key is valid but may not do this (e.g. a live key on a sandbox route).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such object for this merchant.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The object's state does not allow this, or an idempotency key was reused with another body.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is over 1 MiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request was read but a value is invalid.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests with this API key: wait `Retry-After` seconds. Every authenticated
    /// answer carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
    /// `RateLimit-Policy`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The provider failed or timed out: the payment was recorded as `failed` (see `payment_id`).
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// Something on our side failed; nothing was changed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (database, broker, cache) is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(
    error_type: ErrorType,
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            error_type,
            code: code.to_string(),
            message: message.into(),
            param: param.map(str::to_string),
            payment_id: None,
        },
    })
}

impl ApiError {
    /// What the caller is told: for our own failures a generic sentence, never the cause.
    pub fn message(&self) -> &str {
        let (ApiError::BadRequest(b)
        | ApiError::Unauthorized(b)
        | ApiError::Forbidden(b)
        | ApiError::NotFound(b)
        | ApiError::Conflict(b)
        | ApiError::PayloadTooLarge(b)
        | ApiError::Unprocessable(b)
        | ApiError::TooManyRequests(b)
        | ApiError::BadGateway(b)
        | ApiError::Internal(b)
        | ApiError::Unavailable(b)) = self;
        &b.error.message
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(body(ErrorType::InvalidRequestError, code, message, None))
    }

    /// 422 for a value that was read but is not acceptable.
    pub fn invalid(param: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable(body(
            ErrorType::InvalidRequestError,
            code,
            message,
            Some(param),
        ))
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized(body(
            ErrorType::AuthenticationError,
            "invalid_api_key",
            message,
            None,
        ))
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Forbidden(body(ErrorType::InvalidRequestError, code, message, None))
    }

    pub fn not_found(object: &str, id: &str) -> ApiError {
        ApiError::NotFound(body(
            ErrorType::InvalidRequestError,
            "resource_missing",
            format!("No such {object}: '{id}'"),
            Some("id"),
        ))
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Conflict(body(ErrorType::InvalidRequestError, code, message, None))
    }

    pub fn idempotency_conflict(message: impl Into<String>) -> ApiError {
        ApiError::Conflict(body(
            ErrorType::IdempotencyError,
            "idempotency_key_reused",
            message,
            None,
        ))
    }

    /// 502 naming the payment the failure left behind; `recorded` says what was recorded as
    /// failed (the payment, or one of its refunds).
    pub fn provider_failed(
        provider: &str,
        payment_id: &str,
        failure: Option<&str>,
        recorded: &str,
    ) -> ApiError {
        let mut b = body(
            ErrorType::ApiError,
            "provider_error",
            format!(
                "The provider {provider} failed: {}. {recorded} was recorded as failed.",
                failure.unwrap_or("no answer")
            ),
            None,
        );
        b.0.error.payment_id = Some(payment_id.to_string());
        ApiError::BadGateway(b)
    }

    /// 429: this key's bucket is empty.
    pub fn too_many_requests(quota: runtime::token_bucket::Quota) -> ApiError {
        ApiError::TooManyRequests(body(
            ErrorType::RateLimitError,
            "rate_limit_exceeded",
            format!(
                "Too many requests with this API key (at most {} per second, {} at once). Retry \
                 after the number of seconds in Retry-After.",
                quota.per_second, quota.burst
            ),
            None,
        ))
    }

    /// 429: a hard monthly limit of the merchant's plan is reached.
    pub fn quota_exceeded(e: &crate::usage::quotas::Exceeded) -> ApiError {
        ApiError::TooManyRequests(body(
            ErrorType::RateLimitError,
            "quota_exceeded",
            format!(
                "Your {} plan allows {} {} a month and this month's are used; it resets at {} \
                 (Retry-After says in how many seconds). Nothing was changed.",
                e.plan,
                e.limit,
                e.metric,
                entity::event::rfc3339(e.resets_at)
            ),
            None,
        ))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::Unavailable(body(
            ErrorType::ApiError,
            "service_unavailable",
            message,
            None,
        ))
    }

    /// The database is out of reach: a 503 (with `Retry-After`, set for every 503 by the
    /// middleware) saying nothing was changed, so a retry with the same Idempotency-Key is safe.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "database unreachable");
        ApiError::Unavailable(body(
            ErrorType::ApiError,
            "database_unavailable",
            "The service is briefly unavailable; nothing was changed. Retry after Retry-After \
             seconds, with the same Idempotency-Key.",
            None,
        ))
    }

    /// Logs the cause (never shown to the client) and answers a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal(body(
            ErrorType::ApiError,
            "internal_error",
            "An internal error occurred; nothing was changed.",
            None,
        ))
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::invalid(&e.param, e.code, e.message)
    }
}

/// Unique constraints by name: each is its own conflict, with a code a client can act on.
const CONSTRAINTS: &[(&str, &str, &str)] = &[
    (
        "idempotency_keys_pkey",
        "idempotency_key_in_use",
        "This Idempotency-Key is being used by another request; retry to get its result.",
    ),
    (
        // Its primary key (the id is derived from the event and endpoint; on PostgreSQL each
        // day partition names its own) and, on older databases, the pair's unique index.
        "webhook_deliveries",
        "delivery_exists",
        "This event was already delivered to this endpoint.",
    ),
    (
        "uq_provider_events_provider_event",
        "provider_event_exists",
        "This provider event was already received.",
    ),
];

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Invalid(v) => v.into(),
            ServiceError::NotFound { object, id } => ApiError::not_found(object, &id),
            ServiceError::State { code, message } => ApiError::conflict(code, message),
            ServiceError::Forbidden { code, message } => ApiError::forbidden(code, message),
            ServiceError::Duplicate { constraint } => {
                match CONSTRAINTS
                    .iter()
                    .find(|(name, _, _)| constraint.contains(name))
                {
                    Some((_, code, message)) => ApiError::conflict(code, *message),
                    None => {
                        ApiError::conflict("resource_already_exists", "This object already exists.")
                    }
                }
            }
            ServiceError::Idempotency(e) => e.into(),
            ServiceError::Provider(message) => ApiError::BadGateway(body(
                ErrorType::ApiError,
                "provider_error",
                format!("The provider failed: {message}. Nothing was changed."),
                None,
            )),
            ServiceError::Db(e) => ApiError::internal(e),
            ServiceError::Unavailable(e) => ApiError::database_unavailable(e),
        }
    }
}

impl From<IdempotencyError> for ApiError {
    fn from(e: IdempotencyError) -> ApiError {
        match e {
            IdempotencyError::Reused => ApiError::idempotency_conflict(e.to_string()),
            IdempotencyError::InUse => ApiError::Conflict(body(
                ErrorType::IdempotencyError,
                "idempotency_key_in_use",
                e.to_string(),
                None,
            )),
            IdempotencyError::Db(e) => ServiceError::from(e).into(),
            IdempotencyError::Corrupt(_) => ApiError::internal(e),
        }
    }
}

impl From<InboundError> for ApiError {
    fn from(e: InboundError) -> ApiError {
        match e {
            InboundError::InvalidSignature => {
                ApiError::bad_request("signature_invalid", e.to_string())
            }
            InboundError::Malformed(m) => ApiError::bad_request("invalid_request_body", m),
            InboundError::Unverified(m) => ApiError::unavailable(m),
            InboundError::Service(e) => e.into(),
        }
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> ApiError {
        ServiceError::from(e).into()
    }
}

/// Rewrites any error poem raised (or ours, untouched) into the Stripe shape.
pub async fn into_stripe_shape(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let message = err.to_string();
    let api_error = match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request("invalid_request_body", message),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(
            "No valid API key provided. Send it as 'Authorization: Bearer sk_test_…'.",
        ),
        StatusCode::NOT_FOUND => ApiError::NotFound(body(
            ErrorType::InvalidRequestError,
            "resource_missing",
            "Unrecognized request URL.",
            None,
        )),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(body(
            ErrorType::InvalidRequestError,
            "body_too_large",
            "The request body is larger than 1 MiB.",
            None,
        )),
        s if s.is_client_error() => {
            return Response::builder()
                .status(s)
                .content_type("application/json; charset=utf-8")
                .body(
                    serde_json::to_string(
                        &body(
                            ErrorType::InvalidRequestError,
                            "invalid_request",
                            message,
                            None,
                        )
                        .0,
                    )
                    .unwrap_or_default(),
                );
        }
        _ => ApiError::internal(message),
    };
    api_error.into_response()
}
