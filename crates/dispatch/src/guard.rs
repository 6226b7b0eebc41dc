//! The destination guard: receivers must be public internet addresses unless
//! the operator allows private ones. The check runs on the resolved address,
//! and the connection goes to the address that was checked, so a DNS answer
//! that changes between check and connect (rebinding) cannot slip through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// True for addresses a webhook must not reach by default: loopback, private
/// (RFC 1918, ULA), link-local, CGNAT, multicast, broadcast, unspecified,
/// documentation, benchmarking and reserved ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18/15
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
        || a >= 240 // reserved 240/4
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let [a, b, ..] = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (a & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (a & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (a & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed inside sites)
        || (a == 0x2001 && b == 0x0db8) // documentation 2001:db8::/32
        // Transition ranges that carry an IPv4 address inside, so can reach
        // internal IPv4 hosts through a relay: refused whole.
        || (a == 0x0064 && b == 0xff9b) // NAT64 64:ff9b::/96 and local-use 64:ff9b:1::/48
        || a == 0x2002 // 6to4 2002::/16
        || (a == 0x2001 && b == 0x0000) // Teredo 2001::/32
        || (a == 0x2001 && (b & 0xfff0) == 0x0010) // ORCHID 2001:10::/28
        || (a == 0x0100 && ip.segments()[1..4] == [0; 3]) // discard-only 100::/64
        || (ip.segments()[..6] == [0; 6]) // IPv4-compatible ::a.b.c.d (deprecated)
        || (ip.segments()[..4] == [0; 4] && ip.segments()[4] == 0xffff) // IPv4-translated ::ffff:0:a.b.c.d
}

/// The resolver's refusal: every address the name resolved to is internal.
#[derive(Debug, thiserror::Error)]
#[error("destination {host} resolves only to internal addresses ({addrs})")]
pub struct BlockedDestination {
    pub host: String,
    pub addrs: String,
}

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {source}")]
pub struct DnsFailure {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

/// Resolves with the system resolver and drops internal addresses unless
/// `allow_private`.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsFailure {
                    host: host.clone(),
                    source,
                })?
                .collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                let addrs = resolved
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(BlockedDestination { host, addrs }) as Box<_>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every guarded range, by a member of it (v4, v6, and v4 embedded in
    /// v6), and its public neighbours.
    const INTERNAL: &[(&str, &str)] = &[
        ("127.0.0.1", "loopback 127/8"),
        ("127.255.255.254", "loopback 127/8"),
        ("10.1.2.3", "private 10/8"),
        ("172.16.0.1", "private 172.16/12"),
        ("172.31.255.255", "private 172.16/12"),
        ("192.168.1.1", "private 192.168/16"),
        ("169.254.169.254", "link-local 169.254/16 (cloud metadata)"),
        ("100.64.0.1", "CGNAT 100.64/10"),
        ("100.127.255.255", "CGNAT 100.64/10"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network 0/8"),
        ("224.0.0.1", "multicast 224/4"),
        ("255.255.255.255", "broadcast"),
        ("192.0.0.8", "IETF assignments 192.0.0/24"),
        ("192.0.2.1", "documentation TEST-NET-1"),
        ("198.51.100.1", "documentation TEST-NET-2"),
        ("203.0.113.1", "documentation TEST-NET-3"),
        ("198.18.0.1", "benchmarking 198.18/15"),
        ("198.19.255.255", "benchmarking 198.18/15"),
        ("240.0.0.1", "reserved 240/4"),
        ("::1", "v6 loopback"),
        ("::", "v6 unspecified"),
        ("fc00::1", "unique local fc00::/7"),
        ("fd12:3456::1", "unique local fc00::/7"),
        ("fe80::1", "link-local fe80::/10"),
        ("febf::1", "link-local fe80::/10"),
        ("fec0::1", "site-local fec0::/10"),
        ("feff::1", "site-local fec0::/10"),
        ("ff02::1", "v6 multicast"),
        ("2001:db8::1", "documentation 2001:db8::/32"),
        ("::ffff:127.0.0.1", "v4-mapped loopback"),
        ("::ffff:10.0.0.1", "v4-mapped private"),
        ("::ffff:169.254.169.254", "v4-mapped link-local"),
        ("::ffff:0:10.0.0.1", "v4-translated"),
        ("::127.0.0.1", "v4-compatible"),
        ("::8.8.8.8", "v4-compatible (deprecated, never legitimate)"),
        ("64:ff9b::a00:1", "NAT64 64:ff9b::/96 (10.0.0.1)"),
        ("64:ff9b::808:808", "NAT64 64:ff9b::/96 (even a public v4)"),
        ("64:ff9b:1::a00:1", "NAT64 local-use 64:ff9b:1::/48"),
        ("2002:a00:1::1", "6to4 2002::/16 (10.0.0.1)"),
        ("2002:7f00:1::1", "6to4 2002::/16 (127.0.0.1)"),
        (
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "Teredo 2001::/32 (embeds 10.0.0.1)",
        ),
        ("2001:10::1", "ORCHID 2001:10::/28"),
        ("100::1", "discard-only 100::/64"),
    ];

    const PUBLIC: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.254",
        "2a00:1450:4001::1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "2001:4860::8888",
        "2003::1",
    ];

    #[test]
    fn every_guarded_range_is_internal_and_its_neighbours_are_not() {
        for (ip, range) in INTERNAL {
            assert!(
                is_internal(ip.parse().unwrap()),
                "{ip} ({range}) must be refused"
            );
        }
        for ip in PUBLIC {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }
}
