//! The request path's context: what a worker's connections read and write while they serve.
//!
//! - [`WorkerCtx`], one per worker: its config snapshot, cluster views and pools, drain signal
//!   and coarse clock, stats block and histograms, `x-request-id` generator, access-log buffers,
//!   span recorder and connection balance.
//! - [`ListenerCtx`], one per listener per worker: the connection manager's settings, its route
//!   table and HTTP filter chains.
//!
//! The worker (`runtime::worker`) builds both on its thread and runs the tasks around them
//! (timers, shipping histograms and logs, obeying the control channel); the accept loops
//! (`listener`) and the HTTP code hold them by `Rc` and borrow them per request, and never name
//! the runtime. Nothing here crosses a core (`Cell`/`RefCell` inside).
//!
//! When an exchange ends, [`WorkerCtx::stream_done`] hands its record to the observers: the
//! stats block and histograms ([`crate::stats`]), the listener's access logs
//! ([`crate::access_log`]) and, for a sampled request, the span recorder ([`crate::trace`]).

use std::{cell::Cell, sync::Arc};

use crate::{
    access_log::WorkerLog,
    balance,
    config::{self, Config},
    drain::Drain,
    http::{filter_chain::ChainSet, h1},
    rng::Rng,
    router::RouteTable,
    stats::{WorkerHistograms, WorkerStats},
    stream_info::StreamInfo,
    trace::WorkerTracer,
    upstream::ClusterManager,
};

/// A worker's state on the request path (see the module doc).
pub struct WorkerCtx {
    pub id: usize,
    pub config: Arc<Config>,
    pub clusters: ClusterManager,
    pub drain: Drain,
    /// Counters and gauges: written only here, read by the control thread.
    pub stats: Arc<WorkerStats>,
    /// Latency histograms of the current interval (shipped to the aggregator).
    pub hists: WorkerHistograms,
    pub request_ids: RequestIds,
    /// This worker's access-log buffers (empty and idle when no access log is configured).
    pub access_log: WorkerLog,
    /// Trace ids, sampling draws and finished spans waiting to be shipped (idle without
    /// tracing).
    pub tracer: WorkerTracer,
    /// Exact connection balance between workers (`None`: one worker).
    pub balance: Option<Arc<balance::Shared>>,
    /// Spare write buffers for response heads and local replies.
    pub write_bufs: crate::io::WriteBufs,
    /// Recycled heap slots for exchanges in progress (a connection's task holds only its idle
    /// wait; the state of a request in flight lives in one of these).
    pub exchange_slots: crate::slots::FutureSlots,
    /// The same for HTTP/2 streams' exchanges (each stream's task stays small; its exchange
    /// runs in a recycled slot).
    pub h2_stream_slots: crate::slots::FutureSlots,
    /// Large buffers leased by bodies that flow fast (bounded per worker).
    pub bulk_bufs: crate::io::BulkBufs,
    /// Idle keep-alive connections parked out of their tasks (`http::park`).
    pub parked: crate::http::park::ParkLot,
    /// Copies of requests on their way to mirror clusters (`http::mirror`).
    pub mirrors: crate::http::mirror::Mirrors,
    /// A reload's next generation, once this worker drains for it: where idle connections go.
    pub successor: std::cell::RefCell<Option<Arc<crate::control::Successor>>>,
}

impl std::fmt::Debug for WorkerCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerCtx({})", self.id)
    }
}

impl WorkerCtx {
    /// Move a connection of listener `listener` to the next generation's worker (a reload's
    /// hand-over). `Err`: no successor, or the listener is gone from the new config; the
    /// caller keeps the connection.
    pub fn hand_over(
        &self,
        stream: std::net::TcpStream,
        peer: std::net::SocketAddr,
        listener: usize,
    ) -> Result<(), std::net::TcpStream> {
        let succ = self.successor.borrow();
        let Some(s) = succ.as_ref() else {
            return Err(stream);
        };
        let (Some(Some(to)), false) = (s.listeners.get(listener), s.workers.is_empty()) else {
            return Err(stream);
        };
        match s.workers[self.id % s.workers.len()].send((stream, peer, *to)) {
            Ok(()) => Ok(()),
            Err(e) => Err(e.into_inner().0),
        }
    }

    /// Whether a connection of `listener` can move to the next generation.
    pub fn can_hand_over(&self, listener: usize) -> bool {
        self.successor.borrow().as_ref().is_some_and(|s| {
            !s.workers.is_empty() && matches!(s.listeners.get(listener), Some(Some(_)))
        })
    }

    /// What a body pump needs for bulk mode (buffers, counters).
    pub fn bulk(&self) -> crate::http::bulk::Bulk<'_> {
        crate::http::bulk::Bulk {
            bufs: &self.bulk_bufs,
            stats: &self.stats,
        }
    }

    /// One request's exchange ended (response sent, or the proxy answered, or it failed):
    /// the observers (stats, access logs, tracing) read its record here, on the worker.
    pub fn stream_done(&self, l: &ListenerCtx, si: &StreamInfo) {
        self.stats.stream_done(l.stats_slot, si);
        self.hists.stream_done(l.stats_slot, si);
        // Outlier detection's input (health-checked clusters only).
        if let Some(cv) = si.cluster.and_then(|c| self.clusters.clusters.get(c)) {
            if cv.health().is_some() && si.upstream.is_some() {
                use crate::stream_info::Reported;
                let outcome = match si.outcome_reported {
                    Reported::No => outcome(si),
                    // The status went at the head: only a failure of the body is left.
                    Reported::Status => si.local_reason.and_then(outcome_of),
                    Reported::Done => None,
                };
                if let Some(outcome) = outcome {
                    cv.report(si.endpoint as usize, outcome);
                }
            }
        }
        let logs = &l.http.access_log;
        if !logs.is_empty() {
            let cluster = si
                .cluster
                .and_then(|c| self.config.clusters.get(c))
                .map(|c| c.name.as_str());
            self.access_log.log(logs, si, cluster);
        }
        if si.trace.is_some_and(|t| t.sampled) {
            self.tracer.record(si, l.index);
        }
    }
}

/// How the exchange with the upstream ended, for outlier detection (`None`: the upstream was
/// not what failed, or was never reached).
#[inline]
fn outcome(si: &StreamInfo) -> Option<crate::endpoint_health::Outcome> {
    match si.local_reason {
        None if si.status != 0 => Some(crate::endpoint_health::Outcome::Status(si.status)),
        None => None,
        Some(why) => outcome_of(why),
    }
}

/// A local failure as outlier detection counts it (`None`: not the upstream's doing).
pub(crate) fn outcome_of(
    why: crate::error::LocalReason,
) -> Option<crate::endpoint_health::Outcome> {
    use crate::{endpoint_health::Outcome, error::LocalReason as R};
    match why {
        R::ConnectFailure | R::UpstreamTlsFailure => Some(Outcome::ConnectFailed),
        R::UpstreamTimeout => Some(Outcome::Timeout),
        R::UpstreamReset | R::UpstreamProtocolError => Some(Outcome::Reset),
        _ => None,
    }
}

/// Generates `x-request-id` values: a per-worker random prefix and a counter, UUID-shaped.
#[derive(Debug)]
pub struct RequestIds {
    /// The first 19 characters of every id (`xxxxxxxx-xxxx-4xxx-`): the worker's random prefix.
    head: [u8; 19],
    next: Cell<u64>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RequestIds {
    /// The generator of worker `worker` (seeded from the clock, the process id and `worker`).
    pub fn new(worker: usize) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = t ^ (u64::from(std::process::id()) << 32) ^ ((worker as u64) << 56);
        let prefix = Rng::new(seed).next_u64();
        let mut head = [0u8; 19];
        let mut j = 0;
        for (i, b) in head.iter_mut().enumerate() {
            *b = match i {
                8 | 13 | 18 => b'-',
                // Version 4.
                14 => {
                    j += 1;
                    b'4'
                }
                _ => {
                    j += 1;
                    HEX[((prefix >> (64 - 4 * j)) & 0xf) as usize]
                }
            };
        }
        RequestIds {
            head,
            next: Cell::new(seed.rotate_left(17)),
        }
    }

    /// Write the next id (36 ASCII bytes, UUID version 4 shape) into `out`: the worker's prefix,
    /// then a counter in hex.
    pub fn next(&self, out: &mut [u8; 36]) {
        let n = self.next.get().wrapping_add(1);
        self.next.set(n);
        out[..19].copy_from_slice(&self.head);
        // The variant's two bits in the top nibble, then 16 hex digits, a dash after the 4th.
        let n = (n & !(0xc << 60)) | (0x8 << 60);
        let mut digits = [0u8; 16];
        for (i, pair) in n.to_be_bytes().iter().enumerate() {
            digits[2 * i] = HEX[usize::from(pair >> 4)];
            digits[2 * i + 1] = HEX[usize::from(pair & 0xf)];
        }
        out[19..23].copy_from_slice(&digits[..4]);
        out[23] = b'-';
        out[24..].copy_from_slice(&digits[4..]);
    }
}

/// What a worker's connections need from their listener: its settings and its own route table.
pub struct ListenerCtx {
    pub name: String,
    /// Position in `Config::listeners`: the index of this listener's stats (set by the worker).
    pub index: usize,
    /// Where this connection manager's `http.<stat_prefix>.` stats are counted
    /// ([`crate::stats::StatSlots`]; `index` for a listener's first chain).
    pub stats_slot: usize,
    pub http: config::HttpConnManager,
    pub routes: RouteTable,
    pub limits: h1::Limits,
    /// Tracing is configured: new traces are sampled when a random `u64` is below this.
    pub trace_threshold: Option<u64>,
    /// Hand new connections to the least loaded worker (`connection_balance: exact`).
    pub exact_balance: bool,
    /// This worker's HTTP filter chains (the connection manager's and each route's).
    pub chains: ChainSet,
}

impl ListenerCtx {
    /// `http`: the listener's connection manager; `worker`: which worker builds it (filters
    /// split per-process budgets between workers).
    pub fn new(
        l: &config::Listener,
        http: &config::HttpConnManager,
        worker: ringway_filters::WorkerInfo,
    ) -> Self {
        ListenerCtx {
            chains: ChainSet::new(http, worker),
            name: l.name.clone(),
            index: 0,
            stats_slot: 0,
            routes: RouteTable::new(http),
            limits: h1::Limits {
                max_head_bytes: http.max_request_headers_bytes,
                max_uri_bytes: http.max_uri_bytes,
            },
            http: http.clone(),
            exact_balance: l.exact_balance,
            trace_threshold: http.trace_sample_rate.map(crate::trace::context::threshold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_distinct() {
        let ids = RequestIds::new(3);
        let mut seen = std::collections::HashSet::new();
        let mut out = [0u8; 36];
        for _ in 0..1000 {
            ids.next(&mut out);
            let s = std::str::from_utf8(&out).expect("ascii");
            let parts: Vec<&str> = s.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                vec![8, 4, 4, 4, 12],
                "{s}"
            );
            assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{s}");
            assert!(parts[2].starts_with('4'), "{s}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{s}");
            assert!(seen.insert(s.to_string()), "repeated {s}");
        }
        // Every id of one worker shares its prefix.
        let first = out;
        ids.next(&mut out);
        assert_eq!(first[..19], out[..19]);
    }
}
