//! The `tcp_proxy` network filter: each downstream connection is joined to one upstream
//! connection and bytes are copied both ways until both sides have closed (Envoy's
//! `envoy.filters.network.tcp_proxy`, without on-demand clusters, weighted clusters or tunneling
//! over HTTP).
//!
//! One task per connection, spawned by the accept loop (`listener::Serve`) for a listener whose
//! filter chain holds `tcp_proxy`:
//! 1. pick an endpoint with the cluster's load balancer ([`ClusterView::pick`]) and connect
//!    within the cluster's `connect_timeout`; a failed connect picks again, up to
//!    `max_connect_attempts` in all, then the downstream connection is closed (`UF` in the
//!    access log, `upstream_cx_connect_attempts_exceeded` on the cluster); a cluster with
//!    `upstream_proxy_protocol` gets the PROXY header (the client's address and the address it
//!    connected to: an incoming PROXY header's destination, [`Origin`], else the downstream
//!    socket's local address) as the first bytes of the connection, before the tunnel starts
//!    (a failed header write counts as a failed connect);
//! 2. copy both ways ([`Tunnel`]: pool buffers, 1 MiB bulk pieces while a direction runs
//!    fast, half-close passed on, `idle_timeout` on the worker's coarse clock);
//! 3. when both sides have closed: count (the connection's length into
//!    `tcp.<stat_prefix>.downstream_cx_length`), and write one access-log line.
//!
//! The connection's record is a `StreamInfo` from the worker's pool (start, peer, cluster,
//! endpoint, bytes each way, end), read by the access log exactly as an HTTP request's is:
//! HTTP-only commands print `-` (`%RESPONSE_CODE%` prints 0, as Envoy's does for TCP).
//!
//! Per connection: one task, one record from the pool, one upstream connect; per piece of data:
//! a read, a write and two single-writer counter stores. The upstream connection is never
//! pooled (a byte stream has no message boundary to reuse it at).

use std::{net::SocketAddr, rc::Rc, time::Instant};

use bytes::BytesMut;

use crate::{
    config,
    endpoint_health::Outcome,
    error::LocalReason,
    http::ctx::WorkerCtx,
    io::Conn,
    stats,
    stream_info::SiSlot,
    tunnel::{End, Tunnel},
    upstream::{encode_proxy_header, ActiveRq, ClusterView, EndpointView, Proxied},
};

/// What a worker's connections need from a `tcp_proxy` listener.
#[derive(Debug)]
pub struct TcpProxyCtx {
    pub name: String,
    /// Position in `Config::listeners`: the index of this listener's stats (set by the worker).
    pub index: usize,
    /// Hand new connections to the least loaded worker (`connection_balance: exact`).
    pub exact_balance: bool,
    pub proxy: config::TcpProxy,
    /// Where this filter's `tcp.<stat_prefix>.` stats are counted
    /// ([`crate::stats::StatSlots`]; `index` for a listener's first chain).
    pub stats_slot: usize,
}

impl TcpProxyCtx {
    pub fn new(l: &config::Listener, proxy: &config::TcpProxy) -> Self {
        TcpProxyCtx {
            name: l.name.clone(),
            index: 0,
            exact_balance: l.exact_balance,
            proxy: proxy.clone(),
            stats_slot: 0,
        }
    }
}

/// Response-code details of a connection closed by `idle_timeout` (Envoy's local close reason
/// for it; Envoy sets no response flag).
pub const IDLE_TIMEOUT_DETAILS: &str = "tcp_session_idle_timeout";

/// Serve one downstream connection until both sides have closed.
pub async fn serve(down: Conn, peer: SocketAddr, l: Rc<TcpProxyCtx>, w: Rc<WorkerCtx>) {
    let _live = w.drain.track();
    let _cx = w.stats.downstream_cx(l.index);
    let _load = crate::balance::LoadGuard::new(w.balance.as_deref(), w.id);
    serve_with(down, peer, BytesMut::new(), Origin::default(), l, &w).await
}

/// What the listener filters learned about a connection, for the PROXY header a cluster
/// sends upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// The original destination from the connection's incoming PROXY header (`None`: there
    /// was none, the socket's local address is the destination).
    pub destination: Option<SocketAddr>,
}

/// [`serve`], for a connection whose first bytes were already read (by the listener filters):
/// `first` goes upstream before anything else, untouched (TLS passthrough hands the
/// ClientHello on this way). `peer` is the client (a PROXY header's source, when there was
/// one). The caller (the listener-filter stage) has counted the connection since its accept,
/// tracks it for drain and holds its load guard until this returns.
pub async fn serve_with(
    down: Conn,
    peer: SocketAddr,
    first: BytesMut,
    origin: Origin,
    l: Rc<TcpProxyCtx>,
    w: &WorkerCtx,
) {
    let tcp = w.stats.listeners.get(l.stats_slot).map(|s| &s.tcp);
    if let Some(t) = tcp {
        stats::inc(&t.downstream_cx_total);
    }
    let p = &l.proxy;
    let mut si = SiSlot::default();
    si.start = Some(Instant::now());
    si.downstream_remote = Some(peer);
    si.cluster = Some(p.cluster);
    si.tls = down.tls_details().cloned();

    let connected = match w.clusters.clusters.get(p.cluster) {
        Some(c) => {
            // The original destination: the incoming PROXY header's, else the downstream's
            // local address (a syscall, for the PROXY header only).
            let proxied = c
                .proxy_protocol
                .and_then(|_| origin.destination.or_else(|| down.local_addr().ok()))
                .map(|l| (peer, l));
            connect(c, p, proxied, w, &mut si)
                .await
                .map(|(up, ep)| (up, ep, c))
        }
        None => {
            // Not in this worker's view (validation resolves every name; kept for Envoy's stat).
            si.local_reason = Some(LocalReason::NoRoute);
            if let Some(t) = tcp {
                stats::inc(&t.downstream_cx_no_route);
            }
            None
        }
    };
    if let Some((up, ep, c)) = connected {
        let _active = ActiveRq::new(c, ep);
        si.t_upstream_ready = Some(Instant::now());
        let tunnel = Tunnel {
            drain: &w.drain,
            idle: p.idle_timeout,
            bulk: &w.bulk_bufs,
            stats: &w.stats,
            counters: [
                tcp.map(|t| &t.downstream_cx_rx_bytes_total),
                tcp.map(|t| &t.downstream_cx_tx_bytes_total),
            ],
        };
        let out = tunnel.run(&down, first, &up, BytesMut::new()).await;
        si.bytes_received = out.a_to_b;
        si.bytes_sent = out.b_to_a;
        if out.end == End::IdleTimeout {
            si.filter_details = Some(IDLE_TIMEOUT_DETAILS);
            if let Some(t) = tcp {
                stats::inc(&t.idle_timeout);
            }
        }
    }
    let end = Instant::now();
    si.t_last_byte = Some(end);
    // Close both sides before the line is written (its duration ends here).
    drop(down);
    if let Some(start) = si.start {
        w.hists
            .cx_done(l.stats_slot, end.saturating_duration_since(start));
    }
    if !p.access_log.is_empty() {
        w.access_log.log(&p.access_log, &si, Some(&p.cluster_name));
    }
    si.release();
}

/// Connect to an endpoint of `c`: up to `max_connect_attempts` picks, each within the cluster's
/// `connect_timeout`, then the PROXY header when the cluster sends one (for `proxied`, the
/// downstream (client, local) addresses). `None` (with the reason in `si`) when every attempt
/// failed.
async fn connect<'c>(
    c: &'c ClusterView,
    p: &config::TcpProxy,
    proxied: Option<Proxied>,
    w: &WorkerCtx,
    si: &mut SiSlot,
) -> Option<(Conn, &'c EndpointView)> {
    let cstats = w.stats.cluster(p.cluster);
    for attempt in 1..=p.max_connect_attempts {
        let Some(ep) = c.pick() else {
            si.local_reason = Some(LocalReason::NoHealthyUpstream);
            return None;
        };
        si.upstream = Some(ep.address);
        si.endpoint = ep.index as u32;
        match Conn::connect(ep.address, c.connect_timeout).await {
            Ok(up) => {
                if let Some(s) = cstats {
                    stats::inc(&s.upstream_cx_total);
                }
                c.report(ep.index, Outcome::Connected);
                match send_proxy_header(c, proxied, &up, w).await {
                    Ok(()) => match &c.tls {
                        None => return Some((up, ep)),
                        // TLS to the upstream: the PROXY header went in the clear first.
                        Some(tls) => {
                            let r =
                                Box::pin(tls.handshake(up, ep.address, c.connect_timeout)).await;
                            if let Some(s) = cstats {
                                stats::inc(match &r {
                                    Ok(_) => &s.ssl_handshake,
                                    Err(_) => &s.ssl_connection_error,
                                });
                            }
                            match r {
                                Ok(up) => return Some((up, ep)),
                                Err(e) => {
                                    tracing::debug!(cluster = %c.name, endpoint = %ep.address, attempt, error = %e, "tcp_proxy: upstream TLS handshake failed");
                                    si.local_reason = Some(LocalReason::UpstreamTlsFailure);
                                    si.upstream_transport_failure =
                                        Some(crate::io::tls::failure_reason(&e));
                                }
                            }
                        }
                    },
                    Err(e) => {
                        if let Some(s) = cstats {
                            stats::inc(&s.upstream_cx_connect_fail);
                        }
                        tracing::debug!(cluster = %c.name, endpoint = %ep.address, attempt, error = %e, "tcp_proxy: PROXY header write failed");
                    }
                }
            }
            Err(e) => {
                if let Some(s) = cstats {
                    stats::inc(&s.upstream_cx_connect_fail);
                }
                c.report(ep.index, Outcome::ConnectFailed);
                tracing::debug!(cluster = %c.name, endpoint = %ep.address, attempt, error = %e, "tcp_proxy: connect failed");
            }
        }
    }
    if let Some(s) = cstats {
        stats::inc(&s.upstream_cx_connect_attempts_exceeded);
    }
    if si.local_reason.is_none() {
        si.local_reason = Some(LocalReason::ConnectFailure);
    }
    None
}

/// Write the cluster's PROXY header on a new upstream connection (nothing for a cluster
/// without `upstream_proxy_protocol`).
async fn send_proxy_header(
    c: &ClusterView,
    proxied: Option<Proxied>,
    up: &Conn,
    w: &WorkerCtx,
) -> std::io::Result<()> {
    let Some(version) = c.proxy_protocol else {
        return Ok(());
    };
    let Some(proxied) = proxied else {
        // Only a broken downstream socket has no local address.
        return Err(std::io::Error::other("downstream local address unknown"));
    };
    let mut b = w.write_bufs.take(0);
    encode_proxy_header(version, proxied, &mut b);
    let (r, b) = up.write_all_keep(b).await;
    w.write_bufs.give(b);
    r
}
