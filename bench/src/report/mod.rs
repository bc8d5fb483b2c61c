//! Reports: the text summary, the HdrHistogram percentile distribution, the JSON file, and
//! (in [`plot`]) the SVG percentile chart, plus `compare` over saved JSON files.
//!
//! The JSON keys scripts may rely on: `mode` (`"open"` or `"closed"`), `requests`,
//! `requests_per_sec`, `errors` (by kind, with `total`) and
//! `latency_us: {p50, p90, p99, p999, p9999, max}`. `distribution` carries the percentile curve
//! so `compare` can redraw runs without their histograms.

pub mod compare;
pub mod hdr;
pub mod plot;

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::stats::{Errors, Stats};
use crate::load::{LoadConfig, Protocol, Target};
use crate::rt::fmt_us;

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest.
    pub max: f64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
}

/// One point of the percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Fraction of requests at or below `value_us` (0..=1).
    pub percentile: f64,
    /// Latency in microseconds.
    pub value_us: f64,
    /// Requests at or below it.
    pub count: u64,
}

/// One run, as printed and as saved with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Name shown in comparisons.
    pub label: String,
    /// Target URL.
    pub url: String,
    /// `"open"` (constant rate, latency from intended send time) or `"closed"`.
    pub mode: String,
    /// `"http/1.1"` or `"h2"`.
    pub protocol: String,
    /// Connections.
    pub connections: usize,
    /// Streams per connection (HTTP/2; 1 for HTTP/1.1).
    pub streams: usize,
    /// Worker threads.
    pub workers: usize,
    /// Every request had a connection of its own (`--new-connection-per-request`).
    #[serde(default)]
    pub new_connection_per_request: bool,
    /// Target rate (open loop).
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds (not measured).
    pub warmup_s: f64,
    /// Measured responses (any status).
    pub requests: u64,
    /// `requests` / `duration_s`.
    pub requests_per_sec: f64,
    /// Response bytes received.
    pub bytes: u64,
    /// `bytes` / `duration_s`.
    pub bytes_per_sec: f64,
    /// Connections opened.
    pub connects: u64,
    /// Errors by kind.
    pub errors: ErrorsReport,
    /// The first connect error's message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Latency summary (µs).
    pub latency_us: Latency,
    /// The percentile curve (HdrHistogram, 5 ticks per half distance).
    #[serde(default)]
    pub distribution: Vec<Point>,
}

/// Errors by kind plus their total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorsReport {
    /// The counts.
    #[serde(flatten)]
    pub kinds: Errors,
    /// Their sum.
    pub total: u64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Latency summary of a histogram in ns.
pub fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: us(h.value_at_quantile(0.5)),
        p90: us(h.value_at_quantile(0.9)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        p9999: us(h.value_at_quantile(0.9999)),
        max: us(h.max()),
        min: us(h.min()),
        mean: h.mean() / 1000.0,
        stdev: h.stdev() / 1000.0,
    }
}

impl Report {
    /// Builds the report of a finished run.
    pub fn new(cfg: &LoadConfig, target: &Target, workers: usize, s: &Stats) -> Self {
        let secs = cfg.duration.as_secs_f64().max(1e-9);
        let (protocol, streams) = match cfg.protocol {
            Protocol::Http1 => ("http/1.1", 1),
            Protocol::Http2 { streams } => ("h2", streams),
        };
        let _ = target;
        Self {
            label: cfg.label.clone().unwrap_or_else(|| cfg.url.clone()),
            url: cfg.url.clone(),
            mode: if cfg.rate.is_some() { "open" } else { "closed" }.into(),
            protocol: protocol.into(),
            connections: cfg.connections,
            streams,
            workers,
            new_connection_per_request: cfg.new_connection_per_request,
            rate: cfg.rate,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            requests: s.requests,
            requests_per_sec: s.requests as f64 / secs,
            bytes: s.bytes,
            bytes_per_sec: s.bytes as f64 / secs,
            connects: s.connects,
            errors: ErrorsReport {
                kinds: s.errors,
                total: s.errors.total(),
            },
            first_error: s.first_error.clone(),
            latency_us: latency(&s.hist),
            distribution: hdr::points(&s.hist),
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let mode = match (self.mode.as_str(), self.rate) {
            ("open", Some(r)) => format!(
                "open loop at {r:.0} req/s (latency counted from each request's intended send time: \
                 coordinated-omission corrected)"
            ),
            _ => "closed loop (each connection sends when its previous response arrived; latency from \
                  actual send: a stalled server hides in the tail)"
                .to_string(),
        };
        let _ = writeln!(o, "ringway-bench load {}", self.url);
        let _ = writeln!(o, "  mode:        {mode}");
        let conns = if self.protocol == "h2" {
            format!(
                "{} connections x {} streams (h2)",
                self.connections, self.streams
            )
        } else if self.new_connection_per_request {
            format!(
                "{} concurrent slots (http/1.1, a new connection per request)",
                self.connections
            )
        } else {
            format!("{} connections (http/1.1)", self.connections)
        };
        let _ = writeln!(
            o,
            "  load:        {conns}, {} workers, {:.1}s measured after {:.1}s warm-up",
            self.workers, self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            o,
            "  requests:    {} ({:.1} req/s), {} ({}/s), {} connects",
            self.requests,
            self.requests_per_sec,
            human_bytes(self.bytes as f64),
            human_bytes(self.bytes_per_sec),
            self.connects
        );
        if let Some(r) = self.rate {
            if self.requests_per_sec < 0.9 * r {
                let _ = writeln!(
                    o,
                    "  note:        achieved {:.0} req/s of the {r:.0} asked: the server (or too few \
                     connections) could not keep up, and the latencies show by how much",
                    self.requests_per_sec
                );
            }
        }
        let e = &self.errors.kinds;
        let _ = writeln!(
            o,
            "  errors:      {} total (connect {}, read {}, write {}, timeout {}, parse {}, status 4xx {}, 5xx {})",
            self.errors.total, e.connect, e.read, e.write, e.timeout, e.parse, e.status_4xx, e.status_5xx
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(o, "  first error: {e}");
        }
        let l = &self.latency_us;
        let _ = writeln!(
            o,
            "  latency:     p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.p999),
            fmt_us(l.p9999),
            fmt_us(l.max)
        );
        let _ = writeln!(
            o,
            "               mean {}  stdev {}  min {}",
            fmt_us(l.mean),
            fmt_us(l.stdev),
            fmt_us(l.min)
        );
        o
    }
}

/// `12.3 MiB`-style sizes.
pub fn human_bytes(b: f64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}
