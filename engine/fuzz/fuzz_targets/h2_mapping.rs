//! Fuzz target: what ringway does itself around the `h2` crate — preface detection on a
//! connection's first bytes, and an HTTP/2 request head decoded into the stream model and
//! model headers encoded back for HTTP/2.
//!
//! The input's first byte picks the path; the rest become the preface candidate and a head:
//! lines of `name: value` (kept when `http` accepts them as a header), the first line the
//! path. Checks: the preface verdict matches a byte comparison; decoding never panics, never
//! lets a connection-specific header, `host`, `te` or `content-length` into the model, joins
//! cookies into one field, takes the authority from `:authority` or else `host`; the framing
//! agrees with the model's body size; encoding back drops what HTTP/2 forbids and keeps the
//! rest; trailers never carry a field a trailer may not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_fuzz::http::h2::wire::{
    connection_specific, decode_request, from_http_trailers, is_preface, to_http_headers, PREFACE,
};
use ringway_fuzz::{BodySize, RequestHead};

fuzz_target!(|data: &[u8]| {
    let n = data.len().min(PREFACE.len());
    assert_eq!(is_preface(data), n >= 6 && data[..n] == PREFACE[..n]);

    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or("/");
    let mut b = http::Request::builder()
        .method(if sel & 1 == 0 { "GET" } else { "POST" })
        .uri(if sel & 2 == 0 {
            format!("http://a.test{path}")
        } else {
            path.to_string()
        });
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) else {
                continue;
            };
            b = b.header(n, v);
        }
    }
    let Ok(req) = b.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let mut head = RequestHead::default();
    let end = sel & 4 != 0;
    let (_seen, framing) = decode_request(&parts, "http", end, &mut head);
    let mut cookies = 0;
    for (name, _) in head.headers.iter() {
        assert!(
            !connection_specific(name),
            "{:?}",
            String::from_utf8_lossy(name)
        );
        assert!(!name.eq_ignore_ascii_case(b"content-length"));
        cookies += usize::from(name.eq_ignore_ascii_case(b"cookie"));
    }
    assert!(cookies <= 1);
    match parts.uri.authority() {
        Some(a) => assert_eq!(head.authority(), a.as_str().as_bytes()),
        None => {
            let host = parts
                .headers
                .get(http::header::HOST)
                .map_or(&b""[..], |h| h.as_bytes());
            assert_eq!(head.authority(), host);
        }
    }
    match head.body {
        BodySize::Empty => assert!(end || framing == ringway_fuzz::http::h1::BodyFraming::None),
        BodySize::Known(_) | BodySize::Unknown => assert!(!end),
    }
    let mut out = http::HeaderMap::new();
    to_http_headers(&head.headers, &mut out);
    for (name, _) in &out {
        assert!(!connection_specific(name.as_str().as_bytes()));
    }
    let trailers = from_http_trailers(&parts.headers);
    for (name, _) in trailers.iter() {
        assert!(!connection_specific(name));
        assert!(!name.eq_ignore_ascii_case(b"content-type"));
    }
});
