//! The process: a control thread and one worker per core.
//!
//! The control thread (the caller of [`run`]) owns the config, binds every listener's
//! SO_REUSEPORT socket group (so a clash is reported once, before anything serves), starts the
//! workers with an immutable `Arc<Config>` snapshot, and waits for signals. SIGINT/SIGTERM: it
//! tells every worker to drain (stop accepting, close idle keep-alives, finish in-flight requests
//! within `drain_timeout`) and exits once they have. Workers never call back into it.

pub mod drain;
pub mod ring;
pub mod worker;

use std::{net::SocketAddr, sync::Arc, thread};

use crate::{config::Config, listener};

/// Messages from the control thread to a worker.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Shutdown,
}

/// Options from the command line that override the config.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub workers: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bind(#[from] listener::BindError),
    #[error("a worker failed to start: {0}")]
    Worker(String),
    #[error("cannot start worker thread: {0}")]
    Spawn(std::io::Error),
}

fn worker_count(cfg: &Config, opts: &RunOptions) -> usize {
    opts.workers
        .or(cfg.workers)
        .unwrap_or_else(|| {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid initialized sigset; `sig` is a valid out pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Run the proxy until SIGINT/SIGTERM. `on_bound` is told each listener's bound address (tests
/// and scripts read it from stdout; port 0 picks a free port).
pub fn run(
    cfg: Arc<Config>,
    opts: &RunOptions,
    on_bound: impl Fn(&str, SocketAddr),
) -> Result<(), RunError> {
    let memlock = ring::raise_memlock();
    tracing::debug!(memlock, "RLIMIT_MEMLOCK soft limit");
    let n = worker_count(&cfg, opts);

    // Bind every listener's socket group first.
    let mut per_listener = Vec::new();
    for l in &cfg.listeners {
        let group = listener::bind_group(&l.name, l.address, l.backlog, n)?;
        if let Some(first) = group.first() {
            if let Ok(addr) = first.local_addr() {
                on_bound(&l.name, addr);
            }
        }
        per_listener.push(group);
    }
    // Re-slice: worker i gets socket i of every listener.
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
    for group in per_listener {
        for (i, s) in group.into_iter().enumerate() {
            per_worker[i].push(s);
        }
    }

    let sigset = block_signals();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_tx, ready_rx) = flume::unbounded();
    let mut controls = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for (id, sockets) in per_worker.into_iter().enumerate() {
        let (tx, rx) = flume::unbounded();
        controls.push(tx);
        let start = worker::Start {
            id,
            core: if cores.is_empty() {
                None
            } else {
                Some(cores[id % cores.len()])
            },
            config: Arc::clone(&cfg),
            sockets,
            control: rx,
            ready: ready_tx.clone(),
        };
        let h = thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || worker::run(start))
            .map_err(RunError::Spawn)?;
        handles.push(h);
    }
    drop(ready_tx);

    let stop_all = |controls: &[flume::Sender<Control>]| {
        for c in controls {
            let _ = c.send(Control::Shutdown);
        }
    };
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
            return Err(RunError::Worker(msg));
        }
    }
    tracing::info!(
        workers = n,
        listeners = cfg.listeners.len(),
        clusters = cfg.clusters.len(),
        "ringway serving"
    );

    loop {
        let sig = wait_signal(&sigset);
        if sig == libc::SIGHUP {
            tracing::warn!(
                "SIGHUP: configuration reload is not supported yet; keeping the running config"
            );
            continue;
        }
        tracing::info!(signal = sig, drain_timeout = ?cfg.drain_timeout, "shutting down: draining workers");
        break;
    }
    stop_all(&controls);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
