//! Request parsing: fields, framing, keep-alive, expect/upgrade, limits, every smuggling shape.

use super::*;
use crate::http::h1::model::{decode_request, encode_request, forwarded_upgrade};

const GET: &[u8] = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

#[test]
fn simple_get() {
    request_ok(GET, |r| {
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a/b?c=d");
        assert_eq!(r.path(), "/a/b?c=d");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.head_len, GET.len());
        assert_eq!(r.framing, BodyFraming::None);
        assert!(r.keep_alive);
        assert!(!r.expect_continue);
        assert_eq!(r.upgrade, None);
        assert_eq!(r.host, Some(&b"example.com"[..]));
        assert_eq!(r.header("ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(r.header("x-missing"), None);
        assert!(r.is_idempotent());
    });
}

#[test]
fn every_prefix_is_incomplete() {
    for end in 0..GET.len() {
        with_request(&GET[..end], |r| {
            assert!(matches!(r, Ok(None)), "prefix {end}: {r:?}")
        });
    }
}

#[test]
fn idempotent_methods() {
    for (m, idem) in [
        ("GET", true),
        ("HEAD", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("PUT", true),
        ("DELETE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ] {
        let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
        request_ok(buf.as_bytes(), |r| {
            assert_eq!(r.is_idempotent(), idem, "{m}")
        });
    }
}

#[test]
fn pipelined_requests_parse_from_head_len() {
    let buf = b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nHost: h\r\n\r\nGET /thr";
    let next = request_ok(buf, |r| {
        assert_eq!(r.target, "/one");
        assert_eq!(r.framing, BodyFraming::Length(5));
        assert_eq!(&buf[r.head_len..r.head_len + 5], b"hello");
        r.head_len + 5
    });
    let third = request_ok(&buf[next..], |r| {
        assert_eq!(r.target, "/two");
        assert_eq!(r.framing, BodyFraming::None);
        next + r.head_len
    });
    with_request(&buf[third..], |r| assert!(matches!(r, Ok(None))));
}

#[test]
fn framing() {
    let cases: &[(&[u8], BodyFraming)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
            BodyFraming::Length(12),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            BodyFraming::Length(0),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n",
            BodyFraming::Length(7),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: Chunked\r\n\r\n",
            BodyFraming::Chunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
            BodyFraming::Chunked,
        ),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", BodyFraming::None),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
            BodyFraming::Length(u64::MAX),
        ),
    ];
    for (buf, want) in cases {
        request_ok(buf, |r| assert_eq!(r.framing, *want, "{}", text(buf)));
    }
}

#[test]
fn repeated_identical_content_length_is_one() {
    for buf in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,5\r\ncontent-length: 5\r\n\r\n",
    ] {
        request_ok(buf, |r| {
            assert_eq!(r.framing, BodyFraming::Length(5), "{}", text(buf))
        });
    }
}

/// Every request-smuggling shape, with the exact error, status and reason.
#[test]
fn smuggling_shapes() {
    use ParseError::*;
    let cases: &[(&[u8], ParseError)] = &[
        // CL with TE, either order.
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        // Two different lengths.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ConflictingContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", ConflictingContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 05\r\nContent-Length: 6\r\n\r\n", ConflictingContentLength),
        // Not 1*DIGIT, or too big.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5.0\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", InvalidContentLength),
        // Obsolete line folding, SP or HT.
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", ObsFold),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", ObsFold),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n", ObsFold),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", ObsFold),
        // Bare LF anywhere in the head.
        (b"GET / HTTP/1.1\nHost: h\r\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: h\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\n", BareLf),
        (b"GET / HTTP/1.1\nHost: h\n\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a \n\r\n", BareLf),
        (b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", BareLf),
        (b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\n b\r\n\r\n", BareLf),
        // Transfer codings: unknown, or chunked not alone.
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferEncoding),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Malformed("chunked is not the final transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed("chunked is not the final transfer coding"),
        ),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", Malformed("empty transfer-encoding")),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed("transfer-encoding in an HTTP/1.0 request"),
        ),
        // Whitespace between name and colon (httparse refuses it).
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", Malformed("invalid header name")),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", Malformed("invalid header name")),
        // Host confusion.
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Malformed("more than one Host header")),
        (b"GET / HTTP/1.1\r\n\r\n", Malformed("HTTP/1.1 request without Host")),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Malformed("invalid Host header")),
        (b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", Malformed("invalid Host header")),
        (b"GET / HTTP/1.1\r\nHost: h/p\r\n\r\n", Malformed("invalid Host header")),
        (b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request-target")),
        (b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request-target")),
        // Bare CR, NUL, junk request lines.
        (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", Malformed("invalid header value")),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", Malformed("invalid header value")),
        (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid HTTP version")),
        (b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request line")),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request line")),
        (b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request-target")),
    ];
    for (buf, want) in cases {
        let got = request_err(buf);
        assert_eq!(&got, want, "{}", text(buf));
    }
}

#[test]
fn smuggling_errors_map_to_400_request_smuggling() {
    use ParseError::*;
    for e in [
        ContentLengthWithTransferEncoding,
        ConflictingContentLength,
        InvalidContentLength,
        ObsFold,
        BareLf,
    ] {
        assert_eq!(e.status(), 400, "{e}");
        assert_eq!(e.reason(), "request_smuggling", "{e}");
    }
}

#[test]
fn error_status_and_reason() {
    use ParseError::*;
    let cases = [
        (Malformed("x"), 400, "bad_request"),
        (UriTooLong, 414, "uri_too_long"),
        (HeadersTooLarge, 431, "headers_too_large"),
        (
            UnsupportedTransferEncoding,
            501,
            "unsupported_transfer_encoding",
        ),
        (Version, 505, "http_version_not_supported"),
    ];
    for (e, status, reason) in cases {
        assert_eq!((e.status(), e.reason()), (status, reason), "{e}");
    }
}

/// Turning any one CRLF of a valid head into a bare LF must be caught.
#[test]
fn every_crlf_turned_bare_lf_is_rejected() {
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nContent-Length: 3\r\nX-Trail: v  \r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ];
    for head in heads {
        request_ok(head, |_| ());
        for i in 0..head.len() - 1 {
            if &head[i..i + 2] != b"\r\n" {
                continue;
            }
            let mutated = [&head[..i], &head[i + 1..]].concat();
            assert_eq!(
                request_err(&mutated),
                ParseError::BareLf,
                "{}",
                text(&mutated)
            );
        }
    }
}

#[test]
fn leading_empty_lines_are_skipped() {
    request_ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.method, "GET");
        assert_eq!(r.head_len, 31);
    });
}

#[test]
fn versions() {
    request_ok(b"GET / HTTP/1.0\r\n\r\n", |r| {
        assert_eq!(r.version, Version::Http10);
        assert_eq!(r.host, None);
        assert!(!r.keep_alive);
    });
    for buf in [
        &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
        b"GET / HTTP/3\r\n\r\n",
        b"GET / HTTP/0.9\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/2",
    ] {
        let e = request_err(buf);
        assert_eq!(e, ParseError::Version, "{}", text(buf));
        assert_eq!(e.status(), 505);
    }
    for buf in [
        &b"GET / FOO/1.1\r\n\r\n"[..],
        b"GET / http/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/x\r\n\r\n",
    ] {
        assert_eq!(
            request_err(buf),
            ParseError::Malformed("invalid HTTP version"),
            "{}",
            text(buf)
        );
    }
}

/// Keep-alive by version and `Connection` tokens (comma-separated, case-insensitive, any line).
#[test]
fn keep_alive_matrix() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("1.1", &[], true),
        ("1.1", &["close"], false),
        ("1.1", &["Close"], false),
        ("1.1", &["keep-alive"], true),
        ("1.1", &["keep-alive, close"], false),
        ("1.1", &["foo,CLOSE"], false),
        ("1.1", &["x-foo", " close "], false),
        ("1.1", &["closed"], true),
        ("1.1", &["upgrade"], true),
        ("1.0", &[], false),
        ("1.0", &["keep-alive"], true),
        ("1.0", &["Keep-Alive"], true),
        ("1.0", &["foo , keep-alive"], true),
        ("1.0", &["keep-alive", "close"], false),
        ("1.0", &["close"], false),
        ("1.0", &["keep-alive-ish"], false),
    ];
    for (version, connection, want) in cases {
        let mut buf = format!("GET / HTTP/{version}\r\nHost: h\r\n");
        for c in connection.iter() {
            buf.push_str(&format!("Connection: {c}\r\n"));
        }
        buf.push_str("\r\n");
        request_ok(buf.as_bytes(), |r| assert_eq!(r.keep_alive, *want, "{buf}"));
    }
}

#[test]
fn expect_continue() {
    let cases: &[(&[u8], bool)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            true,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
            true,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\n\r\n",
            false,
        ),
        (b"POST / HTTP/1.1\r\nHost: h\r\n\r\n", false),
        // RFC 9110 §10.1.1: ignored in HTTP/1.0.
        (
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            false,
        ),
    ];
    for (buf, want) in cases {
        request_ok(buf, |r| {
            assert_eq!(r.expect_continue, *want, "{}", text(buf))
        });
    }
}

#[test]
fn upgrade_needs_the_connection_token() {
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", Some(b"websocket")),
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, upgrade\r\n\r\n", Some(b"websocket")),
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", None),
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n", None),
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", None),
        // RFC 9110 §7.8: ignored in HTTP/1.0.
        (b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", None),
    ];
    for (buf, want) in cases {
        request_ok(buf, |r| assert_eq!(r.upgrade, *want, "{}", text(buf)));
    }
}

#[test]
fn request_target_forms() {
    request_ok(
        b"GET http://Example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        |r| {
            assert_eq!(r.host, Some(&b"Example.com:8080"[..]));
            assert_eq!(r.path(), "/p?q=1");
        },
    );
    request_ok(b"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.path(), "/")
    });
    request_ok(b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.path(), "?q")
    });
    request_ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.path(), "*");
        assert_eq!(r.host, Some(&b"h"[..]));
    });
    request_ok(
        b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
        |r| {
            assert_eq!(r.host, Some(&b"db.internal:5432"[..]));
            assert_eq!(r.path(), "db.internal:5432");
        },
    );
    request_ok(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", |r| {
        assert_eq!(r.host, Some(&b"[::1]:8080"[..]))
    });
    request_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |r| {
        assert_eq!(r.host, Some(&b""[..]))
    });
    assert_eq!(
        request_err(b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::Malformed("invalid CONNECT target")
    );
    assert_eq!(
        request_err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::Malformed("invalid request-target")
    );
}

#[test]
fn head_too_large() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "a".repeat(LIMITS.max_head_bytes)
    );
    assert_eq!(request_err(big.as_bytes()), ParseError::HeadersTooLarge);
    // Incomplete, but already longer than the limit.
    let partial = &big.as_bytes()[..LIMITS.max_head_bytes + 1];
    assert_eq!(request_err(partial), ParseError::HeadersTooLarge);
    // Incomplete and exactly at the limit: wait for more.
    with_request(&big.as_bytes()[..LIMITS.max_head_bytes], |r| {
        assert!(matches!(r, Ok(None)))
    });
    // A head of exactly the limit is fine.
    let pad = LIMITS.max_head_bytes - b"GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(pad)
    );
    assert_eq!(exact.len(), LIMITS.max_head_bytes);
    request_ok(exact.as_bytes(), |r| {
        assert_eq!(r.head_len, LIMITS.max_head_bytes)
    });
    assert_eq!(ParseError::HeadersTooLarge.status(), 431);
}

#[test]
fn too_many_headers() {
    let mut ok = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 1..MAX_HEADERS {
        ok.push_str(&format!("X-{i}: v\r\n"));
    }
    let mut too_many = ok.clone();
    ok.push_str("\r\n");
    request_ok(ok.as_bytes(), |r| assert_eq!(r.headers.len(), MAX_HEADERS));
    too_many.push_str("X-Last: v\r\n\r\n");
    assert_eq!(
        request_err(too_many.as_bytes()),
        ParseError::HeadersTooLarge
    );
}

#[test]
fn uri_too_long() {
    let long = "/".to_string() + &"a".repeat(LIMITS.max_uri_bytes);
    let complete = format!("GET {long} HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(request_err(complete.as_bytes()), ParseError::UriTooLong);
    // Incomplete head, the request line not even finished, far below max_head_bytes.
    let partial = format!("GET {long}");
    assert!(partial.len() < LIMITS.max_head_bytes);
    assert_eq!(request_err(partial.as_bytes()), ParseError::UriTooLong);
    // Incomplete head with the target complete.
    let partial = format!("GET {long} HTTP/1.1\r\nHo");
    assert_eq!(request_err(partial.as_bytes()), ParseError::UriTooLong);
    // At the limit: fine, complete or not.
    let at_limit = &long[..LIMITS.max_uri_bytes];
    request_ok(
        format!("GET {at_limit} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        |r| assert_eq!(r.target.len(), LIMITS.max_uri_bytes),
    );
    with_request(format!("GET {at_limit}").as_bytes(), |r| {
        assert!(matches!(r, Ok(None)), "{r:?}")
    });
    assert_eq!(ParseError::UriTooLong.status(), 414);
}

/// Random byte-level mutations of valid requests: anything accepted must have a CRLF-only head
/// without obs-fold, a framing consistent with its headers, and must survive decoding into the
/// model and encoding upstream (what is sent parses back to the same framing and model).
#[test]
fn mutated_requests_keep_the_invariants() {
    let seeds: &[&[u8]] = &[
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: x-a, keep-alive\r\nX-A: 1\r\n\r\nabc",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET http://h/x HTTP/1.0\r\nConnection: keep-alive\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
    ];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let alphabet =
        b"\r\n \t:,;0123456789abcdefxXHTP/.-chunkedContent-LengthTransfer-Encoding\0\x7f\xff";
    let mut accepted = 0;
    for _ in 0..20_000 {
        let seed = seeds[(next() % seeds.len() as u64) as usize];
        let mut m = seed.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() % m.len() as u64) as usize;
            let byte = alphabet[(next() % alphabet.len() as u64) as usize];
            match next() % 3 {
                0 => m[at] = byte,
                1 => m.insert(at, byte),
                _ => {
                    m.remove(at);
                }
            }
        }
        with_request(&m, |r| {
            let Ok(Some(req)) = r else { return };
            accepted += 1;
            let head = &m[..req.head_len];
            for (i, &b) in head.iter().enumerate() {
                if b == b'\n' {
                    assert!(
                        i > 0 && head[i - 1] == b'\r',
                        "bare LF accepted: {}",
                        text(&m)
                    );
                    assert!(
                        !matches!(head.get(i + 1), Some(b' ' | b'\t')),
                        "obs-fold accepted: {}",
                        text(&m)
                    );
                }
            }
            let has = |n: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
            match req.framing {
                BodyFraming::Chunked => assert!(has("transfer-encoding") && !has("content-length")),
                BodyFraming::Length(_) => {
                    assert!(has("content-length") && !has("transfer-encoding"))
                }
                BodyFraming::None => assert!(!has("content-length") && !has("transfer-encoding")),
                BodyFraming::UntilClose => panic!("UntilClose for a request"),
            }
            let mut decoded = ringway_filters::RequestHead::default();
            decode_request(&req, "http", &mut decoded);
            let upgrade = forwarded_upgrade(&req);
            let mut out = BytesMut::new();
            encode_request(&decoded, upgrade, &mut out);
            let framing = req.framing;
            let mut headers = header_slots();
            let lenient = Limits {
                max_head_bytes: 1 << 20,
                max_uri_bytes: 1 << 20,
            };
            match parse_request(&out, &mut headers, &lenient) {
                Ok(Some(again)) => {
                    // No body goes up as no framing or `content-length: 0` (per method).
                    let none = |f| {
                        if f == BodyFraming::Length(0) {
                            BodyFraming::None
                        } else {
                            f
                        }
                    };
                    assert_eq!(none(again.framing), none(framing), "{}", text(&out));
                    assert_eq!(again.head_len, out.len());
                    assert_eq!(again.upgrade, upgrade);
                    // Decoding what was sent gives the same model.
                    let mut twice = ringway_filters::RequestHead::default();
                    decode_request(&again, "http", &mut twice);
                    assert_eq!(twice.method_str(), decoded.method_str());
                    assert_eq!(twice.authority(), decoded.authority());
                    assert_eq!(twice.path(), decoded.path());
                    assert_eq!(twice.headers, decoded.headers);
                    assert_eq!(twice.body, decoded.body);
                }
                other => panic!("re-encoded head does not parse: {other:?}\n{}", text(&out)),
            }
        });
    }
    assert!(
        accepted > 1000,
        "too few mutants accepted ({accepted}) to mean anything"
    );
}
