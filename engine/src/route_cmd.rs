//! `ringway route -c FILE --host H --path P [--method M] [--header K:V]... [--listener NAME |
//! --port N] [--sni NAME]`: which listener, filter chain, virtual host, route, cluster and HTTP
//! filters a request would take, decided by the same code the workers run (`listener::select`
//! for the chain, `router::RouteTable` for the virtual host and route), printed for a person.
//! Exit codes: 0 a route matched, 1 the config is invalid, 3 no chain, virtual host or route.

use std::{fmt::Write as _, net::IpAddr, path::Path, process::ExitCode};

use ringway_filters::HeaderMap;

use crate::{
    config::{
        self, Config, HttpConnManager, Listener, NetworkFilter, PathMatch, PerFilter,
        PerFilterAction, RouteAction, TransportProtocol,
    },
    listener::select::{select, Seen},
    router::RouteTable,
};

/// What the request looks like.
#[derive(Debug, Default)]
pub struct Probe {
    pub host: String,
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub listener: Option<String>,
    pub port: Option<u16>,
    pub sni: Option<String>,
}

/// Run the command: print the answer, return the exit code.
pub fn run(path: &Path, probe: &Probe) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::from(1);
        }
    };
    match explain(&cfg, probe) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(text) => {
            print!("{text}");
            ExitCode::from(3)
        }
    }
}

/// The explanation, `Err` when nothing matched (the text says what was tried).
pub fn explain(cfg: &Config, probe: &Probe) -> Result<String, String> {
    let mut out = String::new();
    let listener: Option<&Listener> = match (&probe.listener, probe.port) {
        (Some(name), _) => cfg.listeners.iter().find(|l| &l.name == name),
        (None, Some(port)) => cfg.listeners.iter().find(|l| l.address.port() == port),
        (None, None) => cfg
            .listeners
            .iter()
            .find(|l| l.http().is_some() || l.select.is_some()),
    };
    let Some(l) = listener else {
        let names: Vec<&str> = cfg.listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(format!(
            "no listener {} (listeners: {})\n",
            probe
                .listener
                .clone()
                .or(probe.port.map(|p| format!("on port {p}")))
                .unwrap_or_default(),
            names.join(", ")
        ));
    };
    let _ = writeln!(out, "listener   {} ({})", l.name, l.address);
    // The chain, as a connection to the listener's port (with this SNI) would get it.
    let network = match &l.select {
        None => &l.network,
        Some(sel) => {
            let matches: Vec<_> = sel.chains.iter().map(|c| c.matcher.clone()).collect();
            let seen = Seen {
                dst_port: probe.port.unwrap_or(l.address.port()),
                dst_ip: Some(l.address.ip()),
                src: IpAddr::from([127, 0, 0, 1]),
                src_port: 40000,
                server_name: probe.sni.as_deref(),
                transport: if probe.sni.is_some() {
                    TransportProtocol::Tls
                } else {
                    TransportProtocol::RawBuffer
                },
                alpn: None,
            };
            match select(&matches, &seen) {
                Some(i) => {
                    let _ = writeln!(out, "chain      filter_chains[{i}]");
                    &sel.chains[i].network
                }
                None => match &sel.default {
                    Some(d) => {
                        let _ = writeln!(out, "chain      default_filter_chain");
                        d
                    }
                    None => {
                        out.push_str(
                            "no filter chain matches (and there is no default_filter_chain)\n",
                        );
                        return Err(out);
                    }
                },
            }
        }
    };
    let hcm: &HttpConnManager = match network {
        NetworkFilter::Http(h) => h,
        NetworkFilter::TcpProxy(t) => {
            let _ = writeln!(
                out,
                "tcp_proxy  to cluster {}",
                cluster_name(cfg, t.cluster)
            );
            return Ok(out);
        }
    };
    let table = RouteTable::new(hcm);
    let mut headers = HeaderMap::default();
    for (k, v) in &probe.headers {
        headers.append(k.as_str(), v.as_str());
    }
    let Some(vh) = table.virtual_host(probe.host.as_bytes()) else {
        let _ = writeln!(
            out,
            "no virtual host for Host {:?}; virtual hosts:",
            probe.host
        );
        for vh in table.virtual_hosts() {
            let _ = writeln!(out, "  {}: {}", vh.name, vh.domains.join(", "));
        }
        return Err(out);
    };
    let _ = writeln!(
        out,
        "vhost      {} (domains: {})",
        vh.name,
        vh.domains.join(", ")
    );
    let route = table.find(
        probe.host.as_bytes(),
        probe.path.as_bytes(),
        probe.method.as_bytes(),
        &headers,
    );
    let Some(route) = route else {
        let _ = writeln!(
            out,
            "no route of {} matches {} {} (the proxy answers 404)",
            vh.name, probe.method, probe.path
        );
        return Err(out);
    };
    let index = vh.routes.iter().position(|r| r.id == route.id).unwrap_or(0);
    let matcher = match &route.matcher.path {
        PathMatch::Exact(p) => format!("path {p:?}"),
        PathMatch::Prefix(p) => format!("prefix {p:?}"),
        PathMatch::Regex(r) => format!("regex {:?}", r.as_str()),
    };
    let mut extra = String::new();
    if !route.matcher.methods.is_empty() {
        let _ = write!(extra, ", methods {}", route.matcher.methods.join("|"));
    }
    for h in &route.matcher.headers {
        let _ = write!(
            extra,
            ", header {}{}",
            if h.invert { "!" } else { "" },
            h.name
        );
    }
    let name = if route.name.is_empty() {
        String::new()
    } else {
        format!(" {:?}", route.name)
    };
    let _ = writeln!(out, "route      routes[{index}]{name}: {matcher}{extra}");
    match &route.action {
        RouteAction::Forward(f) => {
            match &f.weighted {
                Some(w) => {
                    let split: Vec<String> = w
                        .clusters
                        .iter()
                        .map(|(_, n, weight)| format!("{n} ({weight}/{})", w.total))
                        .collect();
                    let _ = writeln!(out, "clusters   {}", split.join(", "));
                }
                None => describe_cluster(&mut out, cfg, f.cluster),
            }
            let timeout = f.timeout.map_or("none".to_string(), |t| format!("{t:?}"));
            let _ = writeln!(out, "timeout    {timeout}");
            if let Some(r) = &f.retry {
                let _ = writeln!(
                    out,
                    "retries    {} (per try timeout {:?})",
                    r.num_retries, r.per_try_timeout
                );
            }
            for m in &f.mirrors {
                let _ = writeln!(out, "mirror     to {}", cluster_name(cfg, m.cluster));
            }
        }
        RouteAction::DirectResponse { status, body } => {
            let _ = writeln!(out, "direct     {status} ({} body bytes)", body.len());
        }
        RouteAction::Redirect(_) => {
            let _ = writeln!(out, "redirect   (answered by the proxy)");
        }
    }
    // The HTTP filters, with the virtual host's and the route's overrides (the route's win).
    if !hcm.http_filters.is_empty() {
        let _ = writeln!(out, "filters");
        for (i, f) in hcm.http_filters.iter().enumerate() {
            let state = match over(&route.per_filter, i).or_else(|| over(&vh.per_filter, i)) {
                Some(PerFilterAction::Disabled) => "disabled for this route",
                Some(PerFilterAction::Config(_)) => "runs, with this route's own config",
                None if f.disabled => "disabled (not enabled for this route)",
                None => "runs",
            };
            let _ = writeln!(out, "  {}: {state}", f.name);
        }
        let _ = writeln!(out, "  router (last)");
    }
    Ok(out)
}

/// A route's or virtual host's override of filter `i`.
fn over(list: &[PerFilter], i: usize) -> Option<&PerFilterAction> {
    list.iter().find(|p| p.filter == i).map(|p| &p.action)
}

fn cluster_name(cfg: &Config, id: config::ClusterId) -> &str {
    cfg.clusters.get(id).map_or("?", |c| c.name.as_str())
}

fn describe_cluster(out: &mut String, cfg: &Config, id: config::ClusterId) {
    let Some(c) = cfg.clusters.get(id) else {
        return;
    };
    let endpoints: Vec<String> = match &c.dns {
        Some(d) => d
            .hosts
            .iter()
            .map(|h| format!("{}:{} (DNS)", h.host, h.port))
            .collect(),
        None => c.endpoints.iter().map(|e| e.address.to_string()).collect(),
    };
    let _ = writeln!(
        out,
        "cluster    {} ({:?}): {}",
        c.name,
        c.lb_policy,
        endpoints.join(", ")
    );
}
