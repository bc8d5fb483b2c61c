//! Validation of a cluster's health and resilience settings: `health_checks` (active checks:
//! HTTP, TCP, gRPC; the HTTP request is encoded once here), `outlier_detection` (passive
//! ejection, Envoy's defaults), `common_lb_config.healthy_panic_threshold` and
//! `circuit_breakers`.

use std::{sync::Arc, time::Duration};

use super::Problems;
use crate::config::{
    model::{CircuitBreakers, HealthCheck, HealthCheckKind, OutlierDetection},
    path::DocPath,
    schema::{
        ClusterSpec, HealthCheckSpec, HttpHealthCheckSpec, PayloadSpec, StatusRangeSpec,
        TcpHealthCheckSpec,
    },
};

/// `health_checks`: at most one per cluster here (Envoy allows several; say so plainly).
pub(super) fn health_checks(
    c: &ClusterSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<Arc<HealthCheck>> {
    let list_path = path.key("health_checks");
    let items = super::enumerate(&c.health_checks, &list_path, problems);
    if items.len() > 1 {
        problems.value(
            &list_path.index(1),
            "one health check per cluster is supported (Envoy runs several; ringway does not yet)",
        );
    }
    let (at, item) = items.into_iter().next()?;
    let spec = item.value.as_ref()?;
    one(spec, &c.name, &at, problems).map(Arc::new)
}

fn required(d: Option<Duration>, at: &DocPath, key: &str, problems: &mut Problems) -> Duration {
    match d {
        Some(d) if !d.is_zero() => d,
        Some(_) => {
            problems.value(&at.key(key), format!("{key} must be more than zero"));
            Duration::from_secs(1)
        }
        None => {
            problems.value(at, format!("a health check needs `{key}`"));
            Duration::from_secs(1)
        }
    }
}

fn one(
    h: &HealthCheckSpec,
    cluster: &str,
    at: &DocPath,
    problems: &mut Problems,
) -> Option<HealthCheck> {
    let timeout = required(h.timeout.map(|d| d.0), at, "timeout", problems);
    let interval = required(h.interval.map(|d| d.0), at, "interval", problems);
    let positive = |v: Option<u32>, key: &str, default: u32, problems: &mut Problems| match v {
        Some(0) => {
            problems.value(&at.key(key), format!("{key} must be at least 1"));
            default
        }
        v => problems.or(v, &at.key(key), default),
    };
    let unhealthy_threshold = positive(h.unhealthy_threshold, "unhealthy_threshold", 3, problems);
    let healthy_threshold = positive(h.healthy_threshold, "healthy_threshold", 2, problems);
    let nonzero =
        |d: Option<Duration>, key: &str, default: Duration, problems: &mut Problems| match d {
            Some(d) if d.is_zero() => {
                problems.value(&at.key(key), format!("{key} must be more than zero"));
                default
            }
            d => problems.or(d, &at.key(key), default),
        };
    let unhealthy_interval = nonzero(
        h.unhealthy_interval.map(|d| d.0),
        "unhealthy_interval",
        interval,
        problems,
    );
    let kinds = [
        h.http_health_check.is_some(),
        h.tcp_health_check.is_some(),
        h.grpc_health_check.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        problems.value(
            at,
            "a health check needs exactly one of http_health_check, tcp_health_check, \
             grpc_health_check",
        );
        return None;
    }
    let kind = if let Some(http) = &h.http_health_check {
        http_check(http, cluster, &at.key("http_health_check"), problems)?
    } else if let Some(tcp) = &h.tcp_health_check {
        tcp_check(tcp, &at.key("tcp_health_check"), problems)?
    } else {
        let g = h.grpc_health_check.as_ref()?;
        HealthCheckKind::Grpc {
            service_name: g.service_name.clone().unwrap_or_default(),
            authority: g.authority.clone().unwrap_or_else(|| cluster.to_string()),
        }
    };
    if h.interval_jitter_percent.is_some_and(|p| p > 100) {
        problems.value(
            &at.key("interval_jitter_percent"),
            "interval_jitter_percent must be 0..=100",
        );
    }
    Some(HealthCheck {
        timeout,
        interval,
        interval_jitter: problems.or(
            h.interval_jitter.map(|d| d.0),
            &at.key("interval_jitter"),
            Duration::ZERO,
        ),
        interval_jitter_percent: problems
            .or(
                h.interval_jitter_percent,
                &at.key("interval_jitter_percent"),
                0,
            )
            .min(100),
        initial_jitter: problems.or(
            h.initial_jitter.map(|d| d.0),
            &at.key("initial_jitter"),
            Duration::ZERO,
        ),
        unhealthy_threshold,
        healthy_threshold,
        no_traffic_interval: nonzero(
            h.no_traffic_interval.map(|d| d.0),
            "no_traffic_interval",
            Duration::from_secs(60),
            problems,
        ),
        unhealthy_interval,
        unhealthy_edge_interval: nonzero(
            h.unhealthy_edge_interval.map(|d| d.0),
            "unhealthy_edge_interval",
            unhealthy_interval,
            problems,
        ),
        healthy_edge_interval: nonzero(
            h.healthy_edge_interval.map(|d| d.0),
            "healthy_edge_interval",
            interval,
            problems,
        ),
        reuse_connection: problems.or(h.reuse_connection, &at.key("reuse_connection"), true),
        always_log_failures: problems.or(
            h.always_log_health_check_failures,
            &at.key("always_log_health_check_failures"),
            false,
        ),
        kind,
    })
}

fn ranges(list: &[StatusRangeSpec], at: &DocPath, problems: &mut Problems) -> Vec<(u16, u16)> {
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        if !(100..=599).contains(&r.start) || !(101..=600).contains(&r.end) || r.start >= r.end {
            problems.value(
                &at.index(i),
                format!(
                    "a status range is [start, end) with 100 <= start < end <= 600 (found \
                     start {}, end {})",
                    r.start, r.end
                ),
            );
            continue;
        }
        out.push((r.start as u16, r.end as u16));
    }
    out
}

fn http_check(
    h: &HttpHealthCheckSpec,
    cluster: &str,
    at: &DocPath,
    problems: &mut Problems,
) -> Option<HealthCheckKind> {
    let Some(path) = h.path.as_deref() else {
        problems.value(at, "http_health_check needs a `path`");
        return None;
    };
    if !path.starts_with('/') || !super::wire_safe(path) || path.contains(' ') {
        problems.value(
            &at.key("path"),
            format!("path must start with / and hold no spaces or control bytes (found {path:?})"),
        );
        return None;
    }
    let host = h.host.as_deref().unwrap_or(cluster);
    if !super::wire_safe(host) || host.contains(' ') {
        problems.value(&at.key("host"), format!("invalid host {host:?}"));
        return None;
    }
    let method = h.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    if method != "GET" && method != "HEAD" {
        problems.value(
            &at.key("method"),
            format!("method must be GET or HEAD (found {method:?})"),
        );
        return None;
    }
    let expected = match &h.expected_statuses {
        Some(list) => ranges(list, &at.key("expected_statuses"), problems),
        None => vec![(200, 201)],
    };
    let retriable = h
        .retriable_statuses
        .as_ref()
        .map(|list| ranges(list, &at.key("retriable_statuses"), problems))
        .unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: ringway/HC\r\n");
    if let Some(extra) = &h.request_headers_to_add {
        for (k, v) in header_pairs(extra, &at.key("request_headers_to_add"), problems) {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    request.push_str("\r\n");
    Some(HealthCheckKind::Http {
        request: bytes::Bytes::from(request),
        head: method == "HEAD",
        expected,
        retriable,
    })
}

/// `[{header: {key, value}}]` (Envoy's `HeaderValueOption`) or a plain `{key: value}` map.
fn header_pairs(
    v: &serde_json::Value,
    at: &DocPath,
    problems: &mut Problems,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |k: &str, v: &str, at: &DocPath, problems: &mut Problems| {
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok || !super::wire_safe(v) {
            problems.value(at, format!("invalid header {k:?}: {v:?}"));
        } else {
            out.push((k.to_ascii_lowercase(), v.to_string()));
        }
    };
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                match val.as_str() {
                    Some(s) => add(k, s, &at.key(k), problems),
                    None => problems.value(&at.key(k), "a header value must be a string"),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let h = item.get("header").unwrap_or(item);
                match (
                    h.get("key").and_then(|k| k.as_str()),
                    h.get("value").and_then(|k| k.as_str()),
                ) {
                    (Some(k), Some(v)) => add(k, v, &at.index(i), problems),
                    _ => problems.value(&at.index(i), "expected {header: {key, value}}"),
                }
            }
        }
        _ => problems.value(at, "expected a list of {header: {key, value}} or a map"),
    }
    out
}

fn payload(p: &PayloadSpec, at: &DocPath, problems: &mut Problems) -> Option<Vec<u8>> {
    match (&p.text, &p.binary) {
        (Some(hex), None) => {
            let clean: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            let digit = |b: u8| (b as char).to_digit(16);
            if !clean.len().is_multiple_of(2) || clean.iter().any(|b| digit(*b).is_none()) {
                problems.value(&at.key("text"), "text is hex digits, two per byte");
                return None;
            }
            Some(
                clean
                    .chunks(2)
                    .map(|c| (digit(c[0]).unwrap_or(0) * 16 + digit(c[1]).unwrap_or(0)) as u8)
                    .collect(),
            )
        }
        (None, Some(b64)) => match ringway_filters::base64::decode(b64.as_bytes()) {
            Some(v) => Some(v),
            None => {
                problems.value(&at.key("binary"), "binary is base64");
                None
            }
        },
        _ => {
            problems.value(at, "a payload is {text: <hex>} or {binary: <base64>}");
            None
        }
    }
}

fn tcp_check(
    t: &TcpHealthCheckSpec,
    at: &DocPath,
    problems: &mut Problems,
) -> Option<HealthCheckKind> {
    let send = match &t.send {
        Some(p) => payload(p, &at.key("send"), problems)?,
        None => Vec::new(),
    };
    let mut receive = Vec::new();
    for (i, p) in t.receive.iter().flatten().enumerate() {
        receive.push(payload(p, &at.key("receive").index(i), problems)?);
    }
    Some(HealthCheckKind::Tcp { send, receive })
}

/// `outlier_detection`, Envoy's defaults where a key is absent.
pub(super) fn outlier(
    c: &ClusterSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<OutlierDetection> {
    let o = c.outlier_detection.as_ref()?;
    let at = path.key("outlier_detection");
    let d = OutlierDetection::default();
    let mut pct = |v: Option<u32>, key: &str, default: u32| match v {
        Some(p) if p > 100 => {
            problems.value(&at.key(key), format!("{key} is a percentage: 0..=100"));
            default
        }
        v => problems.or(v, &at.key(key), default),
    };
    let max_ejection_percent = pct(o.max_ejection_percent, "max_ejection_percent", 10);
    let enforcing_consecutive_5xx = pct(
        o.enforcing_consecutive_5xx,
        "enforcing_consecutive_5xx",
        100,
    );
    let enforcing_success_rate = pct(o.enforcing_success_rate, "enforcing_success_rate", 100);
    let enforcing_consecutive_gateway_failure = pct(
        o.enforcing_consecutive_gateway_failure,
        "enforcing_consecutive_gateway_failure",
        0,
    );
    let enforcing_consecutive_local_origin_failure = pct(
        o.enforcing_consecutive_local_origin_failure,
        "enforcing_consecutive_local_origin_failure",
        100,
    );
    let enforcing_local_origin_success_rate = pct(
        o.enforcing_local_origin_success_rate,
        "enforcing_local_origin_success_rate",
        100,
    );
    let failure_percentage_threshold = pct(
        o.failure_percentage_threshold,
        "failure_percentage_threshold",
        85,
    );
    let enforcing_failure_percentage = pct(
        o.enforcing_failure_percentage,
        "enforcing_failure_percentage",
        0,
    );
    let enforcing_failure_percentage_local_origin = pct(
        o.enforcing_failure_percentage_local_origin,
        "enforcing_failure_percentage_local_origin",
        0,
    );
    let mut dur = |v: Option<crate::config::duration::Dur>, key: &str, default: Duration| match v {
        Some(d) if d.0.is_zero() => {
            problems.value(&at.key(key), format!("{key} must be more than zero"));
            default
        }
        v => problems.or(v.map(|d| d.0), &at.key(key), default),
    };
    let interval = dur(o.interval, "interval", d.interval);
    let base_ejection_time = dur(
        o.base_ejection_time,
        "base_ejection_time",
        d.base_ejection_time,
    );
    let max_ejection_time = dur(
        o.max_ejection_time,
        "max_ejection_time",
        d.max_ejection_time,
    );
    let mut at_least_one = |v: Option<u32>, key: &str, default: u32| match v {
        Some(0) => {
            problems.value(&at.key(key), format!("{key} must be at least 1"));
            default
        }
        v => problems.or(v, &at.key(key), default),
    };
    let consecutive_5xx = at_least_one(o.consecutive_5xx, "consecutive_5xx", 5);
    let consecutive_gateway_failure = at_least_one(
        o.consecutive_gateway_failure,
        "consecutive_gateway_failure",
        5,
    );
    let consecutive_local_origin_failure = at_least_one(
        o.consecutive_local_origin_failure,
        "consecutive_local_origin_failure",
        5,
    );
    // A key left out takes Envoy's default (`d`), recorded for `/config_dump`.
    macro_rules! or_default {
        ($key:ident) => {
            problems.or(o.$key, &at.key(stringify!($key)), d.$key)
        };
    }
    Some(OutlierDetection {
        consecutive_5xx,
        interval,
        base_ejection_time,
        max_ejection_time: max_ejection_time.max(base_ejection_time),
        max_ejection_percent,
        enforcing_consecutive_5xx,
        enforcing_success_rate,
        success_rate_minimum_hosts: or_default!(success_rate_minimum_hosts),
        success_rate_request_volume: or_default!(success_rate_request_volume),
        success_rate_stdev_factor: or_default!(success_rate_stdev_factor),
        consecutive_gateway_failure,
        enforcing_consecutive_gateway_failure,
        split_external_local_origin_errors: or_default!(split_external_local_origin_errors),
        consecutive_local_origin_failure,
        enforcing_consecutive_local_origin_failure,
        enforcing_local_origin_success_rate,
        failure_percentage_threshold,
        enforcing_failure_percentage,
        enforcing_failure_percentage_local_origin,
        failure_percentage_minimum_hosts: or_default!(failure_percentage_minimum_hosts),
        failure_percentage_request_volume: or_default!(failure_percentage_request_volume),
        successful_active_health_check_uneject_host: or_default!(
            successful_active_health_check_uneject_host
        ),
    })
}

/// `common_lb_config.healthy_panic_threshold` (default 50).
pub(super) fn panic_threshold(c: &ClusterSpec, path: &DocPath, problems: &mut Problems) -> f64 {
    let Some(p) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    else {
        problems.filled(
            &path.key("common_lb_config").key("healthy_panic_threshold"),
            &50.0,
        );
        return 50.0;
    };
    let v = p.value();
    if !(0.0..=100.0).contains(&v) {
        problems.value(
            &path.key("common_lb_config").key("healthy_panic_threshold"),
            format!("healthy_panic_threshold is a percentage: 0..=100 (found {v})"),
        );
        return 50.0;
    }
    v
}

/// `circuit_breakers.thresholds`: the `DEFAULT` priority's entry (Envoy's defaults for what it
/// leaves out). `HIGH` is refused: ringway routes every request at the default priority.
pub(super) fn breakers(
    c: &ClusterSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> CircuitBreakers {
    let mut out = CircuitBreakers::default();
    let Some(cb) = &c.circuit_breakers else {
        problems.filled(
            &path.key("circuit_breakers"),
            &serde_json::json!({"thresholds": [{
                "priority": "DEFAULT",
                "max_connections": out.max_connections,
                "max_pending_requests": out.max_pending_requests,
                "max_requests": out.max_requests,
                "max_retries": out.max_retries,
                "track_remaining": out.track_remaining,
            }]}),
        );
        return out;
    };
    let list = path.key("circuit_breakers").key("thresholds");
    for (at, item) in super::enumerate(&cb.thresholds, &list, problems) {
        let Some(t) = &item.value else { continue };
        match t.priority.as_deref() {
            None | Some("DEFAULT") => {}
            Some(p) => {
                problems.value(
                    &at.key("priority"),
                    format!(
                        "priority {p:?}: only DEFAULT is supported (every request is routed at \
                         the default priority)"
                    ),
                );
                continue;
            }
        }
        out.max_connections = problems.or(
            t.max_connections,
            &at.key("max_connections"),
            out.max_connections,
        );
        out.max_pending_requests = problems.or(
            t.max_pending_requests,
            &at.key("max_pending_requests"),
            out.max_pending_requests,
        );
        out.max_requests = problems.or(t.max_requests, &at.key("max_requests"), out.max_requests);
        // With a retry budget, `max_retries` does not apply: not shown as filled in.
        out.max_retries = match t.retry_budget {
            None => problems.or(t.max_retries, &at.key("max_retries"), out.max_retries),
            Some(_) => t.max_retries.unwrap_or(out.max_retries),
        };
        out.track_remaining = problems.or(t.track_remaining, &at.key("track_remaining"), false);
        for (key, v) in [
            ("max_connections", out.max_connections),
            ("max_requests", out.max_requests),
        ] {
            if v == 0 {
                problems.value(&at.key(key), format!("{key} must be at least 1"));
            }
        }
        if let Some(b) = &t.retry_budget {
            let pct = problems.or(
                b.budget_percent.as_ref().map(|p| p.value()),
                &at.key("retry_budget").key("budget_percent"),
                20.0,
            );
            if !(0.0..=100.0).contains(&pct) {
                problems.value(
                    &at.key("retry_budget").key("budget_percent"),
                    format!("budget_percent is a percentage: 0..=100 (found {pct})"),
                );
            }
            let min = problems.or(
                b.min_retry_concurrency,
                &at.key("retry_budget").key("min_retry_concurrency"),
                3,
            );
            out.retry_budget = Some((pct, min));
        }
    }
    out
}
