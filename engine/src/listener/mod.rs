//! Listeners: each worker binds its own SO_REUSEPORT socket per configured listener (the kernel
//! spreads new connections between workers) and accepts on it; every connection stays on the
//! worker that accepted it.
//!
//! Binding happens on the control thread before workers start, so a port clash is reported once
//! and clearly — including a leftover process that would otherwise silently share the port
//! through SO_REUSEPORT. Running out of file descriptors pauses accepting briefly (no spinning)
//! and accepting resumes once descriptors free up.
//!
//! An accept loop is handed what its listener's connections run ([`Serve`]: the terminal network
//! filter with its per-worker context) and its worker's context ([`WorkerCtx`]): it waits on the
//! worker's drain, balances connections between workers when the listener asks for it, and
//! spawns one task per connection: the HTTP connection manager ([`crate::http::conn_manager`])
//! or the TCP proxy ([`crate::tcp_proxy`]); for a listener with listener filters or several
//! filter chains, first the listener-filter stage ([`inspect`]), which picks the chain
//! ([`select`]).

pub mod inspect;
pub mod select;
pub mod tls;

use std::{
    future::Future,
    io,
    net::{SocketAddr, TcpListener as StdListener},
    os::fd::AsRawFd,
    rc::Rc,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    http::ctx::{ListenerCtx, WorkerCtx},
    io::Conn,
    tcp_proxy::TcpProxyCtx,
};

/// What one listener's connections run on one worker: its terminal network filter, or the
/// listener-filter stage that picks one.
#[derive(Clone)]
pub enum Serve {
    /// `http_connection_manager`.
    Http(Rc<ListenerCtx>),
    /// `tcp_proxy`.
    TcpProxy(Rc<TcpProxyCtx>),
    /// Listener filters and filter-chain matching first ([`inspect`]).
    Select(Rc<inspect::Selecting>),
    /// A TLS handshake first ([`tls`]), then the chain's network filter.
    Tls(Rc<tls::TlsServe>),
}

impl Serve {
    /// Per-worker context of `l` (`index`: its position in the config; `slots`: the stats
    /// slots of its network filters, in `Listener::networks()` order; `local_port`: the port
    /// its socket is bound to), built by `worker`.
    pub fn new(
        l: &crate::config::Listener,
        index: usize,
        slots: &[usize],
        worker: ringway_filters::WorkerInfo,
        local_port: u16,
    ) -> Serve {
        let slot = |k: usize| slots.get(k).copied().unwrap_or(index);
        let Some(sel) = &l.select else {
            return Serve::network(l, &l.network, index, slot(0), worker);
        };
        Serve::Select(Rc::new(inspect::Selecting {
            name: l.name.clone(),
            index,
            exact_balance: l.exact_balance,
            local_port,
            proxy_protocol: sel.proxy_protocol,
            allow_without_proxy_protocol: sel.allow_without_proxy_protocol,
            tls_inspector: sel.tls_inspector,
            match_destination_ip: sel.chains.iter().any(|c| c.matcher.needs_destination_ip()),
            access_log: sel.access_log.clone(),
            timeout: sel.timeout,
            continue_on_timeout: sel.continue_on_timeout,
            matchers: sel.chains.iter().map(|c| c.matcher.clone()).collect(),
            chains: sel
                .chains
                .iter()
                .enumerate()
                .map(|(k, c)| Serve::network(l, &c.network, index, slot(k), worker))
                .collect(),
            default: sel
                .default
                .as_ref()
                .map(|n| Serve::network(l, n, index, slot(sel.chains.len()), worker)),
        }))
    }

    /// The context of one network filter of `l`.
    fn network(
        l: &crate::config::Listener,
        network: &crate::config::NetworkFilter,
        index: usize,
        stats_slot: usize,
        worker: ringway_filters::WorkerInfo,
    ) -> Serve {
        let inner = match network {
            crate::config::NetworkFilter::Http(h) => {
                let mut ctx = ListenerCtx::new(l, h, worker);
                ctx.index = index;
                ctx.stats_slot = stats_slot;
                Serve::Http(Rc::new(ctx))
            }
            crate::config::NetworkFilter::TcpProxy(t) => {
                let mut ctx = TcpProxyCtx::new(l, t);
                ctx.index = index;
                ctx.stats_slot = stats_slot;
                Serve::TcpProxy(Rc::new(ctx))
            }
        };
        match network.tls() {
            Some(t) => Serve::Tls(tls::TlsServe::new(t, inner)),
            None => inner,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Serve::Http(l) => &l.name,
            Serve::TcpProxy(l) => &l.name,
            Serve::Select(l) => &l.name,
            Serve::Tls(t) => t.inner.name(),
        }
    }

    /// Position in `Config::listeners` (the index of its stats).
    pub fn index(&self) -> usize {
        match self {
            Serve::Http(l) => l.index,
            Serve::TcpProxy(l) => l.index,
            Serve::Select(l) => l.index,
            Serve::Tls(t) => t.inner.index(),
        }
    }

    fn exact_balance(&self) -> bool {
        match self {
            Serve::Http(l) => l.exact_balance,
            Serve::TcpProxy(l) => l.exact_balance,
            Serve::Select(l) => l.exact_balance,
            Serve::Tls(t) => t.inner.exact_balance(),
        }
    }

    /// Start serving one connection on this worker (a task of its own).
    pub fn spawn(&self, conn: Conn, peer: SocketAddr, worker: &Rc<WorkerCtx>) {
        let w = Rc::clone(worker);
        match self {
            Serve::Http(l) => {
                let l = Rc::clone(l);
                compio::runtime::spawn(crate::http::conn_manager::serve(conn, peer, l, w)).detach();
            }
            Serve::TcpProxy(l) => {
                let l = Rc::clone(l);
                compio::runtime::spawn(crate::tcp_proxy::serve(conn, peer, l, w)).detach();
            }
            Serve::Select(l) => {
                let l = Rc::clone(l);
                compio::runtime::spawn(inspect::serve(conn, peer, l, w)).detach();
            }
            Serve::Tls(t) => {
                let t = Rc::clone(t);
                let (first, origin) = (bytes::BytesMut::new(), Default::default());
                let task = tls::serve(conn, peer, first, origin, t, w, true);
                compio::runtime::spawn(task).detach();
            }
        }
    }
}

/// Why listener sockets could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("listener {name:?}: address {addr} is already in use (another process listens there; stop it or pick another port)")]
    InUse { name: String, addr: SocketAddr },
    #[error("listener {name:?}: cannot bind {addr}: {source}")]
    Io {
        name: String,
        addr: SocketAddr,
        source: io::Error,
    },
}

fn socket_for(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    // Accepted sockets inherit it (Linux): no setsockopt per connection.
    s.set_tcp_nodelay(true)?;
    Ok(s)
}

/// Bind `count` SO_REUSEPORT sockets for one listener (port 0: the first picks a port, the rest
/// share it). Fails if anything already listens on the address.
pub fn bind_group(
    name: &str,
    addr: SocketAddr,
    backlog: u32,
    count: usize,
) -> Result<Vec<StdListener>, BindError> {
    let io_err = |source| BindError::Io {
        name: name.to_string(),
        addr,
        source,
    };
    if addr.port() != 0 {
        // Probe without SO_REUSEPORT: succeeds only if no one (reuseport or not) holds the port.
        let probe = socket_for(addr, false).map_err(io_err)?;
        if let Err(e) = probe.bind(&addr.into()) {
            return Err(if e.kind() == io::ErrorKind::AddrInUse {
                BindError::InUse {
                    name: name.to_string(),
                    addr,
                }
            } else {
                io_err(e)
            });
        }
        drop(probe);
    }
    let mut out = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let s = socket_for(bound, true).map_err(io_err)?;
        s.bind(&bound.into()).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                BindError::InUse {
                    name: name.to_string(),
                    addr: bound,
                }
            } else {
                io_err(e)
            }
        })?;
        s.listen(backlog.min(i32::MAX as u32) as i32)
            .map_err(io_err)?;
        let l: StdListener = s.into();
        if bound.port() == 0 {
            bound = l.local_addr().map_err(io_err)?;
        }
        out.push(l);
    }
    Ok(out)
}

/// Set or clear `TCP_DEFER_ACCEPT` on every socket of a group (a listener's `defer_accept`):
/// set, the kernel completes an accept only once the client's first bytes are in, so a new
/// connection costs the worker one wake-up (accept and request together) instead of two. A
/// client that connects and sends nothing is still accepted, about a second later (after one
/// retransmitted SYN-ACK); its timeouts start then. Applied at every bind, take-over and
/// reload, so a reload that changes the setting changes it on kept sockets too.
pub fn set_defer_accept(name: &str, group: &[StdListener], on: bool) {
    let secs: libc::c_int = on.into();
    for s in group {
        // SAFETY: setsockopt on a socket this group owns; the value outlives the call.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(listener = %name, error = %e, "cannot set TCP_DEFER_ACCEPT (defer_accept)");
            return;
        }
    }
}

/// A socket group taken over from an older process ([`crate::upgrade`]): with fewer sockets
/// than `count`, more are bound into the same SO_REUSEPORT group at `bound` (the kernel spreads
/// new connections over all of them). One that cannot be bound (another user's group) is left
/// out: every socket of the group is still accepted on.
pub fn join_group(
    name: &str,
    bound: SocketAddr,
    backlog: u32,
    mut sockets: Vec<StdListener>,
    count: usize,
) -> Vec<StdListener> {
    while sockets.len() < count {
        let s = socket_for(bound, true).and_then(|s| {
            s.bind(&bound.into())?;
            s.listen(backlog.min(i32::MAX as u32) as i32)?;
            Ok(s)
        });
        match s {
            Ok(s) => sockets.push(s.into()),
            Err(e) => {
                tracing::warn!(listener = %name, address = %bound, error = %e, "upgrade: cannot add a socket to the taken-over group");
                break;
            }
        }
    }
    sockets
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Accept connections until the worker drains, spawning one task per connection.
pub async fn accept_loop(sock: StdListener, ctx: Serve, worker: Rc<WorkerCtx>) {
    let listener = match compio::net::TcpListener::from_std(sock) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %ctx.name(), error = %e, "cannot register listener with the runtime");
            return;
        }
    };
    let mut warned_exhaustion = false;
    let orphans = Rc::new(crate::io::accept::Orphans::default());
    loop {
        let accepted = {
            let mut accept = std::pin::pin!(Some(crate::io::accept::accept(&listener, &orphans)));
            let mut drain = worker.drain.wait();
            let first = std::future::poll_fn(|cx| {
                if let Some(a) = accept.as_mut().as_pin_mut() {
                    if let std::task::Poll::Ready(r) = a.poll(cx) {
                        return std::task::Poll::Ready(Some(r));
                    }
                }
                std::pin::Pin::new(&mut drain).poll(cx).map(|()| None)
            })
            .await;
            match first {
                Some(r) => r,
                None => {
                    // A polite drain: the next generation or a successor process accepts on
                    // this socket too (also when this loop only sees the drain at its end).
                    let shared = worker.drain.is_polite();
                    last_accept(accept, &orphans, &ctx, &worker).await;
                    if shared {
                        take_queued(&listener, &ctx, &worker);
                    }
                    break;
                }
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                warned_exhaustion = false;
                let mut stream = stream;
                if let Some(b) = &worker.balance {
                    if ctx.exact_balance() {
                        let to = b.assign(worker.id);
                        if to != worker.id {
                            match b.send(to, stream, peer, ctx.index()) {
                                Ok(()) => {
                                    worker.stats.downstream_cx_handoff(ctx.index());
                                    continue;
                                }
                                Err(s) => {
                                    b.reassign(to, worker.id);
                                    stream = s;
                                }
                            }
                        }
                    } else {
                        b.keep(worker.id);
                    }
                }
                ctx.spawn(Conn::accepted(stream), peer, &worker);
            }
            Err(e) if is_fd_exhaustion(&e) => {
                if !warned_exhaustion {
                    tracing::warn!(listener = %ctx.name(), error = %e, "out of file descriptors: pausing accept (raise `ulimit -n`)");
                    warned_exhaustion = true;
                }
                // Let connections finish and free descriptors; the backlog holds new ones meanwhile.
                compio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::debug!(listener = %ctx.name(), error = %e, "accept failed");
            }
        }
    }
    tracing::debug!(listener = %ctx.name(), worker = worker.id, "listener closed for drain");
}

/// The accept submitted when the drain began. A polite drain (a successor process or the next
/// generation shares the listening socket) keeps it until idle connections are to close: a
/// connection it takes meanwhile is handed to the next generation (a reload) or served here (one
/// request, `connection: close`). Then, or at once for a plain shutdown, it is withdrawn, and
/// this waits (bounded) until the runtime has reaped it: a connection the kernel gave it as it
/// was withdrawn is found in `orphans` and handed over or served like any other, never closed
/// unanswered (`io::accept`).
async fn last_accept<F>(
    mut accept: std::pin::Pin<&mut Option<F>>,
    orphans: &Rc<crate::io::accept::Orphans>,
    ctx: &Serve,
    worker: &Rc<WorkerCtx>,
) where
    F: std::future::Future<Output = io::Result<(compio::net::TcpStream, SocketAddr)>>,
{
    let got = if worker.drain.closing_idle() {
        None
    } else {
        let mut idle = worker.drain.waiter();
        std::future::poll_fn(|cx| {
            if let Some(a) = accept.as_mut().as_pin_mut() {
                if let std::task::Poll::Ready(r) = a.poll(cx) {
                    return std::task::Poll::Ready(Some(r));
                }
            }
            idle.poll_idle(cx).map(|_| None)
        })
        .await
    };
    let mut found = Vec::new();
    match got {
        Some(Ok(c)) => found.push(c),
        Some(Err(_)) => {}
        None => {
            // Withdraw it (the operation is cancelled; a connection it took is kept). The
            // worker's drain waits for this: its runtime turns until the accept is reaped.
            let _reaping = worker.drain.track();
            accept.set(None);
            let reaped = std::future::poll_fn(|cx| orphans.poll_reaped(cx));
            let limit = compio::time::sleep(REAP_WAIT);
            match futures_util::future::select(std::pin::pin!(reaped), std::pin::pin!(limit)).await
            {
                futures_util::future::Either::Left((taken, _)) => found = taken,
                futures_util::future::Either::Right(_) => {
                    tracing::warn!(listener = %ctx.name(), worker = worker.id, "the last accept was not reaped in time");
                }
            }
        }
    }
    for (stream, peer) in found {
        serve_last(stream, peer, ctx, worker);
    }
}

/// After a polite drain withdrew its accept, the worker takes what is queued on its listening
/// socket: handed to the next generation (a reload) or served here (a binary upgrade's old
/// process). An accept waits on the socket with an exclusive wake-up: a connection that arrives
/// as the withdrawn accept is cancelled can spend its wake-up on it, and the accept of the next
/// generation (or process) on the same socket then sleeps on while the connection waits in the
/// queue for the next arrival (seen under test as a lone client's request never answered right
/// after a reload). Non-blocking: stops at the first empty read of the queue.
fn take_queued(listener: &compio::net::TcpListener, ctx: &Serve, worker: &Rc<WorkerCtx>) {
    let sock = socket2::SockRef::from(listener);
    // Never block the worker: listening sockets are non-blocking (`socket_for`); check anyway.
    if !sock.nonblocking().unwrap_or(false) {
        return;
    }
    for _ in 0..QUEUED_MAX {
        let Ok((s, addr)) = sock.accept() else {
            return;
        };
        let Some(peer) = addr.as_socket() else {
            continue;
        };
        if let Ok(stream) = compio::net::TcpStream::from_std(std::net::TcpStream::from(s)) {
            serve_last(stream, peer, ctx, worker);
        }
    }
}

/// Most queued connections one worker takes for the next generation at the end of its drain.
const QUEUED_MAX: usize = 1024;

/// How long a draining worker waits for its withdrawn accept to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(1);

/// A connection a draining worker's last accept took: to the next generation when there is
/// one, otherwise served here.
fn serve_last(
    stream: compio::net::TcpStream,
    peer: SocketAddr,
    ctx: &Serve,
    worker: &Rc<WorkerCtx>,
) {
    if worker.can_hand_over(ctx.index()) {
        if let Ok(fd) = std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned() {
            if worker
                .hand_over(std::net::TcpStream::from(fd), peer, ctx.index())
                .is_ok()
            {
                return;
            }
        }
    }
    if let Some(b) = &worker.balance {
        b.keep(worker.id);
    }
    ctx.spawn(Conn::accepted(stream), peer, worker);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Conn::accepted` sets no TCP_NODELAY: it relies on this.
    #[test]
    fn accepted_sockets_inherit_tcp_nodelay_from_the_listening_socket() {
        let s = socket_for("127.0.0.1:0".parse().unwrap(), false).unwrap();
        s.listen(8).unwrap();
        let l = StdListener::from(s);
        l.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
