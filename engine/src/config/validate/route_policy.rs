//! Validation of a forwarding route's upstream policies: `weighted_clusters`, `retry_policy`,
//! `request_mirror_policies` and `hash_policy` (Envoy's names and defaults).

use std::time::Duration;

use super::{ClusterNames, Problems};
use crate::config::{
    decode::Item,
    model::{
        retry_on, ClusterId, HashKind, HashPolicy, HeaderMatcher, Mirror, RetryPolicy,
        WeightedClusters,
    },
    path::DocPath,
    schema::{
        HashPolicySpec, HeaderMatchSpec, MirrorPolicySpec, RetryPolicySpec, WeightedClustersSpec,
    },
};

/// A cluster named by a route: its id, or a problem (unless the cluster exists but is broken,
/// which was reported already).
pub(super) fn cluster_id(
    name: &str,
    at: &DocPath,
    clusters: &ClusterNames,
    problems: &mut Problems,
) -> Option<ClusterId> {
    match clusters.ids.get(name) {
        Some(&id) => Some(id),
        None => {
            if !clusters.broken.contains(name) {
                problems.value(
                    at,
                    format!(
                        "unknown cluster {name:?} (not defined under clusters){}",
                        crate::config::suggest::hint(name, clusters.ids.keys().map(String::as_str))
                    ),
                );
            }
            None
        }
    }
}

pub(super) fn weighted(
    w: &WeightedClustersSpec,
    at: &DocPath,
    clusters: &ClusterNames,
    problems: &mut Problems,
) -> Option<WeightedClusters> {
    let list_at = at.key("clusters");
    if w.clusters.is_empty() {
        problems.value(&list_at, "weighted_clusters needs at least one cluster");
        return None;
    }
    let mut out = Vec::with_capacity(w.clusters.len());
    let mut total = 0u64;
    let mut ok = true;
    for (c_at, item) in super::enumerate(&w.clusters, &list_at, problems) {
        let Some(c) = &item.value else {
            ok = false;
            continue;
        };
        let id = cluster_id(&c.name, &c_at.key("name"), clusters, problems);
        total += u64::from(c.weight);
        match id {
            Some(id) if c.weight > 0 => out.push((id, c.name.clone(), total)),
            Some(_) => {} // weight 0: never chosen
            None => ok = false,
        }
    }
    if total == 0 && ok {
        problems.value(
            &list_at,
            "the weights add up to 0: no cluster would be chosen",
        );
        return None;
    }
    if let Some(t) = w.total_weight {
        if u64::from(t) != total {
            problems.value(
                &at.key("total_weight"),
                format!("total_weight is {t} but the weights add up to {total}"),
            );
        }
    }
    ok.then_some(WeightedClusters {
        clusters: out,
        total,
    })
}

pub(super) fn retry_policy(
    r: &RetryPolicySpec,
    at: &DocPath,
    problems: &mut Problems,
    header_matcher: impl Fn(&HeaderMatchSpec, &DocPath, &mut Problems) -> Option<HeaderMatcher>,
) -> Option<RetryPolicy> {
    let mut bits = 0;
    let mut ok = true;
    for word in r.retry_on.as_deref().unwrap_or("").split(',') {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        match retry_on::NAMES.iter().find(|(n, _)| *n == word) {
            Some((_, b)) => bits |= b,
            None => {
                let known: Vec<&str> = retry_on::NAMES.iter().map(|(n, _)| *n).collect();
                problems.value(
                    &at.key("retry_on"),
                    format!(
                        "unknown retry condition {word:?} (known: {})",
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    if bits == 0 && ok {
        problems.value(
            &at.key("retry_on"),
            "retry_on names no condition: nothing would be retried (e.g. \"5xx,connect-failure\")",
        );
        ok = false;
    }
    for (i, code) in r.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            problems.value(
                &at.key("retriable_status_codes").index(i),
                format!("{code} is not an HTTP status"),
            );
            ok = false;
        }
    }
    let nonzero =
        |d: Option<crate::config::duration::Dur>, key: &str, problems: &mut Problems| match d {
            Some(d) if d.0.is_zero() => {
                problems.value(&at.key(key), format!("{key} must be more than zero"));
                None
            }
            d => d.map(|d| d.0),
        };
    let per_try_timeout = nonzero(r.per_try_timeout, "per_try_timeout", problems);
    let per_try_idle_timeout = nonzero(r.per_try_idle_timeout, "per_try_idle_timeout", problems);
    let back_off = r.retry_back_off.as_ref();
    let base_interval = problems.or(
        back_off.and_then(|b| b.base_interval).map(|d| d.0),
        &at.key("retry_back_off").key("base_interval"),
        Duration::from_millis(25),
    );
    if base_interval.is_zero() {
        problems.value(
            &at.key("retry_back_off").key("base_interval"),
            "base_interval must be more than zero",
        );
        ok = false;
    }
    let max_interval = problems.or(
        back_off.and_then(|b| b.max_interval).map(|d| d.0),
        &at.key("retry_back_off").key("max_interval"),
        base_interval * 10,
    );
    if max_interval < base_interval {
        problems.value(
            &at.key("retry_back_off").key("max_interval"),
            "max_interval must be at least base_interval",
        );
        ok = false;
    }
    let mut headers = Vec::new();
    for (h_at, item) in super::enumerate(
        &r.retriable_request_headers,
        &at.key("retriable_request_headers"),
        problems,
    ) {
        match item
            .value
            .as_ref()
            .and_then(|h| header_matcher(h, &h_at, problems))
        {
            Some(m) => headers.push(m),
            None => ok = false,
        }
    }
    let mut avoid_previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("");
        match name {
            "envoy.retry_host_predicates.previous_hosts" | "previous_hosts" => {
                avoid_previous_hosts = true
            }
            _ => {
                problems.value(
                    &at.key("retry_host_predicate").index(i),
                    format!(
                        "unknown retry host predicate {name:?} (known: \
                         envoy.retry_host_predicates.previous_hosts)"
                    ),
                );
                ok = false;
            }
        }
    }
    let num_retries = problems.or(r.num_retries, &at.key("num_retries"), 1);
    let host_selection_retry_max_attempts = problems
        .or(
            r.host_selection_retry_max_attempts,
            &at.key("host_selection_retry_max_attempts"),
            1,
        )
        .max(1);
    ok.then(|| RetryPolicy {
        retry_on: bits,
        num_retries,
        per_try_timeout,
        per_try_idle_timeout,
        base_interval,
        max_interval,
        retriable_status_codes: r.retriable_status_codes.clone(),
        retriable_request_headers: headers,
        avoid_previous_hosts,
        host_selection_retry_max_attempts,
    })
}

/// `runtime_fraction`: `{default_value: {numerator, denominator}}` (Envoy's
/// `FractionalPercent`, denominator `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`), or a
/// plain percentage. Per million.
fn fraction(v: &serde_json::Value, at: &DocPath, problems: &mut Problems) -> Option<u32> {
    if let Some(p) = v.as_f64() {
        if (0.0..=100.0).contains(&p) {
            return Some((p * 10_000.0).round() as u32);
        }
        problems.value(at, "runtime_fraction as a number is a percentage: 0..=100");
        return None;
    }
    let d = v.get("default_value").unwrap_or(v);
    let num = d.get("numerator").and_then(|n| n.as_u64());
    let scale = match d.get("denominator").and_then(|n| n.as_str()) {
        None | Some("HUNDRED") => 10_000,
        Some("TEN_THOUSAND") => 100,
        Some("MILLION") => 1,
        Some(other) => {
            problems.value(
                at,
                format!("unknown denominator {other:?} (HUNDRED, TEN_THOUSAND or MILLION)"),
            );
            return None;
        }
    };
    match num {
        Some(n) => Some((n * scale).min(1_000_000) as u32),
        None => {
            problems.value(
                at,
                "runtime_fraction is {default_value: {numerator, denominator}} or a percentage",
            );
            None
        }
    }
}

pub(super) fn mirrors(
    list: &[Item<MirrorPolicySpec>],
    at: &DocPath,
    clusters: &ClusterNames,
    problems: &mut Problems,
) -> Vec<Mirror> {
    let mut out = Vec::new();
    for (m_at, item) in super::enumerate(list, at, problems) {
        let Some(m) = &item.value else { continue };
        let id = cluster_id(&m.cluster, &m_at.key("cluster"), clusters, problems);
        let per_million = match &m.runtime_fraction {
            None => Some(1_000_000),
            Some(v) => fraction(v, &m_at.key("runtime_fraction"), problems),
        };
        if let (Some(cluster), Some(per_million)) = (id, per_million) {
            out.push(Mirror {
                cluster,
                cluster_name: m.cluster.clone(),
                per_million,
            });
        }
    }
    out
}

pub(super) fn hash_policy(
    list: &[Item<HashPolicySpec>],
    at: &DocPath,
    problems: &mut Problems,
) -> Vec<HashPolicy> {
    let mut out = Vec::new();
    for (h_at, item) in super::enumerate(list, at, problems) {
        let Some(h) = &item.value else { continue };
        let kinds = [
            h.header.is_some(),
            h.cookie.is_some(),
            h.connection_properties.is_some(),
            h.query_parameter.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            problems.value(
                &h_at,
                "a hash policy needs exactly one of header, cookie, connection_properties, \
                 query_parameter",
            );
            continue;
        }
        let kind = if let Some(x) = &h.header {
            HashKind::Header(x.header_name.to_ascii_lowercase())
        } else if let Some(c) = &h.cookie {
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
            {
                problems.value(
                    &h_at.key("cookie").key("name"),
                    format!("invalid cookie name {:?}", c.name),
                );
                continue;
            }
            HashKind::Cookie {
                name: c.name.clone(),
                ttl: c.ttl.map(|d| d.0),
                path: c.path.clone(),
            }
        } else if let Some(c) = &h.connection_properties {
            if !c.source_ip {
                problems.value(
                    &h_at.key("connection_properties").key("source_ip"),
                    "source_ip: false hashes nothing (leave the entry out)",
                );
                continue;
            }
            HashKind::SourceIp
        } else if let Some(q) = &h.query_parameter {
            HashKind::QueryParameter(q.name.clone())
        } else {
            continue;
        };
        out.push(HashPolicy {
            kind,
            terminal: h.terminal.unwrap_or(false),
        });
    }
    out
}
