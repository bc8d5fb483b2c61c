//! The exporter thread (`ringway-trace`): batches the workers' finished spans, encodes them as
//! OTLP/HTTP JSON or Zipkin v2 JSON, and POSTs them to the collector cluster.
//!
//! Data flow: workers' `Vec<FinishedSpan>` batches arrive on one bounded channel → `pending` →
//! an export request of at most `max_batch` spans whenever `pending` holds that many, and at
//! least every `flush_interval` → [`Collector::post`], a blocking HTTP/1.1 client that keeps its
//! connection alive and moves to the cluster's next endpoint when one fails. The thread ends
//! when every worker has dropped its end of the channel (after shutdown); it sends what is left
//! first.
//!
//! Layering: the workers' side of tracing (`trace`: propagation, sampling, recording, the batch
//! channel) is below the request path; this thread is above it, since it reads the collector's
//! responses with the HTTP/1 codec (`http::h1`). Only the control thread (`runtime`) starts it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{atomic::Ordering::Relaxed, Arc},
    thread,
    time::{Duration, Instant},
};

use bytes::BytesMut;

pub mod encode;

use self::encode::encode;
use crate::{
    config::{Config, Tracing},
    http::h1,
    trace::{FinishedSpan, TraceStats},
};

/// The running exporter, owned by the control thread.
pub struct Exporter {
    thread: Option<thread::JoinHandle<()>>,
    /// Set at shutdown: no export may run past this instant.
    stop: Arc<std::sync::OnceLock<Instant>>,
    timeout: Duration,
}

impl Exporter {
    /// Start the thread; it reads batches from `rx` until every sender is gone.
    pub fn start(
        cfg: Arc<Config>,
        rx: flume::Receiver<Vec<FinishedSpan>>,
        stats: Arc<TraceStats>,
    ) -> std::io::Result<Exporter> {
        let stop: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let timeout = cfg
            .tracing
            .as_ref()
            .map_or(Duration::ZERO, |t| t.collector_timeout);
        let s = Arc::clone(&stop);
        let thread = crate::background::spawn_background("ringway-trace", move || {
            run(&cfg, &rx, &stats, &s)
        })?;
        Ok(Exporter {
            thread: Some(thread),
            stop,
            timeout,
        })
    }

    /// Wait for the thread to send what is left and end. Call after the workers have ended (they
    /// hold the senders).
    pub fn finish(mut self) {
        // What is left gets one collector timeout in all.
        let _ = self.stop.set(Instant::now() + self.timeout);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    cfg: &Config,
    rx: &flume::Receiver<Vec<FinishedSpan>>,
    stats: &TraceStats,
    stop: &std::sync::OnceLock<Instant>,
) {
    let Some(t) = &cfg.tracing else { return };
    let endpoints: Vec<SocketAddr> = cfg
        .clusters
        .get(t.collector_cluster)
        .map(|c| c.endpoints.iter().map(|e| e.address).collect())
        .unwrap_or_default();
    let mut collector = Collector::new(endpoints, t.collector_timeout);
    let mut pending: Vec<FinishedSpan> = Vec::new();
    let mut due: Option<Instant> = None;
    let warn = crate::background::WarnEvery::new(Duration::from_secs(10));
    loop {
        let got = match due {
            None => rx.recv().map_err(|_| flume::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_deadline(d),
        };
        let ended = match got {
            Ok(batch) => {
                if pending.is_empty() {
                    due = Some(Instant::now() + t.flush_interval);
                }
                pending.extend(batch);
                while pending.len() >= t.max_batch {
                    let rest = pending.split_off(t.max_batch);
                    let full = std::mem::replace(&mut pending, rest);
                    let limit = stop.get().copied();
                    export(cfg, t, &mut collector, &full, stats, &warn, limit);
                }
                false
            }
            Err(flume::RecvTimeoutError::Timeout) => false,
            Err(flume::RecvTimeoutError::Disconnected) => true,
        };
        let timed_out = due.is_some_and(|d| Instant::now() >= d);
        if ended || timed_out {
            // At shutdown everything left gets one collector timeout in all, not one each: a
            // collector that stopped answering must not hold the process up.
            let limit = stop
                .get()
                .copied()
                .or_else(|| ended.then(|| Instant::now() + t.collector_timeout));
            for chunk in pending.chunks(t.max_batch) {
                export(cfg, t, &mut collector, chunk, stats, &warn, limit);
            }
            pending.clear();
            due = None;
        }
        if ended {
            return;
        }
    }
}

fn export(
    cfg: &Config,
    t: &Tracing,
    collector: &mut Collector,
    spans: &[FinishedSpan],
    stats: &TraceStats,
    warn: &crate::background::WarnEvery,
    limit: Option<Instant>,
) {
    if spans.is_empty() {
        return;
    }
    let n = spans.len() as u64;
    if limit.is_some_and(|l| Instant::now() >= l) {
        stats.spans_dropped.fetch_add(n, Relaxed);
        return;
    }
    let body = encode(cfg, t, spans);
    match collector.post(&t.collector_path, &t.collector_host, &body, limit) {
        Ok(status) if (200..300).contains(&status) => {
            stats.spans_sent.fetch_add(n, Relaxed);
            stats.reports_sent.fetch_add(1, Relaxed);
            return;
        }
        Ok(status) => warn_failed(warn, &format!("collector answered {status}"), n),
        Err(e) => warn_failed(warn, &e, n),
    }
    stats.reports_failed.fetch_add(1, Relaxed);
    stats.spans_dropped.fetch_add(n, Relaxed);
}

fn warn_failed(warn: &crate::background::WarnEvery, why: &str, spans: u64) {
    if warn.due() {
        tracing::warn!(spans, error = %why, "trace export failed; spans dropped");
    }
}

/// A blocking HTTP/1.1 client for the collector cluster: one kept-alive connection, endpoints
/// tried in turn.
struct Collector {
    endpoints: Vec<SocketAddr>,
    next: usize,
    timeout: Duration,
    conn: Option<TcpStream>,
}

impl Collector {
    fn new(endpoints: Vec<SocketAddr>, timeout: Duration) -> Collector {
        Collector {
            endpoints,
            next: 0,
            timeout,
            conn: None,
        }
    }

    /// POST `body` within the collector timeout (and before `limit`); the response status. A
    /// failure on a reused connection (the collector closed it while idle) is retried once on a
    /// new one.
    fn post(
        &mut self,
        path: &str,
        host: &str,
        body: &[u8],
        limit: Option<Instant>,
    ) -> Result<u16, String> {
        let mut deadline = Instant::now() + self.timeout;
        if let Some(l) = limit {
            deadline = deadline.min(l);
        }
        let reused = self.conn.is_some();
        match self.try_post(path, host, body, deadline) {
            Ok(s) => Ok(s),
            Err(_) if reused && Instant::now() < deadline => {
                self.conn = None;
                self.try_post(path, host, body, deadline)
            }
            Err(e) => Err(e),
        }
    }

    fn connect(&mut self, deadline: Instant) -> Result<TcpStream, String> {
        if self.endpoints.is_empty() {
            return Err("the collector cluster has no endpoints".into());
        }
        let mut last = String::new();
        for _ in 0..self.endpoints.len() {
            let addr = self.endpoints[self.next % self.endpoints.len()];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => {
                    last = format!("connect {addr}: {e}");
                    self.next += 1;
                }
            }
        }
        Err(last)
    }

    fn try_post(
        &mut self,
        path: &str,
        host: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<u16, String> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect(deadline)?,
        };
        let left = |d: Instant| {
            let l = d.saturating_duration_since(Instant::now());
            if l.is_zero() {
                Err("timed out".to_string())
            } else {
                Ok(l)
            }
        };
        let io = |e: std::io::Error| e.to_string();
        conn.set_write_timeout(Some(left(deadline)?)).map_err(io)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nuser-agent: ringway/{}\r\n\r\n",
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(head.as_bytes()).map_err(io)?;
        conn.write_all(body).map_err(io)?;
        // The response: head, then its body (read and dropped) so the connection can be reused.
        let mut buf = BytesMut::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
            let n = conn.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err("collector closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = h1::header_slots();
            let parsed = match h1::parse_response(&buf, &mut headers, false, 64 * 1024) {
                Ok(Some(r)) => Some((r.status, r.head_len, r.framing, r.keep_alive)),
                Ok(None) => None,
                Err(e) => return Err(format!("bad response from collector: {e}")),
            };
            let Some((status, head_len, framing, keep_alive)) = parsed else {
                continue;
            };
            if (100..200).contains(&status) {
                let _ = buf.split_to(head_len);
                continue;
            }
            let _ = buf.split_to(head_len);
            let done = match framing {
                h1::BodyFraming::None => true,
                h1::BodyFraming::Length(n) => {
                    let mut need = n.saturating_sub(buf.len() as u64);
                    while need > 0 {
                        conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
                        let r = conn.read(&mut chunk).map_err(io)?;
                        if r == 0 {
                            return Err("collector closed the connection mid-body".into());
                        }
                        need = need.saturating_sub(r as u64);
                    }
                    true
                }
                h1::BodyFraming::Chunked => {
                    let mut dec = h1::ChunkedDecoder::new();
                    loop {
                        match dec.decode(&mut buf) {
                            Ok(h1::Chunk::End) => break true,
                            Ok(h1::Chunk::Data(_)) => continue,
                            Ok(h1::Chunk::NeedMore) => {
                                conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
                                let r = conn.read(&mut chunk).map_err(io)?;
                                if r == 0 {
                                    return Err("collector closed the connection mid-body".into());
                                }
                                buf.extend_from_slice(&chunk[..r]);
                            }
                            Err(e) => return Err(format!("bad response body from collector: {e}")),
                        }
                    }
                }
                h1::BodyFraming::UntilClose => false,
            };
            if done && keep_alive {
                self.conn = Some(conn);
            }
            return Ok(status);
        }
    }
}
