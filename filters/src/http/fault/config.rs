//! The `fault` config: the file's shape ([`Spec`], Envoy's `HTTPFault` key names) and its
//! validation into the immutable [`Config`]. Every problem is collected with its path.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::matcher::{HeaderMatcher, HeaderMatcherSpec};
use crate::{
    http::local_ratelimit::percent::{FractionalPercentSpec, Percent},
    registry::ConfigProblem,
    stats::StatSet,
};

/// The filter's map in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// Delay injection.
    #[serde(default)]
    pub delay: Option<DelaySpec>,
    /// Abort injection (after the delay, when both apply).
    #[serde(default)]
    pub abort: Option<AbortSpec>,
    /// At most this many requests in a fault (delayed or aborted) at once, split between workers
    /// (each allows `ceil(max_active_faults / workers)`). Absent: no bound.
    #[serde(default)]
    pub max_active_faults: Option<u32>,
    /// Faults apply only to requests matching every one of these (Envoy's `HeaderMatcher`s).
    #[serde(default)]
    pub headers: Vec<HeaderMatcherSpec>,
    /// Faults apply only to requests routed to this cluster.
    #[serde(default)]
    pub upstream_cluster: Option<String>,
    /// Faults apply only to requests whose `x-envoy-downstream-service-node` is one of these.
    #[serde(default)]
    pub downstream_nodes: Vec<String>,
    /// Envoy's response bandwidth limit: not supported yet (refused with a message).
    #[serde(default)]
    pub response_rate_limit: Option<Value>,
}

/// Envoy's `FaultDelay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DelaySpec {
    /// Delay every chosen request by this (> 0).
    #[serde(default, deserialize_with = "crate::registry::opt_duration")]
    pub fixed_delay: Option<Duration>,
    /// `{}`: the delay comes from the request's `x-envoy-fault-delay-request` header
    /// (milliseconds; absent or invalid: no delay).
    #[serde(default)]
    pub header_delay: Option<Empty>,
    /// Share of matching requests delayed. Absent: 100% (Envoy: 0%).
    #[serde(default)]
    pub percentage: Option<FractionalPercentSpec>,
}

/// Envoy's `FaultAbort`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AbortSpec {
    /// Answer chosen requests with this status (200..599).
    #[serde(default)]
    pub http_status: Option<u32>,
    /// gRPC aborts: not supported yet (refused with a message).
    #[serde(default)]
    pub grpc_status: Option<u32>,
    /// `{}`: the status comes from the request's `x-envoy-fault-abort-request` header
    /// (200..599; absent or invalid: no abort).
    #[serde(default)]
    pub header_abort: Option<Empty>,
    /// Share of matching requests aborted. Absent: 100% (Envoy: 0%).
    #[serde(default)]
    pub percentage: Option<FractionalPercentSpec>,
}

/// An empty map (`header_delay: {}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

/// Where a delay's length comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DelayKind {
    Fixed(Duration),
    /// `x-envoy-fault-delay-request`.
    Header,
}

/// A validated delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delay {
    pub kind: DelayKind,
    pub percent: Percent,
}

/// Where an abort's status comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbortKind {
    Http(u16),
    /// `x-envoy-fault-abort-request`.
    Header,
}

/// A validated abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abort {
    pub kind: AbortKind,
    pub percent: Percent,
}

/// The validated config, shared by every worker.
#[derive(Debug)]
pub(crate) struct Config {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
    pub max_active_faults: Option<u32>,
    pub headers: Vec<HeaderMatcher>,
    pub upstream_cluster: Option<String>,
    pub downstream_nodes: Vec<String>,
    pub stats: StatSet,
}

/// Counter indexes in [`Config::stats`] (Envoy's names).
pub(crate) const DELAYS_INJECTED: usize = 0;
pub(crate) const ABORTS_INJECTED: usize = 1;
/// A gauge: this worker's faults in progress (summed over workers when read).
pub(crate) const ACTIVE_FAULTS: usize = 2;
pub(crate) const FAULTS_OVERFLOW: usize = 3;
const STAT_NAMES: &[&str] = &[
    "delays_injected",
    "aborts_injected",
    "active_faults",
    "faults_overflow",
];

fn percent(p: Option<FractionalPercentSpec>) -> Percent {
    p.map_or(Percent::ALWAYS, Percent::from_spec)
}

/// Validate a decoded spec.
pub(crate) fn validate(spec: Spec) -> Result<Config, Vec<ConfigProblem>> {
    let mut errs = Vec::new();
    let delay = spec.delay.and_then(|d| {
        let kind = match (d.fixed_delay, &d.header_delay) {
            (Some(_), Some(_)) => {
                errs.push(ConfigProblem::at(
                    "delay",
                    "either fixed_delay or header_delay, not both",
                ));
                return None;
            }
            (Some(t), None) if t.is_zero() => {
                errs.push(ConfigProblem::at("delay.fixed_delay", "must be > 0"));
                return None;
            }
            (Some(t), None) => DelayKind::Fixed(t),
            (None, Some(_)) => DelayKind::Header,
            (None, None) => {
                errs.push(ConfigProblem::at(
                    "delay",
                    "needs fixed_delay (e.g. \"2s\") or header_delay: {}",
                ));
                return None;
            }
        };
        Some(Delay {
            kind,
            percent: percent(d.percentage),
        })
    });
    let abort = spec.abort.and_then(|a| {
        let kind = match (a.http_status, a.grpc_status, &a.header_abort) {
            (_, Some(_), _) => {
                errs.push(ConfigProblem::at(
                    "abort.grpc_status",
                    "gRPC aborts are not supported yet (use http_status or header_abort)",
                ));
                return None;
            }
            (Some(_), None, Some(_)) => {
                errs.push(ConfigProblem::at(
                    "abort",
                    "either http_status or header_abort, not both",
                ));
                return None;
            }
            (Some(s @ 200..=599), None, None) => AbortKind::Http(s as u16),
            (Some(s), None, None) => {
                errs.push(ConfigProblem::at(
                    "abort.http_status",
                    format!("{s} is not a status 200..599"),
                ));
                return None;
            }
            (None, None, Some(_)) => AbortKind::Header,
            (None, None, None) => {
                errs.push(ConfigProblem::at(
                    "abort",
                    "needs http_status (e.g. 503) or header_abort: {}",
                ));
                return None;
            }
        };
        Some(Abort {
            kind,
            percent: percent(a.percentage),
        })
    });
    let headers = spec
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| HeaderMatcher::parse(h, &format!("headers.{i}"), &mut errs))
        .collect();
    if spec.response_rate_limit.is_some() {
        errs.push(ConfigProblem::at(
            "response_rate_limit",
            "response bandwidth faults are not supported yet",
        ));
    }
    if spec.upstream_cluster.as_deref() == Some("") {
        errs.push(ConfigProblem::at(
            "upstream_cluster",
            "must not be empty (leave it out to match every cluster)",
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        delay,
        abort,
        max_active_faults: spec.max_active_faults,
        headers,
        upstream_cluster: spec.upstream_cluster,
        downstream_nodes: spec.downstream_nodes,
        stats: StatSet::new("fault.", STAT_NAMES).with_gauges(&["active_faults"]),
    })
}
