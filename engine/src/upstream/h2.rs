//! HTTP/2 connections to one endpoint, on one worker: multiplexed, so the pool hands out streams
//! on shared connections rather than connections.
//!
//! ```text
//! H2Pool::checkout ─▶ a live connection with a free stream (below the server's
//!                     SETTINGS_MAX_CONCURRENT_STREAMS, ours, and max_requests_per_connection)
//!                  ─▶ none: the caller connects and `add`s (`handshake`), then checks out
//! each connection: a driver task on the worker polls h2's connection future (frames in and
//! out, PING answers); when it ends (closed, GOAWAY and its streams done, an error) the
//! connection is marked dead and leaves the pool at the next checkout.
//! ```
//!
//! A [`Stream`] counts as open on its connection until dropped (after its response body),
//! which is how the pool knows when a connection is full. A connection that has served
//! `max_requests_per_connection` streams is no longer handed out; once its last stream ends and
//! the pool drops its handle, h2 closes it.

use std::{
    cell::{Cell, RefCell},
    future::{poll_fn, Future as _},
    rc::Rc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};

use crate::{config::Http2Options, io::Conn};

/// One connection's shared state: the driver task, the pool and its streams see it.
#[derive(Debug)]
struct State {
    live: Cell<bool>,
    /// Streams open now.
    active: Cell<u32>,
    /// What the server allows at once (its SETTINGS), read by the driver after every poll.
    max: Cell<u32>,
    /// Streams ever opened.
    served: Cell<u64>,
}

/// A connection as the pool holds it.
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    state: Rc<State>,
}

/// This worker's HTTP/2 connections to one endpoint.
#[derive(Default)]
pub struct H2Pool {
    conns: RefCell<Vec<H2Conn>>,
    /// Connections being opened now, and the streams waiting for them.
    connecting: Cell<u32>,
    waiting: Cell<u32>,
    /// Bumped when an opening ends (either way); its waiters look again.
    opened: Cell<u64>,
    wakers: RefCell<Vec<std::task::Waker>>,
}

/// Streams a connection being opened is counted on for, before its server's SETTINGS say how
/// many it takes (h2's own initial assumption).
const EXPECTED_STREAMS: u32 = 100;

/// A connection being opened: counted until dropped, then its waiters look again.
#[derive(Debug)]
pub struct Opening<'p>(&'p H2Pool);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let p = self.0;
        p.connecting.set(p.connecting.get() - 1);
        p.opened.set(p.opened.get() + 1);
        for w in p.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H2Pool({} connections)", self.conns.borrow().len())
    }
}

/// A stream's hold on its connection: one open stream until dropped.
#[derive(Debug)]
pub struct Stream {
    pub send: h2::client::SendRequest<Bytes>,
    state: Rc<State>,
    /// Opened on a connection that carried streams before.
    pub reused: bool,
}

impl Stream {
    /// The connection failed this stream before the server saw it: hand it out no more.
    pub fn mark_dead(&self) {
        self.state.live.set(false);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.state
            .active
            .set(self.state.active.get().saturating_sub(1));
    }
}

impl H2Pool {
    /// A stream on a live connection with room for it (`limit`: `max_requests_per_connection`).
    pub fn checkout(&self, ours: u32, limit: Option<u32>) -> Option<Stream> {
        let mut conns = self.conns.borrow_mut();
        // Dead connections, and exhausted ones whose streams are all done, leave now.
        conns.retain(|c| {
            let s = &c.state;
            let exhausted = limit.is_some_and(|n| s.served.get() >= u64::from(n));
            s.live.get() && !(exhausted && s.active.get() == 0)
        });
        let c = conns.iter().find(|c| {
            let s = &c.state;
            s.active.get() < s.max.get().min(ours)
                && limit.is_none_or(|n| s.served.get() < u64::from(n))
        })?;
        let s = &c.state;
        s.active.set(s.active.get() + 1);
        s.served.set(s.served.get() + 1);
        Some(Stream {
            send: c.send.clone(),
            state: Rc::clone(s),
            reused: s.served.get() > 1,
        })
    }

    /// A connection is about to be opened: streams that find no room wait for it rather than
    /// each opening its own.
    pub fn opening(&self) -> Opening<'_> {
        self.connecting.set(self.connecting.get() + 1);
        Opening(self)
    }

    /// Whether a connection being opened will probably have room for one more stream.
    pub fn room_coming(&self) -> bool {
        self.waiting.get() < self.connecting.get() * EXPECTED_STREAMS
    }

    /// Wait until an opening ends (then check out again).
    pub async fn wait_opened(&self) {
        let seen = self.opened.get();
        self.waiting.set(self.waiting.get() + 1);
        poll_fn(|cx| {
            if self.opened.get() != seen {
                return std::task::Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
        self.waiting.set(self.waiting.get() - 1);
    }

    /// Open HTTP/2 on a new connection (TLS done already, if any), start its driver and take
    /// its first stream.
    pub async fn handshake(
        &self,
        conn: Conn,
        o: &Http2Options,
        timeout: Duration,
        idle: Duration,
    ) -> std::io::Result<Stream> {
        let io = crate::io::poll::PollIo::new(Rc::new(conn), BytesMut::new());
        let mut b = h2::client::Builder::new();
        b.enable_push(false)
            .initial_window_size(o.initial_stream_window_size)
            .initial_connection_window_size(o.initial_connection_window_size)
            .max_header_list_size(o.max_header_list_size)
            .max_send_buffer_size(64 * 1024);
        let (send, mut connection) = match compio::time::timeout(timeout, b.handshake(io)).await {
            Ok(r) => r.map_err(io_error)?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                ))
            }
        };
        let state = Rc::new(State {
            live: Cell::new(true),
            active: Cell::new(1),
            max: Cell::new(stream_limit(&connection)),
            served: Cell::new(1),
        });
        // A PING round trip before the connection takes streams: the server's SETTINGS (its
        // stream limit) come before its answer, so the pool knows the limit from the start.
        let mut ping = connection.ping_pong();
        if let Some(pp) = ping.as_mut() {
            // The driver is not running yet: poll the connection here until the answer.
            let sent = pp.send_ping(h2::Ping::opaque()).map_err(io_error);
            let pong = poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut connection).poll(cx) {
                    return std::task::Poll::Ready(Err(match r {
                        Ok(()) => std::io::Error::other("HTTP/2 connection closed"),
                        Err(e) => io_error(e),
                    }));
                }
                pp.poll_pong(cx).map(|r| r.map(|_| ()).map_err(io_error))
            });
            match sent {
                Ok(()) => match compio::time::timeout(timeout, pong).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "HTTP/2 server did not answer a PING",
                        ))
                    }
                },
                Err(e) => return Err(e),
            }
        }
        state.max.set(stream_limit(&connection));
        let driven = Rc::clone(&state);
        let (keepalive, idle_timeout) = (o.keepalive, idle);
        compio::runtime::spawn(async move {
            drive(connection, ping, driven, keepalive, idle_timeout).await;
        })
        .detach();
        let stream = Stream {
            send: send.clone(),
            state: Rc::clone(&state),
            reused: false,
        };
        self.conns.borrow_mut().push(H2Conn { send, state });
        Ok(stream)
    }

    /// Connections held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An h2 error as an I/O error (its own, when it is one).
pub fn io_error(e: h2::Error) -> std::io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return std::io::Error::other("HTTP/2 I/O error");
    }
    std::io::Error::other(e.to_string())
}

/// A connection's driver: polls h2's connection (frames in and out) until it ends; when the
/// cluster asks for it, PINGs the server every `keepalive.0` and gives the connection up when
/// no answer comes within `keepalive.1`; closes it after `idle` with no stream open.
async fn drive(
    mut connection: h2::client::Connection<crate::io::poll::PollIo, Bytes>,
    mut ping: Option<h2::PingPong>,
    state: Rc<State>,
    keepalive: Option<(Duration, Duration)>,
    idle: Duration,
) {
    use std::task::Poll;
    // The check period: the keep-alive interval, or a tenth of the idle timeout.
    let period = keepalive
        .map_or(idle / 10, |(i, _)| i)
        .max(Duration::from_millis(100));
    let mut tick = Box::pin(compio::time::sleep(period));
    let mut idle_since: Option<std::time::Instant> = None;
    // While a PING waits for its answer: when it must have come.
    let mut awaiting: Option<std::time::Instant> = None;
    let end = poll_fn(|cx| {
        if let Poll::Ready(r) = std::pin::Pin::new(&mut connection).poll(cx) {
            return Poll::Ready(r.err().map(|e| e.to_string()));
        }
        state.max.set(stream_limit(&connection));
        if awaiting.is_some() {
            if let Some(pp) = ping.as_mut() {
                if let Poll::Ready(r) = pp.poll_pong(cx) {
                    awaiting = None;
                    if let Err(e) = r {
                        return Poll::Ready(Some(e.to_string()));
                    }
                }
            }
        }
        while tick.as_mut().poll(cx).is_ready() {
            let now = std::time::Instant::now();
            if awaiting.is_some_and(|dl| now >= dl) {
                return Poll::Ready(Some("no answer to a keep-alive PING".to_string()));
            }
            if state.active.get() == 0 {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= idle {
                    return Poll::Ready(None);
                }
            } else {
                idle_since = None;
            }
            if let (Some((_, timeout)), Some(pp), None) = (keepalive, ping.as_mut(), awaiting) {
                if pp.send_ping(h2::Ping::opaque()).is_ok() {
                    awaiting = Some(now + timeout);
                    // Poll once so the answer's waker is registered.
                    if let Poll::Ready(Err(e)) = pp.poll_pong(cx) {
                        return Poll::Ready(Some(e.to_string()));
                    }
                }
            }
            tick = Box::pin(compio::time::sleep(period));
        }
        Poll::Pending
    })
    .await;
    if let Some(e) = end {
        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
    }
    state.live.set(false);
}

/// The server's limit on concurrent streams, as far as `h2` knows it now.
fn stream_limit(c: &h2::client::Connection<crate::io::poll::PollIo, Bytes>) -> u32 {
    c.max_concurrent_send_streams().min(u32::MAX as usize) as u32
}
