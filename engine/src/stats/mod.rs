//! Stats: counters, gauges and histograms, recorded per worker and merged on the control thread.
//!
//! Each worker owns one [`WorkerStats`] block, built from the config before the worker starts and
//! shared with the control thread as an `Arc`: its counters and gauges are `AtomicU64`s that only
//! that worker writes (`Relaxed` load + store, no locked instruction, no contention); the control
//! thread only reads them. Every place on the request path is resolved to an index at build time
//! (listener index, cluster id, endpoint index), so recording is a handful of plain atomic stores
//! into a pre-indexed block: no string, no map, no lock, no allocation.
//!
//! Latency histograms live in the worker ([`WorkerHistograms`], `RefCell<hdrhistogram>`,
//! microseconds). On every `stats_flush_interval` tick, and whenever the control thread asks
//! ([`Control::FlushStats`](crate::control::Control::FlushStats), sent by an admin read), the
//! worker ships the interval's copies ([`HistBatch`]) over a flume channel and starts a fresh
//! interval. The [`aggregate::Aggregator`] on the control side merges them into cumulative
//! histograms and sums the workers' blocks into named stats ([`aggregate::Snapshot`]), which the
//! admin server renders as text, JSON or Prometheus.
//!
//! ```text
//! worker k: conn_manager / stream_done ──Relaxed stores──▶ Arc<WorkerStats> ◀──reads── aggregator
//!           stream_done ──record──▶ RefCell<Histogram>s ──HistBatch (flume)──▶ aggregator (merge)
//! ```

pub mod aggregate;
pub mod format;

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Instant,
};

use hdrhistogram::Histogram;

use crate::{
    config::{Config, NetworkFilter},
    stream_info::StreamInfo,
};

/// Add one to a counter or gauge written by this thread only (no read-modify-write instruction:
/// the single writer makes a plain load + store exact).
#[inline]
pub fn inc(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Add `n` to a counter written by this thread only (see [`inc`]).
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtract one from a single-writer gauge (never below zero).
#[inline]
pub fn dec(c: &AtomicU64) {
    c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
}

/// Read a counter or gauge (any thread).
#[inline]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

/// Response status classes `1xx..5xx` (index 0..=4); other codes are not counted by class.
#[inline]
fn class(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100) - 1),
        _ => None,
    }
}

/// One listener and its HTTP connection manager, as one worker counts them.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// `listener.<addr>.downstream_cx_total`
    pub downstream_cx_total: AtomicU64,
    /// `listener.<addr>.downstream_cx_active`
    pub downstream_cx_active: AtomicU64,
    /// `listener.<addr>.downstream_cx_handoff`: connections this worker accepted and handed to
    /// a less loaded worker (exact balance); they count in the receiver's `downstream_cx_total`.
    pub downstream_cx_handoff: AtomicU64,
    /// `listener.<addr>.no_filter_chain_match`: connections closed because no filter chain
    /// (and no default chain) matched them.
    pub no_filter_chain_match: AtomicU64,
    /// `listener.<addr>.downstream_pre_cx_timeout`: connections closed because the listener
    /// filters did not get what they need within `listener_filters_timeout`.
    pub downstream_pre_cx_timeout: AtomicU64,
    /// `listener.<addr>.downstream_listener_filter_error`: connections closed for a malformed
    /// PROXY header or ClientHello.
    pub downstream_listener_filter_error: AtomicU64,
    /// `listener.<addr>.downstream_listener_filter_remote_close`: connections the client closed
    /// before the listener filters were done.
    pub downstream_listener_filter_remote_close: AtomicU64,
    /// `listener.<addr>.ssl.handshake`: TLS handshakes completed.
    pub ssl_handshake: AtomicU64,
    /// `listener.<addr>.ssl.connection_error`: TLS handshakes that failed or timed out (the
    /// connection was closed).
    pub ssl_connection_error: AtomicU64,
    /// `listener.<addr>.proxy_proto.not_found_allowed`: connections without a PROXY header
    /// served as is (`allow_requests_without_proxy_protocol`).
    pub proxy_proto_not_found_allowed: AtomicU64,
    /// `http.<stat_prefix>.downstream_rq_total`
    pub downstream_rq_total: AtomicU64,
    /// `http.<stat_prefix>.downstream_rq_1xx` .. `_5xx`
    pub downstream_rq_xx: [AtomicU64; 5],
    /// `tcp.<stat_prefix>.*`, for a listener whose network filter is `tcp_proxy`.
    pub tcp: TcpProxyStats,
    /// `http.<stat_prefix>.*` of HTTP/2 clients.
    pub h2: Http2Stats,
}

/// HTTP/2 from clients, under `http.<stat_prefix>.` (Envoy's names where Envoy has one).
#[derive(Debug, Default)]
pub struct Http2Stats {
    /// `downstream_cx_http2_total`: connections that spoke HTTP/2.
    pub cx_total: AtomicU64,
    /// `downstream_rq_http2_total`: requests (streams) over HTTP/2.
    pub rq_total: AtomicU64,
    /// `http2.rx_reset`: streams the client reset before their response ended (those reset
    /// before the proxy looked at them never reach routing or an upstream).
    pub rx_reset: AtomicU64,
    /// `downstream_rq_too_many_premature_resets`: connections closed with GOAWAY
    /// ENHANCE_YOUR_CALM because the client reset most of its streams (Rapid Reset).
    pub too_many_resets: AtomicU64,
    /// `http2.connection_error`: connections that ended in an HTTP/2 error (a flood or
    /// protocol limit `h2` enforces, a malformed frame, a header list over the limit).
    pub connection_error: AtomicU64,
    /// `http2.keepalive_timeout`: connections closed because the client did not answer a
    /// keep-alive PING (`connection_keepalive`).
    pub keepalive_timeout: AtomicU64,
}

/// A `tcp_proxy` network filter's counters (Envoy's names, under `tcp.<stat_prefix>.`).
#[derive(Debug, Default)]
pub struct TcpProxyStats {
    /// `downstream_cx_total`: connections the filter handled.
    pub downstream_cx_total: AtomicU64,
    /// `downstream_cx_no_route`: connections closed because the cluster was not found.
    pub downstream_cx_no_route: AtomicU64,
    /// `downstream_cx_rx_bytes_total`: bytes read from downstream (and written upstream).
    pub downstream_cx_rx_bytes_total: AtomicU64,
    /// `downstream_cx_tx_bytes_total`: bytes written to downstream.
    pub downstream_cx_tx_bytes_total: AtomicU64,
    /// `idle_timeout`: connections closed by `idle_timeout`.
    pub idle_timeout: AtomicU64,
}

/// One upstream endpoint of a cluster, as one worker sees it (read by `/clusters`).
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Requests in flight from this worker to the endpoint.
    pub rq_active: AtomicU64,
    /// Requests sent to the endpoint by this worker.
    pub rq_total: AtomicU64,
    /// Idle keep-alive connections this worker holds to the endpoint.
    pub cx_idle: AtomicU64,
    /// Exchanges outlier detection counted as errors (5xx, and local failures unless split).
    pub rq_error: AtomicU64,
}

/// One cluster, as one worker counts it.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    /// `tcp_proxy` connections given up after `max_connect_attempts` failed connects.
    pub upstream_cx_connect_attempts_exceeded: AtomicU64,
    pub upstream_cx_pool_reuse: AtomicU64,
    pub upstream_rq_total: AtomicU64,
    pub upstream_rq_timeout: AtomicU64,
    pub upstream_rq_retry: AtomicU64,
    /// Retried requests that ended with a response (`upstream_rq_retry_success`).
    pub upstream_rq_retry_success: AtomicU64,
    /// Retries the retry breaker or budget refused.
    pub upstream_rq_retry_overflow: AtomicU64,
    /// Retries called for after `num_retries` were used up.
    pub upstream_rq_retry_limit_exceeded: AtomicU64,
    /// Tries given up at `per_try_timeout`.
    pub upstream_rq_per_try_timeout: AtomicU64,
    /// Requests refused by `max_requests` or `max_pending_requests`.
    pub upstream_rq_pending_overflow: AtomicU64,
    /// New connections `max_connections` held back.
    pub upstream_cx_overflow: AtomicU64,
    /// Requests waiting for a connection now (a gauge; shared with the worker's breakers).
    pub upstream_rq_pending_active: Arc<AtomicU64>,
    /// Retries in flight now (a gauge; shared with the worker's breakers).
    pub upstream_rq_retry_active: Arc<AtomicU64>,
    /// `upstream_rq_1xx` .. `_5xx`: statuses the upstream answered with.
    pub upstream_rq_xx: [AtomicU64; 5],
    /// TLS clusters: upstream handshakes completed (`ssl.handshake`) and failed
    /// (`ssl.connection_error`: refused certificate, not TLS, timed out).
    pub ssl_handshake: AtomicU64,
    pub ssl_connection_error: AtomicU64,
    /// Picks made in panic mode (too few healthy endpoints: every endpoint took traffic).
    /// Shared with the worker's `ClusterView`.
    pub lb_healthy_panic: Arc<AtomicU64>,
    /// Per endpoint, in config order; shared with the worker's `EndpointView`s.
    pub endpoints: Vec<Arc<EndpointStats>>,
}

/// One worker's counters and gauges. Written only by that worker; read by the control thread.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub id: usize,
    /// `worker.<n>.downstream_cx_total`
    pub downstream_cx_total: AtomicU64,
    /// `worker.<n>.downstream_cx_active`
    pub downstream_cx_active: AtomicU64,
    /// `worker.<n>.downstream_rq_total`
    pub downstream_rq_total: AtomicU64,
    /// `worker.<n>.upstream_rq_total`
    pub upstream_rq_total: AtomicU64,
    /// `worker.<n>.body_bulk_runs`: times a body went to 1 MiB pieces (`http::bulk`).
    pub body_bulk_runs: AtomicU64,
    /// `worker.<n>.body_bulk_no_buffer`: times a body would have, but every bulk buffer of the
    /// worker was leased (it stayed on 16 KiB pieces).
    pub body_bulk_no_buffer: AtomicU64,
    /// `worker.<n>.recv_multishot_armed`: multishot receives armed (`io::multi`).
    pub recv_multishot_armed: AtomicU64,
    /// `worker.<n>.recv_multishot_capped`: receives that reached their limit of
    /// `io::multi::MULTI_CAP` buffers; the next one waited for the reader (backpressure).
    pub recv_multishot_capped: AtomicU64,
    /// `worker.<n>.recv_no_buffer`: reads that found every provided buffer in use and used a
    /// one-off buffer.
    pub recv_no_buffer: AtomicU64,
    /// `worker.<n>.downstream_cx_parked`: idle keep-alive connections parked now (gauge;
    /// `http::park`). They are still in `downstream_cx_active`.
    pub downstream_cx_parked: AtomicU64,
    /// `worker.<n>.downstream_cx_park_total`: times a connection was parked.
    pub downstream_cx_park_total: AtomicU64,
    /// Indexed by stats slot ([`StatSlots`]): `Config::listeners` first (each listener's own
    /// counters, and its first filter chain's `http.`/`tcp.` ones), then the further chains
    /// whose stats need a slot of their own (only their `http.`/`tcp.` fields are used).
    pub listeners: Vec<ListenerStats>,
    /// Indexed by `ClusterId`.
    pub clusters: Vec<ClusterStats>,
}

impl WorkerStats {
    /// The block for worker `id`, shaped after the config.
    pub fn new(id: usize, cfg: &Config) -> Self {
        WorkerStats {
            id,
            listeners: (0..StatSlots::new(cfg).count())
                .map(|_| ListenerStats::default())
                .collect(),
            clusters: cfg
                .clusters
                .iter()
                .map(|c| ClusterStats {
                    endpoints: c
                        .endpoints
                        .iter()
                        .map(|_| Arc::new(EndpointStats::default()))
                        .collect(),
                    ..ClusterStats::default()
                })
                .collect(),
            ..WorkerStats::default()
        }
    }

    /// A downstream connection opened on listener `listener`; the guard counts it active.
    #[inline]
    pub fn downstream_cx(&self, listener: usize) -> CxGuard<'_> {
        inc(&self.downstream_cx_total);
        inc(&self.downstream_cx_active);
        let l = self.listeners.get(listener);
        if let Some(l) = l {
            inc(&l.downstream_cx_total);
            inc(&l.downstream_cx_active);
        }
        CxGuard { w: self, l }
    }

    /// The guard of a connection that was counted when it was accepted, parked (its guard
    /// forgotten, see [`CxGuard::park`]) and now resumes: nothing is counted again.
    pub fn downstream_cx_resume(&self, listener: usize) -> CxGuard<'_> {
        CxGuard {
            w: self,
            l: self.listeners.get(listener),
        }
    }

    /// A parked connection closed without resuming (what its guard's drop would have done).
    pub fn downstream_cx_parked_end(&self, listener: usize) {
        drop(self.downstream_cx_resume(listener));
    }

    /// A connection accepted on listener `listener` went to another worker (exact balance).
    #[inline]
    pub fn downstream_cx_handoff(&self, listener: usize) {
        if let Some(l) = self.listeners.get(listener) {
            inc(&l.downstream_cx_handoff);
        }
    }

    /// A complete request head arrived on listener `listener`.
    #[inline]
    pub fn downstream_rq(&self, listener: usize) {
        inc(&self.downstream_rq_total);
        if let Some(l) = self.listeners.get(listener) {
            inc(&l.downstream_rq_total);
        }
    }

    /// A request is being forwarded to endpoint `endpoint` of cluster `cluster`.
    #[inline]
    pub fn upstream_rq(&self, cluster: usize, endpoint: usize) {
        inc(&self.upstream_rq_total);
        if let Some(c) = self.clusters.get(cluster) {
            inc(&c.upstream_rq_total);
            if let Some(e) = c.endpoints.get(endpoint) {
                inc(&e.rq_total);
            }
        }
    }

    /// An upstream answered `status` to a request no stream counts (a mirrored copy).
    #[inline]
    pub fn upstream_status(&self, cluster: usize, status: u16) {
        if let (Some(c), Some(k)) = (self.clusters.get(cluster), class(status)) {
            inc(&c.upstream_rq_xx[k]);
        }
    }

    /// The cluster's block (`None` only for an id outside the config).
    #[inline]
    pub fn cluster(&self, cluster: usize) -> Option<&ClusterStats> {
        self.clusters.get(cluster)
    }

    /// A request's exchange ended: count its status (downstream and, when the upstream answered,
    /// upstream) and a route timeout.
    #[inline]
    pub fn stream_done(&self, listener: usize, si: &StreamInfo) {
        let cls = class(si.status);
        if let (Some(l), Some(k)) = (self.listeners.get(listener), cls) {
            inc(&l.downstream_rq_xx[k]);
        }
        let Some(c) = si.cluster.and_then(|c| self.clusters.get(c)) else {
            return;
        };
        match si.local_reason {
            None => {
                if let Some(k) = cls {
                    inc(&c.upstream_rq_xx[k]);
                }
            }
            Some(crate::error::LocalReason::UpstreamTimeout) => inc(&c.upstream_rq_timeout),
            Some(_) => {}
        }
    }
}

/// Counts a downstream connection active until dropped.
pub struct CxGuard<'a> {
    w: &'a WorkerStats,
    l: Option<&'a ListenerStats>,
}

impl CxGuard<'_> {
    /// The connection is parked (`http::park`): it stays counted as active, and its end is
    /// counted by [`WorkerStats::downstream_cx_resume`]'s guard or
    /// [`WorkerStats::downstream_cx_parked_end`].
    pub fn park(self) {
        std::mem::forget(self);
    }
}

impl Drop for CxGuard<'_> {
    fn drop(&mut self) {
        dec(&self.w.downstream_cx_active);
        if let Some(l) = self.l {
            dec(&l.downstream_cx_active);
        }
    }
}

/// The histograms of one cluster, in their order within a cluster's slot range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterHist {
    /// `upstream_rq_time`: upstream connection ready → last response byte sent to the client.
    RqTime = 0,
    /// `upstream_rq_connect_time`: request head received → upstream connection ready (pooled or
    /// newly connected).
    ConnectTime = 1,
    /// `upstream_rq_send_time`: upstream connection ready → request (head and body) written.
    SendTime = 2,
    /// `upstream_rq_first_byte_time`: request written → first response byte read.
    FirstByteTime = 3,
    /// `upstream_rq_response_time`: first response byte → last byte written to the client.
    ResponseTime = 4,
}

impl ClusterHist {
    pub const ALL: [ClusterHist; 5] = [
        ClusterHist::RqTime,
        ClusterHist::ConnectTime,
        ClusterHist::SendTime,
        ClusterHist::FirstByteTime,
        ClusterHist::ResponseTime,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ClusterHist::RqTime => "upstream_rq_time",
            ClusterHist::ConnectTime => "upstream_rq_connect_time",
            ClusterHist::SendTime => "upstream_rq_send_time",
            ClusterHist::FirstByteTime => "upstream_rq_first_byte_time",
            ClusterHist::ResponseTime => "upstream_rq_response_time",
        }
    }
}

/// Histograms per cluster.
pub const CLUSTER_HISTS: usize = 5;
/// Highest value a histogram tracks, µs (an hour); larger values are clamped.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant figures kept (2: values within 1%).
const HIST_SIGFIG: u8 = 2;

/// A fresh, empty latency histogram (µs).
fn new_set(n: usize) -> Vec<Histogram<u64>> {
    (0..n).map(|_| new_histogram()).collect()
}

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid.
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).unwrap_or_else(|_| {
        Histogram::new(HIST_SIGFIG).unwrap_or_else(|_| unreachable!("valid sigfig"))
    })
}

/// Histogram slot of stats slot `l` ([`StatSlots`]): its `downstream_rq_time` (HTTP) or
/// `downstream_cx_length` (`tcp_proxy`).
pub fn listener_hist_slot(l: usize) -> usize {
    l
}

/// Slot of cluster `c`'s histogram `h`, in a layout with `listeners` stats slots.
pub fn cluster_hist_slot(listeners: usize, c: usize, h: ClusterHist) -> usize {
    listeners + c * CLUSTER_HISTS + h as usize
}

/// Number of histogram slots for a config.
pub fn hist_slots(cfg: &Config) -> usize {
    StatSlots::new(cfg).count() + cfg.clusters.len() * CLUSTER_HISTS
}

/// Where each filter chain's `http.<stat_prefix>.` / `tcp.<stat_prefix>.` stats are counted
/// (Envoy gives each chain's network filter its own prefix). Listener `i`'s first network
/// filter (its first chain's, or the only one's) counts in slot `i`, beside the listener's own
/// counters; a later chain of the same listener shares the slot of an earlier chain with the
/// same kind and `stat_prefix` (their names are the same), or gets a slot after the
/// listeners'. Computed from the config alike by workers and the aggregator.
#[derive(Debug, Clone)]
pub struct StatSlots {
    /// Per listener, per network filter in `Listener::networks()` order.
    of: Vec<Vec<usize>>,
    count: usize,
}

impl StatSlots {
    pub fn new(cfg: &Config) -> Self {
        let mut count = cfg.listeners.len();
        let of = cfg
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut seen: Vec<((bool, &str), usize)> = Vec::new();
                l.networks()
                    .enumerate()
                    .map(|(k, n)| {
                        let key = match n {
                            NetworkFilter::Http(h) => (true, h.stat_prefix.as_str()),
                            NetworkFilter::TcpProxy(t) => (false, t.stat_prefix.as_str()),
                        };
                        if let Some(&(_, slot)) = seen.iter().find(|(k2, _)| *k2 == key) {
                            return slot;
                        }
                        let slot = if k == 0 {
                            i
                        } else {
                            count += 1;
                            count - 1
                        };
                        seen.push((key, slot));
                        slot
                    })
                    .collect()
            })
            .collect();
        StatSlots { of, count }
    }

    /// The slots of listener `listener`'s network filters, in `Listener::networks()` order.
    pub fn of(&self, listener: usize) -> &[usize] {
        self.of.get(listener).map_or(&[], |v| &v[..])
    }

    /// Slots in all (at least one per listener).
    pub fn count(&self) -> usize {
        self.count
    }
}

/// An interval's histograms from one worker, shipped to the aggregator.
#[derive(Debug)]
pub struct HistBatch {
    pub worker: usize,
    /// The `FlushStats` request this answers (0: a periodic flush).
    pub seq: u64,
    /// Indexed by slot (see [`listener_hist_slot`], [`cluster_hist_slot`]).
    pub hists: Vec<Histogram<u64>>,
}

/// A worker's latency histograms (µs) for the current interval. Worker-local.
#[derive(Debug)]
pub struct WorkerHistograms {
    listeners: usize,
    hists: RefCell<Vec<Histogram<u64>>>,
    /// Something was recorded since the last ship.
    dirty: std::cell::Cell<bool>,
    /// Emptied sets sent back by the aggregator: a ship swaps one in instead of copying and
    /// clearing (a set is tens of KiB).
    free: Option<flume::Receiver<Vec<Histogram<u64>>>>,
}

fn us(from: Option<Instant>, to: Option<Instant>) -> Option<u64> {
    let (from, to) = (from?, to?);
    Some(to.saturating_duration_since(from).as_micros() as u64)
}

impl WorkerHistograms {
    /// `free` brings back the sets the aggregator has merged and emptied.
    pub fn new(cfg: &Config, free: Option<flume::Receiver<Vec<Histogram<u64>>>>) -> Self {
        WorkerHistograms {
            listeners: StatSlots::new(cfg).count(),
            hists: RefCell::new(new_set(hist_slots(cfg))),
            dirty: std::cell::Cell::new(false),
            free,
        }
    }

    /// Record a finished request's timings.
    pub fn stream_done(&self, listener: usize, si: &StreamInfo) {
        let Ok(mut hists) = self.hists.try_borrow_mut() else {
            return;
        };
        self.dirty.set(true);
        let end = si.t_last_byte;
        if let (Some(t), Some(h)) = (
            us(si.start, end),
            hists.get_mut(listener_hist_slot(listener)),
        ) {
            h.saturating_record(t);
        }
        let Some(c) = si.cluster else { return };
        let mut rec = |kind: ClusterHist, v: Option<u64>| {
            if let (Some(v), Some(h)) =
                (v, hists.get_mut(cluster_hist_slot(self.listeners, c, kind)))
            {
                h.saturating_record(v);
            }
        };
        rec(ClusterHist::ConnectTime, us(si.start, si.t_upstream_ready));
        rec(
            ClusterHist::SendTime,
            us(si.t_upstream_ready, si.t_request_sent),
        );
        rec(
            ClusterHist::FirstByteTime,
            us(si.t_request_sent, si.t_first_byte),
        );
        if si.t_first_byte.is_some() {
            rec(ClusterHist::ResponseTime, us(si.t_first_byte, end));
            rec(ClusterHist::RqTime, us(si.t_upstream_ready, end));
        }
    }

    /// Record how long a `tcp_proxy` connection lived (its listener's slot, which an HTTP
    /// listener uses for `downstream_rq_time`).
    pub fn cx_done(&self, listener: usize, length: std::time::Duration) {
        let Ok(mut hists) = self.hists.try_borrow_mut() else {
            return;
        };
        if let Some(h) = hists.get_mut(listener_hist_slot(listener)) {
            self.dirty.set(true);
            h.saturating_record(length.as_micros() as u64);
        }
    }

    /// The interval's histograms (the worker starts a fresh interval), or `None` if nothing was
    /// recorded since the last call.
    pub fn take(&self) -> Option<Vec<Histogram<u64>>> {
        if !self.dirty.replace(false) {
            return None;
        }
        let mut hists = self.hists.try_borrow_mut().ok()?;
        let n = hists.len();
        let fresh = self
            .free
            .as_ref()
            .and_then(|f| f.try_recv().ok())
            .filter(|set| set.len() == n)
            .unwrap_or_else(|| new_set(n));
        Some(std::mem::replace(&mut *hists, fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writer_counters_and_gauges() {
        let c = AtomicU64::new(0);
        inc(&c);
        inc(&c);
        dec(&c);
        assert_eq!(get(&c), 1);
        dec(&c);
        dec(&c);
        assert_eq!(get(&c), 0, "a gauge never goes below zero");
    }

    #[test]
    fn status_classes() {
        assert_eq!(class(101), Some(0));
        assert_eq!(class(204), Some(1));
        assert_eq!(class(308), Some(2));
        assert_eq!(class(404), Some(3));
        assert_eq!(class(599), Some(4));
        assert_eq!(class(0), None);
        assert_eq!(class(600), None);
    }

    #[test]
    fn histogram_slots_do_not_overlap() {
        let listeners = 2;
        let mut seen = std::collections::HashSet::new();
        for l in 0..listeners {
            assert!(seen.insert(listener_hist_slot(l)));
        }
        for c in 0..3 {
            for h in ClusterHist::ALL {
                assert!(seen.insert(cluster_hist_slot(listeners, c, h)));
            }
        }
        assert_eq!(seen.len(), listeners + 3 * CLUSTER_HISTS);
        assert_eq!(
            seen.iter().max(),
            Some(&(listeners + 3 * CLUSTER_HISTS - 1))
        );
    }

    #[test]
    fn histograms_clamp_instead_of_failing() {
        let mut h = new_histogram();
        h.saturating_record(0);
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 2);
    }
}
