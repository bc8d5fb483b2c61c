//! The stream-model codec ([`model`]), response side: a parsed response decoded into a
//! [`ResponseHead`] and encoded for the client (framing, connection header, reason phrase), and
//! local replies, compared byte for byte. Every encode goes through [`response_out`], which also
//! checks that the encoder reserved exactly the head's length once.

use super::*;
use crate::http::h1::model::{decode_response, encode_response, Framing, Persist};
use ringway_filters::{BodySize, ResponseHead};

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
