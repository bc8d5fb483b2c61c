//! Validation of one cluster: its endpoints (static `IP:port` addresses with weights, or a DNS
//! cluster's `host:port` names, resolved at run time by the DNS thread, `dns.rs`), its load
//! balancing policy, its connection timeouts, the PROXY protocol header it sends upstream and
//! the TLS it originates (`super::tls::upstream`).

use std::{net::SocketAddr, time::Duration};

use super::{socket_addr, Problems};
use crate::config::{
    defaults,
    model::{Cluster, DnsCluster, DnsFamily, DnsHost, Endpoint, ProxyProtocolVersion},
    path::DocPath,
    schema::{ClusterSpec, ProxyProtocolVersionSpec},
};

/// Priority levels: 0 (the highest) to this.
const MAX_PRIORITY: u32 = 127;

pub(super) fn cluster(
    c: &ClusterSpec,
    path: &DocPath,
    base: Option<&std::path::Path>,
    problems: &mut Problems,
) -> Cluster {
    if c.name.is_empty() {
        problems.value(&path.key("name"), "cluster name must not be empty");
    }
    let connect_timeout = problems.or(
        c.connect_timeout.map(|d| d.0),
        &path.key("connect_timeout"),
        defaults::CONNECT_TIMEOUT,
    );
    if connect_timeout.is_zero() {
        problems.value(
            &path.key("connect_timeout"),
            "connect_timeout must be more than zero",
        );
    }
    let idle_timeout = problems.or(
        c.idle_timeout
            .or(c
                .common_http_protocol_options
                .as_ref()
                .and_then(|o| o.idle_timeout))
            .map(|d| d.0),
        &path.key("idle_timeout"),
        defaults::CLUSTER_IDLE_TIMEOUT,
    );
    if idle_timeout.is_zero() {
        problems.value(
            &path.key("idle_timeout"),
            "idle_timeout must be more than zero (use max_idle_per_endpoint: 0 to disable reuse)",
        );
    }
    let (lb_policy, hash_lb, slow_start) = super::lb::lb(c, path, problems);

    let endpoints_path = path.key("endpoints");
    if c.endpoints.is_empty() {
        problems.value(&endpoints_path, "a cluster needs at least one endpoint");
    }
    let logical = match c.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => {
            problems.filled(&path.key("type"), &"static");
            None
        }
        Some("static") => None,
        Some("strict_dns") => Some(false),
        Some("logical_dns") => Some(true),
        Some(other) => {
            problems.value(
                &path.key("type"),
                format!("type must be static, strict_dns or logical_dns (found {other:?})"),
            );
            None
        }
    };
    let mut endpoints = Vec::with_capacity(c.endpoints.len());
    let mut dns_hosts = Vec::new();
    for (ep_path, item) in super::enumerate(&c.endpoints, &endpoints_path, problems) {
        let Some(ep) = &item.value else { continue };
        // `"IP:port"` reports at the list item; `{address: ...}` at its address key.
        let addr_path = match ep.map_form {
            true => ep_path.key("address"),
            false => ep_path.clone(),
        };
        if logical.is_some() {
            // `host:port`: resolved at run time.
            let weight = problems
                .or(ep.weight, &ep_path.key("weight"), defaults::ENDPOINT_WEIGHT)
                .max(1);
            let priority = problems.or(ep.priority, &ep_path.key("priority"), 0);
            match dns_host(&ep.address) {
                Ok((host, port)) => dns_hosts.push(DnsHost {
                    host,
                    port,
                    weight,
                    priority: priority.min(MAX_PRIORITY),
                }),
                Err(message) => problems.value(&addr_path, message),
            }
            continue;
        }
        let address = match socket_addr(&ep.address) {
            Ok(a) if a.port() == 0 => {
                problems.value(
                    &addr_path,
                    format!("invalid address {:?}: port must be 1..=65535", ep.address),
                );
                None
            }
            Ok(a) => Some(a),
            Err(message) => {
                problems.value(&addr_path, message);
                None
            }
        };
        let weight = problems.or(ep.weight, &ep_path.key("weight"), defaults::ENDPOINT_WEIGHT);
        if weight == 0 {
            problems.value(&ep_path.key("weight"), "weight must be at least 1");
        }
        if let Some(address) = address {
            let priority = problems.or(ep.priority, &ep_path.key("priority"), 0);
            if priority > MAX_PRIORITY {
                problems.value(
                    &ep_path.key("priority"),
                    format!("priority must be 0..={MAX_PRIORITY} (found {priority})"),
                );
            }
            endpoints.push(Endpoint {
                address,
                weight,
                priority: priority.min(MAX_PRIORITY),
            });
        }
    }

    let dns = logical.map(|logical| {
        let family = match c.dns_lookup_family.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None => {
                problems.filled(&path.key("dns_lookup_family"), &"AUTO");
                DnsFamily::Auto
            }
            Some("AUTO") => DnsFamily::Auto,
            Some("V4_ONLY") => DnsFamily::V4Only,
            Some("V6_ONLY") => DnsFamily::V6Only,
            Some("V4_PREFERRED") => DnsFamily::V4Preferred,
            Some("ALL") => DnsFamily::All,
            Some(other) => {
                problems.value(
                    &path.key("dns_lookup_family"),
                    format!("dns_lookup_family must be AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED or ALL (found {other:?})"),
                );
                DnsFamily::Auto
            }
        };
        let refresh = problems.or(
            c.dns_refresh_rate.map(|d| d.0),
            &path.key("dns_refresh_rate"),
            Duration::from_secs(5),
        );
        let respect_ttl = problems.or(c.respect_dns_ttl, &path.key("respect_dns_ttl"), false);
        if refresh < Duration::from_millis(1) {
            problems.value(&path.key("dns_refresh_rate"), "dns_refresh_rate must be at least 1ms");
        }
        let mut resolvers = Vec::new();
        for (i, r) in c.dns_resolvers.iter().flatten().enumerate() {
            match r.parse::<SocketAddr>().or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53))) {
                Ok(a) => resolvers.push(a),
                Err(_) => problems.value(
                    &path.key("dns_resolvers").index(i),
                    format!("invalid DNS server {r:?}: expected IP or IP:port"),
                ),
            }
        }
        std::sync::Arc::new(DnsCluster {
            hosts: std::mem::take(&mut dns_hosts),
            logical,
            refresh,
            respect_ttl,
            family,
            resolvers,
        })
    });

    // `auto`: HTTP/2 where TLS's ALPN settles on `h2`, HTTP/1.1 otherwise (and always on plain
    // TCP, as Envoy's `auto_config`).
    let (http2, auto) = match c.protocol.as_deref() {
        None => {
            problems.filled(&path.key("protocol"), &"http1");
            (false, false)
        }
        Some(p) => match p.to_ascii_lowercase().as_str() {
            "http1" => (false, false),
            "http2" => (true, false),
            "auto" => (c.tls.is_some(), c.tls.is_some()),
            _ => {
                problems.value(
                    &path.key("protocol"),
                    format!("protocol must be http1, http2 or auto (found {p:?})"),
                );
                (false, false)
            }
        },
    };
    if http2 && c.upstream_proxy_protocol.is_some() {
        problems.value(
            &path.key("upstream_proxy_protocol"),
            "a PROXY header names one client, and an HTTP/2 connection carries many clients' \
             requests: use protocol http1 with upstream_proxy_protocol",
        );
    }
    Cluster {
        name: c.name.clone(),
        dns,
        connect_timeout,
        lb_policy,
        hash_lb,
        slow_start,
        endpoints,
        max_idle_per_endpoint: problems.or(
            c.max_idle_per_endpoint,
            &path.key("max_idle_per_endpoint"),
            defaults::MAX_IDLE_PER_ENDPOINT,
        ),
        idle_timeout,
        enable_trailers: super::http::enable_trailers(
            c.http_protocol_options.as_ref(),
            path,
            problems,
        ),
        upstream_proxy_protocol: c.upstream_proxy_protocol.as_ref().map(|p| match p.version {
            // Envoy's default (`V1` is the enum's zero).
            None | Some(ProxyProtocolVersionSpec::V1) => ProxyProtocolVersion::V1,
            Some(ProxyProtocolVersionSpec::V2) => ProxyProtocolVersion::V2,
        }),
        tls: c.tls.as_ref().and_then(|t| {
            super::upstream_tls::upstream(t, &path.key("tls"), base, http2, auto, problems)
        }),
        http2,
        http2_auto: auto,
        http2_options: {
            // HTTP/2 settings only show in the dump where the cluster may speak HTTP/2.
            let shown = problems.filled_len();
            let options = super::http::http2_settings(
                c.http2_protocol_options.as_ref(),
                defaults::MAX_REQUEST_HEADERS_KB * 1024,
                &path.key("http2_protocol_options"),
                problems,
            );
            if !http2 && !auto {
                problems.unfill(shown);
            }
            options
        },
        max_requests_per_connection: match c.max_requests_per_connection.or(c
            .common_http_protocol_options
            .as_ref()
            .and_then(|o| o.max_requests_per_connection))
        {
            Some(0) => {
                problems.value(
                    &path.key("max_requests_per_connection"),
                    "max_requests_per_connection must be at least 1 (leave it out for no limit)",
                );
                None
            }
            n => n,
        },
        health_check: super::health::health_checks(c, path, problems),
        outlier: super::health::outlier(c, path, problems),
        healthy_panic_threshold: super::health::panic_threshold(c, path, problems),
        breakers: super::health::breakers(c, path, problems),
        max_connection_duration: match c.max_connection_duration.or(c
            .common_http_protocol_options
            .as_ref()
            .and_then(|o| o.max_connection_duration))
        {
            Some(d) if d.0.is_zero() => {
                problems.value(
                    &path.key("max_connection_duration"),
                    "max_connection_duration must be more than zero (leave it out for no limit)",
                );
                None
            }
            d => d.map(|d| d.0),
        },
    }
}

/// `host:port` of a DNS cluster's endpoint: a name (or an IP literal, `[v6]` bracketed) and a
/// port 1..=65535.
fn dns_host(s: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("invalid endpoint {s:?}: {why} (expected host:port)");
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("port must be 1..=65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !valid {
        return Err(bad("not a host name"));
    }
    Ok((host.to_ascii_lowercase(), port))
}
