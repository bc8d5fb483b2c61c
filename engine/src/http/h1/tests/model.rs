//! The stream-model codec ([`model`]): a parsed head decoded into a [`RequestHead`] /
//! [`ResponseHead`] and encoded back, compared byte for byte. Every encode here goes through
//! [`request_out`] / [`response_out`], which also check that the encoder reserved exactly the
//! head's length once (the encoders `debug_assert` their computed length as well:
//! [`tests_run_with_debug_assertions`] makes sure that check is live).

use super::*;
use crate::http::h1::model::{
    decode_request, decode_response, encode_request, encode_response, forwarded_upgrade,
    origin_path, Framing, Persist, Seen,
};
use ringway_filters::{BodySize, Method, RequestHead, ResponseHead};

/// Encode `head` upstream into an empty buffer, as text.
fn request_out(head: &RequestHead, upgrade: Option<&[u8]>) -> String {
    let mut out = BytesMut::new();
    encode_request(head, upgrade, &mut out);
    // An empty BytesMut grows to exactly what one `reserve` asks for; a second growth (the
    // length under-computed) or an over-reservation would leave capacity != len.
    assert_eq!(out.capacity(), out.len(), "reserved once, exactly");
    text(&out)
}

/// Encode a response head for the client into an empty buffer, as text.
fn response_out(
    head: &ResponseHead,
    version: Version,
    framing: Framing,
    persist: Persist,
    upgrade: Option<&[u8]>,
    reason: Option<&str>,
) -> String {
    let mut out = BytesMut::new();
    encode_response(head, version, framing, persist, upgrade, reason, &mut out);
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

/// Decode the response in `buf` (to a HEAD request when `head`).
fn decoded_response(buf: &[u8], head: bool) -> ResponseHead {
    response_ok(buf, head, |resp| {
        let mut model = ResponseHead::default();
        decode_response(resp, &mut model);
        model
    })
}

/// Decode a response (to a GET unless `head`) and encode it for a `version` client the way the
/// router does: framing by [`Framing::for_client`] (bodiless for HEAD, 1xx, 204, 304), kept
/// alive when `keep_alive` and the framing allows it.
fn downstream(buf: &[u8], head: bool, version: Version, keep_alive: bool) -> String {
    let model = decoded_response(buf, head);
    let s = model.status;
    let bodiless = head || s < 200 || s == 204 || s == 304;
    let framing = Framing::for_client(model.body, version, bodiless);
    let persist = if keep_alive && framing != Framing::UntilClose {
        Persist::KeepAlive
    } else {
        Persist::Close
    };
    response_out(&model, version, framing, persist, None, None)
}

#[test]
fn response_head_exact() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX: y\r\n\r\n";
    let model = decoded_response(buf, false);
    assert_eq!(model.status, 200);
    assert_eq!(model.body, BodySize::Known(12));
    assert_eq!(model.headers.len(), 2);
    assert_eq!(
        downstream(buf, false, Version::Http11, true),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX: y\r\ncontent-length: 12\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, false, Version::Http10, true),
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nX: y\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, false, Version::Http11, false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX: y\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
    );
    let mut out = BytesMut::from(&b"prefix"[..]);
    encode_response(
        &model,
        Version::Http11,
        Framing::Length(12),
        Persist::KeepAlive,
        None,
        None,
        &mut out,
    );
    assert!(
        out.starts_with(b"prefixHTTP/1.1 200 OK\r\n"),
        "{}",
        text(&out)
    );
}

#[test]
fn response_hop_by_hop_removed_and_reframed() {
    let buf = b"HTTP/1.1 201 Created\r\nConnection: X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\
                Trailer: X-T\r\nProxy-Connection: close\r\nTE: x\r\nUpgrade: h2c\r\nLocation: /n\r\n\
                Keep-Alive: timeout=1\r\n\r\n";
    assert_eq!(decoded_response(buf, false).body, BodySize::Unknown);
    assert_eq!(
        downstream(buf, false, Version::Http11, true),
        "HTTP/1.1 201 Created\r\nLocation: /n\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // An HTTP/1.0 client cannot take chunks: the body runs until the connection closes.
    assert_eq!(
        downstream(buf, false, Version::Http10, true),
        "HTTP/1.0 201 Created\r\nLocation: /n\r\nconnection: close\r\n\r\n"
    );
    // CL with TE upstream: the CL never reaches the client.
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        downstream(both, false, Version::Http11, true),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // Until-close upstream body: chunked to an HTTP/1.1 client.
    let eof = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
    assert_eq!(
        downstream(eof, false, Version::Http11, true),
        "HTTP/1.1 200 OK\r\nA: b\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn response_content_length_is_reframed_unless_bodiless() {
    // With a body: the upstream's line is dropped, the codec writes its own.
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0012\r\nETag: \"e\"\r\n\r\n";
    let model = decoded_response(buf, false);
    assert!(!model.headers.contains("content-length"));
    assert_eq!(
        downstream(buf, false, Version::Http11, true),
        "HTTP/1.1 200 OK\r\nETag: \"e\"\r\ncontent-length: 12\r\n\r\n"
    );
    let zero = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(decoded_response(zero, false).body, BodySize::Empty);
    assert_eq!(
        downstream(zero, false, Version::Http11, true),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
    // Bodiless (HEAD, 304): the upstream's Content-Length describes the representation; kept.
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n";
    let model = decoded_response(head, true);
    assert_eq!(model.body, BodySize::Empty);
    assert_eq!(
        downstream(head, true, Version::Http11, true),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n"
    );
    let head_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
    assert_eq!(
        downstream(head_chunked, true, Version::Http11, true),
        "HTTP/1.1 200 OK\r\nX: y\r\n\r\n"
    );
    let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n";
    assert_eq!(
        downstream(not_modified, false, Version::Http11, true),
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    );
    let no_content = b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
    assert_eq!(
        downstream(no_content, false, Version::Http11, true),
        "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n"
    );
}

#[test]
fn status_line_has_the_canonical_reason() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
        ),
        (
            b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\n",
        ),
        (
            b"HTTP/1.0 503 x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\n",
        ),
        // No standard phrase: empty, the space kept (RFC 9112 §4).
        (
            b"HTTP/1.1 299 Custom\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 299 \r\n",
        ),
    ];
    for (buf, line) in cases {
        let got = downstream(buf, false, Version::Http11, true);
        assert_eq!(
            got,
            format!("{line}content-length: 0\r\n\r\n"),
            "{}",
            text(buf)
        );
    }
}

#[test]
fn switching_protocols_sends_the_upgrade() {
    let buf = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n";
    let model = decoded_response(buf, false);
    assert!(!model.headers.contains("upgrade"), "the codec's business");
    assert_eq!(
        response_out(
            &model,
            Version::Http11,
            Framing::None { length_zero: false },
            Persist::Upgrade,
            Some(b"websocket"),
            None,
        ),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
    );
    // `upgrade` is written only with Persist::Upgrade.
    assert_eq!(
        response_out(
            &model,
            Version::Http11,
            Framing::None { length_zero: false },
            Persist::KeepAlive,
            Some(b"websocket"),
            None,
        ),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n\r\n"
    );
}

#[test]
fn framing_for_client() {
    use BodySize::*;
    use Version::*;
    let cases = [
        (Empty, Http11, false, Framing::None { length_zero: true }),
        (Empty, Http10, false, Framing::None { length_zero: true }),
        (Known(7), Http11, false, Framing::Length(7)),
        (Known(7), Http10, false, Framing::Length(7)),
        (Unknown, Http11, false, Framing::Chunked),
        (Unknown, Http10, false, Framing::UntilClose),
        (Empty, Http11, true, Framing::None { length_zero: false }),
        (Known(7), Http11, true, Framing::None { length_zero: false }),
        (Unknown, Http10, true, Framing::None { length_zero: false }),
    ];
    for (size, version, bodiless, want) in cases {
        assert_eq!(
            Framing::for_client(size, version, bodiless),
            want,
            "{size:?} {version:?} bodiless={bodiless}"
        );
    }
}

#[test]
fn connection_header_by_persist_and_version() {
    let head = ResponseHead {
        status: 200,
        ..Default::default()
    };
    let framing = Framing::Length(2);
    let cases = [
        (Version::Http11, Persist::KeepAlive, ""),
        (
            Version::Http10,
            Persist::KeepAlive,
            "connection: keep-alive\r\n",
        ),
        (Version::Http11, Persist::Close, "connection: close\r\n"),
        (Version::Http10, Persist::Close, "connection: close\r\n"),
    ];
    for (version, persist, line) in cases {
        let v = if version == Version::Http10 {
            "1.0"
        } else {
            "1.1"
        };
        assert_eq!(
            response_out(&head, version, framing, persist, None, None),
            format!("HTTP/{v} 200 OK\r\ncontent-length: 2\r\n{line}\r\n"),
        );
    }
    assert_eq!(
        response_out(
            &head,
            Version::Http10,
            Framing::UntilClose,
            Persist::Close,
            None,
            None
        ),
        "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\n"
    );
}

/// Local replies are a [`ResponseHead`] the stream builds, encoded with their reason.
#[test]
fn local_reply_exact() {
    let mut head = ResponseHead {
        status: 400,
        ..Default::default()
    };
    head.headers.append("content-type", "text/plain");
    let body = b"bad request\n";
    assert_eq!(
        response_out(
            &head,
            Version::Http11,
            Framing::Length(body.len() as u64),
            Persist::Close,
            None,
            Some("request_smuggling"),
        ),
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\
         x-ringway-reason: request_smuggling\r\nconnection: close\r\n\r\n"
    );
    // HEAD: the length of the body a GET would get (the caller writes no body).
    head.status = 404;
    assert_eq!(
        response_out(
            &head,
            Version::Http10,
            Framing::Length(9),
            Persist::KeepAlive,
            None,
            Some("no_route"),
        ),
        "HTTP/1.0 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\
         x-ringway-reason: no_route\r\nconnection: keep-alive\r\n\r\n"
    );
    let mut redirect = ResponseHead {
        status: 301,
        ..Default::default()
    };
    redirect.headers.append("location", "https://h/p");
    assert_eq!(
        response_out(
            &redirect,
            Version::Http11,
            Framing::None { length_zero: true },
            Persist::KeepAlive,
            None,
            None,
        ),
        "HTTP/1.1 301 Moved Permanently\r\nlocation: https://h/p\r\ncontent-length: 0\r\n\r\n"
    );
    let bare = |status| ResponseHead {
        status,
        ..Default::default()
    };
    let none = Framing::None { length_zero: false };
    assert_eq!(
        response_out(
            &bare(204),
            Version::Http11,
            none,
            Persist::KeepAlive,
            None,
            Some("r")
        ),
        "HTTP/1.1 204 No Content\r\nx-ringway-reason: r\r\n\r\n"
    );
    assert_eq!(
        response_out(
            &bare(100),
            Version::Http11,
            none,
            Persist::KeepAlive,
            None,
            None
        ),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
}

#[test]
fn reason_with_a_line_break_is_dropped() {
    let head = ResponseHead {
        status: 302,
        ..Default::default()
    };
    for evil in ["x\r\nSet-Cookie: a=b", "x\nSet-Cookie: a=b", "x\0y"] {
        assert_eq!(
            response_out(
                &head,
                Version::Http11,
                Framing::None { length_zero: true },
                Persist::Close,
                None,
                Some(evil),
            ),
            "HTTP/1.1 302 Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "{evil:?}"
        );
    }
}

#[test]
fn decoding_a_response_reuses_the_head() {
    let mut model = ResponseHead::default();
    response_ok(
        b"HTTP/1.1 500 x\r\nA: 1\r\nContent-Length: 4\r\n\r\n",
        false,
        |r| decode_response(r, &mut model),
    );
    response_ok(b"HTTP/1.1 204 No Content\r\nB: 2\r\n\r\n", false, |r| {
        decode_response(r, &mut model)
    });
    assert_eq!(model.status, 204);
    assert_eq!(model.body, BodySize::Empty);
    assert_eq!(
        model.headers.iter().collect::<Vec<_>>(),
        vec![(&b"B"[..], &b"2"[..])]
    );
}

/// What the response encoder writes parses back with the framing it was given.
#[test]
fn encoded_responses_parse_back() {
    let mut head = ResponseHead {
        status: 431,
        ..Default::default()
    };
    head.headers.append("content-type", "text/plain");
    let mut out = BytesMut::new();
    encode_response(
        &head,
        Version::Http11,
        Framing::Length(9),
        Persist::Close,
        None,
        Some("headers_too_large"),
        &mut out,
    );
    out.extend_from_slice(b"too large");
    response_ok(&out, false, |resp| {
        assert_eq!(resp.status, 431);
        assert_eq!(resp.framing, BodyFraming::Length(9));
        assert!(!resp.keep_alive);
        assert_eq!(&out[resp.head_len..], b"too large");
    });
    let model = decoded_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n",
        false,
    );
    let mut out = BytesMut::new();
    encode_response(
        &model,
        Version::Http11,
        Framing::Chunked,
        Persist::KeepAlive,
        None,
        None,
        &mut out,
    );
    response_ok(&out, false, |resp| {
        assert_eq!(resp.framing, BodyFraming::Chunked);
        assert!(resp.keep_alive);
        assert_eq!(resp.head_len, out.len());
        let mut again = ResponseHead::default();
        decode_response(resp, &mut again);
        assert_eq!(again.headers, model.headers);
    });
}
