//! Multishot receives under pressure (`io::multi`): clients upload large bodies to an upstream
//! that does not read for a while. The proxy must keep TCP backpressure — a connection whose data
//! cannot be forwarded stops receiving after 4 buffers (`worker.0.recv_multishot_capped`), so one
//! uploader never runs the pool dry — and when many do and every provided
//! buffer of the worker is in use, reads go on with one-off buffers (`worker.0.recv_no_buffer`),
//! never a stall or an error: every upload arrives intact (a position-dependent pattern, checked
//! byte by byte at the origin), memory stays bounded, and the proxy serves a plain request after.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// More uploads than the pool has room for at 4 buffers each (512 buffers per worker).
const UPLOADS: usize = 250;
const BODY: u64 = 6 << 20;
/// The origin reads nothing for this long after each request head.
const HOLD: Duration = Duration::from_secs(3);
/// A transfer that makes no progress for this long fails the test.
const STALL: Duration = Duration::from_secs(30);
const RSS_LIMIT_KIB: u64 = 96 * 1024;

/// The suite's second run is on the epoll driver (`RINGWAY_IO_DRIVER=epoll`), which has no
/// multishot receive: each read is a `recv(2)` into a pool buffer taken when data is there. The
/// uploads must still arrive intact and the pool-dry cases still be served; the multishot
/// counters must stay at zero.
fn on_epoll() -> bool {
    std::env::var("RINGWAY_IO_DRIVER").as_deref() == Ok("epoll")
}

/// The multishot counters on epoll: none armed, none capped.
fn assert_no_multishot(admin: SocketAddr) {
    let stats = admin_stats(admin);
    for name in [
        "worker.0.recv_multishot_armed",
        "worker.0.recv_multishot_capped",
    ] {
        assert_eq!(stats.get(name).copied(), Some(0), "{name} on epoll");
    }
}

fn pat(i: u64) -> u8 {
    ((i % 251) as u8) ^ ((i >> 16) as u8)
}

/// An origin that answers with `len=N bad=M` after reading the body, holding off reading it for
/// [`HOLD`] (the proxy's writes to it block once the socket buffers are full); `GET /slow` is
/// answered after [`HOLD`].
fn start_slow_origin() -> SocketAddr {
    // A backlog for every upload connecting at once (std's is 128).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("origin socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    sock.bind(&any.into()).expect("bind origin");
    sock.listen(1024).expect("listen");
    let l: TcpListener = sock.into();
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Bytes read from the origin's socket and not used yet.
struct Src {
    s: TcpStream,
    have: Vec<u8>,
    buf: Vec<u8>,
}

impl Src {
    /// Read until `have` holds at least `n` bytes (false: the connection ended).
    fn fill(&mut self, n: usize) -> bool {
        while self.have.len() < n {
            match self.s.read(&mut self.buf) {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.have.extend_from_slice(&self.buf[..k]),
            }
        }
        true
    }

    /// Read until `have` holds `needle`; the offset just past it.
    fn until(&mut self, needle: &[u8]) -> Option<usize> {
        loop {
            if let Some(p) = find(&self.have, needle) {
                return Some(p + needle.len());
            }
            let n = self.have.len() + 1;
            if !self.fill(n) {
                return None;
            }
        }
    }

    /// Take `n` body bytes (at most 64 KiB at a time) and check them against the pattern.
    fn check(&mut self, mut n: u64, got: &mut u64, bad: &mut u64) -> bool {
        while n > 0 {
            let want = n.min(64 * 1024) as usize;
            let have = self.have.len().min(want).max(1);
            if !self.fill(have) {
                return false;
            }
            let k = self.have.len().min(want);
            for &b in &self.have[..k] {
                *bad += u64::from(b != pat(*got));
                *got += 1;
            }
            self.have.drain(..k);
            n -= k as u64;
        }
        true
    }
}

fn serve(s: TcpStream) {
    s.set_read_timeout(Some(STALL)).ok();
    let mut src = Src {
        s,
        have: Vec::new(),
        buf: vec![0u8; 64 * 1024],
    };
    loop {
        let Some(end) = src.until(b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&src.have[..end]).to_ascii_lowercase();
        src.have.drain(..end);
        let len: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let chunked = head.contains("transfer-encoding: chunked");
        if len > 0 || chunked || head.starts_with("get /slow") {
            thread::sleep(HOLD);
        }
        let (mut got, mut bad) = (0u64, 0u64);
        if chunked {
            loop {
                let Some(line) = src.until(b"\r\n") else {
                    return;
                };
                let size = String::from_utf8_lossy(&src.have[..line - 2]).to_string();
                src.have.drain(..line);
                let Ok(size) = u64::from_str_radix(size.trim(), 16) else {
                    return;
                };
                if !src.check(size, &mut got, &mut bad) || !src.fill(2) {
                    return;
                }
                src.have.drain(..2);
                if size == 0 {
                    break;
                }
            }
        } else if !src.check(len, &mut got, &mut bad) {
            return;
        }
        let body = format!("len={got} bad={bad}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if src.s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Upload `body` pattern bytes in 64 KiB chunks (`Transfer-Encoding: chunked`: such bodies stay
/// on pool buffers, never the bulk path).
fn upload_chunked(addr: SocketAddr, body: u64) -> String {
    let mut c = Client::connect(addr);
    c.stream.set_write_timeout(Some(STALL)).expect("timeout");
    c.stream.set_read_timeout(Some(STALL)).expect("timeout");
    let mut w = c.stream.try_clone().expect("clone");
    w.write_all(b"POST /up HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    let mut block = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < body {
        for (k, b) in block.iter_mut().enumerate() {
            *b = pat(off + k as u64);
        }
        w.write_all(format!("{:x}\r\n", block.len()).as_bytes())
            .expect("chunk size");
        w.write_all(&block).expect("chunk");
        w.write_all(b"\r\n").expect("chunk end");
        off += block.len() as u64;
    }
    w.write_all(b"0\r\n\r\n").expect("last chunk");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "upload answered {}", r.status());
    r.body_str()
}

fn upload(addr: SocketAddr, body: u64) -> String {
    let mut c = Client::connect(addr);
    c.stream.set_write_timeout(Some(STALL)).expect("timeout");
    c.stream.set_read_timeout(Some(STALL)).expect("timeout");
    let mut w = c.stream.try_clone().expect("clone");
    w.write_all(
        format!("POST /up HTTP/1.1\r\nHost: up\r\nContent-Length: {body}\r\n\r\n").as_bytes(),
    )
    .expect("head");
    let mut block = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < body {
        for (k, b) in block.iter_mut().enumerate() {
            *b = pat(off + k as u64);
        }
        w.write_all(&block).expect("body");
        off += block.len() as u64;
    }
    let r = c.response(false);
    assert_eq!(r.status(), 200, "upload answered {}", r.status());
    r.body_str()
}

/// Wait (bounded) until the admin stat `name` is above zero; returns its value.
fn stat_above_zero(admin: SocketAddr, name: &str) -> u64 {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let v = admin_stats(admin).get(name).copied().unwrap_or(0);
        if v > 0 || Instant::now() > until {
            return v;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn recv_multishot_one_fast_uploader_to_a_stalled_upstream_takes_at_most_its_cap_of_buffers() {
    // A chunked body stays on pool buffers. Without the cap, its receive would take every
    // provided buffer while the upstream does not read (the pool runs dry: tried, it does);
    // with it, the receive stops at 4 and waits.
    let origin = start_slow_origin();
    let (proxy, admin) = Proxy::start_with_admin(&admin_config(origin, ""), &["--workers", "1"]);
    let body = 16 << 20;
    assert_eq!(
        upload_chunked(proxy.addr, body),
        format!("len={body} bad=0")
    );
    if on_epoll() {
        // A read takes a buffer only for what has arrived, and gives it back once forwarded.
        assert_eq!(
            admin_stats(admin).get("worker.0.recv_no_buffer").copied(),
            Some(0),
            "one connection ran the pool dry"
        );
        assert_no_multishot(admin);
        return;
    }
    let capped = stat_above_zero(admin, "worker.0.recv_multishot_capped");
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("worker.0.recv_no_buffer").copied(),
        Some(0),
        "one connection ran the pool dry"
    );
    assert!(
        stats
            .get("worker.0.recv_multishot_armed")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(capped > 0, "no receive reached its limit");
}

#[test]
fn recv_multishot_tiny_segments_while_the_upstream_thinks_take_at_most_the_cap() {
    // While the proxy waits for a slow answer, the client sends its next request one byte per
    // segment. The byte limit alone would let each arrival take a buffer (over 1,000 here, past
    // the pool's 512: tried, they do); the cap in buffers stops the receive at 4.
    let origin = start_slow_origin();
    let (proxy, admin) = Proxy::start_with_admin(&admin_config(origin, ""), &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    c.stream.set_nodelay(true).expect("nodelay");
    c.stream.set_read_timeout(Some(STALL)).expect("timeout");
    let mut w = c.stream.try_clone().expect("clone");
    w.write_all(b"GET /slow HTTP/1.1\r\nHost: up\r\n\r\n")
        .expect("first");
    thread::sleep(Duration::from_millis(200));
    let next = format!(
        "GET /next HTTP/1.1\r\nHost: up\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1000)
    );
    for b in next.as_bytes() {
        thread::sleep(Duration::from_micros(1000));
        w.write_all(std::slice::from_ref(b)).expect("one byte");
    }
    for _ in 0..2 {
        let r = c.response(false);
        assert_eq!(r.status(), 200);
        assert_eq!(r.body_str(), "len=0 bad=0");
    }
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("worker.0.recv_no_buffer").copied(),
        Some(0),
        "small arrivals on one connection ran the pool dry"
    );
    if on_epoll() {
        assert_no_multishot(admin);
        return;
    }
    assert!(stat_above_zero(admin, "worker.0.recv_multishot_capped") > 0);
}

#[test]
fn recv_multishot_many_uploads_to_a_stalled_upstream_survive_pool_exhaustion_intact() {
    let origin = start_slow_origin();
    // 250 connects at once to an origin on a busy machine: a generous connect timeout, so that
    // only the proxy's own behaviour can fail the uploads.
    let yaml = ConfigBuilder::new()
        .stat_prefix("main")
        .route_prefix("/", "origin")
        .cluster("origin", &[origin])
        .connect_timeout("20s")
        .admin()
        .yaml();
    // A pool of 64 buffers (512 by default): 250 stalled uploads, each holding up to 4,
    // run it dry whatever the machine's timing. On epoll a connection holds a buffer only while
    // its read waits for the upstream (about one each), so fewer of them must stall at once
    // there: a pool of 16 (with 64, one suite run in three here exhausted nothing in six rounds).
    let pool = if on_epoll() { "16" } else { "64" };
    let (proxy, admin) = Proxy::start_with_admin_env(
        &yaml,
        &["--workers", "1"],
        &[("RINGWAY_RECV_POOL_BUFFERS", pool)],
    );
    let addr = proxy.addr;
    // Exhaustion still depends on enough uploads stalling at once: a round that did not
    // exhaust the pool is run again, up to six; every round's uploads must arrive intact.
    for _round in 0..6 {
        let start = std::sync::Arc::new(std::sync::Barrier::new(UPLOADS));
        let ts: Vec<_> = (0..UPLOADS)
            .map(|_| {
                let start = std::sync::Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    upload(addr, BODY)
                })
            })
            .collect();
        for t in ts {
            assert_eq!(
                t.join().expect("upload thread"),
                format!("len={BODY} bad=0"),
                "an upload arrived damaged"
            );
        }
        if stat_above_zero(admin, "worker.0.recv_no_buffer") > 0 {
            break;
        }
    }
    let capped = if on_epoll() {
        assert_no_multishot(admin);
        0
    } else {
        stat_above_zero(admin, "worker.0.recv_multishot_capped")
    };
    let no_buffer = stat_above_zero(admin, "worker.0.recv_no_buffer");
    assert!(on_epoll() || capped > 0, "no receive reached its limit");
    assert!(
        no_buffer > 0,
        "the pool was never exhausted (capped {capped}): the test did not test it"
    );
    let rss = proxy.peak_rss_kib();
    assert!(rss < RSS_LIMIT_KIB, "peak RSS {rss} KiB");
    // Still serving.
    let mut c = Client::connect(addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let r =
        c.roundtrip(b"POST /after HTTP/1.1\r\nHost: up\r\nContent-Length: 3\r\n\r\n\x00\x01\x02");
    assert_eq!(r.body_str(), "len=3 bad=0");
}
