//! Who a request comes from: the TCP peer, or, when the peer is one of the operator's proxies
//! (`PAYRAIL_TRUSTED_PROXIES`, CIDRs), the address the proxies put in `X-Forwarded-For`.
//! Only trusted proxies are believed: a client cannot choose its own address by sending the
//! header, and behind a load balancer each person is counted apart, not the balancer once.

use std::net::IpAddr;

/// The operator's proxies, as networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// `10.0.0.0/8, 192.168.1.7, ::1/128`; empty: no proxy is trusted.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{item:?} is not an address or a CIDR"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{item:?}: the prefix must be 0 to {max}"))?,
                None => max,
            };
            networks.push((ip, bits));
        }
        Ok(TrustedProxies(networks))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, bits)| in_network(ip, canonical(*net), *bits))
    }

    /// The client: walking `X-Forwarded-For` from the right (the nearest hop), the first
    /// address that is not a trusted proxy; the peer itself when it is not one.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        let mut client = canonical(peer);
        for hop in forwarded_for
            .unwrap_or_default()
            .rsplit(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // A hop we cannot read ends what we can believe.
                break;
            };
            client = canonical(ip);
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // Not a proxy: its own address, whatever it claims.
        assert_eq!(
            proxies.client(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // Through the balancer: the first untrusted hop from the right.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), Some("6.6.6.6, 198.51.100.4, 10.9.9.9")),
            ip("198.51.100.4")
        );
        assert_eq!(proxies.client(ip("192.168.1.7"), None), ip("192.168.1.7"));
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), Some("198.51.100.4")),
            ip("198.51.100.4")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.1"), Some("junk, 10.0.0.2")),
            ip("10.0.0.2")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert_eq!(
            TrustedProxies::parse(" ").unwrap(),
            TrustedProxies::default()
        );
        let v6 = TrustedProxies::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
    }
}
