//! What a load worker records: one HdrHistogram of latencies (nanoseconds) and plain counters,
//! owned by the worker's thread (`Rc<RefCell<_>>` between its connection tasks, no atomics),
//! merged by the main thread after the run. The only shared word is the progress counter the
//! main thread reads once a second.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histogram tracks (1 hour, in ns); longer ones saturate.
const MAX_NS: u64 = 3_600_000_000_000;
/// Significant digits kept (0.1% resolution).
pub const SIGFIG: u8 = 3;

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// TCP connect (or TLS handshake) failed.
    pub connect: u64,
    /// Reading the response failed (reset, early close).
    pub read: u64,
    /// Sending the request failed.
    pub write: u64,
    /// No complete response within `--timeout`.
    pub timeout: u64,
    /// The response could not be parsed (or HTTP/2 protocol error).
    pub parse: u64,
    /// Responses with status 400-499 (also counted as requests).
    pub status_4xx: u64,
    /// Responses with status 500-599 (also counted as requests).
    pub status_5xx: u64,
}

impl Errors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect
            + self.read
            + self.write
            + self.timeout
            + self.parse
            + self.status_4xx
            + self.status_5xx
    }

    /// Adds another worker's counts.
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.parse += o.parse;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
    }
}

/// A transport or protocol failure of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// See [`Errors::connect`].
    Connect,
    /// See [`Errors::read`].
    Read,
    /// See [`Errors::write`].
    Write,
    /// See [`Errors::timeout`].
    Timeout,
    /// See [`Errors::parse`].
    Parse,
}

/// One worker's measurements.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latencies in ns of the measured requests.
    pub hist: Histogram<u64>,
    /// Measured responses (any status).
    pub requests: u64,
    /// Response bytes of measured requests (HTTP/1: head + body; HTTP/2: body).
    pub bytes: u64,
    /// Errors of measured requests.
    pub errors: Errors,
    /// Connections opened (including reconnects).
    pub connects: u64,
    /// The first connect error's message (shown in the report).
    pub first_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty stats.
    pub fn new() -> Self {
        Self {
            hist: new_histogram(),
            requests: 0,
            bytes: 0,
            errors: Errors::default(),
            connects: 0,
            first_error: None,
        }
    }

    /// Records one completed response.
    #[inline]
    pub fn response(&mut self, latency_ns: u64, status: u16, bytes: u64) {
        self.hist.saturating_record(latency_ns.max(1));
        self.requests += 1;
        self.bytes += bytes;
        match status {
            400..=499 => self.errors.status_4xx += 1,
            500..=599 => self.errors.status_5xx += 1,
            _ => {}
        }
    }

    /// Records one failure.
    pub fn failure(&mut self, f: Failure) {
        let e = &mut self.errors;
        match f {
            Failure::Connect => e.connect += 1,
            Failure::Read => e.read += 1,
            Failure::Write => e.write += 1,
            Failure::Timeout => e.timeout += 1,
            Failure::Parse => e.parse += 1,
        }
    }

    /// Adds another worker's stats.
    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.hist.add(&o.hist);
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.errors.add(&o.errors);
        self.connects += o.connects;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }
}

/// The histogram every worker uses (1 ns .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, SIGFIG).expect("constant histogram bounds are valid")
}

/// A counter on its own cache line, written by one worker, read by the progress line.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    /// One more response.
    #[inline]
    pub fn done(&self) {
        self.done
            .store(self.done.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// One more error.
    #[inline]
    pub fn error(&self) {
        self.errors
            .store(self.errors.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// (responses, errors) so far, warm-up included.
    pub fn read(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}
