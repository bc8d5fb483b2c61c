//! Clients that misbehave at random beside clients that do not, through one worker whose pooled
//! upstream connections every request shares.
//!
//! The misbehaving ones, each on a connection of its own: a request body cut short by a close
//! or by a reset (the upstream has the head and part of the body), a chunked body cut short, a
//! bad chunk (400), a head sent in pieces with pauses, a large answer abandoned after its head
//! (by a close or a reset). The well-behaved ones keep one keep-alive
//! connection each and send GETs, bodies with a length and chunked bodies of random sizes, now
//! and then two requests in one write. What must hold: every well-behaved request gets its own
//! answer (the origin echoes its id and the body length it received) in order, so no upstream
//! connection carrying part of an abandoned request was ever used again; the proxy keeps serving
//! and never panics. The same for HTTP/2 streams reset in the middle of their bodies or as soon
//! as a large answer's head arrives, beside well-behaved streams on the same connection and
//! HTTP/1 clients on others.
use crate::support;
use std::{net::SocketAddr, thread, time::Duration};

use support::*;

/// An origin that answers every request with its id and the body length it received.
fn echo_origin() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request_framed() {
            let id = req.header("x-id").unwrap_or("-").to_string();
            let mut body = format!("id={id} len={}", req.body.len());
            if req.start.starts_with("GET /big ") {
                // An answer larger than the sockets hold: a client that stops reading it
                // leaves most of it in the upstream connection.
                body.push_str(&"big ".repeat(1 << 20));
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nx-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if !c.write(resp.as_bytes()) {
                return;
            }
        }
    })
}

/// A well-behaved request with id `id` and a body of `len` bytes (none, with a length, or
/// chunked in pieces, as `kind` says), and the answer it must get.
fn good_request(id: u64, kind: u64, len: usize) -> (Vec<u8>, String) {
    let head = |framing: &str| {
        format!("POST /good HTTP/1.1\r\nhost: chaos.test\r\nx-id: {id}\r\n{framing}\r\n")
    };
    let mut req = Vec::new();
    let sent = match kind {
        0 => {
            req.extend_from_slice(
                format!("GET /good HTTP/1.1\r\nhost: chaos.test\r\nx-id: {id}\r\n\r\n").as_bytes(),
            );
            0
        }
        1 => {
            req.extend_from_slice(head(&format!("content-length: {len}\r\n")).as_bytes());
            req.extend(std::iter::repeat_n(b'b', len));
            len
        }
        _ => {
            req.extend_from_slice(head("transfer-encoding: chunked\r\n").as_bytes());
            let mut left = len;
            while left > 0 {
                let n = left.min(700);
                req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                req.extend(std::iter::repeat_n(b'c', n));
                req.extend_from_slice(b"\r\n");
                left -= n;
            }
            req.extend_from_slice(b"0\r\n\r\n");
            len
        }
    };
    (req, format!("id={id} len={sent}"))
}

/// One misbehaving client, on a connection of its own, as `kind` says.
fn bad_client(proxy: SocketAddr, id: u64, kind: u64) {
    let mut c = Client::connect(proxy);
    let head = |framing: &str| {
        format!("POST /bad HTTP/1.1\r\nhost: chaos.test\r\nx-id: bad{id}\r\n{framing}\r\n")
    };
    match kind {
        // A body cut short by a close (FIN), then by a reset.
        0 | 1 => {
            c.send(head("content-length: 5000\r\n").as_bytes());
            c.send(&[b'x'; 1200]);
            if kind == 1 {
                let s = socket2::SockRef::from(&c.stream);
                s.set_linger(Some(Duration::ZERO)).expect("linger");
            }
            // Let the head and the first bytes reach the upstream first.
            thread::sleep(Duration::from_millis(5));
        }
        // A chunked body cut short.
        2 => {
            c.send(head("transfer-encoding: chunked\r\n").as_bytes());
            c.send(b"400\r\n");
            c.send(&[b'y'; 300]);
            thread::sleep(Duration::from_millis(5));
        }
        // A bad chunk after a good one: a 400, and the connection closes.
        3 => {
            c.send(head("transfer-encoding: chunked\r\n").as_bytes());
            c.send(b"3\r\nabc\r\nzz\r\n");
            let r = c.try_response(false);
            assert!(
                r.as_ref().is_none_or(|r| r.status() == 400),
                "bad chunk: {r:?}"
            );
        }
        // A large answer the client reads the start of, then goes away (a close, then a
        // reset): the rest of it stays in the upstream connection, which must not be reused.
        5 | 6 => {
            c.send(
                format!("GET /big HTTP/1.1\r\nhost: chaos.test\r\nx-id: bad{id}\r\n\r\n")
                    .as_bytes(),
            );
            let head = c.read_head().expect("the large answer's head");
            assert!(head.start.starts_with("HTTP/1.1 200 "), "{head:?}");
            if kind == 6 {
                let s = socket2::SockRef::from(&c.stream);
                s.set_linger(Some(Duration::ZERO)).expect("linger");
            }
        }
        // A head in pieces, with pauses: well-formed, so it is answered.
        _ => {
            let req = format!("GET /slow HTTP/1.1\r\nhost: chaos.test\r\nx-id: bad{id}\r\n\r\n");
            for piece in req.as_bytes().chunks(9) {
                c.send(piece);
                thread::sleep(Duration::from_millis(2));
            }
            let r = c.try_response(false).expect("the slow head's answer");
            assert_eq!(r.body_str(), format!("id=bad{id} len=0"), "{r:?}");
        }
    }
}

/// `n` rounds: a well-behaved request (now and then two in one write) on the client's keep-alive
/// connection, and one time in three a misbehaving client beside it. Returns the well-behaved
/// answers checked.
fn client(proxy: SocketAddr, seed: u64, first_id: u64, n: u64) -> usize {
    let mut rng = Rng(seed);
    let mut c = Client::connect(proxy);
    let mut checked = 0;
    for round in 0..n {
        let id = first_id + 2 * round;
        let (mut bytes, mut want) = (Vec::new(), Vec::new());
        let pipelined = rng.below(5) == 0;
        for k in 0..1 + u64::from(pipelined) {
            let len = rng.below(3000) as usize;
            let (req, answer) = good_request(id + k, rng.below(3), len);
            bytes.extend_from_slice(&req);
            want.push(answer);
        }
        c.send(&bytes);
        if rng.below(3) == 0 {
            bad_client(proxy, id, rng.below(7));
        }
        for w in want {
            let r = c
                .try_response(false)
                .unwrap_or_else(|| panic!("no answer for {w}"));
            assert!(r.start.starts_with("HTTP/1.1 200 "), "{w}: {r:?}");
            assert_eq!(r.body_str(), w, "{r:?}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn misbehaving_clients_never_disturb_the_others() {
    let origin = echo_origin();
    let proxy = Proxy::start(&ConfigBuilder::simple(origin.addr).top("workers: 1").yaml());
    let clients: Vec<_> = (0..4u64)
        .map(|k| {
            let addr = proxy.addr;
            let seed = 0x2545_f491_4f6c_dd1d ^ (k + 1);
            thread::spawn(move || client(addr, seed, k * 100_000, 120))
        })
        .collect();
    let mut checked = 0;
    for h in clients {
        match h.join() {
            Ok(n) => checked += n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
    assert!(checked >= 480, "{checked} answers");
    // And a request after it all.
    let mut after = Client::connect(proxy.addr);
    let (req, want) = good_request(1, 1, 10);
    after.send(&req);
    let r = after
        .try_response(false)
        .expect("an answer after the chaos");
    assert_eq!(r.body_str(), want, "{r:?}");
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

/// An HTTP/2 client (Python `h2`) on one connection: reads `{port, requests: [{id, len,
/// reset, abandon}]}` on stdin and opens a stream for each, a POST with a body of `len` bytes,
/// one after the other; a `reset` stream sends half its body, waits a moment (so the proxy has
/// forwarded the head upstream) and resets (CANCEL); an `abandon` stream is a `GET /big` (a
/// large answer) reset as soon as its head arrives. Prints `{id: {status, body, ended, reset}}` for the
/// streams it did not reset, once each has ended (or after 10 s).
const H2_CHAOS_CLIENT: &str = r#"
import json, socket, sys, time
import h2.connection, h2.config, h2.events
spec = json.load(sys.stdin)
s = socket.create_connection(("127.0.0.1", spec["port"]), timeout=10)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
c.initiate_connection()
c.increment_flow_control_window(1 << 24)
s.sendall(c.data_to_send())
out, want, abandon = {}, {}, set()
for r in spec["requests"]:
    sid = c.get_next_available_stream_id()
    if r.get("abandon"):
        c.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "chaos.test"),
                             (":path", "/big"), ("x-id", r["id"])], end_stream=True)
        abandon.add(sid)
        s.sendall(c.data_to_send())
        continue
    c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "chaos.test"),
                         (":path", "/h2"), ("x-id", r["id"]), ("content-length", str(r["len"]))])
    if r["reset"]:
        c.send_data(sid, b"r" * (r["len"] // 2))
        s.sendall(c.data_to_send())
        time.sleep(0.003)
        c.reset_stream(sid, error_code=8)
    else:
        c.send_data(sid, b"h" * r["len"], end_stream=True)
        want[sid] = r["id"]
        out[r["id"]] = {"status": None, "body": "", "ended": False, "reset": None}
    s.sendall(c.data_to_send())
deadline = time.time() + 10
while time.time() < deadline and not all(v["ended"] or v["reset"] is not None for v in out.values()):
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    if not data:
        break
    for ev in c.receive_data(data):
        if isinstance(ev, h2.events.DataReceived):
            try:
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except Exception:
                pass
        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id in abandon:
            abandon.discard(ev.stream_id)
            c.reset_stream(ev.stream_id, error_code=8)
        o = out.get(want.get(getattr(ev, "stream_id", None)))
        if o is None:
            continue
        if isinstance(ev, h2.events.ResponseReceived):
            o["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            o["body"] += ev.data.decode("latin-1")
        elif isinstance(ev, h2.events.StreamEnded):
            o["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            o["reset"] = int(ev.error_code)
    s.sendall(c.data_to_send())
print(json.dumps(out))
"#;

#[test]
fn http2_streams_reset_mid_body_never_disturb_the_others() {
    let origin = echo_origin();
    let proxy = Proxy::start(&ConfigBuilder::simple(origin.addr).top("workers: 1").yaml());
    // HTTP/1 neighbours share the worker's upstream pool with the HTTP/2 streams.
    let neighbours: Vec<_> = (0..2u64)
        .map(|k| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let mut rng = Rng(0x51_7cc1_b727_220a ^ (k + 1));
                let mut c = Client::connect(addr);
                for round in 0..150 {
                    let id = 500_000 + k * 1_000 + round;
                    let (req, want) = good_request(id, rng.below(3), rng.below(3000) as usize);
                    c.send(&req);
                    let r = c
                        .try_response(false)
                        .unwrap_or_else(|| panic!("no answer for {want}"));
                    assert_eq!(r.body_str(), want, "{r:?}");
                }
            })
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9);
    let (mut good, mut reset) = (0, 0);
    for conn in 0..3 {
        let requests: Vec<serde_json::Value> = (0..30)
            .map(|i| {
                let kind = rng.below(6);
                reset += usize::from(kind < 3);
                serde_json::json!({
                    "id": format!("h2-{conn}-{i}"),
                    "len": 200 + rng.below(3000),
                    "reset": kind < 2,
                    "abandon": kind == 2,
                })
            })
            .collect();
        let spec = serde_json::json!({"port": proxy.addr.port(), "requests": requests});
        let out = run_python(H2_CHAOS_CLIENT, spec.to_string().as_bytes(), WAIT + WAIT);
        assert!(out.status.success(), "{}", out.stderr);
        let streams: serde_json::Value = serde_json::from_str(&out.stdout).expect("client JSON");
        for r in &requests {
            if r["reset"].as_bool() == Some(true) || r["abandon"].as_bool() == Some(true) {
                continue;
            }
            let id = r["id"].as_str().expect("id");
            let s = &streams[id];
            assert_eq!(s["status"], 200, "{id}: {s}\n{}", proxy.log());
            assert_eq!(s["ended"], true, "{id}: {s}");
            assert_eq!(s["body"], format!("id={id} len={}", r["len"]), "{id}: {s}");
            good += 1;
        }
    }
    assert!(good > 30 && reset > 30, "good {good}, reset {reset}");
    for h in neighbours {
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
    }
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}
