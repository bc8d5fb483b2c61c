//! The HTTP/1.1 connection manager: one task per downstream connection, requests handled in
//! order (pipelined requests are answered in order because they are read in order).
//!
//! What it owns: the connection's life (idle waits, head timeouts, keep-alive, drain) and the
//! step from wire bytes to a stream. The stream itself — filters, the route's action, the
//! upstream exchange, local replies — is [`super::stream`]'s.
//!
//! Path of a request:
//! 1. wait for bytes (idle: no buffer held, woken by data, `idle_timeout` or drain) — the only
//!    thing the connection's task does itself; steps 2-4 are its exchange, which runs in a slot
//!    the worker recycles ([`WorkerCtx::exchange_slots`]);
//! 2. parse the head straight out of the read buffer ([`h1::parse_request`]); if it is split
//!    over reads, accumulate it in `pending` under `request_headers_timeout`;
//! 3. [`begin`]: decode it into the stream model (the request's `StreamInfo` keeps it), route it
//!    ([`RouteTable::find`](crate::router::RouteTable::find)) and apply the forwarding policy
//!    ([`super::policy`]) — all synchronously, before the read buffer goes back to the pool;
//! 4. hand the stream to [`super::stream::run`].
//!
//! Hot path for a small keep-alive request: one read downstream, one write upstream, one read
//! upstream, one write downstream; the head is copied once into the model (whose buffers are
//! recycled with the request's record) and encoded once for the upstream.

use std::{net::SocketAddr, rc::Rc, time::Duration, time::Instant};

use bytes::{Bytes, BytesMut};

use crate::{
    config::{CodecType, Route},
    error::LocalReason,
    http::{
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{Downstream, H1},
        h1::{self, model, BodyFraming, Version},
        stream::{self, ReqInfo},
    },
    io::{multi::Quiet, Conn, ReadBuf},
    stream_info::{self, SiSlot},
};

/// What the connection does after an exchange.
pub(crate) enum Next {
    KeepAlive,
    Close,
}

/// Serve one downstream connection until it closes.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// keeps its arguments and its copies of them side by side in its state. This future is the
/// whole of an idle connection's task, so its size is what an idle connection costs: it holds
/// the connection, the idle wait (a receive with no buffer) and nothing else; an exchange in
/// progress lives in a slot the worker recycles ([`WorkerCtx::exchange_slots`]).
pub fn serve(
    conn: Conn,
    peer: SocketAddr,
    l: Rc<ListenerCtx>,
    w: Rc<WorkerCtx>,
) -> impl std::future::Future<Output = ()> {
    run(conn, peer, BytesMut::new(), None, l, w, Start::New)
}

/// [`serve`], for a connection whose first bytes were already read (by the listener filters):
/// `first` is handled as bytes of the first request before anything else is read. `peer` is
/// the client and `local` the address it connected to (a PROXY header's source and
/// destination, when there was one). The caller (the listener-filter stage) has counted the
/// connection since its accept, tracks it for drain and holds its load guard until this
/// returns.
pub fn serve_with(
    conn: Conn,
    peer: SocketAddr,
    first: BytesMut,
    local: Option<SocketAddr>,
    l: Rc<ListenerCtx>,
    w: Rc<WorkerCtx>,
) -> impl std::future::Future<Output = ()> {
    run(conn, peer, first, local, l, w, Start::Outer)
}

/// [`serve`], for a connection coming back from the parking lot ([`super::park`]): it was
/// counted when it was accepted.
pub(crate) fn resume(
    conn: Conn,
    peer: SocketAddr,
    l: Rc<ListenerCtx>,
    w: Rc<WorkerCtx>,
) -> impl std::future::Future<Output = ()> {
    run(conn, peer, BytesMut::new(), None, l, w, Start::Resumed)
}

/// Who counts a connection (`downstream_cx_*`), tracks it for drain and holds its load guard.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Its own task, from its accept: the task does; it may park.
    New,
    /// Back from the parking lot: counted already; the task holds the guards again.
    Resumed,
    /// The caller (the listener-filter stage, the TLS step) does; it never parks.
    Outer,
}

/// The connection's task.
fn run(
    conn: Conn,
    peer: SocketAddr,
    first: BytesMut,
    local: Option<SocketAddr>,
    l: Rc<ListenerCtx>,
    w: Rc<WorkerCtx>,
    start: Start,
) -> impl std::future::Future<Output = ()> {
    // Built here, outside the block, so the block holds it once (moved in, used in place).
    let mut d = Downstream {
        side: H1 {
            conn,
            pending: first,
        },
        peer,
        si: SiSlot::default(),
        local,
    };
    async move {
        let counted = (start != Start::Outer).then(|| {
            (
                w.drain.track(),
                if start == Start::Resumed {
                    w.stats.downstream_cx_resume(l.index)
                } else {
                    w.stats.downstream_cx(l.index)
                },
                crate::balance::LoadGuard::new(w.balance.as_deref(), w.id),
            )
        });
        let park_after = w
            .parked
            .after(l.http.idle_timeout)
            .filter(|_| counted.is_some());
        // HTTP/2: chosen by config or by TLS's ALPN, or (`auto`) by the preface in the first
        // bytes. Boxed: the HTTP/2 connection's state must not make every HTTP/1 task larger.
        let codec = l.http.codec;
        if codec == CodecType::Http2
            || (codec.h2()
                && (d.side.conn.alpn_is(b"h2") || super::h2::is_preface(&d.side.pending)))
        {
            Box::pin(super::h2::serve(d, &l, &w)).await;
            return;
        }
        let mut h2_first = codec == CodecType::Auto && start != Start::Resumed;
        loop {
            // Between requests: wait for the next one's first bytes (unless a pipelined one is
            // already here), up to the idle timeout or the worker's drain; past
            // `park_idle_after`, the connection parks.
            let first = if d.side.pending.is_empty() {
                // Movable: to the parking lot, or at a reload to the next generation (when its
                // config still has this listener).
                let movable =
                    d.side.conn.can_park() && (!w.drain.handing() || w.can_hand_over(l.index));
                let park = park_after.filter(|_| movable);
                let wait = park.unwrap_or(l.http.idle_timeout);
                match read_idle(&d.side.conn, wait, &w.drain, movable).await {
                    ReadOutcome::Data(b) => Some(b),
                    ReadOutcome::HandOver if !w.can_hand_over(l.index) => continue,
                    ReadOutcome::HandOver => match d.side.conn.quiesce().await {
                        Quiet::Yes => {
                            // Boxed: rare, and it must not make every idle task larger.
                            Box::pin(hand_over_conn(d, &l, &w)).await;
                            return;
                        }
                        Quiet::Data => {
                            d.side.conn.release_multishot();
                            continue;
                        }
                        Quiet::Closed => break,
                    },
                    ReadOutcome::TimedOut if park.is_some() => match d.side.conn.quiesce().await {
                        Quiet::Yes => {
                            let left = l.http.idle_timeout.saturating_sub(wait);
                            // Boxed: rare, and it must not make every idle task larger.
                            if Box::pin(park_conn(d, &l, &w, left)).await {
                                if let Some((_live, cx, load)) = counted {
                                    cx.park();
                                    load.park();
                                }
                            }
                            return;
                        }
                        Quiet::Data => {
                            d.side.conn.release_multishot();
                            continue;
                        }
                        Quiet::Closed => break,
                    },
                    _ => break,
                }
            } else {
                None
            };
            if h2_first {
                h2_first = false;
                if let Some(b) = first.as_ref().filter(|b| super::h2::is_preface(b)) {
                    d.side.pending.extend_from_slice(b);
                    Box::pin(super::h2::serve(d, &l, &w)).await;
                    return;
                }
            }
            let next = w
                .exchange_slots
                .run_with(|| exchange(&mut d, &l, &w, first))
                .await;
            if d.si.seen {
                w.stream_done(&l, &d.si);
            }
            // Hold no record while idle.
            d.si.release();
            if let Next::Close = next {
                break;
            }
            if d.side.pending.is_empty() {
                // Hold no buffer while idle.
                if d.side.pending.capacity() > 0 {
                    d.side.pending = BytesMut::new();
                }
                d.side.conn.release_idle();
            }
        }
        if d.side.conn.is_tls() {
            // A TLS connection that ends here ends in order: `close_notify` tells the client
            // it was not cut short. Bounded (a peer that reads nothing cannot hold the task);
            // boxed: its future must not make every connection's task larger.
            let deadline = w.drain.deadline_in(Duration::from_secs(1));
            let _ = Box::pin(w.drain.before(deadline, d.side.conn.shutdown_write())).await;
        }
    }
}

/// Hand an idle, quiesced connection to the parking lot; `false`: it was closed instead.
async fn park_conn(
    d: Downstream<H1>,
    l: &Rc<ListenerCtx>,
    w: &WorkerCtx,
    idle_left: Duration,
) -> bool {
    let Downstream { side, peer, .. } = d;
    let conn = side.conn;
    // The socket comes back once its cancelled receive has finished (at once, normally).
    let deadline = w.drain.deadline_in(Duration::from_secs(1));
    match w.drain.before(deadline, conn.into_fd()).await.flatten() {
        Some(sock) => w.parked.park(w, sock, peer, Rc::clone(l), idle_left),
        None => false,
    }
}

/// Move an idle, quiesced connection to the next generation's worker (a reload; its listener
/// is in the new config).
async fn hand_over_conn(d: Downstream<H1>, l: &Rc<ListenerCtx>, w: &WorkerCtx) {
    let Downstream { side, peer, .. } = d;
    let conn = side.conn;
    // The socket comes back once its cancelled receive has finished (at once, normally).
    let deadline = w.drain.deadline_in(Duration::from_secs(1));
    if let Some(sock) = w.drain.before(deadline, conn.into_fd()).await.flatten() {
        let _ = w.hand_over(std::net::TcpStream::from(sock), peer, l.index);
    }
}

pub(crate) enum ReadOutcome {
    Data(ReadBuf),
    /// End of stream or a read error.
    Closed,
    TimedOut,
    /// The worker started draining (only when waiting between requests).
    Drained,
    /// A reload's drain hands idle connections to the next generation.
    HandOver,
}

/// Read what arrives before the idle timeout (on the worker's coarse clock: no runtime timer
/// and no clock read per wait) or the worker's drain. A hand-written future rather than
/// `timeout` or an `async fn`: it is most of an idle connection's state, and this way it is
/// just the receive and the waiter.
pub(crate) fn read_idle<'a>(
    conn: &'a Conn,
    timeout: Duration,
    drain: &'a crate::drain::Drain,
    handover: bool,
) -> ReadIdle<'a> {
    ReadIdle {
        read: conn.read_idle(),
        waiter: drain.waiter_for(timeout),
        handover,
    }
}

/// [`read_idle`]'s future.
pub(crate) struct ReadIdle<'a> {
    read: crate::io::Read<&'a Conn>,
    waiter: crate::drain::Waiter<'a>,
    /// The connection could move to another worker (plain TCP, nothing buffered).
    handover: bool,
}

impl std::future::Future for ReadIdle<'_> {
    type Output = ReadOutcome;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ReadOutcome> {
        use crate::drain::IdleEnd;
        use std::task::Poll;
        // Both fields are `Unpin`.
        let this = self.get_mut();
        if let Poll::Ready(r) = std::pin::Pin::new(&mut this.read).poll(cx) {
            return Poll::Ready(match r {
                Ok(Some(b)) => ReadOutcome::Data(b),
                _ => ReadOutcome::Closed,
            });
        }
        if this.handover && this.waiter.drain().handing() {
            return Poll::Ready(ReadOutcome::HandOver);
        }
        match this.waiter.poll_idle(cx) {
            Poll::Ready(IdleEnd::Drained) => Poll::Ready(ReadOutcome::Drained),
            Poll::Ready(IdleEnd::TimedOut) => Poll::Ready(ReadOutcome::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Read what arrives before `until` (a precise timer: only heads split over reads get here).
pub(crate) async fn read_until(conn: &Conn, until: Instant) -> ReadOutcome {
    use std::{future::Future, task::Poll};
    let mut read = std::pin::pin!(conn.read());
    let mut sleep = std::pin::pin!(compio::time::sleep_until(until));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(Some(b)) => ReadOutcome::Data(b),
                _ => ReadOutcome::Closed,
            });
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(ReadOutcome::TimedOut);
        }
        Poll::Pending
    })
    .await
}

/// A request whose head has been decoded, routed and given the forwarding policy.
pub(crate) struct Begun<'l> {
    pub info: ReqInfo,
    pub route: Option<&'l Route>,
}

/// One request/response exchange on the connection, starting from the bytes that ended the
/// idle wait (`first`), or from pipelined bytes already in `pending`.
pub(crate) async fn exchange(
    d: &mut Downstream<H1>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    first: Option<ReadBuf>,
) -> Next {
    let begun = match read_head(d, l, w, first).await {
        Ok(b) => b,
        Err(next) => return next,
    };
    w.stats.downstream_rq(l.stats_slot);
    stream::run(d, l, w, begun).await
}

/// Steps 2-3: read until the head is complete (under `request_headers_timeout`) and begin its
/// stream. `Err` carries what to do with the connection when no request came (closed, timed
/// out, malformed: answered already).
async fn read_head<'l>(
    d: &mut Downstream<H1>,
    l: &'l ListenerCtx,
    w: &WorkerCtx,
    mut first: Option<ReadBuf>,
) -> Result<Begun<'l>, Next> {
    let mut deadline: Option<Instant> = None;
    loop {
        if !d.side.pending.is_empty() {
            d.si.start.get_or_insert_with(Instant::now);
            d.si.downstream_remote = Some(d.peer);
            let pending = std::mem::take(&mut d.side.pending);
            let got = begin(&pending, l, w, d);
            d.side.pending = pending;
            match got {
                Ok(Some((b, used))) => {
                    let _ = d.side.pending.split_to(used);
                    return Ok(b);
                }
                Ok(None) => {}
                // Boxed, as the other rare paths: an idle connection's task is sized for its
                // largest state, and these states are never the common case.
                Err(e) => return Err(Box::pin(stream::reply_parse_error(d, w, e)).await),
            }
        }
        // Bytes of a head that is not complete yet: the rest must come before
        // `request_headers_timeout`, counted from the first read that found it incomplete.
        let read = match first.take() {
            Some(b) => ReadOutcome::Data(b),
            None => {
                let dl = *deadline
                    .get_or_insert_with(|| Instant::now() + l.http.request_headers_timeout);
                read_until(&d.side.conn, dl).await
            }
        };
        let buf = match read {
            ReadOutcome::Data(b) => {
                d.si.start.get_or_insert_with(Instant::now);
                d.si.downstream_remote = Some(d.peer);
                b
            }
            ReadOutcome::TimedOut => {
                let why = LocalReason::RequestHeadersTimeout;
                return Err(Box::pin(stream::reply_early(d, w, why)).await);
            }
            _ => return Err(Next::Close),
        };
        if d.side.pending.is_empty() {
            // Common case: the whole head is in this one read.
            match begin(&buf, l, w, d) {
                Ok(Some((b, used))) => {
                    if used < buf.len() {
                        d.side.pending.extend_from_slice(&buf[used..]);
                    }
                    return Ok(b);
                }
                Ok(None) => d.side.pending.extend_from_slice(&buf),
                Err(e) => return Err(Box::pin(stream::reply_parse_error(d, w, e)).await),
            }
        } else {
            d.side.pending.extend_from_slice(&buf);
        }
    }
}

/// Parse the head at the front of `src`; when it is complete, decode it into the request's
/// record, route it and apply the forwarding policy. `Ok(Some((begun, head_len)))` when
/// complete. Synchronous, so the parser's header array never lives in the connection's future.
fn begin<'l>(
    src: &[u8],
    l: &'l ListenerCtx,
    w: &WorkerCtx,
    d: &mut Downstream<H1>,
) -> Result<Option<(Begun<'l>, usize)>, h1::ParseError> {
    let mut headers = h1::header_slots();
    let si = &mut *d.si;
    let req = match h1::parse_request(src, &mut headers, &l.limits) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            si.seen = true;
            return Err(e);
        }
    };
    si.seen = true;
    si.version = Some(req.version.into());
    let scheme = if l.http.tls.is_some() {
        si.tls = d.side.conn.tls_details().cloned();
        "https"
    } else {
        "http"
    };
    let seen = model::decode_request(&req, scheme, &mut si.req);
    let upgrade = model::forwarded_upgrade(&req).map(Bytes::copy_from_slice);
    let info = ReqInfo {
        version: req.version.into(),
        keep_alive: req.keep_alive,
        is_head: req.method == "HEAD",
        framing: req.framing,
        expect_continue: req.expect_continue,
        idempotent: req.is_idempotent(),
        upgrade,
        grpc_timeout: seen.grpc_timeout,
        te_trailers: false,
    };
    let route = route_and_policy(l, w, si, d.peer, seen);
    Ok(Some((Begun { info, route }, req.head_len)))
}

/// After a head is decoded into the record (any codec): start or continue its trace, route it
/// and, when the route forwards, apply the forwarding policy (x-forwarded-*, x-request-id,
/// x-forwarded-client-cert, trace headers), on the model, before the filters (as Envoy's
/// connection manager).
pub(crate) fn route_and_policy<'l>(
    l: &'l ListenerCtx,
    w: &WorkerCtx,
    si: &mut stream_info::StreamInfo,
    peer: SocketAddr,
    seen: model::Seen,
) -> Option<&'l Route> {
    let trace = l.trace_threshold.map(|threshold| {
        crate::trace::context::begin(
            si.req.headers.iter(),
            threshold,
            w.tracer.zipkin,
            &w.tracer.rng,
        )
    });
    si.trace = trace;
    let sampled = trace.is_some_and(|t| t.sampled);
    let route = l.routes.find(
        si.req.authority(),
        si.req.path(),
        si.req.method_str().as_bytes(),
        &si.req.headers,
    );
    if sampled {
        si.http_route = route.map(|r| std::sync::Arc::clone(&r.http_route));
    }
    // The forwarding policy, on the model, before the filters (as Envoy's connection manager).
    if matches!(
        route.map(|r| &r.action),
        Some(crate::config::RouteAction::Forward(_))
    ) {
        let mut idbuf = [0u8; 36];
        let request_id: &[u8] = if l.http.generate_request_id && !seen.request_id {
            w.request_ids.next(&mut idbuf);
            si.generated_request_id = Some(idbuf);
            &idbuf
        } else {
            b""
        };
        super::policy::forwarding(&mut si.req, seen, peer.ip(), request_id);
        if seen.client_cert
            || (l.http.xfcc.sets() && si.tls.as_ref().is_some_and(|t| t.peer.is_some()))
        {
            super::policy::client_cert(&mut si.req, seen, &l.http.xfcc, si.tls.as_deref());
        }
        if let Some(t) = &trace {
            super::policy::trace_headers(&mut si.req, t);
        }
    }
    route
}

/// Whether a request's framing says it has no body.
pub(crate) fn bodiless(framing: BodyFraming) -> bool {
    matches!(framing, BodyFraming::None | BodyFraming::Length(0))
}

/// The record keeps the codec's version as its own (the same two values).
impl From<Version> for stream_info::Version {
    fn from(v: Version) -> Self {
        match v {
            Version::Http10 => stream_info::Version::Http10,
            Version::Http11 => stream_info::Version::Http11,
        }
    }
}
