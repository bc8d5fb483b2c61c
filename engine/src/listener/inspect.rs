//! The listener-filter stage: what a connection says before its application protocol, read
//! on the worker that accepted it, then the filter chain that serves it.
//!
//! ```text
//! accept ─▶ [proxy_protocol]  read until a whole PROXY v1/v2 header; its bytes are consumed,
//!                             its source becomes the client address (x-forwarded-for, access
//!                             log, source matching), its destination port the one matched
//!        ─▶ [tls_inspector]   read until a whole ClientHello (or a first byte that says not
//!                             TLS): SNI, ALPN, transport protocol; nothing consumed
//!        ─▶ select::select    the chain (or default_filter_chain; none: close, counted)
//!        ─▶ the chain's network filter, handed every byte read and not consumed:
//!             http_connection_manager: as pipelined bytes of the first request
//!             tcp_proxy: written upstream before anything else (TLS passthrough is a
//!             `tcp_proxy` chain matched on `server_names`: the upstream gets the hello as sent)
//! ```
//!
//! Only listeners with listener filters or chain matching run this stage
//! (`config::Listener::select`); the others go straight to their network filter, with no cost
//! per connection. Here: one buffer (`BytesMut`, grown to what the parsers ask for: at most a
//! PROXY header plus a 17 KiB ClientHello), no copy beyond appending each read to it, a hello
//! split over several TLS records reassembled in a per-worker scratch buffer. Every wait is
//! bounded by `listener_filters_timeout` (on the runtime's timer); a peer that sends garbage,
//! closes, or says nothing in time is closed and counted, and never holds the worker (the
//! stage is an ordinary task) — unless `continue_on_listener_filters_timeout` asks to match a
//! connection still waiting for its ClientHello as `raw_buffer` (server-first protocols). Counters, under `listener.<address>.`:
//! `no_filter_chain_match`, `downstream_pre_cx_timeout`, `downstream_listener_filter_error`
//! (a malformed PROXY header or ClientHello), `downstream_listener_filter_remote_close`.

use std::{
    cell::RefCell,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};

use super::{select, Serve};
use crate::{
    config::{ChainMatch, TransportProtocol},
    http::{
        conn_manager::{self, ReadOutcome},
        ctx::WorkerCtx,
    },
    io::Conn,
    l4proto::{client_hello, proxy_protocol},
    stats,
};

/// A listener whose connections go through listener filters and chain selection.
pub struct Selecting {
    pub name: String,
    /// Position in `Config::listeners` (its stats).
    pub index: usize,
    pub exact_balance: bool,
    /// The port of the bound socket (a connection's destination port without a PROXY header).
    pub local_port: u16,
    pub proxy_protocol: bool,
    pub tls_inspector: bool,
    pub timeout: Option<Duration>,
    /// At the timeout, match a connection still waiting for a ClientHello as `raw_buffer`.
    pub continue_on_timeout: bool,
    /// Each chain's match, in config order (beside `chains`).
    pub matchers: Vec<ChainMatch>,
    /// Each chain's network filter (never `Serve::Select`).
    pub chains: Vec<Serve>,
    pub default: Option<Serve>,
}

thread_local! {
    /// Where a ClientHello spread over several records is reassembled (one per worker).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why the stage gave up on a connection.
enum Stop {
    TimedOut,
    Closed,
}

/// Run the listener filters on `conn`, pick its chain and serve it there.
pub async fn serve(conn: Conn, peer: SocketAddr, s: Rc<Selecting>, w: Rc<WorkerCtx>) {
    let lstats = w.stats.listeners.get(s.index);
    let count = |f: fn(&stats::ListenerStats) -> &std::sync::atomic::AtomicU64| {
        if let Some(l) = lstats {
            stats::inc(f(l));
        }
    };
    let deadline = s.timeout.map(|t| Instant::now() + t);
    let mut buf = BytesMut::new();
    let mut peer = peer;
    let mut dst_port = s.local_port;
    if s.proxy_protocol {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(proxy_protocol::Parsed::Complete(h)) => {
                    if let Some((src, dst)) = h.proxied() {
                        peer = src;
                        dst_port = dst.port();
                    }
                    let len = h.len;
                    buf.advance(len);
                    break;
                }
                Ok(proxy_protocol::Parsed::Incomplete { .. }) => {}
                Err(e) => {
                    tracing::debug!(listener = %s.name, %peer, error = %e, "proxy_protocol: closing");
                    count(|l| &l.downstream_listener_filter_error);
                    return;
                }
            }
            if let Err(why) = read_more(&conn, &mut buf, deadline).await {
                return stopped(why, &count);
            }
        }
    }
    let mut inspect = s.tls_inspector;
    let chosen = loop {
        let verdict = if inspect && buf.is_empty() {
            Ok(None)
        } else {
            choose(&s, inspect, &buf, peer, dst_port)
        };
        match verdict {
            Ok(Some(c)) => break c,
            Ok(None) => match read_more(&conn, &mut buf, deadline).await {
                Ok(()) => {}
                // A server-first protocol: give up on the hello, match what is known.
                Err(Stop::TimedOut) if s.continue_on_timeout => inspect = false,
                Err(why) => return stopped(why, &count),
            },
            Err(e) => {
                tracing::debug!(listener = %s.name, %peer, error = %e, "tls_inspector: closing");
                count(|l| &l.downstream_listener_filter_error);
                return;
            }
        }
    };
    let serve = match chosen {
        Some(i) => s.chains.get(i),
        None => s.default.as_ref(),
    };
    match serve {
        Some(Serve::Http(l)) => {
            conn_manager::serve_with(conn, peer, buf, Rc::clone(l), w).await;
        }
        Some(Serve::TcpProxy(l)) => {
            crate::tcp_proxy::serve_with(conn, peer, buf, Rc::clone(l), w).await;
        }
        Some(Serve::Tls(t)) => {
            super::tls::serve(conn, peer, buf, Rc::clone(t), w).await;
        }
        Some(Serve::Select(_)) | None => {
            count(|l| &l.no_filter_chain_match);
        }
    }
}

/// The chain for what is in `buf` (`Ok(Some(None))`: no chain matches), or `Ok(None)` when
/// `tls_inspector` (`inspect`) needs more bytes.
fn choose(
    s: &Selecting,
    inspect: bool,
    buf: &[u8],
    peer: SocketAddr,
    dst_port: u16,
) -> Result<Option<Option<usize>>, client_hello::Error> {
    let raw = select::Seen {
        dst_port,
        src: peer.ip(),
        server_name: None,
        transport: TransportProtocol::RawBuffer,
        alpn: None,
    };
    if !inspect {
        return Ok(Some(select::select(&s.matchers, &raw)));
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match client_hello::peek(buf, &mut scratch)? {
            client_hello::Peek::NeedMore { .. } => Ok(None),
            client_hello::Peek::NotTls => Ok(Some(select::select(&s.matchers, &raw))),
            client_hello::Peek::Tls(hello) => {
                let seen = select::Seen {
                    server_name: hello.server_name.as_ref().map(|n| n.as_str()),
                    transport: TransportProtocol::Tls,
                    alpn: Some(hello.alpn),
                    ..raw
                };
                Ok(Some(select::select(&s.matchers, &seen)))
            }
        }
    })
}

/// Append the next read to `buf`, before `deadline`.
async fn read_more(conn: &Conn, buf: &mut BytesMut, deadline: Option<Instant>) -> Result<(), Stop> {
    let got = match deadline {
        Some(d) => conn_manager::read_until(conn, d).await,
        None => match conn.read().await {
            Ok(Some(b)) => ReadOutcome::Data(b),
            _ => ReadOutcome::Closed,
        },
    };
    match got {
        ReadOutcome::Data(b) => {
            buf.extend_from_slice(&b);
            Ok(())
        }
        ReadOutcome::TimedOut => Err(Stop::TimedOut),
        _ => Err(Stop::Closed),
    }
}

fn stopped(why: Stop, count: &impl Fn(fn(&stats::ListenerStats) -> &std::sync::atomic::AtomicU64)) {
    match why {
        Stop::TimedOut => count(|l| &l.downstream_pre_cx_timeout),
        Stop::Closed => count(|l| &l.downstream_listener_filter_remote_close),
    }
}
