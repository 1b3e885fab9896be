//! The sender against local servers: signing, classes of failure, targets and the proxy.

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
    let strict = WebhookSender::new(Duration::from_secs(1), WebhookTargets::Public, None).unwrap();
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
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
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
