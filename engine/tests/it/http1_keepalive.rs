//! HTTP/1.1 connection reuse on both sides of the proxy: keep-alive downstream, pooled
//! connections upstream, pipelining, HTTP/1.0 clients, bodiless responses, and an upstream that
//! closes a pooled connection while it is idle.
use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use support::*;

fn get_echo(c: &mut Client, query: &str) -> serde_json::Value {
    c.send(format!("GET /echo?{query} HTTP/1.1\r\nHost: ka.test\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(
        r.header("connection"),
        None,
        "keep-alive needs no Connection header: {r:?}"
    );
    echo_json(&r)
}

#[test]
fn http1_keepalive_many_requests_on_one_client_connection() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for i in 0..10 {
        let echo = get_echo(&mut c, &format!("i={i}"));
        assert_eq!(echo["query"], format!("i={i}"));
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["body_length"], 0);
    }
    // A POST with a body on the same connection, then a GET again.
    c.send(b"POST /echo HTTP/1.1\r\nHost: ka.test\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(echo_json(&r)["body_length"], 5);
    assert_eq!(get_echo(&mut c, "last=1")["query"], "last=1");
    drop(c);
    assert!(proxy.stop().success());
    assert_eq!(origin.stop(), 12);
}

#[test]
fn http1_keepalive_upstream_connection_is_reused() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for _ in 0..8 {
        c.send(b"GET /a HTTP/1.1\r\nHost: ka.test\r\n\r\n");
        let r = c.response(false);
        assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"), "{r:?}");
    }
    // Requests with bodies, and from other client connections (one after the other), reuse the
    // same pooled upstream connection too.
    c.send(b"POST /b HTTP/1.1\r\nHost: ka.test\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.response(false).status(), 200);
    drop(c);
    for _ in 0..3 {
        let r = get(proxy.addr, "ka.test", "/c");
        assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"), "{r:?}");
    }
    assert_eq!(
        origin.connection_count(),
        1,
        "one upstream connection for 12 sequential requests"
    );
    let got = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(got.matches("GET /a HTTP/1.1\r\n").count(), 8, "{got}");
    assert_eq!(got.matches("GET /c HTTP/1.1\r\n").count(), 3, "{got}");
    assert!(got.contains("POST /b HTTP/1.1\r\n"), "{got}");
}

#[test]
fn http1_keepalive_upstream_connection_close_is_not_reused_but_client_stays() {
    // The origin answers `Connection: close` and closes: the proxy must not pool that connection,
    // and must not pass the close on to a keep-alive client.
    let origin = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye");
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: ka.test\r\n\r\n");
        let r = c.response(false);
        assert_eq!((r.status(), r.body_str().as_str()), (200, "bye"), "{r:?}");
        assert_eq!(r.header("connection"), None, "{r:?}");
    }
    assert_eq!(origin.connection_count(), 3);
}

#[test]
fn http1_client_connection_close_is_honored() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /echo HTTP/1.1\r\nHost: ka.test\r\nConnection: close\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    // The origin is asked for keep-alive regardless: Connection is hop-by-hop.
    let list = echo_header_list(&echo_json(&r));
    assert!(!list.iter().any(|(n, _)| n == "connection"), "{list:?}");
    assert!(c.closed(), "the proxy must close after Connection: close");
}

#[test]
fn http1_pipelined_requests_answered_in_order() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    // One write: a slow request first, requests with Content-Length and chunked bodies in
    // between, a HEAD, and a last plain GET.
    let mut batch = Vec::new();
    batch.extend_from_slice(b"GET /delay/150 HTTP/1.1\r\nHost: p\r\n\r\n");
    batch.extend_from_slice(b"GET /echo?n=1 HTTP/1.1\r\nHost: p\r\n\r\n");
    batch.extend_from_slice(
        b"POST /echo?n=2 HTTP/1.1\r\nHost: p\r\nContent-Length: 7\r\n\r\nabcdefg",
    );
    batch.extend_from_slice(
        b"PUT /echo?n=3 HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    batch.extend_from_slice(b"HEAD /bytes/10?cl=1 HTTP/1.1\r\nHost: p\r\n\r\n");
    batch.extend_from_slice(b"GET /status/404 HTTP/1.1\r\nHost: p\r\n\r\n");
    batch.extend_from_slice(b"GET /echo?n=6 HTTP/1.1\r\nHost: p\r\n\r\n");
    c.send(&batch);

    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(
        !r.body.is_empty() && r.header("content-type") == Some("text/plain"),
        "{r:?}"
    );
    let r = c.response(false);
    let e = echo_json(&r);
    assert_eq!(
        (
            e["method"].as_str(),
            e["query"].as_str(),
            e["body_length"].as_u64()
        ),
        (Some("GET"), Some("n=1"), Some(0))
    );
    let e = echo_json(&c.response(false));
    assert_eq!(
        (
            e["method"].as_str(),
            e["query"].as_str(),
            e["body_length"].as_u64()
        ),
        (Some("POST"), Some("n=2"), Some(7))
    );
    let e = echo_json(&c.response(false));
    assert_eq!(
        (
            e["method"].as_str(),
            e["query"].as_str(),
            e["body_length"].as_u64()
        ),
        (Some("PUT"), Some("n=3"), Some(5))
    );
    let r = c.response(true);
    assert_eq!(
        (r.status(), r.header("content-length")),
        (200, Some("10")),
        "{r:?}"
    );
    let r = c.response(false);
    assert_eq!(r.status(), 404, "{r:?}");
    let e = echo_json(&c.response(false));
    assert_eq!(e["query"], "n=6");
    assert!(
        c.buffered().is_empty(),
        "stray bytes after the last response: {:?}",
        c.buffered()
    );
    drop(c);
    assert!(proxy.stop().success());
    assert_eq!(origin.stop(), 7);
}

#[test]
fn http1_pipelined_requests_split_across_writes() {
    // A pipelined request whose head straddles two writes, behind a request with a body.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"POST /echo?n=1 HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\n\r\nwxyzGET /echo?n=2 HTT");
    let e = echo_json(&c.response(false));
    assert_eq!(
        (e["query"].as_str(), e["body_length"].as_u64()),
        (Some("n=1"), Some(4))
    );
    c.send(b"P/1.1\r\nHost: p\r\n\r\n");
    let e = echo_json(&c.response(false));
    assert_eq!(
        (e["query"].as_str(), e["body_length"].as_u64()),
        (Some("n=2"), Some(0))
    );
}

#[test]
fn http1_http10_client_gets_close_by_default() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /echo HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert!(r.start.starts_with("HTTP/1.0 200"), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let e = echo_json(&r);
    assert_eq!(e["method"], "GET");
    assert_eq!(
        e["version"], "HTTP/1.1",
        "the proxy speaks HTTP/1.1 upstream"
    );
    assert!(
        c.closed(),
        "an HTTP/1.0 connection without keep-alive must be closed"
    );
}

#[test]
fn http1_http10_client_keep_alive_is_honored() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        c.send(format!("GET /echo?i={i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert!(r.start.starts_with("HTTP/1.0 200"), "{r:?}");
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        assert!(r.header("content-length").is_some(), "{r:?}");
        assert_eq!(echo_json(&r)["query"], format!("i={i}"));
    }
    // A body with Content-Length from a 1.0 client.
    c.send(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response(false);
    assert_eq!(echo_json(&r)["body_length"], 3);
    // The last request without keep-alive closes.
    c.send(b"GET /echo HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.closed());
}

#[test]
fn http1_http10_client_gets_chunked_upstream_body_raw_then_close() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    for ka in [false, true] {
        let mut c = Client::connect(proxy.addr);
        let conn = if ka { "Connection: keep-alive\r\n" } else { "" };
        // The proxy asks HTTP/1.1 upstream, so the origin answers chunked.
        c.send(format!("GET /bytes/100000 HTTP/1.0\r\n{conn}\r\n").as_bytes());
        let raw = c
            .read_to_eof()
            .expect("the proxy closes a close-delimited body");
        let p = find(&raw, b"\r\n\r\n").expect("head") + 4;
        let head = String::from_utf8_lossy(&raw[..p]).to_string();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("transfer-encoding"),
            "no chunked to a 1.0 client: {head}"
        );
        assert!(!lower.contains("content-length"), "{head}");
        assert!(lower.contains("connection: close\r\n"), "{head}");
        let body = &raw[p..];
        assert_eq!(body.len(), 100_000, "the raw body, delimited by close");
        assert!(body.iter().all(|&b| b == b'x'));
    }
}

#[test]
fn http1_head_204_304_have_no_body_and_keep_the_connection() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);

    c.send(b"HEAD /bytes/1000?cl=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(true);
    assert_eq!(
        (r.status(), r.header("content-length")),
        (200, Some("1000")),
        "{r:?}"
    );
    assert!(
        c.buffered().is_empty(),
        "HEAD response carried a body: {:?}",
        c.buffered()
    );

    c.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(true);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(
        c.buffered().is_empty(),
        "HEAD response carried a body: {:?}",
        c.buffered()
    );

    for s in [204, 304] {
        c.send(format!("GET /status/{s} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.status(), s, "{r:?}");
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
        assert!(
            c.buffered().is_empty(),
            "{s} carried a body: {:?}",
            c.buffered()
        );
    }
    // Still usable, and still in sync.
    c.send(b"GET /echo?after=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(false);
    assert_eq!(echo_json(&r)["query"], "after=1");
    assert!(c.buffered().is_empty());
}

#[test]
fn http1_bodiless_responses_with_length_headers_from_upstream() {
    // A 304 and a HEAD answer may carry the Content-Length of the representation: the proxy
    // must not wait for those bytes, and must keep both connections in sync.
    let origin = RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request() {
            let resp: &[u8] = if req.start.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\netag: \"h\"\r\n\r\n"
            } else if req.start.contains("/304") {
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\netag: \"x\"\r\n\r\n"
            } else if req.start.contains("/204") {
                b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone"
            };
            if !c.write(resp) {
                break;
            }
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(true);
    assert_eq!(
        (r.status(), r.header("content-length"), r.header("etag")),
        (200, Some("50"), Some("\"h\"")),
        "{r:?}"
    );
    c.send(b"GET /304 HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n");
    let r = c.response(false);
    assert_eq!(
        (r.status(), r.header("etag")),
        (304, Some("\"x\"")),
        "{r:?}"
    );
    c.send(b"DELETE /204 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status(), r.header("x-a")), (204, Some("1")), "{r:?}");
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status(), r.body_str().as_str()), (200, "done"), "{r:?}");
    assert!(c.buffered().is_empty(), "{:?}", c.buffered());
    assert_eq!(
        origin.connection_count(),
        1,
        "the upstream connection stays in sync and pooled"
    );
}

/// An origin that answers one request per connection with keep-alive framing, then closes the
/// connection after a short delay (as an origin with a short keep-alive timeout does).
/// `closed` counts the connections it has closed. Each answer's body names the request method
/// and the body length it received.
fn closing_origin(closed: Arc<AtomicUsize>) -> RawOrigin {
    RawOrigin::start(move |mut c| {
        let Some(req) = c.read_request() else { return };
        let method = req.start.split(' ').next().unwrap_or("").to_string();
        let body = format!("{method} {}", req.body.len());
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write(resp.as_bytes());
        thread::sleep(Duration::from_millis(50));
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        drop(c);
        closed.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn http1_upstream_closing_idle_pooled_connection_is_not_used() {
    let closed = Arc::new(AtomicUsize::new(0));
    let origin = closing_origin(Arc::clone(&closed));
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    let cases: [(&[u8], &str); 4] = [
        (b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET 0"),
        (b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n", "GET 0"),
        // Not idempotent: never retried, so the connection must be known dead beforehand.
        (
            b"POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody",
            "POST 4",
        ),
        (
            b"PATCH /4 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab",
            "PATCH 2",
        ),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        c.send(req);
        let r = c.response(false);
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, *want),
            "request {i}: {r:?}"
        );
        // Let the origin close the now idle pooled connection, and the FIN reach the proxy.
        eventually("the origin closed its connection", || {
            closed.load(Ordering::SeqCst) == i + 1
        });
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(origin.connection_count(), 4);
    let got = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(got.matches("POST /3 ").count(), 1, "{got}");
}

#[test]
fn http1_upstream_closing_idle_pooled_connection_new_client_connections() {
    // Same, with a fresh client connection per request (the pool outlives client connections).
    let closed = Arc::new(AtomicUsize::new(0));
    let origin = closing_origin(Arc::clone(&closed));
    let proxy = Proxy::start(&simple_config(origin.addr));
    for i in 0..3 {
        let r = request(
            proxy.addr,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz",
        );
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, "POST 3"),
            "request {i}: {r:?}"
        );
        eventually("the origin closed its connection", || {
            closed.load(Ordering::SeqCst) == i + 1
        });
        thread::sleep(Duration::from_millis(50));
    }
}
