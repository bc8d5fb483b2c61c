//! The aggregator: the control thread's side of stats. It holds every worker's `Arc<WorkerStats>`
//! (read with `Relaxed` loads), receives the workers' interval histograms ([`HistBatch`]) and
//! merges them into cumulative histograms, and turns all of it into a named [`Snapshot`].
//!
//! Merging happens every `stats_flush_interval` (a small control-side thread calls
//! [`Aggregator::merge_pending`]) and on every admin read ([`Aggregator::refresh`]: ask each
//! worker for its current interval over the control channel and wait, bounded, for the replies).
//! Nothing here runs on a worker.
//!
//! A reload starts a new generation of workers with its own aggregator; earlier generations'
//! counters are added by name ([`ProcessStats::retire_begin`]: read live while their workers
//! drain; [`ProcessStats::retire_end`]: their final values kept), so counters keep counting
//! across reloads as Envoy's do. Gauges are the current generation's, and latency histograms
//! start again with each generation.
//! Process-wide stats ([`ProcessStats`]: `config.reload_*`, `config.version`) live beside it.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use super::{
    cluster_hist_slot, get, listener_hist_slot, new_histogram, ClusterHist, HistBatch, WorkerStats,
};
use crate::{
    config::{Config, NetworkFilter},
    control::Control,
};

/// What a stat measures.
#[derive(Debug, Clone)]
pub enum Value {
    /// Only goes up (summed over workers).
    Counter(u64),
    /// Goes up and down (summed over workers).
    Gauge(u64),
    /// Latency, µs (merged over workers, since start).
    Histogram(Box<Histogram<u64>>),
}

/// The scope of a stat: the first part of its name, which becomes a label in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `listener.<address>.`
    Listener,
    /// `http.<stat_prefix>.`
    Http,
    /// `tcp.<stat_prefix>.`
    Tcp,
    /// `cluster.<name>.`
    Cluster,
    /// `worker.<n>.`
    Worker,
    /// `server.` (no label).
    Server,
    /// `config.` (no label): reloads and the config version.
    Config,
    /// `tracing.` (no label): the span exporter.
    Tracing,
}

impl Scope {
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Listener => "listener",
            Scope::Http => "http",
            Scope::Tcp => "tcp",
            Scope::Cluster => "cluster",
            Scope::Worker => "worker",
            Scope::Server => "server",
            Scope::Config => "config",
            Scope::Tracing => "tracing",
        }
    }
    /// The Prometheus label carrying the scope's value (Envoy's label names).
    pub fn label(self) -> Option<&'static str> {
        match self {
            Scope::Listener => Some("envoy_listener_address"),
            Scope::Http => Some("envoy_http_conn_manager_prefix"),
            Scope::Tcp => Some("envoy_tcp_prefix"),
            Scope::Cluster => Some("envoy_cluster_name"),
            Scope::Worker => Some("worker"),
            Scope::Server | Scope::Tracing | Scope::Config => None,
        }
    }
}

/// One named stat.
#[derive(Debug, Clone)]
pub struct Stat {
    pub scope: Scope,
    /// The scope's value (`origin`, `127.0.0.1_8080`, `0`); empty for `server`.
    pub scope_value: String,
    /// The stat's own name (`upstream_rq_total`).
    pub metric: &'static str,
    pub value: Value,
}

impl Stat {
    /// The dotted name: `cluster.origin.upstream_rq_total`.
    pub fn name(&self) -> String {
        if self.scope_value.is_empty() {
            format!("{}.{}", self.scope.prefix(), self.metric)
        } else {
            format!(
                "{}.{}.{}",
                self.scope.prefix(),
                self.scope_value,
                self.metric
            )
        }
    }
}

/// Every stat at one moment, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Vec<Stat>,
}

/// One endpoint's state per worker, for `/clusters`.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub address: SocketAddr,
    pub weight: u32,
    /// Envoy's `health_flags` text (`healthy`, `/failed_active_hc`, `/failed_outlier_check`).
    pub health_flags: &'static str,
    /// The last active check's result and HTTP status (`None`: not actively checked).
    pub last_check: Option<(&'static str, u16)>,
    /// Per worker: (requests in flight, requests total, idle pooled connections).
    pub per_worker: Vec<(u64, u64, u64)>,
}

/// One cluster's endpoints, for `/clusters`.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub name: String,
    pub endpoints: Vec<EndpointStatus>,
}

/// `outlier_detection.ejections_detected_<kind>` and `..._enforced_<kind>`, by `EjectKind`.
const EJECT_NAMES: [(&str, &str); 5] = [
    (
        "outlier_detection.ejections_detected_consecutive_5xx",
        "outlier_detection.ejections_enforced_consecutive_5xx",
    ),
    (
        "outlier_detection.ejections_detected_consecutive_gateway_failure",
        "outlier_detection.ejections_enforced_consecutive_gateway_failure",
    ),
    (
        "outlier_detection.ejections_detected_consecutive_local_origin_failure",
        "outlier_detection.ejections_enforced_consecutive_local_origin_failure",
    ),
    (
        "outlier_detection.ejections_detected_success_rate",
        "outlier_detection.ejections_enforced_success_rate",
    ),
    (
        "outlier_detection.ejections_detected_failure_percentage",
        "outlier_detection.ejections_enforced_failure_percentage",
    ),
];

/// Reads one counter of a worker's cluster block.
type ClusterGetter = fn(&super::ClusterStats) -> u64;
/// Reads one counter of a worker's `tcp_proxy` block.
type TcpGetter = fn(&super::TcpProxyStats) -> u64;
/// Reads one counter of a worker's HTTP/2 block.
type H2Getter = fn(&super::Http2Stats) -> u64;
/// Reads one counter of a worker's listener block.
type ListenerGetter = fn(&super::ListenerStats) -> u64;

struct Merged {
    /// Cumulative histograms, by slot.
    hists: Vec<Histogram<u64>>,
    /// The last `FlushStats` seq each worker answered.
    answered: Vec<u64>,
    next_seq: u64,
}

/// The control thread's view of every worker's stats.
pub struct Aggregator {
    config: Arc<Config>,
    /// Bound address of each listener (config order), for `listener.<addr>.` names.
    listener_addrs: Vec<SocketAddr>,
    workers: Vec<Arc<WorkerStats>>,
    rx: flume::Receiver<HistBatch>,
    merged: Mutex<Merged>,
    started: Instant,
    /// The trace exporter's counters, when tracing is configured.
    tracing: Option<Arc<crate::trace::TraceStats>>,
    /// Per worker: where merged histogram sets go back, emptied, for reuse.
    recycle: Vec<flume::Sender<Vec<Histogram<u64>>>>,
    /// Endpoint health shared with the health thread (health checks, outlier detection).
    health: Option<crate::endpoint_health::Board>,
    /// The process-wide stats, shown with this generation's.
    process: Mutex<Option<Arc<ProcessStats>>>,
}

/// Process-wide stats that outlive a generation of workers.
#[derive(Debug)]
pub struct ProcessStats {
    started: Instant,
    reload_success: std::sync::atomic::AtomicU64,
    reload_failed: std::sync::atomic::AtomicU64,
    version: std::sync::atomic::AtomicU64,
    hash: std::sync::atomic::AtomicU64,
    /// DNS clusters' lookup counters.
    dns: Mutex<Option<Arc<crate::dns::Dns>>>,
    /// The xDS client's counters.
    xds: Mutex<Option<Arc<crate::xds::Shared>>>,
    /// Earlier generations still draining (their counters are read live).
    retiring: Mutex<Vec<Arc<Aggregator>>>,
    /// The final counters of generations gone, by name.
    retired: Mutex<BTreeMap<String, Stat>>,
}

impl Default for ProcessStats {
    fn default() -> Self {
        ProcessStats {
            started: Instant::now(),
            reload_success: Default::default(),
            reload_failed: Default::default(),
            version: Default::default(),
            hash: Default::default(),
            dns: Mutex::new(None),
            xds: Mutex::new(None),
            retiring: Mutex::new(Vec::new()),
            retired: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ProcessStats {
    pub fn reload_success(&self) {
        self.reload_success
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn reload_failed(&self) {
        self.reload_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    /// The xDS client whose counters are `config.xds.*`.
    pub fn set_xds(&self, xds: Arc<crate::xds::Shared>) {
        *self.xds.lock().unwrap_or_else(|e| e.into_inner()) = Some(xds);
    }
    /// The xDS client, if one runs.
    pub fn xds(&self) -> Option<Arc<crate::xds::Shared>> {
        self.xds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// The config in force: its version (1 at start) and the hash of its file.
    pub fn set_version(&self, version: u64, hash: u64) {
        self.version
            .store(version, std::sync::atomic::Ordering::Relaxed);
        self.hash.store(hash, std::sync::atomic::Ordering::Relaxed);
    }
    /// A reload replaced `old`'s generation: its counters are added live while it drains.
    pub fn retire_begin(&self, old: Arc<Aggregator>) {
        self.retiring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(old);
    }

    /// `old`'s workers are gone: its final counters are kept, the rest let go.
    pub fn retire_end(&self, old: &Arc<Aggregator>) {
        let last = old.snapshot_inner(false);
        {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            for stat in last.stats {
                if let (Value::Counter(v), false) = (&stat.value, stat.scope == Scope::Server) {
                    match retired.entry(stat.name()) {
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(stat);
                        }
                        std::collections::btree_map::Entry::Occupied(mut e) => {
                            if let Value::Counter(a) = &mut e.get_mut().value {
                                *a += v;
                            }
                        }
                    }
                }
            }
        }
        self.retiring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a| !Arc::ptr_eq(a, old));
    }

    pub fn set_dns(&self, dns: Arc<crate::dns::Dns>) {
        *self.dns.lock().unwrap_or_else(|e| e.into_inner()) = Some(dns);
    }
    pub fn hash(&self) -> u64 {
        self.hash.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Since the process started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aggregator({} workers)", self.workers.len())
    }
}

/// `127.0.0.1:8080` → `127.0.0.1_8080` (Envoy's listener stat names); `[::1]:80` → `[__1]_80`.
pub fn sanitize_addr(addr: SocketAddr) -> String {
    addr.to_string().replace(':', "_")
}

impl Aggregator {
    pub fn new(
        config: Arc<Config>,
        listener_addrs: Vec<SocketAddr>,
        workers: Vec<Arc<WorkerStats>>,
        rx: flume::Receiver<HistBatch>,
        tracing: Option<Arc<crate::trace::TraceStats>>,
        recycle: Vec<flume::Sender<Vec<Histogram<u64>>>>,
        health: Option<crate::endpoint_health::Board>,
    ) -> Self {
        let slots = super::hist_slots(&config);
        let n = workers.len();
        Aggregator {
            config,
            listener_addrs,
            workers,
            rx,
            merged: Mutex::new(Merged {
                hists: (0..slots).map(|_| new_histogram()).collect(),
                answered: vec![0; n],
                next_seq: 0,
            }),
            started: Instant::now(),
            tracing,
            recycle,
            health,
            process: Mutex::new(None),
        }
    }

    /// Show the process-wide stats with this generation's.
    pub fn set_process(&self, p: Option<Arc<ProcessStats>>) {
        *self.process.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    pub fn process(&self) -> Option<Arc<ProcessStats>> {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Cluster `c`'s shared health (`None`: not health-checked).
    pub fn health(&self, c: usize) -> Option<&Arc<crate::endpoint_health::ClusterHealth>> {
        self.health.as_ref()?.get(c)?.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Merged> {
        self.merged.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn merge(&self, m: &mut Merged, mut b: HistBatch) {
        if let Some(a) = m.answered.get_mut(b.worker) {
            *a = (*a).max(b.seq);
        }
        for (into, from) in m.hists.iter_mut().zip(b.hists.iter_mut()) {
            if !from.is_empty() {
                let _ = into.add(&*from);
                from.reset();
            }
        }
        // Back to the worker, emptied (here, off the worker), for its next ship.
        if !b.hists.is_empty() {
            if let Some(tx) = self.recycle.get(b.worker) {
                let _ = tx.try_send(b.hists);
            }
        }
    }

    /// Merge every batch the workers have shipped so far (periodic flush).
    pub fn merge_pending(&self) {
        let mut m = self.lock();
        while let Ok(b) = self.rx.try_recv() {
            self.merge(&mut m, b);
        }
    }

    /// Ask every worker for its current interval and merge the replies, waiting at most `limit`.
    /// Returns how many workers answered in time.
    pub fn refresh(&self, controls: &[flume::Sender<Control>], limit: Duration) -> usize {
        let mut m = self.lock();
        while let Ok(b) = self.rx.try_recv() {
            self.merge(&mut m, b);
        }
        m.next_seq += 1;
        let seq = m.next_seq;
        for c in controls {
            let _ = c.send(Control::FlushStats { seq });
        }
        let until = Instant::now() + limit;
        loop {
            let answered = m.answered.iter().filter(|&&a| a >= seq).count();
            if answered >= controls.len() {
                return answered;
            }
            match self
                .rx
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(b) => self.merge(&mut m, b),
                Err(_) => return answered,
            }
        }
    }

    /// Seconds since the aggregator was built (process start, near enough).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn workers(&self) -> &[Arc<WorkerStats>] {
        &self.workers
    }

    pub fn listener_addrs(&self) -> &[SocketAddr] {
        &self.listener_addrs
    }

    /// Every stat, summed over workers, sorted by name. Stats with the same name (two listeners
    /// sharing a `stat_prefix`) are added together.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_inner(true)
    }

    /// `with_process`: the process-wide stats and earlier generations' counters too (without:
    /// this generation's own, as they are added into a newer one's).
    fn snapshot_inner(&self, with_process: bool) -> Snapshot {
        let hists = self.lock().hists.clone();
        let cfg = &self.config;
        let mut out: BTreeMap<String, Stat> = BTreeMap::new();
        let mut put = |scope: Scope, scope_value: &str, metric: &'static str, value: Value| {
            let stat = Stat {
                scope,
                scope_value: scope_value.to_owned(),
                metric,
                value,
            };
            match out.entry(stat.name()) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(stat);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    match (&mut o.get_mut().value, stat.value) {
                        (Value::Counter(a), Value::Counter(b))
                        | (Value::Gauge(a), Value::Gauge(b)) => *a += b,
                        (Value::Histogram(a), Value::Histogram(b)) => {
                            let _ = a.add(&*b);
                        }
                        _ => {}
                    }
                }
            }
        };
        let sum = |f: &dyn Fn(&WorkerStats) -> u64| self.workers.iter().map(|w| f(w)).sum::<u64>();
        const DOWN_XX: [&str; 5] = [
            "downstream_rq_1xx",
            "downstream_rq_2xx",
            "downstream_rq_3xx",
            "downstream_rq_4xx",
            "downstream_rq_5xx",
        ];
        const UP_XX: [&str; 5] = [
            "upstream_rq_1xx",
            "upstream_rq_2xx",
            "upstream_rq_3xx",
            "upstream_rq_4xx",
            "upstream_rq_5xx",
        ];

        let slots = super::StatSlots::new(cfg);
        for (i, l) in cfg.listeners.iter().enumerate() {
            let addr = self.listener_addrs.get(i).copied().unwrap_or(l.address);
            let a = sanitize_addr(addr);
            let ls = |f: fn(&super::ListenerStats) -> u64| {
                sum(&|w: &WorkerStats| w.listeners.get(i).map_or(0, f))
            };
            put(
                Scope::Listener,
                &a,
                "downstream_cx_total",
                Value::Counter(ls(|l| get(&l.downstream_cx_total))),
            );
            put(
                Scope::Listener,
                &a,
                "downstream_cx_active",
                Value::Gauge(ls(|l| get(&l.downstream_cx_active))),
            );
            put(
                Scope::Listener,
                &a,
                "downstream_cx_handoff",
                Value::Counter(ls(|l| get(&l.downstream_cx_handoff))),
            );
            if l.select.is_some() {
                let counters: [(&'static str, ListenerGetter); 5] = [
                    ("no_filter_chain_match", |l| get(&l.no_filter_chain_match)),
                    ("downstream_pre_cx_timeout", |l| {
                        get(&l.downstream_pre_cx_timeout)
                    }),
                    ("downstream_listener_filter_error", |l| {
                        get(&l.downstream_listener_filter_error)
                    }),
                    ("downstream_listener_filter_remote_close", |l| {
                        get(&l.downstream_listener_filter_remote_close)
                    }),
                    ("proxy_proto.not_found_allowed", |l| {
                        get(&l.proxy_proto_not_found_allowed)
                    }),
                ];
                for (name, f) in counters {
                    put(Scope::Listener, &a, name, Value::Counter(ls(f)));
                }
            }
            if l.networks().any(|n| n.tls().is_some()) {
                let counters: [(&'static str, ListenerGetter); 2] = [
                    ("ssl.handshake", |l| get(&l.ssl_handshake)),
                    ("ssl.connection_error", |l| get(&l.ssl_connection_error)),
                ];
                for (name, f) in counters {
                    put(Scope::Listener, &a, name, Value::Counter(ls(f)));
                }
            }
            // Each chain's network filter under its own `stat_prefix`, from its slot (chains
            // with the same kind and prefix share one; the same names from several slots add up).
            let mut done: Vec<usize> = Vec::new();
            for (n, &slot) in l.networks().zip(slots.of(i)) {
                // A slot's own counters once; each connection manager's filters' counters
                // (kept by the filters, not the slot) for every chain.
                let first = !done.contains(&slot);
                done.push(slot);
                let at = |f: &dyn Fn(&super::ListenerStats) -> u64| {
                    sum(&|w: &WorkerStats| w.listeners.get(slot).map_or(0, f))
                };
                let hist = hists.get(listener_hist_slot(slot));
                match n {
                    NetworkFilter::TcpProxy(_) if !first => {}
                    NetworkFilter::TcpProxy(t) => {
                        let p = &t.stat_prefix;
                        let counters: [(&'static str, TcpGetter); 5] = [
                            ("downstream_cx_total", |t| get(&t.downstream_cx_total)),
                            ("downstream_cx_no_route", |t| get(&t.downstream_cx_no_route)),
                            ("downstream_cx_rx_bytes_total", |t| {
                                get(&t.downstream_cx_rx_bytes_total)
                            }),
                            ("downstream_cx_tx_bytes_total", |t| {
                                get(&t.downstream_cx_tx_bytes_total)
                            }),
                            ("idle_timeout", |t| get(&t.idle_timeout)),
                        ];
                        for (name, f) in counters {
                            put(Scope::Tcp, p, name, Value::Counter(at(&|l| f(&l.tcp))));
                        }
                        if let Some(h) = hist {
                            let h = Value::Histogram(Box::new(h.clone()));
                            put(Scope::Tcp, p, "downstream_cx_length", h);
                        }
                    }
                    NetworkFilter::Http(http) => {
                        let p = &http.stat_prefix;
                        if first {
                            let total = at(&|l| get(&l.downstream_rq_total));
                            put(Scope::Http, p, "downstream_rq_total", Value::Counter(total));
                            for (k, name) in DOWN_XX.iter().enumerate() {
                                let v = at(&|l| get(&l.downstream_rq_xx[k]));
                                put(Scope::Http, p, name, Value::Counter(v));
                            }
                            if let Some(h) = hist {
                                let h = Value::Histogram(Box::new(h.clone()));
                                put(Scope::Http, p, "downstream_rq_time", h);
                            }
                            if http.codec.h2() {
                                let counters: [(&'static str, H2Getter); 6] = [
                                    ("downstream_cx_http2_total", |h| get(&h.cx_total)),
                                    ("downstream_rq_http2_total", |h| get(&h.rq_total)),
                                    ("http2.rx_reset", |h| get(&h.rx_reset)),
                                    ("downstream_rq_too_many_premature_resets", |h| {
                                        get(&h.too_many_resets)
                                    }),
                                    ("http2.connection_error", |h| get(&h.connection_error)),
                                    ("http2.keepalive_timeout", |h| get(&h.keepalive_timeout)),
                                ];
                                for (name, f) in counters {
                                    put(Scope::Http, p, name, Value::Counter(at(&|l| f(&l.h2))));
                                }
                            }
                        }
                        // The HTTP filters' counters (each filter config sums its workers'
                        // blocks; route overrides count under the same names).
                        for config in filter_configs(http) {
                            for (name, v) in config.stats() {
                                let value = if config.is_gauge(&name) {
                                    Value::Gauge(v)
                                } else {
                                    Value::Counter(v)
                                };
                                put(Scope::Http, p, intern(name), value);
                            }
                        }
                    }
                }
            }
        }

        for (c, cl) in cfg.clusters.iter().enumerate() {
            let n = &cl.name;
            let cs = |f: fn(&super::ClusterStats) -> u64| {
                sum(&|w: &WorkerStats| w.clusters.get(c).map_or(0, f))
            };
            let counters: [(&'static str, ClusterGetter); 13] = [
                ("upstream_cx_total", |s| get(&s.upstream_cx_total)),
                ("upstream_cx_connect_fail", |s| {
                    get(&s.upstream_cx_connect_fail)
                }),
                ("upstream_cx_connect_attempts_exceeded", |s| {
                    get(&s.upstream_cx_connect_attempts_exceeded)
                }),
                ("upstream_cx_pool_reuse", |s| get(&s.upstream_cx_pool_reuse)),
                ("upstream_rq_total", |s| get(&s.upstream_rq_total)),
                ("upstream_rq_timeout", |s| get(&s.upstream_rq_timeout)),
                ("upstream_rq_retry", |s| get(&s.upstream_rq_retry)),
                ("upstream_rq_retry_success", |s| {
                    get(&s.upstream_rq_retry_success)
                }),
                ("upstream_rq_retry_overflow", |s| {
                    get(&s.upstream_rq_retry_overflow)
                }),
                ("upstream_rq_retry_limit_exceeded", |s| {
                    get(&s.upstream_rq_retry_limit_exceeded)
                }),
                ("upstream_rq_per_try_timeout", |s| {
                    get(&s.upstream_rq_per_try_timeout)
                }),
                ("upstream_rq_pending_overflow", |s| {
                    get(&s.upstream_rq_pending_overflow)
                }),
                ("upstream_cx_overflow", |s| get(&s.upstream_cx_overflow)),
            ];
            for (name, f) in counters {
                put(Scope::Cluster, n, name, Value::Counter(cs(f)));
            }
            if cl.tls.is_some() {
                let ssl: [(&'static str, ClusterGetter); 2] = [
                    ("ssl.handshake", |s| get(&s.ssl_handshake)),
                    ("ssl.connection_error", |s| get(&s.ssl_connection_error)),
                ];
                for (name, f) in ssl {
                    put(Scope::Cluster, n, name, Value::Counter(cs(f)));
                }
            }
            for (k, name) in UP_XX.iter().enumerate() {
                let v = sum(&|w: &WorkerStats| {
                    w.clusters.get(c).map_or(0, |s| get(&s.upstream_rq_xx[k]))
                });
                put(Scope::Cluster, n, name, Value::Counter(v));
            }
            let rq_active = cs(|s| s.endpoints.iter().map(|e| get(&e.rq_active)).sum());
            let idle = cs(|s| s.endpoints.iter().map(|e| get(&e.cx_idle)).sum());
            put(
                Scope::Cluster,
                n,
                "upstream_rq_active",
                Value::Gauge(rq_active),
            );
            put(
                Scope::Cluster,
                n,
                "upstream_cx_active",
                Value::Gauge(rq_active + idle),
            );
            put(Scope::Cluster, n, "upstream_cx_idle", Value::Gauge(idle));
            if cl.breakers.track_remaining {
                // Envoy's `circuit_breakers.default.remaining_*`, for the whole process.
                let b = &cl.breakers;
                let rem =
                    |limit: u32, used: u64| Value::Gauge(u64::from(limit).saturating_sub(used));
                let pending = cs(|s| get(&s.upstream_rq_pending_active));
                let retries = cs(|s| get(&s.upstream_rq_retry_active));
                for (name, v) in [
                    (
                        "circuit_breakers.default.remaining_cx",
                        rem(b.max_connections, rq_active + idle),
                    ),
                    (
                        "circuit_breakers.default.remaining_pending",
                        rem(b.max_pending_requests, pending),
                    ),
                    (
                        "circuit_breakers.default.remaining_rq",
                        rem(b.max_requests, rq_active),
                    ),
                    (
                        "circuit_breakers.default.remaining_retries",
                        rem(b.max_retries, retries),
                    ),
                ] {
                    put(Scope::Cluster, n, name, v);
                }
            }
            if let Some(h) = self.health(c) {
                self.health_stats(c, h, &mut |name, v| put(Scope::Cluster, n, name, v));
            }
            for kind in ClusterHist::ALL {
                if let Some(h) = hists.get(cluster_hist_slot(slots.count(), c, kind)) {
                    put(
                        Scope::Cluster,
                        n,
                        kind.name(),
                        Value::Histogram(Box::new(h.clone())),
                    );
                }
            }
        }

        for w in &self.workers {
            let id = w.id.to_string();
            for (name, v) in [
                (
                    "downstream_cx_total",
                    Value::Counter(get(&w.downstream_cx_total)),
                ),
                (
                    "downstream_cx_active",
                    Value::Gauge(get(&w.downstream_cx_active)),
                ),
                (
                    "downstream_rq_total",
                    Value::Counter(get(&w.downstream_rq_total)),
                ),
                (
                    "upstream_rq_total",
                    Value::Counter(get(&w.upstream_rq_total)),
                ),
                ("body_bulk_runs", Value::Counter(get(&w.body_bulk_runs))),
                (
                    "body_bulk_no_buffer",
                    Value::Counter(get(&w.body_bulk_no_buffer)),
                ),
                (
                    "recv_multishot_armed",
                    Value::Counter(get(&w.recv_multishot_armed)),
                ),
                (
                    "recv_multishot_capped",
                    Value::Counter(get(&w.recv_multishot_capped)),
                ),
                ("recv_no_buffer", Value::Counter(get(&w.recv_no_buffer))),
                (
                    "downstream_cx_parked",
                    Value::Gauge(get(&w.downstream_cx_parked)),
                ),
                (
                    "downstream_cx_park_total",
                    Value::Counter(get(&w.downstream_cx_park_total)),
                ),
            ] {
                put(Scope::Worker, &id, name, v);
            }
        }
        put(
            Scope::Server,
            "",
            "uptime",
            Value::Gauge(self.started.elapsed().as_secs()),
        );
        put(
            Scope::Server,
            "",
            "concurrency",
            Value::Gauge(self.workers.len() as u64),
        );
        // Which I/O driver the workers run on: 1 on the one in use.
        let epoll = crate::io::driver() == crate::io::IoDriver::Epoll;
        put(
            Scope::Server,
            "",
            "io_driver.io_uring",
            Value::Gauge(u64::from(!epoll)),
        );
        put(
            Scope::Server,
            "",
            "io_driver.epoll",
            Value::Gauge(u64::from(epoll)),
        );
        if let Some(t) = &self.tracing {
            for (metric, c) in [
                ("spans_sent", &t.spans_sent),
                ("spans_dropped", &t.spans_dropped),
                ("reports_sent", &t.reports_sent),
                ("reports_failed", &t.reports_failed),
            ] {
                put(Scope::Tracing, "", metric, Value::Counter(get(c)));
            }
        }
        if with_process {
            if let Some(p) = self.process() {
                let load =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                put(
                    Scope::Config,
                    "",
                    "reload_success",
                    Value::Counter(load(&p.reload_success)),
                );
                put(
                    Scope::Config,
                    "",
                    "reload_failed",
                    Value::Counter(load(&p.reload_failed)),
                );
                put(Scope::Config, "", "version", Value::Gauge(load(&p.version)));
                if let Some(x) = p.xds() {
                    let st = &x.stats;
                    put(
                        Scope::Config,
                        "",
                        "xds.connected_state",
                        Value::Gauge(load(&st.connected)),
                    );
                    for (metric, c) in [
                        ("xds.connect_fail", &st.connect_fail),
                        ("xds.update_success", &st.update_success),
                        ("xds.update_rejected", &st.update_rejected),
                    ] {
                        put(Scope::Config, "", metric, Value::Counter(load(c)));
                    }
                }
                let dns = p.dns.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(dns) = dns {
                    let stats = dns.stats.lock().unwrap_or_else(|e| e.into_inner());
                    for (name, st) in stats.iter() {
                        for (metric, c) in [
                            ("update_attempt", &st.attempt),
                            ("update_success", &st.success),
                            ("update_failure", &st.failure),
                        ] {
                            put(Scope::Cluster, name, metric, Value::Counter(load(c)));
                        }
                    }
                }
            }
        }
        // Earlier generations' counters, by name (gauges and `server.*` are this generation's).
        if let (true, Some(p)) = (with_process, self.process()) {
            let retiring = p.retiring.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut earlier: Vec<Stat> = retiring
                .iter()
                .flat_map(|a| a.snapshot_inner(false).stats)
                .collect();
            earlier.extend(
                p.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned(),
            );
            for stat in earlier {
                if stat.scope == Scope::Server || !matches!(stat.value, Value::Counter(_)) {
                    continue;
                }
                put(stat.scope, &stat.scope_value, stat.metric, stat.value);
            }
        }
        Snapshot {
            stats: out.into_values().collect(),
        }
    }

    /// A health-checked cluster's stats, Envoy's names: `health_check.*`, `outlier_detection.*`,
    /// `membership_*`, `lb_healthy_panic`.
    fn health_stats(
        &self,
        c: usize,
        h: &crate::endpoint_health::ClusterHealth,
        put: &mut dyn FnMut(&'static str, Value),
    ) {
        use crate::endpoint_health::{EjectKind, FAILED_ACTIVE_HC};
        let s = &h.stats;
        let total = h.hosts.len() as u64;
        let healthy = h.healthy_count() as u64;
        put("membership_total", Value::Gauge(total));
        put("membership_healthy", Value::Gauge(healthy));
        let panic = self
            .workers
            .iter()
            .map(|w| w.clusters.get(c).map_or(0, |s| get(&s.lb_healthy_panic)))
            .sum();
        put("lb_healthy_panic", Value::Counter(panic));
        if h.active {
            let passing = h
                .hosts
                .iter()
                .filter(|x| {
                    x.flags.load(std::sync::atomic::Ordering::Relaxed) & FAILED_ACTIVE_HC == 0
                })
                .count() as u64;
            put("health_check.healthy", Value::Gauge(passing));
            put("health_check.attempt", Value::Counter(get(&s.attempt)));
            put("health_check.success", Value::Counter(get(&s.success)));
            put("health_check.failure", Value::Counter(get(&s.failure)));
            put(
                "health_check.network_failure",
                Value::Counter(get(&s.network_failure)),
            );
        }
        if self
            .config
            .clusters
            .get(c)
            .is_some_and(|cl| cl.outlier.is_some())
        {
            put(
                "outlier_detection.ejections_active",
                Value::Gauge(get(&s.ejections_active)),
            );
            put(
                "outlier_detection.ejections_total",
                Value::Counter(get(&s.ejections_total)),
            );
            put(
                "outlier_detection.ejections_enforced_total",
                Value::Counter(get(&s.ejections_enforced_total)),
            );
            put(
                "outlier_detection.ejections_overflow",
                Value::Counter(get(&s.ejections_overflow)),
            );
            for k in EjectKind::ALL {
                let (detected, enforced) = EJECT_NAMES[k as usize];
                put(detected, Value::Counter(get(&s.detected[k as usize])));
                put(enforced, Value::Counter(get(&s.enforced[k as usize])));
            }
        }
    }

    /// Every cluster's endpoints with their per-worker state.
    pub fn clusters(&self) -> Vec<ClusterStatus> {
        self.config
            .clusters
            .iter()
            .enumerate()
            .map(|(c, cl)| ClusterStatus {
                name: cl.name.clone(),
                endpoints: cl
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(e, ep)| EndpointStatus {
                        address: ep.address,
                        weight: ep.weight,
                        health_flags: self.health(c).map_or("healthy", |h| h.flags_text(e)),
                        last_check: self.health(c).filter(|h| h.active).and_then(|h| {
                            let host = h.hosts.get(e)?;
                            let r = crate::endpoint_health::CheckResult::from_u8(
                                host.last_check.load(std::sync::atomic::Ordering::Relaxed),
                            );
                            Some((
                                r.name(),
                                host.last_status.load(std::sync::atomic::Ordering::Relaxed),
                            ))
                        }),
                        per_worker: self
                            .workers
                            .iter()
                            .map(|w| {
                                w.clusters
                                    .get(c)
                                    .and_then(|s| s.endpoints.get(e))
                                    .map_or((0, 0, 0), |s| {
                                        (get(&s.rq_active), get(&s.rq_total), get(&s.cx_idle))
                                    })
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Every filter config of a connection manager: its chain's and the routes' and virtual hosts'
/// overrides.
fn filter_configs(
    hcm: &crate::config::HttpConnManager,
) -> Vec<&std::sync::Arc<dyn ringway_filters::FilterConfig>> {
    use crate::config::PerFilterAction;
    let mut out: Vec<&std::sync::Arc<dyn ringway_filters::FilterConfig>> =
        hcm.http_filters.iter().map(|f| &f.config).collect();
    for vh in &hcm.virtual_hosts {
        let overrides = vh
            .per_filter
            .iter()
            .chain(vh.routes.iter().flat_map(|r| r.per_filter.iter()));
        for o in overrides {
            if let PerFilterAction::Config(c) = &o.action {
                out.push(c);
            }
        }
    }
    out
}

/// A filter's stat name as the `'static` name a [`Stat`] holds: each distinct name is leaked
/// once (names come from the config, so they are few).
fn intern(name: String) -> &'static str {
    use std::collections::HashSet;
    static NAMES: std::sync::OnceLock<std::sync::Mutex<HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let set = NAMES.get_or_init(Default::default);
    let Ok(mut set) = set.lock() else {
        return "filter_stat";
    };
    if let Some(n) = set.get(name.as_str()) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    set.insert(leaked);
    leaked
}
