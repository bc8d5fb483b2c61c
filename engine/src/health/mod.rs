//! The control side of endpoint health: active health checks and outlier detection, on a
//! thread of their own (`ringway-health`, background priority) with a small io_uring runtime of
//! their own — never on a worker's ring.
//!
//! Flow: [`start`] builds the shared [`Board`] (one `ClusterHealth` per cluster with
//! `health_checks` or `outlier_detection`; see `endpoint_health`), which the workers route by,
//! then starts the thread. On it, one task per (cluster, endpoint) runs that endpoint's checks
//! ([`check`]) at the configured intervals and applies Envoy's transitions (a first pass makes
//! a new endpoint healthy at once; afterwards `healthy_threshold` passes in a row; a failure
//! counts towards `unhealthy_threshold`, an unexpected HTTP status fails at once). One task
//! per outlier-detected cluster ticks its [`outlier::Detector`] every `interval`, and one task
//! takes the workers' consecutive-failure events. Every change lands as a flag on the board
//! and a new generation; workers see it on their next pick. `start` waits (bounded by the
//! checks' timeouts) for the first round of checks, as Envoy's cluster warming does, so the
//! proxy does not begin by sending traffic to endpoints that are down.

pub mod check;
pub mod outlier;

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use crate::{
    background::spawn_background,
    config::{Config, HealthCheck},
    endpoint_health::{
        Board, CheckResult, ClusterHealth, Decision, OutlierEvent, FAILED_ACTIVE_HC, FAILED_OUTLIER,
    },
    rng::Rng,
    stats::WorkerStats,
    upstream::WorkerTls,
};

use check::{Kept, Verdict};

/// The running health thread; [`Running::stop`] ends it.
#[derive(Debug)]
pub struct Running {
    stop: flume::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// End the checks and join the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Builds the health thread's runtime (the caller's: the health module does not know how the
/// process configures its rings).
pub type MakeRuntime = Box<dyn FnOnce() -> Result<compio::runtime::Runtime, String> + Send>;

/// The cluster called `name` in the previous config, with its index there.
fn same_name<'a>(old: &'a Config, name: &str) -> Option<(usize, &'a crate::config::Cluster)> {
    old.clusters
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == name)
}

/// The clusters of `cfg` whose active health state a reload keeps from `previous` (the config
/// and board of the generation it replaces): same name, same endpoints in the same order, same
/// health check. By index in `cfg`, the index of the same cluster in the previous config.
fn carried(
    cfg: &Config,
    previous: Option<(&Config, &Board)>,
) -> Vec<Option<(usize, Arc<ClusterHealth>)>> {
    cfg.clusters
        .iter()
        .map(|c| {
            let (old_cfg, old_board) = previous?;
            let hc = c.health_check.as_ref()?;
            let (j, old) = same_name(old_cfg, &c.name)?;
            let same = old.endpoints == c.endpoints
                && old.health_check.as_ref().is_some_and(|o| **o == **hc);
            let h = old_board.get(j)?.as_ref()?;
            (same && h.active).then(|| (j, Arc::clone(h)))
        })
        .collect()
}

/// Outlier ejections of clusters a reload leaves as they were (same name, endpoints in the same
/// order, same `outlier_detection`) stay in force on the new board, with their end time and
/// ejection multiplier (the new detector reads them); returns how many.
fn carry_ejections(cfg: &Config, board: &Board, previous: Option<(&Config, &Board)>) -> usize {
    let Some((old_cfg, old_board)) = previous else {
        return 0;
    };
    let mut n = 0;
    for (i, c) in cfg.clusters.iter().enumerate() {
        let Some(outlier) = &c.outlier else { continue };
        let Some((j, old)) = same_name(old_cfg, &c.name) else {
            continue;
        };
        if old.endpoints != c.endpoints || old.outlier.as_ref() != Some(outlier) {
            continue;
        }
        let (Some(Some(from)), Some(Some(to))) = (old_board.get(j), board.get(i)) else {
            continue;
        };
        for (k, h) in from.hosts.iter().enumerate() {
            let until = h.ejected_until_ms.load(Relaxed);
            let (Some(t), true) = (to.hosts.get(k), h.flags.load(Relaxed) & FAILED_OUTLIER != 0)
            else {
                continue;
            };
            let mut count = h.num_ejections.load(Relaxed);
            // Ejected by a worker a moment ago, before the old detector recorded it: its
            // ejection starts now, as the detector would have timed it.
            let until = match until {
                0 => {
                    count = count.saturating_add(1);
                    let for_ = outlier
                        .base_ejection_time
                        .saturating_mul(count)
                        .min(outlier.max_ejection_time);
                    crate::endpoint_health::clock_ms(Instant::now() + for_)
                }
                t => t,
            };
            t.num_ejections.store(count, Relaxed);
            if to.try_eject(k, 100) != Decision::Ejected {
                continue;
            }
            t.ejected_until_ms.store(until, Relaxed);
            to.stats.ejections_active.fetch_add(1, Relaxed);
            n += 1;
        }
    }
    n
}

/// Build the board and start the thread; `None` when no cluster is health-checked. Returns once
/// the first round of active checks is done (or its time is up).
pub fn start(
    cfg: &Arc<Config>,
    workers: Vec<Arc<WorkerStats>>,
    make_rt: MakeRuntime,
    previous: Option<(&Config, &Board)>,
) -> std::io::Result<Option<(Board, Running)>> {
    if !cfg
        .clusters
        .iter()
        .any(|c| c.health_check.is_some() || c.outlier.is_some())
    {
        return Ok(None);
    }
    let (events_tx, events_rx) = flume::unbounded::<OutlierEvent>();
    let board: Board = Arc::new(
        cfg.clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (c.health_check.is_some() || c.outlier.is_some()).then(|| {
                    Arc::new(ClusterHealth::new(
                        i,
                        c.endpoints.len(),
                        c.health_check.is_some(),
                        c.outlier.as_ref().map(|o| (o, events_tx.clone())),
                        c.healthy_panic_threshold,
                    ))
                })
            })
            .collect(),
    );
    drop(events_tx);
    // A reload keeps what the checks found for clusters it leaves as they were: their hosts
    // start as the previous generation left them (not failed-until-checked), and the new
    // workers need not wait for a first round of their checks.
    let carried = carried(cfg, previous);
    let mut kept = 0;
    for (i, carry) in carried.iter().enumerate() {
        let (Some((_, old)), Some(Some(new))) = (carry, board.get(i)) else {
            continue;
        };
        for (k, h) in old.hosts.iter().enumerate() {
            let failed = h.flags.load(Relaxed) & FAILED_ACTIVE_HC != 0;
            new.set(k, FAILED_ACTIVE_HC, failed);
            if let Some(n) = new.hosts.get(k) {
                n.last_status.store(h.last_status.load(Relaxed), Relaxed);
                n.last_check.store(h.last_check.load(Relaxed), Relaxed);
            }
        }
        kept += 1;
    }
    let still_ejected = carry_ejections(cfg, &board, previous);
    if kept > 0 || still_ejected > 0 {
        tracing::info!(
            clusters = kept,
            still_ejected,
            "health: unchanged clusters keep their endpoints' health"
        );
    }
    let checked: usize = cfg
        .clusters
        .iter()
        .zip(&carried)
        .filter(|(c, carry)| c.health_check.is_some() && carry.is_none())
        .map(|(c, _)| c.endpoints.len())
        .sum();
    let carried: Vec<bool> = carried.iter().map(Option::is_some).collect();
    let first_wait = cfg
        .clusters
        .iter()
        .filter_map(|c| c.health_check.as_ref())
        .map(|h| h.timeout + h.initial_jitter)
        .max()
        .unwrap_or_default()
        + Duration::from_millis(250);
    let (first_tx, first_rx) = flume::unbounded::<()>();
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let ctx = Shared {
        cfg: Arc::clone(cfg),
        board: Arc::clone(&board),
        workers,
    };
    let thread = spawn_background("ringway-health", move || {
        let rt = match make_rt() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(
                    "health checks cannot run: {e}; endpoints stay as they are (failed until \
                     checked: traffic goes to all of them in panic mode)"
                );
                return;
            }
        };
        rt.block_on(run(ctx, events_rx, first_tx, stop_rx, carried));
    })?;
    let deadline = Instant::now() + first_wait;
    for _ in 0..checked {
        if first_rx.recv_deadline(deadline).is_err() {
            break;
        }
    }
    Ok(Some((
        board,
        Running {
            stop: stop_tx,
            thread: Some(thread),
        },
    )))
}

/// What every task on the health thread reads.
struct Shared {
    cfg: Arc<Config>,
    board: Board,
    workers: Vec<Arc<WorkerStats>>,
}

impl Shared {
    fn health(&self, c: usize) -> Option<&Arc<ClusterHealth>> {
        self.board.get(c).and_then(Option::as_ref)
    }

    /// The cluster has had traffic (a request through any worker).
    fn had_traffic(&self, c: usize) -> bool {
        self.workers.iter().any(|w| {
            w.cluster(c)
                .is_some_and(|s| s.upstream_rq_total.load(Relaxed) > 0)
        })
    }

    /// Cumulative (requests, errors) per endpoint of cluster `c`, over the workers.
    fn counts(&self, c: usize, n: usize) -> Vec<(u64, u64)> {
        let mut out = vec![(0u64, 0u64); n];
        for w in &self.workers {
            let Some(s) = w.cluster(c) else { continue };
            for (i, e) in s.endpoints.iter().enumerate().take(n) {
                out[i].0 += e.rq_total.load(Relaxed);
                out[i].1 += e.rq_error.load(Relaxed);
            }
        }
        out
    }
}

type Detectors = Rc<Vec<Option<RefCell<outlier::Detector>>>>;

async fn run(
    ctx: Shared,
    events: flume::Receiver<OutlierEvent>,
    first: flume::Sender<()>,
    stop: flume::Receiver<()>,
    carried: Vec<bool>,
) {
    let ctx = Rc::new(ctx);
    let detectors: Detectors = Rc::new(
        ctx.cfg
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let o = c.outlier.clone()?;
                let h = Arc::clone(ctx.health(i)?);
                Some(RefCell::new(outlier::Detector::new(
                    &c.name,
                    o,
                    h,
                    0x5eed ^ i as u64,
                )))
            })
            .collect(),
    );
    let mut tasks = Vec::new();
    for (c, cl) in ctx.cfg.clusters.iter().enumerate() {
        if let Some(hc) = &cl.health_check {
            for i in 0..cl.endpoints.len() {
                let (ctx, det, hc) = (Rc::clone(&ctx), Rc::clone(&detectors), Arc::clone(hc));
                // A carried host is not waited for, and its first check is an ordinary one.
                let first = (!carried.get(c).copied().unwrap_or(false)).then(|| first.clone());
                tasks.push(compio::runtime::spawn(async move {
                    check_loop(&ctx, &det, c, i, &hc, first).await;
                }));
            }
        }
        if detectors.get(c).is_some_and(Option::is_some) {
            let (ctx, det) = (Rc::clone(&ctx), Rc::clone(&detectors));
            tasks.push(compio::runtime::spawn(async move {
                tick_loop(&ctx, &det, c).await;
            }));
        }
    }
    drop(first);
    {
        let det = Rc::clone(&detectors);
        tasks.push(compio::runtime::spawn(async move {
            while let Ok((c, i, what, decision)) = events.recv_async().await {
                if let Some(Some(d)) = det.get(c) {
                    d.borrow_mut().on_event(i, what, decision, Instant::now());
                }
            }
        }));
    }
    let _ = stop.recv_async().await;
    // Dropping the tasks cancels them (and closes their connections).
    drop(tasks);
}

async fn tick_loop(ctx: &Shared, det: &Detectors, c: usize) {
    let Some(Some(d)) = det.get(c) else { return };
    let n = ctx.cfg.clusters[c].endpoints.len();
    let every = d.borrow().interval();
    loop {
        compio::time::sleep(every).await;
        let counts = ctx.counts(c, n);
        d.borrow_mut().tick(Instant::now(), &counts);
    }
}

/// One endpoint's checks, forever.
async fn check_loop(
    ctx: &Shared,
    det: &Detectors,
    c: usize,
    i: usize,
    hc: &HealthCheck,
    first: Option<flume::Sender<()>>,
) {
    let cl = &ctx.cfg.clusters[c];
    let Some(health) = ctx.health(c) else { return };
    let tls = cl.tls.as_deref().map(WorkerTls::new);
    let target = check::Target {
        addr: cl.endpoints[i].address,
        tls: tls.as_ref(),
        connect_timeout: cl.connect_timeout.min(hc.timeout),
        kind: &hc.kind,
        h2_options: &cl.http2_options,
    };
    let rng = Rng::new(0x04c0_ffee ^ ((c as u64) << 20) ^ i as u64);
    let jitter = |d: Duration| -> Duration {
        let ms = d.as_millis() as u64;
        if ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rng.below(ms))
        }
    };
    compio::time::sleep(jitter(hc.initial_jitter)).await;
    let mut kept = Kept::None;
    let mut first = first;
    let (mut passes, mut fails) = (0u32, 0u32);
    let s = &health.stats;
    let host = &health.hosts[i];
    loop {
        s.attempt.fetch_add(1, Relaxed);
        let mut status = 0;
        let verdict = match compio::time::timeout(
            hc.timeout,
            check::once(&target, &mut kept, hc.reuse_connection, &mut status),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => {
                kept = Kept::None;
                Verdict::Fail(CheckResult::Timeout)
            }
        };
        host.last_status.store(status, Relaxed);
        let was_healthy = host.flags.load(Relaxed) & FAILED_ACTIVE_HC == 0;
        let initial = first.is_some();
        let mut changed = false;
        match verdict {
            Verdict::Pass => {
                s.success.fetch_add(1, Relaxed);
                host.last_check.store(CheckResult::Passed as u8, Relaxed);
                fails = 0;
                passes = passes.saturating_add(1);
                if !was_healthy && (initial || passes >= hc.healthy_threshold) {
                    health.set(i, FAILED_ACTIVE_HC, false);
                    changed = true;
                    if !initial {
                        tracing::info!(cluster = %cl.name, endpoint = %target.addr, "health check: endpoint healthy");
                    }
                }
                if let Some(Some(d)) = det.get(c) {
                    d.borrow_mut().health_check_passed(i);
                }
            }
            Verdict::Fail(why) | Verdict::FailNow(why) => {
                s.failure.fetch_add(1, Relaxed);
                if matches!(
                    why,
                    CheckResult::Timeout | CheckResult::ConnectFailed | CheckResult::BadAnswer
                ) {
                    s.network_failure.fetch_add(1, Relaxed);
                }
                host.last_check.store(why as u8, Relaxed);
                passes = 0;
                fails = fails.saturating_add(1);
                let now = matches!(verdict, Verdict::FailNow(_));
                if was_healthy && (now || fails >= hc.unhealthy_threshold) {
                    health.set(i, FAILED_ACTIVE_HC, true);
                    changed = true;
                    tracing::warn!(cluster = %cl.name, endpoint = %target.addr, why = why.name(), status, "health check: endpoint unhealthy");
                } else if hc.always_log_failures || (initial && !was_healthy) {
                    tracing::info!(cluster = %cl.name, endpoint = %target.addr, why = why.name(), status, "health check failed");
                }
            }
        }
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        let healthy = host.flags.load(Relaxed) & FAILED_ACTIVE_HC == 0;
        let base = match (healthy, changed) {
            (true, true) => hc.healthy_edge_interval,
            (true, false) => hc.interval,
            (false, true) => hc.unhealthy_edge_interval,
            (false, false) => hc.unhealthy_interval,
        };
        let extra =
            jitter(hc.interval_jitter) + jitter(base * hc.interval_jitter_percent.min(100) / 100);
        if ctx.had_traffic(c) {
            compio::time::sleep(base + extra).await;
        } else {
            // No traffic yet: `no_traffic_interval`, cut short by the first request (checked
            // every `base`), so a cluster that starts serving is checked at its real pace.
            let until = Instant::now() + hc.no_traffic_interval.max(base);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                compio::time::sleep(left.min(base)).await;
                if ctx.had_traffic(c) {
                    break;
                }
            }
        }
    }
}
