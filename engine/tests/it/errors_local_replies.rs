//! Local replies (issue 10, point 7): every reason the proxy answers by itself, with its status,
//! its `x-ringway-reason` and whether the connection closes; request smuggling shapes rejected
//! before anything reaches the upstream; the downstream limits and timeouts. After every bad
//! input the same proxy still serves a normal request.
use crate::support;
use std::{
    io::Write,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use support::*;

fn config(origin: SocketAddr, hcm_extra: &str, route_extra: &str) -> String {
    ConfigBuilder::new()
        .hcm_extra(hcm_extra)
        .virtual_host("known", &["known.test"])
        .route(
            "prefix: /api/",
            &format!("route: {{ cluster: origin{route_extra} }}"),
        )
        .route("prefix: /refused/", "route: { cluster: refused }")
        .direct_response("prefix: /local/", 200, "local")
        .cluster("origin", &[origin])
        .connect_timeout("1s")
        .cluster("refused", &[closed_port()])
        .connect_timeout("1s")
        .yaml()
}

/// The proxy still answers a normal forwarded request on a fresh connection.
fn assert_serving(proxy: &Proxy) {
    let r = get(proxy.addr, "known.test", "/api/ok");
    assert_eq!(
        r.status(),
        200,
        "proxy stopped serving: {r:?}\n{}",
        proxy.log()
    );
}

/// A local reply: status, reason header, the standard body.
fn assert_local(r: &RawMessage, status: u16, reason: &str) {
    assert_eq!(r.status(), status, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some(reason), "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"), "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "{r:?}"
    );
}

#[test]
fn errors_no_route_is_404_and_keeps_the_connection() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let mut c = Client::connect(proxy.addr);
    let r = c.get("unknown.test", "/api/x");
    assert_local(&r, 404, "no_route");
    assert_eq!(r.body_str(), "no route\n");
    let r = c.get("known.test", "/nothing-here");
    assert_local(&r, 404, "no_route");
    assert_eq!(r.header("connection"), None, "a 404 keeps the connection");
    let r = c.get("known.test", "/local/x");
    assert_eq!(r.body_str(), "local");
    assert_eq!(origin.connection_count(), 0);
}

#[test]
fn errors_connect_refused_is_503() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let mut c = Client::connect(proxy.addr);
    let r = c.get("known.test", "/refused/x");
    assert_local(&r, 503, "connect_failure");
    assert_eq!(r.body_str(), "service unavailable\n");
    // A bodiless request keeps its connection.
    assert_eq!(c.get("known.test", "/api/x").status(), 200);
}

#[test]
fn errors_upstream_timeout_is_504() {
    let slow = BenchOrigin::start(&[]);
    // `/api/delay/3000` reaches the origin as `/delay/3000`.
    let proxy = Proxy::start(&config(
        slow.addr,
        "",
        ", timeout: 300ms, prefix_rewrite: /",
    ));
    let t0 = Instant::now();
    let r = get(proxy.addr, "known.test", "/api/delay/3000");
    let took = t0.elapsed();
    assert_local(&r, 504, "upstream_timeout");
    assert_eq!(r.body_str(), "gateway timeout\n");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_serving(&proxy);
}

#[test]
fn errors_upstream_garbage_is_502() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n");
        }
    });
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let r = get(proxy.addr, "known.test", "/api/x");
    assert_local(&r, 502, "upstream_protocol_error");
    assert_eq!(r.body_str(), "bad gateway\n");

    let origin2 = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
    });
    let proxy2 = Proxy::start(&config(origin2.addr, "", ""));
    let r = get(proxy2.addr, "known.test", "/api/x");
    assert_local(&r, 502, "upstream_protocol_error");
}

#[test]
fn errors_upstream_close_before_response_is_502() {
    let origin = RawOrigin::start(|mut c| {
        let _ = c.read_request();
        // Dropped: closed without a byte.
    });
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let r = get(proxy.addr, "known.test", "/api/x");
    assert_local(&r, 502, "upstream_reset");
    assert_eq!(
        origin.connection_count(),
        1,
        "a fresh connection is not retried"
    );
}

/// Send `raw`, expect a local reply with `status`/`reason` and the connection closed after it.
fn rejected(proxy: &Proxy, raw: &[u8], status: u16, reason: &str) {
    let mut c = Client::connect(proxy.addr);
    c.send(raw);
    let r = c
        .try_response(false)
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_local(&r, status, reason);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(
        c.closed(),
        "connection left open after a {status}: {:?}",
        String::from_utf8_lossy(raw)
    );
}

#[test]
fn errors_malformed_requests_are_400_and_close() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let cases: &[&[u8]] = &[
        b"GET /api/x HTTP/1.1\r\nHost: known.test\r\nno colon here\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
        b"GET /api/x HTTP/1.1\r\nHost: known.test\r\nHost: other.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: kno wn.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: user@known.test\r\n\r\n",
        b"GET api/x HTTP/1.1\r\nHost: known.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // a TLS hello
    ];
    for raw in cases {
        rejected(&proxy, raw, 400, "bad_request");
        assert_serving(&proxy);
    }
    // The ones above never reached the origin: only assert_serving's requests did.
    let got = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(
        got.matches("GET /api/ok HTTP/1.1").count(),
        cases.len(),
        "{got}"
    );
    assert_eq!(got.matches("HTTP/1.1").count(), cases.len(), "{got}");
}

#[test]
fn errors_unsupported_coding_is_501_and_version_505() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    rejected(
        &proxy,
        b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    );
    rejected(
        &proxy,
        b"GET /api/x HTTP/2.0\r\nHost: known.test\r\n\r\n",
        505,
        "http_version_not_supported",
    );
    assert_eq!(origin.connection_count(), 0);
    assert_serving(&proxy);
}

#[test]
fn errors_uri_too_long_is_414_and_close() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let long = format!("/api/{}", "a".repeat(9000));
    rejected(
        &proxy,
        format!("GET {long} HTTP/1.1\r\nHost: known.test\r\n\r\n").as_bytes(),
        414,
        "uri_too_long",
    );
    // Just under the 8 KiB cap is fine.
    let ok = format!("/api/{}", "a".repeat(8000));
    let r = get(proxy.addr, "known.test", &ok);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(origin.connection_count(), 1);
    assert_serving(&proxy);
}

#[test]
fn errors_headers_too_large_is_431_and_close() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "max_request_headers_kb: 2", ""));
    let big = "v".repeat(2100);
    rejected(
        &proxy,
        format!("GET /api/x HTTP/1.1\r\nHost: known.test\r\nx-big: {big}\r\n\r\n").as_bytes(),
        431,
        "headers_too_large",
    );
    // Split over several writes, and never finishing: the limit applies to what has arrived.
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /api/x HTTP/1.1\r\nHost: known.test\r\n");
    for _ in 0..60 {
        if c.stream
            .write_all(b"x-filler: 0123456789012345678901234567890123456789\r\n")
            .is_err()
        {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let r = c
        .try_response(false)
        .expect("431 for a head growing past the limit");
    assert_local(&r, 431, "headers_too_large");
    assert!(c.closed());
    // Under the limit passes.
    let fine = "v".repeat(1500);
    let r = request(
        proxy.addr,
        format!("GET /api/x HTTP/1.1\r\nHost: known.test\r\nx-big: {fine}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(origin.connection_count(), 1);
    // More than 128 headers is a 431 too, whatever their size.
    let mut many = String::from("GET /api/x HTTP/1.1\r\nHost: known.test\r\n");
    for i in 0..130 {
        many.push_str(&format!("h{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    rejected(&proxy, many.as_bytes(), 431, "headers_too_large");
    assert_serving(&proxy);
}

#[test]
fn errors_smuggling_shapes_are_400_and_never_reach_the_origin() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let cases: &[(&str, &[u8])] = &[
        (
            "CL + TE",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE + CL",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "Content-Length list that disagrees",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        ("Content-Length with a sign", b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: +5\r\n\r\nhello"),
        (
            "Content-Length too big for u64",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        ),
        (
            "obs-fold",
            b"GET /api/x HTTP/1.1\r\nHost: known.test\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "obs-fold hiding Transfer-Encoding",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 5\r\nX-A: b\r\n\tTransfer-Encoding: chunked\r\n\r\nhello",
        ),
        ("bare LF in headers", b"GET /api/x HTTP/1.1\r\nHost: known.test\nX-A: b\r\n\r\n"),
        ("bare LF after the request line", b"GET /api/x HTTP/1.1\nHost: known.test\r\n\r\n"),
        ("bare LF ending the head", b"GET /api/x HTTP/1.1\r\nHost: known.test\r\n\n"),
        (
            "space before the colon",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        let mut c = Client::connect(proxy.addr);
        c.send(raw);
        let r = c
            .try_response(false)
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(r.status(), 400, "{what}: {r:?}");
        let reason = r.header("x-ringway-reason").unwrap_or("");
        assert!(
            reason == "request_smuggling" || reason == "bad_request",
            "{what}: reason {reason}"
        );
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(c.closed(), "{what}: connection left open");
        assert_eq!(origin.connection_count(), 0, "{what}: reached the origin");
        assert!(
            origin.received_bytes().is_empty(),
            "{what}: bytes reached the origin"
        );
    }
    // The framing-ambiguity shapes carry the specific reason.
    for (what, raw) in &cases[..3] {
        let r = request(proxy.addr, raw);
        assert_eq!(
            r.header("x-ringway-reason"),
            Some("request_smuggling"),
            "{what}"
        );
    }
    assert_serving(&proxy);
}

#[test]
fn errors_invalid_chunk_is_400_and_the_bad_bytes_never_reach_the_origin() {
    let origin = RawOrigin::start(|mut c| {
        // Read whatever comes until the proxy closes; answer nothing.
        while c.read_request_framed().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    let proxy = Proxy::start(&config(origin.addr, "", ""));
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "non-hex size",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nSMUGGLED\r\n0\r\n\r\n",
            b"SMUGGLED",
        ),
        (
            "size overflowing 64 bits",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000008\r\nSMUGGLED\r\n0\r\n\r\n",
            b"SMUGGLED",
        ),
        (
            "bad chunk after a good one",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n-3\r\nSMUGGLED\r\n0\r\n\r\n",
            b"SMUGGLED",
        ),
        (
            "chunk longer than its size",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcSMUGGLED\r\n0\r\n\r\n",
            b"SMUGGLED",
        ),
        (
            "bare LF after the size",
            b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n8\nSMUGGLED\r\n0\r\n\r\n",
            b"SMUGGLED",
        ),
    ];
    for (what, raw, bad) in cases {
        let before = origin.received_bytes().len();
        let mut c = Client::connect(proxy.addr);
        c.send(raw);
        let r = c
            .try_response(false)
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(r.status(), 400, "{what}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(c.closed(), "{what}: connection left open");
        // Let anything the proxy might still send arrive before looking.
        thread::sleep(Duration::from_millis(50));
        let got = origin.received_bytes()[before..].to_vec();
        assert!(
            find(&got, bad).is_none(),
            "{what}: malformed chunk reached the origin: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            find(&got, b"0\r\n\r\n").is_none(),
            "{what}: the origin saw a complete body"
        );
    }
    assert_serving(&proxy);
}

#[test]
fn errors_request_headers_timeout_is_408_and_close() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "request_headers_timeout: 300ms", ""));
    let mut c = Client::connect(proxy.addr);
    let t0 = Instant::now();
    c.send(b"GET /api/x HTTP/1.1\r\nHost: known.te");
    let r = c.try_response(false).expect("408 for a stalled head");
    let took = t0.elapsed();
    assert_local(&r, 408, "request_headers_timeout");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // A head trickling in byte by byte is still bounded by the same deadline.
    let mut c = Client::connect(proxy.addr);
    let t0 = Instant::now();
    let slow_head = b"GET /api/x HTTP/1.1\r\nHost: known.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut peek = [0u8; 1];
    for b in slow_head {
        // Stop writing once the proxy has answered (a write after its close would reset).
        c.stream.set_nonblocking(true).expect("nonblocking");
        let answered = c.stream.peek(&mut peek).is_ok();
        c.stream.set_nonblocking(false).expect("blocking");
        if answered || c.stream.write_all(&[*b]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "a trickling head was not cut off by request_headers_timeout"
    );
    let r = c.try_response(false).expect("408 for a slowloris head");
    assert_local(&r, 408, "request_headers_timeout");
    assert_eq!(origin.connection_count(), 0);
    assert_serving(&proxy);
}

#[test]
fn errors_idle_client_connection_is_closed_after_idle_timeout() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "idle_timeout: 500ms", ""));
    // Never sent anything.
    let mut c = Client::connect(proxy.addr);
    let t0 = Instant::now();
    assert!(c.closed(), "silent connection not closed");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // Idle after a request.
    let mut c = Client::connect(proxy.addr);
    assert_eq!(c.get("known.test", "/api/x").status(), 200);
    let t0 = Instant::now();
    assert!(c.closed(), "idle keep-alive connection not closed");
    assert!(t0.elapsed() < Duration::from_millis(2500));
    // A connection kept busy is not cut: 6 requests 100 ms apart span 600 ms > idle_timeout.
    let mut c = Client::connect(proxy.addr);
    for _ in 0..6 {
        assert_eq!(c.get("known.test", "/api/x").status(), 200);
        thread::sleep(Duration::from_millis(100));
    }
    assert_serving(&proxy);
}

#[test]
fn errors_request_body_timeout_gives_up_on_a_stalled_body() {
    let origin = RawOrigin::start(|mut c| {
        // Wait for the whole body (it never comes); the proxy gives up and closes.
        let _ = c.read_request();
    });
    let proxy = Proxy::start(&config(origin.addr, "request_body_timeout: 300ms", ""));
    let mut c = Client::connect(proxy.addr);
    let t0 = Instant::now();
    c.send(b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nContent-Length: 100\r\n\r\nonly ten b");
    let r = c.try_response(false).expect("a reply when the body stalls");
    let took = t0.elapsed();
    assert_local(&r, 408, "request_body_timeout");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The partial body went upstream, and that connection was dropped, not pooled.
    eventually("upstream saw the partial body", || {
        find(&origin.received_bytes(), b"only ten b").is_some()
    });
    let ok_origin = RawOrigin::ok();
    let proxy2 = Proxy::start(&config(ok_origin.addr, "request_body_timeout: 300ms", ""));
    assert_serving(&proxy2);
    // A chunked body that stalls mid-way is abandoned the same way.
    let mut c = Client::connect(proxy2.addr);
    c.send(
        b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    );
    let r = c
        .try_response(false)
        .expect("a reply when a chunked body stalls");
    assert_local(&r, 408, "request_body_timeout");
    assert!(c.closed());
    assert_serving(&proxy2);
}

#[test]
fn errors_peer_junk_never_stops_the_proxy() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&config(origin.addr, "request_headers_timeout: 500ms", ""));
    let junk: &[&[u8]] = &[
        b"",
        b"\r\n\r\n\r\n\r\n",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\r\n\r\n",
        &[0xffu8; 4096],
        b"GET / HTTP/1.1\r\nHost: known.test\r\nContent-Length: 10\r\n\r\n",
        b"POST /api/x HTTP/1.1\r\nHost: known.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /\xc3\x28 HTTP/1.1\r\nHost: known.test\r\n\r\n",
        b"CONNECT known.test:443 HTTP/1.1\r\nHost: known.test:443\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: known.test\r\n\r\n",
    ];
    for raw in junk {
        let mut c = Client::connect(proxy.addr);
        let _ = c.stream.write_all(raw);
        c.shutdown_write();
        // Whatever the answer, the connection must end (bounded) ...
        let _ = c.read_to_eof().unwrap_or_else(|| {
            panic!(
                "connection not ended for {:?}",
                String::from_utf8_lossy(raw)
            )
        });
        // ... and the proxy keep serving.
        assert_serving(&proxy);
    }
    // Abrupt resets mid-request, too.
    for _ in 0..5 {
        let c = Client::connect(proxy.addr);
        let s = socket2::SockRef::from(&c.stream);
        s.set_linger(Some(Duration::ZERO)).expect("linger");
        let mut st = &c.stream;
        let _ = st.write_all(b"GET /api/x HTTP/1.1\r\nHost: kno");
        drop(c);
    }
    assert_serving(&proxy);
    let mut p = proxy;
    assert!(p.is_running());
    assert_eq!(p.stop().code(), Some(0));
}
