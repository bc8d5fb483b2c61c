//! The stream-model codec ([`model`]), request side: a parsed request decoded into a
//! [`RequestHead`] and encoded upstream, compared byte for byte (the response side is in
//! `model_response`). Every encode goes through [`request_out`], which also checks that the
//! encoder reserved exactly the head's length once (the encoders `debug_assert` their computed
//! length as well: [`tests_run_with_debug_assertions`] makes sure that check is live).

use super::*;
use crate::http::h1::model::{
    decode_request, encode_request, forwarded_upgrade, origin_path, Seen,
};
use ringway_filters::{BodySize, Method, RequestHead};

/// Encode `head` upstream into an empty buffer, as text.
fn request_out(head: &RequestHead, upgrade: Option<&[u8]>) -> String {
    let mut out = BytesMut::new();
    encode_request(head, upgrade, &mut out);
    // An empty BytesMut grows to exactly what one `reserve` asks for; a second growth (the
    // length under-computed) or an over-reservation would leave capacity != len.
    assert_eq!(out.capacity(), out.len(), "reserved once, exactly");
    text(&out)
}

/// Decode the request in `buf` (scheme `http`) and what the decoder saw.
fn decoded(buf: &[u8]) -> (RequestHead, Seen) {
    request_ok(buf, |req| {
        let mut head = RequestHead::default();
        let seen = decode_request(req, "http", &mut head);
        (head, seen)
    })
}

/// Decode then encode the request in `buf`, forwarding the upgrade the codec allows.
fn upstream(buf: &[u8]) -> String {
    request_ok(buf, |req| {
        let mut head = RequestHead::default();
        decode_request(req, "http", &mut head);
        request_out(&head, forwarded_upgrade(req))
    })
}

#[test]
fn tests_run_with_debug_assertions() {
    // black_box: a run-time check, so a release test build still compiles and says why it fails.
    assert!(
        std::hint::black_box(cfg!(debug_assertions)),
        "the encoders check their head length with debug_assert: run the tests in debug"
    );
}

#[test]
fn request_head_exact() {
    let buf = b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n";
    let (head, seen) = decoded(buf);
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.scheme, "http");
    assert_eq!(head.authority(), b"example.com");
    assert_eq!(head.path(), b"/a?b");
    assert_eq!(head.body, BodySize::Empty);
    assert_eq!(head.headers.len(), 2, "host is the authority, not a header");
    assert!(!seen.forwarded_for && !seen.request_id);
    assert_eq!(
        request_out(&head, None),
        "GET /a?b HTTP/1.1\r\nhost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n"
    );
}

#[test]
fn request_head_appends_to_existing_buffer() {
    let (head, _) = decoded(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n");
    let mut out = BytesMut::from(&b"prefix"[..]);
    encode_request(&head, None, &mut out);
    assert_eq!(
        text(&out),
        "prefixGET / HTTP/1.1\r\nhost: h\r\nA: 1\r\n\r\n"
    );
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let got = upstream(
        b"POST /u HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret , close\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\
          Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nExpect: 100-continue\r\n\
          HTTP2-Settings: AAMAAABkAAQAAP__\r\nconnection: x-other\r\nX-Other: o\r\nX-Kept: k\r\n\r\n",
    );
    assert_eq!(
        got,
        "POST /u HTTP/1.1\r\nhost: h\r\nX-Kept: k\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn only_nominated_headers_are_dropped() {
    // `close`, `keep-alive` and `upgrade` nominate nothing beyond themselves.
    let got = upstream(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\nConnection: close, Keep-Alive\r\nClose: c\r\n\r\n",
    );
    assert_eq!(
        got,
        "GET / HTTP/1.1\r\nhost: h\r\nX-Secret: s\r\nClose: c\r\n\r\n"
    );
    // A nominated name is matched whole and case-insensitively, on any Connection line.
    let got = upstream(
        b"GET / HTTP/1.1\r\nHost: h\r\nx-secret: 1\r\nX-Secret-2: 2\r\nConnection: X-SECRET\r\n\r\n",
    );
    assert_eq!(got, "GET / HTTP/1.1\r\nhost: h\r\nX-Secret-2: 2\r\n\r\n");
}

#[test]
fn content_length_is_reframed() {
    let buf = b"PUT /u HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: h\r\nContent-Length: 05\r\n\r\n";
    let (head, _) = decoded(buf);
    assert_eq!(head.body, BodySize::Known(5));
    assert!(!head.headers.contains("content-length"));
    assert_eq!(
        request_out(&head, None),
        "PUT /u HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\n"
    );
}

#[test]
fn request_framing_follows_the_body_size() {
    let cases: &[(&[u8], BodySize, &str)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
            BodySize::Known(12),
            "content-length: 12\r\n",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
            BodySize::Known(u64::MAX),
            "content-length: 18446744073709551615\r\n",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodySize::Unknown,
            "transfer-encoding: chunked\r\n",
        ),
        // A zero length is no body; a POST still says so.
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            BodySize::Empty,
            "content-length: 0\r\n",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\n\r\n",
            BodySize::Empty,
            "content-length: 0\r\n",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            BodySize::Empty,
            "",
        ),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", BodySize::Empty, ""),
    ];
    for (buf, size, framing) in cases {
        let (head, _) = decoded(buf);
        assert_eq!(head.body, *size, "{}", text(buf));
        let method = head.method_str().to_owned();
        assert_eq!(
            request_out(&head, None),
            format!("{method} / HTTP/1.1\r\nhost: h\r\n{framing}\r\n"),
        );
    }
    // A filter that changes the body makes its size unknown: the codec chunks it.
    let (mut head, _) = decoded(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
    head.body = BodySize::Unknown;
    assert_eq!(
        request_out(&head, None),
        "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    head.body = BodySize::Known(0);
    assert_eq!(
        request_out(&head, None),
        "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
    );
}

/// No body: `content-length: 0` for every method but those whose semantics anticipate no
/// content (Envoy's rule; RFC 9110 §8.6).
#[test]
fn empty_body_says_so_when_the_method_expects_one() {
    for (method, framing) in [
        ("GET", ""),
        ("HEAD", ""),
        ("DELETE", ""),
        ("TRACE", ""),
        ("POST", "content-length: 0\r\n"),
        ("PUT", "content-length: 0\r\n"),
        ("PATCH", "content-length: 0\r\n"),
        ("OPTIONS", "content-length: 0\r\n"),
        ("PURGE", "content-length: 0\r\n"),
    ] {
        let buf = format!("{method} /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            upstream(buf.as_bytes()),
            format!("{method} /x HTTP/1.1\r\nhost: h\r\n{framing}\r\n")
        );
    }
    let (head, _) = decoded(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
    assert_eq!(
        request_out(&head, None),
        "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n"
    );
}

#[test]
fn host_becomes_the_authority() {
    let (head, _) = decoded(b"GET / HTTP/1.1\r\nX: 1\r\nHost: Example.COM:8080\r\nY: 2\r\n\r\n");
    assert_eq!(head.authority(), b"Example.COM:8080", "as sent");
    assert_eq!(
        request_out(&head, None),
        "GET / HTTP/1.1\r\nhost: Example.COM:8080\r\nX: 1\r\nY: 2\r\n\r\n"
    );
    // An absolute-form target's authority wins over Host.
    let (head, _) = decoded(b"GET http://a.example/p HTTP/1.1\r\nHost: ignored\r\n\r\n");
    assert_eq!(head.authority(), b"a.example");
    // HTTP/1.0 without Host: sent empty, as RFC 9112 §3.2 asks.
    assert_eq!(
        upstream(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        "GET /x HTTP/1.1\r\nhost: \r\n\r\n"
    );
}

#[test]
fn absolute_form_becomes_origin_form() {
    let cases: &[(&[u8], &str, &str)] = &[
        (
            b"GET http://a.example/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n",
            "/p?q",
            "GET /p?q HTTP/1.1\r\nhost: a.example\r\n\r\n",
        ),
        (
            b"GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "/?q",
            "GET /?q HTTP/1.1\r\nhost: a.example\r\n\r\n",
        ),
        (
            b"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n",
            "/",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            "*",
            "OPTIONS * HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
        ),
        (
            b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
            "db.internal:5432",
            "CONNECT db.internal:5432 HTTP/1.1\r\nhost: db.internal:5432\r\n\r\n",
        ),
    ];
    for (buf, path, want) in cases {
        let (head, _) = decoded(buf);
        assert_eq!(text(head.path()), *path, "{}", text(buf));
        assert_eq!(request_out(&head, None), *want);
    }
}

#[test]
fn fragment_is_stripped() {
    let cases: &[(&[u8], &str)] = &[
        (b"GET /a/b?q=1#frag HTTP/1.1\r\nHost: h\r\n\r\n", "/a/b?q=1"),
        (b"GET /#x HTTP/1.1\r\nHost: h\r\n\r\n", "/"),
        (b"GET /p#a#b HTTP/1.1\r\nHost: h\r\n\r\n", "/p"),
        (b"GET http://h/p#f HTTP/1.1\r\nHost: h\r\n\r\n", "/p"),
        (b"GET http://h#f HTTP/1.1\r\nHost: h\r\n\r\n", "/"),
        (b"GET http://h?q#f HTTP/1.1\r\nHost: h\r\n\r\n", "/?q"),
    ];
    for (buf, path) in cases {
        request_ok(buf, |req| {
            assert!(!origin_path(req).contains(&b'#'), "{}", text(buf));
        });
        let (head, _) = decoded(buf);
        assert_eq!(text(head.path()), *path, "{}", text(buf));
        assert_eq!(
            request_out(&head, None),
            format!("GET {path} HTTP/1.1\r\nhost: h\r\n\r\n")
        );
    }
}

#[test]
fn other_methods_keep_their_spelling() {
    let (head, _) = decoded(b"PURGE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(head.method, Method::Other);
    assert_eq!(
        request_out(&head, None),
        "PURGE /x HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n"
    );
}

#[test]
fn rewritten_path_and_authority_are_sent() {
    let (mut head, _) = decoded(b"GET /api/items HTTP/1.1\r\nHost: public.example\r\nA: 1\r\n\r\n");
    head.set_path(b"/v2/items?x=1");
    head.set_authority(b"backend.internal:8080");
    assert_eq!(
        request_out(&head, None),
        "GET /v2/items?x=1 HTTP/1.1\r\nhost: backend.internal:8080\r\nA: 1\r\n\r\n"
    );
    // Origin-form needs its leading `/`.
    head.set_path(b"?x=1");
    assert!(request_out(&head, None).starts_with("GET /?x=1 HTTP/1.1\r\n"));
    head.set_path(b"");
    assert!(request_out(&head, None).starts_with("GET / HTTP/1.1\r\n"));
}

#[test]
fn upgrade_is_forwarded_for_websocket_not_h2c() {
    let ws = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    request_ok(ws, |req| {
        assert_eq!(forwarded_upgrade(req), Some(&b"websocket"[..]))
    });
    assert_eq!(
        upstream(ws),
        "GET /ws HTTP/1.1\r\nhost: h\r\nSec-WebSocket-Key: k\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    );
    // Without the upgrade the caller asks for, Upgrade and Connection stay on their hop.
    let (head, _) = decoded(ws);
    assert_eq!(
        request_out(&head, None),
        "GET /ws HTTP/1.1\r\nhost: h\r\nSec-WebSocket-Key: k\r\n\r\n"
    );
    for buf in [
        &b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket, H2C\r\n\r\n",
        // No `upgrade` token in Connection, or HTTP/1.0: no upgrade at all.
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        request_ok(buf, |req| assert_eq!(forwarded_upgrade(req), None, "{}", text(buf)));
        assert_eq!(upstream(buf), "GET / HTTP/1.1\r\nhost: h\r\n\r\n", "{}", text(buf));
    }
}

#[test]
fn seen_notes_the_policy_headers() {
    let (head, seen) = decoded(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-REQUEST-ID: r\r\nx-forwarded-for: 1.2.3.4\r\n\r\n",
    );
    assert!(seen.forwarded_for && seen.request_id);
    assert_eq!(head.headers.get("x-request-id"), Some("r"));
    assert_eq!(head.headers.get("x-forwarded-for"), Some("1.2.3.4"));
    // The client's x-forwarded-proto is never forwarded (the policy sets the connection's).
    let (head, seen) = decoded(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n");
    assert!(!seen.forwarded_for && !seen.request_id);
    assert!(head.headers.is_empty());
    // Nominated by Connection: dropped, so not seen either (the policy adds its own).
    let (head, seen) = decoded(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-request-id, x-forwarded-for\r\n\
          X-Request-Id: r\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    assert!(!seen.forwarded_for && !seen.request_id);
    assert!(head.headers.is_empty());
}

#[test]
fn decoding_reuses_the_head() {
    let mut head = RequestHead::default();
    request_ok(
        b"POST http://a/one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX: 1\r\n\r\n",
        |req| {
            decode_request(req, "https", &mut head);
        },
    );
    request_ok(b"GET /two HTTP/1.1\r\nHost: b\r\nY: 2\r\n\r\n", |req| {
        decode_request(req, "http", &mut head);
    });
    assert_eq!(head.scheme, "http");
    assert_eq!(head.body, BodySize::Empty);
    assert_eq!(
        request_out(&head, None),
        "GET /two HTTP/1.1\r\nhost: b\r\nY: 2\r\n\r\n"
    );
}

/// What the encoder writes parses back to the same message, and decodes to the same model.
#[test]
fn encoded_requests_parse_back() {
    for buf in [
        &b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"[..],
        b"PUT http://h:1/p?q HTTP/1.1\r\nHost: h:1\r\nContent-Length: 7\r\nConnection: x-a\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /old HTTP/1.0\r\n\r\n",
    ] {
        request_ok(buf, |req| {
            let mut head = RequestHead::default();
            decode_request(req, "http", &mut head);
            let upgrade = forwarded_upgrade(req);
            let mut out = BytesMut::new();
            encode_request(&head, upgrade, &mut out);
            request_ok(&out, |again| {
                assert_eq!(again.version, Version::Http11);
                assert_eq!(again.framing, req.framing, "{}", text(&out));
                assert_eq!(again.upgrade, upgrade);
                assert_eq!(again.head_len, out.len());
                let mut head2 = RequestHead::default();
                decode_request(again, "http", &mut head2);
                assert_eq!(head2.method_str(), head.method_str());
                assert_eq!(head2.authority(), head.authority());
                assert_eq!(head2.path(), head.path());
                assert_eq!(head2.headers, head.headers);
                assert_eq!(head2.body, head.body);
            });
        });
    }
}
