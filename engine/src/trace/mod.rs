//! Distributed tracing on the worker: W3C Trace Context and B3 propagation, sampling, and
//! recording finished spans for the exporter thread (`trace_export`: OTLP/HTTP JSON or Zipkin v2
//! JSON to a collector), with nothing but a few header bytes and a random number on the request
//! path.
//!
//! How a span travels:
//!
//! 1. The connection manager, once a request head is parsed and tracing is configured, calls
//!    [`context::begin`] with the request's headers: it continues the caller's trace (valid
//!    `traceparent`, else B3) or starts one, keeps the caller's sampling decision or samples at
//!    the connection manager's rate, and draws ringway's span id. The result (a `SpanCtx`) lives
//!    in the request's `StreamInfo`; the upstream request head gets `traceparent` (and B3 when
//!    the client used it) naming ringway's span as the parent. Unsampled requests stop here.
//! 2. The request's record already holds the stream model's request head; for a sampled request
//!    the copy of the record made in step 3 carries it, so the exporter reads path, host and user
//!    agent later, off the worker.
//! 3. When the exchange ends, `WorkerCtx::stream_done` hands the record to [`WorkerTracer::record`]:
//!    a copy of the `StreamInfo` goes into the worker's batch (a `Vec`). Batches are shipped to
//!    the exporter over a bounded channel every [`FLUSH_INTERVAL`] or at [`SHIP_SPANS`] spans;
//!    if the exporter is far behind, the batch is dropped and counted, never waited for.
//! 4. One exporter thread per process (`trace_export::Exporter`, `ringway-trace`) encodes batches of
//!    up to `max_batch` spans as OTLP or Zipkin JSON and POSTs them to an endpoint of the
//!    collector cluster over a kept-alive HTTP/1.1 connection, at least every `flush_interval`.
//!    It counts what it sent, dropped and failed (`tracing.*` stats). At shutdown the workers
//!    ship what they hold and the exporter sends it all (bounded by the collector timeout).
//!
//! Without `tracing` in the config none of this runs and trace headers pass through untouched.
//!
//! Layering: below the request path (`http` calls [`context::begin`] and, through the worker's
//! context, [`WorkerTracer::record`]); above the record it reads (`stream_info`). The exporter
//! thread, which speaks HTTP/1 to the collector with the codec, is above `http`, in
//! `trace_export`.

pub mod context;

use std::{
    cell::RefCell,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{background::WarnEvery, rng::Rng, stream_info::StreamInfo};

/// A worker ships its spans at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// ... and as soon as it holds this many.
pub const SHIP_SPANS: usize = 128;
/// Batches in flight between all workers and the exporter before workers drop.
const QUEUE: usize = 256;

/// Exporter counters, shown as `tracing.*` stats. Written by the exporter (and by a worker
/// when it drops a batch), read by the stats aggregator.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Spans the collector accepted.
    pub spans_sent: AtomicU64,
    /// Spans lost: the collector failed, or the exporter was too far behind.
    pub spans_dropped: AtomicU64,
    /// Export requests answered with 2xx.
    pub reports_sent: AtomicU64,
    /// Export requests that failed (connect, I/O, timeout, non-2xx).
    pub reports_failed: AtomicU64,
}

/// One finished, sampled request, as the exporter receives it.
#[derive(Debug)]
pub struct FinishedSpan {
    /// The request's record (its `trace` is set and sampled).
    pub si: StreamInfo,
    /// Wall-clock time of `si.start`, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// The listener it came in on (index in `Config::listeners`).
    pub listener: usize,
}

/// Where a worker ships its batches.
pub type Sink = flume::Sender<Vec<FinishedSpan>>;

/// A new batch channel (the exporter holds the receiving end).
pub fn channel() -> (Sink, flume::Receiver<Vec<FinishedSpan>>) {
    flume::bounded(QUEUE)
}

impl context::Ids for Rng {
    fn next_u64(&self) -> u64 {
        Rng::next_u64(self)
    }
}

/// A worker's side of tracing: its id generator and the spans waiting to be shipped.
pub struct WorkerTracer {
    sink: Option<Sink>,
    stats: Option<Arc<TraceStats>>,
    /// Ids and sampling draws (xorshift; never shared).
    pub rng: Rng,
    /// Whether new traces also carry B3 headers (Zipkin collector).
    pub zipkin: bool,
    batch: RefCell<Vec<FinishedSpan>>,
    warn: WarnEvery,
}

impl WorkerTracer {
    /// `sink` is `None` without tracing.
    pub fn new(
        worker: usize,
        sink: Option<Sink>,
        stats: Option<Arc<TraceStats>>,
        zipkin: bool,
    ) -> WorkerTracer {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(29)
            ^ (worker as u64).rotate_left(48);
        WorkerTracer {
            sink,
            stats,
            rng: Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            zipkin,
            batch: RefCell::new(Vec::new()),
            warn: WarnEvery::new(Duration::from_secs(10)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Keep a finished request's span (only sampled ones get here).
    pub fn record(&self, si: &StreamInfo, listener: usize) {
        let Some(sink) = &self.sink else { return };
        let Some(start) = si.start else { return };
        let ago = Instant::now().saturating_duration_since(start);
        let start_unix_nanos = SystemTime::now()
            .checked_sub(ago)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let mut batch = self.batch.borrow_mut();
        batch.push(FinishedSpan {
            si: si.clone(),
            start_unix_nanos,
            listener,
        });
        if batch.len() >= SHIP_SPANS {
            let full = std::mem::take(&mut *batch);
            self.ship(sink, full, false);
        }
    }

    /// Ship what is waiting; `last`: the worker is exiting, wait for room rather than drop.
    pub fn flush(&self, last: bool) {
        let Some(sink) = &self.sink else { return };
        let full = std::mem::take(&mut *self.batch.borrow_mut());
        if !full.is_empty() {
            self.ship(sink, full, last);
        }
    }

    fn ship(&self, sink: &Sink, batch: Vec<FinishedSpan>, last: bool) {
        let n = batch.len() as u64;
        let sent = if last {
            // Exiting: wait for room, but not for a stuck exporter.
            sink.send_timeout(batch, Duration::from_secs(1)).is_ok()
        } else {
            sink.try_send(batch).is_ok()
        };
        if !sent {
            if let Some(s) = &self.stats {
                s.spans_dropped
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            if self.warn.due() {
                tracing::warn!(
                    spans = n,
                    "trace exporter is behind: dropped a batch of spans (see tracing.spans_dropped)"
                );
            }
        }
    }
}
