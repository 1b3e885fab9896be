//! A forward HTTP proxy that lets traffic reach this machine only: the path webhooks take when
//! a fuzzer or generated client invents their URLs (`PAYRAIL_WEBHOOK_PROXY`). A request whose
//! target is a loopback address or `localhost` is passed on; any other is answered 403 without
//! a connection or a name lookup. Every request is recorded with its target and verdict, so a
//! test can show what was refused and that nothing else went out.
//!
//! Plain `http://` targets arrive in absolute form (`POST http://host/path HTTP/1.1`) and are
//! forwarded one request per connection (`Connection: close`), so a kept-alive connection can
//! never carry a second request past the check; `https://` targets arrive as `CONNECT` and
//! are tunnelled.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy was asked to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// `host:port` of the target, as the client named it.
    pub target: String,
    pub forwarded: bool,
}

pub struct LoopbackEgress {
    /// `http://127.0.0.1:<port>`, for `PAYRAIL_WEBHOOK_PROXY`.
    pub url: String,
    log: Arc<Mutex<Vec<Carried>>>,
}

impl LoopbackEgress {
    pub async fn start() -> LoopbackEgress {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind egress");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, shared.clone()));
            }
        });
        LoopbackEgress { url, log }
    }

    /// Every request so far, in order.
    pub fn carried(&self) -> Vec<Carried> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn refused(&self) -> Vec<String> {
        self.carried()
            .into_iter()
            .filter(|c| !c.forwarded)
            .map(|c| c.target)
            .collect()
    }

    pub fn forwarded(&self) -> Vec<String> {
        self.carried()
            .into_iter()
            .filter(|c| c.forwarded)
            .map(|c| c.target)
            .collect()
    }
}

/// Whether `host` (a name or an address, IPv6 with or without brackets) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// `host:port` → where to connect, if it is loopback: names are mapped, not looked up.
fn loopback_address(authority: &str) -> Option<String> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if !is_loopback_host(host) {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        Ok(ip) => format!("{ip}:{port}"),
        Err(_) => format!("127.0.0.1:{port}"),
    })
}

async fn serve(mut client: TcpStream, log: Arc<Mutex<Vec<Carried>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let tunnel = method.eq_ignore_ascii_case("CONNECT");
    let (authority, path) = if tunnel {
        (target.to_string(), String::new())
    } else {
        match url::Url::parse(target) {
            Ok(u) => (
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(80)
                ),
                match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                },
            ),
            Err(_) => (target.to_string(), String::new()),
        }
    };
    let address = loopback_address(&authority);
    if let Ok(mut l) = log.lock() {
        l.push(Carried {
            target: authority.clone(),
            forwarded: address.is_some(),
        });
    }
    let Some(address) = address else {
        let body = format!("refused by the test egress: {authority} is not on this machine");
        let _ = client
            .write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(&address).await else {
        let _ = client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    if tunnel {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let _ = upstream.write_all(&head[end..]).await;
    } else {
        let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case("connection")
                && !name.eq_ignore_ascii_case("proxy-connection")
            {
                forwarded.push_str(line);
                forwarded.push_str("\r\n");
            }
        }
        forwarded.push_str("connection: close\r\n\r\n");
        if upstream.write_all(forwarded.as_bytes()).await.is_err()
            || upstream.write_all(&head[end..]).await.is_err()
        {
            return;
        }
    }
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    // The answer ends when the target closes (it was asked to); the client's side may stay
    // open waiting to reuse the connection, so it does not hold this task.
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_upstream).await;
    });
    let _ = tokio::io::copy(&mut from_upstream, &mut to_client).await;
    let _ = to_client.shutdown().await;
    upload.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_is_loopback() {
        for host in [
            "127.0.0.1",
            "127.8.9.1",
            "[::1]",
            "::1",
            "localhost",
            "a.localhost",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "0.0.0.0",
            "example.com",
            "localhost.example.com",
            "[2001:db8::1]",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert_eq!(
            loopback_address("localhost:80").as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(
            loopback_address("[::1]:8080").as_deref(),
            Some("[::1]:8080")
        );
        assert_eq!(loopback_address("example.com:443"), None);
        assert_eq!(loopback_address("127.0.0.1"), None, "no port");
    }
}
