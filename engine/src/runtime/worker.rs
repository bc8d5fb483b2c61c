//! One worker: a thread pinned to a core, running its own compio (io_uring) runtime, its own
//! listener sockets, connections, route tables, cluster views, pools and counters. Nothing here is
//! shared with another worker; the only cross-thread traffic is the control channel (shutdown)
//! and the immutable config snapshot it was built from.

use std::{
    cell::Cell,
    net::TcpListener as StdListener,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    http::stream_info::StreamInfo,
    listener::{accept_loop, ListenerCtx},
    runtime::{drain::Drain, ring, Control},
    upstream::ClusterManager,
};

/// Per-worker counters (single writer; the stats issue turns these into an aggregated block).
#[derive(Debug, Default)]
pub struct Counters {
    pub downstream_cx_total: Cell<u64>,
    pub downstream_rq_total: Cell<u64>,
    pub upstream_cx_total: Cell<u64>,
    pub upstream_cx_connect_fail: Cell<u64>,
    pub upstream_rq_total: Cell<u64>,
    pub upstream_cx_pool_reuse: Cell<u64>,
    pub upstream_rq_retry: Cell<u64>,
}

impl Counters {
    #[inline]
    pub fn inc(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

/// Generates `x-request-id` values: a per-worker random prefix and a counter, UUID-shaped.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    fn new(worker: usize) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = t ^ (u64::from(std::process::id()) << 32) ^ ((worker as u64) << 56);
        let prefix = crate::upstream::lb::Rng::new(seed).next_u64();
        RequestIds {
            prefix,
            next: Cell::new(seed.rotate_left(17)),
        }
    }

    /// Write the next id (36 ASCII bytes) into `out` and return it as `&str`.
    pub fn next<'a>(&self, out: &'a mut [u8; 36]) -> &'a str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.get().wrapping_add(1);
        self.next.set(n);
        let hi = self.prefix;
        let lo = n;
        let mut nib = [0u8; 32];
        for i in 0..16 {
            nib[i] = ((hi >> (60 - 4 * i)) & 0xf) as u8;
            nib[16 + i] = ((lo >> (60 - 4 * i)) & 0xf) as u8;
        }
        nib[12] = 4; // version 4 shape
        nib[16] = 8 | (nib[16] & 3); // variant
        let mut j = 0;
        for (i, b) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b = b'-';
            } else {
                *b = HEX[nib[j] as usize];
                j += 1;
            }
        }
        // SAFETY-free: all bytes are ASCII hex digits or '-'.
        std::str::from_utf8(out).unwrap_or("")
    }
}

pub struct Worker {
    pub id: usize,
    pub config: Arc<Config>,
    pub clusters: ClusterManager,
    pub drain: Drain,
    pub counters: Counters,
    pub request_ids: RequestIds,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Worker({})", self.id)
    }
}

impl Worker {
    /// One request's exchange ended (response sent, or the proxy answered, or it failed):
    /// the observers (stats, access logs, tracing) read its record here, on the worker.
    pub fn stream_done(&self, l: &ListenerCtx, si: &StreamInfo) {
        let _ = (l, si);
    }
}

/// Everything a worker thread is started with.
pub struct Start {
    pub id: usize,
    pub core: Option<core_affinity::CoreId>,
    pub config: Arc<Config>,
    /// One bound socket per configured listener, in config order.
    pub sockets: Vec<StdListener>,
    pub control: flume::Receiver<Control>,
    pub ready: flume::Sender<Result<usize, String>>,
}

/// The worker thread's body. Returns when the worker has drained.
pub fn run(start: Start) {
    if let Some(core) = start.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                worker = start.id,
                core = core.id,
                "could not pin worker to its core"
            );
        }
    }
    let rt = match ring::build_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = start.ready.send(Err(e.to_string()));
            return;
        }
    };
    rt.block_on(serve(start));
}

async fn serve(start: Start) {
    let worker = Rc::new(Worker {
        id: start.id,
        clusters: ClusterManager::new(&start.config, start.id),
        config: Arc::clone(&start.config),
        drain: Drain::default(),
        counters: Counters::default(),
        request_ids: RequestIds::new(start.id),
    });
    for (sock, l) in start.sockets.into_iter().zip(start.config.listeners.iter()) {
        let ctx = Rc::new(ListenerCtx::new(l));
        compio::runtime::spawn(accept_loop(sock, ctx, Rc::clone(&worker))).detach();
    }
    // Age out idle upstream connections (and those the upstream closed) once a second.
    {
        let w = Rc::clone(&worker);
        compio::runtime::spawn(async move {
            while !w.drain.is_draining() {
                let tick = std::pin::pin!(compio::time::sleep(Duration::from_secs(1)));
                let _ = futures_util::future::select(tick, w.drain.wait()).await;
                w.clusters.sweep();
            }
        })
        .detach();
    }
    {
        let w = Rc::clone(&worker);
        compio::runtime::spawn(async move {
            while !w.drain.is_draining() {
                let tick = std::pin::pin!(compio::time::sleep(crate::runtime::drain::TICK));
                let _ = futures_util::future::select(tick, w.drain.wait()).await;
                w.drain.tick();
            }
        })
        .detach();
    }
    let _ = start.ready.send(Ok(start.id));

    // Wait for the control thread.
    // Any message (today only Shutdown), or the control thread going away, ends serving.
    let _: Result<Control, _> = start.control.recv_async().await;

    // Drain: stop accepting, wake idle keep-alive connections (they close), let in-flight
    // requests finish within drain_timeout.
    worker.drain.start();
    worker.clusters.clear();
    let deadline = Instant::now() + worker.config.drain_timeout;
    while worker.drain.active() > 0 && Instant::now() < deadline {
        compio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = &worker.counters;
    tracing::info!(
        worker = worker.id,
        left_in_flight = worker.drain.active(),
        downstream_cx_total = c.downstream_cx_total.get(),
        downstream_rq_total = c.downstream_rq_total.get(),
        upstream_cx_total = c.upstream_cx_total.get(),
        upstream_rq_total = c.upstream_rq_total.get(),
        upstream_cx_pool_reuse = c.upstream_cx_pool_reuse.get(),
        "worker stopped"
    );
}
