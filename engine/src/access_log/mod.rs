//! Access logs: one line per request, in an Envoy-style text format or as JSON
//! ([`format`]), written to a file or stdout without the worker ever touching a file.
//!
//! How a line travels:
//!
//! 1. `WorkerCtx::stream_done` (on the worker, after the exchange ended) calls [`WorkerLog::log`]
//!    for each access log of the listener. The line is rendered straight from the request's
//!    `StreamInfo` into that worker's buffer for the log's file (a `Vec<u8>` reused from line to
//!    line: no allocation per line). With no access log configured the cost is one check of an
//!    empty list, and the request head is only copied when a format uses `%REQ(...)%`.
//! 2. A buffer is shipped when it reaches [`FLUSH_BYTES`], and every [`FLUSH_INTERVAL`] by a
//!    per-worker timer task: it goes over a bounded `flume` channel to the writer thread, and a
//!    recycled buffer (sent back by the writer) takes its place. The worker never blocks: if the
//!    writer is so far behind that the channel is full, the buffer is dropped and counted
//!    (warned about once a second at most).
//! 3. One writer thread per process ([`Writer`]) owns the open files (appending) and stdout and
//!    does the blocking `write`s.
//!
//! At shutdown nothing is lost: each worker, once drained, ships what its buffers hold (waiting
//! for room if it must: it is exiting); the control thread joins the workers, then tells the
//! writer to finish, and the writer writes everything queued before that message, flushes and
//! `fsync`s the files before the process exits.

pub mod format;

use std::{
    cell::{Cell, RefCell},
    fs::File,
    io::{self, Write},
    path::PathBuf,
    thread,
    time::Duration,
};

pub use crate::logfmt::Format;

use crate::{
    config::{AccessLog, AccessLogPath, Config},
    stream_info::StreamInfo,
};

/// A worker ships a buffer once it holds this much.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// ... and at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Buffers in flight between all workers and the writer before workers start dropping.
const QUEUE: usize = 1024;
/// Recycled buffers kept for reuse.
const FREE: usize = 64;

enum Msg {
    Write { file: usize, buf: Vec<u8> },
    Finish,
}

/// The distinct access-log destinations of a config, in `AccessLog::file` order.
pub fn destinations(cfg: &Config) -> Vec<AccessLogPath> {
    let mut out: Vec<AccessLogPath> = Vec::new();
    for l in &cfg.listeners {
        let own = l.select.as_ref().map_or(&[][..], |s| &s.access_log[..]);
        let logs = l
            .networks()
            .flat_map(|n| match n {
                crate::config::NetworkFilter::Http(h) => &h.access_log[..],
                crate::config::NetworkFilter::TcpProxy(t) => &t.access_log[..],
            })
            .chain(own);
        for a in logs {
            if a.file >= out.len() {
                out.resize(a.file + 1, AccessLogPath::Stdout);
            }
            out[a.file] = a.path.clone();
        }
    }
    out
}

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open access log {path}: {source}")]
pub struct OpenError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The writer thread, owned by the control thread.
pub struct Writer {
    tx: flume::Sender<Msg>,
    free: flume::Receiver<Vec<u8>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What a worker gets to ship buffers to the writer.
#[derive(Clone)]
pub struct Sink {
    tx: flume::Sender<Msg>,
    free: flume::Receiver<Vec<u8>>,
}

enum Out {
    Stdout(io::Stdout),
    File(File, PathBuf),
}

impl Writer {
    /// Open every destination of `cfg` (append, create) and start the writer thread; `None`
    /// when no listener has an access log.
    pub fn start(cfg: &Config) -> Result<Option<Writer>, OpenError> {
        let dests = destinations(cfg);
        if dests.is_empty() {
            return Ok(None);
        }
        let mut outs = Vec::with_capacity(dests.len());
        for d in dests {
            outs.push(match d {
                AccessLogPath::Stdout => Out::Stdout(io::stdout()),
                AccessLogPath::File(p) => {
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|source| OpenError {
                            path: p.clone(),
                            source,
                        })?;
                    Out::File(f, p)
                }
            });
        }
        let (tx, rx) = flume::bounded(QUEUE);
        let (free_tx, free) = flume::bounded(FREE);
        let thread = crate::background::spawn_background("ringway-log", move || {
            write_loop(outs, rx, free_tx)
        })
        .map_err(|source| OpenError {
            path: PathBuf::from("<writer thread>"),
            source,
        })?;
        Ok(Some(Writer {
            tx,
            free,
            thread: Some(thread),
        }))
    }

    /// A handle for one worker.
    pub fn sink(&self) -> Sink {
        Sink {
            tx: self.tx.clone(),
            free: self.free.clone(),
        }
    }

    /// Write everything queued so far, flush and fsync, and stop the thread. Call after the
    /// workers have shipped their last buffers (joined).
    pub fn finish(mut self) {
        let _ = self.tx.send(Msg::Finish);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(mut outs: Vec<Out>, rx: flume::Receiver<Msg>, free: flume::Sender<Vec<u8>>) {
    let mut failed = vec![false; outs.len()];
    let mut dirty = vec![false; outs.len()];
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(flume::TryRecvError::Empty) => {
                // Caught up: push stdout's buffer out before sleeping.
                flush_all(&mut outs, &mut dirty, false);
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(flume::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Write { file, mut buf } => {
                if let Some(out) = outs.get_mut(file) {
                    let r = match out {
                        Out::Stdout(s) => s.lock().write_all(&buf),
                        Out::File(f, _) => f.write_all(&buf),
                    };
                    dirty[file] = true;
                    if let Err(e) = r {
                        if !failed[file] {
                            failed[file] = true;
                            tracing::error!(log = %name(out), error = %e, "access log write failed");
                        }
                    }
                }
                buf.clear();
                if buf.capacity() <= 4 * FLUSH_BYTES {
                    let _ = free.try_send(buf);
                }
            }
            Msg::Finish => break,
        }
    }
    flush_all(&mut outs, &mut dirty, true);
}

fn name(o: &Out) -> String {
    match o {
        Out::Stdout(_) => "stdout".into(),
        Out::File(_, p) => p.display().to_string(),
    }
}

fn flush_all(outs: &mut [Out], dirty: &mut [bool], sync: bool) {
    for (o, d) in outs.iter_mut().zip(dirty.iter_mut()) {
        if !*d {
            continue;
        }
        *d = false;
        let r = match o {
            Out::Stdout(s) => s.lock().flush(),
            Out::File(f, _) if sync => f.sync_data(),
            Out::File(..) => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(log = %name(o), error = %e, "access log flush failed");
        }
    }
}

/// A worker's side: one buffer per destination, and the handle to ship them.
pub struct WorkerLog {
    sink: Option<Sink>,
    bufs: RefCell<Vec<Vec<u8>>>,
    dropped: Cell<u64>,
    warn: crate::background::WarnEvery,
}

impl WorkerLog {
    /// `sink` is `None` when no access log is configured; `files` is the number of destinations.
    pub fn new(sink: Option<Sink>, files: usize) -> WorkerLog {
        WorkerLog {
            bufs: RefCell::new(if sink.is_some() {
                (0..files).map(|_| Vec::new()).collect()
            } else {
                Vec::new()
            }),
            sink,
            dropped: Cell::new(0),
            warn: crate::background::WarnEvery::new(Duration::from_secs(1)),
        }
    }

    /// Whether anything is configured (the flush timer runs only then).
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Render one line per access log for a finished request.
    pub fn log(&self, logs: &[AccessLog], si: &StreamInfo, cluster: Option<&str>) {
        let Some(sink) = &self.sink else { return };
        let mut bufs = self.bufs.borrow_mut();
        for a in logs {
            let Some(buf) = bufs.get_mut(a.file) else {
                continue;
            };
            if buf.capacity() == 0 {
                *buf = fresh(sink);
            }
            a.format.render(si, cluster, buf);
            if buf.len() >= FLUSH_BYTES {
                self.ship(sink, a.file, buf, false);
            }
        }
    }

    /// Ship every non-empty buffer; `last`: the worker is exiting, wait for room rather than drop.
    pub fn flush(&self, last: bool) {
        let Some(sink) = &self.sink else { return };
        let mut bufs = self.bufs.borrow_mut();
        for (file, buf) in bufs.iter_mut().enumerate() {
            if !buf.is_empty() {
                self.ship(sink, file, buf, last);
            }
        }
        if last && self.dropped.get() > 0 {
            tracing::warn!(
                dropped_buffers = self.dropped.get(),
                "access log buffers were dropped: the writer could not keep up"
            );
        }
    }

    fn ship(&self, sink: &Sink, file: usize, buf: &mut Vec<u8>, last: bool) {
        let full = std::mem::replace(buf, if last { Vec::new() } else { fresh(sink) });
        let msg = Msg::Write { file, buf: full };
        let sent = if last {
            sink.tx.send(msg).is_ok()
        } else {
            sink.tx.try_send(msg).is_ok()
        };
        if !sent {
            self.dropped.set(self.dropped.get() + 1);
            if self.warn.due() {
                tracing::warn!(
                    dropped_buffers = self.dropped.get(),
                    "access log writer is behind: dropped a buffer of lines"
                );
            }
        }
    }
}

/// A recycled buffer from the writer, or a new one.
fn fresh(sink: &Sink) -> Vec<u8> {
    sink.free
        .try_recv()
        .unwrap_or_else(|_| Vec::with_capacity(FLUSH_BYTES + 4096))
}
