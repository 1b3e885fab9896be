//! The HTTP surface: the OpenAPI-described merchant API (one module per resource), plus the
//! plain routes around it (docs, metrics, health, the sandbox checkout page).

pub mod admin;
pub mod auth;
pub mod balance;
pub mod deliveries;
pub mod dto;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod keys;
pub mod logs;
pub mod payments;
pub mod payouts;
pub mod providers;
pub mod reconciliation;
pub mod requests;
pub mod spec;
pub mod usage;

use poem::Request;
use poem_openapi::{OpenApiService, Tags};

use crate::http::request::RequestId;

#[derive(Tags)]
pub enum ApiTags {
    /// Create and follow payments.
    Payments,
    /// Where your webhooks go.
    WebhookEndpoints,
    /// The log of everything that happened.
    Events,
    /// Every webhook sent, with its attempts.
    WebhookDeliveries,
    /// The simulated provider (sandbox keys only).
    Sandbox,
    /// Inbound provider webhooks.
    Providers,
    /// Your log store: write entries, read recent errors and counts.
    Logs,
    /// Your API keys: live and test, rolled and revoked.
    ApiKeys,
    /// Payouts from your balance to wallets and bank accounts.
    Payouts,
    /// Your balance and every movement of your money.
    Balance,
    /// Differences between your money's records and your providers' reports.
    Reconciliation,
    /// Your metered usage per month.
    Usage,
    /// Operator endpoints (admin token).
    Admin,
}

pub type Apis = (
    payments::PaymentsApi,
    endpoints::EndpointsApi,
    events::EventsApi,
    deliveries::DeliveriesApi,
    providers::ProvidersApi,
    logs::LogsApi,
    keys::KeysApi,
    payouts::PayoutsApi,
    // Tuples have `Default` up to twelve: money's views travel together.
    (balance::BalanceApi, reconciliation::ReconciliationApi),
    usage::UsageApi,
    admin::AdminApi,
    usage::AdminUsageApi,
);

pub fn service(server_url: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        Apis::default(),
        "Payrail",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Payments through one API, and signed webhooks you can rely on. Amounts are integers in \
         the currency's minor unit; errors are `{\"error\":{type,code,message,param}}`; lists take \
         `limit`, `starting_after`, `ending_before`; POSTs that create take `Idempotency-Key`.",
    )
    .server(server_url.to_string())
}

/// The published spec: poem's document (`service(…).spec()`), refined by [`spec`].
pub fn published_spec(poem_spec: &str) -> String {
    serde_json::to_string_pretty(&spec::document(poem_spec)).unwrap_or_default()
}

/// The API's two documents, `/openapi.json` and the `/docs` page (Swagger UI with the spec
/// inline), made on the first request for either and then shared by every answer (a copy of
/// 2 MB per `/docs` request before). A gateway serving payments never needs their 2.7 MB, nor
/// the ~7 MB of buffers their making takes: made at start-up, they kept an idle gateway at 29
/// MiB resident instead of 18 (docs/benchmarks.md).
#[derive(Clone)]
pub struct Documents(std::sync::Arc<DocumentsInner>);

struct DocumentsInner {
    public_url: String,
    made: std::sync::OnceLock<Made>,
}

struct Made {
    spec: bytes::Bytes,
    page: bytes::Bytes,
}

impl Documents {
    pub fn new(public_url: &str) -> Documents {
        Documents(std::sync::Arc::new(DocumentsInner {
            public_url: public_url.to_string(),
            made: std::sync::OnceLock::new(),
        }))
    }

    fn made(&self) -> &Made {
        self.0.made.get_or_init(|| {
            let service = service(&self.0.public_url);
            // The page shows the refined document, not poem's own.
            let poem_spec = service.spec();
            let spec = published_spec(&poem_spec);
            let page = service.swagger_ui_html().replace(&poem_spec, &spec);
            Made {
                spec: spec.into(),
                page: page.into(),
            }
        })
    }

    /// `/openapi.json`.
    pub fn spec(&self) -> poem::Response {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.made().spec.clone())
    }

    /// `/docs`.
    pub fn page(&self) -> poem::Response {
        poem::Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(self.made().page.clone())
    }
}

/// The canonical spec (as committed in `openapi/openapi.json`).
pub fn spec_json() -> String {
    published_spec(&service("http://127.0.0.1:8080").spec())
}

/// An `Idempotency-Key` header, if sent, must be 1 to 255 characters.
pub fn valid_idempotency_key(
    key: Option<&str>,
) -> Result<Option<&str>, crate::http::api::error::ApiError> {
    match key {
        Some(k) if !crate::core::idempotency::key_is_valid(k) => {
            Err(crate::http::api::error::ApiError::bad_request(
                "idempotency_key_invalid",
                crate::core::idempotency::KEY_RULE,
            ))
        }
        other => Ok(other),
    }
}

/// A path parameter as the id type it names; an id of another kind (or none) is a 404 like
/// any unknown id.
pub fn path_id<T: entity::ids::TypedId>(
    raw: &str,
    object: &'static str,
) -> Result<T, error::ApiError> {
    T::parse(raw).ok_or_else(|| error::ApiError::not_found(object, raw))
}

/// A query parameter that filters by an id: absent, or an id of the kind it names (422 else,
/// rather than a filter that can never match).
pub fn query_id<T: entity::ids::TypedId>(
    param: &str,
    raw: Option<String>,
) -> Result<Option<T>, error::ApiError> {
    raw.map(|raw| {
        T::parse(&raw)
            .filter(|_| entity::ids::looks_like_id(&raw))
            .ok_or_else(|| {
                error::ApiError::invalid(
                    param,
                    "parameter_invalid",
                    format!("{param} is not an id of the right kind."),
                )
            })
    })
    .transpose()
}

pub fn request_id(req: &Request) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}
