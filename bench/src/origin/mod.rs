//! `ringway-bench origin`: a fast, configurable HTTP origin for tests and benchmarks.
//!
//! Threading: one worker thread per core (`--workers`, default all allowed cores), each with its
//! own compio runtime pinned to its core and its own SO_REUSEPORT listener; a connection lives on
//! the worker that accepted it and nothing is shared on the request path except each worker's
//! request and connection counters (written only by that worker). The main thread binds the
//! sockets, prints `origin listening on ADDR`, then waits for SIGINT/SIGTERM and prints
//! `origin served N requests on M connections` (the sums of the workers' counters) before exiting.
//!
//! Large bodies cost no memory per request: `/bytes/N` is written from one fixed block per worker
//! (shared `Bytes`, no copy), and a large request body is read into one spare buffer per worker
//! (the "sink") and discarded as it arrives.
//!
//! A connection enters in [`accept_loop`], is routed to TLS/h2/h1 in [`handle_conn`], and is
//! served by [`h1::serve`] or [`h2::serve`]; [`routes`] decides what each request gets.

pub mod h1;
pub mod h2;
pub mod routes;
pub mod ws;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::AsyncReadExt;
use compio::net::{TcpListener, TcpStream};

use crate::io::PollIo;
use crate::rt;

/// Origin settings from the command line.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Address to listen on (port 0: pick one; printed at start).
    pub listen: SocketAddr,
    /// Worker threads (one runtime each).
    pub workers: usize,
    /// Size of the fixed body.
    pub body_size: usize,
    /// Wait before every answer (besides `/delay`).
    pub delay: Option<Duration>,
    /// Status of the fixed answer.
    pub status: u16,
    /// Accept HTTP/2 with prior knowledge on the same port.
    pub h2c: bool,
    /// Serve TLS with this certificate chain (PEM) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and this key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// A per-worker counter on its own cache line (single writer).
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

/// What every connection of one worker shares.
pub struct Ctx {
    /// The complete fixed answer for an HTTP/1.1 keep-alive request (head + body).
    pub fixed: Bytes,
    /// The fixed body alone.
    pub body: Bytes,
    /// Status of the fixed answer.
    pub status: u16,
    /// Wait before each answer.
    pub delay: Option<Duration>,
    /// A 16 KiB block that `/bytes/N` is cut from over HTTP/2.
    pub chunk: Bytes,
    /// [`BLOCK`] bytes of `x`: HTTP/1 `/bytes/N` bodies are written from it without copying.
    pub block: Bytes,
    /// The same block framed as one chunk of a chunked body (`40000\r\n...\r\n`).
    pub block_chunked: Bytes,
    /// The worker's spare read buffer for large request bodies (empty while a connection uses
    /// it; a second connection uploading at the same time makes its own).
    sink: Cell<Vec<u8>>,
    h2c: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    counter: Arc<Counter>,
    conns: Arc<Counter>,
}

/// Size of the block large bodies are written from and of the sink they are read into.
pub const BLOCK: usize = 256 * 1024;

impl Ctx {
    /// Counts one request.
    #[inline]
    pub fn count(&self) {
        self.counter.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one accepted connection.
    #[inline]
    fn count_conn(&self) {
        self.conns.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Lends out the worker's sink buffer (empty, [`BLOCK`] bytes of capacity).
    pub fn take_sink(&self) -> Vec<u8> {
        let mut v = self.sink.take();
        if v.capacity() < BLOCK {
            v = Vec::with_capacity(BLOCK);
        }
        v.clear();
        v
    }

    /// Returns a buffer from [`Ctx::take_sink`].
    pub fn put_sink(&self, v: Vec<u8>) {
        let cur = self.sink.take();
        self.sink.set(if cur.capacity() >= v.capacity() {
            cur
        } else {
            v
        });
    }
}

/// Runs the origin until SIGINT/SIGTERM.
pub fn run(cfg: OriginConfig) -> anyhow::Result<()> {
    if !(100..=999).contains(&cfg.status) {
        bail!("--status must be a 3-digit code");
    }
    rt::raise_memlock();
    rt::raise_nofile();
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::server_config(c, k, &[b"h2", b"http/1.1"])?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let workers = cfg.workers.max(1);
    let listeners = rt::reuseport_listeners(cfg.listen, workers, 4096)?;
    let addr = listeners[0].local_addr()?;
    let sigs = block_signals();
    let mut counters = Vec::new();
    let mut conn_counters = Vec::new();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    for (i, l) in listeners.into_iter().enumerate() {
        let counter = Arc::new(Counter::default());
        counters.push(counter.clone());
        let conns = Arc::new(Counter::default());
        conn_counters.push(conns.clone());
        let cfg = cfg.clone();
        let tls = tls.clone();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("origin-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                rt::pin_current(i);
                let runtime = match rt::build_runtime() {
                    Ok(r) => r,
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = ready.send(Err(e));
                        bail!(msg);
                    }
                };
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(l)?;
                    let _ = ready.send(Ok(()));
                    let ctx = make_ctx(&cfg, tls, counter, conns);
                    accept_loop(listener, Rc::new(ctx)).await
                })
            })
            .context("spawn worker")?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("an origin worker died while starting"),
        }
    }
    println!("origin listening on {addr}");
    loop {
        match wait_signal(&sigs, Duration::from_millis(500)) {
            Some(_) => break,
            None => {
                if let Some(i) = threads.iter().position(|t| t.is_finished()) {
                    let t = threads.swap_remove(i);
                    let why = match t.join() {
                        Ok(Err(e)) => format!("{e:#}"),
                        Ok(Ok(())) => "stopped".into(),
                        Err(_) => "panicked".into(),
                    };
                    bail!("origin worker failed: {why}");
                }
            }
        }
    }
    let per: Vec<u64> = counters
        .iter()
        .map(|c| c.0.load(Ordering::Relaxed))
        .collect();
    let total: u64 = per.iter().sum();
    let conns: u64 = conn_counters
        .iter()
        .map(|c| c.0.load(Ordering::Relaxed))
        .sum();
    if per.len() > 1 {
        let list: Vec<String> = per.iter().map(u64::to_string).collect();
        println!(
            "origin served {total} requests on {conns} connections (per worker: {})",
            list.join(" ")
        );
    } else {
        println!("origin served {total} requests on {conns} connections");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn make_ctx(
    cfg: &OriginConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    counter: Arc<Counter>,
    conns: Arc<Counter>,
) -> Ctx {
    let body = Bytes::from(routes::fixed_body(cfg.body_size));
    let mut fixed = Vec::with_capacity(body.len() + 128);
    fixed.extend_from_slice(b"HTTP/1.1 ");
    crate::http1::push_u64(&mut fixed, u64::from(cfg.status));
    fixed.push(b' ');
    fixed.extend_from_slice(crate::http1::reason(cfg.status).as_bytes());
    fixed.extend_from_slice(b"\r\n");
    if !routes::bodiless(cfg.status) {
        fixed.extend_from_slice(b"content-length: ");
        crate::http1::push_u64(&mut fixed, body.len() as u64);
        fixed.extend_from_slice(b"\r\ncontent-type: text/plain\r\n\r\n");
        fixed.extend_from_slice(&body);
    } else {
        fixed.extend_from_slice(b"\r\n");
    }
    let block = vec![b'x'; BLOCK];
    let mut framed = Vec::with_capacity(BLOCK + 16);
    crate::http1::push_hex(&mut framed, BLOCK as u64);
    framed.extend_from_slice(b"\r\n");
    framed.extend_from_slice(&block);
    framed.extend_from_slice(b"\r\n");
    Ctx {
        fixed: Bytes::from(fixed),
        body,
        status: cfg.status,
        delay: cfg.delay,
        chunk: Bytes::from(vec![b'x'; 16 * 1024]),
        block: Bytes::from(block),
        block_chunked: Bytes::from(framed),
        sink: Cell::new(Vec::new()),
        h2c: cfg.h2c,
        tls,
        counter,
        conns,
    }
}

async fn accept_loop(listener: TcpListener, ctx: Rc<Ctx>) -> anyhow::Result<()> {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                ctx.count_conn();
                let _ = sock.set_nodelay(true);
                let ctx = ctx.clone();
                compio::runtime::spawn(async move {
                    let _ = handle_conn(sock, ctx).await;
                })
                .detach();
            }
            // Out of descriptors or memory, or an aborted handshake: back off, keep serving.
            Err(_) => compio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn handle_conn(mut sock: TcpStream, ctx: Rc<Ctx>) -> io::Result<()> {
    if let Some(cfg) = &ctx.tls {
        let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
        let mut io = PollIo::tls(sock, conn.into());
        io.handshake().await?;
        if io.alpn() == Some(b"h2") {
            return h2::serve(io, ctx).await;
        }
        return h1::serve(io, Vec::with_capacity(h1::READ_BUF), &ctx).await;
    }
    let mut rbuf = Vec::with_capacity(h1::READ_BUF);
    if ctx.h2c {
        loop {
            let BufResult(res, b) = sock.append(rbuf).await;
            rbuf = b;
            if res? == 0 {
                return Ok(());
            }
            let n = rbuf.len().min(h2::PREFACE.len());
            if rbuf[..n] != h2::PREFACE[..n] {
                break;
            }
            if n == h2::PREFACE.len() {
                return h2::serve(PollIo::with_prefix(sock, rbuf, None), ctx).await;
            }
        }
    }
    h1::serve(sock, rbuf, &ctx).await
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it spawns later) so they can be
/// taken synchronously with [`wait_signal`].
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits up to `timeout` for one of the blocked signals; returns it.
pub fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: set and ts are valid for the call; info may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}
