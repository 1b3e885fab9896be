//! One signed HTTP attempt to a merchant endpoint.
//!
//! Redirects are not followed (a 3xx is a failure, as Stripe does), every call has a
//! timeout, and only the first 4 KiB of an answer are kept. Where a webhook may go is a
//! [`WebhookTargets`] policy, enforced twice: a check of the URL before anything is sent, and
//! the client's own resolver, which drops addresses the policy refuses, so a DNS answer cannot
//! change between the check and the connection.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use entity::signature::SigningKey;

pub mod targets;

use targets::{GuardedResolver, is_localhost};
pub use targets::{WebhookTargets, is_loopback, is_loopback_url, is_public};

const KEEP_RESPONSE_BYTES: usize = 4096;

pub const USER_AGENT: &str = concat!("Payrail-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Why an attempt did not get a 2xx, for metrics and the attempt row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Timeout,
    Connect,
    Tls,
    Dns,
    Http3xx,
    Http4xx,
    Http5xx,
    /// Refused before any connection: a private target, or a URL that cannot be sent to.
    Blocked,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Timeout,
        ErrorClass::Connect,
        ErrorClass::Tls,
        ErrorClass::Dns,
        ErrorClass::Http3xx,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Blocked,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Tls => "tls",
            ErrorClass::Dns => "dns",
            ErrorClass::Http3xx => "http_3xx",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Blocked => "blocked",
        }
    }

    fn of_status(status: reqwest::StatusCode) -> Option<ErrorClass> {
        if status.is_success() {
            None
        } else if status.is_redirection() {
            Some(ErrorClass::Http3xx)
        } else if status.is_client_error() {
            Some(ErrorClass::Http4xx)
        } else {
            Some(ErrorClass::Http5xx)
        }
    }

    /// The class of a request that got no answer, from the error's chain of causes.
    fn of_error(timed_out: bool, description: &str) -> ErrorClass {
        let d = description.to_ascii_lowercase();
        if timed_out || d.contains("timed out") {
            ErrorClass::Timeout
        } else if d.contains("dns error")
            || d.contains("failed to lookup address")
            || d.contains("no public address")
        {
            ErrorClass::Dns
        } else if d.contains("certificate")
            || d.contains("tls")
            || d.contains("handshake")
            || d.contains("invalid peer")
        {
            ErrorClass::Tls
        } else {
            ErrorClass::Connect
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub http_status: Option<u16>,
    pub error: Option<(ErrorClass, String)>,
    pub response_body: Option<String>,
    pub duration: Duration,
    /// What a 429 or 503 asked for in `Retry-After` (seconds or an HTTP date), if anything.
    pub retry_after: Option<Duration>,
    /// The headers sent, in order (empty when the request was refused before it was made);
    /// the body is the event's envelope, the same for every attempt.
    pub request_headers: Vec<(String, String)>,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// The receiver said the endpoint is gone for good (410).
    pub fn gone(&self) -> bool {
        self.http_status == Some(410)
    }
}

/// `Retry-After`: delay-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The headers and body of one attempt.
pub struct SignedRequest {
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub delivery_id: String,
    pub body: Vec<u8>,
    /// The attempt's W3C trace context, sent as `traceparent` so the merchant's side can
    /// join the trace (none when tracing is off).
    pub traceparent: Option<String>,
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("the webhook HTTP client could not be built: {0}")]
    Client(#[from] reqwest::Error),
    #[error(
        "PAYRAIL_WEBHOOK_TARGETS=loopback needs a proxy on loopback too (an IP literal or localhost), not {0:?}"
    )]
    ProxyNotLoopback(String),
}

#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    targets: WebhookTargets,
    /// Set when webhooks go through a proxy: then the proxy is what is dialled.
    proxied: bool,
    /// Bounds name resolution too: a slow resolver is a slow receiver.
    timeout: Duration,
}

impl WebhookSender {
    /// `proxy`: the only proxy webhooks go through. `HTTP(S)_PROXY` in the environment is
    /// ignored: a proxy set for other traffic must not see (or reroute) merchants' webhooks.
    pub fn new(
        timeout: Duration,
        targets: WebhookTargets,
        proxy: Option<&str>,
    ) -> Result<WebhookSender, SenderError> {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(proxy) = proxy {
            if targets == WebhookTargets::Loopback && !is_loopback_url(proxy) {
                return Err(SenderError::ProxyNotLoopback(proxy.to_string()));
            }
            builder = builder.proxy(reqwest::Proxy::all(proxy)?);
        }
        if targets != WebhookTargets::Any {
            builder = builder.dns_resolver(GuardedResolver { targets, timeout });
        }
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(WebhookSender {
            client,
            targets,
            proxied: proxy.is_some(),
            timeout,
        })
    }

    /// Signs `request` with each of `keys` at the current time and sends it: the
    /// `webhook-signature` header carries one `v1,` entry a key (a rotation's overlap), of
    /// which a receiver needs any one; `X-Payrail-Signature` uses the first, the newest.
    pub async fn send(&self, keys: &[SigningKey], request: &SignedRequest) -> AttemptResult {
        let started = Instant::now();
        let failed =
            |class: ErrorClass, message: String, sent: Vec<(String, String)>| AttemptResult {
                http_status: None,
                error: Some((class, message)),
                response_body: None,
                duration: started.elapsed(),
                retry_after: None,
                request_headers: sent,
            };
        let Some(newest) = keys.first() else {
            return failed(
                ErrorClass::Blocked,
                "the endpoint has no signing secret".into(),
                Vec::new(),
            );
        };
        if let Err((class, message)) = self.check_target(&request.url).await {
            return failed(class, message, Vec::new());
        }
        let timestamp = chrono::Utc::now().timestamp();
        // Kept as sent, for the attempt's record.
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), USER_AGENT.into()),
            ("webhook-id".into(), request.event_id.clone()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            (
                "webhook-signature".into(),
                keys.iter()
                    .map(|k| k.sign_standard(&request.event_id, timestamp, &request.body))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            (
                "x-payrail-signature".into(),
                newest.sign_body(&request.body),
            ),
            ("x-payrail-event".into(), request.event_type.clone()),
            ("x-payrail-delivery".into(), request.delivery_id.clone()),
        ];
        if let Some(value) = &request.traceparent {
            headers.push((runtime::trace_context::TRACEPARENT.into(), value.clone()));
        }
        let mut builder = self.client.post(&request.url);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.body(request.body.clone()).send().await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                let timed_out = e.is_timeout();
                let description = describe(e);
                return failed(
                    ErrorClass::of_error(timed_out, &description),
                    description,
                    headers,
                );
            }
        };
        let status = response.status();
        let retry_after = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
            _ => None,
        };
        let mut kept = Vec::new();
        // The receiver may stream forever; keep a little and stop at the timeout.
        while kept.len() < KEEP_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        kept.truncate(KEEP_RESPONSE_BYTES);
        let body = String::from_utf8_lossy(&kept).into_owned();
        let error = ErrorClass::of_status(status).map(|class| {
            let note = if class == ErrorClass::Http3xx {
                " (redirects are not followed)"
            } else {
                ""
            };
            (class, format!("HTTP {}{note}", status.as_u16()))
        });
        AttemptResult {
            http_status: Some(status.as_u16()),
            error,
            response_body: Some(body),
            duration: started.elapsed(),
            retry_after,
            request_headers: headers,
        }
    }

    /// Refuses, before any connection, a URL the policy does not allow: for `Public`, after
    /// resolving its host; for `Loopback`, without resolving anything but `localhost`.
    async fn check_target(&self, url: &str) -> Result<(), (ErrorClass, String)> {
        let parsed =
            url::Url::parse(url).map_err(|e| (ErrorClass::Blocked, format!("invalid URL: {e}")))?;
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) => Target::Name(name.to_string()),
            Some(url::Host::Ipv4(ip)) => Target::Ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => Target::Ip(ip.into()),
            None => return Err((ErrorClass::Blocked, "URL has no host".to_string())),
        };
        match self.targets {
            WebhookTargets::Any => Ok(()),
            // The proxy, on loopback, is the only address dialled; it judges the target.
            WebhookTargets::Loopback if self.proxied => Ok(()),
            WebhookTargets::Loopback => match host {
                Target::Ip(ip) if is_loopback(ip) => Ok(()),
                Target::Name(name) if is_localhost(&name) => Ok(()),
                Target::Ip(ip) => Err((
                    ErrorClass::Blocked,
                    format!("{ip} is not a loopback address (webhooks here stay on this machine)"),
                )),
                Target::Name(name) => Err((
                    ErrorClass::Blocked,
                    format!(
                        "{name} is not localhost (webhooks here stay on this machine; it was not looked up)"
                    ),
                )),
            },
            WebhookTargets::Public | WebhookTargets::PublicOrLoopback => {
                let port = parsed.port_or_known_default().unwrap_or(443);
                let (host, addresses) = match host {
                    Target::Ip(ip) => (ip.to_string(), vec![ip]),
                    Target::Name(name) => {
                        let found = tokio::time::timeout(
                            self.timeout,
                            tokio::net::lookup_host((name.as_str(), port)),
                        )
                        .await
                        .map_err(|_| (ErrorClass::Dns, format!("resolving {name} timed out")))?
                        .map_err(|e| (ErrorClass::Dns, format!("cannot resolve {name}: {e}")))?
                        .map(|a| a.ip())
                        .collect();
                        (name, found)
                    }
                };
                if addresses.is_empty() {
                    return Err((ErrorClass::Dns, format!("{host} has no address")));
                }
                match addresses.iter().find(|ip| !self.targets.admits(**ip)) {
                    Some(ip) => Err((
                        ErrorClass::Blocked,
                        format!("{host} resolves to non-public address {ip}"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

enum Target {
    Name(String),
    Ip(IpAddr),
}

/// The error and its causes, without the URL: a webhook URL's query string often carries a
/// token, and this message is stored and shown.
fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
#[cfg(test)]
mod tests;
