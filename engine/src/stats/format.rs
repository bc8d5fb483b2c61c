//! Rendering a [`Snapshot`] for the admin server: plain text (`name: value`), JSON and the
//! Prometheus text exposition format.
//!
//! Prometheus names are flattened Envoy-style: the scope becomes the family prefix and its value a
//! label, `cluster.origin.upstream_rq_total` → `ringway_cluster_upstream_rq_total{envoy_cluster_name="origin"}`.
//! Histograms (µs) are exported twice: as a Prometheus histogram (cumulative `_bucket{le}`, `_sum`,
//! `_count`) under the stat's name, and as a summary of quantiles under `<name>_quantiles`.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::aggregate::{Snapshot, Stat, Value};

/// Quantiles reported for every histogram.
pub const QUANTILES: [f64; 6] = [0.5, 0.75, 0.9, 0.99, 0.999, 1.0];

/// Prometheus bucket bounds, µs (Envoy's default buckets, in µs, from 50µs).
pub const BUCKETS_US: [u64; 19] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

fn sum_us(h: &Histogram<u64>) -> u64 {
    (h.mean() * h.len() as f64).round() as u64
}

fn quantile_label(q: f64) -> String {
    if q >= 1.0 {
        "100".to_owned()
    } else {
        let p = q * 100.0;
        let s = format!("{p:.1}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `name: value` per line, sorted; histograms as
/// `name: count=N mean=M p50=.. p75=.. p90=.. p99=.. p99.9=.. p100=..` (µs).
pub fn text(s: &Snapshot, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for st in &s.stats {
        let name = st.name();
        if !keep(&name) {
            continue;
        }
        match &st.value {
            Value::Counter(v) | Value::Gauge(v) => {
                let _ = writeln!(out, "{name}: {v}");
            }
            Value::Histogram(h) => {
                let _ = write!(out, "{name}: count={} mean={:.0}", h.len(), h.mean());
                for q in QUANTILES {
                    let _ = write!(out, " p{}={}", quantile_label(q), h.value_at_quantile(q));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// `{"stats": [{"name", "type", "value"}], "histograms": [{"name", "count", "sum", "mean",
/// "max", "quantiles": {"p50": ..}}]}` (histogram values in µs).
pub fn json(s: &Snapshot, keep: impl Fn(&str) -> bool) -> String {
    let mut stats = Vec::new();
    let mut hists = Vec::new();
    for st in &s.stats {
        let name = st.name();
        if !keep(&name) {
            continue;
        }
        match &st.value {
            Value::Counter(v) => {
                stats.push(serde_json::json!({"name": name, "type": "counter", "value": v}))
            }
            Value::Gauge(v) => {
                stats.push(serde_json::json!({"name": name, "type": "gauge", "value": v}))
            }
            Value::Histogram(h) => {
                let mut qs = serde_json::Map::new();
                for q in QUANTILES {
                    qs.insert(
                        format!("p{}", quantile_label(q)),
                        serde_json::Value::from(h.value_at_quantile(q)),
                    );
                }
                hists.push(serde_json::json!({
                    "name": name,
                    "unit": "us",
                    "count": h.len(),
                    "sum": sum_us(h),
                    "mean": h.mean(),
                    "max": h.max(),
                    "quantiles": qs,
                }));
            }
        }
    }
    let doc = serde_json::json!({"stats": stats, "histograms": hists});
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, anything else becomes `_`.
pub fn prom_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// A Prometheus label value, escaped (`\\`, `\"`, `\n`).
pub fn prom_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(st: &Stat) -> String {
    prom_name(&format!("ringway_{}_{}", st.scope.prefix(), st.metric))
}

fn labels(st: &Stat, extra: Option<(&str, &str)>) -> String {
    let mut parts = Vec::new();
    if let Some(l) = st.scope.label() {
        parts.push(format!("{l}=\"{}\"", prom_label_value(&st.scope_value)));
    }
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The Prometheus text exposition format (version 0.0.4): a `# TYPE` line per family, then its
/// samples.
pub fn prometheus(s: &Snapshot) -> String {
    // Group samples by family, keeping first-seen order of families sorted by name.
    let mut families: std::collections::BTreeMap<String, Vec<&Stat>> = Default::default();
    for st in &s.stats {
        families.entry(family(st)).or_default().push(st);
    }
    let mut out = String::new();
    let mut summaries = String::new();
    for (fam, stats) in &families {
        let kind = match stats[0].value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
        };
        let _ = writeln!(out, "# TYPE {fam} {kind}");
        let mut summary_head = false;
        for st in stats {
            match &st.value {
                Value::Counter(v) | Value::Gauge(v) => {
                    let _ = writeln!(out, "{fam}{} {v}", labels(st, None));
                }
                Value::Histogram(h) => {
                    for le in BUCKETS_US {
                        let n = h.count_between(0, le);
                        let le = le.to_string();
                        let _ = writeln!(out, "{fam}_bucket{} {n}", labels(st, Some(("le", &le))));
                    }
                    let _ = writeln!(
                        out,
                        "{fam}_bucket{} {}",
                        labels(st, Some(("le", "+Inf"))),
                        h.len()
                    );
                    let _ = writeln!(out, "{fam}_sum{} {}", labels(st, None), sum_us(h));
                    let _ = writeln!(out, "{fam}_count{} {}", labels(st, None), h.len());

                    if !summary_head {
                        let _ = writeln!(summaries, "# TYPE {fam}_quantiles summary");
                        summary_head = true;
                    }
                    for q in QUANTILES {
                        let qs = q.to_string();
                        let v = if h.is_empty() {
                            0
                        } else {
                            h.value_at_quantile(q)
                        };
                        let _ = writeln!(
                            summaries,
                            "{fam}_quantiles{} {v}",
                            labels(st, Some(("quantile", &qs)))
                        );
                    }
                    let _ = writeln!(
                        summaries,
                        "{fam}_quantiles_sum{} {}",
                        labels(st, None),
                        sum_us(h)
                    );
                    let _ = writeln!(
                        summaries,
                        "{fam}_quantiles_count{} {}",
                        labels(st, None),
                        h.len()
                    );
                }
            }
        }
    }
    out.push_str(&summaries);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_and_labels_are_sanitized() {
        assert_eq!(prom_name("ringway_cluster_a.b-c"), "ringway_cluster_a_b_c");
        assert_eq!(prom_name("9x"), "_9x");
        assert_eq!(prom_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn quantile_labels() {
        assert_eq!(quantile_label(0.5), "50");
        assert_eq!(quantile_label(0.999), "99.9");
        assert_eq!(quantile_label(1.0), "100");
    }
}
