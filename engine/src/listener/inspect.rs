//! The listener-filter stage: what a connection says before its application protocol, read
//! on the worker that accepted it, then the filter chain that serves it.
//!
//! ```text
//! accept ─▶ counted (downstream_cx_total/active), tracked by drain, in the worker's load
//!        ─▶ [proxy_protocol]  read until a whole PROXY v1/v2 header; its bytes are consumed,
//!                             its source becomes the client address (x-forwarded-for, access
//!                             log, source matching), its destination the one matched and
//!                             the one a cluster's PROXY header names (`Origin`); with
//!                             allow_requests_without_proxy_protocol, a first byte that
//!                             differs from both signatures means no header: served as is
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
//! split over several TLS records reassembled in a per-worker scratch buffer, and one
//! `getsockname` only when a chain matches on the destination address and no PROXY header
//! gave it. Every wait is bounded by `listener_filters_timeout` (on the runtime's timer) and by
//! the worker's drain; a peer that sends garbage, closes, or says nothing in time is closed
//! and counted, and never holds the worker (the stage is an ordinary task) — unless
//! `continue_on_listener_filters_timeout` asks to match a connection still waiting for its
//! ClientHello as `raw_buffer` (server-first protocols). The connection counts as the
//! listener's from its accept (the chain's filter does not count it again). Counters, under
//! `listener.<address>.`: `no_filter_chain_match`, `downstream_pre_cx_timeout`,
//! `downstream_listener_filter_error` (a malformed PROXY header or ClientHello),
//! `downstream_listener_filter_remote_close`, `proxy_proto.not_found_allowed`. Each
//! connection closed here gets one line in the listener's own `access_log`.

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    sync::atomic::AtomicU64,
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};

use super::{select, Serve};
use crate::{
    config::{AccessLog, ChainMatch, TransportProtocol},
    drain::Drain,
    error::LocalReason,
    http::{conn_manager, ctx::WorkerCtx},
    io::Conn,
    l4proto::{client_hello, proxy_protocol},
    stats,
    stream_info::SiSlot,
    tcp_proxy::Origin,
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
    /// A connection whose first bytes are not a PROXY signature is served as is.
    pub allow_without_proxy_protocol: bool,
    pub tls_inspector: bool,
    /// Some chain matches on the destination address (`prefix_ranges`, `source_type`): read
    /// the socket's local address when there is no PROXY header.
    pub match_destination_ip: bool,
    pub timeout: Option<Duration>,
    /// At the timeout, match a connection still waiting for a ClientHello as `raw_buffer`.
    pub continue_on_timeout: bool,
    /// Each chain's match, in config order (beside `chains`).
    pub matchers: Vec<ChainMatch>,
    /// Each chain's network filter (never `Serve::Select`).
    pub chains: Vec<Serve>,
    pub default: Option<Serve>,
    /// The listener's `access_log`: one line per connection the stage closes.
    pub access_log: Vec<AccessLog>,
}

thread_local! {
    /// Where a ClientHello spread over several records is reassembled (one per worker).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why the stage gave up on a connection.
#[derive(Clone, Copy)]
enum Stop {
    TimedOut,
    Closed,
    /// The worker started draining: a connection not yet handed to a chain is closed.
    Drained,
    /// A malformed PROXY header or ClientHello.
    Malformed,
    /// No chain matched and there is no default chain.
    NoChain,
}

/// Run the listener filters on `conn`, pick its chain and serve it there. The connection is
/// counted (`downstream_cx_total`, `downstream_cx_active`), tracked by the worker's drain and
/// held in the worker's load from its accept, whether or not a chain ever serves it.
pub async fn serve(conn: Conn, peer: SocketAddr, s: Rc<Selecting>, w: Rc<WorkerCtx>) {
    let _live = w.drain.track();
    let _cx = w.stats.downstream_cx(s.index);
    let _load = crate::balance::LoadGuard::new(w.balance.as_deref(), w.id);
    let start = Instant::now();
    let mut buf = BytesMut::new();
    let mut peer = peer;
    let chosen = match run_filters(&conn, &mut peer, &mut buf, &s, &w).await {
        Ok((chosen, origin)) => match chosen {
            Some(i) => s.chains.get(i).map(|c| (c, origin)),
            None => s.default.as_ref().map(|c| (c, origin)),
        },
        Err(why) => return stopped(why, conn, peer, start, buf.len(), &s, &w),
    };
    match chosen {
        Some((Serve::Http(l), origin)) => {
            let local = origin.destination;
            conn_manager::serve_with(conn, peer, buf, local, Rc::clone(l), Rc::clone(&w)).await;
        }
        Some((Serve::TcpProxy(l), origin)) => {
            crate::tcp_proxy::serve_with(conn, peer, buf, origin, Rc::clone(l), &w).await;
        }
        Some((Serve::Tls(t), origin)) => {
            super::tls::serve(conn, peer, buf, origin, Rc::clone(t), Rc::clone(&w), false).await;
        }
        Some((Serve::Select(_), _)) | None => {
            stopped(Stop::NoChain, conn, peer, start, buf.len(), &s, &w);
        }
    }
}

/// The listener filters, then the chain (`None`: the default chain). `peer` becomes the PROXY
/// header's source; `buf` holds what was read and not consumed.
async fn run_filters(
    conn: &Conn,
    peer: &mut SocketAddr,
    buf: &mut BytesMut,
    s: &Selecting,
    w: &WorkerCtx,
) -> Result<(Option<usize>, Origin), Stop> {
    let deadline = s.timeout.map(|t| Instant::now() + t);
    let mut dst_port = s.local_port;
    let mut origin = Origin::default();
    if s.proxy_protocol {
        loop {
            match proxy_protocol::parse(buf) {
                Ok(proxy_protocol::Parsed::Complete(h)) => {
                    if let Some((src, dst)) = h.proxied() {
                        *peer = src;
                        dst_port = dst.port();
                        origin.destination = Some(dst);
                    }
                    let len = h.len;
                    buf.advance(len);
                    break;
                }
                Ok(proxy_protocol::Parsed::Incomplete { .. }) => {}
                // The parser says so at the first byte that differs from both signatures:
                // for HTTP or TLS, the first byte.
                Err(proxy_protocol::Error::BadSignature) if s.allow_without_proxy_protocol => {
                    count(w, s, |l| &l.proxy_proto_not_found_allowed);
                    break;
                }
                Err(e) => {
                    tracing::debug!(listener = %s.name, %peer, error = %e, "proxy_protocol: closing");
                    return Err(Stop::Malformed);
                }
            }
            match read_more(conn, buf, deadline, &w.drain).await {
                Ok(()) => {}
                // Nothing sent at all (a server-first protocol): no header, served as is.
                Err(Stop::TimedOut)
                    if s.allow_without_proxy_protocol
                        && s.continue_on_timeout
                        && buf.is_empty() =>
                {
                    count(w, s, |l| &l.proxy_proto_not_found_allowed);
                    break;
                }
                Err(why) => return Err(why),
            }
        }
    }
    // The destination address, for chains that match on it (a syscall without a PROXY header).
    let dst_ip = match origin.destination {
        Some(d) => Some(d.ip()),
        None if s.match_destination_ip => conn.local_addr().ok().map(|a| a.ip()),
        None => None,
    };
    let mut inspect = s.tls_inspector;
    loop {
        let verdict = if inspect && buf.is_empty() {
            Ok(None)
        } else {
            choose(s, inspect, buf, *peer, dst_port, dst_ip)
        };
        match verdict {
            Ok(Some(c)) => return Ok((c, origin)),
            Ok(None) => match read_more(conn, buf, deadline, &w.drain).await {
                Ok(()) => {}
                // A server-first protocol: give up on the hello, match what is known.
                Err(Stop::TimedOut) if s.continue_on_timeout => inspect = false,
                Err(why) => return Err(why),
            },
            Err(e) => {
                tracing::debug!(listener = %s.name, %peer, error = %e, "tls_inspector: closing");
                return Err(Stop::Malformed);
            }
        }
    }
}

fn count(w: &WorkerCtx, s: &Selecting, f: fn(&stats::ListenerStats) -> &AtomicU64) {
    if let Some(l) = w.stats.listeners.get(s.index) {
        stats::inc(f(l));
    }
}

type Counter = fn(&stats::ListenerStats) -> &AtomicU64;

/// A connection the stage closes: counted, closed, and one line in the listener's access logs
/// (`NR` for no chain, as Envoy's listener access log; `DC` for a client that closed).
fn stopped(
    why: Stop,
    conn: Conn,
    peer: SocketAddr,
    start: Instant,
    read: usize,
    s: &Selecting,
    w: &WorkerCtx,
) {
    let (counter, details): (Option<Counter>, _) = match why {
        Stop::TimedOut => (
            Some(|l| &l.downstream_pre_cx_timeout),
            "listener_filters_timeout",
        ),
        Stop::Closed => (
            Some(|l| &l.downstream_listener_filter_remote_close),
            "listener_filter_remote_close",
        ),
        Stop::Malformed => (
            Some(|l| &l.downstream_listener_filter_error),
            "listener_filter_error",
        ),
        Stop::NoChain => (Some(|l| &l.no_filter_chain_match), "filter_chain_not_found"),
        Stop::Drained => (None, "listener_drained"),
    };
    if let Some(f) = counter {
        count(w, s, f);
    }
    // Closed before the line is written (its duration ends here).
    drop(conn);
    if s.access_log.is_empty() {
        return;
    }
    let mut si = SiSlot::default();
    si.start = Some(start);
    si.downstream_remote = Some(peer);
    si.bytes_received = read as u64;
    match why {
        Stop::NoChain => si.local_reason = Some(LocalReason::NoFilterChainMatch),
        Stop::Closed => si.downstream_reset = true,
        _ => {}
    }
    si.filter_details = Some(details);
    si.t_last_byte = Some(Instant::now());
    w.access_log.log(&s.access_log, &si, None);
    si.release();
}

/// The chain for what is in `buf` (`Ok(Some(None))`: no chain matches), or `Ok(None)` when
/// `tls_inspector` (`inspect`) needs more bytes.
fn choose(
    s: &Selecting,
    inspect: bool,
    buf: &[u8],
    peer: SocketAddr,
    dst_port: u16,
    dst_ip: Option<IpAddr>,
) -> Result<Option<Option<usize>>, client_hello::Error> {
    let raw = select::Seen {
        dst_port,
        dst_ip,
        src: peer.ip(),
        src_port: peer.port(),
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

/// Append the next read to `buf`, before `deadline` and the worker's drain.
async fn read_more(
    conn: &Conn,
    buf: &mut BytesMut,
    deadline: Option<Instant>,
    drain: &Drain,
) -> Result<(), Stop> {
    use std::{future::Future, task::Poll};
    let mut read = std::pin::pin!(conn.read());
    let mut sleep = std::pin::pin!(deadline.map(compio::time::sleep_until));
    let mut drained = drain.waiter();
    let got = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(Some(b)) => Ok(b),
                _ => Err(Stop::Closed),
            });
        }
        if let Some(sleep) = sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                return Poll::Ready(Err(Stop::TimedOut));
            }
        }
        // A polite drain lets a new connection reach its chain (its first request is served).
        match drained.poll_idle(cx) {
            Poll::Ready(crate::drain::IdleEnd::Drained) => Poll::Ready(Err(Stop::Drained)),
            _ => Poll::Pending,
        }
    })
    .await?;
    buf.extend_from_slice(&got);
    Ok(())
}
