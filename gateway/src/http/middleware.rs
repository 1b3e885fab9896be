//! Around every request: the body limit, the request id, the merchant slot that errors are
//! attributed to (and rate-limit headers come from), the HTTP metrics, and the log store entry for a 5xx. Errors raised by poem
//! itself leave here in the Stripe shape.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument as _;

use entity::status::LogLevel;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::core::metrics::{ApiMetrics, HttpLabels};
use crate::http::api::error::into_stripe_shape;
use crate::http::request::{MerchantSlot, RequestId};

/// A body that counts the bytes read from it.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
    /// Set once the body was read to its end.
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.read
            .fetch_add(u64::try_from(read).unwrap_or(u64::MAX), Ordering::Relaxed);
        if matches!(polled, Poll::Ready(Ok(()))) && read == 0 && buf.remaining() > 0 {
            self.finished.store(true, Ordering::Relaxed);
        }
        polled
    }
}

/// Whether a raw URI part carries a percent-encoded control character (`%00`–`%1F`, `%7F`):
/// the only way one can be in a URL, and PostgreSQL cannot even look up a NUL.
fn has_encoded_control(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|b| b < 0x20 || b == 0x7f)
    })
}

/// The method as a metric label: the methods the API serves, anything else `other`, so a
/// client inventing methods cannot grow the label set.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Seconds a client is told to wait after a 503.
const UNAVAILABLE_RETRY_AFTER: &str = "2";

/// Bodies above this are refused with 413 (by Content-Length) or cut off (chunked bodies,
/// which then fail to parse with a 400): either way nothing is changed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An answer after which the connection closes (its request's body was not read), saying so.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    response
}

/// Every answer names its request, as `Request-Id` (Stripe's header) and `X-Request-Id`.
fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(v) = poem::http::HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", v.clone());
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

pub async fn observe<E: Endpoint>(
    next: E,
    req: Request,
    metrics: Arc<ApiMetrics>,
    db: sea_orm::DatabaseConnection,
    bus: runtime::bus::EventBus,
    cache: runtime::cache::Cache,
) -> poem::Result<Response> {
    // The request's span: the root of the payment's trace, or a child of the caller's when
    // it sent a `traceparent` with credentials (an API key or the admin token). An anonymous
    // caller's `traceparent` (checkout, QR codes, sign-in, providers' webhooks) is only linked:
    // it may not choose our trace ids or unsample our spans. Named after the route template
    // once it is known.
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let caller = req
        .headers()
        .get(runtime::trace_context::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    if req
        .headers()
        .contains_key(poem::http::header::AUTHORIZATION)
    {
        runtime::trace_context::continue_from(&span, caller);
    } else {
        runtime::trace_context::link_from(&span, caller);
    }
    observe_in(next, req, metrics, db, bus, cache)
        .instrument(span)
        .await
}

async fn observe_in<E: Endpoint>(
    next: E,
    mut req: Request,
    metrics: Arc<ApiMetrics>,
    db: sea_orm::DatabaseConnection,
    bus: runtime::bus::EventBus,
    cache: runtime::cache::Cache,
) -> poem::Result<Response> {
    // A caller's own id (Stripe's `Request-Id`, or the common `X-Request-Id`) is kept so its
    // logs and ours meet; otherwise one is made here.
    let request_id = ["request-id", "x-request-id"]
        .iter()
        .find_map(|name| req.headers().get(*name))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req_{}", entity::ids::random_token(20)));
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        let refused = into_stripe_shape(poem::Error::from_status(
            poem::http::StatusCode::PAYLOAD_TOO_LARGE,
        ))
        .await;
        return Ok(closing(with_request_id(refused, &request_id)));
    }
    // A body without a Content-Length (chunked) is limited as it is read, and counted for
    // the merchant's usage as it is read. Every body is watched to its end: one the route
    // answered without reading (a 401, a 404, a 429…) leaves bytes on the connection, which
    // is then closed, so the answer says `Connection: close` and the client's pool does not
    // send its next request down a dead connection.
    let read_without_length = Arc::new(AtomicU64::new(0));
    let body_finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chunked = req
        .headers()
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let has_body = declared.is_some_and(|n| n > 0) || chunked;
    if has_body {
        use tokio::io::AsyncReadExt as _;
        let limited = req
            .take_body()
            .into_async_read()
            .take(MAX_BODY_BYTES as u64 + 1);
        req.set_body(poem::Body::from_async_read(Counted {
            inner: limited,
            read: read_without_length.clone(),
            finished: body_finished.clone(),
        }));
    }
    if has_encoded_control(req.uri().path()) || req.uri().query().is_some_and(has_encoded_control) {
        let refused = crate::http::api::error::ApiError::invalid(
            "url",
            "invalid_characters",
            "The URL contains control characters (such as %00), which are not accepted.",
        )
        .into_response();
        let refused = with_request_id(refused, &request_id);
        return Ok(if has_body { closing(refused) } else { refused });
    }
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let merchant = MerchantSlot::default();
    req.extensions_mut().insert(merchant.clone());
    let method = method_label(req.method()).to_string();
    let path = req.uri().path().to_string();
    metrics.active.inc();
    let started = Instant::now();
    // The cache keys the call drops are deleted below, with its usage, before it answers.
    let ((mut response, route), dropped) = runtime::cache::Cache::gathering_deletes(async {
        match next.call(req).await {
            Ok(r) => {
                let r = r.into_response();
                let route = r.data::<poem_openapi::OperationId>().map(|o| o.0);
                (r, route)
            }
            Err(e) => {
                let route = e.data::<poem_openapi::OperationId>().map(|o| o.0);
                (into_stripe_shape(e).await, route)
            }
        }
    })
    .await;
    metrics.active.dec();
    if has_body && !body_finished.load(Ordering::Relaxed) {
        response = closing(response);
    }
    let status = response.status().as_u16();
    let route = route.unwrap_or("other");
    let labels = HttpLabels {
        route: route.into(),
        method: method.clone(),
        status_class: format!("{}xx", status / 100),
    };
    let elapsed = started.elapsed();
    let span = tracing::Span::current();
    runtime::trace_context::rename(&span, format!("{method} {route}"));
    span.record("http.route", route);
    span.record("http.response.status_code", status);
    span.record("request_id", request_id.as_str());
    metrics.requests.get_or_create_owned(&labels).inc();
    metrics
        .duration
        .get_or_create_owned(&labels)
        .observe(elapsed.as_secs_f64());
    if status >= 400 {
        metrics.errors.get_or_create_owned(&labels).inc();
    }
    let scope = merchant.get();
    // Metered per merchant: the call and its bytes (the request's declared length, or what
    // was read of a chunked one; the answer as sent).
    let counts = if scope.is_some() {
        let body = response.take_body().into_bytes().await.unwrap_or_default();
        let sent = i64::try_from(body.len()).unwrap_or(i64::MAX);
        response.set_body(body);
        let received = declared.map_or_else(
            || read_without_length.load(Ordering::Relaxed),
            |n| u64::try_from(n).unwrap_or(u64::MAX),
        );
        let received = i64::try_from(received).unwrap_or(i64::MAX);
        use runtime::usage::metric;
        vec![
            (metric::API_REQUESTS, 1),
            (metric::REQUEST_BYTES, received),
            (metric::RESPONSE_BYTES, sent),
        ]
    } else {
        Vec::new()
    };
    cache
        .settle_request(scope.as_ref(), &counts, &dropped)
        .await;
    if status >= 500 {
        runtime::log_store::record(
            &db,
            &bus,
            runtime::log_store::Entry {
                scope: scope.as_ref(),
                // Critical pages someone: only for a failure of ours on an authenticated
                // request, so anonymous traffic cannot raise alarms.
                level: if status == 502 || scope.is_none() {
                    LogLevel::Error
                } else {
                    LogLevel::Critical
                },
                source: "api",
                message: &format!("{method} {route} answered {status}"),
                context: Some(
                    serde_json::json!({"route": route, "method": method, "status": status}),
                ),
                request_id: Some(&request_id),
            },
        )
        .await;
    }
    response = with_request_id(response, &request_id);
    // Every 503 says when to come back (a dependency is out of reach; nothing was changed).
    if status == 503 && !response.headers().contains_key("retry-after") {
        response.headers_mut().insert(
            "retry-after",
            poem::http::HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
        );
    }
    // A 405 says which methods the path does answer (RFC 9110 requires `Allow`).
    if status == 405
        && let Some(allow) = crate::http::api::spec::allowed_methods(&path)
        && let Ok(value) = poem::http::HeaderValue::from_str(&allow)
    {
        response.headers_mut().insert("allow", value);
    }
    if let Some(limited) = merchant.rate_limit() {
        for (name, value) in limited.headers() {
            if let Ok(value) = poem::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    if let Some(seconds) = merchant.quota_retry_after()
        && let Ok(value) = poem::http::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    tracing::info!(request_id = %request_id, method = %method, route, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    Ok(response)
}

/// A bucket per client address on a public route (the checkout, QR codes, the sign-in page):
/// 429 with `Retry-After` past it, before the route does any work.
pub async fn public_limit<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    if let Some(state) = req.data::<crate::http::state::AppState>().cloned() {
        let client = state
            .client_address(&req)
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let admission = state
            .limiter
            .take(&format!("public:{client}"), state.public_rate_limit)
            .await;
        if !admission.allowed {
            state.metrics.rate_limited.inc();
            return Ok(Response::builder()
                .status(poem::http::StatusCode::TOO_MANY_REQUESTS)
                .header(
                    "Retry-After",
                    admission.retry_after_ms.div_ceil(1000).max(1).to_string(),
                )
                .content_type("text/plain; charset=utf-8")
                .body("Too many requests from your address; try again in a moment."));
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}
