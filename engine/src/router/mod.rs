//! Route selection, the decision at the heart of the router filter: given a request's Host,
//! path, method and headers, which [`Route`] of an HTTP connection manager handles it.
//!
//! Each worker builds its own [`RouteTable`] from the validated config once (per config
//! snapshot) and then calls [`RouteTable::find`] for every request. The table owns clones of the
//! virtual hosts and routes, so a worker never shares a compiled regex (or its match cache) with
//! another core: `regex::Regex::clone` gives each clone its own cache pool.
//!
//! Matching, Envoy's semantics:
//!
//! 1. Virtual host by Host (case-insensitive, `:port` removed, `[::1]:80` -> `[::1]`): an exact
//!    domain first, then the longest `*.suffix` (`*.a.com` matches `b.a.com` and `x.b.a.com`,
//!    not `a.com`), then the longest `prefix.*`, then `*`. No Host matches only `*`.
//! 2. The first route, in config order, whose path matcher, methods and header matchers all
//!    match. `path` and `regex` look at the path without its query string; `prefix` at the whole
//!    request-target path, query included. A regex runs on UTF-8 text: a non-UTF-8 path or
//!    header value never matches one.
//!
//! Hot path: no allocation and no lock per lookup (a Host with upper-case letters is
//! lower-cased into a stack buffer for the exact-domain hash lookup).

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use ringway_filters::HeaderMap;

use crate::config::{
    HeaderMatchKind, HeaderMatcher, HttpConnManager, PathMatch, Route, VirtualHost,
};

/// Longest Host (without port) lower-cased on the stack for the exact lookup; DNS names are at
/// most 253 bytes, so a longer Host can only match a wildcard.
const MAX_HOST: usize = 256;

/// One worker's routes for one HTTP connection manager.
#[derive(Debug, Clone)]
pub struct RouteTable {
    virtual_hosts: Vec<VirtualHost>,
    /// Lower-cased exact domain -> index in `virtual_hosts`.
    exact: HashMap<Box<[u8]>, usize>,
    /// `*.a.com` stored as `.a.com`, longest first.
    suffixes: Vec<(Box<[u8]>, usize)>,
    /// `www.*` stored as `www.`, longest first.
    prefixes: Vec<(Box<[u8]>, usize)>,
    /// The virtual host with domain `*`.
    any: Option<usize>,
    /// `Route::id` -> index of its virtual host.
    route_vhost: Vec<usize>,
}

impl RouteTable {
    /// Builds the table (clones the virtual hosts). Should a domain appear twice (validation
    /// forbids it), the first virtual host that lists it wins.
    pub fn new(hcm: &HttpConnManager) -> RouteTable {
        let mut table = RouteTable {
            virtual_hosts: hcm.virtual_hosts.clone(),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            route_vhost: Vec::new(),
        };
        for (i, vh) in hcm.virtual_hosts.iter().enumerate() {
            for r in &vh.routes {
                if table.route_vhost.len() <= r.id {
                    table.route_vhost.resize(r.id + 1, i);
                }
                table.route_vhost[r.id] = i;
            }
            for domain in &vh.domains {
                let d = domain.to_ascii_lowercase();
                if d == "*" {
                    table.any.get_or_insert(i);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    push_unique(&mut table.suffixes, suffix.as_bytes(), i);
                } else if let Some(prefix) = d.strip_suffix('*') {
                    push_unique(&mut table.prefixes, prefix.as_bytes(), i);
                } else {
                    table.exact.entry(d.into_bytes().into()).or_insert(i);
                }
            }
        }
        // Longest first; stable, so equal lengths keep config order.
        table
            .suffixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table
    }

    /// The virtual host holding route `id` (`Route::id`).
    pub fn virtual_host_of(&self, id: usize) -> Option<&VirtualHost> {
        self.route_vhost
            .get(id)
            .and_then(|&i| self.virtual_hosts.get(i))
    }

    /// The name of the virtual host holding route `id`.
    pub fn virtual_host_name(&self, id: usize) -> &str {
        self.virtual_host_of(id).map_or("", |vh| vh.name.as_str())
    }

    /// The virtual hosts, in config order.
    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// The route for a request, or `None` (no virtual host for this Host, or no route in it
    /// matches: a 404). `host` is the Host header value (empty when absent), `path` the
    /// request-target's path and query, `method` as received, `headers` the request headers.
    pub fn find(
        &self,
        host: &[u8],
        path: &[u8],
        method: &[u8],
        headers: &HeaderMap,
    ) -> Option<&Route> {
        let vh = self.virtual_host(host)?;
        let without_query = match path.iter().position(|&b| b == b'?') {
            Some(q) => &path[..q],
            None => path,
        };
        vh.routes
            .iter()
            .find(|r| route_matches(r, path, without_query, method, headers))
    }

    /// The virtual host a Host header value selects (step 1 of the module doc).
    pub fn virtual_host(&self, host: &[u8]) -> Option<&VirtualHost> {
        let host = strip_port(host);
        let index = if host.is_empty() {
            self.any
        } else {
            self.exact_match(host)
                .or_else(|| wildcard(&self.suffixes, host, ends_with_ci))
                .or_else(|| wildcard(&self.prefixes, host, starts_with_ci))
                .or(self.any)
        };
        index.and_then(|i| self.virtual_hosts.get(i))
    }

    fn exact_match(&self, host: &[u8]) -> Option<usize> {
        if self.exact.is_empty() {
            return None;
        }
        if !host.iter().any(u8::is_ascii_uppercase) {
            return self.exact.get(host).copied();
        }
        if host.len() > MAX_HOST {
            return None;
        }
        let mut buf = [0u8; MAX_HOST];
        let lower = &mut buf[..host.len()];
        lower.copy_from_slice(host);
        lower.make_ascii_lowercase();
        self.exact.get(&*lower).copied()
    }
}

fn push_unique(list: &mut Vec<(Box<[u8]>, usize)>, pattern: &[u8], index: usize) {
    if !list.iter().any(|(p, _)| &**p == pattern) {
        list.push((pattern.into(), index));
    }
}

/// First (longest) pattern that matches with at least one byte left over for the `*`.
fn wildcard(
    list: &[(Box<[u8]>, usize)],
    host: &[u8],
    matches: impl Fn(&[u8], &[u8]) -> bool,
) -> Option<usize> {
    list.iter()
        .find(|(pattern, _)| host.len() > pattern.len() && matches(host, pattern))
        .map(|&(_, i)| i)
}

fn ends_with_ci(host: &[u8], suffix: &[u8]) -> bool {
    host.len() >= suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn starts_with_ci(host: &[u8], prefix: &[u8]) -> bool {
    host.len() >= prefix.len() && host[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `a.com:80` -> `a.com`, `[::1]:80` -> `[::1]`, `a.com` and `[::1]` unchanged. A bare IPv6
/// address (several colons, no brackets) is left alone.
pub(crate) fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host[..colon].contains(&b':') => &host[..colon],
        _ => host,
    }
}

fn route_matches(
    route: &Route,
    path: &[u8],
    without_query: &[u8],
    method: &[u8],
    headers: &HeaderMap,
) -> bool {
    let m = &route.matcher;
    let path_ok = match &m.path {
        PathMatch::Exact(p) => without_query == p.as_bytes(),
        PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
        PathMatch::Regex(re) => std::str::from_utf8(without_query).is_ok_and(|s| re.is_match(s)),
    };
    path_ok
        && (m.methods.is_empty() || m.methods.iter().any(|x| x.as_bytes() == method))
        && m.headers.iter().all(|h| header_matches(h, headers))
}

/// Checks the first header named `m.name`; a missing header fails every matcher, so only an
/// inverted one matches it.
pub(crate) fn header_matches(m: &HeaderMatcher, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get_bytes(&m.name) else {
        return m.invert;
    };
    let matched = match &m.kind {
        HeaderMatchKind::Exact(e) => v == e.as_bytes(),
        HeaderMatchKind::Prefix(p) => v.starts_with(p.as_bytes()),
        HeaderMatchKind::Regex(re) => std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)),
        HeaderMatchKind::Present => true,
    };
    matched != m.invert
}
