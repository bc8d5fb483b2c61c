//! The TLS step of a connection on a chain with `tls:`: the handshake (bounded by the chain's
//! `transport_socket_connect_timeout` on the worker's coarse clock), then the chain's network
//! filter over the decrypted stream (`io::tls` does the work under the seam).
//!
//! Each worker uses its own copy of the chain's rustls `ServerConfig` with its own session
//! cache (resumption by session id never takes a lock shared with another worker; session
//! tickets work across workers, their keys being the chain's).
//!
//! Certificate reload (`crate::certs`): the worker registers each of its TLS steps here; a
//! `Control::ReloadCerts` swaps in the new config for the steps it names ([`reload`]), keeping
//! the session cache. A handshake takes the config current when it starts; established
//! connections keep the one they were made with.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::{Rc, Weak},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;

use super::Serve;
use crate::{config::DownstreamTls, http::ctx::WorkerCtx, io::Conn, stats::inc, tcp_proxy::Origin};

/// Sessions each worker remembers per TLS chain for resumption by session id.
const SESSION_CACHE: usize = 4096;

thread_local! {
    /// This worker's TLS steps (each worker is one thread), for certificate reloads.
    static STEPS: RefCell<Vec<Weak<TlsServe>>> = const { RefCell::new(Vec::new()) };
}

/// A TLS chain on one worker.
pub struct TlsServe {
    server: RefCell<Arc<rustls::ServerConfig>>,
    /// Which chain config it was built from or last reloaded to (see `control::CertUpdate`).
    id: Cell<usize>,
    timeout: Duration,
    /// The chain's network filter (`Http` or `TcpProxy`).
    pub inner: Serve,
}

impl TlsServe {
    /// The worker's step for a chain; registered for reloads.
    pub fn new(tls: &Arc<DownstreamTls>, inner: Serve) -> Rc<TlsServe> {
        let mut server = (*tls.server).clone();
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        let t = Rc::new(TlsServe {
            server: RefCell::new(Arc::new(server)),
            id: Cell::new(Arc::as_ptr(tls) as usize),
            timeout: tls.handshake_timeout,
            inner,
        });
        STEPS.with_borrow_mut(|s| {
            s.retain(|w| w.strong_count() > 0);
            s.push(Rc::downgrade(&t));
        });
        t
    }
}

/// Apply a certificate reload to this worker's TLS steps; returns how many were updated.
pub fn reload(update: &crate::control::CertUpdate) -> usize {
    STEPS.with_borrow(|steps| {
        let mut n = 0;
        for t in steps.iter().filter_map(Weak::upgrade) {
            let Some((_, new_id, cfg)) = update.chains.iter().find(|c| c.0 == t.id.get()) else {
                continue;
            };
            let mut server = (**cfg).clone();
            // Sessions cached under the old certificates stay resumable.
            server.session_storage = Arc::clone(&t.server.borrow().session_storage);
            *t.server.borrow_mut() = Arc::new(server);
            t.id.set(*new_id);
            n += 1;
        }
        n
    })
}

/// Handshake, then serve the connection with the chain's network filter. `first`: bytes the
/// listener filters already read (the start of the ClientHello); `origin`: what they learned
/// (a PROXY header's addresses). `count`: this task counts the connection, tracks it for drain
/// and holds its load guard (a connection straight from accept); otherwise the listener-filter
/// stage does.
pub async fn serve(
    conn: Conn,
    peer: SocketAddr,
    first: BytesMut,
    origin: Origin,
    t: Rc<TlsServe>,
    w: Rc<WorkerCtx>,
    count: bool,
) {
    let _counted = count.then(|| {
        (
            w.drain.track(),
            w.stats.downstream_cx(t.inner.index()),
            crate::balance::LoadGuard::new(w.balance.as_deref(), w.id),
        )
    });
    let stats = w.stats.listeners.get(t.inner.index());
    let deadline = w.drain.deadline_in(t.timeout);
    let server = Arc::clone(&t.server.borrow());
    let handshake = crate::io::tls::accept(conn, first, server);
    let conn = match w.drain.before(deadline, handshake).await {
        Some(Ok(conn)) => conn,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            if let Some(s) = stats {
                inc(&s.ssl_connection_error);
            }
            return;
        }
        None => {
            tracing::debug!(%peer, "TLS handshake timed out");
            if let Some(s) = stats {
                inc(&s.ssl_connection_error);
            }
            return;
        }
    };
    if let Some(s) = stats {
        inc(&s.ssl_handshake);
    }
    match &t.inner {
        Serve::Http(l) => {
            let (local, l, w2) = (origin.destination, Rc::clone(l), Rc::clone(&w));
            crate::http::conn_manager::serve_with(conn, peer, BytesMut::new(), local, l, w2).await
        }
        Serve::TcpProxy(l) => {
            let l = Rc::clone(l);
            crate::tcp_proxy::serve_with(conn, peer, BytesMut::new(), origin, l, &w).await
        }
        Serve::Select(_) | Serve::Tls(_) => {}
    }
}
