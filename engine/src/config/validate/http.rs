//! Validation of an HTTP connection manager: its limits and timeouts, its virtual hosts (domain
//! forms, uniqueness) and their routes (one path matcher, header and method matchers, regexes
//! that compile, exactly one action, clusters that exist).

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use regex::Regex;

use super::{wire_safe, ClusterNames, Problems};
use crate::config::{
    defaults,
    model::{
        CodecType, ForwardAction, HeaderMatchKind, HeaderMatcher, Http2Options, HttpConnManager,
        PathMatch, RedirectAction, Route, RouteAction, RouteMatch, VirtualHost,
    },
    path::DocPath,
    schema::{
        DirectResponseSpec, Dur, ForwardSpec, HcmSpec, HeaderMatchSpec, Http2OptionsSpec,
        MatchSpec, RedirectSpec, RouteSpec, VirtualHostSpec,
    },
};

pub(super) fn conn_manager(
    hcm: &HcmSpec,
    listener_name: &str,
    path: &DocPath,
    clusters: &ClusterNames,
    trace_rate: Option<f64>,
    problems: &mut Problems,
) -> HttpConnManager {
    let stat_prefix = match &hcm.stat_prefix {
        Some(p) if p.is_empty() => {
            problems.value(&path.key("stat_prefix"), "stat_prefix must not be empty");
            p.clone()
        }
        Some(p) => p.clone(),
        None => {
            problems.filled(&path.key("stat_prefix"), &listener_name);
            listener_name.to_owned()
        }
    };
    let kb = problems.or(
        hcm.max_request_headers_kb,
        &path.key("max_request_headers_kb"),
        defaults::MAX_REQUEST_HEADERS_KB,
    );
    if !defaults::MAX_REQUEST_HEADERS_KB_RANGE.contains(&kb) {
        problems.value(
            &path.key("max_request_headers_kb"),
            format!(
                "max_request_headers_kb must be {}..={} (found {kb})",
                defaults::MAX_REQUEST_HEADERS_KB_RANGE.start(),
                defaults::MAX_REQUEST_HEADERS_KB_RANGE.end()
            ),
        );
    }
    let max_request_headers_bytes = kb as usize * 1024;
    let timeout = |value: Option<Dur>, key: &str, default: Duration, p: &mut Problems| {
        let d = p.or(value.map(|d| d.0), &path.key(key), default);
        if d.is_zero() {
            p.value(&path.key(key), format!("{key} must be more than zero"));
        }
        d
    };
    let request_headers_timeout = timeout(
        hcm.request_headers_timeout,
        "request_headers_timeout",
        defaults::REQUEST_HEADERS_TIMEOUT,
        problems,
    );
    let idle_timeout = timeout(
        hcm.idle_timeout,
        "idle_timeout",
        defaults::IDLE_TIMEOUT,
        problems,
    );
    let request_body_timeout = timeout(
        hcm.request_body_timeout,
        "request_body_timeout",
        defaults::REQUEST_BODY_TIMEOUT,
        problems,
    );

    let vhosts_path = path.key("virtual_hosts");
    if hcm.virtual_hosts.is_empty() {
        problems.value(&vhosts_path, "at least one virtual host is required");
    }
    let http_filters =
        super::filters::http_filters(&hcm.http_filters, &path.key("http_filters"), problems);
    let mut route_ids = 0usize;
    let mut virtual_hosts = Vec::new();
    let mut vhost_names: HashMap<&str, DocPath> = HashMap::new();
    // domain -> name of the virtual host that has it
    let mut domains_seen: HashMap<String, String> = HashMap::new();
    for (vh_path, item) in super::enumerate(&hcm.virtual_hosts, &vhosts_path, problems) {
        let Some(vh) = &item.value else { continue };
        if let Some(first) = vhost_names.get(vh.name.as_str()) {
            problems.value(
                &vh_path.key("name"),
                format!(
                    "duplicate virtual host name {:?} (first defined at {first})",
                    vh.name
                ),
            );
        } else {
            vhost_names.insert(&vh.name, vh_path.clone());
        }
        virtual_hosts.push(virtual_host(
            vh,
            &vh_path,
            &mut domains_seen,
            clusters,
            (&http_filters, &mut route_ids),
            problems,
        ));
    }

    HttpConnManager {
        tls: None,
        stat_prefix,
        virtual_hosts,
        max_request_headers_bytes,
        max_uri_bytes: defaults::MAX_URI_BYTES.min(max_request_headers_bytes),
        request_headers_timeout,
        idle_timeout,
        request_body_timeout,
        stream_idle_timeout: Some(problems.or(
            hcm.stream_idle_timeout.map(|d| d.0),
            &path.key("stream_idle_timeout"),
            defaults::STREAM_IDLE_TIMEOUT,
        ))
        .filter(|d| !d.is_zero()),
        generate_request_id: problems.or(
            hcm.generate_request_id,
            &path.key("generate_request_id"),
            defaults::GENERATE_REQUEST_ID,
        ),
        access_log: super::access_log::access_logs(
            &hcm.access_log,
            &path.key("access_log"),
            problems,
        ),
        trace_sample_rate: super::tracing::hcm_sample_rate(
            hcm.tracing.as_ref(),
            trace_rate,
            &path.key("tracing"),
            problems,
        ),
        http_filters,
        enable_trailers: enable_trailers(hcm.http_protocol_options.as_ref(), path, problems),
        xfcc: xfcc(hcm, path, problems),
        codec: codec_type(hcm, path, problems),
        http2: {
            http2_settings(
                hcm.http2_protocol_options.as_ref(),
                max_request_headers_bytes as u32,
                &path.key("http2_protocol_options"),
                problems,
            )
        },
    }
}

/// `http_protocol_options.enable_trailers` of a connection manager or a cluster at `path`
/// (default false).
pub(super) fn enable_trailers(
    options: Option<&crate::config::schema::Http1OptionsSpec>,
    path: &DocPath,
    problems: &mut Problems,
) -> bool {
    problems.or(
        options.and_then(|o| o.enable_trailers),
        &path.key("http_protocol_options").key("enable_trailers"),
        false,
    )
}

/// `connection_keepalive`: an interval is required (more than zero); the timeout defaults to 5s.
fn keepalive(
    spec: Option<&Http2OptionsSpec>,
    at: &DocPath,
    problems: &mut Problems,
) -> Option<(Duration, Duration)> {
    let k = spec?.connection_keepalive.as_ref()?;
    let at = at.key("connection_keepalive");
    let interval = match k.interval {
        Some(d) if !d.0.is_zero() => d.0,
        _ => {
            problems.value(
                &at.key("interval"),
                "interval is required and must be more than zero",
            );
            return None;
        }
    };
    let timeout = problems.or(
        k.timeout.map(|d| d.0),
        &at.key("timeout"),
        Duration::from_secs(5),
    );
    if timeout.is_zero() {
        problems.value(&at.key("timeout"), "timeout must be more than zero");
    }
    Some((interval, timeout))
}

/// `codec_type`.
fn codec_type(hcm: &HcmSpec, path: &DocPath, problems: &mut Problems) -> CodecType {
    match hcm.codec_type.as_deref() {
        None => {
            problems.filled(&path.key("codec_type"), &"auto");
            CodecType::Auto
        }
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "auto" => CodecType::Auto,
            "http1" => CodecType::Http1,
            "http2" => CodecType::Http2,
            _ => {
                problems.value(
                    &path.key("codec_type"),
                    format!("codec_type must be auto, http1 or http2 (found {v:?})"),
                );
                CodecType::Auto
            }
        },
    }
}

/// `http2_protocol_options` (a connection manager's or a cluster's), each setting checked
/// against what HTTP/2 allows; `max_headers`: the header list limit when none is given.
pub(super) fn http2_settings(
    spec: Option<&Http2OptionsSpec>,
    max_headers: u32,
    at: &DocPath,
    problems: &mut Problems,
) -> Http2Options {
    let mut get =
        |v: Option<u32>, key: &str, default: u32, range: std::ops::RangeInclusive<u32>| {
            let n = problems.or(v, &at.key(key), default);
            if !range.contains(&n) {
                problems.value(
                    &at.key(key),
                    format!(
                        "{key} must be {}..={} (found {n})",
                        range.start(),
                        range.end()
                    ),
                );
            }
            n
        };
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let mut o = Http2Options {
        max_concurrent_streams: get(
            spec.and_then(|s| s.max_concurrent_streams),
            "max_concurrent_streams",
            defaults::H2_MAX_CONCURRENT_STREAMS,
            1..=MAX_WINDOW,
        ),
        initial_stream_window_size: get(
            spec.and_then(|s| s.initial_stream_window_size),
            "initial_stream_window_size",
            defaults::H2_STREAM_WINDOW,
            65535..=MAX_WINDOW,
        ),
        initial_connection_window_size: get(
            spec.and_then(|s| s.initial_connection_window_size),
            "initial_connection_window_size",
            defaults::H2_CONNECTION_WINDOW,
            65535..=MAX_WINDOW,
        ),
        // Defaults to the head limit (checked with it).
        max_header_list_size: match spec.and_then(|s| s.max_header_list_size) {
            Some(n) => get(Some(n), "max_header_list_size", n, 1..=u32::MAX),
            None => {
                problems.filled(&at.key("max_header_list_size"), &max_headers);
                max_headers
            }
        },
        keepalive: None,
    };
    o.keepalive = keepalive(spec, at, problems);
    o
}

/// `forward_client_cert_details` and `set_current_client_cert_details`.
fn xfcc(hcm: &HcmSpec, path: &DocPath, problems: &mut Problems) -> crate::config::model::Xfcc {
    use crate::config::model::{Xfcc, XfccMode};
    let mode = match hcm.forward_client_cert_details.as_deref() {
        None => {
            problems.filled(&path.key("forward_client_cert_details"), &"SANITIZE");
            XfccMode::Sanitize
        }
        Some("SANITIZE") => XfccMode::Sanitize,
        Some("FORWARD_ONLY") => XfccMode::ForwardOnly,
        Some("APPEND_FORWARD") => XfccMode::AppendForward,
        Some("SANITIZE_SET") => XfccMode::SanitizeSet,
        Some("ALWAYS_FORWARD_ONLY") => XfccMode::AlwaysForwardOnly,
        Some(other) => {
            problems.value(
                &path.key("forward_client_cert_details"),
                format!(
                    "unknown value {other:?}: expected SANITIZE, FORWARD_ONLY, APPEND_FORWARD, \
                     SANITIZE_SET or ALWAYS_FORWARD_ONLY"
                ),
            );
            XfccMode::Sanitize
        }
    };
    let set = hcm.set_current_client_cert_details.as_ref();
    if set.is_some() && !matches!(mode, XfccMode::AppendForward | XfccMode::SanitizeSet) {
        problems.value(
            &path.key("set_current_client_cert_details"),
            "set_current_client_cert_details is used only with forward_client_cert_details \
             APPEND_FORWARD or SANITIZE_SET",
        );
    }
    let on = |f: fn(&crate::config::schema::ClientCertDetailsSpec) -> Option<bool>| {
        set.and_then(f).unwrap_or(false)
    };
    Xfcc {
        mode,
        subject: on(|s| s.subject),
        cert: on(|s| s.cert),
        chain: on(|s| s.chain),
        dns: on(|s| s.dns),
        uri: on(|s| s.uri),
    }
}

fn virtual_host(
    vh: &VirtualHostSpec,
    path: &DocPath,
    domains_seen: &mut HashMap<String, String>,
    clusters: &ClusterNames,
    (filters, route_ids): (&[crate::config::model::HttpFilter], &mut usize),
    problems: &mut Problems,
) -> VirtualHost {
    if vh.name.is_empty() {
        problems.value(&path.key("name"), "virtual host name must not be empty");
    }
    let domains_path = path.key("domains");
    if vh.domains.is_empty() {
        problems.value(&domains_path, "a virtual host needs at least one domain");
    }
    let mut domains = Vec::with_capacity(vh.domains.len());
    for (i, d) in vh.domains.iter().enumerate() {
        let d_path = domains_path.index(i);
        match domain(d) {
            Err(message) => problems.value(&d_path, message),
            Ok(d) => {
                if let Some(first) = domains_seen.get(&d) {
                    problems.value(
                        &d_path,
                        format!("duplicate domain {d:?} (also in virtual host {first:?})"),
                    );
                } else {
                    domains_seen.insert(d.clone(), vh.name.clone());
                }
                domains.push(d);
            }
        }
    }
    let routes_path = path.key("routes");
    let attempt_count = vh.include_request_attempt_count.unwrap_or(false);
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (r_path, item) in super::enumerate(&vh.routes, &routes_path, problems) {
        let Some(r) = &item.value else { continue };
        if let Some(mut route) = route(r, &r_path, clusters, attempt_count, problems) {
            route.id = *route_ids;
            *route_ids += 1;
            route.per_filter = super::filters::per_filter(
                &r.per_filter_config,
                filters,
                &r_path.key("per_filter_config"),
                problems,
            );
            route.headers = super::filters::header_edits(
                (&r.request_headers_to_add, &r.request_headers_to_remove),
                (&r.response_headers_to_add, &r.response_headers_to_remove),
                &r_path,
                problems,
            );
            routes.push(route);
        }
    }
    VirtualHost {
        name: vh.name.clone(),
        domains,
        routes,
        per_filter: super::filters::per_filter(
            &vh.per_filter_config,
            filters,
            &path.key("per_filter_config"),
            problems,
        ),
        headers: super::filters::header_edits(
            (&vh.request_headers_to_add, &vh.request_headers_to_remove),
            (&vh.response_headers_to_add, &vh.response_headers_to_remove),
            path,
            problems,
        ),
    }
}

/// Lower-cases a domain and checks its form: `a.com`, `*.a.com`, `a.*`, `*`, or an IP literal
/// (`10.0.0.1`, `[::1]`). No port: hosts are matched with the port removed.
fn domain(raw: &str) -> Result<String, String> {
    let d = raw.to_ascii_lowercase();
    if d.is_empty() {
        return Err("domain must not be empty".to_owned());
    }
    if d == "*" {
        return Ok(d);
    }
    let stars = d.matches('*').count();
    let name = if stars == 0 {
        d.as_str()
    } else if stars == 1 && d.len() > 2 && d.starts_with("*.") {
        &d[2..]
    } else if stars == 1 && d.len() > 2 && d.ends_with(".*") {
        &d[..d.len() - 2]
    } else {
        return Err(format!(
            "invalid domain {raw:?}: a wildcard is only allowed as \"*\", \"*.suffix\" or \"prefix.*\""
        ));
    };
    if let Some(inner) = name.strip_prefix('[') {
        let ok = stars == 0
            && inner
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        return match ok {
            true => Ok(d),
            false => Err(format!(
                "invalid domain {raw:?}: expected an IPv6 literal like \"[::1]\""
            )),
        };
    }
    if name.contains(':') {
        return Err(format!(
            "invalid domain {raw:?}: remove the port (hosts are matched without it)"
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok || name.starts_with('.') || name.ends_with('.') {
        return Err(format!("invalid domain {raw:?}"));
    }
    Ok(d)
}

/// Report at `path` unless exactly one of `options` (set?, key) is set:
/// `{what} needs exactly one of a, b, c (found none | x and y)`.
fn exactly_one(what: &str, options: &[(bool, &str)], path: &DocPath, problems: &mut Problems) {
    let given: Vec<&str> = options
        .iter()
        .filter_map(|&(set, name)| set.then_some(name))
        .collect();
    if given.len() == 1 {
        return;
    }
    let all: Vec<&str> = options.iter().map(|&(_, name)| name).collect();
    let found = if given.is_empty() {
        "none".to_owned()
    } else {
        given.join(" and ")
    };
    problems.value(
        path,
        format!(
            "{what} needs exactly one of {} (found {found})",
            all.join(", ")
        ),
    );
}

fn route(
    r: &RouteSpec,
    path: &DocPath,
    clusters: &ClusterNames,
    attempt_count: bool,
    problems: &mut Problems,
) -> Option<Route> {
    let matcher = route_match(&r.matcher, &path.key("match"), problems);

    // Each action given is checked, even when there are too many, to report everything at once.
    let mut actions = Vec::with_capacity(1);
    if let Some(f) = &r.route {
        actions.push(forward(
            f,
            &path.key("route"),
            clusters,
            attempt_count,
            problems,
        ));
    }
    if let Some(d) = &r.direct_response {
        actions.push(direct_response(d, &path.key("direct_response"), problems));
    }
    if let Some(rd) = &r.redirect {
        actions.push(redirect(rd, &path.key("redirect"), problems));
    }
    exactly_one(
        "a route",
        &[
            (r.route.is_some(), "route"),
            (r.direct_response.is_some(), "direct_response"),
            (r.redirect.is_some(), "redirect"),
        ],
        path,
        problems,
    );
    let action = match actions.len() {
        1 => actions.pop().flatten(),
        _ => None,
    };
    let matcher = matcher?;
    Some(Route {
        id: 0,
        name: r.name.clone().unwrap_or_default(),
        http_route: http_route(&matcher.path),
        matcher,
        action: action?,
        per_filter: Vec::new(),
        headers: Default::default(),
    })
}

/// The route as tracing names it (OpenTelemetry's `http.route`): the exact path, the prefix
/// followed by `*`, or the regex.
fn http_route(m: &PathMatch) -> std::sync::Arc<str> {
    match m {
        PathMatch::Exact(p) => p.as_str().into(),
        PathMatch::Prefix(p) => format!("{p}*").into(),
        PathMatch::Regex(r) => {
            let s = r.as_str();
            // Compiled anchored as `^(?:re)$`: name it by what the user wrote.
            s.strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(s)
                .into()
        }
    }
}

fn route_match(m: &MatchSpec, path: &DocPath, problems: &mut Problems) -> Option<RouteMatch> {
    let path_match = match (&m.path, &m.prefix, &m.regex) {
        (Some(p), None, None) => url_path(p, &path.key("path"), problems).map(PathMatch::Exact),
        // Envoy's `prefix: ""` is the idiom for "every path": it matches every request.
        (None, Some(p), None) if p.is_empty() => Some(PathMatch::Prefix(String::new())),
        (None, Some(p), None) => url_path(p, &path.key("prefix"), problems).map(PathMatch::Prefix),
        (None, None, Some(re)) => regex(re, &path.key("regex"), problems).map(PathMatch::Regex),
        _ => {
            let kinds = [
                (m.path.is_some(), "path"),
                (m.prefix.is_some(), "prefix"),
                (m.regex.is_some(), "regex"),
            ];
            exactly_one("a match", &kinds, path, problems);
            None
        }
    };

    let headers_path = path.key("headers");
    let mut headers = Vec::with_capacity(m.headers.len());
    for (h_path, item) in super::enumerate(&m.headers, &headers_path, problems) {
        let Some(h) = &item.value else { continue };
        if let Some(h) = header_matcher(h, &h_path, problems) {
            headers.push(h);
        }
    }

    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, method) in m.methods.iter().enumerate() {
        if is_token(method) {
            methods.push(method.to_ascii_uppercase());
        } else {
            problems.value(
                &path.key("methods").index(i),
                format!("invalid method {method:?}"),
            );
        }
    }

    Some(RouteMatch {
        path: path_match?,
        headers,
        methods,
    })
}

/// A path to match or produce: starts with `/`, printable ASCII.
fn url_path(p: &str, path: &DocPath, problems: &mut Problems) -> Option<String> {
    if !p.starts_with('/') || !wire_safe(p) {
        problems.value(
            path,
            format!(
                "invalid path {p:?}: must start with '/' and be printable ASCII without spaces"
            ),
        );
        return None;
    }
    Some(p.to_owned())
}

/// Compiles `re` anchored at both ends (it must match the whole path or value).
fn regex(re: &str, path: &DocPath, problems: &mut Problems) -> Option<Regex> {
    // Check the pattern alone first so error messages quote what the user wrote.
    if let Err(e) = Regex::new(re) {
        problems.value(path, format!("invalid regex {re:?}: {}", regex_error(&e)));
        return None;
    }
    match Regex::new(&format!("^(?:{re})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.value(path, format!("invalid regex {re:?}: {}", regex_error(&e)));
            None
        }
    }
}

/// The one-line reason of a regex error (the crate's message spans several lines).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"))
        .to_owned()
}

fn header_matcher(
    h: &HeaderMatchSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<HeaderMatcher> {
    let name_ok = is_token(&h.name);
    if !name_ok {
        problems.value(
            &path.key("name"),
            format!("invalid header name {:?}", h.name),
        );
    }
    let kind = match (&h.exact, &h.prefix, &h.regex, h.present) {
        (Some(v), None, None, None) => Some(HeaderMatchKind::Exact(v.clone())),
        (None, Some(v), None, None) => Some(HeaderMatchKind::Prefix(v.clone())),
        (None, None, Some(re), None) => {
            regex(re, &path.key("regex"), problems).map(HeaderMatchKind::Regex)
        }
        (None, None, None, Some(true)) => Some(HeaderMatchKind::Present),
        (None, None, None, Some(false)) => {
            problems.value(
                &path.key("present"),
                "present must be true (to match a missing header, use present: true with invert: true)",
            );
            None
        }
        _ => {
            let kinds = [
                (h.exact.is_some(), "exact"),
                (h.prefix.is_some(), "prefix"),
                (h.regex.is_some(), "regex"),
                (h.present.is_some(), "present"),
            ];
            exactly_one("a header matcher", &kinds, path, problems);
            None
        }
    };
    if !name_ok {
        return None;
    }
    Some(HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        kind: kind?,
        invert: h.invert.unwrap_or(false),
    })
}

fn forward(
    f: &ForwardSpec,
    path: &DocPath,
    clusters: &ClusterNames,
    attempt_count: bool,
    problems: &mut Problems,
) -> Option<RouteAction> {
    let weighted = f.weighted_clusters.as_ref().map(|w| {
        super::route_policy::weighted(w, &path.key("weighted_clusters"), clusters, problems)
    });
    let (cluster, cluster_name) = match (&f.cluster, &weighted) {
        (Some(name), None) => (
            super::route_policy::cluster_id(name, &path.key("cluster"), clusters, problems),
            name.clone(),
        ),
        (None, Some(w)) => {
            let first = w.as_ref().and_then(|w| w.clusters.first());
            (
                first.map(|c| c.0),
                first.map(|c| c.1.clone()).unwrap_or_default(),
            )
        }
        _ => {
            problems.value(
                path,
                "a route needs exactly one of `cluster`, `weighted_clusters`",
            );
            (None, String::new())
        }
    };
    let timeout = problems.or(
        f.timeout.map(|d| d.0),
        &path.key("timeout"),
        defaults::ROUTE_TIMEOUT,
    );
    let prefix_rewrite = f
        .prefix_rewrite
        .as_ref()
        .map(|p| url_path(p, &path.key("prefix_rewrite"), problems));
    let host_rewrite = f
        .host_rewrite
        .as_ref()
        .map(|h| host(h, &path.key("host_rewrite"), problems));
    let retry = f.retry_policy.as_ref().map(|r| {
        super::route_policy::retry_policy(r, &path.key("retry_policy"), problems, |h, at, p| {
            header_matcher(h, at, p)
        })
    });
    let mirrors = super::route_policy::mirrors(
        &f.request_mirror_policies,
        &path.key("request_mirror_policies"),
        clusters,
        problems,
    );
    let hash_policy =
        super::route_policy::hash_policy(&f.hash_policy, &path.key("hash_policy"), problems);
    Some(RouteAction::Forward(ForwardAction {
        cluster: cluster?,
        cluster_name,
        timeout: (!timeout.is_zero()).then_some(timeout),
        prefix_rewrite: optional(prefix_rewrite)?,
        host_rewrite: optional(host_rewrite)?,
        max_grpc_timeout: f.max_grpc_timeout.map(|d| d.0).filter(|d| !d.is_zero()),
        weighted: match weighted {
            Some(w) => Some(std::sync::Arc::new(w?)),
            None => None,
        },
        retry: match retry {
            Some(r) => Some(std::sync::Arc::new(r?)),
            None => None,
        },
        mirrors,
        hash_policy,
        attempt_count_header: attempt_count,
    }))
}

/// A host to put on the wire (`host_rewrite`, `host_redirect`): printable ASCII, no `/`.
fn host(h: &str, path: &DocPath, problems: &mut Problems) -> Option<String> {
    if !wire_safe(h) || h.contains('/') {
        problems.value(
            path,
            format!("invalid host {h:?}: expected a host name, optionally with :port"),
        );
        return None;
    }
    Some(h.to_owned())
}

fn direct_response(
    d: &DirectResponseSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<RouteAction> {
    if !defaults::DIRECT_RESPONSE_STATUS_RANGE.contains(&d.status) {
        problems.value(
            &path.key("status"),
            format!("invalid status {}: expected 200..=599", d.status),
        );
        return None;
    }
    Some(RouteAction::DirectResponse {
        status: d.status,
        body: Bytes::from(d.body.clone().unwrap_or_default()),
    })
}

fn redirect(r: &RedirectSpec, path: &DocPath, problems: &mut Problems) -> Option<RouteAction> {
    let https_redirect = r.https_redirect.unwrap_or(false);
    if !https_redirect && r.host_redirect.is_none() && r.path_redirect.is_none() {
        problems.value(
            path,
            "a redirect must change something: set https_redirect, host_redirect or path_redirect",
        );
    }
    let response_code = problems.or(
        r.response_code,
        &path.key("response_code"),
        defaults::REDIRECT_RESPONSE_CODE,
    );
    let code_ok = defaults::REDIRECT_RESPONSE_CODES.contains(&response_code);
    if !code_ok {
        problems.value(
            &path.key("response_code"),
            format!("invalid response_code {response_code}: expected 301, 302, 303, 307 or 308"),
        );
    }
    let host_redirect = r
        .host_redirect
        .as_ref()
        .map(|h| host(h, &path.key("host_redirect"), problems));
    let path_redirect = r
        .path_redirect
        .as_ref()
        .map(|p| url_path(p, &path.key("path_redirect"), problems));
    if !code_ok {
        return None;
    }
    Some(RouteAction::Redirect(RedirectAction {
        https_redirect,
        host_redirect: optional(host_redirect)?,
        path_redirect: optional(path_redirect)?,
        response_code,
    }))
}

/// An optional key's checked value: absent is fine (`Some(None)`), present but invalid is not
/// (`None`, the error already recorded).
fn optional<T>(checked: Option<Option<T>>) -> Option<Option<T>> {
    match checked {
        None => Some(None),
        Some(None) => None,
        Some(Some(v)) => Some(Some(v)),
    }
}

/// An HTTP token (RFC 9110 `tchar`s): header names and methods.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
