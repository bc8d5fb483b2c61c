//! Encoders: exact output bytes, hop-by-hop removal, x-forwarded-*, rewrites, local replies.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn rewrite() -> RequestRewrite<'static> {
    RequestRewrite {
        path: None,
        host: None,
        client_ip: CLIENT,
        forwarded_proto: "http",
        request_id: "rid-1",
        upgrade: false,
        trace: None,
    }
}

/// Encode the request in `buf` upstream with `rw`, as text.
fn upstream(buf: &[u8], rw: &RequestRewrite<'_>) -> String {
    request_ok(buf, |req| {
        let mut out = BytesMut::new();
        encode_request_head(req, rw, &mut out);
        text(&out)
    })
}

#[test]
fn request_head_exact() {
    let got = upstream(
        b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
        &rewrite(),
    );
    assert_eq!(
        got,
        "GET /a?b HTTP/1.1\r\nhost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\
         x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\nx-request-id: rid-1\r\n\r\n"
    );
}

#[test]
fn request_head_appends_to_existing_buffer() {
    request_ok(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", |req| {
        let mut out = BytesMut::from(&b"prefix"[..]);
        encode_request_head(req, &rewrite(), &mut out);
        assert!(
            out.starts_with(b"prefixGET / HTTP/1.1\r\nhost: h\r\n"),
            "{}",
            text(&out)
        );
    });
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let got = upstream(
        b"POST /u HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret , close\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\
          Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nExpect: 100-continue\r\n\
          connection: x-other\r\nX-Other: o\r\nX-Kept: k\r\n\r\n",
        &rewrite(),
    );
    assert_eq!(
        got,
        "POST /u HTTP/1.1\r\nhost: h\r\nX-Kept: k\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: http\r\nx-request-id: rid-1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn content_length_is_reframed() {
    let got = upstream(
        b"PUT /u HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: h\r\nContent-Length: 05\r\n\r\n",
        &rewrite(),
    );
    assert_eq!(
        got,
        "PUT /u HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
         x-request-id: rid-1\r\ncontent-length: 5\r\n\r\n"
    );
}

#[test]
fn x_forwarded_for_is_appended_to_the_last_line() {
    let got = upstream(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1\r\nA: 1\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2\r\n\r\n",
        &rewrite(),
    );
    assert_eq!(
        got,
        "GET / HTTP/1.1\r\nhost: h\r\nX-Forwarded-For: 203.0.113.1\r\nA: 1\r\n\
         x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\nx-request-id: rid-1\r\n\r\n"
    );
    // Nominated by Connection: dropped, so a fresh one is added.
    let got = upstream(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", &rewrite());
    assert!(
        got.contains("\r\nx-forwarded-for: 192.0.2.7\r\n") && !got.contains("6.6.6.6"),
        "{got}"
    );
}

#[test]
fn x_forwarded_proto_is_replaced_and_request_id_kept() {
    let rw = RequestRewrite {
        forwarded_proto: "https",
        ..rewrite()
    };
    let got = upstream(b"GET / HTTP/1.1\r\nX-Request-Id: client-id\r\nHost: h\r\nX-Forwarded-Proto: gopher\r\n\r\n", &rw);
    assert_eq!(
        got,
        "GET / HTTP/1.1\r\nhost: h\r\nX-Request-Id: client-id\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: https\r\n\r\n"
    );
}

#[test]
fn ipv6_client() {
    let rw = RequestRewrite {
        client_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ..rewrite()
    };
    let got = upstream(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &rw);
    assert!(
        got.contains("\r\nx-forwarded-for: 2001:db8::1\r\n"),
        "{got}"
    );
    let longest = IpAddr::V6(Ipv6Addr::new(
        0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe,
    ));
    let got = upstream(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        &RequestRewrite {
            client_ip: longest,
            ..rewrite()
        },
    );
    assert!(
        got.contains("\r\nx-forwarded-for: ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe\r\n"),
        "{got}"
    );
}

#[test]
fn path_and_host_rewrite() {
    let rw = RequestRewrite {
        path: Some("/v2/items?x=1"),
        host: Some("backend.internal:8080"),
        ..rewrite()
    };
    let got = upstream(
        b"GET /api/items HTTP/1.1\r\nHost: public.example\r\n\r\n",
        &rw,
    );
    assert!(
        got.starts_with(
            "GET /v2/items?x=1 HTTP/1.1\r\nhost: backend.internal:8080\r\nx-forwarded-for"
        ),
        "{got}"
    );
    assert!(!got.contains("public.example"), "{got}");
}

#[test]
fn absolute_form_becomes_origin_form() {
    let got = upstream(
        b"GET http://a.example/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n",
        &rewrite(),
    );
    assert!(
        got.starts_with("GET /p?q HTTP/1.1\r\nhost: a.example\r\n"),
        "{got}"
    );
    let got = upstream(
        b"GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
        &rewrite(),
    );
    assert!(
        got.starts_with("GET /?q HTTP/1.1\r\nhost: a.example\r\n"),
        "{got}"
    );
}

#[test]
fn http10_request_goes_up_as_http11() {
    let got = upstream(
        b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &rewrite(),
    );
    assert_eq!(
        got,
        "GET /x HTTP/1.1\r\nhost: \r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
         x-request-id: rid-1\r\n\r\n"
    );
}

#[test]
fn upgrade_forwarded_only_when_asked() {
    let buf = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    let dropped = upstream(buf, &rewrite());
    assert_eq!(
        dropped,
        "GET /ws HTTP/1.1\r\nhost: h\r\nSec-WebSocket-Key: k\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: http\r\nx-request-id: rid-1\r\n\r\n"
    );
    let kept = upstream(
        buf,
        &RequestRewrite {
            upgrade: true,
            ..rewrite()
        },
    );
    assert_eq!(
        kept,
        "GET /ws HTTP/1.1\r\nhost: h\r\nSec-WebSocket-Key: k\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: http\r\nx-request-id: rid-1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    );
}

/// Encode a response parsed from `buf` (to a GET unless `head`) for the client.
fn downstream(
    buf: &[u8],
    head: bool,
    version: Version,
    framing: Option<BodyFraming>,
    keep_alive: bool,
) -> String {
    response_ok(buf, head, |resp| {
        let mut out = BytesMut::new();
        encode_response_head(
            resp,
            version,
            framing.unwrap_or(resp.framing),
            keep_alive,
            &mut out,
        );
        text(&out)
    })
}

#[test]
fn response_head_exact() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n";
    assert_eq!(
        downstream(buf, false, Version::Http11, None, true),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\ncontent-length: 12\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, false, Version::Http10, None, true),
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, false, Version::Http11, None, false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn response_hop_by_hop_removed_and_reframed() {
    let buf = b"HTTP/1.1 201 Created\r\nConnection: X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\
                Trailer: X-T\r\nProxy-Connection: close\r\nTE: x\r\nUpgrade: h2c\r\nLocation: /n\r\n\r\n";
    assert_eq!(
        downstream(buf, false, Version::Http11, None, true),
        "HTTP/1.1 201 Created\r\nLocation: /n\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // To an HTTP/1.0 client the caller de-chunks and closes.
    assert_eq!(
        downstream(
            buf,
            false,
            Version::Http10,
            Some(BodyFraming::UntilClose),
            false
        ),
        "HTTP/1.0 201 Created\r\nLocation: /n\r\nconnection: close\r\n\r\n"
    );
    // CL with TE upstream: the CL never reaches the client.
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        downstream(both, false, Version::Http11, None, true),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn bodiless_responses_keep_their_content_length() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n";
    assert_eq!(
        downstream(head, true, Version::Http11, None, true),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n"
    );
    let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n";
    assert_eq!(
        downstream(not_modified, false, Version::Http11, None, true),
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    );
    let no_content = b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
    assert_eq!(
        downstream(no_content, false, Version::Http11, None, true),
        "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n"
    );
}

#[test]
fn switching_protocols_keeps_upgrade() {
    let buf = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n";
    assert_eq!(
        downstream(buf, false, Version::Http11, None, true),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nconnection: upgrade\r\n\r\n"
    );
}

#[test]
fn empty_reason_gets_the_standard_one() {
    assert_eq!(
        downstream(
            b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
            false,
            Version::Http11,
            None,
            true
        ),
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        downstream(
            b"HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n",
            false,
            Version::Http11,
            None,
            true
        ),
        "HTTP/1.1 299 \r\ncontent-length: 0\r\n\r\n"
    );
}

fn local(
    status: u16,
    reason: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
    version: Version,
    close: bool,
    head: bool,
) -> String {
    let mut out = BytesMut::new();
    encode_local_reply(status, reason, extra, body, version, close, head, &mut out);
    text(&out)
}

#[test]
fn local_reply_exact() {
    assert_eq!(
        local(
            400,
            Some("request_smuggling"),
            &[],
            b"bad request\n",
            Version::Http11,
            true,
            false
        ),
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\
         x-ringway-reason: request_smuggling\r\nconnection: close\r\n\r\nbad request\n"
    );
    assert_eq!(
        local(301, None, &[("location", "https://h/p")], b"", Version::Http11, false, false),
        "HTTP/1.1 301 Moved Permanently\r\ncontent-type: text/plain\r\ncontent-length: 0\r\nlocation: https://h/p\r\n\r\n"
    );
    // HEAD: the length of the body, without the body.
    assert_eq!(
        local(
            404,
            Some("no_route"),
            &[],
            b"not found",
            Version::Http10,
            false,
            true
        ),
        "HTTP/1.0 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\
         x-ringway-reason: no_route\r\nconnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        local(503, None, &[("Content-Type", "application/json")], b"{}", Version::Http11, false, false),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nContent-Type: application/json\r\n\r\n{}"
    );
    assert_eq!(
        local(204, None, &[], b"ignored", Version::Http11, false, false),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    assert_eq!(
        local(100, None, &[], b"", Version::Http11, false, false),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
}

#[test]
fn local_reply_drops_header_injection() {
    let got = local(
        302,
        Some("x\r\nSet-Cookie: a=b"),
        &[("location", "/a\r\nSet-Cookie: evil=1"), ("x-ok", "1")],
        b"",
        Version::Http11,
        true,
        false,
    );
    assert_eq!(
        got,
        "HTTP/1.1 302 Found\r\ncontent-type: text/plain\r\ncontent-length: 0\r\nx-ok: 1\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn chunk_header_and_last_chunk() {
    let mut out = BytesMut::new();
    encode_chunk_header(0, &mut out);
    encode_chunk_header(1, &mut out);
    encode_chunk_header(255, &mut out);
    encode_chunk_header(0x1234abcd, &mut out);
    encode_chunk_header(usize::MAX, &mut out);
    assert_eq!(
        text(&out),
        "0\r\n1\r\nff\r\n1234abcd\r\nffffffffffffffff\r\n"
    );
    assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
}

/// What the encoders write parses back to the same message.
#[test]
fn encoded_heads_parse_back() {
    request_ok(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
        |req| {
            let mut out = BytesMut::new();
            encode_request_head(req, &rewrite(), &mut out);
            request_ok(&out, |again| {
                assert_eq!(again.framing, BodyFraming::Chunked);
                assert_eq!(again.host, Some(&b"h"[..]));
                assert_eq!(again.header("x-a"), Some(&b"1"[..]));
                assert_eq!(again.head_len, out.len());
            });
        },
    );
    let mut out = BytesMut::new();
    encode_local_reply(
        431,
        Some("headers_too_large"),
        &[],
        b"too large",
        Version::Http11,
        true,
        false,
        &mut out,
    );
    response_ok(&out, false, |resp| {
        assert_eq!(resp.status, 431);
        assert_eq!(resp.framing, BodyFraming::Length(9));
        assert!(!resp.keep_alive);
        assert_eq!(&out[resp.head_len..], b"too large");
    });
}
