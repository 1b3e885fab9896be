//! Where a webhook may go: the [`WebhookTargets`] policy, what counts as public or loopback,
//! and the resolver that enforces the policy on every connection (so a DNS answer cannot
//! change between the check and the connection).

use std::net::IpAddr;
use std::time::Duration;

/// Where webhooks may be sent (`PAYRAIL_WEBHOOK_TARGETS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookTargets {
    /// Public internet addresses only: a merchant cannot aim the worker at the operator's own
    /// network (SSRF). The default in distributed mode.
    Public,
    /// Any address, private and loopback included.
    Any,
    /// Public addresses and this machine: on a laptop the receiver is local, yet a private or
    /// link-local address (a cloud's metadata service, the LAN) stays out of reach. The
    /// default in embedded mode.
    PublicOrLoopback,
    /// Loopback only, and no name but `localhost` is ever looked up: tests, benchmarks and
    /// fuzzers, whose traffic must never leave the machine. With a proxy (which must itself
    /// be on loopback), the proxy is the only address dialled and judges the targets.
    Loopback,
}

impl WebhookTargets {
    pub const ALL: [WebhookTargets; 4] = [
        WebhookTargets::Public,
        WebhookTargets::Any,
        WebhookTargets::PublicOrLoopback,
        WebhookTargets::Loopback,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookTargets::Public => "public",
            WebhookTargets::Any => "any",
            WebhookTargets::PublicOrLoopback => "public_or_loopback",
            WebhookTargets::Loopback => "loopback",
        }
    }

    pub fn parse(value: &str) -> Result<WebhookTargets, String> {
        let value = value.trim().to_ascii_lowercase();
        WebhookTargets::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| "expected public, public_or_loopback, any or loopback".to_string())
    }

    /// Whether a connection to `ip` is allowed.
    pub fn admits(self, ip: IpAddr) -> bool {
        match self {
            WebhookTargets::Public => is_public(ip),
            WebhookTargets::Any => true,
            WebhookTargets::PublicOrLoopback => is_public(ip) || is_loopback(ip),
            WebhookTargets::Loopback => is_loopback(ip),
        }
    }
}

/// Resolves names for webhook requests (and for a proxy given by name) and keeps only the
/// addresses the policy admits. The connection uses exactly the addresses approved here, so a
/// name that resolves to a public address for the check and to a private one for the
/// connection (DNS rebinding) gets nowhere. Under `Loopback` nothing is looked up: `localhost`
/// is loopback by definition (RFC 6761) and any other name is refused as it is.
pub(super) struct GuardedResolver {
    pub(super) targets: WebhookTargets,
    pub(super) timeout: Duration,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let (targets, timeout) = (self.targets, self.timeout);
        Box::pin(async move {
            if targets == WebhookTargets::Loopback {
                if !is_localhost(&host) {
                    return Err(format!("{host} is not localhost; it was not looked up").into());
                }
                let local: Vec<std::net::SocketAddr> = vec![
                    (std::net::Ipv4Addr::LOCALHOST, 0).into(),
                    (std::net::Ipv6Addr::LOCALHOST, 0).into(),
                ];
                return Ok(Box::new(local.into_iter()) as reqwest::dns::Addrs);
            }
            let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))??;
            let admitted: Vec<std::net::SocketAddr> =
                found.filter(|a| targets.admits(a.ip())).collect();
            if admitted.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `localhost` and its subdomains, which always mean this machine (RFC 6761 §6.3).
pub(super) fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => is_localhost(&name),
        Some(url::Host::Ipv4(ip)) => is_loopback(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_loopback(ip.into()),
        None => false,
    }
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240 // reserved
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))) // benchmarking
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // IPv4-translated (SIIT, ::ffff:0:a.b.c.d) wraps an IPv4 address too.
            if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated, still routed inside sites)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 (64:ff9b::/96, 64:ff9b:1::/48)
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
                || (s[0] == 0x2001 && s[1] < 0x200) // IETF assignments, Teredo (2001::/23)
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || s[0] == 0x2002 // 6to4, which can wrap a private IPv4
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}
