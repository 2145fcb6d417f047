//! Trusted proxies: which TCP peers may tell us the client's address through
//! `X-Forwarded-For`, `Forwarded` (RFC 7239) or `X-Real-IP`, and how that
//! address is worked out. Per-IP limits, auth hooks, events and logs all use the
//! result, in every host mode (the connection kit calls this).

use std::net::IpAddr;

/// A network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so a dual-stack listener matches IPv4 lists.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses a list of CIDRs or addresses.
    pub fn new<S: AsRef<str>>(list: &[S]) -> Result<TrustedProxies, String> {
        let nets = list
            .iter()
            .map(|s| Cidr::parse(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address for a request from TCP peer `peer`.
    ///
    /// The headers count only when `peer` is trusted. `X-Forwarded-For` (all its
    /// lines, in order) is read from the right: each proxy appends the address it
    /// saw, so the first entry that is not a trusted proxy is the client; entries
    /// left of it were written by the client and are ignored. An unparsable entry
    /// stops the walk at the last trusted hop. Without the header, a valid
    /// `X-Real-IP` is used.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
        real_ip: Option<&str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if hops.is_empty() {
            return real_ip.and_then(parse_hop).unwrap_or(peer);
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// The `for=` hops of `Forwarded` header lines (RFC 7239), in order, as
/// `X-Forwarded-For` would list them. A hop without `for=` becomes `unknown`, so
/// the walk stops there as at any unparsable entry.
pub fn forwarded_hops<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    lines
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map_or("unknown", |(_, v)| v.trim().trim_matches('"'))
        })
        .collect()
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse().ok().map(canonical)
}

/// The key a client address is counted under: IPv4 as is (an IPv4-mapped IPv6
/// address is its IPv4 address), IPv6 cut to its first `v6_prefix` bits, since
/// one subscriber routinely holds a whole /64 (a million "addresses").
pub fn ip_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = match v6_prefix.min(128) {
                    0 => 0,
                    n => u128::MAX << (128 - u32::from(n)),
                };
                IpAddr::V6((bits & mask).into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_header_hops() {
        let hops = forwarded_hops([
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            "For=\"[2001:db8:cafe::17]:4711\", proto=https",
        ]);
        assert_eq!(hops, ["192.0.2.60", "[2001:db8:cafe::17]:4711", "unknown"]);
        let p = TrustedProxies::new(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), hops[..2].iter().copied(), None),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), forwarded_hops(["for=_hidden"]), None),
            ip("10.0.0.2"),
            "an obfuscated hop stops the walk at the proxy"
        );
    }

    #[test]
    fn cidrs() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.200.3.4")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "v4-mapped v6");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let p = TrustedProxies::new(&["10.0.0.0/8", "192.168.1.1"]).unwrap();
        let untrusted = ip("203.0.113.50");
        assert_eq!(
            p.client_ip(untrusted, ["1.1.1.1"], Some("2.2.2.2")),
            untrusted,
            "spoofed headers from an untrusted peer are ignored"
        );
        let proxy = ip("10.0.0.2");
        assert_eq!(
            p.client_ip(proxy, ["198.51.100.7"], None),
            ip("198.51.100.7")
        );
        // The client wrote the leftmost entry itself: the rightmost untrusted wins.
        assert_eq!(
            p.client_ip(proxy, ["6.6.6.6, 198.51.100.7, 192.168.1.1"], None),
            ip("198.51.100.7")
        );
        // Several header lines form one list.
        assert_eq!(
            p.client_ip(proxy, ["6.6.6.6", "198.51.100.7:5555"], None),
            ip("198.51.100.7")
        );
        // Everything trusted: the leftmost.
        assert_eq!(
            p.client_ip(proxy, ["10.9.9.9, 10.0.0.7"], None),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            p.client_ip(proxy, ["6.6.6.6, junk, 10.0.0.7"], None),
            ip("10.0.0.7")
        );
        assert_eq!(p.client_ip(proxy, ["junk"], None), proxy);
        assert_eq!(
            p.client_ip(proxy, [], Some("198.51.100.8")),
            ip("198.51.100.8")
        );
        assert_eq!(p.client_ip(proxy, [], Some("junk")), proxy);
        assert_eq!(
            p.client_ip(proxy, ["[2001:db8::1]:443"], None),
            ip("2001:db8::1")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(proxy, ["1.2.3.4"], None),
            proxy,
            "no trusted proxies: never believed"
        );
    }
}
