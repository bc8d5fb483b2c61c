//! Listener filters (`listener_filters`) and filter-chain matches (`filter_chain_match`):
//! names checked, server names and ALPN lower-cased or kept, ranges parsed, every list sorted
//! and deduplicated so two chains with the same match compare equal (the duplicate check in
//! [`super::listener`]).

use std::net::IpAddr;

use super::super::{
    error::Problems,
    model::{ChainMatch, Cidr, SourceType, TransportProtocol},
    path::DocPath,
    schema::{CidrSpec, FilterChainMatchSpec, ListenerFilterSpec, ListenerSpec},
};
use super::enumerate;

/// Which listener filters a listener runs.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ListenerFilters {
    pub proxy_protocol: bool,
    /// `proxy_protocol`'s `allow_requests_without_proxy_protocol`.
    pub allow_without_proxy_protocol: bool,
    pub tls_inspector: bool,
}

/// Which listener filters the listener runs. Their order in the list does not matter (a PROXY
/// header always comes first on the wire); each may appear once.
pub(super) fn listener_filters(
    l: &ListenerSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> ListenerFilters {
    let list_path = path.key("listener_filters");
    let (mut pp, mut tls, mut allow) = (false, false, false);
    for (at, item) in enumerate(&l.listener_filters, &list_path, problems) {
        let seen = match &item.value {
            None => continue,
            Some(ListenerFilterSpec::ProxyProtocol(spec)) => {
                allow = spec.allow_requests_without_proxy_protocol.unwrap_or(false);
                std::mem::replace(&mut pp, true)
            }
            Some(ListenerFilterSpec::TlsInspector) => std::mem::replace(&mut tls, true),
            Some(ListenerFilterSpec::Unsupported(name)) => {
                problems.value(
                    &at,
                    format!(
                        "unknown listener filter {name:?}{}: expected `tls_inspector` or \
                         `proxy_protocol`",
                        crate::config::suggest::hint(name, ["tls_inspector", "proxy_protocol"])
                    ),
                );
                false
            }
        };
        if seen {
            problems.value(&at, "this listener filter is already in the list");
        }
    }
    ListenerFilters {
        proxy_protocol: pp,
        allow_without_proxy_protocol: allow,
        tls_inspector: tls,
    }
}

/// A chain's `filter_chain_match`, normalised; `None` is the empty match.
pub(super) fn chain_match(
    spec: Option<&FilterChainMatchSpec>,
    chain_path: &DocPath,
    problems: &mut Problems,
) -> ChainMatch {
    let Some(spec) = spec else {
        return ChainMatch::default();
    };
    let path = chain_path.key("filter_chain_match");
    let mut m = ChainMatch {
        destination_port: spec.destination_port,
        ..ChainMatch::default()
    };
    if spec.destination_port == Some(0) {
        problems.value(
            &path.key("destination_port"),
            "destination_port must be 1..=65535",
        );
    }
    m.prefix_ranges = ranges(&spec.prefix_ranges, &path.key("prefix_ranges"), problems);
    for (i, name) in spec.server_names.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        let host = name.strip_prefix("*.").unwrap_or(&name);
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            problems.value(
                &path.key("server_names").index(i),
                format!(
                    "invalid server name {name:?}: expected a host name (`www.example.com`) or a \
                     wildcard (`*.example.com`)"
                ),
            );
            continue;
        }
        m.server_names.push(name);
    }
    m.server_names.sort();
    m.server_names.dedup();
    m.transport_protocol = match spec.transport_protocol.as_deref() {
        None => None,
        Some("tls") => Some(TransportProtocol::Tls),
        Some("raw_buffer") => Some(TransportProtocol::RawBuffer),
        Some(other) => {
            problems.value(
                &path.key("transport_protocol"),
                format!("unknown transport_protocol {other:?}: expected `tls` or `raw_buffer`"),
            );
            None
        }
    };
    for (i, p) in spec.application_protocols.iter().enumerate() {
        if p.is_empty() || p.len() > 255 {
            problems.value(
                &path.key("application_protocols").index(i),
                "an application protocol is 1 to 255 bytes",
            );
            continue;
        }
        m.application_protocols.push(p.clone());
    }
    m.application_protocols.sort();
    m.application_protocols.dedup();
    m.source_type = match spec.source_type.as_deref() {
        None | Some("ANY") => SourceType::Any,
        Some("SAME_IP_OR_LOOPBACK") => SourceType::SameIpOrLoopback,
        Some("EXTERNAL") => SourceType::External,
        Some(other) => {
            problems.value(
                &path.key("source_type"),
                format!(
                    "unknown source_type {other:?}: expected `ANY`, `SAME_IP_OR_LOOPBACK` or \
                     `EXTERNAL`"
                ),
            );
            SourceType::Any
        }
    };
    m.source_prefix_ranges = ranges(
        &spec.source_prefix_ranges,
        &path.key("source_prefix_ranges"),
        problems,
    );
    for (i, &p) in spec.source_ports.iter().enumerate() {
        if p == 0 {
            problems.value(
                &path.key("source_ports").index(i),
                "a source port is 1..=65535",
            );
        }
    }
    m.source_ports = spec.source_ports.clone();
    m.source_ports.sort_unstable();
    m.source_ports.dedup();
    m
}

/// A list of ranges, parsed, sorted and deduplicated; each bad one reported at its position.
fn ranges(list: &[CidrSpec], path: &DocPath, problems: &mut Problems) -> Vec<Cidr> {
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        match cidr(r) {
            Ok(c) => out.push(c),
            Err(why) => problems.value(&path.index(i), why),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Parses a range and clears the bits past its prefix (`10.1.2.3/8` is `10.0.0.0/8`).
fn cidr(spec: &CidrSpec) -> Result<Cidr, String> {
    let (addr, len) = match spec {
        CidrSpec::Text(t) => match t.split_once('/') {
            Some((a, l)) => (
                a,
                Some(
                    l.parse::<u32>()
                        .map_err(|_| format!("invalid prefix length in {t:?}"))?,
                ),
            ),
            None => (t.as_str(), None),
        },
        CidrSpec::Range {
            address_prefix,
            prefix_len,
        } => (address_prefix.as_str(), *prefix_len),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid address {addr:?}: expected an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(format!(
            "prefix length {len} is longer than the address ({max} bits)"
        ));
    }
    let mut c = Cidr {
        addr: ip,
        len: len as u8,
    };
    c.addr = match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(c)
}

/// The criteria of `m` that are set, for messages (`server_names, transport_protocol`), or
/// `empty`.
pub(super) fn describe(m: &ChainMatch) -> String {
    let mut set = Vec::new();
    if m.destination_port.is_some() {
        set.push("destination_port");
    }
    if !m.prefix_ranges.is_empty() {
        set.push("prefix_ranges");
    }
    if !m.server_names.is_empty() {
        set.push("server_names");
    }
    if m.transport_protocol.is_some() {
        set.push("transport_protocol");
    }
    if !m.application_protocols.is_empty() {
        set.push("application_protocols");
    }
    if m.source_type != SourceType::Any {
        set.push("source_type");
    }
    if !m.source_prefix_ranges.is_empty() {
        set.push("source_prefix_ranges");
    }
    if !m.source_ports.is_empty() {
        set.push("source_ports");
    }
    if set.is_empty() {
        "empty".to_string()
    } else {
        set.join(", ")
    }
}
