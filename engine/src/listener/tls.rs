//! The TLS step of a connection on a chain with `tls:`: the handshake (bounded by the chain's
//! `transport_socket_connect_timeout` on the worker's coarse clock), then the chain's network
//! filter over the decrypted stream (`io::tls` does the work under the seam).
//!
//! Each worker uses its own copy of the chain's rustls `ServerConfig` with its own session
//! cache (resumption by session id never takes a lock shared with another worker; session
//! tickets work across workers, their keys being the chain's).

use std::{net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use bytes::BytesMut;

use super::Serve;
use crate::{config::DownstreamTls, http::ctx::WorkerCtx, io::Conn, stats::inc, tcp_proxy::Origin};

/// Sessions each worker remembers per TLS chain for resumption by session id.
const SESSION_CACHE: usize = 4096;

/// A TLS chain on one worker.
pub struct TlsServe {
    server: Arc<rustls::ServerConfig>,
    timeout: Duration,
    /// The chain's network filter (`Http` or `TcpProxy`).
    pub inner: Serve,
}

impl TlsServe {
    pub fn new(tls: &DownstreamTls, inner: Serve) -> TlsServe {
        let mut server = (*tls.server).clone();
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        TlsServe {
            server: Arc::new(server),
            timeout: tls.handshake_timeout,
            inner,
        }
    }
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
    let handshake = crate::io::tls::accept(conn, first, Arc::clone(&t.server));
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
