//! The origin over raw sockets: keep-alive, pipelining, bodies, HTTP/1.0, close, bad input,
//! the upgrade echo, and its request count.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{count, raw, read_to_eof, read_until, roundtrip, Origin};

#[test]
fn origin_keepalive_and_pipelining() {
    let o = Origin::start(&["--workers", "1", "--body-size", "10"]);
    let mut s = raw(o.addr);
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut three = Vec::new();
    for _ in 0..3 {
        three.extend_from_slice(req);
    }
    // Three pipelined requests in one write, then one more on the same connection.
    s.write_all(&three).unwrap();
    let got = read_until(&mut s, b"012345678\n", 3);
    assert_eq!(
        count(&got, b"HTTP/1.1 200 OK\r\n"),
        3,
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(req).unwrap();
    let got = read_until(&mut s, b"\n", 1);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n"));
    drop(s);
    assert_eq!(o.stop(), 4);
}

#[test]
fn origin_http10_and_connection_close() {
    let o = Origin::start(&["--workers", "1"]);
    for req in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = raw(o.addr);
        s.write_all(req).unwrap();
        let (got, eof) = read_to_eof(&mut s);
        assert!(eof, "server must close");
        assert!(got.starts_with(b"HTTP/1.1 200 OK"));
        assert!(count(&got, b"connection: close") == 1);
    }
    // HTTP/1.0 keep-alive stays open and says so.
    let mut s = raw(o.addr);
    s.write_all(b"GET /bytes/5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, b"xxxxx", 1);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("connection: keep-alive") && text.contains("content-length: 5"),
        "{text}"
    );
}

#[test]
fn origin_request_bodies() {
    let o = Origin::start(&["--workers", "1"]);
    // Chunked upload, split across writes.
    let mut s = raw(o.addr);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"lo\r\n3;ext\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n")
        .unwrap();
    let got = String::from_utf8_lossy(&read_until(&mut s, b"}\n", 1)).into_owned();
    assert!(got.contains("\"body_length\":8"), "{got}");
    // A large Content-Length upload streams through (8 MiB, far above any buffer).
    let n = 8 << 20;
    s.write_all(
        format!("PUT /echo?big=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let chunk = vec![b'z'; 1 << 16];
    for _ in 0..(n / chunk.len()) {
        s.write_all(&chunk).unwrap();
    }
    let got = String::from_utf8_lossy(&read_until(&mut s, b"}\n", 1)).into_owned();
    assert!(got.contains(&format!("\"body_length\":{n}")), "{got}");
    assert!(
        got.contains("\"method\":\"PUT\"") && got.contains("\"query\":\"big=1\""),
        "{got}"
    );
    // Expect: 100-continue gets the interim response before the body is sent.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    let got = read_until(&mut s, b"\r\n\r\n", 1);
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"abcd").unwrap();
    let got = String::from_utf8_lossy(&read_until(&mut s, b"}\n", 1)).into_owned();
    assert!(got.contains("\"body_length\":4"), "{got}");
}

#[test]
fn origin_echo_reports_the_request() {
    let o = Origin::start(&["--workers", "1"]);
    let got = roundtrip(
        o.addr,
        b"DELETE /echo?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-one: 2\r\n\r\n",
        b"}\n",
    );
    let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["method"], "DELETE");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], "a=1&b=2");
    assert_eq!(v["headers"]["x-one"], "1, 2");
    assert_eq!(v["headers"]["host"], "h");
    assert_eq!(v["body_length"], 0);
}

#[test]
fn origin_routes() {
    let o = Origin::start(&["--workers", "1", "--status", "202"]);
    let got = roundtrip(
        o.addr,
        b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"Not Found\n",
    );
    assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
    let got = roundtrip(o.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\n\r\n");
    assert!(got.starts_with("HTTP/1.1 202 Accepted\r\n"), "{got}");
    // /bytes/N chunked, and with ?cl=1 Content-Length.
    let mut s = raw(o.addr);
    s.write_all(b"GET /bytes/40000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, b"0\r\n\r\n", 1);
    assert!(count(&got, b"transfer-encoding: chunked") == 1);
    assert_eq!(count(&got, b"x"), 40000);
    s.write_all(b"GET /bytes/40000?cl=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    while count(&got, b"x") < 40000 {
        let more = read_until(&mut s, b"x", count(&got, b"x") + 1);
        assert!(!more.is_empty(), "short body");
        got.extend_from_slice(&more);
    }
    assert!(count(&got, b"content-length: 40000") == 1);
    // /delay waits.
    let t = std::time::Instant::now();
    let got = roundtrip(
        o.addr,
        b"GET /delay/150 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\n\r\n",
    );
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert!(got.starts_with("HTTP/1.1 202"));
}

#[test]
fn origin_survives_bad_input() {
    let o = Origin::start(&["--workers", "1"]);
    for bad in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /status/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = raw(o.addr);
        s.write_all(bad).unwrap();
        let (got, _) = read_to_eof(&mut s);
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    }
    // An oversized head is refused with 431.
    let mut s = raw(o.addr);
    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    big.extend(
        std::iter::repeat_n(
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            1500,
        )
        .flatten(),
    );
    let _ = s.write_all(&big);
    let (got, _) = read_to_eof(&mut s);
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Still serving.
    let got = roundtrip(o.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\n\r\n");
    assert!(got.starts_with("HTTP/1.1 200"));
}

#[test]
fn origin_websocket_upgrade_echoes_both_ways() {
    let o = Origin::start(&["--workers", "1"]);
    let mut s = raw(o.addr);
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nfirst",
    )
    .unwrap();
    let got = read_until(&mut s, b"first", 1);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    for i in 0..3 {
        let msg = format!("message {i} \x00\x7f\u{e9}");
        s.write_all(msg.as_bytes()).unwrap();
        let got = read_until(&mut s, msg.as_bytes(), 1);
        assert!(count(&got, msg.as_bytes()) == 1);
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (_, eof) = read_to_eof(&mut s);
    assert!(eof);
}

#[test]
fn origin_counts_across_workers() {
    let o = Origin::start(&["--workers", "2"]);
    for _ in 0..10 {
        let got = roundtrip(
            o.addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"\n\r\n",
        );
        assert!(got.starts_with("HTTP/1.1 200"));
    }
    assert_eq!(o.stop(), 10);
}

#[test]
fn origin_refuses_a_busy_port() {
    let o = Origin::start(&["--workers", "1"]);
    let out = std::process::Command::new(common::BIN)
        .args(["origin", "--listen", &o.addr.to_string(), "--workers", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
}
