//! Header handling through the proxy: hop-by-hop headers removed in both directions (RFC 9110
//! §7.6.1), the body re-framed, and the forwarding headers (`x-forwarded-for`,
//! `x-forwarded-proto`, `x-request-id`).
use crate::support;

use support::*;

/// Headers that must never cross the proxy in either direction (plus the ones a test's
/// `Connection` header nominates).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

fn names(list: &[(String, String)]) -> Vec<&str> {
    list.iter().map(|(n, _)| n.as_str()).collect()
}

fn values<'a>(list: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    list.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn http1_request_hop_by_hop_headers_removed() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(
        b"POST /echo HTTP/1.1\r\n\
          Host: hop.test\r\n\
          Connection: keep-alive, X-Hop-One, x-hop-two\r\n\
          X-Hop-One: 1\r\n\
          X-Hop-Two: 2\r\n\
          Keep-Alive: timeout=5\r\n\
          TE: trailers\r\n\
          Trailer: X-Checksum\r\n\
          Upgrade: h2c\r\n\
          Proxy-Connection: keep-alive\r\n\
          X-End-To-End: kept\r\n\
          Transfer-Encoding: Chunked\r\n\
          \r\n\
          4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n",
    );
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    let echo = echo_json(&r);
    let list = echo_header_list(&echo);
    for h in HOP_BY_HOP
        .iter()
        .chain(&["x-hop-one", "x-hop-two", "expect"])
    {
        assert!(
            !names(&list).contains(h),
            "{h} reached the origin: {list:?}"
        );
    }
    assert_eq!(values(&list, "x-end-to-end"), ["kept"]);
    // The body is re-framed: exactly one framing header, ours.
    assert_eq!(values(&list, "transfer-encoding"), ["chunked"], "{list:?}");
    assert!(values(&list, "content-length").is_empty(), "{list:?}");
    assert_eq!(echo["body_length"], 9);
    assert_eq!(values(&list, "host"), ["hop.test"]);
    // The client connection is still usable (keep-alive was only a hop-by-hop token).
    c.send(b"GET /echo HTTP/1.1\r\nHost: hop.test\r\n\r\n");
    assert_eq!(c.response(false).status(), 200);
}

#[test]
fn http1_request_hop_by_hop_headers_removed_exact_bytes() {
    // At the byte level, against a scripted origin: the forwarded head is exactly what the
    // proxy documents, with Content-Length re-sent once.
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&simple_config(origin.addr));
    let r = request(
        proxy.addr,
        b"PUT /x?q=1 HTTP/1.1\r\nHost: hop.test\r\nConnection: X-Gone\r\nX-Gone: 1\r\nKeep-Alive: 300\r\n\
          Proxy-Connection: close\r\nX-A: a\r\nContent-Length: 3\r\nTE: gzip\r\nX-B: b\r\nx-request-id: fixed-id\r\n\r\nabc",
    );
    assert_eq!(r.status(), 200, "{r:?}");
    let got = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(
        got,
        "PUT /x?q=1 HTTP/1.1\r\nhost: hop.test\r\nX-A: a\r\nX-B: b\r\nx-request-id: fixed-id\r\n\
         x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\ncontent-length: 3\r\n\r\nabc"
    );
}

#[test]
fn http1_response_hop_by_hop_headers_removed() {
    let origin = RawOrigin::start(|mut c| {
        while c.read_request().is_some() {
            let ok = c.write(
                b"HTTP/1.1 200 OK\r\n\
                  Connection: keep-alive, X-Resp-Hop\r\n\
                  X-Resp-Hop: 1\r\n\
                  Keep-Alive: timeout=5, max=100\r\n\
                  Trailer: X-Sum\r\n\
                  TE: trailers\r\n\
                  Upgrade: h2c\r\n\
                  Proxy-Connection: keep-alive\r\n\
                  X-End: kept\r\n\
                  Transfer-Encoding: chunked\r\n\
                  \r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
            );
            if !ok {
                break;
            }
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: hop.test\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        for h in HOP_BY_HOP.iter().chain(&["x-resp-hop", "x-sum"]) {
            assert_eq!(r.header(h), None, "{h} reached the client: {r:?}");
        }
        assert_eq!(r.header("x-end"), Some("kept"));
        assert_eq!(r.header_all("transfer-encoding"), ["chunked"], "{r:?}");
        assert_eq!(r.header("content-length"), None, "{r:?}");
        assert_eq!(r.body_str(), "hello world");
    }
    assert_eq!(origin.connection_count(), 1);
}

#[test]
fn http1_response_content_length_and_chunked_conflict_is_reframed() {
    // An upstream sending both Content-Length and chunked: the client sees one framing only.
    let origin = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            );
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let r = get(proxy.addr, "hop.test", "/");
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header_all("transfer-encoding"), ["chunked"], "{r:?}");
    assert_eq!(r.body_str(), "abc");
}

#[test]
fn http1_x_forwarded_for_proto_and_request_id_added() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    let mut ids = Vec::new();
    for _ in 0..3 {
        c.send(b"GET /echo HTTP/1.1\r\nHost: fwd.test\r\n\r\n");
        let list = echo_header_list(&echo_json(&c.response(false)));
        assert_eq!(values(&list, "x-forwarded-for"), ["127.0.0.1"], "{list:?}");
        assert_eq!(values(&list, "x-forwarded-proto"), ["http"], "{list:?}");
        let id = values(&list, "x-request-id");
        assert_eq!(id.len(), 1, "{list:?}");
        assert!(is_uuid(id[0]), "x-request-id is not UUID-shaped: {}", id[0]);
        ids.push(id[0].to_string());
    }
    // On another connection too.
    let list = echo_header_list(&echo_json(&get(proxy.addr, "fwd.test", "/echo")));
    ids.push(values(&list, "x-request-id")[0].to_string());
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "request ids repeat: {ids:?}");
}

#[test]
fn http1_x_forwarded_for_appended_and_request_id_kept() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));

    let r = request(
        proxy.addr,
        b"GET /echo HTTP/1.1\r\nHost: fwd.test\r\nX-Forwarded-For: 203.0.113.7\r\n\
          X-Forwarded-Proto: https\r\nX-Request-Id: abc-123\r\n\r\n",
    );
    let list = echo_header_list(&echo_json(&r));
    assert_eq!(
        values(&list, "x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"],
        "{list:?}"
    );
    assert_eq!(
        values(&list, "x-forwarded-proto"),
        ["http"],
        "set by the proxy, not the client: {list:?}"
    );
    assert_eq!(values(&list, "x-request-id"), ["abc-123"], "{list:?}");

    // Several lines: kept in order, the client IP appended to the last one.
    let r = request(
        proxy.addr,
        b"GET /echo HTTP/1.1\r\nHost: fwd.test\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.1\r\n\
          X-Other: o\r\nx-forwarded-for: 192.0.2.9\r\n\r\n",
    );
    let list = echo_header_list(&echo_json(&r));
    assert_eq!(
        values(&list, "x-forwarded-for"),
        ["198.51.100.1, 10.0.0.1", "192.0.2.9, 127.0.0.1"],
        "{list:?}"
    );
    assert_eq!(values(&list, "x-other"), ["o"]);
}
