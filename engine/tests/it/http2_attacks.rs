//! The HTTP/2 attacks that took real proxies down, each from a raw client writing frames by
//! hand (Python `hyperframe` and `hpack`, which come with `h2`): Rapid Reset, a CONTINUATION
//! flood, an HPACK bomb, PING, SETTINGS and WINDOW_UPDATE floods from a peer that never reads, empty DATA
//! frames, more streams than allowed, and a stream that opens and then sends nothing. Each is
//! bounded (the connection closed or the stream refused, the proxy's memory within a bound),
//! the upstream does not see the flood, the stats count it, and another client on the same
//! worker is served all along.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::Value;
use support::*;

/// Raw frames: `sys.argv[1]` is the attack, `sys.argv[2]` the port. Prints what came back:
/// GOAWAY codes, RST_STREAM codes, response statuses, whether the connection closed, how many
/// frames were sent.
const ATTACK: &str = r#"
import socket, sys, json, time
import hpack
from hyperframe.frame import (Frame, SettingsFrame, HeadersFrame, ContinuationFrame, DataFrame,
    PingFrame, RstStreamFrame, GoAwayFrame, WindowUpdateFrame)
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
enc = hpack.Encoder()
def head(sid, path, end=True, extra=(), end_headers=True, method="GET"):
    f = HeadersFrame(sid)
    f.data = enc.encode([(":method", method), (":scheme", "http"), (":authority", "a"),
                         (":path", path)] + list(extra))
    if end_headers:
        f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()
sent = 0
def send(b):
    global sent
    try:
        s.sendall(b)
        sent += 1
        return True
    except OSError:
        return False
if mode == "rapid_reset":
    for batch in range(40):
        buf = b""
        for i in range(25):
            sid = 2 * (batch * 25 + i) + 1
            r = RstStreamFrame(sid); r.error_code = 8
            buf += head(sid, "/flood") + r.serialize()
        if not send(buf):
            break
elif mode == "continuation":
    send(head(1, "/c", end_headers=False))
    c = ContinuationFrame(1).serialize()
    # 18 MB in all: more than loopback's socket buffers hold, so the whole flood cannot be
    # written unless the proxy reads it all.
    for i in range(20000):
        if not send(c * 100):
            break
elif mode == "hpack_bomb":
    send(head(1, "/bomb", extra=[("x-big", "a" * 4000)] * 200))
elif mode in ("ping_flood", "settings_flood", "window_update_flood"):
    if mode == "ping_flood":
        f = PingFrame(0)
        f.opaque_data = b"12345678"
    elif mode == "settings_flood":
        f = SettingsFrame(0)
    else:
        f = WindowUpdateFrame(0)
        f.window_increment = 1
    one = f.serialize()
    s.settimeout(2)
    for i in range(2000):
        if not send(one * 100):
            break
elif mode == "empty_data":
    send(head(1, "/empty", end=False, method="POST"))
    d = DataFrame(1).serialize()
    for i in range(100):
        if not send(d * 100):
            break
elif mode == "too_many_streams":
    buf = b"".join(head(2 * i + 1, "/s%d" % i) for i in range(300))
    send(buf)
elif mode == "silent_stream":
    send(head(1, "/silent", end=False, method="POST"))
out = {"goaway": [], "rst": [], "status": [], "closed": False, "sent": sent}
buf = b""
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 5)
t0 = time.time()
while time.time() - t0 < 20:
    try:
        data = s.recv(1 << 16)
    except socket.timeout:
        break
    except OSError:
        out["closed"] = True
        break
    if not data:
        out["closed"] = True
        break
    buf += data
    while len(buf) >= 9:
        f, n = Frame.parse_frame_header(memoryview(buf[:9]))
        if len(buf) < 9 + n:
            break
        f.parse_body(memoryview(buf[9:9 + n]))
        buf = buf[9 + n:]
        if isinstance(f, GoAwayFrame):
            out["goaway"].append(f.error_code)
        elif isinstance(f, RstStreamFrame):
            out["rst"].append(f.error_code)
        elif isinstance(f, HeadersFrame):
            out["status"].append(f.stream_id)
            if mode == "silent_stream":
                t0 = 0
print(json.dumps(out))
"#;

fn attack(p: &Proxy, mode: &str, wait_secs: u32) -> Value {
    let out = run_python(
        &format!(
            "import sys; sys.argv = ['x', '{mode}', '{}', '{wait_secs}']\n{ATTACK}",
            p.addr.port()
        ),
        b"",
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{mode}: {}\n{}",
        out.stderr,
        out.stdout
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Another client on the same worker, asking all along; the number of its failures.
struct Bystander {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bystander {
    fn start(addr: SocketAddr) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, f, n) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&served),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut c = Client::connect(addr);
                c.send(b"GET /bystander HTTP/1.1\r\nhost: a\r\n\r\n");
                match c.try_response(false) {
                    Some(r) if r.status() == 200 => n.fetch_add(1, Ordering::SeqCst),
                    _ => f.fetch_add(1, Ordering::SeqCst),
                };
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Bystander {
            stop,
            failures,
            served,
            thread: Some(thread),
        }
    }

    /// Stop; `(served, failed)`.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.served.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
        )
    }
}

fn setup(hcm_extra: &str, delay: Duration) -> (Proxy, SocketAddr, RawOrigin, Arc<AtomicUsize>) {
    let (origin, count) = RawOrigin::counting("ok", delay);
    let mut b = ConfigBuilder::simple(origin.addr).admin();
    if !hcm_extra.is_empty() {
        b = b.hcm_extra(hcm_extra);
    }
    let (p, admin) = Proxy::start_with_admin(&b.yaml(), &["--workers", "1"]);
    (p, admin, origin, count)
}

const ENHANCE_YOUR_CALM: u64 = 11;
const REFUSED_STREAM: u64 = 7;

#[test]
fn rapid_reset_is_closed_and_the_upstream_never_sees_the_flood() {
    let (p, admin, _origin, count) = setup("", Duration::ZERO);
    let by = Bystander::start(p.addr);
    let r = attack(&p, "rapid_reset", 5);
    let (served, failed) = by.finish();
    assert!(
        r["goaway"]
            .as_array()
            .unwrap()
            .contains(&ENHANCE_YOUR_CALM.into()),
        "{r}"
    );
    assert_eq!(r["closed"], true, "{r}");
    // 1,000 streams opened and reset; the origin saw only the bystander's requests and at
    // most a handful of the flood's.
    let flood = count.load(Ordering::SeqCst).saturating_sub(served);
    assert!(flood < 50, "the upstream saw {flood} flood requests");
    assert_eq!(failed, 0);
    assert!(served > 0);
    let s = admin_stats(admin);
    assert!(
        s["http.main.http2.rx_reset"] > 0
            || s["http.main.downstream_rq_too_many_premature_resets"] > 0
            || s["http.main.http2.connection_error"] > 0,
        "{s:?}"
    );
}

#[test]
fn a_continuation_flood_is_cut_off() {
    let (p, admin, _origin, count) = setup("", Duration::ZERO);
    let by = Bystander::start(p.addr);
    let r = attack(&p, "continuation", 5);
    let (served, failed) = by.finish();
    assert_eq!(r["closed"], true, "{r}");
    assert!(!r["goaway"].as_array().unwrap().is_empty(), "{r}");
    // Cut off before the 2,000,000 empty frames were all sent (100 to a write). A
    // flood of 1.8 MB once fit in the socket buffers of a loaded machine before the proxy got
    // to read it; 18 MB cannot.
    assert!(r["sent"].as_u64().unwrap() < 20_000, "{r}");
    assert_eq!(count.load(Ordering::SeqCst), served);
    assert_eq!(failed, 0);
    assert!(admin_stats(admin)["http.main.http2.connection_error"] >= 1);
}

#[test]
fn an_hpack_bomb_beyond_the_header_list_limit_is_refused() {
    let (p, _admin, _origin, count) = setup("", Duration::ZERO);
    let before = p.rss_kib();
    let by = Bystander::start(p.addr);
    let r = attack(&p, "hpack_bomb", 3);
    let (served, failed) = by.finish();
    // 800 KB of decoded headers from 5 KB on the wire: never a request upstream.
    assert_eq!(count.load(Ordering::SeqCst), served, "{r}");
    assert!(
        !r["rst"].as_array().unwrap().is_empty()
            || !r["goaway"].as_array().unwrap().is_empty()
            || !r["status"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert_eq!(failed, 0);
    assert!(
        p.rss_kib() < before + 20_000,
        "{} -> {}",
        before,
        p.rss_kib()
    );
}

#[test]
fn ping_settings_and_window_update_floods_from_a_peer_that_never_reads_are_bounded() {
    for mode in ["ping_flood", "settings_flood", "window_update_flood"] {
        let (p, _admin, _origin, _count) = setup("", Duration::ZERO);
        let before = p.rss_kib();
        let by = Bystander::start(p.addr);
        let r = attack(&p, mode, 2);
        let (served, failed) = by.finish();
        assert_eq!(failed, 0, "{mode}: {r}");
        assert!(served > 0, "{mode}");
        // 200,000 frames (each asking for an answer) cost the proxy a bounded amount.
        let after = p.rss_kib();
        assert!(
            after < before + 30_000,
            "{mode}: {before} -> {after} KiB: {r}"
        );
    }
}

#[test]
fn empty_data_frames_end_the_stream() {
    let (p, _admin, _origin, _count) = setup("", Duration::ZERO);
    let by = Bystander::start(p.addr);
    let r = attack(&p, "empty_data", 3);
    let (_served, failed) = by.finish();
    assert!(
        !r["rst"].as_array().unwrap().is_empty() || r["closed"] == true,
        "{r}"
    );
    assert_eq!(failed, 0);
}

#[test]
fn streams_beyond_the_limit_are_refused() {
    let (p, _admin, _origin, count) = setup(
        "http2_protocol_options: { max_concurrent_streams: 20 }",
        Duration::from_millis(1500),
    );
    let r = attack(&p, "too_many_streams", 3);
    let refused = r["rst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| **c == REFUSED_STREAM)
        .count();
    assert!(refused >= 250, "{r}");
    // The upstream sees at most the 20 streams allowed at once (in 3 s, with 1.5 s each).
    let seen = count.load(Ordering::SeqCst);
    assert!(seen <= 40, "{seen}");
}

#[test]
fn a_stream_that_sends_nothing_times_out() {
    let (p, _admin, _origin, _count) = setup("request_body_timeout: 1s", Duration::ZERO);
    let t0 = std::time::Instant::now();
    let r = attack(&p, "silent_stream", 5);
    // Answered (408) after request_body_timeout, not held forever.
    assert!(!r["status"].as_array().unwrap().is_empty(), "{r}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}
