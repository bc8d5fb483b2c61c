//! `ringway-bench load`: the load generator.
//!
//! Threading: `--workers` threads (default: one per allowed core, at most one per connection),
//! each pinned to its core with its own compio runtime, its share of the connections, and its
//! own [`Stats`] (histogram and counters). Nothing is shared while the run lasts except one
//! progress word per worker that the main thread reads once a second to draw the progress line
//! (only on a terminal). At the end the main thread merges the workers' stats and reports.
//!
//! Flow of a request: a connection slot ([`h1::run_slot`], or a stream slot in
//! [`h2::run_conn`]) asks its [`Pace`] for the next intended send time, sends the prebuilt
//! request, reads the response, and records the latency from the intended time into the worker's
//! histogram if that time falls in the measured window (warm-up excluded). When the window
//! closes no new request starts; requests in flight finish and are counted, so the total equals
//! what the server saw (with no warm-up). With `--new-connection-per-request` a slot connects
//! for every request instead of keeping its connection ([`h1::run_fresh_slot`]).

pub mod h1;
pub mod h2;
pub mod pace;
pub mod stats;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use compio::net::TcpStream;

use crate::io::PollIo;
use crate::report::Report;
use crate::rt;
use pace::{Pace, Window};
use stats::{Failure, Progress, Stats};

/// HTTP version spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive, one request in flight per connection.
    Http1,
    /// HTTP/2 with this many concurrent streams per connection.
    Http2 {
        /// Streams per connection.
        streams: usize,
    },
}

/// Everything `load` was asked to do.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target URL (`http://` or `https://`).
    pub url: String,
    /// Connections in total.
    pub connections: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Unmeasured warm-up before it.
    pub warmup: Duration,
    /// Requests per second in total (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// Worker threads (None: one per allowed core).
    pub workers: Option<usize>,
    /// HTTP version.
    pub protocol: Protocol,
    /// Request method.
    pub method: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Bytes>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// CA bundle for https.
    pub cacert: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Name of this run in reports.
    pub label: Option<String>,
    /// Open a new connection for every request (`Connection: close`), HTTP/1.1 only.
    pub new_connection_per_request: bool,
    /// https: resume TLS sessions on new connections.
    pub tls_resume: bool,
    /// https: offer only this TLS version ("1.2" or "1.3"); None: both.
    pub tls_version: Option<String>,
}

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https`?
    pub tls: bool,
    /// Host as written (may be an IP literal, with brackets for IPv6).
    pub host: String,
    /// Port (default 80/443).
    pub port: u16,
    /// Path and query (at least `/`).
    pub path: String,
    /// The resolved address.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves a URL.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            bail!("URL must start with http:// or https:// (got '{url}')");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("bad host in URL '{url}'");
        }
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let end = h.find(']').context("unclosed '[' in URL")?;
            let port = h[end + 1..].strip_prefix(':');
            (format!("[{}]", &h[..end]), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .with_context(|| format!("bad port in URL '{url}'"))?,
            None if tls => 443,
            None => 80,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("no address for {host}"))?;
        Ok(Self {
            tls,
            host,
            port,
            path,
            addr,
        })
    }

    /// `host[:port]` as it goes into Host / :authority.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What every worker reads (built once, shared read-only).
pub struct Shared {
    /// The target.
    pub target: Target,
    /// The complete HTTP/1.1 request (head + body).
    pub request_h1: Bytes,
    /// The HTTP/2 request's header block (HPACK, stateless: see [`h2::hpack`]).
    pub request_h2: Vec<u8>,
    /// The HTTP/2 request body.
    pub body: Option<Bytes>,
    /// The method is HEAD (responses have no body).
    pub head_method: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// TLS config (https only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One HTTP/1.1 slot's request deadline, checked by the worker's watchdog (instead of a timer
/// per request). On expiry the watchdog shuts the socket down, which fails the pending read.
#[derive(Debug)]
pub struct Watch {
    deadline: Cell<Option<Instant>>,
    fired: Cell<bool>,
    /// The slot's current socket (-1: none).
    pub fd: Cell<RawFd>,
}

impl Watch {
    /// Starts the clock for one exchange.
    #[inline]
    pub fn arm(&self, timeout: Duration) {
        self.fired.set(false);
        self.deadline.set(Some(Instant::now() + timeout));
    }

    /// Stops it; returns whether it fired.
    #[inline]
    pub fn disarm(&self) -> bool {
        self.deadline.set(None);
        self.fired.get()
    }
}

/// Every `period`, shuts down the sockets of exchanges past their deadline.
async fn watchdog(watches: Rc<RefCell<Vec<Rc<Watch>>>>, period: Duration) {
    loop {
        compio::time::sleep(period).await;
        let now = Instant::now();
        for w in watches.borrow().iter() {
            if w.deadline.get().is_some_and(|d| d <= now) && !w.fired.get() && w.fd.get() >= 0 {
                w.fired.set(true);
                // SAFETY: the fd belongs to a live connection of this thread (cleared before
                // close).
                unsafe { libc::shutdown(w.fd.get(), libc::SHUT_RDWR) };
            }
        }
    }
}

/// One worker's context, shared by its connection tasks.
pub struct WorkerCtx {
    /// Read-only run data.
    pub shared: Arc<Shared>,
    /// The run's windows.
    pub window: Window,
    /// This worker's measurements.
    pub stats: RefCell<Stats>,
    /// This worker's progress word.
    pub progress: Arc<Progress>,
    /// The HTTP/1.1 slots' deadlines (HTTP/2 connections keep their own timers).
    watches: Rc<RefCell<Vec<Rc<Watch>>>>,
}

impl WorkerCtx {
    /// A new deadline slot, watched by this worker's watchdog.
    pub fn watch(&self) -> Rc<Watch> {
        let w = Rc::new(Watch {
            deadline: Cell::new(None),
            fired: Cell::new(false),
            fd: Cell::new(-1),
        });
        self.watches.borrow_mut().push(w.clone());
        w
    }

    /// Records a response to a request intended at `intended`.
    #[inline]
    pub fn response(&self, intended: Instant, done: Instant, status: u16, bytes: u64) {
        self.progress.done();
        if self.window.measured(intended) {
            let ns = done.saturating_duration_since(intended).as_nanos() as u64;
            self.stats.borrow_mut().response(ns, status, bytes);
        }
    }

    /// Records a failed request intended at `intended`.
    pub fn failure(&self, intended: Instant, f: Failure) {
        self.progress.error();
        if self.window.measured(intended) || f == Failure::Connect {
            self.stats.borrow_mut().failure(f);
        }
    }

    /// After a failed connect: counts it, waits a little, and drops the open-loop slots missed
    /// meanwhile (each counted as a connect error) instead of replaying them as a burst.
    pub async fn connect_failed(&self, pace: &mut Pace) {
        self.failure(Instant::now(), Failure::Connect);
        let until = (Instant::now() + Duration::from_millis(50)).min(self.window.end);
        compio::time::sleep_until(until).await;
        let missed = pace.skip_missed(Instant::now(), self.window.end);
        let mut s = self.stats.borrow_mut();
        s.errors.connect += missed;
    }
}

/// A connected transport.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<PollIo>),
}

/// Connects to the target (TCP_NODELAY; TLS handshake for https). Failures are the caller's to
/// count.
pub async fn connect(ctx: &WorkerCtx) -> Result<Conn, ()> {
    match try_connect(ctx).await {
        Ok(c) => Ok(c),
        Err(e) => {
            let mut s = ctx.stats.borrow_mut();
            if s.first_error.is_none() {
                s.first_error = Some(format!("{e:#}"));
            }
            Err(())
        }
    }
}

async fn try_connect(ctx: &WorkerCtx) -> anyhow::Result<Conn> {
    let target = &ctx.shared.target;
    let s = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect {}", target.addr))?;
    let _ = s.set_nodelay(true);
    ctx.stats.borrow_mut().connects += 1;
    let Some(cfg) = &ctx.shared.tls else {
        return Ok(Conn::Plain(s));
    };
    let name = crate::tls::server_name(&target.host)?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name)?;
    let mut io = PollIo::tls(s, conn.into());
    io.handshake().await.context("TLS handshake")?;
    Ok(Conn::Tls(Box::new(io)))
}

/// Whether the loop ended for good or should reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The window closed.
    Done,
    /// The connection is gone; make another.
    Reconnect,
}

fn build_shared(cfg: &LoadConfig, target: Target) -> anyhow::Result<Shared> {
    let authority = target.authority();
    let method = cfg.method.to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        bail!("bad method '{}'", cfg.method);
    }
    let mut h1 = Vec::with_capacity(256);
    h1.extend_from_slice(format!("{method} {} HTTP/1.1\r\n", target.path).as_bytes());
    let has = |n: &str| cfg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        h1.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    for (k, v) in &cfg.headers {
        h1.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if cfg.new_connection_per_request && !has("connection") {
        h1.extend_from_slice(b"Connection: close\r\n");
    }
    if let Some(b) = &cfg.body {
        if !has("content-length") && !has("transfer-encoding") {
            h1.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
    }
    h1.extend_from_slice(b"\r\n");
    if let Some(b) = &cfg.body {
        h1.extend_from_slice(b);
    }
    let scheme = if target.tls { "https" } else { "http" };
    let mut h2_headers = Vec::new();
    for (k, v) in &cfg.headers {
        let lk = k.to_ascii_lowercase();
        // Connection-specific headers are illegal in HTTP/2; Host becomes :authority.
        if matches!(
            lk.as_str(),
            "host" | "connection" | "keep-alive" | "transfer-encoding" | "upgrade"
        ) {
            continue;
        }
        if !lk.bytes().all(|b| b.is_ascii_graphic()) || v.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            bail!("bad header '{k}: {v}'");
        }
        h2_headers.push((lk, v.clone()));
    }
    let request_h2 =
        h2::hpack::encode_request(&method, scheme, &authority, &target.path, &h2_headers);
    let tls = if target.tls {
        let alpn: &[&[u8]] = match cfg.protocol {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::Http2 { .. } => &[b"h2"],
        };
        Some(crate::tls::client_config(
            cfg.insecure,
            cfg.cacert.as_deref(),
            alpn,
            cfg.tls_resume,
            cfg.tls_version.as_deref(),
        )?)
    } else {
        None
    };
    Ok(Shared {
        target,
        request_h1: Bytes::from(h1),
        request_h2,
        body: cfg.body.clone(),
        head_method: method == "HEAD",
        timeout: cfg.timeout,
        tls,
    })
}

/// Runs the load and returns the merged stats and the report.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<(Report, Stats)> {
    if cfg.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be positive");
        }
    }
    if let Protocol::Http2 { streams: 0 } = cfg.protocol {
        bail!("--streams must be at least 1");
    }
    if cfg.new_connection_per_request && cfg.protocol != Protocol::Http1 {
        bail!("--new-connection-per-request is HTTP/1.1 only");
    }
    rt::raise_memlock();
    rt::raise_nofile();
    let target = Target::parse(&cfg.url)?;
    let shared = Arc::new(build_shared(cfg, target)?);
    let cores = rt::allowed_cores().len().max(1);
    let workers = cfg.workers.unwrap_or(cores).clamp(1, cfg.connections);
    let streams = match cfg.protocol {
        Protocol::Http1 => 1,
        Protocol::Http2 { streams } => streams,
    };
    let slots_total = cfg.connections * streams;

    // Leave the workers time to build their rings before the first send.
    let start = Instant::now() + Duration::from_millis(20);
    let window = Window {
        start,
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };

    let mut progress = Vec::new();
    let mut threads = Vec::new();
    let mut first_conn = 0usize;
    for w in 0..workers {
        let conns = cfg.connections / workers + usize::from(w < cfg.connections % workers);
        let conn_range = first_conn..first_conn + conns;
        first_conn += conns;
        let prog = Arc::new(Progress::default());
        progress.push(prog.clone());
        let shared = shared.clone();
        let rate = cfg.rate;
        let protocol = cfg.protocol;
        let fresh = cfg.new_connection_per_request;
        let timeout = cfg.timeout;
        let t = std::thread::Builder::new()
            .name(format!("load-{w}"))
            .spawn(move || -> anyhow::Result<Stats> {
                rt::pin_current(w);
                let runtime = rt::build_runtime()?;
                let watches = Rc::new(RefCell::new(Vec::new()));
                let ctx = Rc::new(WorkerCtx {
                    shared,
                    window,
                    stats: RefCell::new(Stats::new()),
                    progress: prog,
                    watches: watches.clone(),
                });
                let period =
                    (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
                runtime.block_on(async {
                    let dog = compio::runtime::spawn(watchdog(watches, period));
                    let mut tasks = Vec::new();
                    for c in conn_range {
                        let ctx = ctx.clone();
                        match protocol {
                            Protocol::Http1 => {
                                let pace = Pace::new(rate, c, slots_total, window.start);
                                tasks.push(if fresh {
                                    compio::runtime::spawn(h1::run_fresh_slot(ctx, pace))
                                } else {
                                    compio::runtime::spawn(h1::run_slot(ctx, pace))
                                });
                            }
                            Protocol::Http2 { streams } => {
                                let paces = (0..streams)
                                    .map(|s| {
                                        Pace::new(
                                            rate,
                                            s * cfg_conns(slots_total, streams) + c,
                                            slots_total,
                                            window.start,
                                        )
                                    })
                                    .collect();
                                tasks.push(compio::runtime::spawn(h2::run_conn(ctx, paces)));
                            }
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                    drop(dog);
                });
                drop(runtime);
                Rc::try_unwrap(ctx)
                    .map(|c| c.stats.into_inner())
                    .map_err(|_| anyhow::anyhow!("worker state still shared at the end"))
            })
            .context("spawn load worker")?;
        threads.push(t);
    }

    show_progress(&progress, &threads, window, cfg.rate);

    let mut total = Stats::new();
    for t in threads {
        match t.join() {
            Ok(Ok(s)) => total.merge(&s),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a load worker panicked"),
        }
    }
    let report = Report::new(cfg, &shared.target, workers, &total);
    Ok((report, total))
}

/// Connections per stream index (slot numbering: stream-major so a connection's streams are
/// spread over the schedule).
fn cfg_conns(slots_total: usize, streams: usize) -> usize {
    slots_total / streams
}

/// Prints a progress line once a second on a terminal (stderr); silent otherwise.
fn show_progress<T>(
    progress: &[Arc<Progress>],
    threads: &[std::thread::JoinHandle<T>],
    w: Window,
    rate: Option<f64>,
) {
    let tty = rt::is_tty(2);
    let mut last = (0u64, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
        let now = Instant::now();
        if !tty || now.duration_since(last.1) < Duration::from_secs(1) {
            continue;
        }
        let (done, errs) = progress.iter().fold((0, 0), |(d, e), p| {
            let (pd, pe) = p.read();
            (d + pd, e + pe)
        });
        let rps = (done - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        last = (done, now);
        let elapsed = now.saturating_duration_since(w.start).as_secs_f64();
        let phase = if now < w.measure_from {
            "warm-up"
        } else {
            "measuring"
        };
        let target = rate
            .map(|r| format!(" (target {r:.0})"))
            .unwrap_or_default();
        eprint!("\r\x1b[2K  {elapsed:5.1}s {phase}: {rps:>10.0} req/s{target}, {done} responses, {errs} errors");
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:9000/a?b=1").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.authority().as_str()),
            (9000, "/a?b=1", "127.0.0.1:9000")
        );
        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("https://[::1]:8443?x").unwrap();
        assert_eq!(
            (t.tls, t.port, t.path.as_str(), t.host.as_str()),
            (true, 8443, "/?x", "[::1]")
        );
        assert!(Target::parse("ftp://x").is_err());
    }
}
