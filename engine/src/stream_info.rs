//! What happened to one request, filled in along the request path and handed to the observers
//! (stats, access logs, tracing) once the exchange ends: Envoy's "stream info".
//!
//! A connection holds its `StreamInfo` only while a request is in flight ([`SiSlot`]): it is
//! taken from a per-worker pool when the first byte of a request arrives and goes back, reset,
//! once the observers have read it, so recording costs no allocation and an idle keep-alive
//! connection holds none of it. The
//! timing breakdown (`t_*`) splits a request's latency into phases: head received → upstream
//! connection ready (pooled or new) → request sent → first response byte → last byte.
//!
//! Beside the record: the values it is made of that its readers share — the exchange's HTTP
//! [`Version`], the request's span identity ([`SpanCtx`], drawn by `trace::context::begin`,
//! which also writes it upstream) — and the one reading of it two observers share,
//! [`response_flags`] (the access log's `%RESPONSE_FLAGS%`, a span's `ringway.response_flags`).
//!
//! Below everything that writes or reads a record: it imports only [`crate::error`] (and the
//! stream model from `ringway_filters`), so the request path (`http`) and the observers
//! (`stats`, `access_log`, `trace`) all depend on it and it on none of them.

use std::{net::SocketAddr, time::Instant};

use crate::error::{LocalReason, Source};

/// The HTTP version of an exchange, as its record keeps it (the connection manager converts the
/// codec's own version into it when it decodes a head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

/// Which B3 form ringway writes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum B3Out {
    /// No B3 headers.
    #[default]
    None,
    /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`.
    Multi,
    /// `b3: {trace}-{span}-{sampled}-{parent}`.
    Single,
}

/// Ringway's span of one request: the trace it belongs to, its own id, its parent's. Drawn by
/// `trace::context::begin`; its header lines and hex forms are written by the methods that
/// module adds (`write_headers`, `trace_hex`, `span_hex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanCtx {
    pub trace_id: [u8; 16],
    /// Ringway's span id (never zero).
    pub span_id: u64,
    /// The caller's span id; 0 for a new trace.
    pub parent_id: u64,
    pub sampled: bool,
    /// B3 headers go out in this form.
    pub b3: B3Out,
    /// The B3 trace id came in as 64 bits: B3 headers keep that width.
    pub b3_short: bool,
    /// `tracestate` goes upstream unchanged (the incoming `traceparent` was valid).
    pub keep_tracestate: bool,
}

/// What of a request's last try has gone to outlier detection (`ClusterView::report`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Nothing yet: the end of the stream reports it.
    #[default]
    No,
    /// The response's status: a failure of its body is still to come.
    Status,
    /// All of it.
    Done,
}

/// One request's record. `Default` is the empty record of a connection between requests.
#[derive(Debug, Default, Clone)]
pub struct StreamInfo {
    /// A request head was seen in this exchange (false: the connection closed or timed out
    /// between requests, or the head never completed).
    pub seen: bool,
    /// First byte of the request head arrived.
    pub start: Option<Instant>,
    pub version: Option<Version>,
    /// Status sent to the client (0: none was sent).
    pub status: u16,
    /// Why the proxy answered itself, if it did.
    pub local_reason: Option<LocalReason>,
    /// The client went away (or sent a malformed body) before the response was complete.
    pub downstream_reset: bool,
    /// The upstream went away before the response was complete (after headers).
    pub upstream_reset: bool,
    /// The request was sent a second time on a fresh connection.
    pub retried: bool,
    /// Tries made upstream (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`; 0: none).
    pub attempts: u32,
    /// A retry was called for but the policy's `num_retries` or a breaker forbade it (`URX`).
    pub retry_limit: bool,
    /// The retry circuit breaker (`max_retries`, `retry_budget`) refused a retry (`UO`, as
    /// Envoy).
    pub retry_overflow: bool,
    /// How much of the last try's outcome outlier detection has heard already (reported as
    /// soon as it is known, before the client's answer is written).
    pub outcome_reported: Reported,
    /// A `Set-Cookie` value for the response: a `hash_policy` cookie the proxy generated.
    pub set_cookie: Option<Box<[u8]>>,
    /// Cluster and endpoint the request was forwarded to.
    pub cluster: Option<usize>,
    pub upstream: Option<SocketAddr>,
    /// The endpoint's position in its cluster (meaningful when `upstream` is set).
    pub endpoint: u32,
    /// The upstream connection came from the pool.
    pub upstream_reused: bool,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Upstream connection ready (checked out or connected).
    pub t_upstream_ready: Option<Instant>,
    /// Request head and body fully written upstream.
    pub t_request_sent: Option<Instant>,
    /// First response byte read from upstream.
    pub t_first_byte: Option<Instant>,
    /// Last response byte written to the client.
    pub t_last_byte: Option<Instant>,
    /// The client's address.
    pub downstream_remote: Option<SocketAddr>,
    /// The `x-request-id` ringway generated for this request (used only when the request had
    /// none).
    pub generated_request_id: Option<[u8; 36]>,
    /// The request was malformed: the `x-ringway-reason` of the 4xx/5xx sent (e.g. `bad_request`).
    pub protocol_error: Option<&'static str>,
    /// Ringway's span of this request (set only when tracing is configured).
    pub trace: Option<SpanCtx>,
    /// The matched route's name for tracing (`http.route`), kept only for sampled requests.
    pub http_route: Option<std::sync::Arc<str>>,
    /// The request as decoded into the stream model (filters and the router change it; the
    /// upstream head is encoded from it). Its allocations are kept across requests.
    pub req: ringway_filters::RequestHead,
    /// The response head as sent to the client (after filters), for `%RESP(...)%`.
    pub resp: ringway_filters::ResponseHead,
    /// Values filters set for the access log (`%FILTER_STATE(key)%`).
    pub filter_state: ringway_filters::FilterState,
    /// The upgraded protocol (101 Switching Protocols): the exchange became a tunnel.
    pub upgraded: bool,
    /// Why a filter answered or ended the stream (its `LocalReply::reason`, e.g. `rate_limited`),
    /// for `%RESPONSE_CODE_DETAILS%`.
    pub filter_details: Option<&'static str>,
    /// Why the TLS handshake with the upstream failed (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub upstream_transport_failure: Option<&'static str>,
    /// The downstream connection's TLS details (terminated TLS only).
    pub tls: Option<std::sync::Arc<crate::io::tls::TlsDetails>>,
}

/// Most reset records a worker keeps for reuse.
const POOL_MAX: usize = 4096;

thread_local! {
    /// The worker's reset records (each worker is one thread). Boxed: a connection's slot
    /// takes and returns the allocation itself, never a 328-byte copy.
    #[allow(clippy::vec_box)]
    static POOL: std::cell::RefCell<Vec<Box<StreamInfo>>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// What reading an empty slot shows: the record of no request.
static EMPTY: std::sync::LazyLock<StreamInfo> = std::sync::LazyLock::new(StreamInfo::default);

/// A connection's place for the current request's record: empty between requests (8 bytes),
/// filled from the worker's pool on first write.
#[derive(Debug, Default)]
pub struct SiSlot(Option<Box<StreamInfo>>);

impl SiSlot {
    /// Give the record back to the pool (reset); the slot is empty again.
    pub fn release(&mut self) {
        if let Some(mut b) = self.0.take() {
            b.reset();
            POOL.with_borrow_mut(|p| {
                if p.len() < POOL_MAX {
                    p.push(b);
                }
            });
        }
    }
}

impl std::ops::Deref for SiSlot {
    type Target = StreamInfo;
    #[inline]
    fn deref(&self) -> &StreamInfo {
        match &self.0 {
            Some(b) => b,
            None => &EMPTY,
        }
    }
}

impl std::ops::DerefMut for SiSlot {
    #[inline]
    fn deref_mut(&mut self) -> &mut StreamInfo {
        self.0
            .get_or_insert_with(|| POOL.with_borrow_mut(|p| p.pop()).unwrap_or_default())
    }
}

impl StreamInfo {
    /// Forget the previous request, keeping the heads' allocations for the next one. Field by
    /// field (every field is named, so a new one cannot be forgotten): rebuilding the record
    /// from `Default` and moving it in cost ~180 instructions a request more.
    pub fn reset(&mut self) {
        let StreamInfo {
            seen,
            start,
            version,
            status,
            local_reason,
            downstream_reset,
            upstream_reset,
            retried,
            attempts,
            retry_limit,
            retry_overflow,
            outcome_reported,
            set_cookie,
            cluster,
            upstream,
            endpoint,
            upstream_reused,
            bytes_received,
            bytes_sent,
            t_upstream_ready,
            t_request_sent,
            t_first_byte,
            t_last_byte,
            downstream_remote,
            generated_request_id,
            protocol_error,
            trace,
            http_route,
            req,
            resp,
            filter_state,
            upgraded,
            filter_details,
            upstream_transport_failure,
            tls,
        } = self;
        *seen = false;
        *start = None;
        *version = None;
        *status = 0;
        *local_reason = None;
        *downstream_reset = false;
        *upstream_reset = false;
        *retried = false;
        *attempts = 0;
        *retry_limit = false;
        *retry_overflow = false;
        *outcome_reported = Reported::No;
        *set_cookie = None;
        *cluster = None;
        *upstream = None;
        *endpoint = 0;
        *upstream_reused = false;
        *bytes_received = 0;
        *bytes_sent = 0;
        *t_upstream_ready = None;
        *t_request_sent = None;
        *t_first_byte = None;
        *t_last_byte = None;
        *downstream_remote = None;
        *generated_request_id = None;
        *protocol_error = None;
        *trace = None;
        *http_route = None;
        req.headers.clear();
        resp.headers.clear();
        resp.status = 0;
        filter_state.clear();
        *upgraded = false;
        *filter_details = None;
        *upstream_transport_failure = None;
        *tls = None;
    }

    /// Total duration from the first request byte to the last response byte (or now).
    pub fn duration(&self) -> Option<std::time::Duration> {
        let start = self.start?;
        Some(
            self.t_last_byte
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(start),
        )
    }
}

/// Response flags for a finished request, Envoy's letters, in Envoy's order.
pub fn response_flags(si: &StreamInfo) -> ([&'static str; 4], usize) {
    let mut flags = [""; 4];
    let mut n = 0;
    let mut add = |f: &'static str| {
        if n < flags.len() && !flags[..n].contains(&f) {
            flags[n] = f;
            n += 1;
        }
    };
    if si.retry_overflow {
        add("UO");
    }
    let upstream_failure = match si.local_reason {
        Some(r) => {
            let flag = match r {
                LocalReason::NoRoute | LocalReason::NoFilterChainMatch => Some("NR"),
                LocalReason::NoHealthyUpstream => Some("UH"),
                // Envoy counts a failed upstream handshake as a connection failure too.
                LocalReason::ConnectFailure | LocalReason::UpstreamTlsFailure => Some("UF"),
                LocalReason::UpstreamTimeout => Some("UT"),
                LocalReason::UpstreamReset => Some("UC"),
                LocalReason::UpstreamProtocolError => Some("UPE"),
                LocalReason::Overflow => Some("UO"),
                LocalReason::RequestHeadersTimeout | LocalReason::RequestBodyTimeout => Some("SI"),
                // Envoy has no flag for a body over a filter's limit: the 413 says it.
                LocalReason::RequestTooLarge => None,
            };
            if let Some(f) = flag {
                add(f);
            }
            r.source() == Source::Upstream
        }
        None => false,
    };
    if si.upstream_reset {
        add("UC");
    }
    if si.retry_limit || (si.retried && (upstream_failure || si.upstream_reset)) {
        add("URX");
    }
    if si.protocol_error.is_some() {
        add("DPE");
    } else if si.downstream_reset {
        add("DC");
    }
    (flags, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with every field away from its default, reset, reads as the empty record
    /// (the heads keep their allocations, so they are compared by what they hold).
    #[test]
    fn reset_forgets_every_field() {
        let t = Instant::now();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut si = StreamInfo {
            seen: true,
            start: Some(t),
            version: Some(Version::Http11),
            status: 503,
            local_reason: Some(LocalReason::NoRoute),
            downstream_reset: true,
            upstream_reset: true,
            retried: true,
            attempts: 2,
            retry_limit: true,
            retry_overflow: true,
            outcome_reported: Reported::Done,
            set_cookie: Some(b"c=1".to_vec().into_boxed_slice()),
            cluster: Some(1),
            upstream: Some(addr),
            endpoint: 3,
            upstream_reused: true,
            bytes_received: 10,
            bytes_sent: 20,
            t_upstream_ready: Some(t),
            t_request_sent: Some(t),
            t_first_byte: Some(t),
            t_last_byte: Some(t),
            downstream_remote: Some(addr),
            generated_request_id: Some([b'a'; 36]),
            protocol_error: Some("bad_request"),
            trace: Some(SpanCtx {
                trace_id: [1; 16],
                span_id: 2,
                parent_id: 3,
                sampled: true,
                b3: B3Out::Multi,
                b3_short: false,
                keep_tracestate: true,
            }),
            http_route: Some("r".into()),
            upgraded: true,
            filter_details: Some("rate_limited"),
            upstream_transport_failure: Some("x"),
            tls: Some(std::sync::Arc::new(crate::io::tls::TlsDetails {
                sni: None,
                version: "TLSv1.3",
                cipher: "x",
                peer: None,
                xfcc: Default::default(),
            })),
            ..StreamInfo::default()
        };
        si.req.headers.append("a", "b");
        si.resp.headers.append("c", "d");
        si.resp.status = 200;
        si.filter_state.set("k", "v");
        si.reset();
        assert!(si.req.headers.is_empty() && si.resp.headers.is_empty());
        assert_eq!(si.resp.status, 0);
        assert_eq!(si.filter_state, ringway_filters::FilterState::default());
        si.req = Default::default();
        si.resp = Default::default();
        assert_eq!(format!("{si:?}"), format!("{:?}", StreamInfo::default()));
    }
}
