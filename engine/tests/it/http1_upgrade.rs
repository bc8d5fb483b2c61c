//! `Upgrade: websocket` through the proxy: the upgrade is forwarded, the 101 comes back, and
//! after it the connection is a raw tunnel both ways until either side closes.
use crate::support;

use std::{io::Write, thread};

use support::*;

const UPGRADE_REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Send the upgrade request (plus `early` bytes in the same write) and check the 101.
fn upgrade(c: &mut Client, early: &[u8]) -> RawMessage {
    let mut req = UPGRADE_REQ.to_vec();
    req.extend_from_slice(early);
    c.send(&req);
    let r = c.read_head().expect("a 101");
    assert_eq!(r.status(), 101, "{r:?}");
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{r:?}"
    );
    assert!(
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{r:?}"
    );
    r
}

#[test]
fn http1_websocket_tunnel_echoes_both_ways() {
    // The bench origin answers 101 and then echoes raw bytes.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    let r = upgrade(&mut c, b"");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{r:?}"
    );

    c.send(b"\x81\x05hello");
    assert_eq!(c.read_exact_raw(7).expect("echo"), b"\x81\x05hello");
    // Bytes that look like HTTP are not parsed any more.
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        c.read_exact_raw(18).expect("echo"),
        b"GET / HTTP/1.1\r\n\r\n"
    );

    // A megabyte each way at once (written from a thread while this one reads).
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    let mut w = c.stream.try_clone().expect("clone");
    let sent = big.clone();
    let writer = thread::spawn(move || w.write_all(&sent).is_ok());
    let got = c.read_exact_raw(big.len()).expect("1 MiB echoed");
    assert!(writer.join().expect("writer"), "write failed");
    assert!(got == big, "tunnelled bytes differ");

    // The client closes its side: the origin sees EOF and closes, the proxy passes it back.
    c.shutdown_write();
    assert_eq!(c.read_to_eof().expect("EOF through the tunnel"), b"");
    drop(c);
    // The proxy is fine afterwards.
    assert_eq!(get(proxy.addr, "ws.test", "/echo").status(), 200);
}

#[test]
fn http1_websocket_early_bytes_after_upgrade_request() {
    // Bytes sent right behind the upgrade request (before the 101) belong to the tunnel.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    upgrade(&mut c, b"early!");
    assert_eq!(c.read_exact_raw(6).expect("early bytes echoed"), b"early!");
    c.send(b"late");
    assert_eq!(c.read_exact_raw(4).expect("echo"), b"late");
}

#[test]
fn http1_websocket_upgrade_headers_reach_origin_and_origin_close_ends_tunnel() {
    let (tx, rx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
    let tx = std::sync::Mutex::new(tx);
    let origin = RawOrigin::start(move |mut c| {
        let Some(req) = c.read_request() else { return };
        let head = format!("{}\r\n{:?}", req.start, req.headers);
        c.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nserver-first",
        );
        let from_client = c.read_exact_raw(11).unwrap_or_default();
        c.write(b"bye");
        let _ = tx.lock().expect("lock").send((head, from_client));
        // Dropping the connection closes the origin side of the tunnel.
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    let r = upgrade(&mut c, b"");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        c.read_exact_raw(12).expect("origin bytes after the 101"),
        b"server-first"
    );
    c.send(b"client-said");
    let (head, from_client) = rx.recv_timeout(WAIT).expect("origin saw the tunnel");
    assert_eq!(from_client, b"client-said");
    assert!(head.starts_with("GET /chat HTTP/1.1"), "{head}");
    assert!(head.contains("(\"upgrade\", \"websocket\")"), "{head}");
    assert!(head.contains("(\"connection\", \"upgrade\")"), "{head}");
    assert!(
        head.contains("(\"sec-websocket-key\", \"dGhlIHNhbXBsZSBub25jZQ==\")"),
        "{head}"
    );
    assert!(
        head.contains("(\"sec-websocket-version\", \"13\")"),
        "{head}"
    );
    // The origin closed: the client reads its last bytes, then EOF.
    assert_eq!(
        c.read_to_eof().expect("EOF after the origin closed"),
        b"bye"
    );
}

#[test]
fn http1_upgrade_refused_by_origin_is_a_normal_response() {
    // The origin ignores the upgrade and answers 200: the connection stays HTTP.
    let origin = RawOrigin::start(|mut c| {
        while c.read_request().is_some() {
            if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno") {
                break;
            }
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(UPGRADE_REQ);
    let r = c.response(false);
    assert_eq!((r.status(), r.body_str().as_str()), (200, "no"), "{r:?}");
    assert_eq!(r.header("upgrade"), None);
    c.send(b"GET /again HTTP/1.1\r\nHost: ws.test\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status(), r.body_str().as_str()), (200, "no"), "{r:?}");
}

#[test]
fn http1_idle_tunnel_is_closed_after_stream_idle_timeout() {
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::simple(origin.addr)
        .hcm_extra("stream_idle_timeout: 1s")
        .yaml();
    assert!(yaml.contains("stream_idle_timeout"));
    let proxy = Proxy::start(&yaml);
    let mut c = Client::connect(proxy.addr);
    upgrade(&mut c, b"");
    // Traffic every 200 ms for 1.6 s, more than the timeout: the tunnel stays open (a gap of five
    // times the interval would be needed to close it, so a loaded machine does not). Bytes one
    // way (the client's) keep it alive, as the echo answers each.
    for i in 0..8u8 {
        c.send(&[0x81, 0x01, i]);
        assert_eq!(
            c.read_exact_raw(3).expect("echo while active"),
            [0x81, 0x01, i]
        );
        thread::sleep(std::time::Duration::from_millis(200));
    }
    // Then silence: the proxy closes the tunnel once 1 s passes without a byte either way (on
    // its 100 ms clock).
    let started = std::time::Instant::now();
    assert_eq!(c.read_to_eof().expect("closed by the proxy"), b"");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(700) && took < std::time::Duration::from_secs(4),
        "closed after {took:?}"
    );
    assert_eq!(get(proxy.addr, "ws.test", "/echo").status(), 200);
    proxy.stop();
}
