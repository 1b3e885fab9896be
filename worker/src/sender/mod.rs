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
        let failed = |class: ErrorClass, message: String| AttemptResult {
            http_status: None,
            error: Some((class, message)),
            response_body: None,
            duration: started.elapsed(),
            retry_after: None,
        };
        let Some(newest) = keys.first() else {
            return failed(
                ErrorClass::Blocked,
                "the endpoint has no signing secret".into(),
            );
        };
        if let Err((class, message)) = self.check_target(&request.url).await {
            return failed(class, message);
        }
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&request.url)
            .header("content-type", "application/json")
            .header("webhook-id", &request.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                keys.iter()
                    .map(|k| k.sign_standard(&request.event_id, timestamp, &request.body))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .header("x-payrail-signature", newest.sign_body(&request.body))
            .header("x-payrail-event", &request.event_type)
            .header("x-payrail-delivery", &request.delivery_id);
        let response = match &request.traceparent {
            Some(value) => response.header(runtime::trace_context::TRACEPARENT, value),
            None => response,
        }
        .body(request.body.clone())
        .send()
        .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                let timed_out = e.is_timeout();
                let description = describe(e);
                return failed(ErrorClass::of_error(timed_out, &description), description);
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
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:169.254.169.254",
            "fec0::1",
            "feff::1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
            "::10.0.0.1",
            "100::1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn the_resolver_itself_drops_private_addresses() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = GuardedResolver {
            targets: WebhookTargets::Public,
            timeout: Duration::from_secs(2),
        }
        .resolve(name)
        .await
        .err()
        .expect("localhost is refused at resolution");
        assert!(err.to_string().contains("no public address"));
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_unless_allowed() {
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let request = SignedRequest {
            url: "http://127.0.0.1:9/hook".into(),
            event_id: "evt_1".into(),
            event_type: "payment.pending".into(),
            delivery_id: "whd_1".into(),
            body: b"{}".to_vec(),
            traceparent: None,
        };
        let strict =
            WebhookSender::new(Duration::from_secs(1), WebhookTargets::Public, None).unwrap();
        let result = strict.send(std::slice::from_ref(&key), &request).await;
        assert_eq!(result.error.map(|e| e.0), Some(ErrorClass::Blocked));
        let localhost = SignedRequest {
            url: "http://localhost:9/hook".into(),
            ..request
        };
        let result = strict.send(std::slice::from_ref(&key), &localhost).await;
        assert_eq!(result.error.map(|e| e.0), Some(ErrorClass::Blocked));
    }

    #[tokio::test]
    async fn the_loopback_guard_refuses_every_other_target_before_dialling_or_resolving() {
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let guarded =
            WebhookSender::new(Duration::from_secs(5), WebhookTargets::Loopback, None).unwrap();
        // A routable private address and a public one would each take the whole connect
        // timeout (there is no network here); a name would be a DNS query. Each is refused
        // as `blocked`, the class of what never left the process.
        for url in [
            "http://10.255.255.1:81/hook",
            "http://93.184.216.34/hook",
            "https://[2606:4700::1111]/hook",
            "https://payrail-fuzz.example/hook",
            "http://localhost.evil.example/hook",
            "http://0.0.0.0:9/hook",
        ] {
            let result = guarded
                .send(std::slice::from_ref(&key), &request(url.into()))
                .await;
            let (class, message) = result.error.expect("refused");
            assert_eq!(class, ErrorClass::Blocked, "{url}: {message}");
            assert!(
                result.duration < Duration::from_secs(1),
                "{url} was dialled"
            );
        }
        let (url, server) = answer_ok().await;
        let result = guarded
            .send(std::slice::from_ref(&key), &request(url))
            .await;
        assert_eq!(result.http_status, Some(200), "{:?}", result.error);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_loopback_resolver_looks_up_nothing_but_localhost() {
        use reqwest::dns::Resolve as _;
        let resolver = GuardedResolver {
            targets: WebhookTargets::Loopback,
            timeout: Duration::from_secs(2),
        };
        let addrs: Vec<_> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .expect("localhost resolves")
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| is_loopback(a.ip())));
        let err = resolver
            .resolve("payrail-fuzz.example".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not looked up"), "{err}");
    }

    #[tokio::test]
    async fn under_loopback_a_proxy_is_the_only_address_dialled_and_must_be_local() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        assert!(matches!(
            WebhookSender::new(
                Duration::from_secs(1),
                WebhookTargets::Loopback,
                Some("http://10.0.0.1:3128")
            ),
            Err(SenderError::ProxyNotLoopback(_))
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = format!("http://{}", listener.local_addr().unwrap());
        let proxy_side = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            let _ = stream
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        });
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let sender = WebhookSender::new(
            Duration::from_secs(2),
            WebhookTargets::Loopback,
            Some(&proxy),
        )
        .unwrap();
        let result = sender
            .send(
                std::slice::from_ref(&key),
                &request("http://payrail-fuzz.example/hook".into()),
            )
            .await;
        assert_eq!(result.http_status, Some(403), "the proxy's answer");
        assert_eq!(
            proxy_side.await.unwrap(),
            "POST http://payrail-fuzz.example/hook HTTP/1.1",
            "the proxy got the target to judge"
        );
    }

    #[tokio::test]
    async fn embedded_modes_default_reaches_this_machine_but_not_the_lan_or_metadata() {
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let sender = WebhookSender::new(
            Duration::from_secs(2),
            WebhookTargets::PublicOrLoopback,
            None,
        )
        .unwrap();
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/hook",
            "http://[fec0::1]/hook",
        ] {
            let result = sender
                .send(std::slice::from_ref(&key), &request(url.into()))
                .await;
            assert_eq!(
                result.error.map(|e| e.0),
                Some(ErrorClass::Blocked),
                "{url}"
            );
        }
        let (url, server) = answer_ok().await;
        let result = sender.send(std::slice::from_ref(&key), &request(url)).await;
        assert_eq!(result.http_status, Some(200), "{:?}", result.error);
        server.await.unwrap();
    }

    #[test]
    fn targets_parse_from_their_names_only() {
        for t in WebhookTargets::ALL {
            assert_eq!(WebhookTargets::parse(t.as_str()), Ok(t));
        }
        assert_eq!(
            WebhookTargets::parse(" Loopback "),
            Ok(WebhookTargets::Loopback)
        );
        assert!(WebhookTargets::parse("private").is_err());
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_loopback_url("http://[::1]:8080"));
        assert!(is_loopback_url("http://localhost:3128"));
        assert!(!is_loopback_url("http://10.0.0.1:3128"));
        assert!(!is_loopback_url("not a url"));
    }

    /// A one-shot HTTP server on loopback answering 200, for send tests.
    async fn answer_ok() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        (url, task)
    }

    fn request(url: String) -> SignedRequest {
        SignedRequest {
            url,
            event_id: "evt_1".into(),
            event_type: "payment.pending".into(),
            delivery_id: "whd_1".into(),
            body: b"{}".to_vec(),
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn proxies_from_the_environment_are_ignored() {
        // nextest runs each test in its own process, so this does not leak into others.
        // SAFETY: set before any thread of this test reads the environment.
        unsafe {
            std::env::set_var("HTTP_PROXY", "http://127.0.0.1:1");
            std::env::set_var("http_proxy", "http://127.0.0.1:1");
            std::env::set_var("ALL_PROXY", "http://127.0.0.1:1");
        }
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let (url, server) = answer_ok().await;
        let sender =
            WebhookSender::new(Duration::from_secs(2), WebhookTargets::Loopback, None).unwrap();
        let result = sender.send(std::slice::from_ref(&key), &request(url)).await;
        assert_eq!(result.http_status, Some(200), "{:?}", result.error);
        server.await.unwrap();
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn failures_are_classified_from_their_causes() {
        let class = |timed_out, d| ErrorClass::of_error(timed_out, d).as_str();
        assert_eq!(class(true, "error sending request"), "timeout");
        assert_eq!(
            class(
                false,
                "error sending request: client error (Connect): dns error: failed to lookup address information"
            ),
            "dns"
        );
        assert_eq!(
            class(
                false,
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
            ),
            "tls"
        );
        assert_eq!(
            class(
                false,
                "error sending request: client error (Connect): tcp connect error: Connection refused"
            ),
            "connect"
        );
        let status = |n| {
            ErrorClass::of_status(reqwest::StatusCode::from_u16(n).unwrap()).map(ErrorClass::as_str)
        };
        assert_eq!(status(204), None);
        assert_eq!(status(301), Some("http_3xx"));
        assert_eq!(status(410), Some("http_4xx"));
        assert_eq!(status(503), Some("http_5xx"));
    }

    #[tokio::test]
    async fn errors_never_carry_the_urls_query_string() {
        let key = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let sender =
            WebhookSender::new(Duration::from_secs(2), WebhookTargets::Loopback, None).unwrap();
        let result = sender
            .send(
                std::slice::from_ref(&key),
                &request("http://127.0.0.1:1/hook?token=s3cr3t".into()),
            )
            .await;
        let (class, message) = result.error.expect("nothing listens on port 1");
        assert_eq!(class, ErrorClass::Connect);
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
