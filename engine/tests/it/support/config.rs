//! Config text for the proxy under test. [`ConfigBuilder`] writes the YAML a test starts the
//! proxy on, so a test names only what it is about (a route, an HCM key, a cluster option)
//! instead of repeating the listener → filter chain → HTTP connection manager → virtual host →
//! route nesting. [`simple_config`] and [`admin_config`] are its two most common shapes.
//!
//! The builder keeps a cursor: routes go to the last virtual host of the last listener, HCM
//! keys to the last listener, filter-chain keys to the last listener's last chain, cluster keys
//! to the last cluster. What is needed and not declared yet is made on first use: a listener
//! `main` on `127.0.0.1:0`, a virtual host `all` for `["*"]`. Everything the typed calls do not
//! cover is a raw YAML fragment, written at any indentation (it is re-indented to its place),
//! with or without a trailing newline.
//!
//! A listener is an HTTP one (one filter chain, its one filter the HTTP connection manager)
//! unless started with [`ConfigBuilder::tcp_listener`]: then each [`ConfigBuilder::tcp_proxy`]
//! adds a filter chain whose one filter is `tcp_proxy`, and the HCM and route calls refuse it.
//!
//! The text is laid out the way the tests wrote it by hand (top-level keys, `listeners`,
//! `clusters`; listener keys before `filter_chains`; a chain's keys before its `filters`; HCM
//! keys before `http_filters` and `virtual_hosts`), and [`simple_config`]'s is kept byte for
//! byte: tests edit it with `str::replace`.

use std::{fmt::Display, net::SocketAddr};

/// A YAML config under construction; [`ConfigBuilder::yaml`] renders it.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    top: Vec<String>,
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
}

/// One listener with its HTTP connection manager, or with its `tcp_proxy` filter chains. Every
/// `Vec<String>` of these structs holds fragments already indented for their place, each ending
/// in a newline.
#[derive(Debug, Clone)]
struct Listener {
    name: String,
    address: String,
    /// Raw listener keys (before `filter_chains`).
    extra: Vec<String>,
    /// `Some` for a listener from [`ConfigBuilder::tcp_listener`]: its filter chains, each with
    /// one `tcp_proxy` filter. The fields below (the HTTP chain's) are then unused.
    tcp_chains: Option<Vec<TcpChain>>,
    /// Raw keys of the HTTP filter chain (`tls: ...`), before `filters`.
    chain_extra: Vec<String>,
    stat_prefix: Option<String>,
    /// Raw HCM keys (after `stat_prefix`).
    hcm_extra: Vec<String>,
    /// Raw `http_filters` list items.
    http_filters: Vec<String>,
    virtual_hosts: Vec<VirtualHost>,
}

/// One filter chain of a `tcp_proxy` listener.
#[derive(Debug, Clone)]
struct TcpChain {
    /// Raw chain keys (`filter_chain_match: ...`, `tls: ...`), before `filters`.
    extra: Vec<String>,
    /// Raw keys of its `tcp_proxy` filter.
    keys: Vec<String>,
}

/// One virtual host, typed or raw.
#[derive(Debug, Clone)]
struct VirtualHost {
    /// The whole list item, raw (from [`ConfigBuilder::virtual_host_raw`]); the rest is unused.
    raw: Option<String>,
    name: String,
    domains: Vec<String>,
    /// Raw virtual host keys (after `domains`).
    extra: Vec<String>,
    /// Whole route list items (`- match: ...` and their keys).
    routes: Vec<String>,
}

/// One cluster.
#[derive(Debug, Clone)]
struct Cluster {
    name: String,
    /// Raw keys, after `name`.
    keys: Vec<String>,
    /// The `endpoints:` line of [`ConfigBuilder::cluster`], written last.
    endpoints: Option<String>,
}

impl ConfigBuilder {
    /// Nothing yet: no listener, no cluster.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// [`simple_config`]'s shape: listener `main` (stat prefix `main`), every path of every
    /// host routed to cluster `origin` (`connect_timeout: 1s`) at `origin`.
    pub fn simple(origin: SocketAddr) -> ConfigBuilder {
        ConfigBuilder::new()
            .stat_prefix("main")
            .route_prefix("/", "origin")
            .cluster("origin", &[origin])
            .connect_timeout("1s")
    }

    // --- Top level.

    /// Raw top-level keys (`workers: 2`, `tracing: ...`), written before `listeners:`, in the
    /// order given.
    pub fn top(mut self, keys: &str) -> Self {
        self.top.push(block(keys, 0));
        self
    }

    /// `admin: { address: 127.0.0.1:0 }` (as a top-level block).
    pub fn admin(self) -> Self {
        self.top("admin:\n  address: 127.0.0.1:0")
    }

    // --- Listeners and their HTTP connection manager.

    /// Start another listener (the first one is made on first use if this is never called).
    pub fn listener(mut self, name: &str, address: &str) -> Self {
        self.listeners.push(Listener::new(name, address));
        self
    }

    /// The last listener's address (`127.0.0.1:0` unless set).
    pub fn listener_address(mut self, address: &str) -> Self {
        self.last_listener().address = address.to_string();
        self
    }

    /// Raw keys of the listener itself (`connection_balance: exact`), before `filter_chains`.
    pub fn listener_extra(mut self, keys: &str) -> Self {
        self.last_listener().extra.push(block(keys, 4));
        self
    }

    /// `filter_chain_match: { MATCHER }` on the last listener's last filter chain, before its
    /// `filters`; `matcher` is the inside of the braces (`server_names: [a.test]`,
    /// `transport_protocol: tls, application_protocols: [h2]`).
    pub fn filter_chain_match(self, matcher: &str) -> Self {
        self.chain_extra(&format!("filter_chain_match: {{ {matcher} }}"))
    }

    /// Raw keys of the last listener's last filter chain (`tls: ...`), before its `filters`, in
    /// the order given. The chain is then written `- KEY: ...` and `filters:` below its keys.
    pub fn chain_extra(mut self, keys: &str) -> Self {
        let keys = block(keys, 8);
        let l = self.last_listener();
        match &mut l.tcp_chains {
            None => l.chain_extra.push(keys),
            Some(chains) => match chains.last_mut() {
                Some(chain) => chain.extra.push(keys),
                None => panic!(
                    "chain keys on tcp_proxy listener {} before any tcp_proxy",
                    l.name
                ),
            },
        }
        self
    }

    /// The HCM's `stat_prefix`.
    pub fn stat_prefix(mut self, prefix: &str) -> Self {
        self.last_http_listener().stat_prefix = Some(prefix.to_string());
        self
    }

    /// Raw HCM keys (`idle_timeout: 1s`, `access_log: [...]`), after `stat_prefix`, before
    /// `http_filters` and `virtual_hosts`, in the order given.
    pub fn hcm_extra(mut self, keys: &str) -> Self {
        self.last_http_listener().hcm_extra.push(block(keys, 14));
        self
    }

    /// Raw items of the HCM's `http_filters` list, each starting with `- ` (for example
    /// `"- name: cors\n  allow_methods: GET"`); calls add to the list.
    pub fn http_filters(mut self, items: &str) -> Self {
        self.last_http_listener()
            .http_filters
            .push(block(items, 16));
        self
    }

    /// One `http_filters` item: `- name: NAME` followed by the raw keys `keys` (may be empty).
    pub fn http_filter(self, name: &str, keys: &str) -> Self {
        let item = format!("- name: {name}\n{}", block(keys, 2));
        self.http_filters(&item)
    }

    // --- Listeners with `tcp_proxy` filter chains.

    /// Start a listener whose filter chains each hold one `tcp_proxy` filter, added by
    /// [`ConfigBuilder::tcp_proxy`]. Its listener keys ([`ConfigBuilder::listener_extra`]) and
    /// chain keys ([`ConfigBuilder::filter_chain_match`], [`ConfigBuilder::chain_extra`]) are
    /// written as an HTTP listener's; the HCM and route calls panic on it.
    pub fn tcp_listener(mut self, name: &str, address: &str) -> Self {
        let mut l = Listener::new(name, address);
        l.tcp_chains = Some(Vec::new());
        self.listeners.push(l);
        self
    }

    /// Another filter chain on the last listener (from [`ConfigBuilder::tcp_listener`]):
    /// `- filters: [tcp_proxy: {...}]` written as a block, with the raw keys `keys`
    /// (`stat_prefix: db\ncluster: backend`) under `tcp_proxy:` (`tcp_proxy: {}` when empty).
    pub fn tcp_proxy(mut self, keys: &str) -> Self {
        let chain = TcpChain {
            extra: Vec::new(),
            keys: vec![block(keys, 14)],
        };
        self.last_tcp_listener().push(chain);
        self
    }

    /// Raw keys added to the last chain's `tcp_proxy` (`max_connect_attempts: 2`), after those
    /// given before.
    pub fn tcp_proxy_extra(mut self, keys: &str) -> Self {
        let keys = block(keys, 14);
        match self.last_tcp_listener().last_mut() {
            Some(chain) => chain.keys.push(keys),
            None => panic!("tcp_proxy_extra before any tcp_proxy"),
        }
        self
    }

    // --- Virtual hosts.

    /// Start a virtual host on the last listener.
    pub fn virtual_host(mut self, name: &str, domains: &[&str]) -> Self {
        self.last_http_listener().virtual_hosts.push(VirtualHost {
            raw: None,
            name: name.to_string(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            extra: Vec::new(),
            routes: Vec::new(),
        });
        self
    }

    /// Raw keys of the last virtual host, after `domains`, before `routes`.
    pub fn vhost_extra(mut self, keys: &str) -> Self {
        self.last_vhost().extra.push(block(keys, 18));
        self
    }

    /// A whole virtual host, raw: its keys (`name: x\ndomains: [...]\nroutes: [...]`), without
    /// the leading `- `. Routes added after it start a new default virtual host.
    pub fn virtual_host_raw(mut self, item: &str) -> Self {
        self.last_http_listener().virtual_hosts.push(VirtualHost {
            raw: Some(list_item(item, 16)),
            name: String::new(),
            domains: Vec::new(),
            extra: Vec::new(),
            routes: Vec::new(),
        });
        self
    }

    // --- Routes (on the last virtual host).

    /// A route: `match: { MATCHER }` and the action, both raw; `matcher` is the inside of the
    /// match's braces (`prefix: /api/`, `path: /x, methods: [GET]`), `action` one key such as
    /// `route: { cluster: origin, timeout: 1s }`, `direct_response: { status: 200 }` or
    /// `redirect: { https_redirect: true }`.
    pub fn route(self, matcher: &str, action: &str) -> Self {
        let item = format!("match: {{ {matcher} }}\n{}", block(action, 0));
        self.route_raw(&item)
    }

    /// `match: { prefix: PREFIX }` forwarded to `cluster`.
    pub fn route_prefix(self, prefix: &str, cluster: &str) -> Self {
        self.route(
            &format!("prefix: {prefix}"),
            &format!("route: {{ cluster: {cluster} }}"),
        )
    }

    /// `match: { path: PATH }` forwarded to `cluster`.
    pub fn route_path(self, path: &str, cluster: &str) -> Self {
        self.route(
            &format!("path: {path}"),
            &format!("route: {{ cluster: {cluster} }}"),
        )
    }

    /// A route answered by the proxy itself: `direct_response: { status: STATUS, body: "BODY" }`.
    pub fn direct_response(self, matcher: &str, status: u16, body: &str) -> Self {
        self.route(
            matcher,
            &format!(
                "direct_response: {{ status: {status}, body: {} }}",
                yaml_str(body)
            ),
        )
    }

    /// A whole route, raw: its keys without the leading `- ` (for a block-style `match:`).
    pub fn route_raw(mut self, item: &str) -> Self {
        self.last_vhost().routes.push(list_item(item, 20));
        self
    }

    /// Raw keys added to the last route (`per_filter_config: ...`, `request_headers_to_add:
    /// ...`).
    pub fn route_extra(mut self, keys: &str) -> Self {
        let vh = self.last_vhost();
        let extra = block(keys, 22);
        match vh.routes.last_mut() {
            Some(route) => route.push_str(&extra),
            None => panic!("route_extra before any route"),
        }
        self
    }

    // --- Clusters.

    /// A cluster with these endpoints (written `["IP:port", ...]`).
    pub fn cluster(mut self, name: &str, endpoints: &[impl Display]) -> Self {
        let list: Vec<String> = endpoints.iter().map(|e| yaml_str(&e.to_string())).collect();
        self.clusters.push(Cluster {
            name: name.to_string(),
            keys: Vec::new(),
            endpoints: Some(format!("    endpoints: [{}]\n", list.join(", "))),
        });
        self
    }

    /// A cluster whose keys other than `name` are all raw (`lb_policy: random\nendpoints: [...]`).
    pub fn cluster_raw(mut self, name: &str, keys: &str) -> Self {
        self.clusters.push(Cluster {
            name: name.to_string(),
            keys: vec![block(keys, 4)],
            endpoints: None,
        });
        self
    }

    /// Raw keys of the last cluster (`lb_policy: random`, `idle_timeout: 1s`), before its
    /// `endpoints`.
    pub fn cluster_extra(mut self, keys: &str) -> Self {
        self.last_cluster().keys.push(block(keys, 4));
        self
    }

    /// The last cluster's `connect_timeout` (a duration such as `1s`).
    pub fn connect_timeout(self, timeout: &str) -> Self {
        self.cluster_extra(&format!("connect_timeout: {timeout}"))
    }

    // --- Output.

    /// The config text.
    pub fn yaml(&self) -> String {
        let mut out = String::new();
        for t in &self.top {
            out.push_str(t);
        }
        if !self.listeners.is_empty() {
            out.push_str("listeners:\n");
            for l in &self.listeners {
                l.render(&mut out);
            }
        }
        if !self.clusters.is_empty() {
            out.push_str("clusters:\n");
            for c in &self.clusters {
                out.push_str(&format!("  - name: {}\n", c.name));
                for k in &c.keys {
                    out.push_str(k);
                }
                if let Some(e) = &c.endpoints {
                    out.push_str(e);
                }
            }
        }
        out
    }

    fn last_listener(&mut self) -> &mut Listener {
        if self.listeners.is_empty() {
            self.listeners.push(Listener::new("main", "127.0.0.1:0"));
        }
        let last = self.listeners.len() - 1;
        &mut self.listeners[last]
    }

    /// The last listener, which must be an HTTP one.
    fn last_http_listener(&mut self) -> &mut Listener {
        let l = self.last_listener();
        if l.tcp_chains.is_some() {
            panic!(
                "HCM or route call on tcp_proxy listener {}: start an HTTP one with listener()",
                l.name
            );
        }
        l
    }

    /// The filter chains of the last listener, which must be a `tcp_proxy` one.
    fn last_tcp_listener(&mut self) -> &mut Vec<TcpChain> {
        match self.listeners.last_mut() {
            Some(Listener {
                tcp_chains: Some(chains),
                ..
            }) => chains,
            _ => panic!("tcp_proxy on no listener or an HTTP one: start one with tcp_listener()"),
        }
    }

    fn last_vhost(&mut self) -> &mut VirtualHost {
        let l = self.last_http_listener();
        if l.virtual_hosts.last().is_none_or(|v| v.raw.is_some()) {
            l.virtual_hosts.push(VirtualHost {
                raw: None,
                name: "all".to_string(),
                domains: vec!["*".to_string()],
                extra: Vec::new(),
                routes: Vec::new(),
            });
        }
        let last = l.virtual_hosts.len() - 1;
        &mut l.virtual_hosts[last]
    }

    fn last_cluster(&mut self) -> &mut Cluster {
        self.clusters
            .last_mut()
            .expect("cluster_extra/connect_timeout before any cluster")
    }
}

impl Listener {
    fn new(name: &str, address: &str) -> Listener {
        Listener {
            name: name.to_string(),
            address: address.to_string(),
            extra: Vec::new(),
            tcp_chains: None,
            chain_extra: Vec::new(),
            stat_prefix: None,
            hcm_extra: Vec::new(),
            http_filters: Vec::new(),
            virtual_hosts: Vec::new(),
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str(&format!(
            "  - name: {}\n    address: {}\n",
            self.name, self.address
        ));
        for e in &self.extra {
            out.push_str(e);
        }
        out.push_str("    filter_chains:\n");
        if let Some(chains) = &self.tcp_chains {
            for c in chains {
                chain_head(&c.extra, out);
                let keys = c.keys.concat();
                if keys.is_empty() {
                    out.push_str("          - tcp_proxy: {}\n");
                } else {
                    out.push_str("          - tcp_proxy:\n");
                    out.push_str(&keys);
                }
            }
            return;
        }
        chain_head(&self.chain_extra, out);
        out.push_str("          - http_connection_manager:\n");
        if let Some(p) = &self.stat_prefix {
            out.push_str(&format!("              stat_prefix: {p}\n"));
        }
        for e in &self.hcm_extra {
            out.push_str(e);
        }
        if !self.http_filters.is_empty() {
            out.push_str("              http_filters:\n");
            for f in &self.http_filters {
                out.push_str(f);
            }
        }
        if self.virtual_hosts.is_empty() {
            out.push_str("              virtual_hosts: []\n");
            return;
        }
        out.push_str("              virtual_hosts:\n");
        for vh in &self.virtual_hosts {
            vh.render(out);
        }
    }
}

impl VirtualHost {
    fn render(&self, out: &mut String) {
        if let Some(raw) = &self.raw {
            out.push_str(raw);
            return;
        }
        let domains: Vec<String> = self.domains.iter().map(|d| yaml_str(d)).collect();
        out.push_str(&format!(
            "                - name: {}\n                  domains: [{}]\n",
            self.name,
            domains.join(", ")
        ));
        for e in &self.extra {
            out.push_str(e);
        }
        if self.routes.is_empty() {
            out.push_str("                  routes: []\n");
            return;
        }
        out.push_str("                  routes:\n");
        for r in &self.routes {
            out.push_str(r);
        }
    }
}

/// The start of one `filter_chains` item, up to its `filters:` line: `- filters:` alone, or
/// the chain's keys `extra` (indented 8) as a list item and `filters:` under them.
fn chain_head(extra: &[String], out: &mut String) {
    let keys = extra.concat();
    if keys.is_empty() {
        out.push_str("      - filters:\n");
        return;
    }
    out.push_str("      - ");
    out.push_str(keys.trim_start_matches([' ', '\n']));
    out.push_str("        filters:\n");
}

/// A minimal config: one listener on port 0, every path routed to `cluster_addr`.
pub fn simple_config(cluster_addr: SocketAddr) -> String {
    ConfigBuilder::simple(cluster_addr).yaml()
}

/// `simple_config` plus `admin: {address: 127.0.0.1:0}` and extra top-level keys.
pub fn admin_config(cluster_addr: SocketAddr, extra: &str) -> String {
    ConfigBuilder::simple(cluster_addr)
        .admin()
        .top(extra)
        .yaml()
}

/// `s` as a double-quoted YAML scalar (JSON's escapes are YAML's).
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// `fragment` with its common indentation replaced by `indent` spaces, one line per line, each
/// ending in a newline. Blank lines stay empty.
pub fn block(fragment: &str, indent: usize) -> String {
    let lines: Vec<&str> = fragment
        .trim_start_matches('\n')
        .trim_end()
        .lines()
        .collect();
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for l in lines {
        if !l.trim().is_empty() {
            out.push_str(&pad);
            out.push_str(&l[common..]);
        }
        out.push('\n');
    }
    out
}

/// `keys` (a map's keys, raw) as one item of a block list whose `- ` stands at `indent`.
pub fn list_item(keys: &str, indent: usize) -> String {
    let body = block(keys, indent + 2);
    format!("{}- {}", " ".repeat(indent), &body[indent + 2..])
}
