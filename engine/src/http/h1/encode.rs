//! Head encoders: the request head sent upstream, the response head sent downstream, local
//! replies and chunk headers.
//!
//! Data enters as a parsed [`Request`]/[`Response`] (or the pieces of a local reply) and leaves
//! appended to the caller's `BytesMut`. Each encoder runs in two passes over the headers: the
//! first decides which headers go out and adds up the exact length, the second writes after one
//! `reserve`, so the buffer grows at most once and nothing else is allocated (numbers and IP
//! addresses are formatted on the stack). Header names are matched on their length first, then
//! with `eq_ignore_ascii_case`; the headers that `Connection` nominates are found by walking its
//! tokens in place, and only when it names something beyond `close`/`keep-alive`/`upgrade`.

use super::parse::tokens;
use super::{BodyFraming, Request, RequestRewrite, Response, TraceRewrite, Version};
use crate::text::decimal;
use bytes::BytesMut;
use httparse::Header;
use std::fmt::Write as _;

/// Header names the encoders treat specially; everything else is [`Kind::Other`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Proxy-Connection, Expect.
    HopByHop,
    Upgrade,
    Host,
    ContentLength,
    ForwardedFor,
    ForwardedProto,
    RequestId,
    Other,
}

fn kind(name: &str) -> Kind {
    let n = name.as_bytes();
    let is = |s: &[u8]| n.eq_ignore_ascii_case(s);
    match n.len() {
        2 if is(b"te") => Kind::HopByHop,
        4 if is(b"host") => Kind::Host,
        6 if is(b"expect") => Kind::HopByHop,
        7 if is(b"trailer") => Kind::HopByHop,
        7 if is(b"upgrade") => Kind::Upgrade,
        10 if is(b"connection") || is(b"keep-alive") => Kind::HopByHop,
        12 if is(b"x-request-id") => Kind::RequestId,
        14 if is(b"content-length") => Kind::ContentLength,
        15 if is(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is(b"proxy-connection") => Kind::HopByHop,
        17 if is(b"transfer-encoding") => Kind::HopByHop,
        17 if is(b"x-forwarded-proto") => Kind::ForwardedProto,
        _ => Kind::Other,
    }
}

/// The header names that the message's `Connection` lines nominate as hop-by-hop.
struct Nominated<'a, 'b> {
    headers: &'a [Header<'b>],
    /// Some `Connection` token names a header beyond the ones always dropped.
    any: bool,
}

impl<'a, 'b> Nominated<'a, 'b> {
    fn new(headers: &'a [Header<'b>]) -> Self {
        let any = connection_values(headers).any(|v| {
            tokens(v).any(|t| {
                !(t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"upgrade"))
            })
        });
        Nominated { headers, any }
    }

    fn contains(&self, name: &str) -> bool {
        self.any
            && connection_values(self.headers)
                .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

fn connection_values<'a>(headers: &'a [Header<'_>]) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection"))
        .map(|h| h.value)
}

/// A request header's fate: `None` when it is not forwarded (hop-by-hop, nominated by
/// `Connection`, or rewritten by the encoder), else its kind.
fn request_kind(
    h: &Header<'_>,
    nominated: &Nominated<'_, '_>,
    trace: Option<&TraceRewrite<'_>>,
) -> Option<Kind> {
    match kind(h.name) {
        Kind::HopByHop
        | Kind::Upgrade
        | Kind::Host
        | Kind::ContentLength
        | Kind::ForwardedProto => None,
        _ if nominated.contains(h.name) => None,
        Kind::Other
            if trace
                .is_some_and(|t| crate::trace::context::is_replaced(h.name, t.keep_tracestate)) =>
        {
            None
        }
        k => Some(k),
    }
}

/// See [`super::encode_request_head`].
pub(super) fn request_head(req: &Request<'_, '_>, rw: &RequestRewrite<'_>, out: &mut BytesMut) {
    let nominated = Nominated::new(req.headers);
    let path = rw.path.unwrap_or_else(|| req.path());
    // Origin-form needs a leading `/` (an absolute-form `http://h?q` leaves `?q`).
    let path_prefix: &[u8] = match path.as_bytes().first() {
        None | Some(b'?' | b'#') => b"/",
        _ => b"",
    };
    let host: &[u8] = match rw.host {
        Some(h) => h.as_bytes(),
        None => req.host.unwrap_or(b""),
    };
    let mut ip_buf = StackBuf::new();
    let _ = write!(ip_buf, "{}", rw.client_ip);
    let ip = ip_buf.as_bytes();
    let mut num_buf = [0u8; 20];
    let length: &[u8] = match req.framing {
        BodyFraming::Length(n) => decimal(n, &mut num_buf),
        _ => b"",
    };
    let upgrade = if rw.upgrade { req.upgrade } else { None };

    // Pass 1: what goes out, and its exact length.
    let mut len = req.method.len() + 1 + path_prefix.len() + path.len() + 11; // " HTTP/1.1\r\n"
    len += 6 + host.len() + 2; // "host: " CRLF
    let mut last_xff = None;
    let mut has_request_id = false;
    for (i, h) in req.headers.iter().enumerate() {
        match request_kind(h, &nominated, rw.trace.as_ref()) {
            None => continue,
            Some(Kind::ForwardedFor) => last_xff = Some(i),
            Some(Kind::RequestId) => has_request_id = true,
            Some(_) => {}
        }
        len += h.name.len() + 2 + h.value.len() + 2;
    }
    len += match last_xff {
        Some(_) => 2 + ip.len(),   // ", <ip>"
        None => 17 + ip.len() + 2, // "x-forwarded-for: <ip>" CRLF
    };
    len += 19 + rw.forwarded_proto.len() + 2; // "x-forwarded-proto: "
    if !has_request_id {
        len += 14 + rw.request_id.len() + 2; // "x-request-id: "
    }
    let trace_lines = rw.trace.as_ref().map_or(&b""[..], |t| t.lines);
    len += trace_lines.len();
    len += match req.framing {
        BodyFraming::Length(_) => 16 + length.len() + 2, // "content-length: "
        BodyFraming::Chunked => 28,                      // "transfer-encoding: chunked\r\n"
        BodyFraming::None | BodyFraming::UntilClose => 0,
    };
    if let Some(u) = upgrade {
        len += 21 + 9 + u.len() + 2; // "connection: upgrade\r\n" "upgrade: "
    }
    len += 2;

    // Pass 2: write.
    out.reserve(len);
    let start = out.len();
    put(
        out,
        &[
            req.method.as_bytes(),
            b" ",
            path_prefix,
            path.as_bytes(),
            b" HTTP/1.1\r\n",
        ],
    );
    put(out, &[b"host: ", host, b"\r\n"]);
    for (i, h) in req.headers.iter().enumerate() {
        if request_kind(h, &nominated, rw.trace.as_ref()).is_none() {
            continue;
        }
        put(out, &[h.name.as_bytes(), b": ", h.value]);
        if last_xff == Some(i) {
            put(out, &[b", ", ip]);
        }
        out.extend_from_slice(b"\r\n");
    }
    if last_xff.is_none() {
        put(out, &[b"x-forwarded-for: ", ip, b"\r\n"]);
    }
    put(
        out,
        &[
            b"x-forwarded-proto: ",
            rw.forwarded_proto.as_bytes(),
            b"\r\n",
        ],
    );
    if !has_request_id {
        put(out, &[b"x-request-id: ", rw.request_id.as_bytes(), b"\r\n"]);
    }
    out.extend_from_slice(trace_lines);
    match req.framing {
        BodyFraming::Length(_) => put(out, &[b"content-length: ", length, b"\r\n"]),
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if let Some(u) = upgrade {
        put(out, &[b"connection: upgrade\r\nupgrade: ", u, b"\r\n"]);
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len() - start, len);
}

/// See [`super::encode_response_head`].
pub(super) fn response_head(
    resp: &Response<'_, '_>,
    client_version: Version,
    framing_out: BodyFraming,
    keep_alive: bool,
    out: &mut BytesMut,
) {
    let nominated = Nominated::new(resp.headers);
    let switching = resp.status == 101;
    let keep_upstream_length = resp.framing == BodyFraming::None
        && matches!(framing_out, BodyFraming::None | BodyFraming::UntilClose);
    let kept = |h: &Header<'_>| {
        let forward = match kind(h.name) {
            Kind::HopByHop => false,
            Kind::Upgrade => switching,
            Kind::ContentLength => keep_upstream_length,
            _ => true,
        };
        forward && !nominated.contains(h.name)
    };
    let reason: &[u8] = if resp.reason.is_empty() {
        canonical_reason(resp.status).as_bytes()
    } else {
        resp.reason.as_bytes()
    };
    let mut status_buf = [0u8; 20];
    let status = decimal(u64::from(resp.status), &mut status_buf);
    let mut num_buf = [0u8; 20];
    let length: &[u8] = match framing_out {
        BodyFraming::Length(n) => decimal(n, &mut num_buf),
        _ => b"",
    };
    let connection: &[u8] = if switching {
        b"connection: upgrade\r\n"
    } else if !keep_alive {
        b"connection: close\r\n"
    } else if client_version == Version::Http10 {
        b"connection: keep-alive\r\n"
    } else {
        b""
    };

    let mut len = 9 + status.len() + 1 + reason.len() + 2; // "HTTP/1.x " status SP reason CRLF
    for h in resp.headers.iter().filter(|h| kept(h)) {
        len += h.name.len() + 2 + h.value.len() + 2;
    }
    len += match framing_out {
        BodyFraming::Length(_) => 16 + length.len() + 2,
        BodyFraming::Chunked => 28,
        BodyFraming::None | BodyFraming::UntilClose => 0,
    };
    len += connection.len() + 2;

    out.reserve(len);
    let start = out.len();
    put(
        out,
        &[
            version_bytes(client_version),
            b" ",
            status,
            b" ",
            reason,
            b"\r\n",
        ],
    );
    for h in resp.headers.iter().filter(|h| kept(h)) {
        put(out, &[h.name.as_bytes(), b": ", h.value, b"\r\n"]);
    }
    match framing_out {
        BodyFraming::Length(_) => put(out, &[b"content-length: ", length, b"\r\n"]),
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    put(out, &[connection, b"\r\n"]);
    debug_assert_eq!(out.len() - start, len);
}

/// See [`super::encode_local_reply`].
#[allow(clippy::too_many_arguments)]
pub(super) fn local_reply(
    status: u16,
    reason: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
    version: Version,
    close: bool,
    head: bool,
    out: &mut BytesMut,
) {
    let bodiless = status < 200 || status == 204 || status == 304;
    let safe = |(n, v): &&(&str, &str)| !has_line_break(n) && !has_line_break(v);
    let extra_has_type = extra
        .iter()
        .filter(safe)
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let mut status_buf = [0u8; 20];
    let status_text = decimal(u64::from(status), &mut status_buf);
    let phrase = canonical_reason(status).as_bytes();
    let mut num_buf = [0u8; 20];
    let length = decimal(body.len() as u64, &mut num_buf);
    let content_type: &[u8] = if bodiless || extra_has_type {
        b""
    } else {
        b"content-type: text/plain\r\n"
    };
    let reason = reason.filter(|r| !has_line_break(r));
    let connection: &[u8] = if close {
        b"connection: close\r\n"
    } else if version == Version::Http10 {
        b"connection: keep-alive\r\n"
    } else {
        b""
    };
    let body: &[u8] = if head || bodiless { b"" } else { body };

    let mut len = 9 + status_text.len() + 1 + phrase.len() + 2 + content_type.len();
    if !bodiless {
        len += 16 + length.len() + 2;
    }
    if let Some(r) = reason {
        len += 18 + r.len() + 2; // "x-ringway-reason: "
    }
    for (n, v) in extra.iter().filter(safe) {
        len += n.len() + 2 + v.len() + 2;
    }
    len += connection.len() + 2 + body.len();

    out.reserve(len);
    let start = out.len();
    put(
        out,
        &[
            version_bytes(version),
            b" ",
            status_text,
            b" ",
            phrase,
            b"\r\n",
            content_type,
        ],
    );
    if !bodiless {
        put(out, &[b"content-length: ", length, b"\r\n"]);
    }
    if let Some(r) = reason {
        put(out, &[b"x-ringway-reason: ", r.as_bytes(), b"\r\n"]);
    }
    for (n, v) in extra.iter().filter(safe) {
        put(out, &[n.as_bytes(), b": ", v.as_bytes(), b"\r\n"]);
    }
    put(out, &[connection, b"\r\n", body]);
    debug_assert_eq!(out.len() - start, len);
}

/// See [`super::encode_chunk_header`].
pub(super) fn chunk_header(len: usize, out: &mut BytesMut) {
    let mut buf = [0u8; 18];
    let mut i = 16;
    let mut n = len as u64;
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    out.extend_from_slice(&buf[i..]);
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

fn put(out: &mut BytesMut, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
}

fn version_bytes(v: Version) -> &'static [u8] {
    match v {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
    }
}

/// A `fmt::Write` sink on the stack, for IP addresses (at most 45 bytes as text).
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf {
            buf: [0; 64],
            len: 0,
        }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The RFC 9110 reason phrase of a status, or `""`.
pub(super) fn canonical_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
