//! Per-worker keep-alive pool of upstream connections for one endpoint.
//!
//! Each idle connection waits with a read already posted ([`Conn::read_posted`]): it holds no
//! buffer, and if the upstream closes (or sends anything) while the connection is idle, that read
//! completes. Checkout polls it once without waiting: a completed read means the connection is
//! dead and it is dropped, so a connection the upstream closed while idle is never used. A live
//! connection leaves with its posted read, which then carries the response: no extra operation
//! per request. LIFO, so the warmest connection is reused and the rest can age out.
//!
//! Stream capacity: what a checkout hands out is a *stream* on a connection. An HTTP/1
//! connection carries one stream at a time ([`HTTP1_STREAMS`]), so checkout takes the whole
//! connection out of the idle list and checkin puts it back. A multiplexed codec (HTTP/2) keeps a
//! connection in the pool while it has fewer than its capacity of streams open, and hands out a
//! stream on it; the forward path only checks out and checks in, so only this module changes.
//!
//! Connections that carry a PROXY protocol header (a cluster with `upstream_proxy_protocol`)
//! belong to the downstream connection they were opened for: the header named that client and
//! the address it connected to, and it goes only once, first on the connection. Such a
//! connection is checked in with the addresses its header carried ([`Pool::checkin`]'s
//! `proxied`) and checked out only for a request with the same addresses
//! ([`Pool::checkout_proxied`], Envoy's rule: its pool key hashes the header's addresses), so
//! two clients never share one. Pools of clusters without the header never see a key.

use std::{cell::RefCell, net::SocketAddr, rc::Rc, sync::Arc};

use crate::{
    io::{poll_now, Conn, PostedRead},
    stats::EndpointStats,
};

pub struct Idle {
    pub conn: Rc<Conn>,
    pub read: PostedRead,
    /// When it went idle, on the worker's coarse clock (`Drain::now_ms`): ages are checked
    /// against idle timeouts of seconds, so no clock read per request.
    pub since_ms: u64,
    /// The (client, local) addresses of the PROXY header this connection started with; `None`
    /// for a cluster that sends none.
    pub proxied: Option<Proxied>,
}

/// A downstream connection's (client, local) addresses: what a PROXY header says, and the key a
/// connection that sent one is reused under.
pub type Proxied = (SocketAddr, SocketAddr);

/// Streams an HTTP/1 connection carries at once.
pub const HTTP1_STREAMS: u32 = 1;

#[derive(Default)]
pub struct Pool {
    /// Streams one pooled connection may carry at once (1: HTTP/1).
    capacity: u32,
    idle: RefCell<Vec<Idle>>,
    /// Publishes the idle count (`cx_idle` gauge) after every change.
    stats: Arc<EndpointStats>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} idle)", self.idle.borrow().len())
    }
}

impl Pool {
    /// A pool that publishes its idle count into `stats.cx_idle`.
    pub fn with_stats(stats: Arc<EndpointStats>) -> Self {
        Pool {
            capacity: HTTP1_STREAMS,
            idle: RefCell::default(),
            stats,
        }
    }

    /// Streams one of this pool's connections carries at once.
    pub fn stream_capacity(&self) -> u32 {
        self.capacity.max(1)
    }

    #[inline]
    fn publish(&self, idle: usize) {
        self.stats
            .cx_idle
            .store(idle as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// A live idle connection, or `None`, for a cluster that sends no PROXY header (see
    /// [`Pool::checkout_proxied`]). Connections idle longer than `max_idle_age` or closed by
    /// the upstream are dropped on the way.
    /// `now_ms`: the worker's coarse clock.
    pub fn checkout(
        &self,
        max_idle_age: std::time::Duration,
        now_ms: u64,
    ) -> Option<(Rc<Conn>, PostedRead)> {
        let max = max_idle_age.as_millis() as u64;
        let mut idle = self.idle.borrow_mut();
        while let Some(mut c) = idle.pop() {
            if now_ms.saturating_sub(c.since_ms) > max {
                continue;
            }
            if poll_now(&mut c.read).is_some() {
                // EOF, error, or unsolicited bytes while idle: unusable.
                continue;
            }
            self.publish(idle.len());
            return Some((c.conn, c.read));
        }
        self.publish(0);
        None
    }

    /// A live idle connection whose PROXY header carried `proxied`, or `None`. The newest
    /// match wins; connections of other clients stay, those that aged out or were closed by the
    /// upstream are dropped on the way. A walk over the idle list (at most
    /// `max_idle_per_endpoint`), for clusters with `upstream_proxy_protocol` only.
    pub fn checkout_proxied(
        &self,
        max_idle_age: std::time::Duration,
        now_ms: u64,
        proxied: &Proxied,
    ) -> Option<(Rc<Conn>, PostedRead)> {
        let max = max_idle_age.as_millis() as u64;
        let mut idle = self.idle.borrow_mut();
        let mut found = None;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &mut idle[i];
            if now_ms.saturating_sub(c.since_ms) > max || poll_now(&mut c.read).is_some() {
                idle.remove(i);
            } else if c.proxied.as_ref() == Some(proxied) {
                found = Some(idle.remove(i));
                break;
            }
        }
        self.publish(idle.len());
        found.map(|c| (c.conn, c.read))
    }

    /// Return a connection whose last response was read completely. `proxied`: the addresses
    /// of the PROXY header it started with (`None` when its cluster sends none).
    pub fn checkin(&self, conn: Rc<Conn>, max_idle: usize, now_ms: u64, proxied: Option<Proxied>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= max_idle {
            return;
        }
        let read = conn.read_posted();
        idle.push(Idle {
            conn,
            read,
            since_ms: now_ms,
            proxied,
        });
        self.publish(idle.len());
    }

    /// Drop idle connections that are too old or were closed by the upstream.
    pub fn sweep(&self, max_idle_age: std::time::Duration, now_ms: u64) {
        let max = max_idle_age.as_millis() as u64;
        let mut idle = self.idle.borrow_mut();
        idle.retain_mut(|c| {
            now_ms.saturating_sub(c.since_ms) <= max && poll_now(&mut c.read).is_none()
        });
        self.publish(idle.len());
    }

    /// Close the connection idle longest (circuit breaking makes room with it).
    pub fn drop_oldest(&self) {
        let mut idle = self.idle.borrow_mut();
        if !idle.is_empty() {
            idle.remove(0);
        }
        self.publish(idle.len());
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Take every idle connection that is still alive (its posted read has not completed:
    /// nothing arrived and the upstream did not close), for a hand-over; their posted reads are
    /// dropped, so each connection is the caller's alone. Connections that sent a PROXY header
    /// stay (they belong to their client).
    pub fn take_idle(&self) -> Vec<Rc<Conn>> {
        let taken = std::mem::take(&mut *self.idle.borrow_mut());
        let mut out = Vec::with_capacity(taken.len());
        let mut keep = Vec::new();
        for mut c in taken {
            if c.proxied.is_some() {
                keep.push(c);
            } else if poll_now(&mut c.read).is_none() {
                let Idle { conn, read, .. } = c;
                drop(read);
                out.push(conn);
            }
        }
        let n = keep.len();
        *self.idle.borrow_mut() = keep;
        self.publish(n);
        out
    }

    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
        self.publish(0);
    }
}
