//! `ringway-bench transfer`: large bodies through a proxy, in bounded memory.
//!
//! `--download SIZE` GETs a body of SIZE bytes and discards it as it arrives; `--upload SIZE`
//! POSTs a generated body of SIZE bytes (Content-Length framed, or `--chunked`) written again and
//! again from one shared block, never materialized. `-c N` runs N transfers at once. Against the
//! URL's root the paths are the bench origin's: `/bytes/SIZE?cl=1` (`/bytes/SIZE`, chunked, with
//! `--chunked`) to download and `/upload` to upload; a URL with any other path is used as given.
//!
//! Every transfer checks its byte count: a download must deliver exactly SIZE body bytes (a
//! Content-Length that says otherwise, an early close or a short chunked body is an error), and
//! an upload's response must say it received SIZE bytes (the origin's `/upload` answers the count
//! as text; `/echo`'s JSON `body_length` is accepted too). A failed transfer is an error, never a
//! result: the report lists it and the command exits non-zero.
//!
//! Threading as in `load`: `--workers` threads (default one per allowed core, at most one per
//! transfer), each pinned with its own compio runtime and its share of the transfers, all of which
//! start at the same instant. Memory: one 256 KiB read buffer per transfer and the shared blocks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use serde::{Deserialize, Serialize};

use crate::http1::{push_hex, ChunkedDecoder};
use crate::load::h1::{parse_head, Framing};
use crate::load::Target;
use crate::report::human_bytes;
use crate::rt;

/// Size of the read buffer per transfer and of the block uploads are written from.
const BLOCK: usize = 256 * 1024;
/// Largest response body an upload's answer may have (it is a byte count).
const MAX_ANSWER: usize = 64 * 1024;

/// Which way the body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// GET, the server sends the body.
    Download,
    /// POST, the client sends the body.
    Upload,
}

/// Everything `transfer` was asked to do.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Target URL (`http://` only).
    pub url: String,
    /// Download or upload.
    pub direction: Direction,
    /// Body bytes per transfer.
    pub size: u64,
    /// Transfers at once.
    pub transfers: usize,
    /// Worker threads (None: one per allowed core, at most one per transfer).
    pub workers: Option<usize>,
    /// Chunked framing (upload: the client's; download: asks the origin for it).
    pub chunked: bool,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Longest one transfer may take, connect to last byte.
    pub timeout: Duration,
    /// Name of this run in reports.
    pub label: Option<String>,
}

/// One transfer's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneReport {
    /// Body bytes moved (checked against the size).
    pub bytes: u64,
    /// Connect to last byte (upload: to the response).
    pub seconds: f64,
    /// `bytes / seconds / 1e9`.
    pub gbytes_per_sec: f64,
    /// Status of the response.
    pub status: u16,
}

/// A run, as printed and as saved with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferReport {
    /// Name shown in comparisons.
    pub label: String,
    /// Target URL.
    pub url: String,
    /// The request target used.
    pub path: String,
    /// `"download"` or `"upload"`.
    pub direction: String,
    /// `"content-length"` or `"chunked"`.
    pub framing: String,
    /// Body bytes per transfer.
    pub size_bytes: u64,
    /// Transfers run at once.
    pub transfers: usize,
    /// Worker threads.
    pub workers: usize,
    /// Body bytes of the transfers that succeeded.
    pub bytes: u64,
    /// From the common start to the end of the last transfer.
    pub seconds: f64,
    /// `bytes / seconds / 1e9` (0 when a transfer failed).
    pub gbytes_per_sec: f64,
    /// The same in Gbit/s.
    pub gbits_per_sec: f64,
    /// The successful transfers.
    pub per_transfer: Vec<OneReport>,
    /// Why transfers failed (empty: all succeeded).
    pub errors: Vec<String>,
}

impl TransferReport {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut o = format!(
            "ringway-bench transfer {} ({} {}, {} x {}, {})\n",
            self.url,
            self.direction,
            self.path,
            self.transfers,
            human_bytes(self.size_bytes as f64),
            self.framing
        );
        if self.errors.is_empty() {
            o += &format!(
                "  transferred: {} in {:.3}s: {:.2} GB/s ({:.1} Gbit/s)\n",
                human_bytes(self.bytes as f64),
                self.seconds,
                self.gbytes_per_sec,
                self.gbits_per_sec
            );
        } else {
            o += &format!(
                "  {} of {} transfers failed:\n",
                self.errors.len(),
                self.transfers
            );
            for e in &self.errors {
                o += &format!("    {e}\n");
            }
        }
        if self.per_transfer.len() > 1 {
            let rates = self.per_transfer.iter().map(|t| t.gbytes_per_sec);
            let lo = rates.clone().fold(f64::INFINITY, f64::min);
            let hi = rates.fold(0.0, f64::max);
            o += &format!("  per transfer: {lo:.2} .. {hi:.2} GB/s\n");
        }
        o
    }
}

/// Parses a size such as `1GiB`, `64MiB`, `512k`, `1.5G` or `1048576` (decimal units: k, M,
/// G, T (also kB, MB...); binary: KiB, MiB, GiB, TiB; case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad size '{s}' (try 1GiB, 64MiB, 1000000)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "bad size unit in '{s}' (use k, M, G, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = (v * mult).round();
    if !(1.0..=1e18).contains(&bytes) {
        return Err(format!("size '{s}' out of range (1 byte .. 1 EB)"));
    }
    Ok(bytes as u64)
}

/// What every transfer reads (built once).
struct Shared {
    addr: SocketAddr,
    /// Download: the whole request; upload: its head.
    request: Bytes,
    size: u64,
    direction: Direction,
    chunked: bool,
    /// [`BLOCK`] bytes of upload body.
    block: Bytes,
    /// The same block framed as one chunk.
    block_chunked: Bytes,
    timeout: Duration,
}

/// A finished transfer: body bytes, status, when it ended.
type Done = (u64, u16, Instant);

/// Runs the transfers and returns the report (its `errors` say whether all succeeded).
pub fn run(cfg: &TransferConfig) -> anyhow::Result<TransferReport> {
    if cfg.transfers == 0 {
        bail!("--connections must be at least 1");
    }
    rt::raise_memlock();
    rt::raise_nofile();
    let target = Target::parse(&cfg.url)?;
    if target.tls {
        bail!("transfer speaks plain http:// only");
    }
    let path = if target.path == "/" {
        match (cfg.direction, cfg.chunked) {
            (Direction::Download, false) => format!("/bytes/{}?cl=1", cfg.size),
            (Direction::Download, true) => format!("/bytes/{}", cfg.size),
            (Direction::Upload, _) => "/upload".to_string(),
        }
    } else {
        target.path.clone()
    };
    let mut head = String::new();
    let method = match cfg.direction {
        Direction::Download => "GET",
        Direction::Upload => "POST",
    };
    head += &format!("{method} {path} HTTP/1.1\r\n");
    let has = |n: &str| cfg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        head += &format!("Host: {}\r\n", target.authority());
    }
    for (k, v) in &cfg.headers {
        head += &format!("{k}: {v}\r\n");
    }
    if cfg.direction == Direction::Upload {
        if cfg.chunked {
            head += "Transfer-Encoding: chunked\r\n";
        } else {
            head += &format!("Content-Length: {}\r\n", cfg.size);
        }
        if !has("content-type") {
            head += "Content-Type: application/octet-stream\r\n";
        }
    }
    head += "\r\n";
    let block = vec![b'u'; BLOCK];
    let mut framed = Vec::with_capacity(BLOCK + 16);
    push_hex(&mut framed, BLOCK as u64);
    framed.extend_from_slice(b"\r\n");
    framed.extend_from_slice(&block);
    framed.extend_from_slice(b"\r\n");
    let shared = Arc::new(Shared {
        addr: target.addr,
        request: Bytes::from(head),
        size: cfg.size,
        direction: cfg.direction,
        chunked: cfg.chunked,
        block: Bytes::from(block),
        block_chunked: Bytes::from(framed),
        timeout: cfg.timeout,
    });

    let cores = rt::allowed_cores().len().max(1);
    let workers = cfg.workers.unwrap_or(cores).clamp(1, cfg.transfers);
    let start = Instant::now() + Duration::from_millis(20);
    let mut threads = Vec::new();
    for w in 0..workers {
        let n = cfg.transfers / workers + usize::from(w < cfg.transfers % workers);
        let shared = shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("transfer-{w}"))
            .spawn(move || -> anyhow::Result<Vec<Result<Done, String>>> {
                rt::pin_current(w);
                let runtime = rt::build_runtime()?;
                Ok(runtime.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|_| compio::runtime::spawn(one(shared.clone(), start)))
                        .collect();
                    let mut out = Vec::new();
                    for t in tasks {
                        out.push(
                            t.await
                                .unwrap_or_else(|_| Err("transfer task panicked".into())),
                        );
                    }
                    out
                }))
            })
            .context("spawn transfer worker")?;
        threads.push(t);
    }
    let mut results = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(r)) => results.extend(r),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a transfer worker panicked"),
        }
    }
    let mut per_transfer = Vec::new();
    let mut errors = Vec::new();
    let mut end = start;
    for r in results {
        match r {
            Ok((bytes, status, done)) => {
                end = end.max(done);
                let seconds = done.saturating_duration_since(start).as_secs_f64();
                per_transfer.push(OneReport {
                    bytes,
                    seconds,
                    gbytes_per_sec: bytes as f64 / seconds.max(1e-9) / 1e9,
                    status,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    let bytes: u64 = per_transfer.iter().map(|t| t.bytes).sum();
    let seconds = end.saturating_duration_since(start).as_secs_f64();
    let gbytes_per_sec = if errors.is_empty() {
        bytes as f64 / seconds.max(1e-9) / 1e9
    } else {
        0.0
    };
    Ok(TransferReport {
        label: cfg.label.clone().unwrap_or_else(|| cfg.url.clone()),
        url: cfg.url.clone(),
        path,
        direction: match cfg.direction {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
        .into(),
        framing: if cfg.chunked {
            "chunked"
        } else {
            "content-length"
        }
        .into(),
        size_bytes: cfg.size,
        transfers: cfg.transfers,
        workers,
        bytes,
        seconds,
        gbytes_per_sec,
        gbits_per_sec: gbytes_per_sec * 8.0,
        per_transfer,
        errors,
    })
}

/// One transfer, bounded by the timeout.
async fn one(shared: Arc<Shared>, start: Instant) -> Result<Done, String> {
    compio::time::sleep_until(start).await;
    let run = async {
        let mut s = TcpStream::connect(shared.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", shared.addr))?;
        let _ = s.set_nodelay(true);
        let mut buf = Vec::with_capacity(BLOCK);
        let (bytes, status) = match shared.direction {
            Direction::Download => download(&mut s, &shared, &mut buf).await?,
            Direction::Upload => upload(&mut s, &shared, &mut buf).await?,
        };
        Ok((bytes, status, Instant::now()))
    };
    match compio::time::timeout(shared.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "not finished within {:?} (--timeout)",
            shared.timeout
        )),
    }
}

/// Appends what arrives next to `buf`; 0 at end of stream.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let BufResult(res, b) = s.append(std::mem::take(buf)).await;
    *buf = b;
    res.map_err(|e| format!("read: {e}"))
}

/// Reads a final response head; returns (head length, status, framing). `buf` keeps the head
/// and whatever followed it.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(usize, u16, Framing), String> {
    let mut pos = 0;
    loop {
        match parse_head(&buf[pos..], false) {
            Ok(Some((len, status, framing, _))) => {
                if (100..200).contains(&status) {
                    pos += len;
                    continue;
                }
                buf.drain(..pos);
                return Ok((len, status, framing));
            }
            Ok(None) if buf.len() >= BLOCK => return Err("response head too large".into()),
            Ok(None) => {
                if fill(s, buf).await? == 0 {
                    return Err(if buf.is_empty() {
                        "the server closed without a response".into()
                    } else {
                        "the server closed in the response head".into()
                    });
                }
            }
            Err(()) => return Err("malformed response head".into()),
        }
    }
}

/// Reads a response body from `buf[from..]` onwards, counting payload bytes; the first `keep`
/// bytes of the body as sent (chunk framing included) are left in `buf`, the rest is discarded as
/// it arrives. Returns the payload count.
async fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    from: usize,
    framing: Framing,
    keep: usize,
) -> Result<u64, String> {
    let mut kept = Vec::new();
    let mut chunk = &buf[from..];
    let mut total = 0u64;
    let mut dec = ChunkedDecoder::new();
    loop {
        let (payload_done, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(n) => {
                let take = (chunk.len() as u64).min(n - total);
                if kept.len() < keep {
                    kept.extend_from_slice(&chunk[..take as usize]);
                }
                (take, total + take == n)
            }
            Framing::Chunked => {
                let fed = dec
                    .feed(chunk)
                    .map_err(|e| format!("chunked body: {e:?}"))?;
                if kept.len() < keep {
                    kept.extend_from_slice(&chunk[..fed.consumed]);
                }
                (fed.payload as u64, fed.done)
            }
            Framing::UntilClose => {
                if kept.len() < keep {
                    kept.extend_from_slice(chunk);
                }
                (chunk.len() as u64, false)
            }
        };
        total += payload_done;
        if done {
            break;
        }
        buf.clear();
        if fill(s, buf).await? == 0 {
            if let Framing::UntilClose = framing {
                break;
            }
            return Err(format!(
                "the connection closed after {total} body bytes{}",
                match framing {
                    Framing::Length(n) => format!(" of {n}"),
                    _ => String::new(),
                }
            ));
        }
        chunk = &buf[..];
    }
    if keep > 0 {
        buf.clear();
        buf.extend_from_slice(&kept[..kept.len().min(keep)]);
    }
    Ok(total)
}

async fn download(
    s: &mut TcpStream,
    shared: &Shared,
    buf: &mut Vec<u8>,
) -> Result<(u64, u16), String> {
    let BufResult(res, _) = s.write_all(shared.request.clone()).await;
    res.map_err(|e| format!("send request: {e}"))?;
    let (len, status, framing) = read_head(s, buf).await?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    if let Framing::Length(n) = framing {
        if n != shared.size {
            return Err(format!(
                "the response announces {n} bytes, not {}",
                shared.size
            ));
        }
    }
    let got = read_body(s, buf, len, framing, 0).await?;
    if got != shared.size {
        return Err(format!("short body: {got} of {} bytes", shared.size));
    }
    Ok((got, status))
}

async fn upload(
    s: &mut TcpStream,
    shared: &Shared,
    buf: &mut Vec<u8>,
) -> Result<(u64, u16), String> {
    let sent = send_body(s, shared).await;
    if let Err(e) = sent {
        // The server may have answered early (say 413) and closed: show its status.
        let why = match compio::time::timeout(Duration::from_secs(1), read_head(s, buf)).await {
            Ok(Ok((_, status, _))) => format!("{e} (the server answered {status})"),
            _ => e,
        };
        return Err(why);
    }
    let (len, status, framing) = read_head(s, buf).await?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    let n = read_body(s, buf, len, framing, MAX_ANSWER).await?;
    if n as usize > MAX_ANSWER {
        return Err(format!(
            "the answer to the upload is {n} bytes, not a count"
        ));
    }
    let answer = match framing {
        Framing::Chunked => dechunk(buf)?,
        _ => std::mem::take(buf),
    };
    let said = received_count(&answer).ok_or_else(|| {
        format!(
            "the server did not say how many bytes it received (answer {:?}; the bench origin's \
             /upload does)",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        )
    })?;
    if said != shared.size {
        return Err(format!(
            "the server received {said} of {} bytes",
            shared.size
        ));
    }
    Ok((shared.size, status))
}

/// Writes the upload body: whole blocks shared (no copy), then the tail.
async fn send_body(s: &mut TcpStream, shared: &Shared) -> Result<(), String> {
    let err = |sent: u64| move |e: std::io::Error| format!("send body after {sent} bytes: {e}");
    let BufResult(res, _) = s.write_all(shared.request.clone()).await;
    res.map_err(err(0))?;
    let whole = if shared.chunked {
        &shared.block_chunked
    } else {
        &shared.block
    };
    let mut left = shared.size;
    while left >= BLOCK as u64 {
        let BufResult(res, _) = s.write_all(whole.clone()).await;
        res.map_err(err(shared.size - left))?;
        left -= BLOCK as u64;
    }
    let mut tail = Vec::with_capacity(32);
    if left > 0 && shared.chunked {
        push_hex(&mut tail, left);
        tail.extend_from_slice(b"\r\n");
        let BufResult(res, _) = s.write_all(tail).await;
        tail = Vec::with_capacity(32);
        res.map_err(err(shared.size - left))?;
    }
    if left > 0 {
        let BufResult(res, _) = s.write_all(shared.block.slice(..left as usize)).await;
        res.map_err(err(shared.size - left))?;
    }
    if shared.chunked {
        if left > 0 {
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(b"0\r\n\r\n");
        let BufResult(res, _) = s.write_all(tail).await;
        res.map_err(err(shared.size))?;
    }
    Ok(())
}

/// The payload of a small chunked body held whole in `raw`.
fn dechunk(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut d = ChunkedDecoder::new();
    let mut rest = raw;
    // Feed one byte at a time through the size lines and whole data runs at once: the decoder
    // reports payload counts, so data is recovered by position.
    while !rest.is_empty() && !d.is_done() {
        let probe = d
            .feed(&rest[..1])
            .map_err(|e| format!("chunked body: {e:?}"))?;
        if probe.payload == 1 {
            out.push(rest[0]);
        }
        rest = &rest[probe.consumed.max(1)..];
    }
    Ok(out)
}

/// The byte count in an upload's answer: a decimal number, or JSON with `body_length`.
fn received_count(answer: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(answer).ok()?.trim();
    if let Ok(n) = t.parse() {
        return Some(n);
    }
    let v: serde_json::Value = serde_json::from_str(t).ok()?;
    v.get("body_length")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(received_count(b"1024\n"), Some(1024));
        assert_eq!(received_count(b"{\"body_length\":7}\n"), Some(7));
        assert_eq!(received_count(b"ok"), None);
        assert_eq!(dechunk(b"3\r\n12\n\r\n0\r\n\r\n").unwrap(), b"12\n");
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
