//! Tracing through the real proxy: trace context propagated to a real origin (W3C and B3), the
//! sampling rules, and spans exported to a collector on loopback that checks every payload
//! (OTLP/HTTP JSON and Zipkin v2 JSON), batched, with nothing lost at shutdown and the proxy
//! unaffected when the collector is down.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use support::*;

/// A collector: records every POST (path, content type, parsed JSON body) and answers 200.
struct Collector {
    origin: RawOrigin,
    posts: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Collector {
    fn start() -> Collector {
        let posts: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
        let p = Arc::clone(&posts);
        let origin = RawOrigin::start(move |mut c| {
            while let Some(m) = c.read_request() {
                let path = m.start.split_whitespace().nth(1).unwrap_or("").to_string();
                let method = m.start.split_whitespace().next().unwrap_or("").to_string();
                assert_eq!(method, "POST", "{}", m.start);
                let ct = m.header("content-type").unwrap_or("").to_string();
                let body: Value = serde_json::from_slice(&m.body)
                    .unwrap_or_else(|e| panic!("export body is not JSON ({e}): {}", m.body_str()));
                p.lock().expect("lock").push((path, ct, body));
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if !c.write(ok) {
                    break;
                }
            }
        });
        Collector { origin, posts }
    }

    fn addr(&self) -> SocketAddr {
        self.origin.addr
    }

    fn posts(&self) -> Vec<(String, String, Value)> {
        self.posts.lock().expect("lock").clone()
    }

    /// Every OTLP span received so far, checked for shape.
    fn otlp_spans(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (path, ct, body) in self.posts() {
            assert_eq!(path, "/v1/traces");
            assert_eq!(ct, "application/json");
            let rs = body["resourceSpans"].as_array().expect("resourceSpans");
            assert_eq!(rs.len(), 1, "{body}");
            let ss = rs[0]["scopeSpans"].as_array().expect("scopeSpans");
            assert_eq!(ss[0]["scope"]["name"], "ringway");
            for s in ss[0]["spans"].as_array().expect("spans") {
                let mut s = s.clone();
                s["resource"] = rs[0]["resource"].clone();
                out.push(s);
            }
        }
        out
    }

    /// Every Zipkin span received so far.
    fn zipkin_spans(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (path, ct, body) in self.posts() {
            assert_eq!(path, "/api/v2/spans");
            assert_eq!(ct, "application/json");
            out.extend(body.as_array().expect("a list of spans").iter().cloned());
        }
        out
    }
}

/// [`simple_config`] with `tracing:` (`tracing` holds its keys) and cluster `otel` at `collector`.
fn config(origin: SocketAddr, collector: SocketAddr, tracing: &str) -> ConfigBuilder {
    ConfigBuilder::simple(origin)
        .top(&format!("tracing:\n{tracing}"))
        .cluster("otel", &[collector])
}

fn otlp(rate: &str) -> String {
    format!("  sample_rate: {rate}\n  flush_interval: 100ms\n  collector: {{ cluster: otel }}\n")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// An OTLP attribute's value (`stringValue`, `intValue` as a string, `boolValue`), as a string.
fn attr(span: &Value, key: &str) -> Option<String> {
    let a = span["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["key"] == key)?;
    let v = &a["value"];
    Some(if let Some(s) = v["stringValue"].as_str() {
        s.to_string()
    } else if let Some(i) = v["intValue"].as_str() {
        assert!(i.parse::<i64>().is_ok(), "intValue {i}");
        i.to_string()
    } else if let Some(b) = v["boolValue"].as_bool() {
        b.to_string()
    } else {
        panic!("attribute {key} has no typed value: {a}")
    })
}

fn nanos(v: &Value) -> u64 {
    v.as_str()
        .expect("OTLP times are decimal strings")
        .parse()
        .expect("decimal nanoseconds")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// `traceparent` as the origin received it: (trace id, parent id, flags).
fn traceparent(echo: &Value) -> (String, String, String) {
    let tp = header(echo, "traceparent").expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert!(is_hex(parts[1], 32) && is_hex(parts[2], 16), "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn header(echo: &Value, name: &str) -> Option<String> {
    let all: Vec<String> = echo_header_list(echo)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect();
    assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
    all.into_iter().next()
}

fn echo(addr: SocketAddr, path: &str, headers: &str) -> Value {
    let r = request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: svc.test:8080\r\nUser-Agent: trace-test/1\r\n{headers}\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status(), 200, "{}", r.body_str());
    echo_json(&r)
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn otlp_span_continues_a_w3c_trace() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    let yaml = config(
        origin.addr,
        col.addr(),
        &format!("{}  service_name: edge-proxy\n", otlp("0")),
    )
    .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "1"]);
    let before = now_ns();
    let e = echo(
        proxy.addr,
        "/echo?q=1",
        &format!("traceparent: {TP}\r\ntracestate: vendor=abc,other=1\r\nx-request-id: rid-77\r\n"),
    );
    let after = now_ns();
    // Upstream: same trace, ringway's span as the parent, sampled flag kept; tracestate as sent.
    let (trace, parent, flags) = traceparent(&e);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parent, "00f067aa0ba902b7", "ringway adds its own span");
    assert_eq!(
        flags, "01",
        "the caller's sampling decision is kept (rate 0)"
    );
    assert_eq!(
        header(&e, "tracestate").as_deref(),
        Some("vendor=abc,other=1")
    );

    eventually("the span reaches the collector", || {
        !col.otlp_spans().is_empty()
    });
    let spans = col.otlp_spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    let res: Vec<(String, String)> = s["resource"]["attributes"]
        .as_array()
        .expect("resource attributes")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().expect("key").to_string(),
                a["value"]["stringValue"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        res.contains(&("service.name".into(), "edge-proxy".into())),
        "{res:?}"
    );
    assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        s["spanId"],
        parent.as_str(),
        "the span upstream saw as parent"
    );
    assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(s["traceState"], "vendor=abc,other=1");
    assert_eq!(s["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(s["name"], "GET /*");
    let (start, end) = (nanos(&s["startTimeUnixNano"]), nanos(&s["endTimeUnixNano"]));
    // Wall clock vs. monotonic clock conversions: allow a few ms of skew.
    let skew = 5_000_000;
    assert!(
        before - skew <= start && start <= end && end <= after + skew,
        "{before} {start} {end} {after}"
    );
    for (k, v) in [
        ("http.request.method", "GET"),
        ("url.path", "/echo"),
        ("url.query", "q=1"),
        ("url.scheme", "http"),
        ("server.address", "svc.test"),
        ("server.port", "8080"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "trace-test/1"),
        ("client.address", "127.0.0.1"),
        ("http.route", "/*"),
        ("http.response.status_code", "200"),
        ("http.request.body.size", "0"),
        ("ringway.request_id", "rid-77"),
        ("ringway.listener", "main"),
        ("ringway.upstream.cluster", "origin"),
        ("ringway.upstream.address", &origin.addr.to_string()),
        ("ringway.upstream.reused", "false"),
    ] {
        assert_eq!(attr(s, k).as_deref(), Some(v), "attribute {k} in {s}");
    }
    assert!(attr(s, "error.type").is_none());
    assert_eq!(s["status"], serde_json::json!({}), "not an error");
    // The timing breakdown as events, in order, inside the span.
    let events: Vec<(String, u64)> = s["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").into(),
                nanos(&e["timeUnixNano"]),
            )
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["upstream_ready", "request_sent", "first_response_byte"]
    );
    let mut t = start;
    for (_, at) in &events {
        assert!(t <= *at && *at <= end, "{events:?} {start} {end}");
        t = *at;
    }
    proxy.stop();
}

#[test]
fn new_traces_follow_the_sample_rate_and_parents_decide() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    let proxy = Proxy::start_args(
        &config(origin.addr, col.addr(), &otlp("0")).yaml(),
        &["--workers", "1"],
    );
    // Rate 0, no context: a new trace, propagated but not sampled.
    let e = echo(proxy.addr, "/echo", "");
    let (trace, _, flags) = traceparent(&e);
    assert_eq!(flags, "00");
    assert!(header(&e, "tracestate").is_none());
    // A caller that says "not sampled" with rate 0: not sampled either.
    let e = echo(
        proxy.addr,
        "/echo",
        &format!("traceparent: {}\r\n", TP.replace("-01", "-00")),
    );
    assert_eq!(traceparent(&e).2, "00");
    // A caller that says "sampled": exported. Once it arrives, nothing else may have.
    let e = echo(proxy.addr, "/echo", &format!("traceparent: {TP}\r\n"));
    let (_, sampled_span, _) = traceparent(&e);
    eventually("the sampled span arrives", || !col.otlp_spans().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let spans = col.otlp_spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0]["spanId"], sampled_span.as_str());
    assert_ne!(spans[0]["traceId"], trace.as_str());
    proxy.stop();

    // Rate 1: new traces are sampled, but a caller's "not sampled" still wins.
    let col = Collector::start();
    let proxy = Proxy::start_args(
        &config(origin.addr, col.addr(), &otlp("1")).yaml(),
        &["--workers", "1"],
    );
    let e = echo(
        proxy.addr,
        "/echo",
        &format!("traceparent: {}\r\n", TP.replace("-01", "-00")),
    );
    assert_eq!(traceparent(&e).2, "00");
    let e = echo(proxy.addr, "/echo", "");
    let (trace, span, flags) = traceparent(&e);
    assert_eq!(flags, "01");
    eventually("the new trace's span arrives", || {
        !col.otlp_spans().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let spans = col.otlp_spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0]["traceId"], trace.as_str());
    assert_eq!(spans[0]["spanId"], span.as_str());
    assert!(spans[0].get("parentSpanId").is_none(), "a root span");
    proxy.stop();
}

#[test]
fn malformed_trace_headers_start_a_new_trace() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    let proxy = Proxy::start_args(
        &config(origin.addr, col.addr(), &otlp("1")).yaml(),
        &["--workers", "1"],
    );
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "nonsense",
    ] {
        let e = echo(
            proxy.addr,
            "/echo",
            &format!("traceparent: {bad}\r\ntracestate: k=v\r\n"),
        );
        let (trace, _, flags) = traceparent(&e);
        assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        assert_eq!(flags, "01", "{bad}");
        assert!(
            header(&e, "tracestate").is_none(),
            "tracestate of another trace must not travel with a new one ({bad})"
        );
    }
    eventually("five root spans", || col.otlp_spans().len() == 5);
    assert!(col
        .otlp_spans()
        .iter()
        .all(|s| s.get("parentSpanId").is_none()));
    proxy.stop();
}

#[test]
fn trace_headers_pass_untouched_without_tracing() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start_args(&simple_config(origin.addr), &["--workers", "1"]);
    let sent = [
        ("traceparent", "00-garbage"),
        ("tracestate", "a=1"),
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("b3", "0"),
    ];
    let extra: String = sent.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let e = echo(proxy.addr, "/echo", &extra);
    for (n, v) in sent {
        assert_eq!(header(&e, n).as_deref(), Some(v), "{n}");
    }
    assert!(header(&e, "x-b3-sampled").is_none());
    proxy.stop();
}

#[test]
fn b3_is_propagated_and_zipkin_spans_exported() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    let yaml = config(
        origin.addr,
        col.addr(),
        "  sample_rate: 0\n  flush_interval: 100ms\n  collector: { cluster: otel, format: zipkin_json }\n",
    )
    .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "1"]);
    // Multi-header B3, 64-bit trace id, sampled.
    let e = echo(
        proxy.addr,
        "/echo",
        "X-B3-TraceId: a3ce929d0e0e4736\r\nX-B3-SpanId: 00f067aa0ba902b7\r\n\
         X-B3-ParentSpanId: 1111111111111111\r\nX-B3-Sampled: 1\r\n",
    );
    assert_eq!(
        header(&e, "x-b3-traceid").as_deref(),
        Some("a3ce929d0e0e4736")
    );
    assert_eq!(
        header(&e, "x-b3-parentspanid").as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(header(&e, "x-b3-sampled").as_deref(), Some("1"));
    let span1 = header(&e, "x-b3-spanid").expect("x-b3-spanid");
    assert!(is_hex(&span1, 16) && span1 != "00f067aa0ba902b7");
    let (trace, tp_span, _) = traceparent(&e);
    assert_eq!(trace, "0000000000000000a3ce929d0e0e4736");
    assert_eq!(tp_span, span1);
    // Single-header B3, 128-bit, sampled.
    let e = echo(
        proxy.addr,
        "/echo?single",
        "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n",
    );
    let b3 = header(&e, "b3").expect("b3 upstream");
    let parts: Vec<&str> = b3.split('-').collect();
    assert_eq!(parts.len(), 4, "{b3}");
    assert_eq!(parts[0], "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(parts[2], "1");
    assert_eq!(parts[3], "e457b5a2e4d86bd1");
    let span2 = parts[1].to_string();
    assert!(
        header(&e, "x-b3-traceid").is_none(),
        "single form stays single"
    );
    // Not sampled (b3: 0): propagated as such, not exported.
    let e = echo(proxy.addr, "/echo", "b3: 0\r\n");
    assert!(header(&e, "b3").expect("b3").ends_with("-0"));

    eventually("two zipkin spans", || col.zipkin_spans().len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let spans = col.zipkin_spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let s = spans
        .iter()
        .find(|s| s["id"] == span1.as_str())
        .expect("the multi-header span");
    assert_eq!(s["traceId"], "a3ce929d0e0e4736", "64-bit ids stay 64-bit");
    assert_eq!(s["parentId"], "00f067aa0ba902b7");
    assert_eq!(s["kind"], "SERVER");
    assert_eq!(s["name"], "get /*");
    assert_eq!(s["localEndpoint"]["serviceName"], "ringway");
    assert_eq!(s["localEndpoint"]["ipv4"], "127.0.0.1");
    assert_eq!(s["remoteEndpoint"]["ipv4"], "127.0.0.1");
    let ts = s["timestamp"].as_u64().expect("timestamp µs");
    assert!(
        ts > 1_600_000_000_000_000 && ts < now_ns() / 1000 + 5_000_000,
        "{ts}"
    );
    assert!(s["duration"].as_u64().expect("duration µs") >= 1);
    assert_eq!(s["tags"]["http.response.status_code"], "200");
    assert_eq!(s["tags"]["http.request.method"], "GET");
    assert_eq!(s["tags"]["ringway.upstream.cluster"], "origin");
    let annotations: Vec<&str> = s["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .map(|a| a["value"].as_str().expect("value"))
        .collect();
    assert_eq!(
        annotations,
        ["upstream_ready", "request_sent", "first_response_byte"]
    );
    let s = spans
        .iter()
        .find(|s| s["id"] == span2.as_str())
        .expect("the single-header span");
    assert_eq!(s["traceId"], "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(s["parentId"], "e457b5a2e4d86bd1");
    assert_eq!(s["tags"]["url.query"], "single");
    proxy.stop();
}

#[test]
fn spans_are_batched() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    let yaml = config(
        origin.addr,
        col.addr(),
        "  flush_interval: 300ms\n  max_batch: 16\n  collector: { cluster: otel }\n",
    )
    .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "2"]);
    let mut ids = std::collections::HashSet::new();
    let mut c = Client::connect(proxy.addr);
    for i in 0..60 {
        let r = c.get("a", &format!("/echo?n={i}"));
        assert_eq!(r.status(), 200);
        ids.insert(traceparent(&echo_json(&r)).1);
    }
    for _ in 0..20 {
        let e = echo(proxy.addr, "/echo", "");
        ids.insert(traceparent(&e).1);
    }
    eventually("80 spans exported", || col.otlp_spans().len() >= 80);
    let spans = col.otlp_spans();
    assert_eq!(spans.len(), 80);
    let posts = col.posts();
    for (_, _, body) in &posts {
        let n = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .expect("spans")
            .len();
        assert!(
            (1..=16).contains(&n),
            "a report of {n} spans (max_batch 16)"
        );
    }
    assert!(
        posts.len() < 80,
        "{} reports for 80 spans: not batched",
        posts.len()
    );
    let exported: std::collections::HashSet<String> = spans
        .iter()
        .map(|s| s["spanId"].as_str().expect("spanId").to_string())
        .collect();
    assert_eq!(exported.len(), 80, "every span once");
    assert_eq!(
        exported, ids,
        "the spans upstream saw as parents are the ones exported"
    );
    proxy.stop();
}

#[test]
fn local_replies_and_upstream_failures_are_spans_too() {
    let col = Collector::start();
    let dead = closed_port();
    let yaml = ConfigBuilder::new()
        .top("tracing:\n  flush_interval: 100ms\n  collector: { cluster: otel }")
        .route_prefix("/dead", "dead")
        .direct_response("path: /teapot", 418, "short and stout")
        .cluster("dead", &[dead])
        .connect_timeout("1s")
        .cluster("otel", &[col.addr()])
        .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "1"]);
    assert_eq!(get(proxy.addr, "a", "/nowhere").status(), 404);
    assert_eq!(get(proxy.addr, "a", "/teapot").status(), 418);
    assert_eq!(get(proxy.addr, "a", "/dead/x").status(), 503);
    eventually("three spans", || col.otlp_spans().len() == 3);
    let spans = col.otlp_spans();
    let by_path = |p: &str| {
        spans
            .iter()
            .find(|s| attr(s, "url.path").as_deref() == Some(p))
            .unwrap_or_else(|| panic!("no span for {p}: {spans:?}"))
            .clone()
    };
    let s = by_path("/nowhere");
    assert_eq!(s["name"], "GET", "no route: named by the method alone");
    assert_eq!(
        attr(&s, "http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(attr(&s, "ringway.response_flags").as_deref(), Some("NR"));
    assert!(attr(&s, "ringway.upstream.cluster").is_none());
    assert_eq!(
        s["status"],
        serde_json::json!({}),
        "4xx is not a server error"
    );
    let s = by_path("/teapot");
    assert_eq!(s["name"], "GET /teapot");
    assert_eq!(
        attr(&s, "http.response.status_code").as_deref(),
        Some("418")
    );
    let s = by_path("/dead/x");
    assert_eq!(s["name"], "GET /dead*");
    assert_eq!(
        attr(&s, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attr(&s, "ringway.response_flags").as_deref(), Some("UF"));
    assert_eq!(s["status"]["code"], 2, "STATUS_CODE_ERROR");
    assert!(attr(&s, "error.type").is_some_and(|e| !e.is_empty()));
    proxy.stop();
}

#[test]
fn collector_down_does_not_hurt_requests_and_is_counted() {
    let origin = BenchOrigin::start(&[]);
    let yaml = config(origin.addr, closed_port(), &otlp("1"))
        .admin()
        .yaml();
    let (proxy, adm) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..20 {
        assert_eq!(c.get("a", "/echo").status(), 200);
    }
    eventually("the failed export is counted", || {
        let s = admin_stats(adm);
        s.get("tracing.spans_dropped").copied() == Some(20)
            && s.get("tracing.reports_failed").copied().unwrap_or(0) >= 1
    });
    let s = admin_stats(adm);
    assert_eq!(s["tracing.spans_sent"], 0);
    assert_eq!(s["tracing.reports_sent"], 0);
    assert_eq!(c.get("a", "/echo").status(), 200, "still serving");
    let status = proxy.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn spans_are_not_lost_at_shutdown() {
    let origin = BenchOrigin::start(&[]);
    let col = Collector::start();
    // A flush interval far beyond the test: only the shutdown path can deliver these spans.
    let yaml = config(
        origin.addr,
        col.addr(),
        "  flush_interval: 60s\n  collector: { cluster: otel }\n",
    )
    .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "2"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..25 {
        assert_eq!(c.get("a", "/echo").status(), 200);
    }
    drop(c);
    assert!(col.otlp_spans().is_empty());
    let status = proxy.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(col.otlp_spans().len(), 25);
}

#[test]
fn a_collector_that_never_answers_does_not_hold_up_shutdown() {
    let origin = BenchOrigin::start(&[]);
    // Reads export requests and never answers them.
    let silent = RawOrigin::start(|mut c| while c.read_request().is_some() {});
    let yaml = config(
        origin.addr,
        silent.addr,
        "  flush_interval: 60s\n  max_batch: 5\n  collector: { cluster: otel, timeout: 1s }\n",
    )
    .yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..30 {
        assert_eq!(c.get("a", "/echo").status(), 200);
    }
    drop(c);
    // Six reports are due at shutdown; each would wait out the 1 s timeout. All of them together
    // get one timeout.
    let started = std::time::Instant::now();
    let status = proxy.stop();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert!(silent.connection_count() >= 1, "the export was attempted");
}
