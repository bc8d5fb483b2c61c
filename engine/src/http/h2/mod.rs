//! HTTP/2 from clients: the second codec on the stream layer, with the `h2` crate.
//!
//! ```text
//! conn_manager::run (HTTP/1 task of the connection)
//!   codec_type http2, TLS ALPN "h2", or (auto) the first bytes are the preface ─▶ serve
//!     io::poll::PollIo (the seam as poll I/O) ─▶ h2 server handshake (our SETTINGS: streams, windows,
//!       header list size) within request_headers_timeout
//!     accept loop (this task drives the connection: frames in and out)
//!       each stream ─▶ its own task on this worker ─▶ stream::serve ─▶ stream layer
//!       idle_timeout with no stream open, or the worker draining ─▶ graceful GOAWAY
//!         (h2's two phases: a GOAWAY naming the largest stream id and a PING, then the real
//!          last stream id once the PING returns), the open streams finish, then the close
//! ```
//!
//! Streams of one connection run concurrently on the connection's worker; each has its own
//! record (`StreamInfo`), observers, filters and upstream exchange, exactly as an HTTP/1
//! request. Limits the `h2` crate enforces from our settings: `max_concurrent_streams`
//! (REFUSED_STREAM beyond it), the flow-control windows (a client can have at most a window of
//! body bytes in the proxy per stream, and per connection), `max_header_list_size` (the
//! decoded header list, so an HPACK bomb is refused), streams reset by the client faster than
//! they are served (Rapid Reset: GOAWAY ENHANCE_YOUR_CALM), a CONTINUATION sequence longer
//! than the header list allows.

mod stream;
pub mod wire;

pub(crate) use stream::send_data;
pub use wire::{from_http_trailers, is_preface, to_http_headers, PREFACE};

use std::{cell::Cell, rc::Rc, task::Poll};

use crate::{
    drain::IdleEnd,
    http::{
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{Downstream, H1},
    },
    stats::inc,
};

/// Streams a client may reset before the proxy has even accepted them before the connection
/// is closed with ENHANCE_YOUR_CALM (Rapid Reset, CVE-2023-44487).
const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams the proxy may reset because of the client's errors before it gives up on the
/// connection (a peer provoking resets in a loop).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Streams a client may reset early (before their response ended) before the connection is
/// judged by the share of its streams it resets (half or more: closed with ENHANCE_YOUR_CALM).
const PREMATURE_RESETS: u32 = 100;

/// What a connection's streams tell it.
#[derive(Debug, Default)]
pub(crate) struct ConnCounts {
    pub(crate) streams: Cell<u32>,
    /// Streams the client reset before their response ended.
    pub(crate) resets: Cell<u32>,
}

/// Bytes `h2` may queue for one stream beyond what the client's window lets out.
const MAX_SEND_BUFFER: usize = 64 * 1024;

/// Serve a connection as HTTP/2 until it closes. `d.side.pending` holds the bytes read so far
/// (the preface, or nothing after TLS chose `h2`).
pub(crate) async fn serve(d: Downstream<H1>, l: &Rc<ListenerCtx>, w: &Rc<WorkerCtx>) {
    let Downstream {
        side, peer, local, ..
    } = d;
    let conn = Rc::new(side.conn);
    let io = crate::io::poll::PollIo::new(Rc::clone(&conn), side.pending);
    let o = &l.http.http2;
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(o.max_concurrent_streams)
        .initial_window_size(o.initial_stream_window_size)
        .initial_connection_window_size(o.initial_connection_window_size)
        .max_header_list_size(o.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        // RFC 8441: WebSockets over HTTP/2 (extended CONNECT with `:protocol`).
        .enable_connect_protocol();
    let handshake = b.handshake::<_, bytes::Bytes>(io);
    let deadline = w.drain.deadline_in(l.http.request_headers_timeout);
    let mut h2c = match w.drain.before(deadline, handshake).await {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        None => {
            tracing::debug!(%peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let stats = w.stats.listeners.get(l.stats_slot).map(|s| &s.h2);
    if let Some(s) = stats {
        inc(&s.cx_total);
    }
    let counts = Rc::new(ConnCounts::default());
    let mut waiter = w.drain.waiter_for(l.http.idle_timeout);
    let mut closing = false;
    let mut calmed = false;
    // `connection_keepalive`: a PING every interval; no answer within the timeout closes.
    let keepalive = o.keepalive;
    let mut ping = keepalive.and_then(|_| h2c.ping_pong());
    let mut ping_at = keepalive.map(|(i, _)| w.drain.waiter_for(i));
    let mut pong_by: Option<crate::drain::Waiter<'_>> = None;
    enum Ev<T> {
        Accept(Option<Result<T, h2::Error>>),
        Drain,
        Idle,
        NoPong,
    }
    loop {
        let ev = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = h2c.poll_accept(cx) {
                return Poll::Ready(Ev::Accept(r));
            }
            if let (Some((interval, timeout)), Some(pp)) = (keepalive, ping.as_mut()) {
                if let Some(by) = pong_by.as_mut() {
                    match pp.poll_pong(cx) {
                        Poll::Ready(Ok(_)) => {
                            pong_by = None;
                            ping_at = Some(w.drain.waiter_for(interval));
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(Ev::NoPong),
                        Poll::Pending => {
                            if by.poll_deadline(cx).is_ready() {
                                return Poll::Ready(Ev::NoPong);
                            }
                        }
                    }
                } else if ping_at
                    .as_mut()
                    .is_some_and(|t| t.poll_deadline(cx).is_ready())
                    && pp.send_ping(h2::Ping::opaque()).is_ok()
                {
                    let mut by = w.drain.waiter_for(timeout);
                    let _ = by.poll_deadline(cx);
                    pong_by = Some(by);
                    if let Poll::Ready(Err(_)) = pp.poll_pong(cx) {
                        return Poll::Ready(Ev::NoPong);
                    }
                }
            }
            if closing {
                return Poll::Pending;
            }
            // Any drain, polite or not, starts the GOAWAY (the polite way to close HTTP/2).
            if w.drain.is_draining() {
                return Poll::Ready(Ev::Drain);
            }
            match waiter.poll_idle(cx) {
                Poll::Ready(IdleEnd::Drained) => Poll::Ready(Ev::Drain),
                Poll::Ready(IdleEnd::TimedOut) => Poll::Ready(Ev::Idle),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match ev {
            Ev::Accept(Some(Ok((req, respond)))) => {
                counts.streams.set(counts.streams.get() + 1);
                if let Some(s) = stats {
                    inc(&s.rq_total);
                }
                let (c, l2, w2) = (Rc::clone(&conn), Rc::clone(l), Rc::clone(w));
                let n = Rc::clone(&counts);
                compio::runtime::spawn(stream::serve(req, respond, c, peer, local, l2, w2, n))
                    .detach();
                waiter = w.drain.waiter_for(l.http.idle_timeout);
                // Rapid Reset: a client that resets most of what it opens is closed.
                let resets = counts.resets.get();
                if !calmed && resets >= PREMATURE_RESETS && resets * 2 >= counts.streams.get() {
                    calmed = true;
                    tracing::debug!(%peer, resets, "HTTP/2 client resets most streams: closing");
                    if let Some(s) = stats {
                        inc(&s.too_many_resets);
                    }
                    h2c.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                }
            }
            Ev::Accept(Some(Err(e))) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 connection error");
                if let Some(s) = stats {
                    inc(&s.connection_error);
                }
                break;
            }
            Ev::Accept(None) => break,
            Ev::NoPong => {
                tracing::debug!(%peer, "HTTP/2 client did not answer a keep-alive PING: closing");
                if let Some(s) = stats {
                    inc(&s.keepalive_timeout);
                }
                break;
            }
            Ev::Drain => {
                h2c.graceful_shutdown();
                closing = true;
            }
            Ev::Idle if h2c.has_streams() => waiter = w.drain.waiter_for(l.http.idle_timeout),
            Ev::Idle => {
                h2c.graceful_shutdown();
                closing = true;
            }
        }
    }
}
