//! The HTTP/2 load generator against scripted servers on 127.0.0.1: a tiny HTTP/2 server
//! written here, frame by frame, that answers with statuses, HPACK dynamic-table references,
//! resets, GOAWAY, broken HPACK, a low MAX_CONCURRENT_STREAMS or silence. Each test checks the
//! tool's counts against what the server saw and that the run ends on time.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{load, num};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LIMIT: Duration = Duration::from_secs(30);

/// How the scripted server answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Every third request 503 (a literal), the others 200 + "hello" + a header set by the
    /// first response into the dynamic table and referenced after.
    Statuses,
    /// Every other request is reset (RST_STREAM REFUSED_STREAM).
    Reset,
    /// The 50th request on a connection gets GOAWAY naming the one before as the last.
    GoAway,
    /// The 20th request on a connection gets a header block with index 0.
    BadHpack,
    /// MAX_CONCURRENT_STREAMS 3; answers only when three streams are open.
    Limit3,
    /// Accepts and never answers.
    Silent,
}

#[derive(Default)]
struct Seen {
    /// HEADERS frames (requests) read.
    requests: AtomicU64,
    status_503: AtomicU64,
    ok: AtomicU64,
    resets: AtomicU64,
    conns: AtomicU64,
    /// Limit3: more than three streams were open at once.
    violations: AtomicU64,
}

fn server(mode: Mode) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let s = s.clone();
            s.conns.fetch_add(1, Relaxed);
            std::thread::spawn(move || {
                let _ = conn(c, mode, &s);
            });
        }
    });
    (addr, seen)
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let l = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn conn(c: TcpStream, mode: Mode, seen: &Seen) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    let mut preface = [0u8; 24];
    r.read_exact(&mut preface)?;
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    if mode == Mode::Silent {
        // Read until the client gives up.
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
        return Ok(());
    }
    let mut out = Vec::new();
    let settings: &[u8] = if mode == Mode::Limit3 {
        &[0, 3, 0, 0, 0, 3]
    } else {
        &[]
    };
    frame(&mut out, SETTINGS, 0, 0, settings);
    w.write_all(&out)?;
    let mut n = 0u64;
    let mut open = Vec::new();
    let mut dead = false;
    loop {
        let mut head = [0u8; 9];
        r.read_exact(&mut head)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        let mut payload = vec![0; len];
        r.read_exact(&mut payload)?;
        out.clear();
        match kind {
            SETTINGS if flags & 1 == 0 => frame(&mut out, SETTINGS, 1, 0, &[]),
            HEADERS => {
                assert_ne!(flags & END_HEADERS, 0);
                seen.requests.fetch_add(1, Relaxed);
                n += 1;
                if dead {
                    continue;
                }
                match mode {
                    Mode::Statuses if n.is_multiple_of(3) => {
                        seen.status_503.fetch_add(1, Relaxed);
                        frame(
                            &mut out,
                            HEADERS,
                            END_HEADERS | END_STREAM,
                            stream,
                            &[0x08, 3, b'5', b'0', b'3'],
                        );
                    }
                    Mode::Reset if n.is_multiple_of(2) => {
                        seen.resets.fetch_add(1, Relaxed);
                        frame(&mut out, RST, 0, stream, &7u32.to_be_bytes());
                    }
                    Mode::GoAway if n == 50 => {
                        let mut p = (stream - 2).to_be_bytes().to_vec();
                        p.extend_from_slice(&0u32.to_be_bytes());
                        frame(&mut out, GOAWAY, 0, 0, &p);
                        dead = true;
                    }
                    Mode::BadHpack if n == 20 => {
                        frame(&mut out, HEADERS, END_HEADERS | END_STREAM, stream, &[0x80]);
                        dead = true;
                    }
                    Mode::Limit3 => {
                        open.push(stream);
                        if open.len() > 3 {
                            seen.violations.fetch_add(1, Relaxed);
                        }
                        if open.len() >= 3 {
                            for s in open.drain(..) {
                                seen.ok.fetch_add(1, Relaxed);
                                frame(&mut out, HEADERS, END_HEADERS | END_STREAM, s, &[0x88]);
                            }
                        }
                    }
                    _ => {
                        seen.ok.fetch_add(1, Relaxed);
                        // 200; the first response adds `x-n: v` to the table (literal with
                        // incremental indexing), later ones refer to it (index 62).
                        let block: &[u8] = if n == 1 {
                            &[0x88, 0x40, 3, b'x', b'-', b'n', 1, b'v']
                        } else {
                            &[0x88, 0xbe]
                        };
                        frame(&mut out, HEADERS, END_HEADERS, stream, block);
                        frame(&mut out, DATA, END_STREAM, stream, b"hello");
                    }
                }
            }
            _ => continue,
        }
        if !out.is_empty() {
            w.write_all(&out)?;
        }
    }
}

fn run(addr: SocketAddr, extra: &[&str]) -> common::LoadRun {
    let url = format!("http://{addr}/");
    let mut args = vec![&url[..], "--http2", "-t", "1"];
    args.extend_from_slice(extra);
    load(&args, LIMIT)
}

#[test]
fn h2_statuses_bodies_and_dynamic_table() {
    let _g = serial();
    let (addr, seen) = server(Mode::Statuses);
    let r = run(addr, &["-c", "2", "--streams", "8", "-d", "500ms"]);
    let n = num(&r.json, &["requests"]) as u64;
    assert!(n > 100, "{}{}", r.stdout, r.stderr);
    assert_eq!(n, seen.requests.load(Relaxed));
    assert_eq!(
        num(&r.json, &["errors", "status_5xx"]) as u64,
        seen.status_503.load(Relaxed)
    );
    assert_eq!(num(&r.json, &["bytes"]) as u64, 5 * seen.ok.load(Relaxed));
    assert_eq!(num(&r.json, &["errors", "parse"]), 0.0);
    assert_eq!(num(&r.json, &["connects"]), 2.0);
}

#[test]
fn h2_resets_fail_their_stream_only() {
    let _g = serial();
    let (addr, seen) = server(Mode::Reset);
    let r = run(addr, &["-c", "1", "--streams", "4", "-d", "500ms"]);
    let resets = seen.resets.load(Relaxed);
    assert!(resets > 50, "{}", r.stdout);
    assert_eq!(num(&r.json, &["errors", "parse"]) as u64, resets);
    assert_eq!(
        num(&r.json, &["requests"]) as u64 + resets,
        seen.requests.load(Relaxed)
    );
    assert_eq!(num(&r.json, &["connects"]), 1.0);
}

#[test]
fn h2_goaway_fails_the_unprocessed_streams_and_reconnects() {
    let _g = serial();
    let (addr, seen) = server(Mode::GoAway);
    let r = run(addr, &["-c", "1", "--streams", "4", "-d", "500ms"]);
    let parse = num(&r.json, &["errors", "parse"]) as u64;
    assert!(parse >= 1, "{}", r.stdout);
    assert!(num(&r.json, &["connects"]) >= 2.0, "{}", r.stdout);
    assert_eq!(
        num(&r.json, &["requests"]) as u64 + parse,
        seen.requests.load(Relaxed)
    );
    assert_eq!(num(&r.json, &["connects"]) as u64, seen.conns.load(Relaxed));
}

#[test]
fn h2_bad_hpack_is_a_connection_failure() {
    let _g = serial();
    let (addr, seen) = server(Mode::BadHpack);
    let r = run(addr, &["-c", "1", "--streams", "4", "-d", "500ms"]);
    let parse = num(&r.json, &["errors", "parse"]) as u64;
    assert!(parse >= 1, "{}", r.stdout);
    assert!(num(&r.json, &["connects"]) >= 2.0);
    assert_eq!(
        num(&r.json, &["requests"]) as u64 + parse,
        seen.requests.load(Relaxed)
    );
}

#[test]
fn h2_respects_max_concurrent_streams() {
    let _g = serial();
    let (addr, seen) = server(Mode::Limit3);
    let r = run(
        addr,
        &[
            "-c",
            "1",
            "--streams",
            "8",
            "-d",
            "500ms",
            "--timeout",
            "300ms",
        ],
    );
    assert!(num(&r.json, &["requests"]) > 100.0, "{}", r.stdout);
    assert_eq!(seen.violations.load(Relaxed), 0);
    // The last streams wait for company that never comes: at most two time out.
    assert!(num(&r.json, &["errors", "timeout"]) <= 2.0, "{}", r.stdout);
    assert_eq!(num(&r.json, &["requests"]) as u64, seen.ok.load(Relaxed));
}

#[test]
fn h2_silent_server_is_a_connect_failure_not_a_hang() {
    let _g = serial();
    let (addr, _seen) = server(Mode::Silent);
    let t = std::time::Instant::now();
    let r = run(
        addr,
        &[
            "-c",
            "1",
            "--streams",
            "2",
            "-d",
            "500ms",
            "--timeout",
            "200ms",
        ],
    );
    assert!(num(&r.json, &["errors", "connect"]) >= 1.0, "{}", r.stdout);
    assert_eq!(num(&r.json, &["requests"]), 0.0);
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// Against the bench origin (the `h2` crate's server): request bodies larger than the
/// server's initial stream window (64 KiB) go out as WINDOW_UPDATEs allow, every one arrives
/// whole, and statuses are counted.
#[test]
fn h2_bodies_past_the_flow_control_window_and_statuses_against_the_origin() {
    let _g = serial();
    let o = common::Origin::start(&["--workers", "1", "--h2c"]);
    let dir = common::tempdir();
    let body = dir.join("body");
    std::fs::write(&body, vec![b'x'; 200_000]).unwrap();
    let r = load(
        &[
            &o.url("/upload"),
            "--http2",
            "-c",
            "2",
            "--streams",
            "4",
            "-d",
            "500ms",
            "-X",
            "POST",
            "--body",
            body.to_str().unwrap(),
        ],
        LIMIT,
    );
    let n = num(&r.json, &["requests"]) as u64;
    assert!(n > 10, "{}{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, &["errors", "total"]), 0.0, "{}", r.stdout);
    // The origin answers "200000\n" when it got the whole body.
    assert_eq!(num(&r.json, &["bytes"]) as u64, 7 * n);
    let r = load(
        &[
            &o.url("/status/503"),
            "--http2",
            "-c",
            "1",
            "--streams",
            "4",
            "-d",
            "300ms",
        ],
        LIMIT,
    );
    let n5 = num(&r.json, &["requests"]) as u64;
    assert!(n5 > 10);
    assert_eq!(num(&r.json, &["errors", "status_5xx"]) as u64, n5);
    assert_eq!(o.stop(), n + n5);
    let _ = std::fs::remove_dir_all(&dir);
}
