//! Large bodies on the bulk path (`http::bulk`: 1 MiB receives while a body flows fast), checked
//! byte by byte: every body here is a position-dependent pattern, so a lost, repeated or
//! reordered piece fails the test, not just a wrong count. Downloads and uploads of 64 MiB each
//! way, a close-delimited download re-framed as chunked for the client, a body that alternates
//! fast and trickling (pool path → bulk → pool → bulk), pipelined requests right after a body
//! (a bulk receive must not read past the body), and a reader that stops: the proxy must stop
//! reading from the origin (TCP backpressure) and its memory must not grow. The worker's counters
//! (`worker.0.body_bulk_runs`, `body_bulk_no_buffer`) show which path each body took: small
//! bodies never go bulk, and with more fast bodies than bulk buffers the rest stay on 16 KiB
//! pieces, intact.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

const MIB: u64 = 1 << 20;
const BIG: u64 = 64 * MIB;
/// A transfer that makes no progress for this long fails the test.
const STALL: Duration = Duration::from_secs(20);
/// The proxy's resident set must stay under this (KiB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The body's byte at offset `i`: not periodic at any piece size the proxy uses.
fn pat(i: u64) -> u8 {
    ((i % 251) as u8) ^ ((i >> 16) as u8)
}

fn fill(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pat(from + k as u64);
    }
}

/// Count the bytes of `got` (starting at body offset `from`) that break the pattern.
fn bad_bytes(got: &[u8], from: u64) -> u64 {
    got.iter()
        .enumerate()
        .filter(|(k, &b)| b != pat(from + *k as u64))
        .count() as u64
}

/// A pattern origin on a std socket, one thread per connection, keep-alive:
/// - `GET /cl/N`: N pattern bytes, Content-Length;
/// - `GET /close/N`: N pattern bytes, no length, then close;
/// - `GET /trickle/N`: Content-Length; 4 MiB at once, then 64 pieces of 1,000 bytes 5 ms apart,
///   then the rest at once;
/// - `POST /check`: reads a Content-Length body, answers `len=N bad=M` (M: bytes off pattern).
///
/// `written` counts response body bytes the origin has handed to its socket.
struct PatternOrigin {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
}

impl PatternOrigin {
    fn start() -> PatternOrigin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = l.local_addr().expect("addr");
        let written = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&written);
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let w = Arc::clone(&w);
                thread::spawn(move || serve_pattern(s, &w));
            }
        });
        PatternOrigin { addr, written }
    }
}

/// Read one request head from `s` (bytes after it stay in `buf`). `None` on EOF.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).to_string();
            buf.drain(..p + 4);
            return Some(head);
        }
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn write_pattern(s: &mut TcpStream, from: u64, n: u64, written: &AtomicU64) -> bool {
    let mut block = vec![0u8; 256 * 1024];
    let mut off = from;
    while off < from + n {
        let k = block.len().min((from + n - off) as usize);
        fill(&mut block[..k], off);
        if s.write_all(&block[..k]).is_err() {
            return false;
        }
        written.fetch_add(k as u64, Ordering::Relaxed);
        off += k as u64;
    }
    true
}

fn serve_pattern(mut s: TcpStream, written: &AtomicU64) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut s, &mut buf) {
        let line = head.lines().next().unwrap_or("").to_string();
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let size = |p: &str| p.rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
        if line.starts_with("POST /check") {
            let n = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<u64>().ok())?
                })
                .unwrap_or(0);
            let (mut got, mut bad) = (0u64, 0u64);
            let take = (buf.len() as u64).min(n) as usize;
            bad += bad_bytes(&buf[..take], 0);
            got += take as u64;
            buf.drain(..take);
            let mut tmp = vec![0u8; 256 * 1024];
            while got < n {
                let want = tmp.len().min((n - got) as usize);
                match s.read(&mut tmp[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        bad += bad_bytes(&tmp[..k], got);
                        got += k as u64;
                    }
                }
            }
            let body = format!("len={got} bad={bad}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
        } else if let Some(n) = path.strip_prefix("/cl/").and_then(|_| size(&path)) {
            let h = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            if s.write_all(h.as_bytes()).is_err() || !write_pattern(&mut s, 0, n, written) {
                return;
            }
        } else if let Some(n) = path.strip_prefix("/close/").and_then(|_| size(&path)) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
            write_pattern(&mut s, 0, n, written);
            return;
        } else if let Some(n) = path.strip_prefix("/trickle/").and_then(|_| size(&path)) {
            let h = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            if s.write_all(h.as_bytes()).is_err() {
                return;
            }
            let fast = 4 * MIB;
            if !write_pattern(&mut s, 0, fast, written) {
                return;
            }
            let mut off = fast;
            for _ in 0..64 {
                if !write_pattern(&mut s, off, 1000, written) {
                    return;
                }
                off += 1000;
                thread::sleep(Duration::from_millis(5));
            }
            if !write_pattern(&mut s, off, n - off, written) {
                return;
            }
        } else {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
    }
}

/// Read a response head from `c`, then `n` body bytes checked against the pattern (reading
/// `block` bytes at a time). Returns the bytes off pattern.
fn read_pattern_body(c: &mut Client, n: u64) -> u64 {
    let first = c.take_buffered();
    let take = (first.len() as u64).min(n) as usize;
    let mut bad = bad_bytes(&first[..take], 0);
    let mut got = take as u64;
    assert_eq!(take, first.len(), "bytes after the body arrived early");
    c.stream
        .set_read_timeout(Some(STALL))
        .expect("read timeout");
    let mut buf = vec![0u8; 256 * 1024];
    while got < n {
        let want = buf.len().min((n - got) as usize);
        let k = c.stream.read(&mut buf[..want]).expect("download read");
        assert!(k > 0, "proxy closed after {got} of {n} bytes");
        bad += bad_bytes(&buf[..k], got);
        got += k as u64;
    }
    bad
}

/// A proxy with the admin server on, one worker.
fn proxy_with_admin(origin: SocketAddr) -> (Proxy, SocketAddr) {
    Proxy::start_with_admin(&admin_config(origin, ""), &["--workers", "1"])
}

#[test]
fn http1_bulk_download_64mib_content_checked_then_keepalive() {
    let origin = PatternOrigin::start();
    let (proxy, adm) = proxy_with_admin(origin.addr);
    let mut c = Client::connect(proxy.addr);
    for round in 0..2 {
        c.send(format!("GET /cl/{BIG} HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
        let head = c.read_head().expect("response head");
        assert_eq!(head.status(), 200, "{head:?}");
        assert_eq!(
            head.header("content-length"),
            Some(BIG.to_string().as_str())
        );
        assert_eq!(
            read_pattern_body(&mut c, BIG),
            0,
            "round {round}: corrupted bytes"
        );
    }
    // Still in sync: a small body after two bulk ones, on the same connections.
    c.send(b"GET /cl/5 HTTP/1.1\r\nHost: big\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body, (0..5).map(pat).collect::<Vec<u8>>());
    assert!(
        proxy.peak_rss_kib() < RSS_LIMIT_KIB,
        "peak RSS {}",
        proxy.peak_rss_kib()
    );
    let s = admin_stats(adm);
    assert!(s["worker.0.body_bulk_runs"] >= 2, "{s:?}");
    assert_eq!(s["worker.0.body_bulk_no_buffer"], 0, "{s:?}");
}

#[test]
fn http1_bulk_small_bodies_never_go_bulk() {
    let origin = PatternOrigin::start();
    let (proxy, adm) = proxy_with_admin(origin.addr);
    let mut c = Client::connect(proxy.addr);
    // Up to 60 KiB: below the bulk threshold however the receives fall.
    for n in [0u64, 100, 16 * 1024, 60 * 1024] {
        for _ in 0..5 {
            c.send(format!("GET /cl/{n} HTTP/1.1\r\nHost: small\r\n\r\n").as_bytes());
            let r = c.response(false);
            assert_eq!(r.status(), 200);
            assert_eq!(r.body, (0..n).map(pat).collect::<Vec<u8>>());
        }
    }
    let s = admin_stats(adm);
    assert_eq!(s["worker.0.body_bulk_runs"], 0, "{s:?}");
}

#[test]
fn http1_bulk_more_fast_bodies_than_buffers_stay_intact_on_pool_pieces() {
    // 20 downloads held open at once (each reader stops after its first MiB, so each body's
    // send blocks while it holds its bulk buffer): 16 lease one (the worker's bound), the others
    // find none and stay on 16 KiB pieces. Then every reader resumes; all bodies arrive intact.
    let origin = PatternOrigin::start();
    let (proxy, adm) = proxy_with_admin(origin.addr);
    let n = 24 * MIB;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(proxy.addr);
        c.send(format!("GET /cl/{n} HTTP/1.1\r\nHost: many\r\n\r\n").as_bytes());
        let head = c.read_head().expect("head");
        assert_eq!(head.status(), 200);
        let mut got = c.take_buffered();
        c.stream.set_read_timeout(Some(STALL)).expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        while (got.len() as u64) < MIB {
            let k = c.stream.read(&mut buf).expect("read");
            assert!(k > 0);
            got.extend_from_slice(&buf[..k]);
        }
        clients.push((c, got));
    }
    // Let every pump reach its blocked send.
    thread::sleep(Duration::from_millis(500));
    let s = admin_stats(adm);
    assert!(s["worker.0.body_bulk_no_buffer"] >= 1, "{s:?}");
    assert!(proxy.rss_kib() < RSS_LIMIT_KIB, "RSS {}", proxy.rss_kib());
    let ts: Vec<_> = clients
        .into_iter()
        .map(|(mut c, got)| {
            thread::spawn(move || {
                let mut bad = bad_bytes(&got, 0);
                let mut at = got.len() as u64;
                let mut buf = vec![0u8; 256 * 1024];
                while at < n {
                    let want = buf.len().min((n - at) as usize);
                    let k = c.stream.read(&mut buf[..want]).expect("read");
                    assert!(k > 0, "closed after {at}");
                    bad += bad_bytes(&buf[..k], at);
                    at += k as u64;
                }
                bad
            })
        })
        .collect();
    for t in ts {
        assert_eq!(t.join().expect("reader"), 0, "corrupted bytes");
    }
    assert!(
        proxy.peak_rss_kib() < RSS_LIMIT_KIB,
        "peak RSS {}",
        proxy.peak_rss_kib()
    );
}

#[test]
fn http1_bulk_upload_64mib_content_checked_with_pipelined_request_after() {
    let origin = PatternOrigin::start();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.stream
        .set_write_timeout(Some(STALL))
        .expect("write timeout");
    let mut w = c.stream.try_clone().expect("clone");
    // The body, then at once a second request in the same stream: a receive that read past the
    // body would hand its head to the origin as body bytes.
    let writer = thread::spawn(move || -> std::io::Result<()> {
        w.write_all(
            format!("POST /check HTTP/1.1\r\nHost: big\r\nContent-Length: {BIG}\r\n\r\n")
                .as_bytes(),
        )?;
        let mut block = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        while off < BIG {
            let k = block.len().min((BIG - off) as usize);
            fill(&mut block[..k], off);
            w.write_all(&block[..k])?;
            off += k as u64;
        }
        w.write_all(b"POST /check HTTP/1.1\r\nHost: big\r\nContent-Length: 3\r\n\r\n")?;
        w.write_all(&[pat(0), pat(1), pat(2)])
    });
    writer.join().expect("writer").expect("upload write");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body_str(), format!("len={BIG} bad=0"));
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body_str(), "len=3 bad=0");
    assert!(
        proxy.peak_rss_kib() < RSS_LIMIT_KIB,
        "peak RSS {}",
        proxy.peak_rss_kib()
    );
}

#[test]
fn http1_bulk_close_delimited_download_reframed_chunked() {
    // An HTTP/1.1 client gets a close-delimited origin body as chunked: each bulk piece is
    // framed as one chunk, and the origin's close ends it with the last chunk.
    let origin = PatternOrigin::start();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let n = 16 * MIB;
    let mut c = Client::connect(proxy.addr);
    c.send(format!("GET /close/{n} HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200, "{head:?}");
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    c.stream
        .set_read_timeout(Some(STALL))
        .expect("read timeout");
    let mut raw = c.take_buffered();
    let body = if chunked {
        loop {
            if let Some((body, _)) = dechunk(&raw) {
                break body;
            }
            let mut tmp = vec![0u8; 256 * 1024];
            let k = c.stream.read(&mut tmp).expect("read");
            assert!(k > 0, "closed before the last chunk");
            raw.extend_from_slice(&tmp[..k]);
        }
    } else {
        c.stream.read_to_end(&mut raw).expect("read to close");
        raw
    };
    assert_eq!(body.len() as u64, n);
    assert_eq!(bad_bytes(&body, 0), 0, "corrupted bytes");
}

#[test]
fn http1_bulk_fast_slow_fast_body_content_checked() {
    // 4 MiB fast (bulk), then 64 small pieces (a short bulk receive sends the body back to
    // pool reads), then fast again (bulk again): every switch keeps the bytes in order.
    let origin = PatternOrigin::start();
    let (proxy, adm) = proxy_with_admin(origin.addr);
    let n = 24 * MIB;
    let mut c = Client::connect(proxy.addr);
    c.send(format!("GET /trickle/{n} HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200, "{head:?}");
    assert_eq!(read_pattern_body(&mut c, n), 0, "corrupted bytes");
    c.send(b"GET /cl/7 HTTP/1.1\r\nHost: big\r\n\r\n");
    assert_eq!(c.response(false).body, (0..7).map(pat).collect::<Vec<u8>>());
    // It went bulk, slowed down, and went bulk again.
    let s = admin_stats(adm);
    assert!(s["worker.0.body_bulk_runs"] >= 2, "{s:?}");
}

#[test]
fn http1_bulk_stopped_reader_stops_origin_reads_and_memory_stays_flat() {
    let origin = PatternOrigin::start();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let n = 512 * MIB;
    let mut c = Client::connect(proxy.addr);
    c.send(format!("GET /cl/{n} HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200, "{head:?}");
    // Read 32 MiB (the body is on the bulk path by then), then stop reading.
    let mut buf = vec![0u8; 256 * 1024];
    let first = c.take_buffered();
    let mut got = first.len() as u64;
    let mut bad = bad_bytes(&first, 0);
    c.stream
        .set_read_timeout(Some(STALL))
        .expect("read timeout");
    while got < 32 * MIB {
        let k = c.stream.read(&mut buf).expect("read");
        assert!(k > 0);
        bad += bad_bytes(&buf[..k], got);
        got += k as u64;
    }
    // Wait until the origin's writes stop (socket buffers full all the way back).
    let mut last = origin.written.load(Ordering::Relaxed);
    let until = Instant::now() + WAIT;
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = origin.written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(Instant::now() < until, "the origin never stopped writing");
        last = now;
    }
    // The kernel may still make a little room (receive queues collapsed, windows reopened):
    // what counts is that the origin stays bounded far below the body while nobody reads.
    thread::sleep(Duration::from_secs(1));
    let ahead = origin.written.load(Ordering::Relaxed) - got;
    let rss_stopped = proxy.rss_kib();
    println!(
        "reader stopped at {got}: origin ahead by {} MiB, proxy RSS {rss_stopped} KiB",
        ahead >> 20
    );
    // What is in flight sits in kernel socket buffers, not in the proxy: two receive buffers
    // (autotuned up to tcp_rmem's 32 MiB here) and two send buffers (4 MiB) at most, far below
    // the 512 MiB body a proxy without backpressure would have pulled in.
    assert!(
        ahead < 128 * MIB,
        "origin wrote {ahead} bytes past the reader"
    );
    assert!(rss_stopped < RSS_LIMIT_KIB, "proxy RSS {rss_stopped} KiB");
    // Resume: the rest arrives intact.
    while got < n {
        let want = buf.len().min((n - got) as usize);
        let k = c.stream.read(&mut buf[..want]).expect("read");
        assert!(k > 0, "closed after {got}");
        bad += bad_bytes(&buf[..k], got);
        got += k as u64;
    }
    assert_eq!(bad, 0, "corrupted bytes");
    assert!(
        proxy.peak_rss_kib() < RSS_LIMIT_KIB,
        "peak RSS {}",
        proxy.peak_rss_kib()
    );
}

#[test]
fn http1_bulk_concurrent_downloads_and_uploads_bounded_memory() {
    // Six transfers at once on one worker, both directions, each checked.
    let origin = PatternOrigin::start();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let addr = proxy.addr;
    let mut ts = Vec::new();
    for i in 0..6 {
        ts.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            if i % 2 == 0 {
                c.send(format!("GET /cl/{BIG} HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
                let head = c.read_head().expect("head");
                assert_eq!(head.status(), 200);
                read_pattern_body(&mut c, BIG)
            } else {
                c.stream.set_write_timeout(Some(STALL)).expect("timeout");
                let mut w = c.stream.try_clone().expect("clone");
                w.write_all(
                    format!("POST /check HTTP/1.1\r\nHost: big\r\nContent-Length: {BIG}\r\n\r\n")
                        .as_bytes(),
                )
                .expect("head");
                let mut block = vec![0u8; 256 * 1024];
                let mut off = 0u64;
                while off < BIG {
                    fill(&mut block, off);
                    w.write_all(&block).expect("body");
                    off += block.len() as u64;
                }
                let r = c.response(false);
                assert_eq!(r.body_str(), format!("len={BIG} bad=0"));
                0
            }
        }));
    }
    for t in ts {
        assert_eq!(t.join().expect("transfer thread"), 0, "corrupted bytes");
    }
    assert!(
        proxy.peak_rss_kib() < RSS_LIMIT_KIB,
        "peak RSS {}",
        proxy.peak_rss_kib()
    );
}
