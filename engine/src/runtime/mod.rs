//! The process: a control thread and one worker per core.
//!
//! The control thread (the caller of [`run`]) owns the config, binds every listener's
//! SO_REUSEPORT socket group (so a clash is reported once, before anything serves; or takes it
//! over from a running process, `--upgrade-from`), starts the workers with an immutable
//! `Arc<Config>` snapshot, and waits for signals. SIGINT/SIGTERM: it
//! tells every worker to drain (stop accepting, close idle keep-alives, finish in-flight requests
//! within `drain_timeout`) and exits once they have. Workers never call back into it. Only this
//! thread takes the signals: every other thread inherits a mask that blocks them
//! ([`crate::signals`]), so a second SIGTERM during the drain cannot end the process early.
//!
//! Everything one config needs to serve is a `Generation`: its workers, one
//! [`WorkerStats`](crate::stats::WorkerStats) block per worker and the
//! [`Aggregator`](crate::stats::aggregate::Aggregator) that merges their histograms (every
//! `stats_flush_interval`, on a small `ringway-stats` thread), the health thread, the access-log
//! writer and span exporter threads when those are configured, and duplicates of its listener
//! sockets. SIGHUP (or `POST /config/reload`, or `watch`) loads the file again and starts the
//! next generation on the same sockets; SIGUSR2 (the DNS thread) starts one with new endpoint
//! addresses; the old generation hands its idle connections over and drains on a
//! `ringway-retire` thread. With `--upgrade-socket` the sockets can also go to another process
//! ([`crate::upgrade`]). When `admin` is configured, the [admin server](crate::admin) reads the
//! generation in force and talks to its workers over the control channels (`FlushStats`,
//! `DrainListeners`).

pub mod ring;
pub mod worker;

use std::{net::SocketAddr, sync::Arc, thread, time::Duration};

use crate::{
    admin,
    background::spawn_background,
    balance,
    config::{Config, CpuAffinity},
    control::Control,
    listener,
    signals::Signals,
    stats,
};

/// Options from the command line that override the config.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub workers: Option<usize>,
    /// `--cpu-affinity`: overrides `cpu_affinity` in the config.
    pub cpu_affinity: Option<CpuAffinity>,
    /// Changes the log level at run time (the admin server's `POST /logging`).
    pub log_reload: Option<crate::admin::LogReload>,
    /// The config file, read again for certificate reloads (SIGHUP, `POST /certs/reload`).
    pub config_path: Option<std::path::PathBuf>,
    /// How the config file is read (its dialect), at start and at every reload.
    pub load: crate::config::LoadOptions,
    /// `--upgrade-from PATH`: take the listening sockets of the ringway serving there, then
    /// tell it to drain ([`crate::upgrade`]).
    pub upgrade_from: Option<std::path::PathBuf>,
    /// `--upgrade-socket PATH`: hand this process's sockets to a successor that asks there.
    pub upgrade_socket: Option<std::path::PathBuf>,
    /// `--io-driver`: overrides `RINGWAY_IO_DRIVER` and `io_driver` in the config.
    pub io_driver: Option<crate::config::IoDriverMode>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bind(#[from] listener::BindError),
    #[error("admin server: cannot bind {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    AccessLog(#[from] crate::access_log::OpenError),
    #[error("a worker failed to start: {0}")]
    Worker(String),
    #[error("cannot start worker thread: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Upgrade(#[from] crate::upgrade::UpgradeError),
    #[error("upgrade socket {path}: {source}")]
    UpgradeSocket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Options(String),
}

/// `workers: auto` is one worker per CPU of an explicit `cpu_affinity` list, else one per CPU
/// the process may run on.
fn worker_count(cfg: &Config, affinity: &CpuAffinity, opts: &RunOptions) -> usize {
    opts.workers
        .or(cfg.workers)
        .unwrap_or_else(|| match affinity {
            CpuAffinity::Cpus(list) => list.len(),
            CpuAffinity::Auto | CpuAffinity::None => thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        })
        .max(1)
}

/// The CPU each worker is pinned to, by worker id (`None`: not pinned). `auto` and a list pin
/// round-robin: worker `i` on the `i`-th CPU (modulo their count).
fn worker_cores(affinity: &CpuAffinity, n: usize) -> Vec<Option<core_affinity::CoreId>> {
    let cores: Vec<core_affinity::CoreId> = match affinity {
        CpuAffinity::Auto => core_affinity::get_core_ids().unwrap_or_default(),
        CpuAffinity::None => Vec::new(),
        CpuAffinity::Cpus(list) => list
            .iter()
            .map(|&id| core_affinity::CoreId { id })
            .collect(),
    };
    (0..n)
        .map(|i| (!cores.is_empty()).then(|| cores[i % cores.len()]))
        .collect()
}

/// One listener's socket group as a generation holds it: duplicates of the group its workers
/// accept on, kept for the next generation (a reload) and for a successor (a binary upgrade).
struct HeldListener {
    name: String,
    configured: SocketAddr,
    bound: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

impl HeldListener {
    /// Duplicates of the group (the same kernel sockets).
    fn dup(&self) -> Vec<std::net::TcpListener> {
        self.sockets
            .iter()
            .filter_map(|s| s.try_clone().ok())
            .collect()
    }
}

/// One config's workers and the threads that serve them: the workers, the health checker,
/// the stats aggregator's view, the access-log writer and the span exporter. A reload starts
/// the next generation on the same sockets, then retires this one.
struct Generation {
    cfg: Arc<Config>,
    controls: Vec<flume::Sender<Control>>,
    handles: Vec<thread::JoinHandle<()>>,
    health_thread: Option<crate::health::Running>,
    /// What the health checks found, per cluster (a reload carries it for unchanged clusters).
    health_board: Option<crate::endpoint_health::Board>,
    aggregator: Arc<stats::aggregate::Aggregator>,
    access_log: Option<crate::access_log::Writer>,
    exporter: Option<crate::trace_export::Exporter>,
    /// Emptied when the generation stops accepting (a drain, `POST /drain_listeners`).
    listeners: Arc<std::sync::Mutex<Vec<HeldListener>>>,
    /// Each worker's channel for connections the previous generation hands over.
    adopt: Vec<flume::Sender<crate::control::Adopt>>,
    /// Each worker's channel for idle upstream connections the previous generation hands over.
    adopt_upstream: Vec<flume::Sender<crate::control::AdoptUpstream>>,
    certs: Arc<crate::certs::CertReloader>,
}

impl Generation {
    /// Start `cfg`'s workers on `groups` (one socket group per listener, config order) and wait
    /// until every one serves. On failure everything started is stopped again.
    fn start(
        cfg: Arc<Config>,
        opts: &RunOptions,
        groups: Vec<Vec<std::net::TcpListener>>,
        bound_addrs: Vec<SocketAddr>,
        previous: Option<&Generation>,
    ) -> Result<Generation, RunError> {
        let affinity = opts.cpu_affinity.as_ref().unwrap_or(&cfg.cpu_affinity);
        let n = worker_count(&cfg, affinity, opts);
        let listeners: Vec<HeldListener> = cfg
            .listeners
            .iter()
            .zip(&groups)
            .zip(&bound_addrs)
            .map(|((l, g), bound)| HeldListener {
                name: l.name.clone(),
                configured: l.address,
                bound: *bound,
                sockets: g.iter().filter_map(|s| s.try_clone().ok()).collect(),
            })
            .collect();
        // Stats: one block per worker (shared with the aggregator), one channel for histograms.
        let worker_stats: Vec<Arc<stats::WorkerStats>> = (0..n)
            .map(|id| Arc::new(stats::WorkerStats::new(id, &cfg)))
            .collect();
        let (hist_tx, hist_rx) = flume::unbounded();
        // Emptied histogram sets go back to their worker (two in flight at most).
        let (recycle_tx, mut recycle_rx): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| flume::bounded(2))
            .map(|(t, r)| (t, Some(r)))
            .unzip();
        // Health checks and outlier detection: their thread starts (and runs its first round
        // of checks) before the workers, which route by what it finds.
        let make_rt: crate::health::MakeRuntime = Box::new(|| {
            ring::build_runtime(256, 64).map_err(|e| format!("{} ({})", e.source, e.hint))
        });
        let (health_board, health_thread) = match crate::health::start(
            &cfg,
            worker_stats.clone(),
            make_rt,
            previous.and_then(|p| Some((&*p.cfg, p.health_board.as_ref()?))),
        )
        .map_err(RunError::Spawn)?
        {
            Some((b, r)) => (Some(b), Some(r)),
            None => (None, None),
        };
        let trace_stats = cfg
            .tracing
            .as_ref()
            .map(|_| Arc::new(crate::trace::TraceStats::default()));
        let aggregator = Arc::new(stats::aggregate::Aggregator::new(
            Arc::clone(&cfg),
            bound_addrs,
            worker_stats.clone(),
            hist_rx,
            trace_stats.clone(),
            recycle_tx,
            health_board.clone(),
        ));
        // The access-log writer thread (opens the files now, so a bad path fails the start).
        let access_log = crate::access_log::Writer::start(&cfg)?;
        // The span exporter thread; it ends once every worker has dropped its sender.
        let (trace_tx, exporter) = match &trace_stats {
            Some(ts) => {
                let (tx, rx) = crate::trace::channel();
                let ex = crate::trace_export::Exporter::start(Arc::clone(&cfg), rx, Arc::clone(ts))
                    .map_err(RunError::Spawn)?;
                (Some(tx), Some(ex))
            }
            None => (None, None),
        };
        // Re-slice: worker i gets socket i of every listener (and i + n, ... when a group has
        // more sockets than there are workers: taken over, or kept from a larger generation).
        let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> =
            (0..n).map(|_| Vec::new()).collect();
        for (index, group) in groups.into_iter().enumerate() {
            for (i, s) in group.into_iter().enumerate() {
                per_worker[i % n].push((index, s));
            }
        }
        // Exact connection balance needs somewhere to hand connections: only with 2+ workers.
        let (balance, mut handoffs) = if n > 1 {
            let (shared, rx) = balance::Shared::new(n);
            (Some(shared), rx.into_iter().map(Some).collect::<Vec<_>>())
        } else {
            (None, vec![None])
        };
        let cores = worker_cores(affinity, n);
        let (ready_tx, ready_rx) = flume::unbounded();
        let mut controls = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut adopt = Vec::with_capacity(n);
        let mut adopt_upstream = Vec::with_capacity(n);
        for (id, sockets) in per_worker.into_iter().enumerate() {
            let (tx, rx) = flume::unbounded();
            controls.push(tx);
            let (adopt_tx, adopt_rx) = flume::unbounded();
            adopt.push(adopt_tx);
            let (up_tx, up_rx) = flume::unbounded();
            adopt_upstream.push(up_tx);
            let start = worker::Start {
                id,
                workers: n,
                core: cores.get(id).copied().flatten(),
                config: Arc::clone(&cfg),
                sockets,
                control: rx,
                ready: ready_tx.clone(),
                stats: Arc::clone(&worker_stats[id]),
                hist_tx: hist_tx.clone(),
                access_log: access_log.as_ref().map(|w| w.sink()),
                trace: trace_tx.clone(),
                balance: balance.clone(),
                hist_free: recycle_rx.get_mut(id).and_then(Option::take),
                handoff: handoffs.get_mut(id).and_then(Option::take),
                trace_stats: trace_stats.clone(),
                health: health_board.clone(),
                adopt: Some(adopt_rx),
                adopt_upstream: Some(up_rx),
            };
            let h = thread::Builder::new()
                .name(format!("ringway-w{id}"))
                .spawn(move || worker::run(start))
                .map_err(RunError::Spawn)?;
            handles.push(h);
        }
        drop(ready_tx);
        drop(hist_tx);
        drop(trace_tx);
        let certs = Arc::new(crate::certs::CertReloader::new(
            &cfg,
            opts.config_path.clone(),
            controls.clone(),
        ));
        let g = Generation {
            cfg,
            controls,
            handles,
            health_thread,
            health_board,
            aggregator,
            access_log,
            exporter,
            listeners: Arc::new(std::sync::Mutex::new(listeners)),
            adopt,
            adopt_upstream,
            certs,
        };
        for _ in 0..n {
            let failure = match ready_rx.recv() {
                Ok(Ok(_)) => None,
                Ok(Err(msg)) => Some(msg),
                Err(_) => Some("worker thread exited before it was ready".to_string()),
            };
            if let Some(msg) = failure {
                g.stop(false, None);
                return Err(RunError::Worker(msg));
            }
        }
        Ok(g)
    }

    /// What the admin server reads and talks to.
    fn admin_view(&self, version: u64) -> admin::Current {
        admin::Current {
            config: Arc::clone(&self.cfg),
            agg: Arc::clone(&self.aggregator),
            controls: self.controls.clone(),
            certs: Arc::clone(&self.certs),
            version,
            release_sockets: {
                let held = Arc::clone(&self.listeners);
                Arc::new(move || held.lock().unwrap_or_else(|p| p.into_inner()).clear())
            },
        }
    }

    /// The held listeners (locked: a drain may empty them from the admin thread).
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<HeldListener>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a successor gets (binary upgrade): duplicates of every socket.
    fn handover(
        &self,
        admin: Option<(SocketAddr, &std::net::TcpListener)>,
    ) -> crate::upgrade::Handover {
        crate::upgrade::Handover {
            listeners: self
                .held()
                .iter()
                .map(|l| {
                    let fds = l
                        .dup()
                        .into_iter()
                        .map(std::os::fd::OwnedFd::from)
                        .collect();
                    (l.name.clone(), l.configured, l.bound, fds)
                })
                .collect(),
            admin: admin.and_then(|(configured, s)| {
                let bound = s.local_addr().ok()?;
                let dup = s.try_clone().ok()?;
                Some((configured, bound, std::os::fd::OwnedFd::from(dup)))
            }),
        }
    }

    /// The next generation, as this one's workers hand connections to it: its workers'
    /// channels and where each of this config's listeners is in the next one.
    fn successor_in(
        &self,
        next: &Generation,
        ack: flume::Sender<usize>,
    ) -> crate::control::Successor {
        crate::control::Successor {
            ack,
            workers: next.adopt.clone(),
            upstream: next.adopt_upstream.clone(),
            clusters: self
                .cfg
                .clusters
                .iter()
                .map(|c| {
                    let poolable = |c: &crate::config::Cluster| {
                        c.tls.is_none()
                            && !c.http2
                            && !c.http2_auto
                            && c.upstream_proxy_protocol.is_none()
                    };
                    next.cfg.clusters.iter().position(|m| {
                        m.name == c.name && m.endpoints == c.endpoints && poolable(c) && poolable(m)
                    })
                })
                .collect(),
            listeners: self
                .cfg
                .listeners
                .iter()
                .map(|l| {
                    next.cfg
                        .listeners
                        .iter()
                        .position(|m| m.name == l.name && m.address == l.address)
                })
                .collect(),
        }
    }

    /// Drain and stop the workers (`polite`: a hand-over, to a reload's next generation, whose
    /// workers then get the idle connections, or to a successor process), then the threads
    /// that served them.
    fn stop(self, polite: bool, successor: Option<Arc<crate::control::Successor>>) {
        self.begin_stop(polite, successor);
        self.join();
    }

    /// Tell the workers to drain (see [`Generation::stop`]).
    fn begin_stop(&self, polite: bool, successor: Option<Arc<crate::control::Successor>>) {
        // Our duplicates go first: a socket no later generation or successor holds closes with
        // its workers' (new connections are refused, not queued).
        self.held().clear();
        for c in &self.controls {
            let _ = c.send(if polite {
                Control::Handover(successor.clone())
            } else {
                Control::Shutdown
            });
        }
    }

    /// Wait for the drained workers, then stop the threads that served them.
    fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
        if let Some(t) = self.health_thread {
            t.stop();
        }
        // The workers have shipped their last access-log lines: write, fsync, stop the writer.
        if let Some(w) = self.access_log {
            w.finish();
        }
        // ... and their last spans: the exporter sends them and ends.
        if let Some(e) = self.exporter {
            e.finish();
        }
    }
}

/// A 64-bit hash of the config file's bytes, for `/config_dump` and the logs.
fn file_hash(path: &std::path::Path) -> u64 {
    std::fs::read(path).map_or(0, |b| crate::upstream::hash::xxhash64(&b, 0))
}

/// The hash of a composed config's document (a control plane's update has no file of its own).
fn document_hash(cfg: &Config) -> u64 {
    cfg.document.as_ref().map_or(0, |d| {
        crate::upstream::hash::xxhash64(d.to_string().as_bytes(), 0)
    })
}

/// Run the proxy until SIGINT/SIGTERM. `on_bound` is told each listener's bound address (tests
/// and scripts read it from stdout; port 0 picks a free port).
///
/// The shutdown signals must be blocked ([`Signals::block`]) before the process starts any
/// thread, so that every thread inherits the mask and only this one takes them: `ringway run`
/// does it first thing. Blocking here again covers a caller that starts no thread before `run`.
/// The driver asked for: `--io-driver`, else `RINGWAY_IO_DRIVER` (how the test suite runs on
/// epoll), else the config's `io_driver`.
fn io_driver_mode(
    cfg: &Config,
    opts: &RunOptions,
) -> Result<crate::config::IoDriverMode, RunError> {
    if let Some(m) = opts.io_driver {
        return Ok(m);
    }
    match std::env::var("RINGWAY_IO_DRIVER") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|e: String| RunError::Options(format!("RINGWAY_IO_DRIVER: {e}"))),
        _ => Ok(cfg.io_driver),
    }
}

pub fn run(
    cfg: Arc<Config>,
    opts: &RunOptions,
    on_bound: impl Fn(&str, SocketAddr),
) -> Result<(), RunError> {
    let signals = Signals::block();
    let memlock = ring::raise_memlock();
    tracing::debug!(memlock, "RLIMIT_MEMLOCK soft limit");
    let driver = ring::choose_driver(io_driver_mode(&cfg, opts)?);
    tracing::info!(io_driver = driver.name(), "I/O driver");
    // Multishot receives are the default on io_uring; `RINGWAY_RECV_MULTISHOT=0` measures
    // without them. The epoll driver reads one-shot.
    crate::io::set_multishot(
        driver == ring::IoDriver::IoUring
            && std::env::var_os("RINGWAY_RECV_MULTISHOT").is_none_or(|v| v != "0"),
    );
    // `xds:`: the control plane's client starts first and, as Envoy's initialisation does,
    // nothing serves until its first listeners and clusters are in (at most
    // `initial_fetch_timeout`; then the file's own serve and the rest comes when it answers).
    let (cfg, xds, first_reply) = match &cfg.xds {
        Some(x) => {
            let file = cfg
                .file_document
                .clone()
                .unwrap_or_else(|| Arc::new(serde_json::Value::Null));
            let shared = Arc::new(crate::xds::Shared::new(
                file,
                cfg.source.clone(),
                opts.load.allow_unsupported,
            ));
            crate::xds::start(&cfg, Arc::clone(&shared)).map_err(RunError::Options)?;
            match shared.wait_update(x.initial_fetch_timeout) {
                Some(u) => (u.config, Some(shared), Some(u.reply)),
                None => {
                    tracing::warn!(initial_fetch_timeout = ?x.initial_fetch_timeout, "xds: no config from the control plane in time: serving the file's own until it answers");
                    (cfg, Some(shared), None)
                }
            }
        }
        None => (cfg, None, None),
    };
    let affinity = opts
        .cpu_affinity
        .as_ref()
        .unwrap_or(&cfg.cpu_affinity)
        .clone();
    let n = worker_count(&cfg, &affinity, opts);

    // A binary upgrade takes the running process's sockets before anything is bound.
    let mut inherited = match &opts.upgrade_from {
        Some(path) => Some(crate::upgrade::take_over(path)?),
        None => None,
    };
    // Bind every listener's socket group first (or take it over).
    let mut groups = Vec::new();
    let mut bound_addrs = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let taken = inherited
            .as_mut()
            .and_then(|h| h.take_listener(&l.name, l.address));
        let group = match taken {
            Some(old) => {
                tracing::info!(
                    listener = %l.name,
                    address = %old.bound,
                    sockets = old.sockets.len(),
                    "upgrade: listener taken over"
                );
                listener::join_group(&l.name, old.bound, l.backlog, old.sockets, n)
            }
            None => listener::bind_group(&l.name, l.address, l.backlog, n)?,
        };
        listener::set_defer_accept(&l.name, &group, l.defer_accept);
        let mut bound = l.address;
        if let Some(first) = group.first() {
            if let Ok(addr) = first.local_addr() {
                on_bound(&l.name, addr);
                bound = addr;
            }
        }
        bound_addrs.push(bound);
        groups.push(group);
    }
    let admin_listener = match &cfg.admin {
        Some(a) => match inherited.as_mut().and_then(|h| h.take_admin(a.address)) {
            Some(s) => Some(s),
            None => Some(std::net::TcpListener::bind(a.address).map_err(|source| {
                RunError::AdminBind {
                    addr: a.address,
                    source,
                }
            })?),
        },
        None => None,
    };
    let admin_configured = cfg.admin.as_ref().map(|a| a.address);

    // DNS clusters: resolved before anything serves; the workers get the addresses.
    let dns = Arc::new(crate::dns::Dns::default());
    dns.configure(&cfg);
    dns.resolve_all();
    let mut base = Arc::clone(&cfg);
    let cfg = if dns.any() {
        Arc::new(dns.apply(&cfg))
    } else {
        cfg
    };
    let dns_start = |dns: &Arc<crate::dns::Dns>| match dns.start(|| {
        // SAFETY: kill(2) on our own pid; the control thread takes SIGUSR2.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
    }) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the DNS thread");
            false
        }
    };
    let mut dns_started = dns.any() && dns_start(&dns);
    let mut current = Generation::start(Arc::clone(&cfg), opts, groups, bound_addrs, None)?;
    let mut version = 1u64;
    let hash = opts.config_path.as_deref().map_or(0, file_hash);
    let process = Arc::new(stats::aggregate::ProcessStats::default());
    process.set_dns(Arc::clone(&dns));
    process.set_version(version, hash);
    let admin = Arc::new(admin::Shared::new(
        current.admin_view(version),
        opts.log_reload.clone(),
        Arc::clone(&process),
    ));
    current.aggregator.set_process(Some(Arc::clone(&process)));
    // The xDS client's later updates come back as SIGUSR1.
    if let Some(x) = &xds {
        process.set_xds(Arc::clone(x));
        x.set_in_force(&current.cfg);
    }
    if let Some(reply) = first_reply {
        let _ = reply.send(Ok(format!(
            "version {version} in force at start: {}",
            current.cfg.summary()
        )));
    }
    if let Some(l) = &admin_listener {
        match l.try_clone() {
            Ok(l) => admin::start(l, Arc::clone(&admin)),
            Err(e) => tracing::error!(error = %e, "cannot start the admin server"),
        }
    }
    // Merge the workers' histograms every stats_flush_interval, whether or not anyone reads
    // them (the generation in force at each tick).
    {
        let shared = Arc::clone(&admin);
        let every = cfg.stats_flush_interval;
        let _ = spawn_background("ringway-stats", move || loop {
            thread::sleep(every);
            shared.current().agg.merge_pending();
        });
    }
    admin.set_serving();
    tracing::info!(
        workers = n,
        cpu_affinity = ?affinity,
        listeners = cfg.listeners.len(),
        clusters = cfg.clusters.len(),
        "ringway serving"
    );
    // Serving on the taken sockets: the old process may go now.
    if let Some(h) = inherited {
        if let Err(e) = h.finish() {
            tracing::warn!(error = %e, "upgrade: the old process did not confirm its drain");
        }
    }
    // Set when a successor took the sockets over: the drain is then polite.
    let handed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handover = |g: &Generation| g.handover(admin_configured.zip(admin_listener.as_ref()));
    let upgrade = match &opts.upgrade_socket {
        Some(path) => {
            let shared = Arc::clone(&admin);
            let flag = Arc::clone(&handed_over);
            let started = crate::upgrade::Server::start(path, handover(&current), move || {
                // The successor serves: stop taking admin connections, and drain (politely).
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                shared.stop_accepting();
                // SAFETY: kill(2) on our own pid; the control thread takes it in `wait`.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            });
            match started {
                Ok(s) => Some(s),
                // Taken over already: serving matters more than the next upgrade.
                Err(e) if opts.upgrade_from.is_some() => {
                    tracing::error!(path = %path.display(), error = %e, "upgrade socket not served: a later upgrade needs a restart");
                    None
                }
                Err(source) => {
                    current.stop(false, None);
                    return Err(RunError::UpgradeSocket {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        None => None,
    };

    // `watch: true`: a file change raises SIGHUP (started once, by the first config that asks).
    let mut watching = false;
    let mut watch = |cfg: &Config| {
        if let (true, false, Some(path)) = (cfg.watch, watching, &opts.config_path) {
            match crate::watch::start(path) {
                Ok(()) => watching = true,
                Err(e) => tracing::error!(error = %e, "cannot watch the config file"),
            }
        }
    };
    watch(&current.cfg);
    // Generations being retired after a reload (their polite drain runs on these threads).
    let mut retiring: Vec<thread::JoinHandle<()>> = Vec::new();
    loop {
        // A signal that arrived while starting was kept pending: it is taken now. Any further
        // one during the drain stays pending (every thread blocks it) and changes nothing.
        let sig = signals.wait();
        if sig == libc::SIGHUP || sig == libc::SIGUSR2 || sig == libc::SIGUSR1 {
            // SIGHUP and `POST /config/reload` (which queues its reply and raises SIGHUP);
            // SIGUSR2: the DNS thread saw new addresses; SIGUSR1: the xDS client has an update.
            let from_file = sig == libc::SIGHUP;
            let mut waiting = if from_file {
                admin.take_reload_requests()
            } else {
                Vec::new()
            };
            let from = match sig {
                libc::SIGHUP => From::File,
                libc::SIGUSR2 => From::Dns,
                _ => match xds.as_ref().and_then(|x| x.take_update()) {
                    Some(u) => {
                        waiting.push(u.reply);
                        From::Xds(u.config)
                    }
                    None => continue,
                },
            };
            let result = reload(
                &mut current,
                opts,
                &admin,
                &process,
                &mut version,
                &dns,
                &mut base,
                from,
                xds.as_deref(),
            );
            if dns.any() && !dns_started {
                dns_started = dns_start(&dns);
            }
            let reply = match result {
                Ok((msg, old)) => {
                    if let Some(x) = &xds {
                        x.set_in_force(&current.cfg);
                    }
                    if let Some(u) = &upgrade {
                        u.update(handover(&current));
                    }
                    // The old generation drains politely on its own thread; its counters
                    // still count (live, then their final values).
                    let old_agg = Arc::clone(&old.aggregator);
                    process.retire_begin(Arc::clone(&old_agg));
                    let retired = Arc::clone(&process);
                    // The old workers hand over before the reload answers: a connection made
                    // after the answer is the new config's.
                    let (ack_tx, ack_rx) = flume::unbounded();
                    let successor = Arc::new(old.successor_in(&current, ack_tx));
                    old.begin_stop(true, Some(successor));
                    let until = std::time::Instant::now() + Duration::from_secs(2);
                    for _ in 0..old.controls.len() {
                        let left = until.saturating_duration_since(std::time::Instant::now());
                        if ack_rx.recv_timeout(left).is_err() {
                            tracing::warn!("config reload: an old worker did not confirm its hand-over in time");
                            break;
                        }
                    }
                    tracing::info!("config reload: {msg}");
                    watch(&current.cfg);
                    match spawn_background("ringway-retire", move || {
                        old.join();
                        retired.retire_end(&old_agg);
                    }) {
                        Ok(h) => retiring.push(h),
                        Err(e) => tracing::error!(error = %e, "cannot retire the old workers"),
                    }
                    Ok(msg)
                }
                Err(e) => {
                    tracing::error!("config reload refused; the running config stays: {e}");
                    Err(e)
                }
            };
            for w in waiting {
                let _ = w.send(reply.clone());
            }
            retiring.retain(|h| !h.is_finished());
            continue;
        }
        tracing::info!(signal = sig, drain_timeout = ?current.cfg.drain_timeout, "shutting down: draining workers");
        break;
    }
    admin.set_draining();
    if let Some(u) = &upgrade {
        u.close();
    }
    let polite = handed_over.load(std::sync::atomic::Ordering::SeqCst);
    current.stop(polite, None);
    for h in retiring {
        let _ = h.join();
    }
    Ok(())
}

/// Load the config file again and, when it is valid and its new listeners bind, start its
/// generation on the same sockets. Returns what to log and the generation to retire; on any
/// error the running generation stays as it is.
/// What a reload puts in force.
enum From {
    /// The config file, read again (SIGHUP or `POST /config/reload`).
    File,
    /// The config in force (`base`, as loaded) with the DNS clusters' new addresses.
    Dns,
    /// The control plane's resources composed with the file (`crate::xds`).
    Xds(Arc<Config>),
}

#[allow(clippy::too_many_arguments)]
fn reload(
    current: &mut Generation,
    opts: &RunOptions,
    admin: &admin::Shared,
    process: &stats::aggregate::ProcessStats,
    version: &mut u64,
    dns: &crate::dns::Dns,
    base: &mut Arc<Config>,
    from: From,
    xds: Option<&crate::xds::Shared>,
) -> Result<(String, Generation), String> {
    let started = std::time::Instant::now();
    let from_file = matches!(from, From::File);
    let refused = |e: String| {
        if from_file {
            process.reload_failed();
        }
        e
    };
    let Some(path) = &opts.config_path else {
        return Err(refused("no config file to reload".into()));
    };
    let loaded = match from {
        From::File => {
            let loaded = crate::config::load_with(path, &opts.load)
                .map_err(|e| refused(format!("{}:\n{e}", path.display())))?;
            // The control plane's resources stay: composed with the new file.
            let loaded = match xds {
                Some(x) => x
                    .recompose(&loaded)
                    .map_err(|e| refused(format!("{}:\n{e}", path.display())))?,
                None => loaded,
            };
            let loaded = Arc::new(loaded);
            dns.configure(&loaded);
            dns.resolve_all();
            loaded
        }
        From::Dns => Arc::clone(base),
        From::Xds(cfg) => {
            dns.configure(&cfg);
            dns.resolve_all();
            cfg
        }
    };
    let changes_base = !matches!(&loaded, l if Arc::ptr_eq(l, base));
    let cfg = Arc::new(dns.apply(&loaded));
    let affinity = opts.cpu_affinity.as_ref().unwrap_or(&cfg.cpu_affinity);
    let n = worker_count(&cfg, affinity, opts);
    // Listeners: the same name and address keep their sockets; new ones are bound now.
    let mut groups = Vec::with_capacity(cfg.listeners.len());
    let mut bound_addrs = Vec::with_capacity(cfg.listeners.len());
    let (mut kept, mut added) = (0, 0);
    for l in &cfg.listeners {
        let all = current.held();
        let held = all
            .iter()
            .find(|h| h.name == l.name && h.configured == l.address);
        let (group, bound) = match held {
            Some(h) => {
                kept += 1;
                (
                    listener::join_group(&l.name, h.bound, l.backlog, h.dup(), n),
                    h.bound,
                )
            }
            None => {
                added += 1;
                let g = listener::bind_group(&l.name, l.address, l.backlog, n)
                    .map_err(|e| refused(e.to_string()))?;
                let bound = g
                    .first()
                    .and_then(|s| s.local_addr().ok())
                    .unwrap_or(l.address);
                // Announced only once bound (scripts read the address from stdout).
                let mut out = std::io::stdout().lock();
                let _ = std::io::Write::write_fmt(
                    &mut out,
                    format_args!("ringway: listener {} bound to {bound}\n", l.name),
                );
                let _ = std::io::Write::flush(&mut out);
                (g, bound)
            }
        };
        drop(all);
        listener::set_defer_accept(&l.name, &group, l.defer_accept);
        groups.push(group);
        bound_addrs.push(bound);
    }
    let removed = current.held().len().saturating_sub(kept);
    let next = Generation::start(Arc::clone(&cfg), opts, groups, bound_addrs, Some(current))
        .map_err(|e| refused(e.to_string()))?;
    let hash = if changes_base {
        *version += 1;
        let hash = if from_file {
            process.reload_success();
            file_hash(path)
        } else {
            document_hash(&loaded)
        };
        process.set_version(*version, hash);
        *base = loaded;
        hash
    } else {
        process.hash()
    };
    next.aggregator.set_process(current.aggregator.process());
    admin.set_current(next.admin_view(*version));
    let old = std::mem::replace(current, next);
    let msg = format!(
        "version {version} ({hash:016x}) in force after {:?}{}: {} listener(s) kept, {added} added, {removed} removed, {} cluster(s)",
        started.elapsed(),
        match (from_file, changes_base) {
            (true, _) => "",
            (false, true) => " from the control plane",
            (false, false) => " with new DNS answers",
        },
        kept,
        cfg.clusters.len()
    );
    Ok((msg, old))
}
