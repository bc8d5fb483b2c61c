//! HTTP/2 to upstreams (`protocol: http2` on a cluster): HTTP/1.1 and HTTP/2 clients through
//! multiplexed upstream connections, the request head as the upstream sees it, bodies and
//! trailers both ways, an upstream that sends GOAWAY after a few requests (as cloud load
//! balancers do) or refuses streams costing no failed request, the server's stream limit
//! opening more connections, `max_requests_per_connection`, and the config's checks. Upstreams:
//! `ringway-bench origin --h2c`, and a scripted Python `h2` server for what it must do wrong.

use crate::support;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::*;

/// A scripted HTTP/2 server (Python `h2`, one thread per connection). Options (JSON on argv):
/// `delay` (seconds before each response), `max_streams` (its SETTINGS), `goaway_after` (a
/// graceful GOAWAY after that many responses on a connection, then the close), `refuse_first`
/// (each connection's first stream gets RST_STREAM REFUSED_STREAM), `trailers` (sent after the
/// body), `freeze_after` (after that many responses the connection reads and answers nothing
/// more, PINGs included). Each response is `200` with a JSON body: the request's headers, body length and
/// trailers, and the connection's number.
const H2_SERVER: &str = r#"
import json, socket, sys, threading, time
import h2.connection, h2.config, h2.events, h2.errors, h2.settings
cfg = json.loads(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
count = [0]
lock = threading.Lock()
def serve(sock, n):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    c.initiate_connection()
    if cfg.get("max_streams"):
        c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: cfg["max_streams"]})
    sock.sendall(c.data_to_send())
    heads, bodies, trailers, due = {}, {}, {}, []
    served = 0
    first = True
    frozen = False
    closing = False
    sock.settimeout(0.02)
    while True:
        if frozen:
            time.sleep(0.05)
            continue
        try:
            data = sock.recv(65536)
            if not data:
                return
        except socket.timeout:
            data = b""
        except OSError:
            return
        for ev in c.receive_data(data) if data else []:
            if isinstance(ev, h2.events.RequestReceived):
                if first and cfg.get("refuse_first"):
                    first = False
                    c.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                    continue
                first = False
                heads[ev.stream_id] = ev.headers
                bodies[ev.stream_id] = 0
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in bodies:
                    bodies[ev.stream_id] += len(ev.data)
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers[ev.stream_id] = ev.headers
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in heads:
                due.append((time.time() + cfg.get("delay", 0), ev.stream_id))
        now = time.time()
        for d, sid in sorted(due):
            if d > now or closing:
                continue
            due.remove((d, sid))
            body = json.dumps({"headers": heads[sid], "body_len": bodies[sid],
                               "trailers": trailers.get(sid, []), "conn": n}).encode()
            c.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            c.send_data(sid, body, end_stream=not cfg.get("trailers"))
            if cfg.get("trailers"):
                c.send_headers(sid, cfg["trailers"], end_stream=True)
            served += 1
            if cfg.get("freeze_after") and served >= cfg["freeze_after"]:
                frozen = True
            if cfg.get("goaway_after") and served >= cfg["goaway_after"]:
                c.close_connection(last_stream_id=sid)
                closing = True
        try:
            sock.sendall(c.data_to_send())
        except OSError:
            return
        if closing and not due:
            time.sleep(0.05)
            sock.close()
            return
while True:
    s, _ = srv.accept()
    with lock:
        count[0] += 1
        n = count[0]
    threading.Thread(target=serve, args=(s, n), daemon=True).start()
"#;

/// The scripted server with `opts`, killed when dropped.
fn py_h2(opts: Value) -> PyServer {
    PyServer::start(H2_SERVER, &[&opts.to_string()], "Python h2")
}

fn config(origin: SocketAddr, cluster_extra: &str) -> String {
    ConfigBuilder::simple(origin)
        .admin()
        .cluster_extra(&format!("protocol: http2\n{cluster_extra}"))
        .yaml()
}

fn curl(args: &[&str]) -> String {
    let out = run_bounded(Command::new("curl").args(args), Duration::from_secs(20));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The JSON the scripted server answered with, via an HTTP/1.1 client.
fn fetch(p: &Proxy, path: &str) -> (u16, Value) {
    let r = get(p.addr, "app.test", path);
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status(), v)
}

fn has(headers: &Value, name: &str, value: &str) -> bool {
    headers
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == name && h[1] == value)
}

#[test]
fn http1_and_http2_clients_through_a_multiplexed_upstream() {
    let origin = BenchOrigin::start(&["--h2c"]);
    let (p, admin) = Proxy::start_with_admin(&config(origin.addr, ""), &["--workers", "1"]);
    let url = format!("http://{}/x", p.addr);
    let w = "%{http_version} %{http_code} %{size_download}";
    assert_eq!(
        curl(&["-s", "-o", "/dev/null", "-w", w, &url]),
        "1.1 200 128"
    );
    assert_eq!(
        curl(&[
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            w,
            &url
        ]),
        "2 200 128"
    );
    let out = run_bounded(
        Command::new("h2load").args([
            "-n",
            "3000",
            "-c",
            "4",
            "-m",
            "50",
            &format!("http://{}/", p.addr),
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    // 200 streams at once went over a handful of upstream connections, not 200.
    let s = admin_stats(admin);
    let cx = s["cluster.origin.upstream_cx_total"];
    assert!((1..=8).contains(&cx), "upstream_cx_total {cx}");
}

#[test]
fn the_upstream_sees_an_http2_request_mapped_from_the_model() {
    let origin = py_h2(json!({}));
    let p = Proxy::start(&config(origin.addr, ""));
    let out = curl(&[
        "-s",
        "-H",
        "cookie: a=1",
        "-H",
        "x-custom: v",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "hello",
        "--http2-prior-knowledge",
        &format!("http://{}/svc/Method?q=1", p.addr),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let h = &v["headers"];
    assert!(has(h, ":method", "POST"), "{h}");
    assert!(has(h, ":path", "/svc/Method?q=1"), "{h}");
    assert!(has(h, ":scheme", "http"), "{h}");
    assert!(has(h, ":authority", &p.addr.to_string()), "{h}");
    assert!(has(h, "te", "trailers"), "{h}");
    assert!(has(h, "x-custom", "v"), "{h}");
    assert!(has(h, "content-length", "5"), "{h}");
    assert!(has(h, "x-forwarded-proto", "http"), "{h}");
    assert_eq!(v["body_len"], 5);
    // An HTTP/1.1 client: Host becomes :authority, no `host` or connection headers go up.
    let (status, v) = fetch(&p, "/h1");
    assert_eq!(status, 200);
    let h = &v["headers"];
    assert!(has(h, ":authority", "app.test"), "{h}");
    for bad in ["host", "connection", "keep-alive", "transfer-encoding"] {
        assert!(
            !h.as_array().unwrap().iter().any(|x| x[0] == bad),
            "{bad}: {h}"
        );
    }
}

#[test]
fn bodies_without_length_and_trailers_cross_to_and_from_http2() {
    let origin = py_h2(json!({"trailers": [["grpc-status", "0"], ["x-up", "t"]]}));
    let yaml = ConfigBuilder::simple(origin.addr)
        .hcm_extra("http_protocol_options: { enable_trailers: true }")
        .cluster_extra("protocol: http2")
        .yaml();
    let p = Proxy::start(&yaml);
    // HTTP/1.1 chunked request with a trailer, answered chunked with the upstream's trailers.
    let mut c = Client::connect(p.addr);
    c.send(
        b"POST /up HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-req: r\r\n\r\n",
    );
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let mut raw = c.take_buffered();
    let t0 = Instant::now();
    while find(&raw, b"\r\n0\r\n").is_none() || !raw.ends_with(b"\r\n\r\n") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{raw:?}");
        match c.read_exact_raw(1) {
            Some(b) => raw.extend_from_slice(&b),
            None => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("grpc-status: 0\r\n"), "{text}");
    assert!(text.contains("x-up: t\r\n"), "{text}");
    let (body, _) = dechunk(&raw).expect("a chunked body");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body_len"], 7);
    assert_eq!(v["trailers"], json!([["x-req", "r"]]));
}

#[test]
fn goaway_after_a_few_requests_costs_no_failed_request() {
    let origin = py_h2(json!({"goaway_after": 3}));
    let (p, admin) = Proxy::start_with_admin(&config(origin.addr, ""), &["--workers", "1"]);
    for i in 0..20 {
        let (status, v) = fetch(&p, &format!("/r{i}"));
        assert_eq!(status, 200, "request {i}: {v}");
    }
    let s = admin_stats(admin);
    assert!(
        s["cluster.origin.upstream_cx_total"] >= 7,
        "{}",
        s["cluster.origin.upstream_cx_total"]
    );
    assert_eq!(s["cluster.origin.upstream_rq_5xx"], 0);
}

#[test]
fn refused_streams_are_retried_on_another_connection() {
    let origin = py_h2(json!({"refuse_first": true}));
    let (p, admin) = Proxy::start_with_admin(
        &config(origin.addr, "max_requests_per_connection: 2"),
        &["--workers", "1"],
    );
    for i in 0..6 {
        let (status, v) = fetch(&p, &format!("/r{i}"));
        assert_eq!(status, 200, "request {i}: {v}");
    }
    let s = admin_stats(admin);
    assert!(s["cluster.origin.upstream_rq_retry"] >= 1, "{s:?}");
}

#[test]
fn a_full_connection_opens_another() {
    let origin = py_h2(json!({"max_streams": 2, "delay": 0.5}));
    let (p, admin) = Proxy::start_with_admin(&config(origin.addr, ""), &["--workers", "1"]);
    let addr = p.addr;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..6)
        .map(|i| std::thread::spawn(move || get(addr, "app.test", &format!("/c{i}")).status()))
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    // Two streams per connection at most: six at once needed three connections, and ran side
    // by side rather than in six turns.
    assert!(
        t0.elapsed() < Duration::from_millis(6 * 500),
        "{:?}",
        t0.elapsed()
    );
    let s = admin_stats(admin);
    assert!(s["cluster.origin.upstream_cx_total"] >= 3, "{s:?}");
}

#[test]
fn max_requests_per_connection_closes_connections() {
    let origin = py_h2(json!({}));
    let (p, admin) = Proxy::start_with_admin(
        &config(origin.addr, "max_requests_per_connection: 2"),
        &["--workers", "1"],
    );
    let mut conns = Vec::new();
    for i in 0..6 {
        let (status, v) = fetch(&p, &format!("/m{i}"));
        assert_eq!(status, 200);
        conns.push(v["conn"].as_u64().unwrap());
    }
    assert_eq!(conns, vec![1, 1, 2, 2, 3, 3], "{conns:?}");
    let s = admin_stats(admin);
    assert_eq!(s["cluster.origin.upstream_cx_total"], 3);
}

#[test]
fn cluster_protocol_is_validated() {
    let o: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (extra, want) in [
        ("protocol: http3", "protocol must be http1, http2 or auto"),
        (
            "max_requests_per_connection: 0",
            "max_requests_per_connection must be at least 1",
        ),
        (
            "protocol: http2\nupstream_proxy_protocol: {}",
            "an HTTP/2 connection carries many clients",
        ),
        (
            "protocol: http2\nhttp2_protocol_options: { initial_stream_window_size: 1 }",
            "initial_stream_window_size must be 65535..=2147483647",
        ),
        (
            "protocol: http2\nhttp2_protocol_options: { connection_keepalive: { timeout: 1s } }",
            "interval is required",
        ),
    ] {
        let yaml = ConfigBuilder::simple(o).cluster_extra(extra).yaml();
        assert_validate_refuses_with(&yaml, &[want]);
    }
}

#[test]
fn keepalive_pings_give_up_a_silent_connection_and_idle_ones_close() {
    let origin = py_h2(json!({"freeze_after": 1}));
    let yaml = config(
        origin.addr,
        "http2_protocol_options: { connection_keepalive: { interval: 200ms, timeout: 300ms } }",
    );
    let p = Proxy::start(&yaml);
    let (status, v) = fetch(&p, "/1");
    assert_eq!((status, v["conn"].as_u64()), (200, Some(1)), "{v}");
    // The server went silent: the keep-alive PING goes unanswered and the connection is given
    // up, so the next request opens a new one instead of waiting on the dead one.
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    let (status, v) = fetch(&p, "/2");
    assert_eq!((status, v["conn"].as_u64()), (200, Some(2)), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(p);
    // Idle: the cluster's idle_timeout closes a connection with no stream open.
    let origin = py_h2(json!({}));
    let p = Proxy::start(&config(origin.addr, "idle_timeout: 300ms"));
    assert_eq!(fetch(&p, "/a").1["conn"], 1);
    assert_eq!(fetch(&p, "/b").1["conn"], 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(fetch(&p, "/c").1["conn"], 2);
}

#[test]
fn protocol_auto_speaks_http2_where_tls_chooses_h2() {
    let dir = scratch_dir().join("certs");
    gen_certs(&dir);
    let f = |n: &str| dir.join(n).display().to_string();
    let origin = BenchOrigin::start(&[
        "--tls-cert",
        &f("a.example.test.crt"),
        "--tls-key",
        &f("a.example.test.key"),
    ]);
    let yaml = ConfigBuilder::simple(origin.addr)
        .admin()
        .cluster_extra(&format!(
            "protocol: auto\ntls: {{ sni: a.example.test, verify: {{ ca: {{ filename: {} }} }} }}",
            f("ca.crt")
        ))
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    // The first request finds out on its own connection (ALPN h2) and goes over HTTP/2 on it;
    // the rest share that connection.
    for i in 0..5 {
        let r = get(p.addr, "app.test", "/echo");
        assert_eq!(r.status(), 200, "request {i}: {r:?}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["version"], "HTTP/2.0", "request {i}: {v}");
    }
    let s = admin_stats(admin);
    assert_eq!(s["cluster.origin.upstream_cx_total"], 1, "{s:?}");
    drop(p);
    // A plain cluster with `auto` speaks HTTP/1.1.
    let plain = BenchOrigin::start(&["--h2c"]);
    let yaml = ConfigBuilder::simple(plain.addr)
        .cluster_extra("protocol: auto")
        .yaml();
    let p = Proxy::start(&yaml);
    let r = get(p.addr, "app.test", "/echo");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], "HTTP/1.1", "{v}");
}
