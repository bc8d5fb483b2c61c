//! `ringway-bench transfer` against the real origin over loopback: 64 MiB downloads and uploads
//! in both framings, their byte counts, bounded memory on both sides, and the errors a short or
//! miscounted body must give. Also the origin's `/upload` and `/bytes/N` edges with a request
//! pipelined behind a large body. Transfers share the two cores, so they run one at a time.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use common::{count, num, raw, read_until, transfer, Origin};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LIMIT: Duration = Duration::from_secs(60);
const MIB64: u64 = 64 << 20;
/// Far below 64 MiB: neither side may hold a body.
const RSS_BOUND_KIB: u64 = 24 * 1024;

#[test]
fn transfer_download_64mib_both_framings() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    for (extra, path, framing) in [
        (None, "/bytes/67108864?cl=1", "content-length"),
        (Some("--chunked"), "/bytes/67108864", "chunked"),
    ] {
        let url = o.url("/");
        let mut args = vec![url.as_str(), "--download", "64MiB", "--workers", "1"];
        args.extend(extra);
        let (r, maxrss) = transfer(&args, LIMIT);
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
        assert_eq!(r.json["path"], path);
        assert_eq!(r.json["framing"], framing);
        assert_eq!(r.json["direction"], "download");
        assert_eq!(num(&r.json, &["bytes"]) as u64, MIB64);
        assert_eq!(r.json["errors"].as_array().unwrap().len(), 0);
        assert!(num(&r.json, &["gbytes_per_sec"]) > 0.0);
        let secs = num(&r.json, &["seconds"]);
        let gbs = MIB64 as f64 / secs / 1e9;
        assert!((num(&r.json, &["gbytes_per_sec"]) - gbs).abs() < 1e-6 * gbs.max(1.0));
        assert!(maxrss < RSS_BOUND_KIB, "transfer peak RSS {maxrss} KiB");
    }
    assert!(o.peak_rss_kib() < RSS_BOUND_KIB, "{}", o.peak_rss_kib());
    assert_eq!(o.stop_counts(), (2, 2));
}

#[test]
fn transfer_upload_64mib_both_framings() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    for (extra, framing) in [(None, "content-length"), (Some("--chunked"), "chunked")] {
        let url = o.url("/");
        let mut args = vec![url.as_str(), "--upload", "64MiB", "--workers", "1"];
        args.extend(extra);
        let (r, maxrss) = transfer(&args, LIMIT);
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
        assert_eq!(r.json["path"], "/upload");
        assert_eq!(r.json["framing"], framing);
        assert_eq!(num(&r.json, &["bytes"]) as u64, MIB64);
        assert_eq!(r.json["per_transfer"][0]["status"], 200);
        assert!(maxrss < RSS_BOUND_KIB, "transfer peak RSS {maxrss} KiB");
    }
    assert!(o.peak_rss_kib() < RSS_BOUND_KIB, "{}", o.peak_rss_kib());
    assert_eq!(o.stop_counts(), (2, 2));
}

#[test]
fn transfer_parallel_counts_every_transfer() {
    let _g = serial();
    let o = Origin::start(&["--workers", "2"]);
    for dir in ["--download", "--upload"] {
        // Not a multiple of the 256 KiB block: the tails are exercised too.
        let (r, _) = transfer(&[&o.url("/"), dir, "3000001", "-c", "4"], LIMIT);
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
        assert_eq!(num(&r.json, &["transfers"]) as u64, 4);
        assert_eq!(r.json["per_transfer"].as_array().unwrap().len(), 4);
        assert_eq!(num(&r.json, &["bytes"]) as u64, 4 * 3_000_001);
    }
    // The /echo JSON's body_length is an accepted answer too.
    let (r, _) = transfer(&[&o.url("/echo"), "--upload", "1MiB", "--chunked"], LIMIT);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert_eq!(o.stop_counts(), (9, 9));
}

/// A one-shot server: reads a request head and `body` more bytes, writes `answer`, closes.
fn scripted(answer: Vec<u8>, body: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let complete = |g: &[u8]| {
            g.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|i| g.len() >= i + 4 + body)
        };
        while !complete(&got) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&answer);
    });
    (addr, t)
}

fn fails_with(args: &[&str], addr: std::net::SocketAddr, needle: &str) {
    let url = format!("http://{addr}/");
    let mut all = vec![url.as_str()];
    all.extend_from_slice(args);
    let (r, _) = transfer(&all, LIMIT);
    assert!(!r.ok, "must fail: {}", r.stdout);
    let errors = r.json["errors"].to_string();
    assert!(errors.contains(needle), "{errors}\n{}", r.stdout);
    assert_eq!(num(&r.json, &["gbytes_per_sec"]), 0.0);
    assert!(r.stderr.contains("1 of 1 transfers failed"), "{}", r.stderr);
}

#[test]
fn transfer_short_or_miscounted_bodies_are_errors() {
    let _g = serial();
    // Content-Length as asked, but the body stops early.
    let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    a.extend_from_slice(&[b'x'; 1000]);
    let (addr, t) = scripted(a, 0);
    fails_with(
        &["--download", "100000"],
        addr,
        "closed after 1000 body bytes of 100000",
    );
    t.join().unwrap();
    // A Content-Length other than the size asked for.
    let (addr, t) = scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nxxxxx".to_vec(),
        0,
    );
    fails_with(
        &["--download", "100000"],
        addr,
        "announces 5 bytes, not 100000",
    );
    t.join().unwrap();
    // A chunked body that ends (properly) early.
    let (addr, t) = scripted(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxxx\r\n0\r\n\r\n".to_vec(),
        0,
    );
    fails_with(&["--download", "100000"], addr, "short body: 3 of 100000");
    t.join().unwrap();
    // An upload the server says it received only part of.
    let (addr, t) = scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n7\n".to_vec(),
        1000,
    );
    fails_with(&["--upload", "1000"], addr, "received 7 of 1000");
    t.join().unwrap();
    let (addr, t) = scripted(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n".to_vec(),
        1000,
    );
    fails_with(&["--upload", "1000"], addr, "status 413");
    t.join().unwrap();
}

#[test]
fn origin_large_bodies_then_a_pipelined_request() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1", "--body-size", "10"]);
    let n = 1_000_003usize;
    let body = vec![b'b'; n];
    // Content-Length upload with the next request right behind it.
    let mut s = raw(o.addr);
    let mut req =
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    req.extend_from_slice(&body);
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(&req).unwrap();
    let got = read_until(&mut s, b"012345678\n", 1);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with(&format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\ncontent-type: text/plain\r\n\r\n{n}\n"
        )),
        "{text}"
    );
    assert_eq!(count(&got, b"HTTP/1.1 200 OK"), 2, "{text}");
    // Chunked, in uneven chunks across block boundaries, with the next request behind it.
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut sent = 0;
    for size in [1usize, 300_000, 262_144, 5, 437_853] {
        req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        req.extend_from_slice(&body[..size]);
        req.extend_from_slice(b"\r\n");
        sent += size;
    }
    assert_eq!(sent, n);
    req.extend_from_slice(b"0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(&req).unwrap();
    let got = read_until(&mut s, b"012345678\n", 1);
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(&format!("\r\n\r\n{n}\n")), "{text}");
    assert_eq!(count(&got, b"HTTP/1.1 200 OK"), 2, "{text}");
    // /bytes/N around the block size, both framings, each followed by a pipelined request.
    for n in [262_143usize, 262_144, 262_145, 524_288, 600_000] {
        for cl in ["?cl=1", ""] {
            s.write_all(
                format!("GET /bytes/{n}{cl} HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let got = read_until(&mut s, b"012345678\n", 1);
            let head_end = count(&got[..got.len().min(200)], b"\r\n\r\n");
            assert!(head_end >= 1);
            let body_start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let second = got
                .windows(15)
                .rposition(|w| w == b"HTTP/1.1 200 OK")
                .unwrap();
            let body = &got[body_start..second];
            assert_eq!(count(body, b"x"), n, "/bytes/{n}{cl}");
            if cl.is_empty() {
                assert!(body.ends_with(b"0\r\n\r\n"));
                assert_eq!(body.len() - n, chunk_framing(n), "/bytes/{n}");
            } else {
                assert_eq!(body.len(), n);
            }
        }
    }
    drop(s);
    assert_eq!(o.stop_counts(), (24, 1));
}

/// Framing bytes of the origin's chunked `/bytes/N`: 256 KiB chunks, then the tail, then `0`.
fn chunk_framing(n: usize) -> usize {
    let block = 256 * 1024;
    let whole = n / block;
    let tail = n % block;
    let line = |size: usize| format!("{size:x}\r\n").len() + 2;
    whole * line(block) + if tail > 0 { line(tail) } else { 0 } + 5
}
