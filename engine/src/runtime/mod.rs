//! The process: a control thread and one worker per core.
//!
//! The control thread (the caller of [`run`]) owns the config, binds every listener's
//! SO_REUSEPORT socket group (so a clash is reported once, before anything serves), starts the
//! workers with an immutable `Arc<Config>` snapshot, and waits for signals. SIGINT/SIGTERM: it
//! tells every worker to drain (stop accepting, close idle keep-alives, finish in-flight requests
//! within `drain_timeout`) and exits once they have. Workers never call back into it. Only this
//! thread takes the signals: every other thread inherits a mask that blocks them
//! ([`crate::signals`]), so a second SIGTERM during the drain cannot end the process early.
//!
//! It also owns the stats side: one [`WorkerStats`](crate::stats::WorkerStats) block per worker
//! (handed to the worker, read here), the [`Aggregator`](crate::stats::aggregate::Aggregator)
//! that merges the workers' histograms every `stats_flush_interval` (a small `ringway-stats`
//! thread), the access-log writer and span exporter threads when those are configured, and,
//! when `admin` is configured, the [admin server](crate::admin), which talks to the
//! workers over the same control channels (`FlushStats`, `DrainListeners`).

pub mod ring;
pub mod worker;

use std::{net::SocketAddr, sync::Arc, thread};

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
    /// `--upgrade-from PATH`: take the listening sockets of the ringway serving there, then
    /// tell it to drain ([`crate::upgrade`]).
    pub upgrade_from: Option<std::path::PathBuf>,
    /// `--upgrade-socket PATH`: hand this process's sockets to a successor that asks there.
    pub upgrade_socket: Option<std::path::PathBuf>,
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

/// Run the proxy until SIGINT/SIGTERM. `on_bound` is told each listener's bound address (tests
/// and scripts read it from stdout; port 0 picks a free port).
///
/// The shutdown signals must be blocked ([`Signals::block`]) before the process starts any
/// thread, so that every thread inherits the mask and only this one takes them: `ringway run`
/// does it first thing. Blocking here again covers a caller that starts no thread before `run`.
pub fn run(
    cfg: Arc<Config>,
    opts: &RunOptions,
    on_bound: impl Fn(&str, SocketAddr),
) -> Result<(), RunError> {
    let signals = Signals::block();
    let memlock = ring::raise_memlock();
    tracing::debug!(memlock, "RLIMIT_MEMLOCK soft limit");
    // Multishot receives are the default; `RINGWAY_RECV_MULTISHOT=0` measures without them.
    crate::io::set_multishot(std::env::var_os("RINGWAY_RECV_MULTISHOT").is_none_or(|v| v != "0"));
    let affinity = opts.cpu_affinity.as_ref().unwrap_or(&cfg.cpu_affinity);
    let n = worker_count(&cfg, affinity, opts);

    // A binary upgrade takes the running process's sockets before anything is bound.
    let mut inherited = match &opts.upgrade_from {
        Some(path) => Some(crate::upgrade::take_over(path)?),
        None => None,
    };
    // Bind every listener's socket group first (or take it over).
    let mut per_listener = Vec::new();
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
        let mut bound = l.address;
        if let Some(first) = group.first() {
            if let Ok(addr) = first.local_addr() {
                on_bound(&l.name, addr);
                bound = addr;
            }
        }
        bound_addrs.push(bound);
        per_listener.push(group);
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
    // What a successor will get: duplicates of every socket, kept by the upgrade server.
    let handover = opts
        .upgrade_socket
        .as_ref()
        .map(|_| crate::upgrade::Handover {
            listeners: cfg
                .listeners
                .iter()
                .zip(&per_listener)
                .zip(&bound_addrs)
                .map(|((l, group), bound)| {
                    let fds = group
                        .iter()
                        .filter_map(|s: &std::net::TcpListener| s.try_clone().ok())
                        .map(std::os::fd::OwnedFd::from)
                        .collect();
                    (l.name.clone(), l.address, *bound, fds)
                })
                .collect(),
            admin: cfg
                .admin
                .as_ref()
                .zip(admin_listener.as_ref())
                .and_then(|(a, s)| {
                    let bound = s.local_addr().ok()?;
                    let dup = s.try_clone().ok()?;
                    Some((a.address, bound, std::os::fd::OwnedFd::from(dup)))
                }),
        });

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
    // Health checks and outlier detection: their thread starts (and runs its first round of
    // checks) before the workers, which route by what it finds.
    let make_rt: crate::health::MakeRuntime =
        Box::new(|| ring::build_runtime(256, 64).map_err(|e| format!("{} ({})", e.source, e.hint)));
    let (health_board, health_thread) =
        match crate::health::start(&cfg, worker_stats.clone(), make_rt).map_err(RunError::Spawn)? {
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
    // Re-slice: worker i gets socket i of every listener (and i + n, ... when a group taken
    // over from an older process has more sockets than there are workers).
    let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> =
        (0..n).map(|_| Vec::new()).collect();
    for (index, group) in per_listener.into_iter().enumerate() {
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
    for (id, sockets) in per_worker.into_iter().enumerate() {
        let (tx, rx) = flume::unbounded();
        controls.push(tx);
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
    let admin = Arc::new(admin::Shared::new(
        Arc::clone(&cfg),
        Arc::clone(&aggregator),
        controls.clone(),
        opts.log_reload.clone(),
        Arc::clone(&certs),
    ));
    if let Some(l) = admin_listener {
        admin::start(l, Arc::clone(&admin));
    }
    // Merge the workers' histograms every stats_flush_interval, whether or not anyone reads them.
    {
        let agg = Arc::clone(&aggregator);
        let every = cfg.stats_flush_interval;
        let _ = spawn_background("ringway-stats", move || loop {
            thread::sleep(every);
            agg.merge_pending();
        });
    }

    let stop_all = |controls: &[flume::Sender<Control>]| {
        for c in controls {
            let _ = c.send(Control::Shutdown);
        }
    };
    // Set when a successor took the sockets over: the drain is then polite.
    let handed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..n {
        let failure = match ready_rx.recv() {
            Ok(Ok(_)) => None,
            Ok(Err(msg)) => Some(msg),
            Err(_) => Some("worker thread exited before it was ready".to_string()),
        };
        if let Some(msg) = failure {
            stop_all(&controls);
            for h in handles {
                let _ = h.join();
            }
            if let Some(t) = health_thread {
                t.stop();
            }
            return Err(RunError::Worker(msg));
        }
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
    let upgrade = match (&opts.upgrade_socket, handover) {
        (Some(path), Some(handover)) => {
            let shared = Arc::clone(&admin);
            let flag = Arc::clone(&handed_over);
            let started = crate::upgrade::Server::start(path, handover, move || {
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
                    stop_all(&controls);
                    for h in handles {
                        let _ = h.join();
                    }
                    if let Some(t) = health_thread {
                        t.stop();
                    }
                    return Err(RunError::UpgradeSocket {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        _ => None,
    };

    loop {
        // A signal that arrived while starting was kept pending: it is taken now. Any further
        // one during the drain stays pending (every thread blocks it) and changes nothing.
        let sig = signals.wait();
        if sig == libc::SIGHUP {
            // Certificates only: the rest of the config needs a restart.
            match certs.reload() {
                Ok(msg) => tracing::info!("SIGHUP: {msg}"),
                Err(e) => tracing::error!("SIGHUP: certificate reload refused: {e}"),
            }
            continue;
        }
        tracing::info!(signal = sig, drain_timeout = ?cfg.drain_timeout, "shutting down: draining workers");
        break;
    }
    admin.set_draining();
    if let Some(u) = &upgrade {
        u.close();
    }
    if handed_over.load(std::sync::atomic::Ordering::SeqCst) {
        for c in &controls {
            let _ = c.send(Control::Handover);
        }
    } else {
        stop_all(&controls);
    }
    for h in handles {
        let _ = h.join();
    }
    if let Some(t) = health_thread {
        t.stop();
    }
    // The workers have shipped their last access-log lines: write, fsync, stop the writer.
    if let Some(w) = access_log {
        w.finish();
    }
    // ... and their last spans: the exporter sends them and ends.
    if let Some(e) = exporter {
        e.finish();
    }
    Ok(())
}
