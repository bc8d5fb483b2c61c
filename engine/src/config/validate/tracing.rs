//! Validation of the top-level `tracing` section (collector cluster, format, path, host, rates,
//! intervals) and of a connection manager's `tracing.sample_rate` override.

use super::{ClusterNames, Problems};
use crate::config::{
    defaults,
    model::{TraceFormat, Tracing},
    path::DocPath,
    schema::{HcmTracingSpec, TracingSpec},
};

/// A sample rate is a fraction: 0 samples no new trace, 1 samples every one.
pub(super) fn sample_rate(rate: f64, path: &DocPath, problems: &mut Problems) -> f64 {
    if !(0.0..=1.0).contains(&rate) {
        problems.value(
            path,
            format!(
                "sample_rate {rate} is out of range: it is a fraction from 0 to 1 \
                 (0.1 samples one new trace in ten)"
            ),
        );
        return rate.clamp(0.0, 1.0);
    }
    rate
}

pub(super) fn tracing(
    spec: &TracingSpec,
    path: &DocPath,
    clusters: &ClusterNames,
    problems: &mut Problems,
) -> Option<Tracing> {
    let rate = match spec.sample_rate {
        Some(r) => sample_rate(r, &path.key("sample_rate"), problems),
        None => problems.or(None, &path.key("sample_rate"), defaults::TRACE_SAMPLE_RATE),
    };
    let c = &spec.collector;
    let cpath = path.key("collector");
    let cluster = match clusters.ids.get(&c.cluster) {
        Some(&id) => Some(id),
        None => {
            if !clusters.broken.contains(&c.cluster) {
                problems.value(
                    &cpath.key("cluster"),
                    format!(
                        "unknown cluster {:?} (not defined under clusters){}",
                        c.cluster,
                        crate::config::suggest::hint(
                            &c.cluster,
                            clusters.ids.keys().map(String::as_str)
                        )
                    ),
                );
            }
            None
        }
    };
    let format = match c.format.as_deref() {
        None => {
            problems.filled(&cpath.key("format"), &"otlp_json");
            TraceFormat::OtlpJson
        }
        Some("otlp_json") => TraceFormat::OtlpJson,
        Some("zipkin_json") => TraceFormat::ZipkinJson,
        Some(other) => {
            problems.value(
                &cpath.key("format"),
                format!("unknown format {other:?}: expected `otlp_json` or `zipkin_json`"),
            );
            TraceFormat::OtlpJson
        }
    };
    let collector_path = match &c.path {
        Some(p) => {
            if !p.starts_with('/') || !super::wire_safe(p) {
                problems.value(
                    &cpath.key("path"),
                    format!("invalid path {p:?}: expected an absolute path such as /v1/traces"),
                );
            }
            p.clone()
        }
        None => {
            let p = match format {
                TraceFormat::OtlpJson => defaults::OTLP_PATH,
                TraceFormat::ZipkinJson => defaults::ZIPKIN_PATH,
            };
            problems.filled(&cpath.key("path"), &p);
            p.to_owned()
        }
    };
    let collector_host = match &c.host {
        Some(h) => {
            if !super::wire_safe(h) {
                problems.value(
                    &cpath.key("host"),
                    format!("invalid host {h:?}: no spaces or control characters"),
                );
            }
            h.clone()
        }
        None => {
            problems.filled(&cpath.key("host"), &c.cluster);
            c.cluster.clone()
        }
    };
    let collector_timeout = problems.or(
        c.timeout.map(|d| d.0),
        &cpath.key("timeout"),
        defaults::TRACE_COLLECTOR_TIMEOUT,
    );
    if collector_timeout.is_zero() {
        problems.value(&cpath.key("timeout"), "timeout must be more than zero");
    }
    let flush_interval = problems.or(
        spec.flush_interval.map(|d| d.0),
        &path.key("flush_interval"),
        defaults::TRACE_FLUSH_INTERVAL,
    );
    if flush_interval.is_zero() {
        problems.value(
            &path.key("flush_interval"),
            "flush_interval must be more than zero",
        );
    }
    let max_batch = problems.or(
        spec.max_batch,
        &path.key("max_batch"),
        defaults::TRACE_MAX_BATCH,
    );
    if !defaults::TRACE_MAX_BATCH_RANGE.contains(&max_batch) {
        problems.value(
            &path.key("max_batch"),
            format!(
                "max_batch {max_batch} is out of range {}..={}",
                defaults::TRACE_MAX_BATCH_RANGE.start(),
                defaults::TRACE_MAX_BATCH_RANGE.end()
            ),
        );
    }
    let service_name = problems.or(
        spec.service_name.clone(),
        &path.key("service_name"),
        defaults::TRACE_SERVICE_NAME.to_owned(),
    );
    if service_name.is_empty() {
        problems.value(&path.key("service_name"), "service_name must not be empty");
    }
    Some(Tracing {
        sample_rate: rate,
        format,
        collector_cluster: cluster?,
        collector_path,
        collector_host,
        collector_timeout,
        service_name,
        flush_interval,
        max_batch,
    })
}

/// The rate a connection manager samples at: its override, else the top-level rate; `None`
/// without top-level tracing (an override then is an error: there is nowhere to send spans).
pub(super) fn hcm_sample_rate(
    spec: Option<&HcmTracingSpec>,
    top: Option<f64>,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<f64> {
    let Some(spec) = spec else { return top };
    if top.is_none() {
        problems.value(
            path,
            "tracing on a connection manager needs the top-level `tracing` section \
             (with its collector)",
        );
        return None;
    }
    match spec.sample_rate {
        Some(r) => Some(sample_rate(r, &path.key("sample_rate"), problems)),
        None => top,
    }
}
