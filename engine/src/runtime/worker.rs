//! One worker: a thread (pinned to a CPU as `cpu_affinity` says: by default one per core), running
//! its own compio (io_uring) runtime, its own listener sockets, connections, route tables, cluster
//! views, pools and stats. Nothing here is shared with another worker; the only cross-thread
//! traffic is the control channel (shutdown, stats flush requests, drain), the immutable config
//! snapshot it was built from, and its stats: an `Arc<WorkerStats>` block it alone writes and the
//! control thread reads, and the histogram batches it ships to the aggregator (see
//! [`crate::stats`]).
//!
//! The state its connections read and write is a [`WorkerCtx`] (defined beside the request
//! path, in [`crate::http::ctx`]), built here once and shared by `Rc` with the accept loops and
//! connection tasks; this module adds what only the worker does around it: the timer tasks
//! (pool sweep, coarse clock, histogram and log shipping), the control channel and the drain.

use std::{
    net::TcpListener as StdListener,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    balance,
    config::Config,
    control::Control,
    drain::{self, Drain},
    http::ctx::{RequestIds, WorkerCtx},
    listener::{accept_loop, Serve},
    runtime::ring,
    stats::{self, HistBatch, WorkerHistograms, WorkerStats},
    upstream::ClusterManager,
};

/// Everything a worker thread is started with.
pub struct Start {
    pub id: usize,
    /// How many workers the process runs.
    pub workers: usize,
    /// The CPU this worker is pinned to (`None`: not pinned, `cpu_affinity: none`).
    pub core: Option<core_affinity::CoreId>,
    pub config: Arc<Config>,
    /// (listener index in the config, a bound socket): one per listener, or more when a
    /// socket group taken over from an older process outnumbers the workers.
    pub sockets: Vec<(usize, StdListener)>,
    pub control: flume::Receiver<Control>,
    pub ready: flume::Sender<Result<usize, String>>,
    /// This worker's stats block (the aggregator holds the other `Arc`).
    pub stats: Arc<WorkerStats>,
    /// Where interval histograms go.
    pub hist_tx: flume::Sender<HistBatch>,
    /// Emptied histogram sets coming back from the aggregator.
    pub hist_free: Option<flume::Receiver<Vec<hdrhistogram::Histogram<u64>>>>,
    /// Where access-log buffers go (`None`: no access log configured).
    pub access_log: Option<crate::access_log::Sink>,
    /// Where finished spans go (`None`: no tracing configured).
    pub trace: Option<crate::trace::Sink>,
    /// The exporter's counters (for spans dropped here).
    pub trace_stats: Option<Arc<crate::trace::TraceStats>>,
    /// Connection counts of all workers and their handoff channels (`None`: one worker).
    pub balance: Option<Arc<balance::Shared>>,
    /// Connections other workers hand to this one.
    pub handoff: Option<flume::Receiver<balance::Handoff>>,
    /// Shared endpoint health (`None`: no cluster is health-checked).
    pub health: Option<crate::endpoint_health::Board>,
    /// Connections the previous generation hands over at a reload.
    pub adopt: Option<flume::Receiver<crate::control::Adopt>>,
    /// Idle upstream connections the previous generation hands over at a reload.
    pub adopt_upstream: Option<flume::Receiver<crate::control::AdoptUpstream>>,
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
    let Start {
        id,
        workers,
        core: _,
        config,
        sockets,
        control,
        ready,
        stats,
        hist_tx,
        hist_free,
        access_log,
        trace,
        trace_stats,
        balance,
        handoff,
        health,
        adopt,
        adopt_upstream,
    } = start;
    let worker = Rc::new(WorkerCtx {
        id,
        clusters: ClusterManager::new(&config, id, &stats, health.as_ref(), workers),
        config: Arc::clone(&config),
        drain: Drain::default(),
        hists: WorkerHistograms::new(&config, hist_free),
        stats,
        request_ids: RequestIds::new(id),
        access_log: crate::access_log::WorkerLog::new(
            access_log,
            crate::access_log::destinations(&config).len(),
        ),
        tracer: crate::trace::WorkerTracer::new(
            id,
            trace,
            trace_stats,
            config
                .tracing
                .as_ref()
                .is_some_and(|t| t.format == crate::config::TraceFormat::ZipkinJson),
        ),
        balance,
        write_bufs: crate::io::WriteBufs::default(),
        exchange_slots: crate::slots::FutureSlots::default(),
        h2_stream_slots: crate::slots::FutureSlots::default(),
        bulk_bufs: crate::io::BulkBufs::default(),
        parked: crate::http::park::ParkLot::new(config.park_idle_after),
        mirrors: crate::http::mirror::Mirrors::default(),
        successor: std::cell::RefCell::new(None),
    });
    let ctxs = start_listeners(&worker, sockets, workers);
    if let Some(rx) = adopt {
        serve_adopted(&worker, rx, ctxs.clone());
    }
    // Kept to empty the channel at the end (a connection sent as this worker stops).
    let handoff_rx = handoff.clone();
    if let Some(rx) = adopt_upstream {
        pool_adopted(&worker, rx);
    }
    if let Some(rx) = handoff {
        serve_handoffs(&worker, rx, ctxs.clone());
    }
    spawn_pool_sweeper(&worker);
    compio::runtime::spawn(crate::http::mirror::run(Rc::clone(&worker))).detach();
    spawn_histogram_shipper(&worker, hist_tx.clone());
    spawn_log_flusher(&worker);
    spawn_coarse_clock(&worker);
    compio::runtime::spawn(crate::io::multi::governor()).detach();
    compio::runtime::spawn(crate::http::park::run(Rc::clone(&worker))).detach();
    let _ = ready.send(Ok(id));
    let polite = obey_control(&worker, &control, &hist_tx).await;
    drain_and_stop(&worker, polite).await;
    if let Some(rx) = handoff_rx {
        // Connections another worker handed here as both stopped: to the next generation
        // when there is one, otherwise closed with the worker (a shutdown).
        for h in rx.try_iter() {
            pass_on(&worker, h);
        }
    }
}

/// Build each listener's per-worker context (its network filter: routes and HTTP filter chains,
/// or the TCP proxy) and start accepting.
fn start_listeners(
    worker: &Rc<WorkerCtx>,
    sockets: Vec<(usize, StdListener)>,
    workers: usize,
) -> Vec<Serve> {
    let slots = crate::stats::StatSlots::new(&worker.config);
    let info = ringway_filters::WorkerInfo {
        id: worker.id,
        count: workers,
    };
    // Every listener has its context (handed-over connections may come for any of them).
    let ctxs: Vec<Serve> = worker
        .config
        .listeners
        .iter()
        .enumerate()
        .map(|(index, l)| {
            let port = sockets
                .iter()
                .find(|(i, _)| *i == index)
                .and_then(|(_, s)| s.local_addr().ok())
                .map_or(l.address.port(), |a| a.port());
            Serve::new(l, index, slots.of(index), info, port)
        })
        .collect();
    for (index, sock) in sockets {
        if let Some(ctx) = ctxs.get(index) {
            compio::runtime::spawn(accept_loop(sock, ctx.clone(), Rc::clone(worker))).detach();
        }
    }
    ctxs
}

/// Serve the connections the previous generation's workers hand over (a reload): idle
/// keep-alive connections and connections their last accept took.
fn serve_adopted(
    worker: &Rc<WorkerCtx>,
    rx: flume::Receiver<crate::control::Adopt>,
    ctxs: Vec<Serve>,
) {
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        while let Ok((stream, peer, listener)) = rx.recv_async().await {
            let (Some(ctx), Ok(stream)) = (
                ctxs.get(listener).cloned(),
                compio::net::TcpStream::from_std(stream),
            ) else {
                continue;
            };
            if let Some(b) = &w.balance {
                b.keep(w.id);
            }
            ctx.spawn(crate::io::Conn::accepted(stream), peer, &w);
        }
    })
    .detach();
}

/// Pool the idle upstream connections the previous generation hands over (a reload): each
/// goes into this worker's pool for its cluster and endpoint, with a read posted as every idle
/// pooled connection has.
fn pool_adopted(worker: &Rc<WorkerCtx>, rx: flume::Receiver<crate::control::AdoptUpstream>) {
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        while let Ok((stream, c, e)) = rx.recv_async().await {
            let (Some(cl), Ok(stream)) = (
                w.clusters.clusters.get(c),
                compio::net::TcpStream::from_std(stream),
            ) else {
                continue;
            };
            let Some(ep) = cl.endpoints.get(e) else {
                continue;
            };
            // TCP_NODELAY was set when it was connected.
            let conn = Rc::new(crate::io::Conn::accepted(stream));
            cl.connected(&conn, w.drain.now_ms());
            ep.pool
                .checkin(conn, cl.max_idle_per_endpoint, w.drain.now_ms(), None);
        }
    })
    .detach();
}

/// Most idle upstream connections one endpoint hands to the next generation at a reload: a
/// warm start for the requests right after it, not the whole pool (each move costs the old
/// worker a cancelled receive and the new one a posted read; under a reload storm moving
/// every idle connection of 100 clusters raised the p99, docs/benchmarks.md).
const MOVE_PER_ENDPOINT: usize = 4;
/// Most idle upstream connections one worker hands over at a reload.
const MOVE_PER_WORKER: usize = 64;

/// Hand this worker's idle upstream connections to the next generation (a reload), for the
/// clusters it serves unchanged: each one's receive is stopped (nothing it read is lost: an
/// idle connection that received anything is dead and closes instead) and its socket moves.
fn hand_over_pools(worker: &WorkerCtx, s: &crate::control::Successor) {
    if s.upstream.is_empty() {
        return;
    }
    let to = s.upstream[worker.id % s.upstream.len()].clone();
    let mut moving = Vec::new();
    for (c, cl) in worker.clusters.clusters.iter().enumerate() {
        let Some(Some(new_c)) = s.clusters.get(c).copied() else {
            continue;
        };
        for (e, ep) in cl.endpoints.iter().enumerate() {
            // The most recently used first (the pool is last in, first out); the rest close.
            let idle = ep.pool.take_idle();
            let room = MOVE_PER_WORKER.saturating_sub(moving.len());
            moving.extend(
                idle.into_iter()
                    .rev()
                    .take(MOVE_PER_ENDPOINT.min(room))
                    .map(|conn| (conn, new_c, e)),
            );
        }
    }
    if moving.is_empty() {
        return;
    }
    // One task, one connection after another: the moves spread over the drain instead of
    // taking the worker's core in one burst while it still serves.
    compio::runtime::spawn(async move {
        for (conn, c, e) in moving {
            if conn.quiesce().await != crate::io::multi::Quiet::Yes {
                continue;
            }
            let Ok(conn) = Rc::try_unwrap(conn) else {
                continue;
            };
            if let Some(fd) = conn.into_fd().await {
                let _ = to.send((std::net::TcpStream::from(fd), c, e));
            }
        }
    })
    .detach();
}

/// A connection another worker handed here, moved on to the next generation (this worker
/// drains); with none it closes. Its count here is given back.
fn pass_on(worker: &WorkerCtx, h: balance::Handoff) {
    if let Some(b) = &worker.balance {
        b.release(worker.id);
    }
    if worker.can_hand_over(h.listener) {
        let _ = worker.hand_over(h.stream, h.peer, h.listener);
    }
}

/// Serve the connections other workers hand over (exact balance).
fn serve_handoffs(worker: &Rc<WorkerCtx>, rx: flume::Receiver<balance::Handoff>, ctxs: Vec<Serve>) {
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        while let Ok(h) = rx.recv_async().await {
            // Draining with a next generation: it serves the connection.
            if w.drain.is_draining() && w.can_hand_over(h.listener) {
                pass_on(&w, h);
                continue;
            }
            let ctx = ctxs.get(h.listener).cloned();
            match (ctx, compio::net::TcpStream::from_std(h.stream)) {
                (Some(ctx), Ok(stream)) => {
                    ctx.spawn(crate::io::Conn::accepted(stream), h.peer, &w);
                }
                _ => {
                    // Not served: give the count back (the socket closes on drop).
                    if let Some(b) = &w.balance {
                        b.release(w.id);
                    }
                }
            }
        }
    })
    .detach();
}

/// Once a second: age out idle upstream connections (and those the upstream closed), and give
/// memory back after mass closes.
fn spawn_pool_sweeper(worker: &Rc<WorkerCtx>) {
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        let mut trim = Trim::default();
        while !w.drain.is_draining() {
            let tick = std::pin::pin!(compio::time::sleep(Duration::from_secs(1)));
            let _ = futures_util::future::select(tick, w.drain.wait()).await;
            w.clusters.sweep(w.drain.now_ms());
            trim.after(w.drain.active());
        }
    })
    .detach();
}

/// Gives freed memory back to the system after many connections closed. The allocator keeps
/// what a burst of connections freed for reuse (glibc returns a heap's free pages only when
/// asked), so a worker that served 50,000 connections would hold their memory for good; when
/// the live count has fallen to half its peak, and by at least [`Trim::MIN_DROP`], the worker
/// asks the allocator to return every free page (`malloc_trim`). Rare by construction: once
/// per such fall, never per request.
#[derive(Default)]
struct Trim {
    peak: usize,
}

impl Trim {
    /// Fewest closed connections worth a trim.
    const MIN_DROP: usize = 1024;

    fn after(&mut self, live: usize) {
        self.peak = self.peak.max(live);
        if self.peak >= live + Self::MIN_DROP && live <= self.peak / 2 {
            release_free_memory();
            self.peak = live;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: `malloc_trim` has no preconditions; it takes the allocator's own locks.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Ship the interval's histograms every stats_flush_interval.
fn spawn_histogram_shipper(worker: &Rc<WorkerCtx>, tx: flume::Sender<HistBatch>) {
    let w = Rc::clone(worker);
    let every = worker.config.stats_flush_interval;
    compio::runtime::spawn(async move {
        loop {
            compio::time::sleep(every).await;
            if let Some(hists) = w.hists.take() {
                let _ = tx.send(HistBatch {
                    worker: w.id,
                    seq: 0,
                    hists,
                });
            }
        }
    })
    .detach();
}

/// Ship access-log lines and finished spans at least every FLUSH_INTERVAL (full buffers go at
/// once).
fn spawn_log_flusher(worker: &Rc<WorkerCtx>) {
    if !(worker.access_log.enabled() || worker.tracer.enabled()) {
        return;
    }
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        loop {
            compio::time::sleep(crate::access_log::FLUSH_INTERVAL).await;
            w.access_log.flush(false);
            w.tracer.flush(false);
        }
    })
    .detach();
}

/// The coarse clock behind idle keep-alive timeouts (see `drain::TICK`).
fn spawn_coarse_clock(worker: &Rc<WorkerCtx>) {
    let w = Rc::clone(worker);
    compio::runtime::spawn(async move {
        while !w.drain.is_draining() {
            let tick = std::pin::pin!(compio::time::sleep(drain::TICK));
            let _ = futures_util::future::select(tick, w.drain.wait()).await;
            w.drain.tick();
            let (armed, capped, no_buffer) = crate::io::multi::counters();
            let s = &w.stats;
            for (to, v) in [
                (&s.recv_multishot_armed, armed),
                (&s.recv_multishot_capped, capped),
                (&s.recv_no_buffer, no_buffer),
            ] {
                to.store(v, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .detach();
}

/// Serve until the control thread says Shutdown (or goes away). `true`: drain politely
/// ([`Control::Handover`]).
async fn obey_control(
    worker: &WorkerCtx,
    control: &flume::Receiver<Control>,
    hist_tx: &flume::Sender<HistBatch>,
) -> bool {
    loop {
        match control.recv_async().await {
            Ok(Control::FlushStats { seq }) => {
                // Always answer, even with nothing recorded: the aggregator counts replies.
                let hists = worker.hists.take().unwrap_or_default();
                let _ = hist_tx.send(HistBatch {
                    worker: worker.id,
                    seq,
                    hists,
                });
            }
            Ok(Control::ReloadCerts(update)) => {
                let n = crate::listener::tls::reload(&update);
                tracing::debug!(worker = worker.id, chains = n, "certificates reloaded");
            }
            Ok(Control::DrainListeners) => {
                tracing::info!(worker = worker.id, "draining listeners (admin request)");
                worker.drain.start();
                worker.clusters.clear();
            }
            Ok(Control::Handover(successor)) => {
                *worker.successor.borrow_mut() = successor;
                return true;
            }
            Ok(Control::Shutdown) | Err(_) => return false,
        }
    }
}

/// Drain: stop accepting, wake idle keep-alive connections (they close), let in-flight
/// requests finish within drain_timeout; then hand the last log lines and spans over.
/// `polite` (a hand-over to a successor): idle and new connections are not closed at once but
/// served one more request with `connection: close`, until drain_timeout closes the rest.
async fn drain_and_stop(worker: &WorkerCtx, polite: bool) {
    let successor = worker.successor.borrow().clone();
    if let (true, Some(s)) = (polite, successor) {
        worker.drain.start_handover();
        hand_over_pools(worker, &s);
        // From here every connection this worker accepts or finds idle moves on.
        let _ = s.ack.send(worker.id);
    } else if polite {
        worker.drain.start_polite();
    } else {
        worker.drain.start();
    }
    worker.clusters.clear();
    let deadline = Instant::now() + worker.config.drain_timeout;
    // A polite drain also waits for parked connections (they are served once more when they
    // wake).
    let parked = || {
        polite
            && worker
                .stats
                .downstream_cx_parked
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
    };
    while (worker.drain.active() > 0 || parked()) && Instant::now() < deadline {
        compio::time::sleep(Duration::from_millis(10)).await;
    }
    if polite {
        // What is still idle closes now, and the accepts kept for the drain are withdrawn;
        // the runtime turns until they are reaped (a connection one took as it was withdrawn
        // is handed over, `io::accept`) and a little longer for the last completions.
        worker.drain.start();
        let end = Instant::now() + Duration::from_millis(200);
        while worker.drain.active() > 0 && Instant::now() < end {
            compio::time::sleep(Duration::from_millis(10)).await;
        }
        compio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every line logged and span recorded so far goes to the writer/exporter before this
    // thread ends.
    worker.access_log.flush(true);
    worker.tracer.flush(true);
    let c = &worker.stats;
    let sum = |f: fn(&crate::stats::ClusterStats) -> u64| c.clusters.iter().map(f).sum::<u64>();
    tracing::info!(
        worker = worker.id,
        left_in_flight = worker.drain.active(),
        downstream_cx_total = stats::get(&c.downstream_cx_total),
        downstream_rq_total = stats::get(&c.downstream_rq_total),
        upstream_cx_total = sum(|s| stats::get(&s.upstream_cx_total)),
        upstream_rq_total = stats::get(&c.upstream_rq_total),
        upstream_cx_pool_reuse = sum(|s| stats::get(&s.upstream_cx_pool_reuse)),
        "worker stopped"
    );
}
