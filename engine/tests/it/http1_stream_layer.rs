//! What the HTTP/1 codec decides when it decodes into the stream model, on the wire: a
//! `#fragment` in the request-target is stripped, `Upgrade: h2c` (and its `HTTP2-Settings`) never
//! reaches the upstream, hop-by-hop headers stay on their hop, and an upgraded (101) exchange is
//! logged with its status.

use crate::support;

use std::time::Duration;

use support::*;

fn access_log_yaml(origin: std::net::SocketAddr, log: &std::path::Path) -> String {
    ConfigBuilder::simple(origin)
        .hcm_extra(&format!(
            "access_log:\n  - path: {}\n    format: \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\\n\"",
            log.display()
        ))
        .yaml()
}

#[test]
fn stream_fragment_is_stripped_before_routing_and_forwarding() {
    let origin = RawOrigin::echo_head();
    let p = Proxy::start(&simple_config(origin.addr));
    let r = request(p.addr, b"GET /a/b?q=1#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status(), 200);
    assert!(
        r.body_str().starts_with("GET /a/b?q=1 HTTP/1.1\r\n"),
        "{}",
        r.body_str()
    );
    let r = request(p.addr, b"GET /#only HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        r.body_str().starts_with("GET / HTTP/1.1\r\n"),
        "{}",
        r.body_str()
    );
    p.stop();
}

#[test]
fn stream_h2c_upgrade_is_not_forwarded() {
    let origin = RawOrigin::echo_head();
    let p = Proxy::start(&simple_config(origin.addr));
    let r = request(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nx-keep: 1\r\n\r\n",
    );
    assert_eq!(r.status(), 200, "answered as plain HTTP/1.1");
    let seen = r.body_str().to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
    assert!(seen.contains("x-keep: 1"), "{seen}");
    p.stop();
}

#[test]
fn stream_hop_by_hop_headers_stay_on_their_hop() {
    let origin = RawOrigin::echo_head();
    let p = Proxy::start(&simple_config(origin.addr));
    let r = request(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nx-end: 2\r\n\r\n",
    );
    let seen = r.body_str().to_ascii_lowercase();
    for h in ["x-hop", "keep-alive", "\r\nte:", "proxy-connection"] {
        assert!(!seen.contains(h), "{h} forwarded: {seen}");
    }
    assert!(seen.contains("x-end: 2"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    p.stop();
}

#[test]
fn stream_upgraded_exchange_is_logged_with_101() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request().is_none() {
            return;
        }
        if !c.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n") {
            return;
        }
        // Echo one message back, then close.
        if let Some(b) = c.read_exact_raw(4) {
            let _ = c.write(&b);
        }
    });
    let log = scratch_dir().join("access.log");
    let p = Proxy::start(&access_log_yaml(origin.addr, &log));
    let mut c = Client::connect(p.addr);
    c.send(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let head = c.read_head().expect("101");
    assert_eq!(head.status(), 101);
    assert_eq!(head.header("upgrade"), Some("websocket"));
    c.send(b"ping");
    assert_eq!(c.read_exact_raw(4).as_deref(), Some(&b"ping"[..]));
    drop(c);
    let lines = wait_lines(&log, 1);
    assert_eq!(lines[0], "GET /ws 101");
    std::thread::sleep(Duration::from_millis(10));
    p.stop();
}
