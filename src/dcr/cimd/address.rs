//! Which addresses the bridge may fetch a metadata document from: public unicast only.
//!
//! The decision is made on every address the fetcher is about to connect to (after its one name
//! resolution, or for an IP-literal host), never on the name: a name that resolves to
//! 169.254.169.254 is the cloud metadata service whatever it is called. The ranges follow the IANA
//! special-purpose address registries ([RFC 6890](https://www.rfc-editor.org/rfc/rfc6890)); IPv4
//! addresses carried inside IPv6 ones (mapped, NAT64) are judged as the IPv4 address they reach,
//! and the deprecated carriers (IPv4-compatible, 6to4, Teredo) are refused outright.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not fetched from (a category, for logs and tests: never shown with the
/// address to the caller, who must not learn what an internal name resolves to).
pub(crate) type Forbidden = &'static str;

/// Whether a document may be fetched from `ip`; `allow_loopback` is the development switch
/// (`CIMD_ALLOW_LOOPBACK`), which admits loopback addresses and nothing else.
pub(crate) fn check(ip: IpAddr, allow_loopback: bool) -> Result<(), Forbidden> {
    let verdict = match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    };
    match verdict {
        Err("loopback") if allow_loopback => Ok(()),
        other => other,
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn check_v4(ip: Ipv4Addr) -> Result<(), Forbidden> {
    const RANGES: [([u8; 4], u32, Forbidden); 15] = [
        ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        (
            [169, 254, 0, 0],
            16,
            "link-local (cloud metadata services live here)",
        ),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        // 240.0.0.0/4 is reserved, 255.255.255.255 (broadcast) included.
        ([240, 0, 0, 0], 4, "reserved or broadcast"),
    ];
    match RANGES.iter().find(|(net, bits, _)| in_v4(ip, *net, *bits)) {
        Some((_, _, why)) => Err(why),
        None => Ok(()),
    }
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn check_v6(ip: Ipv6Addr) -> Result<(), Forbidden> {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("a valid literal");
    // IPv4 addresses reached through IPv6: judged as that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return check_v4(v4);
    }
    if in_v6(ip, v6("64:ff9b::"), 96) {
        // NAT64 (RFC 6052): a translator reaches the embedded IPv4 address.
        let [.., a, b, c, d] = ip.octets();
        return check_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_unspecified() {
        return Err("unspecified");
    }
    if ip.is_loopback() {
        return Err("loopback");
    }
    // Only global unicast (2000::/3) is public; everything else is special: IPv4-compatible
    // (::/96), discard (100::/64), local-use NAT64 (64:ff9b:1::/48), SRv6 SIDs (5f00::/16),
    // unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10), multicast (ff00::/8).
    if !in_v6(ip, v6("2000::"), 3) {
        return Err(match ip.segments()[0] {
            0xfc00..=0xfdff => "unique local",
            0xfe80..=0xfebf => "link-local",
            0xff00..=0xffff => "multicast",
            _ => "reserved (not global unicast)",
        });
    }
    const SPECIAL: [(&str, u32, Forbidden); 4] = [
        // Teredo (2001::/32), ORCHID and the other IETF protocol assignments.
        ("2001::", 23, "IETF protocol assignments (Teredo included)"),
        ("2001:db8::", 32, "documentation"),
        ("2002::", 16, "6to4"),
        ("3fff::", 20, "documentation"),
    ];
    match SPECIAL.iter().find(|(net, bits, _)| in_v6(ip, v6(net), *bits)) {
        Some((_, _, why)) => Err(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(ip: &str) -> Result<(), Forbidden> {
        check(ip.parse().unwrap(), false)
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "13.107.213.48",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.3.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(verdict(ip), Ok(()), "{ip}");
        }
    }

    #[test]
    fn special_addresses_are_refused() {
        for (ip, why) in [
            (
                "169.254.169.254",
                "link-local (cloud metadata services live here)",
            ),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.254", "shared address space (CGNAT)"),
            ("192.0.0.170", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.19.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "reserved or broadcast"),
            ("240.0.0.1", "reserved or broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("fec0::1", "reserved (not global unicast)"),
            ("100::1", "reserved (not global unicast)"),
            ("64:ff9b:1::a9fe:a9fe", "reserved (not global unicast)"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "IETF protocol assignments (Teredo included)",
            ),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("2002:0808:0808::1", "6to4"),
        ] {
            assert_eq!(verdict(ip), Err(why), "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_the_ipv4_address() {
        for (ip, why) in [
            (
                "::ffff:169.254.169.254",
                "link-local (cloud metadata services live here)",
            ),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:0.0.0.0", "unspecified (\"this network\")"),
            (
                "64:ff9b::a9fe:a9fe",
                "link-local (cloud metadata services live here)",
            ),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::c0a8:101", "private"),
            // IPv4-compatible (deprecated): never fetched from, whatever it embeds.
            ("::a9fe:a9fe", "reserved (not global unicast)"),
            ("::7f00:1", "reserved (not global unicast)"),
            ("::808:808", "reserved (not global unicast)"),
        ] {
            assert_eq!(verdict(ip), Err(why), "{ip}");
        }
    }

    #[test]
    fn the_switch_admits_loopback_only() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert_eq!(check(ip.parse().unwrap(), true), Ok(()), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "fe80::1",
            "fc00::1",
        ] {
            assert!(check(ip.parse().unwrap(), true).is_err(), "{ip}");
        }
    }
}
