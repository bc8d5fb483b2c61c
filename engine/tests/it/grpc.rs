//! gRPC through the proxy with real gRPC peers (Python `grpcio` client and server, raw bytes as
//! messages): unary, client-streaming, server-streaming and bidirectional calls with metadata
//! and trailers intact, large messages, errors with their status, details and trailing
//! metadata, deadlines (the client's, and `grpc-timeout` enforced by the proxy), cancellation
//! reaching the server, and the proxy's own errors answered as gRPC statuses (no route:
//! UNIMPLEMENTED; no upstream: UNAVAILABLE; a rate limit: RESOURCE_EXHAUSTED).

use crate::support;

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};
use support::*;

/// A gRPC server for service `test.Echo` (generic handlers, bytes in and out). Prints its port.
const SERVER: &str = r#"
import sys, time, threading
from concurrent import futures
import grpc
cancelled = {"last": False}
def unary(req, ctx):
    ctx.send_initial_metadata((("x-initial", "i1"),))
    ctx.set_trailing_metadata((("x-trailer", "t1"),))
    return req[::-1]
def client_stream(it, ctx):
    return str(sum(len(m) for m in it)).encode()
def server_stream(req, ctx):
    n = int(req.decode())
    for i in range(n):
        yield (b"%d:" % i) + b"x" * 1000
def bidi(it, ctx):
    for m in it:
        yield b"echo:" + m
def sleep(req, ctx):
    time.sleep(int(req.decode()) / 1000)
    return b"slept"
def fail(req, ctx):
    ctx.set_trailing_metadata((("x-why", "because"),))
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nope: " + req.decode())
def large(req, ctx):
    return b"L" * int(req.decode())
def slow_stream(req, ctx):
    done = threading.Event()
    def gone():
        cancelled["last"] = True
        done.set()
    cancelled["last"] = False
    ctx.add_callback(gone)
    for i in range(100):
        yield b"tick"
        if done.wait(0.1):
            return
def was_cancelled(req, ctx):
    for _ in range(50):
        if cancelled["last"]:
            break
        time.sleep(0.1)
    return b"yes" if cancelled["last"] else b"no"
h = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Large": grpc.unary_unary_rpc_method_handler(large),
    "SlowStream": grpc.unary_stream_rpc_method_handler(slow_stream),
    "WasCancelled": grpc.unary_unary_rpc_method_handler(was_cancelled),
})
opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
s = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=opts)
s.add_generic_rpc_handlers((h,))
port = s.add_insecure_port("127.0.0.1:0")
s.start()
print(port, flush=True)
s.wait_for_termination()
"#;

/// The client: runs the calls named on stdin (`{"port": P, "calls": [...]}`) and prints one
/// JSON result per call.
const CLIENT: &str = r#"
import json, sys, time
import grpc
spec = json.load(sys.stdin)
opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
ch = grpc.insecure_channel("127.0.0.1:%d" % spec["port"], options=opts)
def uu(m): return ch.unary_unary(m)
def us(m): return ch.unary_stream(m)
def su(m): return ch.stream_unary(m)
def ss(m): return ch.stream_stream(m)
def err(e):
    return {"code": e.code().name, "details": e.details(),
            "trailers": [list(x) for x in (e.trailing_metadata() or ())]}
out = {}
for name in spec["calls"]:
    try:
        if name == "unary":
            r, call = uu("/test.Echo/Unary").with_call(b"hello", timeout=10)
            out[name] = {"reply": r.decode(), "initial": [list(x) for x in call.initial_metadata()],
                         "trailers": [list(x) for x in call.trailing_metadata()]}
        elif name == "client_stream":
            r = su("/test.Echo/ClientStream")(iter([b"a" * 100000] * 10), timeout=10)
            out[name] = {"reply": r.decode()}
        elif name == "server_stream":
            rs = list(us("/test.Echo/ServerStream")(b"50", timeout=10))
            out[name] = {"count": len(rs), "first": rs[0][:3].decode(), "last": rs[-1][:3].decode(),
                         "sizes": sorted(set(len(x) for x in rs))}
        elif name == "bidi":
            rs = [x.decode() for x in ss("/test.Echo/Bidi")(iter([b"%d" % i for i in range(20)]), timeout=10)]
            out[name] = {"replies": rs}
        elif name == "large":
            r = uu("/test.Echo/Large")(b"4194304", timeout=20)
            big = uu("/test.Echo/Unary")(b"z" * (5 << 20), timeout=20)
            out[name] = {"len": len(r), "echo_len": len(big)}
        elif name == "fail":
            uu("/test.Echo/Fail")(b"x", timeout=10)
            out[name] = {"code": "OK"}
        elif name == "deadline":
            t0 = time.time()
            uu("/test.Echo/Sleep")(b"3000", timeout=0.5)
            out[name] = {"code": "OK"}
        elif name == "cancel":
            it = us("/test.Echo/SlowStream")(b"", timeout=10)
            first = next(it)
            it.cancel()
            r = uu("/test.Echo/WasCancelled")(b"", timeout=10)
            out[name] = {"first": first.decode(), "server_saw": r.decode()}
        elif name == "no_route":
            uu("/other.Svc/Method")(b"x", timeout=10)
            out[name] = {"code": "OK"}
        elif name == "down":
            uu("/down.Svc/Method")(b"x", timeout=10)
            out[name] = {"code": "OK"}
        elif name == "twice":
            uu("/test.Echo/Unary")(b"1", timeout=10)
            uu("/test.Echo/Unary")(b"2", timeout=10)
            out[name] = {"code": "OK"}
    except grpc.RpcError as e:
        out[name] = err(e)
        if name == "deadline":
            out[name]["secs"] = time.time() - t0
print(json.dumps(out))
"#;

/// The gRPC server, killed when dropped.
fn grpc_server() -> PyServer {
    PyServer::start(SERVER, &[], "grpcio")
}

fn calls(p: &Proxy, names: &[&str]) -> Value {
    let spec = json!({"port": p.addr.port(), "calls": names});
    let out = run_python(CLIENT, spec.to_string().as_bytes(), Duration::from_secs(90));
    assert!(out.status.success(), "{}\n{}", out.stderr, out.stdout);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// gRPC routes: `/test.Echo/` to the server over HTTP/2, `/down.Svc/` to a closed port.
fn grpc_config(server: SocketAddr, hcm_extra: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new()
        .listener("grpc", "127.0.0.1:0")
        .virtual_host("grpc", &["*"])
        .route_prefix("/test.Echo/", "echo")
        .route_prefix("/down.Svc/", "down")
        .cluster("echo", &[server])
        .cluster_extra("protocol: http2")
        .cluster("down", &[closed_port()])
        .cluster_extra("protocol: http2");
    if !hcm_extra.is_empty() {
        b = b.hcm_extra(hcm_extra);
    }
    b
}

#[test]
fn the_four_kinds_of_call_with_metadata_trailers_and_large_messages() {
    let server = grpc_server();
    let p = Proxy::start(&grpc_config(server.addr, "").yaml());
    let r = calls(
        &p,
        &["unary", "client_stream", "server_stream", "bidi", "large"],
    );
    assert_eq!(r["unary"]["reply"], "olleh", "{r}");
    assert!(r["unary"]["initial"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-initial", "i1"])));
    assert!(r["unary"]["trailers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-trailer", "t1"])));
    assert_eq!(r["client_stream"]["reply"], "1000000", "{r}");
    assert_eq!(r["server_stream"]["count"], 50, "{r}");
    assert_eq!(r["server_stream"]["first"], "0:x");
    assert_eq!(r["server_stream"]["last"], "49:");
    let replies: Vec<String> = (0..20).map(|i| format!("echo:{i}")).collect();
    assert_eq!(r["bidi"]["replies"], json!(replies), "{r}");
    assert_eq!(r["large"]["len"], 4 << 20, "{r}");
    assert_eq!(r["large"]["echo_len"], 5 << 20, "{r}");
}

#[test]
fn errors_deadlines_and_cancellation() {
    let server = grpc_server();
    let p = Proxy::start(&grpc_config(server.addr, "").yaml());
    let r = calls(&p, &["fail", "deadline", "cancel"]);
    assert_eq!(r["fail"]["code"], "NOT_FOUND", "{r}");
    assert_eq!(r["fail"]["details"], "nope: x");
    assert!(r["fail"]["trailers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-why", "because"])));
    assert_eq!(r["deadline"]["code"], "DEADLINE_EXCEEDED", "{r}");
    assert!(r["deadline"]["secs"].as_f64().unwrap() < 2.0, "{r}");
    assert_eq!(r["cancel"]["first"], "tick", "{r}");
    assert_eq!(r["cancel"]["server_saw"], "yes", "{r}");
}

#[test]
fn the_proxys_own_errors_are_grpc_statuses() {
    let server = grpc_server();
    let p = Proxy::start(&grpc_config(server.addr, "").yaml());
    let r = calls(&p, &["no_route", "down"]);
    assert_eq!(r["no_route"]["code"], "UNIMPLEMENTED", "{r}");
    assert_eq!(r["down"]["code"], "UNAVAILABLE", "{r}");
    drop(p);
    // A rate limit: the second call in the minute is RESOURCE_EXHAUSTED.
    let yaml = grpc_config(server.addr, "")
        .http_filter(
            "local_ratelimit",
            "stat_prefix: rl\ntoken_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }",
        )
        .yaml();
    let p = Proxy::start(&yaml);
    let r = calls(&p, &["twice"]);
    assert_eq!(r["twice"]["code"], "RESOURCE_EXHAUSTED", "{r}");
}

/// `grpc-timeout` bounds the upstream call even when the client never gives up itself (a raw
/// HTTP/2 client: grpcio would cancel at its own deadline first).
#[test]
fn grpc_timeout_is_the_route_timeout_capped_by_max_grpc_timeout() {
    let server = grpc_server();
    let raw = |p: &Proxy, timeout: &str| {
        let script = format!(
            r#"
import socket, time, json, h2.connection, h2.config, h2.events
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
c.initiate_connection()
c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
    (":path", "/test.Echo/Sleep"), ("content-type", "application/grpc"), ("te", "trailers"),
    ("grpc-timeout", "{timeout}")])
c.send_data(1, b"\x00\x00\x00\x00\x04" + b"3000", end_stream=True)
s.sendall(c.data_to_send())
t0 = time.time()
out = {{"headers": []}}
done = False
while not done:
    data = s.recv(65536)
    if not data:
        break
    for ev in c.receive_data(data):
        if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            out["headers"] += [list(h) for h in ev.headers]
        if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
            done = True
    s.sendall(c.data_to_send())
out["secs"] = time.time() - t0
print(json.dumps(out))
"#,
            port = p.addr.port()
        );
        let out = run_python(&script, b"", Duration::from_secs(30));
        assert!(out.status.success(), "{}", out.stderr);
        serde_json::from_str::<Value>(out.stdout.trim()).unwrap()
    };
    let p = Proxy::start(&grpc_config(server.addr, "").yaml());
    let r = raw(&p, "400m");
    assert!(
        r["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["grpc-status", "4"])),
        "{r}"
    );
    let secs = r["secs"].as_f64().unwrap();
    assert!((0.3..2.0).contains(&secs), "{r}");
    drop(p);
    // max_grpc_timeout caps what the client asks for.
    let yaml = ConfigBuilder::new()
        .listener("grpc", "127.0.0.1:0")
        .virtual_host("grpc", &["*"])
        .route(
            "prefix: /test.Echo/",
            "route: { cluster: echo, max_grpc_timeout: 300ms }",
        )
        .cluster("echo", &[server.addr])
        .cluster_extra("protocol: http2")
        .yaml();
    let p = Proxy::start(&yaml);
    let r = raw(&p, "20S");
    assert!(
        r["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["grpc-status", "4"])),
        "{r}"
    );
    assert!(r["secs"].as_f64().unwrap() < 2.0, "{r}");
}

/// gRPC frames of a body: `(flags, payload)` each.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert!(body.len() >= 5 + len, "a cut frame: {body:?}");
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "bytes after the frames: {body:?}");
    out
}

fn b64(src: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in src.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decode base64 made of padded groups (concatenated pieces allowed).
fn unb64(s: &[u8]) -> Vec<u8> {
    let v = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let mut out = Vec::new();
    for g in s.chunks(4) {
        let pad = g.iter().filter(|&&c| c == b'=').count();
        let mut n = 0;
        for &c in &g[..4 - pad] {
            n = (n << 6) | v(c);
        }
        n <<= 6 * pad;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// A gRPC-Web call over HTTP/1.1, as a browser makes it: the response.
fn grpc_web(p: &Proxy, path: &str, ct: &str, body: &[u8], origin: Option<&str>) -> RawMessage {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: app.test\r\ncontent-type: {ct}\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(o) = origin {
        req.push_str(&format!("origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    let mut c = Client::connect(p.addr);
    c.send(&raw);
    c.response(false)
}

fn message(m: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8];
    f.extend_from_slice(&(m.len() as u32).to_be_bytes());
    f.extend_from_slice(m);
    f
}

#[test]
fn grpc_web_binary_and_text_with_cors() {
    let server = grpc_server();
    let yaml = grpc_config(server.addr, "")
        .http_filter(
            "cors",
            "allow_origin_string_match: [{ exact: \"https://app.example\" }]\n\
             allow_methods: \"POST, OPTIONS\"\n\
             allow_headers: \"content-type, x-grpc-web, x-user-agent\"\n\
             expose_headers: \"grpc-status, grpc-message\"",
        )
        .http_filter("grpc_web", "")
        .yaml();
    let p = Proxy::start(&yaml);
    // Binary: the reply's message, then the trailers as a frame flagged 0x80.
    let r = grpc_web(
        &p,
        "/test.Echo/Unary",
        "application/grpc-web+proto",
        &message(b"hello"),
        Some("https://app.example"),
    );
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/grpc-web+proto"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(r
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("grpc-status")));
    let f = frames(&r.body);
    assert_eq!(f[0], (0, b"olleh".to_vec()), "{f:?}");
    let trailers = String::from_utf8_lossy(&f.last().unwrap().1).to_string();
    assert_eq!(f.last().unwrap().0, 0x80);
    assert!(trailers.contains("grpc-status:0\r\n"), "{trailers}");
    assert!(trailers.contains("x-trailer:t1\r\n"), "{trailers}");
    // Text: base64 both ways.
    let r = grpc_web(
        &p,
        "/test.Echo/Unary",
        "application/grpc-web-text",
        b64(&message(b"abc")).as_bytes(),
        None,
    );
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/grpc-web-text+proto")
    );
    let f = frames(&unb64(&r.body));
    assert_eq!(f[0], (0, b"cba".to_vec()), "{f:?}");
    assert!(String::from_utf8_lossy(&f.last().unwrap().1).contains("grpc-status:0"));
    // An error is a trailers-only response from the server: one trailer frame as the body.
    let r = grpc_web(
        &p,
        "/test.Echo/Fail",
        "application/grpc-web+proto",
        &message(b"q"),
        None,
    );
    assert_eq!(r.status(), 200, "{r:?}");
    let f = frames(&r.body);
    assert_eq!(f.len(), 1, "{f:?}");
    let t = String::from_utf8_lossy(&f[0].1).to_string();
    assert_eq!(f[0].0, 0x80);
    assert!(t.contains("grpc-status:5\r\n"), "{t}");
    assert!(t.contains("grpc-message:nope: q\r\n"), "{t}");
    // The CORS preflight a browser sends first.
    let mut c = Client::connect(p.addr);
    let pre = c.roundtrip(
        b"OPTIONS /test.Echo/Unary HTTP/1.1\r\nhost: app.test\r\norigin: https://app.example\r\n\
          access-control-request-method: POST\r\naccess-control-request-headers: content-type,x-grpc-web\r\n\r\n",
    );
    assert!(pre.status() == 200 || pre.status() == 204, "{pre:?}");
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn grpc_stats_count_calls_per_method_by_status() {
    let server = grpc_server();
    let yaml = grpc_config(server.addr, "")
        .admin()
        .http_filter("grpc_stats", "")
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let r = calls(&p, &["unary", "twice", "fail", "no_route"]);
    assert_eq!(r["fail"]["code"], "NOT_FOUND", "{r}");
    let s = admin_stats(admin);
    let stat = |n: &str| s.get(&format!("http.grpc.grpc.{n}")).copied();
    assert_eq!(stat("test.Echo.Unary.total"), Some(3), "{s:?}");
    assert_eq!(stat("test.Echo.Unary.success"), Some(3));
    assert_eq!(stat("test.Echo.Unary.0"), Some(3));
    assert_eq!(stat("test.Echo.Fail.total"), Some(1));
    assert_eq!(stat("test.Echo.Fail.failure"), Some(1));
    assert_eq!(stat("test.Echo.Fail.5"), Some(1));
    // The proxy's own answer (no route: UNIMPLEMENTED) counts too.
    assert_eq!(stat("other.Svc.Method.12"), Some(1), "{s:?}");
}
