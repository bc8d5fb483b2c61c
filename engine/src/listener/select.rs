//! Filter-chain selection: which of a listener's `filter_chains` serves a connection, given
//! what the listener filters learned about it. Envoy's order and semantics: the candidates are
//! narrowed criterion by criterion —
//!
//! 1. `destination_port`: chains naming the port, else chains without one;
//! 2. `prefix_ranges`: the longest prefix holding the destination address (the listener's
//!    local address, or the PROXY header's destination), else chains without ranges;
//! 3. `server_names`: an exact name, else the longest matching `*.suffix` wildcard (which
//!    matches any depth of subdomain: `*.example.test` matches `a.b.example.test`), else
//!    chains without server names;
//! 4. `transport_protocol`: chains naming the connection's (`tls` when `tls_inspector` saw a
//!    ClientHello, else `raw_buffer`), else chains without one;
//! 5. `application_protocols`: the chains listing the first protocol the client offers that any
//!    chain lists, else chains without any;
//! 6. `source_type`: `SAME_IP_OR_LOOPBACK` (a loopback client, or one on the destination
//!    address) or `EXTERNAL` (any other), else chains with `ANY`;
//! 7. `source_prefix_ranges`: the longest prefix holding the client address, else chains
//!    without ranges;
//! 8. `source_ports`: chains listing the client's port, else chains without ports.
//!
//! A level never falls back past itself: a chain that wins on the destination port but fails
//! on the server name is not replaced by a chain without a port (Envoy's behaviour). When
//! every level is passed and chains remain, the first in config order wins (two chains can
//! only tie when their matches overlap without being equal; equal ones are refused at load).
//! No chain left: `default_filter_chain`, if any.
//!
//! Cost: the normalised matches are built once per config (`config::ChainMatch`); a selection
//! walks them eight times with the candidates in a `u64` (at most 64 chains per listener):
//! no allocation, no hashing.

use std::net::IpAddr;

use crate::config::{ChainMatch, Cidr, SourceType, TransportProtocol};
use crate::l4proto::client_hello::Alpn;

/// What is known about a connection when its chain is chosen.
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    /// The port the client connected to (the PROXY header's destination, when there was one).
    pub dst_port: u16,
    /// The address the client connected to (the PROXY header's destination, when there was
    /// one); `None` when no chain matches on it (it was not read).
    pub dst_ip: Option<IpAddr>,
    /// The client's address (the PROXY header's source, when there was one).
    pub src: IpAddr,
    /// The client's port (the PROXY header's source port, when there was one).
    pub src_port: u16,
    /// SNI, lower-case (`tls_inspector`).
    pub server_name: Option<&'a str>,
    pub transport: TransportProtocol,
    /// ALPN offered, in the client's order (`tls_inspector`).
    pub alpn: Option<Alpn<'a>>,
}

/// How well one criterion of one chain fits: not set (a wildcard), set and not met, or met
/// with a specificity (higher wins).
enum Fit {
    Any,
    No,
    Yes(u32),
}

/// The index of the chain that serves `seen`, or `None` (the default chain, or close).
pub fn select(chains: &[ChainMatch], seen: &Seen<'_>) -> Option<usize> {
    let n = chains.len().min(64);
    let mut set: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    set = narrow(chains, set, |m| match m.destination_port {
        None => Fit::Any,
        Some(p) if p == seen.dst_port => Fit::Yes(1),
        Some(_) => Fit::No,
    });
    set = narrow(chains, set, |m| match seen.dst_ip {
        Some(ip) => longest_prefix(&m.prefix_ranges, ip),
        None if m.prefix_ranges.is_empty() => Fit::Any,
        None => Fit::No,
    });
    set = narrow(chains, set, |m| server_name_fit(m, seen.server_name));
    set = narrow(chains, set, |m| match m.transport_protocol {
        None => Fit::Any,
        Some(t) if t == seen.transport => Fit::Yes(1),
        Some(_) => Fit::No,
    });
    set = narrow(chains, set, |m| alpn_fit(m, seen.alpn));
    set = narrow(chains, set, |m| match m.source_type {
        SourceType::Any => Fit::Any,
        SourceType::SameIpOrLoopback if local_client(seen) => Fit::Yes(1),
        SourceType::External if !local_client(seen) => Fit::Yes(1),
        _ => Fit::No,
    });
    set = narrow(chains, set, |m| {
        longest_prefix(&m.source_prefix_ranges, seen.src)
    });
    set = narrow(chains, set, |m| {
        if m.source_ports.is_empty() {
            Fit::Any
        } else if m.source_ports.contains(&seen.src_port) {
            Fit::Yes(1)
        } else {
            Fit::No
        }
    });
    (set != 0).then(|| set.trailing_zeros() as usize)
}

/// The longest range of `ranges` holding `ip` (an empty list: any address).
fn longest_prefix(ranges: &[Cidr], ip: IpAddr) -> Fit {
    if ranges.is_empty() {
        return Fit::Any;
    }
    ranges
        .iter()
        .filter(|c| c.contains(ip))
        .map(|c| u32::from(c.len) + 1)
        .max()
        .map_or(Fit::No, Fit::Yes)
}

/// Envoy's `SAME_IP_OR_LOOPBACK`: the client is on a loopback address, or on the address it
/// connected to.
fn local_client(seen: &Seen<'_>) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let src = canonical(seen.src);
    src.is_loopback() || seen.dst_ip.map(canonical) == Some(src)
}

/// Keeps, of `set`, the chains that meet the criterion best; if none meets it, those that do
/// not set it.
fn narrow(chains: &[ChainMatch], set: u64, fit: impl Fn(&ChainMatch) -> Fit) -> u64 {
    let (mut best, mut best_score, mut any) = (0u64, 0u32, 0u64);
    for (i, m) in chains.iter().enumerate().take(64) {
        let bit = 1u64 << i;
        if set & bit == 0 {
            continue;
        }
        match fit(m) {
            Fit::Any => any |= bit,
            Fit::No => {}
            Fit::Yes(s) if s > best_score => {
                best = bit;
                best_score = s;
            }
            Fit::Yes(s) if s == best_score => best |= bit,
            Fit::Yes(_) => {}
        }
    }
    if best != 0 {
        best
    } else {
        any
    }
}

fn server_name_fit(m: &ChainMatch, sni: Option<&str>) -> Fit {
    if m.server_names.is_empty() {
        return Fit::Any;
    }
    let Some(sni) = sni else { return Fit::No };
    let mut best = None;
    for name in &m.server_names {
        let score = match name.strip_prefix("*.") {
            // An exact name beats any wildcard (a name is at most 253 bytes).
            None if name == sni => 1000,
            None => continue,
            Some(suffix) => {
                let fits = sni.len() > suffix.len() + 1
                    && sni.ends_with(suffix)
                    && sni.as_bytes()[sni.len() - suffix.len() - 1] == b'.';
                if !fits {
                    continue;
                }
                suffix.len() as u32 + 1
            }
        };
        best = best.max(Some(score));
    }
    best.map_or(Fit::No, Fit::Yes)
}

fn alpn_fit(m: &ChainMatch, alpn: Option<Alpn<'_>>) -> Fit {
    if m.application_protocols.is_empty() {
        return Fit::Any;
    }
    let Some(alpn) = alpn else { return Fit::No };
    // The earlier the client offers a protocol, the better (at most 2^15 offers fit a hello).
    for (i, offered) in alpn.iter().enumerate() {
        if m.application_protocols
            .iter()
            .any(|p| p.as_bytes() == offered)
        {
            return Fit::Yes(u32::MAX - i as u32);
        }
    }
    Fit::No
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> ChainMatch {
        ChainMatch {
            server_names: list.iter().map(|s| s.to_string()).collect(),
            ..ChainMatch::default()
        }
    }

    fn seen(sni: Option<&str>) -> Seen<'_> {
        Seen {
            dst_port: 443,
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            src: "10.1.2.3".parse().unwrap(),
            src_port: 40000,
            server_name: sni,
            transport: TransportProtocol::Tls,
            alpn: None,
        }
    }

    #[test]
    fn exact_beats_longest_wildcard_beats_shorter_beats_empty() {
        let chains = [
            names(&[]),
            names(&["*.test"]),
            names(&["*.example.test"]),
            names(&["www.example.test"]),
        ];
        assert_eq!(select(&chains, &seen(Some("www.example.test"))), Some(3));
        assert_eq!(select(&chains, &seen(Some("a.b.example.test"))), Some(2));
        assert_eq!(select(&chains, &seen(Some("other.test"))), Some(1));
        assert_eq!(select(&chains, &seen(Some("example.test"))), Some(1));
        assert_eq!(select(&chains, &seen(Some("elsewhere.org"))), Some(0));
        assert_eq!(select(&chains, &seen(None)), Some(0));
        // Without the catch-all, no match.
        assert_eq!(select(&chains[1..], &seen(Some("elsewhere.org"))), None);
    }

    #[test]
    fn a_level_never_falls_back_past_itself() {
        let port = ChainMatch {
            destination_port: Some(443),
            server_names: vec!["a.test".into()],
            ..ChainMatch::default()
        };
        let chains = [port, names(&["b.test"])];
        // Port 443 narrows to chain 0, whose name does not fit: nothing, not chain 1.
        assert_eq!(select(&chains, &seen(Some("b.test"))), None);
        assert_eq!(select(&chains, &seen(Some("a.test"))), Some(0));
    }

    #[test]
    fn source_ranges_longest_prefix_wins() {
        let range = |a: &str, len| ChainMatch {
            source_prefix_ranges: vec![Cidr {
                addr: a.parse().unwrap(),
                len,
            }],
            ..ChainMatch::default()
        };
        let chains = [
            range("10.0.0.0", 8),
            range("10.1.0.0", 16),
            range("192.168.0.0", 16),
        ];
        assert_eq!(select(&chains, &seen(None)), Some(1));
        let mut s = seen(None);
        s.src = "10.9.9.9".parse().unwrap();
        assert_eq!(select(&chains, &s), Some(0));
        s.src = "::ffff:192.168.3.4".parse().unwrap();
        assert_eq!(select(&chains, &s), Some(2));
        s.src = "172.16.0.1".parse().unwrap();
        assert_eq!(select(&chains, &s), None);
    }

    fn cidr(a: &str, len: u8) -> Cidr {
        Cidr {
            addr: a.parse().unwrap(),
            len,
        }
    }

    #[test]
    fn destination_ranges_come_before_server_names() {
        let chains = [
            ChainMatch {
                prefix_ranges: vec![cidr("192.0.2.0", 24)],
                ..ChainMatch::default()
            },
            ChainMatch {
                prefix_ranges: vec![cidr("192.0.2.1", 32)],
                server_names: vec!["a.test".into()],
                ..ChainMatch::default()
            },
            names(&["b.test"]),
        ];
        // The /32 wins on the destination, then fails on the name: no fallback past it.
        assert_eq!(select(&chains, &seen(Some("a.test"))), Some(1));
        assert_eq!(select(&chains, &seen(Some("b.test"))), None);
        let mut s = seen(Some("b.test"));
        s.dst_ip = Some("192.0.2.9".parse().unwrap());
        assert_eq!(select(&chains, &s), Some(0));
        s.dst_ip = Some("198.51.100.1".parse().unwrap());
        assert_eq!(select(&chains, &s), Some(2));
        // Unknown destination: only chains without ranges.
        s.dst_ip = None;
        assert_eq!(select(&chains, &s), Some(2));
    }

    #[test]
    fn source_type_then_ranges_then_ports() {
        let m = |t, ports: &[u16]| ChainMatch {
            source_type: t,
            source_ports: ports.to_vec(),
            ..ChainMatch::default()
        };
        let chains = [
            m(SourceType::Any, &[]),
            m(SourceType::SameIpOrLoopback, &[]),
            m(SourceType::External, &[40000]),
            m(SourceType::External, &[]),
        ];
        let mut s = seen(None);
        // 10.1.2.3 -> 192.0.2.1: external; port 40000 picks chain 2.
        assert_eq!(select(&chains, &s), Some(2));
        s.src_port = 1;
        assert_eq!(select(&chains, &s), Some(3));
        s.src = "127.0.0.5".parse().unwrap();
        assert_eq!(select(&chains, &s), Some(1));
        s.src = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(select(&chains, &s), Some(1), "same IP as the destination");
        // Without a SAME_IP_OR_LOOPBACK chain, a local client falls back to ANY.
        assert_eq!(select(&[chains[0].clone(), chains[3].clone()], &s), Some(0));
        // Ports alone: listed beats unlisted, unlisted beats nothing.
        let ports = [m(SourceType::Any, &[1, 2]), m(SourceType::Any, &[3])];
        s.src_port = 3;
        assert_eq!(select(&ports, &s), Some(1));
        s.src_port = 4;
        assert_eq!(select(&ports, &s), None);
    }
}
