//! Step two of "config in two steps": [`validate`] turns the [`schema`](super::schema) structs
//! into the runtime [`model`](super::model), checking what serde cannot (addresses, ranges,
//! references between sections, uniqueness, regexes) and filling defaults from
//! [`defaults`](super::defaults).
//!
//! It never stops at the first problem: every check records into [`Problems`] with the path of
//! the offending node and carries on with what it has, so a single run lists everything wrong.
//! A [`Config`] comes out either way; the loader discards it if any problem was recorded.
//!
//! Clusters are validated first so routes can resolve cluster names to [`ClusterId`]s;
//! listeners then validate their connection manager ([`http`]) and its routes.

mod access_log;
mod chains;
mod cluster;
mod filters;
mod health;
mod http;
mod lb;
mod route_policy;
mod tcp_proxy;
mod tls;
mod tracing;
mod upstream_tls;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
};

use super::{
    cpus,
    decode::Item,
    defaults,
    error::Problems,
    model::{
        Admin, ChainSelect, ClusterId, Config, CpuAffinity, FilterChain, Listener, NetworkFilter,
        Node, Xds,
    },
    path::DocPath,
    schema::{ConfigSpec, CpuAffinitySpec, FilterChainSpec, FilterSpec, ListenerSpec, WorkersSpec},
};

/// Cluster names as routes see them.
pub(super) struct ClusterNames {
    /// Valid-looking clusters, by name.
    ids: HashMap<String, ClusterId>,
    /// Clusters that exist but could not be read: routes naming them get no extra error.
    broken: HashSet<String>,
}

/// Validates a whole file. Problems go to `problems`; the returned `Config` is only meaningful
/// when none were recorded.
pub(crate) fn validate(spec: ConfigSpec, source: &str, problems: &mut Problems) -> Config {
    // Relative file names in the config are read from the config file's directory.
    let source_path = std::path::Path::new(source);
    let base = source_path
        .is_file()
        .then(|| source_path.parent())
        .flatten();
    let root = DocPath::root();

    let workers = match spec.workers {
        None => {
            problems.filled(&root.key("workers"), &"auto");
            None
        }
        Some(WorkersSpec::Auto) => None,
        Some(WorkersSpec::Count(n)) => {
            if n == 0 || n > defaults::MAX_WORKERS {
                problems.value(
                    &root.key("workers"),
                    format!(
                        "invalid workers {n}: expected `auto` or 1..={}",
                        defaults::MAX_WORKERS
                    ),
                );
            }
            Some(usize::try_from(n).unwrap_or(usize::MAX))
        }
    };
    let cpu_affinity = cpu_affinity(spec.cpu_affinity.as_ref(), &root, problems);
    if spec.cpu_affinity.is_none() {
        problems.filled(&root.key("cpu_affinity"), &"auto");
    }
    let drain_timeout = problems.or(
        spec.drain_timeout.map(|d| d.0),
        &root.key("drain_timeout"),
        defaults::DRAIN_TIMEOUT,
    );
    let park_idle_after = problems.or(
        spec.park_idle_after.map(|d| d.0),
        &root.key("park_idle_after"),
        defaults::PARK_IDLE_AFTER,
    );
    let stats_flush_interval = problems.or(
        spec.stats_flush_interval.map(|d| d.0),
        &root.key("stats_flush_interval"),
        defaults::STATS_FLUSH_INTERVAL,
    );
    let watch = problems.or(spec.watch, &root.key("watch"), false);
    let io_driver = spec.io_driver.unwrap_or_default();
    if spec.io_driver.is_none() {
        problems.filled(&root.key("io_driver"), &io_driver.as_str());
    }
    if stats_flush_interval.is_zero() {
        problems.value(
            &root.key("stats_flush_interval"),
            "stats_flush_interval must be more than zero",
        );
    }
    let admin = spec
        .admin
        .as_ref()
        .and_then(|a| match socket_addr(&a.address) {
            Ok(address) => Some(Admin { address }),
            Err(message) => {
                problems.value(&root.key("admin").key("address"), message);
                None
            }
        });

    let clusters_path = root.key("clusters");
    let mut clusters = Vec::new();
    let mut names = ClusterNames {
        ids: HashMap::new(),
        broken: HashSet::new(),
    };
    let mut first_cluster_at: HashMap<String, DocPath> = HashMap::new();
    for (path, item) in enumerate(&spec.clusters, &clusters_path, problems) {
        let Some(c) = &item.value else {
            if let Some(name) = &item.name {
                names.broken.insert(name.clone());
            }
            continue;
        };
        if let Some(first) = first_cluster_at.get(&c.name) {
            problems.value(
                &path.key("name"),
                format!(
                    "duplicate cluster name {:?} (first defined at {first})",
                    c.name
                ),
            );
        } else {
            first_cluster_at.insert(c.name.clone(), path.clone());
            names.ids.insert(c.name.clone(), clusters.len());
        }
        clusters.push(cluster::cluster(c, &path, base, problems));
    }

    let tracing = spec
        .tracing
        .as_ref()
        .and_then(|t| tracing::tracing(t, &root.key("tracing"), &names, problems));
    if let Some(t) = &tracing {
        if clusters
            .get(t.collector_cluster)
            .is_some_and(|c: &crate::config::Cluster| c.tls.is_some())
        {
            problems.value(
                &root.key("tracing").key("collector").key("cluster"),
                "the collector cluster has tls, but spans go to the collector over plain HTTP \
                 (TLS to the collector is not there yet): use a cluster without tls",
            );
        }
    }
    // What connection managers inherit (read from the spec, so a broken collector does not also
    // fail every connection manager's override).
    let trace_rate = spec.tracing.as_ref().map(|t| {
        t.sample_rate
            .unwrap_or(defaults::TRACE_SAMPLE_RATE)
            .clamp(0.0, 1.0)
    });

    let node = Node {
        id: spec
            .node
            .as_ref()
            .and_then(|n| n.id.clone())
            .unwrap_or_else(host_name),
        cluster: spec
            .node
            .as_ref()
            .and_then(|n| n.cluster.clone())
            .unwrap_or_default(),
    };
    let xds = spec
        .xds
        .as_ref()
        .and_then(|x| xds(x, &root.key("xds"), &names, problems));
    let listeners_path = root.key("listeners");
    if spec.listeners.is_empty() && xds.is_none() {
        problems.value(&listeners_path, "at least one listener is required");
    }
    let mut listeners = Vec::new();
    let mut first_name_at: HashMap<String, DocPath> = HashMap::new();
    let mut first_addr_at: HashMap<SocketAddr, DocPath> = HashMap::new();
    for (path, item) in enumerate(&spec.listeners, &listeners_path, problems) {
        let Some(l) = &item.value else { continue };
        if let Some(first) = first_name_at.get(&l.name) {
            problems.value(
                &path.key("name"),
                format!(
                    "duplicate listener name {:?} (first defined at {first})",
                    l.name
                ),
            );
        } else {
            first_name_at.insert(l.name.clone(), path.clone());
        }
        let address = listener_address(l, &path, problems);
        if let Some(addr) = address {
            // Port 0 asks the kernel for a free port: two such listeners never clash.
            if addr.port() != 0 {
                if let Some(first) = first_addr_at.get(&addr) {
                    problems.value(
                        &path.key("address"),
                        format!("duplicate listener address {addr} (also used by {first})"),
                    );
                } else {
                    first_addr_at.insert(addr, path.clone());
                }
            }
        }
        let listener = listener(l, address, &path, &names, trace_rate, base, problems);
        if let Some(listener) = listener {
            listeners.push(listener);
        }
    }

    access_log::number_destinations(&mut listeners);
    Config {
        workers,
        cpu_affinity,
        drain_timeout,
        park_idle_after,
        watch,
        io_driver,
        listeners,
        clusters,
        source: source.to_owned(),
        stats_flush_interval,
        admin,
        node,
        xds,
        file_document: None,
        warming: Default::default(),
        added_via_api: Default::default(),
        document: None,
        effective: None,
        tracing,
    }
}

/// `cpu_affinity`: a list must be non-empty and name only CPUs this process may run on (each
/// refused id reported at its own element).
fn cpu_affinity(
    spec: Option<&CpuAffinitySpec>,
    root: &DocPath,
    problems: &mut Problems,
) -> CpuAffinity {
    let path = root.key("cpu_affinity");
    match spec {
        None | Some(CpuAffinitySpec::Auto) => CpuAffinity::Auto,
        Some(CpuAffinitySpec::None) => CpuAffinity::None,
        Some(CpuAffinitySpec::Cpus(ids)) => {
            if ids.is_empty() {
                problems.value(
                    &path,
                    "empty CPU list: list at least one CPU id, or use `auto` or `none`",
                );
            }
            let allowed = cpus::allowed();
            let mut out = Vec::with_capacity(ids.len());
            for (i, &id) in ids.iter().enumerate() {
                match cpus::refuse(id, allowed.as_deref()) {
                    Some(why) => problems.value(&path.index(i), why),
                    None => out.push(usize::try_from(id).unwrap_or(usize::MAX)),
                }
            }
            CpuAffinity::Cpus(out)
        }
    }
}

/// The elements of a list that could be read, with their paths; the problems of every element
/// are recorded under its path.
pub(super) fn enumerate<'a, T>(
    list: &'a [Item<T>],
    path: &DocPath,
    problems: &mut Problems,
) -> Vec<(DocPath, &'a Item<T>)> {
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let at = path.index(i);
            for problem in &item.problems {
                problems.push(problem.under(&at));
            }
            (at, item)
        })
        .collect()
}

fn listener_address(
    l: &ListenerSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    match socket_addr(&l.address) {
        Ok(addr) => Some(addr),
        Err(message) => {
            problems.value(&path.key("address"), message);
            None
        }
    }
}

/// A listener: its one filter chain and that chain's one filter, the terminal network filter
/// (the HTTP connection manager or the TCP proxy).
#[allow(clippy::too_many_arguments)]
fn listener(
    l: &ListenerSpec,
    address: Option<SocketAddr>,
    path: &DocPath,
    clusters: &ClusterNames,
    trace_rate: Option<f64>,
    base: Option<&std::path::Path>,
    problems: &mut Problems,
) -> Option<Listener> {
    if l.name.is_empty() {
        problems.value(&path.key("name"), "listener name must not be empty");
    }
    let backlog = problems.or(l.backlog, &path.key("backlog"), defaults::BACKLOG);
    if backlog == 0 {
        problems.value(&path.key("backlog"), "backlog must be at least 1");
    }
    let exact_balance = match l.connection_balance.as_deref() {
        None => {
            problems.filled(&path.key("connection_balance"), &"exact");
            true
        }
        Some("exact") => true,
        Some("kernel") => false,
        Some(other) => {
            problems.value(
                &path.key("connection_balance"),
                format!("unknown connection_balance {other:?}: expected `exact` or `kernel`"),
            );
            true
        }
    };
    let chains_path = path.key("filter_chains");
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        problems.value(
            &chains_path,
            "a listener needs at least one filter chain (or a `default_filter_chain`)",
        );
    }
    if l.filter_chains.len() > defaults::MAX_FILTER_CHAINS {
        problems.value(
            &chains_path,
            format!(
                "at most {} filter chains per listener (found {})",
                defaults::MAX_FILTER_CHAINS,
                l.filter_chains.len()
            ),
        );
    }
    let ctx = ChainCtx {
        listener: &l.name,
        clusters,
        trace_rate,
        base,
    };
    let mut chains = Vec::new();
    let mut matched = false;
    let mut all_built = true;
    for (chain_path, chain) in enumerate(&l.filter_chains, &chains_path, problems) {
        let Some(chain) = &chain.value else {
            all_built = false;
            continue;
        };
        let m = chains::chain_match(chain.filter_chain_match.as_ref(), &chain_path, problems);
        matched |= chain.filter_chain_match.is_some();
        // Equal matches (normalised: sorted, lower-cased) would always pick the first.
        let same = chains.iter().find(|(other, _, _)| *other == m);
        if let Some((_, _, other_path)) = same {
            let what = chains::describe(&m);
            problems.value(
                &chain_path.key("filter_chain_match"),
                format!(
                    "filter_chain_match ({what}) is the same as {other_path}'s: a connection \
                     could not tell them apart"
                ),
            );
        }
        chains.push((
            m,
            network_filter(chain, &chain_path, &ctx, problems),
            chain_path,
        ));
    }
    let default = match &l.default_filter_chain {
        None => None,
        Some(item) => {
            let at = path.key("default_filter_chain");
            for problem in &item.problems {
                problems.push(problem.under(&at));
            }
            match &item.value {
                Some(chain) => {
                    if chain.filter_chain_match.is_some() {
                        problems.key(
                            &at.key("filter_chain_match"),
                            "the default filter chain has no filter_chain_match (it serves \
                             what no other chain matches)",
                        );
                    }
                    network_filter(chain, &at, &ctx, problems)
                }
                None => None,
            }
        }
    };
    let filters = chains::listener_filters(l, path, problems);
    let (proxy_protocol, tls_inspector) = (filters.proxy_protocol, filters.tls_inspector);
    let timeout = problems.or(
        l.listener_filters_timeout.map(|d| d.0),
        &path.key("listener_filters_timeout"),
        defaults::LISTENER_FILTERS_TIMEOUT,
    );
    let mut networks = Vec::with_capacity(chains.len());
    for (m, n, _) in chains {
        match n {
            Some(n) => networks.push(FilterChain {
                matcher: m,
                network: n,
            }),
            None => all_built = false,
        }
    }
    let network = networks
        .first()
        .map(|c| c.network.clone())
        .or_else(|| default.clone());
    let plain = networks.len() == 1
        && l.continue_on_listener_filters_timeout.is_none()
        && !matched
        && default.is_none()
        && !proxy_protocol
        && !tls_inspector
        && all_built;
    // Clients of HTTP speak first; a TCP proxy's protocol may not.
    let all_http = networks
        .iter()
        .map(|c| &c.network)
        .chain(default.as_ref())
        .all(|n| matches!(n, NetworkFilter::Http(_)));
    let defer_accept = problems.or(l.defer_accept, &path.key("defer_accept"), all_http);
    // Validated on every listener; used where connections can close before a chain (`select`).
    let own_logs = access_log::access_logs(&l.access_log, &path.key("access_log"), problems);
    let select = (!plain).then(|| {
        Box::new(ChainSelect {
            proxy_protocol,
            allow_without_proxy_protocol: filters.allow_without_proxy_protocol,
            tls_inspector,
            timeout: (!timeout.is_zero()).then_some(timeout),
            continue_on_timeout: problems.or(
                l.continue_on_listener_filters_timeout,
                &path.key("continue_on_listener_filters_timeout"),
                false,
            ),
            chains: networks,
            default,
            access_log: own_logs,
        })
    });
    Some(Listener {
        name: l.name.clone(),
        address: address?,
        backlog,
        defer_accept,
        exact_balance,
        network: network?,
        select,
    })
}

/// What building a chain's network filter needs from its listener.
struct ChainCtx<'a> {
    listener: &'a str,
    clusters: &'a ClusterNames,
    trace_rate: Option<f64>,
    /// The config file's directory: relative file names (certificates) are read from there.
    base: Option<&'a std::path::Path>,
}

/// A filter chain's one filter, the terminal network filter (the HTTP connection manager or
/// the TCP proxy).
fn network_filter(
    chain: &FilterChainSpec,
    chain_path: &DocPath,
    ctx: &ChainCtx<'_>,
    problems: &mut Problems,
) -> Option<NetworkFilter> {
    let (clusters, trace_rate) = (ctx.clusters, ctx.trace_rate);
    let mut network = None;
    let filters_path = chain_path.key("filters");
    // Both terminal filters in one chain: said once, at the later one, instead of the count.
    let first = |want: fn(&FilterSpec) -> bool| {
        chain
            .filters
            .iter()
            .position(|f| f.value.as_ref().is_some_and(want))
    };
    let hcm = first(|f| matches!(f, FilterSpec::HttpConnectionManager(_)));
    let tcp = first(|f| matches!(f, FilterSpec::TcpProxy(_)));
    if let (Some(h), Some(t)) = (hcm, tcp) {
        let (at, name) = if h > t {
            (h, "http_connection_manager")
        } else {
            (t, "tcp_proxy")
        };
        problems.key(
            &filters_path.index(at).key(name),
            "`http_connection_manager` and `tcp_proxy` cannot share a filter chain: each \
             is a terminal filter that owns the connection (give each its own filter chain or listener)",
        );
    } else if chain.filters.len() != 1 {
        problems.value(
            &filters_path,
            format!(
                "exactly one filter (`http_connection_manager` or `tcp_proxy`) is supported \
                 for now (found {})",
                chain.filters.len()
            ),
        );
    }
    for (filter_path, filter) in enumerate(&chain.filters, &filters_path, problems) {
        let built = match &filter.value {
            None => None,
            Some(FilterSpec::Unsupported(name)) => {
                problems.key(
                    &filter_path.key(name),
                    format!(
                        "filter `{name}` is not supported yet (only \
                         `http_connection_manager` and `tcp_proxy` are)"
                    ),
                );
                None
            }
            Some(FilterSpec::HttpConnectionManager(hcm)) => {
                let hcm_path = filter_path.key("http_connection_manager");
                let built = http::conn_manager(
                    hcm,
                    ctx.listener,
                    &hcm_path,
                    clusters,
                    trace_rate,
                    problems,
                );
                Some(NetworkFilter::Http(built))
            }
            Some(FilterSpec::TcpProxy(tcp)) => {
                let tcp_path = filter_path.key("tcp_proxy");
                tcp_proxy::tcp_proxy(tcp, ctx.listener, &tcp_path, clusters, problems)
                    .map(NetworkFilter::TcpProxy)
            }
        };
        if network.is_none() {
            network = built;
        }
    }
    let tls = chain.tls.as_ref().and_then(|t| {
        let http = match &network {
            Some(NetworkFilter::Http(h)) => Some(h.codec),
            _ => None,
        };
        tls::downstream(t, chain, &chain_path.key("tls"), http, ctx.base, problems)
    });
    match &mut network {
        Some(NetworkFilter::Http(h)) => h.tls = tls,
        Some(NetworkFilter::TcpProxy(t)) => t.tls = tls,
        None => {}
    }
    network
}

/// Parses `IP:port` (`[v6]:port` for IPv6). Host names are refused with a hint.
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let host = match text.rsplit_once(':') {
        Some((host, _port)) => host,
        None => {
            return Err(format!(
                "invalid address {text:?}: expected IP:port, e.g. \"127.0.0.1:8080\""
            ))
        }
    };
    let is_name = !host.starts_with('[')
        && host.parse::<std::net::IpAddr>().is_err()
        && host.bytes().any(|b| b.is_ascii_alphabetic());
    if is_name {
        return Err(format!(
            "invalid address {text:?}: expected IP:port; host names such as {host:?} are not \
             resolved (use 127.0.0.1 or [::1] for localhost)"
        ));
    }
    Err(format!("invalid address {text:?}"))
}

/// True for bytes that may go on the wire unescaped in a header value or a request-target:
/// printable ASCII, no space.
pub(super) fn wire_safe(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// This machine's host name (the default `node.id`).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "ringway".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `xds:`: the control plane's cluster must be one of the file's own.
fn xds(
    x: &super::schema::XdsSpec,
    at: &DocPath,
    names: &ClusterNames,
    problems: &mut Problems,
) -> Option<Xds> {
    let delta = match x.api_type.as_deref() {
        None => {
            problems.filled(&at.key("api_type"), &"GRPC");
            false
        }
        Some("GRPC" | "grpc") => false,
        Some("DELTA_GRPC" | "delta_grpc") => true,
        Some(other) => {
            problems.value(
                &at.key("api_type"),
                format!("unknown api_type {other:?}: expected GRPC or DELTA_GRPC"),
            );
            false
        }
    };
    let lds = problems.or(x.lds, &at.key("lds"), true);
    let cds = problems.or(x.cds, &at.key("cds"), true);
    let initial_fetch_timeout = problems.or(
        x.initial_fetch_timeout.map(|d| d.0),
        &at.key("initial_fetch_timeout"),
        defaults::XDS_INITIAL_FETCH_TIMEOUT,
    );
    let cluster = match names.ids.get(&x.cluster) {
        Some(&id) => id,
        None => {
            if !names.broken.contains(&x.cluster) {
                problems.value(
                    &at.key("cluster"),
                    format!(
                        "unknown cluster {:?}: the control plane's cluster must be defined under \
                         `clusters` in the file",
                        x.cluster
                    ),
                );
            }
            return None;
        }
    };
    Some(Xds {
        cluster,
        cluster_name: x.cluster.clone(),
        delta,
        lds,
        cds,
        initial_fetch_timeout,
    })
}
