//! The admin server: a small, plain-std HTTP/1.1 server on the control side (never on a worker),
//! off unless `admin: {address: ...}` is configured. Keep it on loopback: it can drain the proxy.
//!
//! Each connection gets its own short-lived thread (at most [`MAX_CONNS`] at once); the request
//! head is read with a bound ([`MAX_HEAD`]) and a timeout, answered, and the connection closed
//! (`Connection: close`). Stats reads go through the [`Aggregator`]: it asks every worker for its
//! current histograms over the control channel and waits, bounded, for the replies; counters and
//! gauges are read straight from the workers' atomic blocks. Actions (`/drain_listeners`) are
//! messages to the workers on the same control channel.
//!
//! Endpoints are listed in [`ENDPOINTS`]; a wrong method is 405, an unknown path 404 with that
//! list.

mod http;

use std::{
    fmt::Write as _,
    io::Write as _,
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use crate::{
    config::Config,
    control::Control,
    stats::{
        aggregate::{sanitize_addr, Aggregator},
        format,
    },
};

use self::http::{Request, Response};

/// Largest request head read, bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read (and discarded), bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Admin connections served at once; more get a 503.
pub const MAX_CONNS: usize = 16;
/// Read/write timeout on an admin connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stats read waits for the workers' histograms.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// How long `POST /config/reload` waits for the new workers.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Every endpoint: method, path, what it does.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/", "this list"),
    (
        "GET",
        "/stats",
        "all stats as `name: value` (?filter=REGEX, ?format=json|prometheus)",
    ),
    (
        "GET",
        "/stats/prometheus",
        "stats in Prometheus text format",
    ),
    (
        "GET",
        "/clusters",
        "endpoints with health, weight, active requests per worker (?format=json)",
    ),
    ("GET", "/config_dump", "the configuration in force as JSON, defaults filled in (?defaults=false: as written)"),
    (
        "GET",
        "/listeners",
        "listeners and their bound addresses (?format=json)",
    ),
    (
        "GET",
        "/ready",
        "200 while serving; 503 while starting, draining or after /healthcheck/fail",
    ),
    ("GET", "/server_info", "version, uptime, workers, state"),
    (
        "POST",
        "/drain_listeners",
        "stop accepting and drain connections; the process keeps running",
    ),
    (
        "POST",
        "/config/reload",
        "read the config file again and apply it (as SIGHUP); the old config stays if it is refused",
    ),
    (
        "POST",
        "/certs/reload",
        "read the TLS certificates and keys again from the config's files",
    ),
    ("POST", "/healthcheck/fail", "make /ready answer 503"),
    ("POST", "/healthcheck/ok", "undo /healthcheck/fail"),
    (
        "POST",
        "/logging",
        "change the log level: ?level=debug (or a tracing filter)",
    ),
];

/// Changes the process's log filter at run time (set up by the CLI with a
/// `tracing_subscriber::reload` handle).
#[derive(Clone)]
pub struct LogReload(Arc<SetLevel>);

/// Applies a log filter; `Err` says why it is invalid.
type SetLevel = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl LogReload {
    pub fn new(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Self {
        LogReload(Arc::new(f))
    }
    /// Apply a new filter (`debug`, `ringway_engine=trace,info`, ...).
    pub fn set(&self, level: &str) -> Result<(), String> {
        (self.0)(level)
    }
}

impl std::fmt::Debug for LogReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogReload")
    }
}

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;

/// What the admin server shares with the control thread.
/// What the admin server reads: the generation of workers in force (replaced by a reload).
pub struct Current {
    pub config: Arc<Config>,
    pub agg: Arc<Aggregator>,
    pub controls: Vec<flume::Sender<Control>>,
    pub certs: Arc<crate::certs::CertReloader>,
    /// 1 at start, one more per successful reload.
    pub version: u64,
    /// Close the control side's duplicates of the listening sockets (so that a drain refuses
    /// new connections instead of queueing them).
    pub release_sockets: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Current(version {})", self.version)
    }
}

/// A reload's outcome, sent back to `POST /config/reload`.
pub type ReloadReply = Result<String, String>;

pub struct Shared {
    current: std::sync::RwLock<Arc<Current>>,
    log_reload: Option<LogReload>,
    process: Arc<crate::stats::aggregate::ProcessStats>,
    /// `POST /config/reload` requests waiting for the control thread's answer.
    reloads: Mutex<Vec<flume::Sender<ReloadReply>>>,
    log_level: Mutex<String>,
    state: AtomicU8,
    health_failed: AtomicBool,
    conns: AtomicUsize,
    /// A successor took the admin socket over (binary upgrade): stop accepting on it.
    handed_over: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("admin::Shared")
    }
}

impl Shared {
    pub fn new(
        current: Current,
        log_reload: Option<LogReload>,
        process: Arc<crate::stats::aggregate::ProcessStats>,
    ) -> Self {
        Shared {
            current: std::sync::RwLock::new(Arc::new(current)),
            log_reload,
            process,
            reloads: Mutex::new(Vec::new()),
            log_level: Mutex::new(String::new()),
            state: AtomicU8::new(STARTING),
            health_failed: AtomicBool::new(false),
            conns: AtomicUsize::new(0),
            handed_over: AtomicBool::new(false),
        }
    }
    /// The generation in force.
    pub fn current(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
    /// A reload put a new generation in force.
    pub fn set_current(&self, c: Current) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }
    /// The `POST /config/reload` requests to answer with the reload about to run.
    pub fn take_reload_requests(&self) -> Vec<flume::Sender<ReloadReply>> {
        std::mem::take(&mut *self.reloads.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// A new process serves the admin socket now ([`crate::upgrade`]): this one stops
    /// accepting on it within [`ACCEPT_POLL`].
    pub fn stop_accepting(&self) {
        self.handed_over.store(true, Ordering::SeqCst);
    }
    /// Every worker is serving.
    pub fn set_serving(&self) {
        let _ = self
            .state
            .compare_exchange(STARTING, SERVING, Ordering::SeqCst, Ordering::SeqCst);
    }
    /// Shutting down or draining listeners.
    pub fn set_draining(&self) {
        self.state.store(DRAINING, Ordering::SeqCst);
    }
    fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::SeqCst) {
            STARTING => "PRE_INITIALIZING",
            SERVING => "LIVE",
            _ => "DRAINING",
        }
    }
}

/// How often the accepting thread looks whether it should stop.
pub const ACCEPT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Serve the admin API on `listener` from a background thread. Prints the bound address on
/// stdout (`ringway: admin bound to ADDR`), as listeners do.
pub fn start(listener: TcpListener, shared: Arc<Shared>) {
    if let Ok(addr) = listener.local_addr() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ringway: admin bound to {addr}");
        let _ = out.flush();
        tracing::info!(%addr, "admin server listening");
    }
    // Its connection threads inherit the background priority.
    // Accepting waits in poll(2) with a timeout rather than in accept(2), so that the thread
    // can stop when a successor takes the socket over (the socket itself stays open there).
    let _ = listener.set_nonblocking(true);
    let spawned = crate::background::spawn_background("ringway-admin", move || {
        loop {
            if shared.handed_over.load(Ordering::SeqCst) {
                tracing::info!("admin server: socket handed over, no longer accepting");
                return;
            }
            let mut pfd = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ACCEPT_POLL.as_millis() as i32) };
            if ready <= 0 {
                continue;
            }
            // Another process on the same socket may have taken it: WouldBlock, wait again.
            let Ok((conn, _)) = listener.accept() else {
                continue;
            };
            let _ = conn.set_nonblocking(false);
            if shared.conns.fetch_add(1, Ordering::SeqCst) >= MAX_CONNS {
                shared.conns.fetch_sub(1, Ordering::SeqCst);
                let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
                let _ = http::write_response(
                    &conn,
                    &Response::text(503, "too many admin connections\n"),
                );
                continue;
            }
            let s = Arc::clone(&shared);
            let worker = thread::Builder::new()
                .name("ringway-admin-conn".into())
                .spawn(move || {
                    serve_conn(conn, &s);
                    s.conns.fetch_sub(1, Ordering::SeqCst);
                });
            if worker.is_err() {
                shared.conns.fetch_sub(1, Ordering::SeqCst);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the admin server thread");
    }
}

fn serve_conn(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let resp = match http::read_request(&conn) {
        Ok(req) => {
            let resp = handle(&req, s);
            tracing::debug!(method = %req.method, path = %req.path, status = resp.status, "admin request");
            resp
        }
        Err(resp) => resp,
    };
    let _ = http::write_response(&conn, &resp);
}

fn endpoint_list() -> String {
    let mut out = String::from("admin endpoints:\n");
    for (m, p, what) in ENDPOINTS {
        let _ = writeln!(out, "  {m:<5}{p:<20}{what}");
    }
    out
}

/// Route one request.
pub fn handle(req: &Request, s: &Shared) -> Response {
    let known: Vec<&(&str, &str, &str)> = ENDPOINTS.iter().filter(|e| e.1 == req.path).collect();
    if known.is_empty() {
        return Response::text(404, format!("not found: {}\n{}", req.path, endpoint_list()));
    }
    if !known.iter().any(|e| e.0 == req.method) {
        let allow = known.iter().map(|e| e.0).collect::<Vec<_>>().join(", ");
        return Response::text(
            405,
            format!("method {} not allowed; use {allow}\n", req.method),
        )
        .header("allow", allow);
    }
    match req.path.as_str() {
        "/" => Response::text(200, endpoint_list()),
        "/stats" => stats(req, s, req.query("format")),
        "/stats/prometheus" => stats(req, s, Some("prometheus")),
        "/clusters" => clusters(req, s),
        "/config_dump" => config_dump(req, s),
        "/listeners" => listeners(req, s),
        "/ready" => {
            let live = s.state.load(Ordering::SeqCst) == SERVING
                && !s.health_failed.load(Ordering::SeqCst);
            if live {
                Response::text(200, "LIVE\n")
            } else if s.health_failed.load(Ordering::SeqCst) {
                Response::text(503, "health check failed\n")
            } else {
                Response::text(503, format!("{}\n", s.state_name()))
            }
        }
        "/server_info" => server_info(s),
        "/drain_listeners" => {
            s.set_draining();
            let c = s.current();
            (c.release_sockets)();
            for c in &c.controls {
                let _ = c.send(Control::DrainListeners);
            }
            tracing::info!("admin: draining listeners");
            Response::text(200, "OK\n")
        }
        "/config/reload" => config_reload(s),
        "/certs/reload" => match s.current().certs.reload() {
            Ok(msg) => {
                tracing::info!("admin: {msg}");
                Response::text(200, format!("{msg}\n"))
            }
            Err(e) => {
                tracing::error!("admin: certificate reload refused: {e}");
                Response::text(400, format!("certificate reload refused: {e}\n"))
            }
        },
        "/healthcheck/fail" => {
            s.health_failed.store(true, Ordering::SeqCst);
            tracing::info!("admin: health check set to failing");
            Response::text(200, "OK\n")
        }
        "/healthcheck/ok" => {
            s.health_failed.store(false, Ordering::SeqCst);
            tracing::info!("admin: health check set to ok");
            Response::text(200, "OK\n")
        }
        "/logging" => logging(req, s),
        _ => Response::text(404, endpoint_list()),
    }
}

fn stats(req: &Request, s: &Shared, format: Option<&str>) -> Response {
    let c = s.current();
    let filter = match req.query("filter") {
        Some(f) if !f.is_empty() => match regex::Regex::new(f) {
            Ok(re) => Some(re),
            Err(e) => return Response::text(400, format!("invalid filter regex: {e}\n")),
        },
        _ => None,
    };
    let answered = c.agg.refresh(&c.controls, FLUSH_WAIT);
    if answered < c.controls.len() {
        tracing::debug!(
            answered,
            workers = c.controls.len(),
            "stats read: not every worker answered in time"
        );
    }
    let snap = c.agg.snapshot();
    let keep = |name: &str| filter.as_ref().is_none_or(|re| re.is_match(name));
    match format {
        Some("json") => Response::json(200, format::json(&snap, keep)),
        Some("prometheus") => {
            let mut snap = snap;
            snap.stats.retain(|st| keep(&st.name()));
            Response::text(200, format::prometheus(&snap))
                .content_type("text/plain; version=0.0.4; charset=utf-8")
        }
        None | Some("text") => Response::text(200, format::text(&snap, keep)),
        Some(other) => Response::text(
            400,
            format!("unknown format {other:?}: use json or prometheus\n"),
        ),
    }
}

fn clusters(req: &Request, s: &Shared) -> Response {
    let c = s.current();
    let cs = c.agg.clusters();
    // Envoy's `added_via_api`: the cluster came from the control plane (xDS).
    let added = &c.config.added_via_api.clusters;
    if req.query("format") == Some("json") {
        let doc: Vec<serde_json::Value> = cs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "added_via_api": added.contains(&c.name),
                    "endpoints": c.endpoints.iter().map(|e| {
                        serde_json::json!({
                            "address": e.address.to_string(),
                            "weight": e.weight,
                            "health": e.health_flags,
                            "last_check": e.last_check.map(|(r, status)| serde_json::json!({
                                "result": r, "status": status,
                            })),
                            "rq_active": e.per_worker.iter().map(|w| w.0).sum::<u64>(),
                            "rq_total": e.per_worker.iter().map(|w| w.1).sum::<u64>(),
                            "cx_idle": e.per_worker.iter().map(|w| w.2).sum::<u64>(),
                            "workers": e.per_worker.iter().enumerate().map(|(i, w)| serde_json::json!({
                                "worker": i, "rq_active": w.0, "rq_total": w.1, "cx_idle": w.2,
                            })).collect::<Vec<_>>(),
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Response::json(
            200,
            serde_json::to_string_pretty(&serde_json::json!({ "clusters": doc }))
                .unwrap_or_default(),
        );
    }
    let mut out = String::new();
    for c in &cs {
        let _ = writeln!(
            out,
            "{}::added_via_api::{}",
            c.name,
            added.contains(&c.name)
        );
        for e in &c.endpoints {
            let p = format!("{}::{}", c.name, e.address);
            let _ = writeln!(out, "{p}::health_flags::{}", e.health_flags);
            if let Some((r, status)) = e.last_check {
                let _ = writeln!(out, "{p}::last_health_check::{r}");
                if status != 0 {
                    let _ = writeln!(out, "{p}::last_health_check_status::{status}");
                }
            }
            let _ = writeln!(out, "{p}::weight::{}", e.weight);
            let _ = writeln!(
                out,
                "{p}::rq_active::{}",
                e.per_worker.iter().map(|w| w.0).sum::<u64>()
            );
            let _ = writeln!(
                out,
                "{p}::rq_total::{}",
                e.per_worker.iter().map(|w| w.1).sum::<u64>()
            );
            let _ = writeln!(
                out,
                "{p}::cx_idle::{}",
                e.per_worker.iter().map(|w| w.2).sum::<u64>()
            );
            for (i, w) in e.per_worker.iter().enumerate() {
                let _ = writeln!(out, "{p}::worker_{i}::rq_active::{}", w.0);
                let _ = writeln!(out, "{p}::worker_{i}::rq_total::{}", w.1);
                let _ = writeln!(out, "{p}::worker_{i}::cx_idle::{}", w.2);
            }
        }
    }
    Response::text(200, out)
}

/// Ask the control thread to reload (it takes SIGHUP) and wait for its answer.
fn config_reload(s: &Shared) -> Response {
    let (tx, rx) = flume::bounded(1);
    s.reloads.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
    // SAFETY: kill(2) on our own pid; only the control thread takes SIGHUP.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    match rx.recv_timeout(RELOAD_WAIT) {
        Ok(Ok(msg)) => Response::text(200, format!("{msg}\n")),
        Ok(Err(e)) => Response::text(
            400,
            format!("config reload refused; the running config stays: {e}\n"),
        ),
        Err(_) => Response::text(503, "the reload did not finish in time\n"),
    }
}

/// The config in force: with every default filled in, or as written (`?defaults=false`).
fn config_dump(req: &Request, s: &Shared) -> Response {
    let c = s.current();
    let as_written = req.query("defaults") == Some("false");
    let config = match as_written {
        true => c.config.document.as_deref(),
        false => c.config.effective.as_deref(),
    };
    let doc = serde_json::json!({
        "source": c.config.source,
        "version": c.version,
        "hash": format!("{:016x}", s.process.hash()),
        "workers": c.agg.workers().len(),
        "defaults": if as_written { "as written" } else { "filled in" },
        "config": config.cloned().unwrap_or(serde_json::Value::Null),
    });
    // With a control plane: what came from it (by type: version and names) and what waits.
    let mut doc = doc;
    if let (Some(x), Some(m)) = (s.process.xds(), doc.as_object_mut()) {
        let mut status = x.status();
        if let Some(st) = status.as_object_mut() {
            st.insert(
                "warming".into(),
                serde_json::json!({
                    "clusters": c.config.warming.clusters,
                    "listeners": c.config.warming.listeners,
                }),
            );
        }
        m.insert("xds".into(), status);
    }
    Response::json(200, serde_json::to_string_pretty(&doc).unwrap_or_default())
}

fn listeners(req: &Request, s: &Shared) -> Response {
    let c = s.current();
    let addrs = c.agg.listener_addrs();
    let rows: Vec<(String, String, String)> = c
        .config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let a = addrs.get(i).copied().unwrap_or(l.address);
            (l.name.clone(), a.to_string(), l.stat_prefix().to_owned())
        })
        .collect();
    if req.query("format") == Some("json") {
        let doc: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, a, p)| {
                serde_json::json!({
                    "name": n,
                    "address": a,
                    "stat_prefix": p,
                    "stats_name": a.parse().map(sanitize_addr).unwrap_or_default(),
                })
            })
            .collect();
        return Response::json(
            200,
            serde_json::to_string_pretty(&serde_json::json!({ "listeners": doc }))
                .unwrap_or_default(),
        );
    }
    let mut out = String::new();
    for (n, a, _) in rows {
        let _ = writeln!(out, "{n}::{a}");
    }
    Response::text(200, out)
}

fn server_info(s: &Shared) -> Response {
    let c = s.current();
    let doc = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": s.state_name(),
        "health_check_failed": s.health_failed.load(Ordering::SeqCst),
        "uptime_seconds": s.process.uptime().as_secs(),
        "config_version": c.version,
        "workers": c.agg.workers().len(),
        "io_driver": crate::io::driver().name(),
        "config_source": c.config.source,
        "log_level": s.log_level.lock().map(|l| l.clone()).unwrap_or_default(),
    });
    Response::json(200, serde_json::to_string_pretty(&doc).unwrap_or_default())
}

fn logging(req: &Request, s: &Shared) -> Response {
    let Some(level) = req.query("level").filter(|l| !l.is_empty()) else {
        return Response::text(400, "missing ?level= (e.g. ?level=debug)\n");
    };
    let Some(reload) = &s.log_reload else {
        return Response::text(501, "log level changes are not available in this process\n");
    };
    match reload.set(level) {
        Ok(()) => {
            if let Ok(mut l) = s.log_level.lock() {
                *l = level.to_owned();
            }
            tracing::info!(level, "admin: log level changed");
            Response::text(200, format!("log level: {level}\n"))
        }
        Err(e) => Response::text(400, format!("invalid level {level:?}: {e}\n")),
    }
}
