//! 1 GiB through the proxy each way with bounded memory (a Content-Length upload, a chunked
//! download; plus 256 MiB with the other framing each way): the body is streamed (one read buffer
//! in flight per direction), so the proxy's resident set stays far below the body's size.
//!
//! Each test prints its throughput and the proxy's peak RSS (`cargo test -- --nocapture`).
use crate::support;

use std::{
    io::{Read, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

const GIB: u64 = 1 << 30;
/// Size of the second variant of each direction (chunked upload, Content-Length download): still
/// four times the RSS limit, so a proxy that buffered the body would fail, at a quarter of the
/// run time.
const SIDE: u64 = 256 << 20;
/// The proxy's resident set must stay under this (KiB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// A transfer that makes no progress for this long fails the test.
const STALL: Duration = Duration::from_secs(20);

/// Samples the proxy's RSS until dropped; `max()` is the largest sample.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&max));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn check_rss(what: &str, proxy: &Proxy, sampled_max: u64, bytes: u64, took: Duration) {
    let peak = proxy.peak_rss_kib();
    println!(
        "{what}: {} MiB in {took:.2?} ({:.0} MiB/s); proxy RSS max sampled {sampled_max} KiB, peak (VmHWM) {peak} KiB",
        bytes >> 20,
        bytes as f64 / (1 << 20) as f64 / took.as_secs_f64(),
    );
    assert!(
        peak > 0 && sampled_max > 0,
        "could not read the proxy's RSS"
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "{what}: proxy peak RSS {peak} KiB >= {RSS_LIMIT_KIB} KiB"
    );
    assert!(
        sampled_max < RSS_LIMIT_KIB,
        "{what}: proxy RSS {sampled_max} KiB >= {RSS_LIMIT_KIB} KiB"
    );
}

#[test]
fn http1_large_upload_1gib_content_length_bounded_memory() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let sampler = RssSampler::start(proxy.pid());
    let start = Instant::now();

    let mut c = Client::connect(proxy.addr);
    c.stream
        .set_write_timeout(Some(STALL))
        .expect("write timeout");
    let mut w = c.stream.try_clone().expect("clone");
    // Streamed from one 256 KiB block: the test never holds the body either.
    let writer = thread::spawn(move || -> std::io::Result<u64> {
        w.write_all(
            format!("POST /echo HTTP/1.1\r\nHost: big\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
        )?;
        let block: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0u64;
        while sent < GIB {
            let n = block.len().min((GIB - sent) as usize);
            w.write_all(&block[..n])?;
            sent += n as u64;
        }
        Ok(sent)
    });
    let sent = writer.join().expect("writer thread").expect("upload write");
    assert_eq!(sent, GIB);
    let r = c.response(false);
    let took = start.elapsed();
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(
        echo_json(&r)["body_length"],
        GIB,
        "the origin counted every byte"
    );
    check_rss(
        "upload 1 GiB (Content-Length)",
        &proxy,
        sampler.finish(),
        GIB,
        took,
    );
}

#[test]
fn http1_large_upload_256mib_chunked_bounded_memory() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let sampler = RssSampler::start(proxy.pid());
    let start = Instant::now();

    let mut c = Client::connect(proxy.addr);
    c.stream
        .set_write_timeout(Some(STALL))
        .expect("write timeout");
    let mut w = c.stream.try_clone().expect("clone");
    let writer = thread::spawn(move || -> std::io::Result<u64> {
        w.write_all(b"POST /echo HTTP/1.1\r\nHost: big\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        // One 64 KiB chunk, framed, written over and over.
        let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
        chunk.extend((0..64 * 1024).map(|i| (i % 251) as u8));
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0u64;
        while sent < SIDE {
            w.write_all(&chunk)?;
            sent += 64 * 1024;
        }
        w.write_all(b"0\r\n\r\n")?;
        Ok(sent)
    });
    let sent = writer.join().expect("writer thread").expect("upload write");
    assert_eq!(sent, SIDE);
    let r = c.response(false);
    let took = start.elapsed();
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(
        echo_json(&r)["body_length"],
        SIDE,
        "the origin counted every byte"
    );
    check_rss(
        "upload 256 MiB (chunked)",
        &proxy,
        sampler.finish(),
        SIDE,
        took,
    );
}

#[test]
fn http1_large_download_256mib_content_length_bounded_memory() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let sampler = RssSampler::start(proxy.pid());
    let start = Instant::now();

    let mut c = Client::connect(proxy.addr);
    c.send(format!("GET /bytes/{SIDE}?cl=1 HTTP/1.1\r\nHost: big\r\n\r\n").as_bytes());
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(SIDE.to_string().as_str()),
        "{head:?}"
    );
    assert_eq!(head.header("transfer-encoding"), None, "{head:?}");
    // Count the body without keeping it; every byte is 'x'.
    let first = c.take_buffered();
    let mut got = first.len() as u64;
    assert!(first.iter().all(|&b| b == b'x'));
    c.stream
        .set_read_timeout(Some(STALL))
        .expect("read timeout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut bad = 0u64;
    while got < SIDE {
        let n = c.stream.read(&mut buf).expect("download read");
        assert!(n > 0, "proxy closed after {got} bytes");
        bad += buf[..n].iter().filter(|&&b| b != b'x').count() as u64;
        got += n as u64;
    }
    let took = start.elapsed();
    assert_eq!(got, SIDE, "more bytes than the Content-Length");
    assert_eq!(bad, 0, "corrupted bytes");
    check_rss(
        "download 256 MiB (Content-Length)",
        &proxy,
        sampler.finish(),
        SIDE,
        took,
    );
    // The connection is still in sync afterwards.
    c.send(b"GET /echo HTTP/1.1\r\nHost: big\r\n\r\n");
    assert_eq!(c.response(false).status(), 200);
}

#[test]
fn http1_large_download_1gib_chunked_with_curl_bounded_memory() {
    // The origin's /bytes/N is chunked; curl decodes it and reports the payload size.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let sampler = RssSampler::start(proxy.pid());
    let start = Instant::now();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(format!("http://{}/bytes/{GIB}", proxy.addr))
        .output()
        .expect("run curl");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {GIB}"));
    check_rss(
        "download 1 GiB (chunked, curl)",
        &proxy,
        sampler.finish(),
        GIB,
        took,
    );
}
