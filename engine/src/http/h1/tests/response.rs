//! Response parsing: framing by RFC 9112 §6.3, keep-alive, limits, smuggling shapes.

use super::*;

#[test]
fn simple_response() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    response_ok(buf, false, |r| {
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.head_len, buf.len() - 5);
        assert_eq!(r.framing, BodyFraming::Length(5));
        assert!(r.keep_alive);
    });
}

#[test]
fn every_prefix_is_incomplete() {
    let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    for end in 0..buf.len() {
        let mut headers = header_slots();
        let r = parse_response(&buf[..end], &mut headers, false, 8192);
        assert!(matches!(r, Ok(None)), "prefix {end}: {r:?}");
    }
}

/// (status line + headers, request was HEAD, framing, keep_alive)
#[test]
fn framing_rfc9112_6_3() {
    let cases: &[(&str, bool, BodyFraming, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
            false,
            BodyFraming::Length(10),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
            true,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
            true,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
            false,
            BodyFraming::Chunked,
            true,
        ),
        ("HTTP/1.1 200 OK\r\n", false, BodyFraming::UntilClose, false),
        ("HTTP/1.1 200 OK\r\n", true, BodyFraming::None, true),
        ("HTTP/1.1 100 Continue\r\n", false, BodyFraming::None, true),
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\n",
            false,
            BodyFraming::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n",
            false,
            BodyFraming::Length(3),
            true,
        ),
        // CL with TE: chunked wins, the connection is not reused.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            false,
            BodyFraming::Chunked,
            false,
        ),
        // TE in HTTP/1.0: read it, then close.
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n",
            false,
            BodyFraming::Chunked,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n",
            false,
            BodyFraming::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n",
            false,
            BodyFraming::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n",
            false,
            BodyFraming::Length(1),
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n",
            false,
            BodyFraming::UntilClose,
            false,
        ),
    ];
    for (head, was_head, framing, keep_alive) in cases {
        let buf = format!("{head}\r\n");
        response_ok(buf.as_bytes(), *was_head, |r| {
            assert_eq!(
                (r.framing, r.keep_alive),
                (*framing, *keep_alive),
                "{buf} (HEAD: {was_head})"
            );
        });
    }
}

#[test]
fn interim_then_final_response() {
    let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let n = response_ok(buf, false, |r| {
        assert_eq!(r.status, 100);
        r.head_len
    });
    response_ok(&buf[n..], false, |r| {
        assert_eq!(r.status, 201);
        assert_eq!(r.framing, BodyFraming::Length(2));
    });
}

#[test]
fn smuggling_shapes() {
    use ParseError::*;
    let cases: &[(&[u8], ParseError)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            ConflictingContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n x\r\n\r\n",
            ObsFold,
        ),
        (b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", BareLf),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\n", BareLf),
        (b"HTTP/1.1 200 OK\n\n", BareLf),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Malformed("chunked is not the final transfer coding"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nServer : x\r\n\r\n",
            Malformed("invalid header name"),
        ),
        (b"HTTP/2.0 200 OK\r\n\r\n", Version),
        (b"HTTP/1.2 200 OK\r\n\r\n", Version),
        (b"ICY 200 OK\r\n\r\n", Malformed("invalid HTTP version")),
        (
            b"HTTP/1.1 099 Weird\r\n\r\n",
            Malformed("invalid status code"),
        ),
        (
            b"HTTP/1.1 600 Weird\r\n\r\n",
            Malformed("invalid status code"),
        ),
        (b"HTTP/1.1 20 OK\r\n\r\n", Malformed("invalid status line")),
    ];
    for (buf, want) in cases {
        assert_eq!(&response_err(buf), want, "{}", text(buf));
    }
}

#[test]
fn status_line_details() {
    response_ok(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, |r| {
        assert_eq!(r.reason, "")
    });
    response_ok(
        b"HTTP/1.1 404 Not  Found \r\nContent-Length: 0\r\n\r\n",
        false,
        |r| assert_eq!(r.reason, "Not  Found "),
    );
    response_ok(b"\r\nHTTP/1.1 204 No Content\r\n\r\n", false, |r| {
        assert_eq!(r.status, 204)
    });
}

#[test]
fn head_too_large() {
    let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(200));
    let mut headers = header_slots();
    let r = parse_response(big.as_bytes(), &mut headers, false, 100);
    assert!(matches!(r, Err(ParseError::HeadersTooLarge)), "{r:?}");
    let mut headers = header_slots();
    let r = parse_response(&big.as_bytes()[..101], &mut headers, false, 100);
    assert!(matches!(r, Err(ParseError::HeadersTooLarge)), "{r:?}");
    let mut headers = header_slots();
    let r = parse_response(&big.as_bytes()[..100], &mut headers, false, 100);
    assert!(matches!(r, Ok(None)), "{r:?}");

    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(response_err(many.as_bytes()), ParseError::HeadersTooLarge);
}
