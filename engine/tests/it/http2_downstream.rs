//! HTTP/2 from clients to HTTP/1.1 upstreams: h2c by prior knowledge (`codec_type: auto`
//! detecting the preface, and `http2`), h2 over TLS by ALPN, the header mapping of RFC 9113
//! (`:authority` to Host, cookies joined, `te` dropped), bodies both ways with and without a
//! length, trailers both ways, local replies, streams served concurrently, a stream whose
//! reader stalls never stalling its neighbours, graceful GOAWAY on drain, the access log's
//! protocol, and the config's checks. Real clients: curl (`--http2-prior-knowledge`,
//! `--http2`), h2load, and Python's `h2` as a raw client driven by a JSON script.

use crate::support;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::*;

/// A raw HTTP/2 client (Python `h2`): reads `{port, requests: [{headers, body, trailers,
/// stall}], conn_window, wait_goaway}` on stdin, runs every request concurrently on one
/// connection, prints `{streams: {id: {status, headers, body, trailers, reset}}, goaway: [...]}`.
/// A `stall` stream's received data is never acknowledged (its window closes); the connection's
/// window is opened by `conn_window` so other streams go on.
const H2_CLIENT: &str = r#"
import json, socket, sys, time
import h2.connection, h2.config, h2.events, h2.errors
# python-h2 takes any GOAWAY as the end of the connection; a graceful one lets open streams
# finish (and PINGs go on), so frames after it are processed as before.
from h2.connection import H2ConnectionStateMachine as SM, ConnectionState as CS, ConnectionInputs as CI
for i in CI:
    SM._transitions.setdefault((CS.CLOSED, i), (None, CS.CLOSED))
spec = json.load(sys.stdin)
s = socket.create_connection(("127.0.0.1", spec["port"]), timeout=10)
cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                validate_outbound_headers=False, normalize_outbound_headers=False)
c = h2.connection.H2Connection(config=cfg)
c.initiate_connection()
if spec.get("conn_window"):
    c.increment_flow_control_window(spec["conn_window"])
s.sendall(c.data_to_send())
out = {"streams": {}, "goaway": []}
todo = {}
stall = set()
for r in spec["requests"]:
    sid = c.get_next_available_stream_id()
    body = r.get("body", "").encode()
    tr = r.get("trailers")
    c.send_headers(sid, [tuple(h) for h in r["headers"]], end_stream=not body and not tr)
    todo[sid] = [body, tr, bool(body) or bool(tr)]
    out["streams"][str(sid)] = {"status": None, "headers": [], "body": "", "trailers": [], "reset": None, "ended": False}
    if r.get("stall"):
        stall.add(sid)
s.sendall(c.data_to_send())
deadline = time.time() + spec.get("timeout", 10)
def pump_bodies():
    for sid, t in todo.items():
        body, tr, open_ = t
        while body and c.local_flow_control_window(sid) > 0:
            n = min(len(body), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            c.send_data(sid, body[:n])
            body = body[n:]
        t[0] = body
        if open_ and not body:
            if tr:
                c.send_headers(sid, [tuple(h) for h in tr], end_stream=True)
            else:
                c.end_stream(sid)
            t[2] = False
def done():
    if spec.get("wait_goaway") and not any(g["last"] < 2**31 - 1 for g in out["goaway"]):
        return False
    return all(v["ended"] or v["reset"] is not None or (int(k) in stall and v["status"])
               for k, v in out["streams"].items())
closed = False
while not done() and time.time() < deadline and not closed:
    pump_bodies()
    s.sendall(c.data_to_send())
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    if not data:
        closed = True
        break
    for ev in c.receive_data(data):
        if isinstance(ev, h2.events.ResponseReceived):
            st = out["streams"][str(ev.stream_id)]
            st["headers"] = [[k, v] for k, v in ev.headers]
            st["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            out["streams"][str(ev.stream_id)]["body"] += ev.data.decode("latin-1")
            if ev.stream_id not in stall:
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                c.increment_flow_control_window(ev.flow_controlled_length)
        elif isinstance(ev, h2.events.TrailersReceived):
            out["streams"][str(ev.stream_id)]["trailers"] = [[k, v] for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            out["streams"][str(ev.stream_id)]["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            out["streams"][str(ev.stream_id)]["reset"] = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            out["goaway"].append({"code": int(ev.error_code), "last": ev.last_stream_id})
    s.sendall(c.data_to_send())
out["closed"] = closed
print(json.dumps(out))
"#;

/// Run the raw client; its JSON result.
fn h2_client(spec: Value) -> Value {
    let out = run_python(
        H2_CLIENT,
        spec.to_string().as_bytes(),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "h2 client failed: {}\n{}",
        out.stderr,
        out.stdout
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn get(path: &str) -> Value {
    json!({"headers": [[":method", "GET"], [":scheme", "http"], [":authority", "app.test"], [":path", path]]})
}

fn header<'a>(stream: &'a Value, name: &str) -> Option<&'a str> {
    stream["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn proxy_with(origin: SocketAddr, hcm_extra: &str, cluster_extra: &str) -> Proxy {
    let mut cfg = ConfigBuilder::simple(origin);
    if !hcm_extra.is_empty() {
        cfg = cfg.hcm_extra(hcm_extra);
    }
    if !cluster_extra.is_empty() {
        cfg = cfg.cluster_extra(cluster_extra);
    }
    Proxy::start(&cfg.yaml())
}

/// An origin that answers each request with `200` and the request's body (`content-length`),
/// keep-alive.
fn echo_body_origin() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request_framed() {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-request-line: {}\r\n\r\n",
                req.body.len(),
                req.start
            );
            let mut out = head.into_bytes();
            out.extend_from_slice(&req.body);
            if !c.write(&out) {
                break;
            }
        }
    })
}

fn curl(args: &[&str]) -> std::process::Output {
    run_bounded(Command::new("curl").args(args), Duration::from_secs(20))
}

#[test]
fn h2c_prior_knowledge_with_curl_and_http1_beside_it() {
    let origin = BenchOrigin::start(&[]);
    let p = proxy_with(origin.addr, "", "");
    let url = format!("http://{}/hello", p.addr);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    // The same listener still speaks HTTP/1.1 (codec_type auto).
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1 200");
}

#[test]
fn headers_are_mapped_for_the_http1_upstream() {
    let origin = RawOrigin::echo_head();
    let p = proxy_with(origin.addr, "", "");
    let mut req = get("/path?q=1");
    req["headers"].as_array_mut().unwrap().extend([
        json!(["cookie", "a=1"]),
        json!(["cookie", "b=2"]),
        json!(["te", "trailers"]),
        json!(["x-custom", "v"]),
    ]);
    let r = h2_client(json!({"port": p.addr.port(), "requests": [req]}));
    let s = &r["streams"]["1"];
    assert_eq!(s["status"], 200, "{r}");
    let head = s["body"].as_str().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /path?q=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: app.test\r\n"), "{head}");
    assert!(head.contains("\r\ncookie: a=1; b=2\r\n"), "{head}");
    assert!(head.contains("\r\nx-custom: v\r\n"), "{head}");
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");
    assert!(!head.contains("\r\nte:"), "{head}");
    // What HTTP/2 forbids never reaches the client.
    for h in s["headers"].as_array().unwrap() {
        let name = h[0].as_str().unwrap();
        assert!(
            !["connection", "keep-alive", "transfer-encoding"].contains(&name),
            "{r}"
        );
    }
}

#[test]
fn bodies_with_and_without_a_length_both_ways() {
    let origin = echo_body_origin();
    let p = proxy_with(origin.addr, "", "");
    let big = "x".repeat(300_000);
    let post = |path: &str, body: &str, length: bool| {
        let mut h = vec![
            json!([":method", "POST"]),
            json!([":scheme", "http"]),
            json!([":authority", "app.test"]),
            json!([":path", path]),
        ];
        if length {
            h.push(json!(["content-length", body.len().to_string()]));
        }
        json!({"headers": h, "body": body})
    };
    let r = h2_client(json!({
        "port": p.addr.port(),
        "requests": [post("/a", "small", true), post("/b", &big, true), post("/c", &big, false)],
    }));
    for (id, want) in [("1", "small"), ("3", big.as_str()), ("5", big.as_str())] {
        let s = &r["streams"][id];
        assert_eq!(s["status"], 200, "{id}: {}", s["headers"]);
        assert_eq!(s["body"].as_str().unwrap().len(), want.len(), "{id}");
        assert!(s["body"].as_str().unwrap() == want, "{id}: body differs");
        assert_eq!(
            header(s, "content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    // With a length the upstream got it; without one, the body went chunked.
    let raw = String::from_utf8_lossy(&origin.received_bytes()).to_ascii_lowercase();
    assert!(raw.contains("post /a http/1.1\r\n"), "{raw:.300}");
    assert!(raw.contains("content-length: 300000\r\n"));
    assert!(raw.contains("transfer-encoding: chunked\r\n"));
}

#[test]
fn trailers_cross_in_both_directions() {
    // The origin reads a chunked request with its trailers and answers chunked with trailers.
    let origin = RawOrigin::start(|mut c| {
        while c.read_request_framed().is_some() {
            let resp = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\nx-t: up\r\n\r\n";
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    });
    let p = proxy_with(
        origin.addr,
        "",
        "http_protocol_options: { enable_trailers: true }",
    );
    let req = json!({
        "headers": [[":method", "POST"], [":scheme", "http"], [":authority", "app.test"], [":path", "/t"]],
        "body": "ping",
        "trailers": [["x-req-trailer", "down"]],
    });
    let r = h2_client(json!({"port": p.addr.port(), "requests": [req]}));
    let s = &r["streams"]["1"];
    assert_eq!(s["status"], 200, "{r}");
    assert_eq!(s["body"], "hello");
    let t: Vec<(String, String)> = s["trailers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    assert!(t.contains(&("grpc-status".into(), "0".into())), "{t:?}");
    assert!(t.contains(&("x-t".into(), "up".into())), "{t:?}");
    let raw = String::from_utf8_lossy(&origin.received_bytes()).to_ascii_lowercase();
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(
        raw.contains("4\r\nping\r\n0\r\nx-req-trailer: down\r\n\r\n"),
        "{raw}"
    );
}

#[test]
fn local_replies_and_direct_responses_go_out_as_http2() {
    let origin = RawOrigin::ok();
    let cfg = ConfigBuilder::new()
        .listener("l", "127.0.0.1:0")
        .virtual_host("app", &["app.test"])
        .direct_response("path: /direct", 203, "direct body")
        .route_prefix("/", "c")
        .cluster("c", &[closed_port()])
        .cluster("unused", &[origin.addr]);
    let p = Proxy::start(&cfg.yaml());
    let mut other = get("/x");
    other["headers"][2] = json!([":authority", "nowhere.test"]);
    let r =
        h2_client(json!({"port": p.addr.port(), "requests": [get("/direct"), other, get("/x")]}));
    let s = &r["streams"]["1"];
    assert_eq!(s["status"], 203, "{r}");
    assert_eq!(s["body"], "direct body");
    let s = &r["streams"]["3"];
    assert_eq!(s["status"], 404, "{r}");
    assert_eq!(header(s, "x-ringway-reason"), Some("no_route"));
    let s = &r["streams"]["5"];
    assert_eq!(s["status"], 503, "{r}");
    assert!(header(s, "x-ringway-reason").is_some(), "{r}");
}

#[test]
fn streams_of_one_connection_are_served_concurrently() {
    let (origin, count) = RawOrigin::counting("slow", Duration::from_millis(400));
    let p = proxy_with(origin.addr, "", "");
    let reqs: Vec<Value> = (0..16).map(|i| get(&format!("/{i}"))).collect();
    let t0 = Instant::now();
    let r = h2_client(json!({"port": p.addr.port(), "requests": reqs}));
    let took = t0.elapsed();
    for (id, s) in r["streams"].as_object().unwrap() {
        assert_eq!(s["status"], 200, "{id}: {r}");
        assert_eq!(s["body"], "slow");
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 16);
    // One after another would take 16 x 400 ms.
    assert!(took < Duration::from_millis(16 * 400 / 2), "{took:?}");
}

#[test]
fn a_stalled_stream_does_not_stall_its_neighbours() {
    let origin = BenchOrigin::start(&["--body-size", "2000000"]);
    let small = BenchOrigin::start(&[]);
    let cfg = ConfigBuilder::new()
        .listener("l", "127.0.0.1:0")
        .virtual_host("app", &["*"])
        .route_prefix("/big", "big")
        .route_prefix("/", "small")
        .cluster("big", &[origin.addr])
        .cluster("small", &[small.addr]);
    let p = Proxy::start(&cfg.yaml());
    let mut stalled = get("/big");
    stalled["stall"] = json!(true);
    let r = h2_client(json!({
        "port": p.addr.port(),
        "conn_window": 10_000_000,
        "requests": [stalled, get("/a"), get("/b")],
        "timeout": 5,
    }));
    let big = &r["streams"]["1"];
    assert_eq!(big["status"], 200, "{r}");
    // Only the stream's window (64 KiB by default) got through.
    let got = big["body"].as_str().unwrap().len();
    assert!(got <= 65_536, "{got}");
    assert_eq!(big["ended"], false);
    for id in ["3", "5"] {
        assert_eq!(r["streams"][id]["status"], 200, "{r}");
        assert_eq!(r["streams"][id]["ended"], true, "{r}");
    }
}

/// Until the origin has read a request (bounded).
fn wait_for_request(count: &std::sync::atomic::AtomicUsize) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while count.load(std::sync::atomic::Ordering::SeqCst) == 0 && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn drain_sends_goaway_and_lets_the_open_stream_finish() {
    let (origin, count) = RawOrigin::counting("done", Duration::from_millis(800));
    let mut p = proxy_with(origin.addr, "", "");
    let pid = p.pid();
    let port = p.addr.port();
    let signaller = std::thread::spawn(move || {
        // Once the request is at the origin (its stream open on the proxy), however long the
        // client took to start.
        wait_for_request(&count);
        // SIGTERM: the worker drains.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    });
    let r = h2_client(json!({"port": port, "requests": [get("/slow")], "wait_goaway": true}));
    signaller.join().unwrap();
    let s = &r["streams"]["1"];
    assert_eq!(s["status"], 200, "{r}");
    assert_eq!(s["body"], "done");
    let goaways = r["goaway"].as_array().unwrap();
    assert!(!goaways.is_empty(), "{r}");
    // The first GOAWAY announces the drain without refusing anything; the last names the
    // stream that was served.
    assert_eq!(goaways[0]["last"], (1u64 << 31) - 1, "{r}");
    assert_eq!(goaways.last().unwrap()["last"], 1, "{r}");
    assert_eq!(goaways.last().unwrap()["code"], 0, "{r}");
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn a_reload_sends_goaway_lets_the_open_stream_finish_and_keeps_serving() {
    let (origin, count) = RawOrigin::counting("done", Duration::from_millis(800));
    let mut p = proxy_with(origin.addr, "", "");
    let pid = p.pid();
    let port = p.addr.port();
    let signaller = std::thread::spawn(move || {
        // Once the request is at the origin (its stream open on the proxy), however long the
        // client took to start.
        wait_for_request(&count);
        // SIGHUP: a new generation of workers; this connection's drains politely.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    });
    let r = h2_client(json!({"port": port, "requests": [get("/slow")], "wait_goaway": true}));
    signaller.join().unwrap();
    let s = &r["streams"]["1"];
    assert_eq!(s["status"], 200, "{r}");
    assert_eq!(s["body"], "done");
    let goaways = r["goaway"].as_array().unwrap();
    assert_eq!(goaways[0]["last"], (1u64 << 31) - 1, "{r}");
    assert_eq!(goaways.last().unwrap()["last"], 1, "{r}");
    assert_eq!(goaways.last().unwrap()["code"], 0, "{r}");
    // The process serves on, HTTP/2 included.
    assert!(p.is_running());
    let r = h2_client(json!({"port": port, "requests": [get("/again")]}));
    assert_eq!(r["streams"]["1"]["status"], 200, "{r}");
}

#[test]
fn h2load_multiplexes_without_failures() {
    if Command::new("h2load").arg("--version").output().is_err() {
        panic!("h2load missing: run scripts/test.sh, which installs nghttp2-client");
    }
    let origin = BenchOrigin::start(&[]);
    let p = proxy_with(origin.addr, "", "");
    let out = run_bounded(
        Command::new("h2load").args([
            "-n",
            "5000",
            "-c",
            "10",
            "-m",
            "100",
            &format!("http://{}/", p.addr),
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 5000 2xx"), "{text}");
}

#[test]
fn access_log_says_http2() {
    let origin = RawOrigin::ok();
    let log = scratch_dir().join("h2.log");
    let cfg = ConfigBuilder::simple(origin.addr).hcm_extra(&format!(
        "access_log:\n  - path: {}\n    format: \"%PROTOCOL% %REQ(:METHOD)% %REQ(:AUTHORITY)% %REQ(:PATH)% %RESPONSE_CODE% %BYTES_SENT%\\n\"",
        log.display()
    ));
    let p = Proxy::start(&cfg.yaml());
    let url = format!("http://{}/logged", p.addr);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-H",
        "host: app.test",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    p.stop();
    let lines = wait_lines(&log, 1);
    assert_eq!(lines[0], "HTTP/2 GET app.test /logged 200 2");
}

#[test]
fn codec_type_http1_and_http2_are_honoured() {
    let origin = RawOrigin::ok();
    // http1: the preface is not HTTP/1.1; curl's HTTP/2 attempt fails.
    let p = proxy_with(origin.addr, "codec_type: http1", "");
    let url = format!("http://{}/", p.addr);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    let out = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    drop(p);
    // http2 (Envoy's spelling): HTTP/2 only.
    let p = proxy_with(origin.addr, "codec_type: HTTP2", "");
    let url = format!("http://{}/", p.addr);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let r = get_raw(p.addr);
    assert!(
        r.is_none(),
        "an HTTP/1.1 request got an HTTP/1.1 answer: {r:?}"
    );
}

/// One HTTP/1.1 request on a fresh connection: the response, or `None` if the connection was
/// closed without one.
fn get_raw(addr: SocketAddr) -> Option<RawMessage> {
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    c.try_response(false)
        .filter(|m| m.start.starts_with("HTTP/1"))
}

#[test]
fn http2_settings_are_validated() {
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (extra, want) in [
        (
            "codec_type: http3",
            "codec_type must be auto, http1 or http2",
        ),
        (
            "http2_protocol_options: { initial_stream_window_size: 100 }",
            "initial_stream_window_size must be 65535..=2147483647",
        ),
        (
            "http2_protocol_options: { max_concurrent_streams: 0 }",
            "max_concurrent_streams must be 1..=2147483647",
        ),
        (
            "http2_protocol_options: { connection_keepalive: { timeout: 1s } }",
            "interval is required",
        ),
        (
            "http2_protocol_options: { max_frame_size: 5 }",
            "max_frame_size: unknown key",
        ),
    ] {
        let yaml = ConfigBuilder::simple(origin).hcm_extra(extra).yaml();
        assert_validate_refuses_with(&yaml, &[want]);
    }
}

#[test]
fn h2_over_tls_by_alpn() {
    let dir = scratch_dir().join("certs");
    gen_certs(&dir);
    let origin = RawOrigin::echo_head();
    let crt = dir.join("a.example.test.crt");
    let key = dir.join("a.example.test.key");
    let ca = dir.join("ca.crt");
    let yaml = |alpn: &str| {
        format!(
            "listeners:
  - name: tls
    address: 127.0.0.1:0
    filter_chains:
      - tls:
          tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]
          {alpn}
        filters:
          - http_connection_manager:
              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    endpoints: [\"{}\"]
",
            crt.display(),
            key.display(),
            origin.addr
        )
    };
    let fetch = |p: &Proxy| {
        let out = curl(&[
            "-s",
            "--http2",
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("a.example.test:{}:127.0.0.1", p.addr.port()),
            "-w",
            "\n%{http_version} %{http_code}",
            &format!("https://a.example.test:{}/tls", p.addr.port()),
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let p = Proxy::start(&yaml("alpn_protocols: [h2, http/1.1]"));
    let got = fetch(&p);
    assert!(got.ends_with("\n2 200"), "{got}");
    let head = got.to_ascii_lowercase();
    assert!(head.contains("x-forwarded-proto: https"), "{head}");
    assert!(head.contains("host: a.example.test:"), "{head}");
    drop(p);
    // Without h2 in ALPN (Envoy's default: nothing offered) clients stay on HTTP/1.1.
    let p = Proxy::start(&yaml(""));
    let got = fetch(&p);
    assert!(got.ends_with("\n1.1 200"), "{got}");
    drop(p);
    // h2 cannot be offered on a chain whose connection manager speaks HTTP/1 only.
    let bad = yaml("alpn_protocols: [h2]").replace(
        "          - http_connection_manager:\n",
        "          - http_connection_manager:\n              codec_type: http1\n",
    );
    assert_validate_refuses_with(&bad, &["its codec_type is http1"]);
}

/// RFC 8441: a WebSocket over HTTP/2 (extended CONNECT) to an HTTP/1.1 WebSocket upstream.
#[test]
fn websocket_over_http2_to_an_http1_upstream() {
    let origin = RawOrigin::start(|mut c| {
        let Some(req) = c.read_request() else { return };
        let ok = req.start.starts_with("GET /ws HTTP/1.1")
            && req.header("upgrade") == Some("websocket")
            && req
                .header("sec-websocket-key")
                .is_some_and(|k| k.len() == 24)
            && req.header("sec-websocket-version") == Some("13");
        if !ok {
            let _ = c.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            return;
        }
        let _ = c.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
              sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        // Echo what comes through the tunnel, then close when the client does.
        while let Some(b) = c.read_exact_raw(5) {
            if !c.write(&b) {
                return;
            }
        }
    });
    let p = proxy_with(origin.addr, "", "");
    let script = format!(
        r#"
import socket, json, h2.connection, h2.config, h2.events
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
c.initiate_connection()
s.sendall(c.data_to_send())
out = {{"settings": False, "status": None, "echo": "", "ended": False, "headers": []}}
sent = False
while not out["ended"]:
    data = s.recv(65536)
    if not data:
        break
    for ev in c.receive_data(data):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            out["settings"] = True
        elif isinstance(ev, h2.events.ResponseReceived):
            out["headers"] = [list(h) for h in ev.headers]
            out["status"] = dict(ev.headers)[":status"]
            c.send_data(1, b"hello")
            c.send_data(1, b"world")
        elif isinstance(ev, h2.events.DataReceived):
            out["echo"] += ev.data.decode()
            c.acknowledge_received_data(ev.flow_controlled_length, 1)
            if out["echo"] == "helloworld" and not out.get("closing"):
                out["closing"] = True
                c.end_stream(1)
        elif isinstance(ev, h2.events.StreamEnded):
            out["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            out["reset"] = int(ev.error_code)
            out["ended"] = True
    if out["settings"] and not sent:
        c.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                           (":path", "/ws"), (":authority", "app.test"), ("sec-websocket-version", "13")])
        sent = True
    s.sendall(c.data_to_send())
print(json.dumps(out))
"#,
        port = p.addr.port()
    );
    let out = run_python(&script, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    let r: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["status"], "200", "{r}");
    assert_eq!(r["echo"], "helloworld", "{r}");
    assert_eq!(r["ended"], true, "{r}");
    assert!(r.get("reset").is_none(), "{r}");
    // The 101's upgrade headers stay on the HTTP/1.1 hop.
    let names: Vec<&str> = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"sec-websocket-accept"), "{r}");
    assert!(!names.contains(&"upgrade"), "{r}");
}

/// `connection_keepalive` on the connection manager: a client that answers no PING is closed.
#[test]
fn a_client_that_answers_no_keepalive_ping_is_closed() {
    let origin = RawOrigin::ok();
    let yaml = ConfigBuilder::simple(origin.addr)
        .admin()
        .hcm_extra(
            "http2_protocol_options: { connection_keepalive: { interval: 300ms, timeout: 300ms } }",
        )
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    // The preface and SETTINGS, then nothing read or answered: the proxy's PING goes
    // unanswered and the connection is closed within about interval + timeout.
    let script = format!(
        r#"
import socket, time
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
t0 = time.time()
while True:
    d = s.recv(65536)
    if not d:
        break
print(round(time.time() - t0, 2))
"#,
        port = p.addr.port()
    );
    let out = run_python(&script, b"", Duration::from_secs(20));
    assert!(out.status.success(), "{}", out.stderr);
    let secs: f64 = out.stdout.trim().parse().unwrap();
    assert!(secs < 3.0, "closed after {secs} s");
    eventually("keepalive_timeout counted", || {
        admin_stats(admin)
            .get("http.main.http2.keepalive_timeout")
            .is_some_and(|&n| n == 1)
    });
    // A client that answers PINGs (curl, with a request taking longer than the interval) is
    // served.
    let (slow, _) = RawOrigin::counting("slow", Duration::from_millis(1200));
    drop(p);
    let yaml = ConfigBuilder::simple(slow.addr)
        .hcm_extra(
            "http2_protocol_options: { connection_keepalive: { interval: 300ms, timeout: 300ms } }",
        )
        .yaml();
    let p = Proxy::start(&yaml);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        &format!("http://{}/", p.addr),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "slow");
}

/// An HTTP/2 client's upload to an HTTP/1 upstream that stops taking it and never answers: the
/// stream gets a 504 (`upstream_timeout`) after `request_body_timeout`, and a neighbour stream on
/// the same connection is served meanwhile.
#[test]
fn an_upload_the_upstream_stops_taking_is_a_504_for_its_stream_only() {
    let origin = RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request_head() {
            if req.start.starts_with("POST") {
                // Reads nothing more, says nothing.
                std::thread::sleep(Duration::from_secs(20));
                return;
            }
            if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") {
                return;
            }
        }
    });
    let p = proxy_with(origin.addr, "request_body_timeout: 1s", "");
    // Far more than the socket buffers and windows between the client and the origin hold
    // (the origin's receive window stays small while it reads nothing).
    let upload = json!({
        "headers": [[":method", "POST"], [":scheme", "http"], [":authority", "app.test"],
                    [":path", "/up"]],
        "body": "u".repeat(16 << 20),
    });
    let r = h2_client(json!({
        "port": p.addr.port(),
        "requests": [upload, get("/a")],
        "timeout": 20,
    }));
    let up = &r["streams"]["1"];
    assert_eq!(up["status"], 504, "{}", up["headers"]);
    assert_eq!(header(up, "x-ringway-reason"), Some("upstream_timeout"));
    assert_eq!(r["streams"]["3"]["status"], 200);
    assert_eq!(r["streams"]["3"]["body"], "ok");
}
