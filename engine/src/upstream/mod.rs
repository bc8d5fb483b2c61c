//! Upstream side of a worker: its view of every cluster (endpoints, load balancer, keep-alive
//! pools, active-request counts). Built per worker from the config snapshot; `Rc`/`Cell` only.
//!
//! Flow: the router names a cluster -> [`ClusterView::pick`] chooses an endpoint ->
//! [`EndpointView::pool`] hands out an idle connection, or the caller connects a new one ->
//! after a complete response the connection goes back with [`Pool::checkin`].
//!
//! A cluster with `upstream_proxy_protocol` sends a PROXY header ([`encode_proxy_header`])
//! first on every new connection, naming the downstream client and the address it connected
//! to; its pooled connections are reused only for the same downstream addresses
//! ([`Pool::checkout_proxied`]). Other clusters pay one `Option` check per request for it.
//!
//! A cluster with `tls` originates TLS ([`WorkerTls`]): a new connection sends its PROXY header
//! (if any) in the clear, then runs the handshake (`io::tls::connect`) within the cluster's
//! `connect_timeout`; from then on the connection reads and writes plaintext like any other
//! and is pooled the same way. Each worker has its own copy of the client config, so TLS
//! session resumption to the upstreams uses a cache no other worker touches.

pub mod h2;
pub mod hash;
pub mod lb;
pub mod pool;
pub mod select;

use std::{
    cell::{Cell, RefCell},
    io,
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use bytes::BytesMut;

use crate::{
    config::{Cluster, Config, ProxyProtocolVersion, UpstreamTls},
    endpoint_health as health,
    io::Conn,
    l4proto::proxy_protocol,
    stats::{self, EndpointStats, WorkerStats},
};

pub use pool::{Pool, Proxied};

#[derive(Debug)]
pub struct EndpointView {
    pub address: SocketAddr,
    pub weight: u32,
    /// Position in the cluster's endpoint list (stats index).
    pub index: usize,
    /// Requests in flight from this worker.
    pub active_rq: Cell<u32>,
    pub pool: Pool,
    /// HTTP/2 connections (`protocol: http2` clusters).
    pub h2: h2::H2Pool,
    /// `protocol: auto`: a connection to this endpoint negotiated `h2` (requests go to `h2`
    /// from then on).
    pub h2_seen: Cell<bool>,
    /// This worker's gauges for the endpoint (shared with the control thread for `/clusters`).
    pub stats: Arc<EndpointStats>,
}

#[derive(Debug)]
pub struct ClusterView {
    pub name: String,
    pub connect_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    pub idle_timeout: Duration,
    /// Send and decode trailers of chunked bodies (`http_protocol_options.enable_trailers`).
    pub enable_trailers: bool,
    /// The PROXY header sent first on each new connection (`upstream_proxy_protocol`).
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// TLS to the endpoints (`tls`); `None`: plain TCP.
    pub tls: Option<WorkerTls>,
    /// Requests go out as HTTP/2 streams (`protocol: http2`), with these settings.
    pub http2: Option<crate::config::Http2Options>,
    /// `protocol: auto`: HTTP/2 only to endpoints whose TLS chose `h2`.
    pub http2_auto: bool,
    /// Requests one connection carries (`max_requests_per_connection`).
    pub max_requests_per_connection: Option<u32>,
    pub endpoints: Vec<EndpointView>,
    /// The selection over every endpoint (clusters without health).
    base: select::Selection,
    /// Shared health (`health_checks`, `outlier_detection`); `None`: every endpoint is healthy.
    health: Option<Arc<health::ClusterHealth>>,
    /// This worker's view of the healthy endpoints (rebuilt when the health generation moves).
    healthy: RefCell<Option<select::Selection>>,
    pub policy: crate::config::LbPolicy,
    weights: Vec<u32>,
    priorities: Vec<u32>,
    /// Each endpoint's `IP:port` (hash table keys).
    keys: Vec<String>,
    hash_lb: Option<crate::config::HashLbConfig>,
    slow_start: Option<crate::config::SlowStart>,
    /// Slow start: when each endpoint came back (ms on `clock`; 0: it did not), and which were
    /// healthy at the last rebuild (`None`: none yet).
    came_back: RefCell<Vec<u64>>,
    was_ok: RefCell<Option<Vec<bool>>>,
    /// The worker's coarse clock as of its last sweep (slow start only).
    clock: Cell<u64>,
    seed: u64,
    /// `lb_healthy_panic`: picks made in panic mode.
    panic_count: Option<Arc<AtomicU64>>,
    /// This worker's share of the cluster's circuit breakers, and what it uses of them.
    pub breakers: Breakers,
    /// Connections are closed instead of reused once this old (`max_connection_duration`).
    pub max_connection_duration: Option<Duration>,
    /// With `max_connection_duration`: when each open HTTP/1 connection was made (worker's
    /// coarse clock), by file descriptor (dense small integers: no hashing, grown to the
    /// largest seen).
    born: RefCell<Vec<u64>>,
}

/// One worker's share of a cluster's circuit breakers (`ceil(limit / workers)`, at least 1:
/// each worker enforces its share with no cross-core traffic, so the process as a whole admits
/// at most `workers - 1` more than the limit) and the counts it enforces them on.
#[derive(Debug)]
pub struct Breakers {
    pub max_connections: u32,
    pub max_pending: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    /// (percent of active requests, minimum): replaces `max_retries` when set.
    budget: Option<(f64, u32)>,
    /// Requests in flight (picked an endpoint and not done).
    pub active: Cell<u32>,
    /// Requests waiting for a connection (`max_connections` reached).
    pub pending: Cell<u32>,
    /// Retries in flight.
    pub retries: Cell<u32>,
    /// Bumped when a request ends (a connection may have come free): pending requests wait on
    /// it.
    freed: Cell<u64>,
    waiters: RefCell<Vec<std::task::Waker>>,
    /// The `upstream_rq_pending_active` and `upstream_rq_retry_active` gauges.
    gauges: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
}

impl Breakers {
    fn new(
        b: &crate::config::CircuitBreakers,
        workers: usize,
        stats: Option<&stats::ClusterStats>,
    ) -> Breakers {
        let share = |limit: u32| limit.div_ceil(workers.max(1) as u32).max(1);
        Breakers {
            max_connections: share(b.max_connections),
            max_pending: if b.max_pending_requests == 0 {
                0
            } else {
                share(b.max_pending_requests)
            },
            max_requests: share(b.max_requests),
            max_retries: if b.max_retries == 0 {
                0
            } else {
                share(b.max_retries)
            },
            budget: b
                .retry_budget
                .map(|(pct, min)| (pct, min.div_ceil(workers.max(1) as u32))),
            active: Cell::new(0),
            pending: Cell::new(0),
            retries: Cell::new(0),
            freed: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            gauges: stats.map(|s| {
                (
                    Arc::clone(&s.upstream_rq_pending_active),
                    Arc::clone(&s.upstream_rq_retry_active),
                )
            }),
        }
    }

    /// Another request may start (`max_requests`).
    #[inline]
    pub fn request_allowed(&self) -> bool {
        self.active.get() < self.max_requests
    }

    /// Another retry may start (`max_retries`, or the retry budget).
    pub fn retry_allowed(&self) -> bool {
        let cap = match self.budget {
            Some((pct, min)) => ((pct / 100.0 * f64::from(self.active.get())) as u32).max(min),
            None => self.max_retries,
        };
        self.retries.get() < cap
    }

    fn request_done(&self) {
        self.active.set(self.active.get().saturating_sub(1));
        self.freed.set(self.freed.get().wrapping_add(1));
        if self.pending.get() > 0 {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Wait until a request ends (a connection may be free), or `None` when `max_pending`
    /// requests are waiting already (overflow). The caller bounds the wait.
    pub async fn wait_for_connection(&self) -> Option<()> {
        if self.pending.get() >= self.max_pending {
            return None;
        }
        // Counted while waiting, however the wait ends (the caller's deadline drops it).
        struct Pending<'a>(&'a Breakers);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                let b = self.0;
                b.pending.set(b.pending.get().saturating_sub(1));
                if let Some(g) = &b.gauges {
                    stats::dec(&g.0);
                }
            }
        }
        self.pending.set(self.pending.get() + 1);
        if let Some(g) = &self.gauges {
            stats::inc(&g.0);
        }
        let _pending = Pending(self);
        let seen = self.freed.get();
        std::future::poll_fn(|cx| {
            if self.freed.get() != seen {
                return std::task::Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
        Some(())
    }
}

/// Counts a retry in flight until dropped.
pub struct RetryGuard<'a>(&'a Breakers);

impl<'a> RetryGuard<'a> {
    pub fn new(b: &'a Breakers) -> Self {
        b.retries.set(b.retries.get() + 1);
        if let Some(g) = &b.gauges {
            stats::inc(&g.1);
        }
        RetryGuard(b)
    }
}

impl Drop for RetryGuard<'_> {
    fn drop(&mut self) {
        let b = self.0;
        b.retries.set(b.retries.get().saturating_sub(1));
        if let Some(g) = &b.gauges {
            stats::dec(&g.1);
        }
    }
}

impl ClusterView {
    fn new(
        c: &Cluster,
        seed: u64,
        stats: Option<&stats::ClusterStats>,
        health: Option<Arc<health::ClusterHealth>>,
        workers: usize,
    ) -> Self {
        let weights: Vec<u32> = c.endpoints.iter().map(|e| e.weight).collect();
        let priorities: Vec<u32> = c.endpoints.iter().map(|e| e.priority).collect();
        let keys: Vec<String> = c.endpoints.iter().map(|e| e.address.to_string()).collect();
        ClusterView {
            name: c.name.clone(),
            connect_timeout: c.connect_timeout,
            max_idle_per_endpoint: c.max_idle_per_endpoint,
            idle_timeout: c.idle_timeout,
            enable_trailers: c.enable_trailers,
            proxy_protocol: c.upstream_proxy_protocol,
            tls: c.tls.as_deref().map(WorkerTls::new),
            http2: c.http2.then_some(c.http2_options),
            http2_auto: c.http2_auto,
            max_requests_per_connection: c.max_requests_per_connection,
            endpoints: c
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let stats = stats
                        .and_then(|s| s.endpoints.get(i))
                        .cloned()
                        .unwrap_or_default();
                    EndpointView {
                        address: e.address,
                        weight: e.weight,
                        index: i,
                        active_rq: Cell::new(0),
                        pool: Pool::with_stats(Arc::clone(&stats)),
                        h2: h2::H2Pool::default(),
                        h2_seen: Cell::new(false),
                        stats,
                    }
                })
                .collect(),
            base: select::Selection::all(&select::Inputs {
                policy: c.lb_policy,
                weights: &weights,
                priorities: &priorities,
                keys: &keys,
                hash: c.hash_lb,
                seed,
                slow: None,
            }),
            health,
            healthy: RefCell::new(None),
            policy: c.lb_policy,
            weights,
            priorities,
            keys,
            hash_lb: c.hash_lb,
            slow_start: c.slow_start,
            came_back: RefCell::new(vec![0; c.endpoints.len()]),
            was_ok: RefCell::new(None),
            clock: Cell::new(0),
            seed,
            panic_count: stats.map(|s| Arc::clone(&s.lb_healthy_panic)),
            breakers: Breakers::new(&c.breakers, workers, stats),
            max_connection_duration: c.max_connection_duration,
            born: RefCell::new(Vec::new()),
        }
    }

    /// A new connection was made at `now_ms` (kept only with `max_connection_duration`).
    #[inline]
    pub fn connected(&self, conn: &Conn, now_ms: u64) {
        if self.max_connection_duration.is_none() {
            return;
        }
        let fd = conn.raw_fd().max(0) as usize;
        let mut born = self.born.borrow_mut();
        if born.len() <= fd {
            born.resize(fd + 1, now_ms);
        }
        born[fd] = now_ms;
    }

    /// The connection has lived past `max_connection_duration`: close it instead of reusing it.
    #[inline]
    pub fn too_old(&self, conn: &Conn, now_ms: u64) -> bool {
        let Some(max) = self.max_connection_duration else {
            return false;
        };
        let fd = conn.raw_fd().max(0) as usize;
        self.born
            .borrow()
            .get(fd)
            .is_some_and(|&b| now_ms.saturating_sub(b) >= max.as_millis() as u64)
    }

    /// Upstream HTTP/1 connections this worker holds to the cluster: those carrying a request
    /// and the idle ones. (`exclude`: requests in flight not holding one, the caller among
    /// them.)
    pub fn connections(&self, exclude: u32) -> u32 {
        let idle: usize = self.endpoints.iter().map(|e| e.pool.idle_count()).sum();
        let b = &self.breakers;
        (b.active.get().saturating_sub(b.pending.get() + exclude)) + idle as u32
    }

    /// At `max_connections` with idle connections to other endpoints than `keep`: close one
    /// (the oldest of the endpoint with the most) to make room. Whether one was closed.
    pub fn evict_idle(&self, keep: usize) -> bool {
        let Some(e) = self
            .endpoints
            .iter()
            .filter(|e| e.index != keep)
            .max_by_key(|e| e.pool.idle_count())
            .filter(|e| e.pool.idle_count() > 0)
        else {
            return false;
        };
        e.pool.drop_oldest();
        true
    }

    /// Choose an endpoint for a request without a hash.
    #[inline]
    pub fn pick(&self) -> Option<&EndpointView> {
        self.pick_hashed(None)
    }

    /// Choose an endpoint: by `hash` on a `ring_hash` / `maglev` cluster (from the route's
    /// `hash_policy`), else by the balancer; among healthy endpoints of the priority level the
    /// draw lands on when the cluster is health-checked.
    #[inline]
    pub fn pick_hashed(&self, hash: Option<u64>) -> Option<&EndpointView> {
        let active = |i: usize| self.endpoints[i].active_rq.get();
        let i = match &self.health {
            None => self.base.pick(hash, active)?,
            Some(h) => self.pick_healthy(h, hash)?,
        };
        self.endpoints.get(i)
    }

    fn inputs<'a>(&'a self, back: &'a [u64]) -> select::Inputs<'a> {
        select::Inputs {
            policy: self.policy,
            weights: &self.weights,
            priorities: &self.priorities,
            keys: &self.keys,
            hash: self.hash_lb,
            seed: self.seed,
            slow: self.slow_start.map(|s| (s, back, self.clock.get())),
        }
    }

    /// Rebuild the healthy selection (a new generation, or a slow-start step).
    fn rebuild(&self, h: &health::ClusterHealth) -> select::Selection {
        if self.slow_start.is_some() {
            // Endpoints healthy now that were not at the last rebuild start their ramp.
            let now = self.clock.get().max(1);
            let mut was = self.was_ok.borrow_mut();
            let mut back = self.came_back.borrow_mut();
            let ok: Vec<bool> = h.hosts.iter().map(|x| x.healthy()).collect();
            if let Some(was) = was.as_ref() {
                for (i, (&o, &w)) in ok.iter().zip(was.iter()).enumerate() {
                    if o && !w {
                        if let Some(b) = back.get_mut(i) {
                            *b = now;
                        }
                    }
                }
            }
            *was = Some(ok);
        }
        let back = self.came_back.borrow();
        select::Selection::healthy(h, &self.inputs(&back))
    }

    fn pick_healthy(&self, h: &health::ClusterHealth, hash: Option<u64>) -> Option<usize> {
        let mut view = self.healthy.borrow_mut();
        let g = h.generation();
        if view.as_ref().is_none_or(|v| v.seen != g) {
            *view = Some(self.rebuild(h));
        }
        let v = view.as_ref()?;
        if v.panic {
            if let Some(c) = &self.panic_count {
                stats::inc(c);
            }
        }
        v.pick(hash, |i| self.endpoints[i].active_rq.get())
    }

    /// The worker's once-a-second tick: the clock slow start reads, and the next step of a
    /// ramp in progress.
    pub fn tick(&self, now_ms: u64) {
        self.clock.set(now_ms);
        if let (Some(_), Some(h)) = (self.slow_start, &self.health) {
            let ramping = self.healthy.borrow().as_ref().is_some_and(|v| v.ramping);
            if ramping {
                let v = self.rebuild(h);
                *self.healthy.borrow_mut() = Some(v);
            }
        }
    }

    /// Whether the cluster is health-checked (tests, `/clusters`).
    pub fn health(&self) -> Option<&Arc<health::ClusterHealth>> {
        self.health.as_ref()
    }

    /// An exchange with endpoint `ep` ended with `outcome`: outlier detection's input (nothing
    /// without it).
    #[inline]
    pub fn report(&self, ep: usize, outcome: health::Outcome) {
        let Some(h) = &self.health else { return };
        if h.report(ep, outcome) {
            if let Some(e) = self.endpoints.get(ep) {
                stats::inc(&e.stats.rq_error);
            }
        }
    }
}

/// One worker's TLS origination settings for a cluster.
#[derive(Debug)]
pub struct WorkerTls {
    /// The cluster's client config with a session cache of this worker's own.
    client: Arc<rustls::ClientConfig>,
    sni: Option<rustls::pki_types::ServerName<'static>>,
}

impl WorkerTls {
    pub fn new(t: &UpstreamTls) -> Self {
        let mut client = (*t.client).clone();
        client.resumption = rustls::client::Resumption::in_memory_sessions(256);
        WorkerTls {
            client: Arc::new(client),
            sni: t.sni.clone(),
        }
    }

    /// Run the handshake on a new connection to `addr` within `timeout`: SNI and the verified
    /// name are the cluster's `sni`, or the endpoint's address without one.
    pub async fn handshake(
        &self,
        conn: Conn,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Conn> {
        let name = self
            .sni
            .clone()
            .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
        let hs = crate::io::tls::connect(conn, Arc::clone(&self.client), name);
        match compio::time::timeout(timeout, hs).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the upstream TLS handshake timed out",
            )),
        }
    }
}

/// Appends the PROXY header of `version` for a connection proxied for `proxied` (the downstream
/// (client, local) addresses): v1 `PROXY TCP4|TCP6 ...`, or v2 `PROXY` over TCP, without TLVs.
pub fn encode_proxy_header(version: ProxyProtocolVersion, proxied: Proxied, out: &mut BytesMut) {
    match version {
        ProxyProtocolVersion::V1 => proxy_protocol::encode_v1(Some(proxied), out),
        ProxyProtocolVersion::V2 => proxy_protocol::encode_v2_tcp(Some(proxied), out),
    }
}

/// Counts a request in flight to an endpoint (and its cluster) until dropped.
pub struct ActiveRq<'a>(&'a Breakers, &'a EndpointView);

impl<'a> ActiveRq<'a> {
    pub fn new(c: &'a ClusterView, e: &'a EndpointView) -> Self {
        e.active_rq.set(e.active_rq.get() + 1);
        c.breakers.active.set(c.breakers.active.get() + 1);
        stats::inc(&e.stats.rq_active);
        ActiveRq(&c.breakers, e)
    }
}

impl Drop for ActiveRq<'_> {
    fn drop(&mut self) {
        let e = self.1;
        e.active_rq.set(e.active_rq.get().saturating_sub(1));
        stats::dec(&e.stats.rq_active);
        self.0.request_done();
    }
}

/// Every cluster as one worker sees it; indexed by `ClusterId`.
#[derive(Debug)]
pub struct ClusterManager {
    pub clusters: Vec<ClusterView>,
    /// Draws for route-level choices: `weighted_clusters`, mirror fractions.
    pub rng: crate::rng::Rng,
}

impl ClusterManager {
    /// The worker's views, wired to its stats block (`stats` is shaped after the same config).
    pub fn new(
        cfg: &Config,
        worker: usize,
        stats: &WorkerStats,
        health: Option<&health::Board>,
        workers: usize,
    ) -> Self {
        ClusterManager {
            clusters: cfg
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ClusterView::new(
                        c,
                        0x9e37_79b9_7f4a_7c15 ^ ((worker as u64) << 32) ^ i as u64,
                        stats.cluster(i),
                        health.and_then(|b| b.get(i).cloned().flatten()),
                        workers,
                    )
                })
                .collect(),
            rng: crate::rng::Rng::new(0x2545_f491_4f6c_dd1d ^ ((worker as u64 + 1) << 24)),
        }
    }

    /// The cluster a request on `f` goes to: the route's, or one of its `weighted_clusters`
    /// drawn by weight.
    #[inline]
    pub fn route_cluster(&self, f: &crate::config::ForwardAction) -> crate::config::ClusterId {
        match &f.weighted {
            None => f.cluster,
            Some(wc) => {
                let r = self.rng.below(wc.total);
                wc.clusters
                    .iter()
                    .find(|(_, _, cum)| r < *cum)
                    .map_or(f.cluster, |(id, _, _)| *id)
            }
        }
    }

    /// Whether a mirror taking `per_million` requests takes this one.
    #[inline]
    pub fn sampled(&self, per_million: u32) -> bool {
        per_million >= 1_000_000 || (self.rng.below(1_000_000) as u32) < per_million
    }

    /// Drop idle upstream connections that aged out or were closed by the upstream.
    /// `now_ms`: the worker's coarse clock.
    pub fn sweep(&self, now_ms: u64) {
        for c in &self.clusters {
            c.tick(now_ms);
            for e in &c.endpoints {
                e.pool.sweep(c.idle_timeout, now_ms);
            }
        }
    }

    /// Close every idle upstream connection (shutdown).
    pub fn clear(&self) {
        for c in &self.clusters {
            for e in &c.endpoints {
                e.pool.clear();
            }
        }
    }
}
