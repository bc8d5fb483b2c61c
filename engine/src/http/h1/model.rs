//! HTTP/1 ⇄ the stream model: decode a parsed head ([`Request`], [`Response`]) into the
//! codec-neutral [`RequestHead`] / [`ResponseHead`] that filters, the router and observers see,
//! and encode a model head back into HTTP/1 wire bytes.
//!
//! Decoding is one pass over the parsed headers: hop-by-hop headers (`connection` and every
//! header it nominates, `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`,
//! `proxy-connection`, `expect`, `http2-settings`) and the framing (`content-length`) stay with
//! the codec; `host` becomes the authority; the request-target becomes the origin-form path
//! (absolute-form reduced, a `#fragment` stripped). What the connection manager's policy needs
//! to know about well-known headers is noted on the way ([`Seen`]), so the policy never scans the
//! map again. Encoding writes the request line or status line, `host`, the map in order, then
//! the framing the codec decided; the head is sized first and written with one reservation.
//! Trailers of chunked bodies, when a side enables them, decode into a `HeaderMap` (fields a
//! trailer may not carry are dropped) and encode after the last chunk.

use bytes::BytesMut;
use ringway_filters::{stream::eq_name, BodySize, HeaderMap, Method, RequestHead, ResponseHead};

use super::{encode::canonical_reason, BodyFraming, ParseError, Request, Response, Version};
use crate::text::decimal;

/// Header kinds the decoder treats specially.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Never part of the model (hop-by-hop, framing, host).
    Codec,
    ForwardedFor,
    ForwardedProto,
    RequestId,
    ClientCert,
    /// `grpc-timeout`: forwarded, and noted so the router need not look for it.
    GrpcTimeout,
    Other,
}

pub(crate) fn kind(name: &[u8]) -> Kind {
    let is = |s: &[u8]| eq_name(name, s);
    match name.len() {
        2 if is(b"te") => Kind::Codec,
        4 if is(b"host") => Kind::Codec,
        6 if is(b"expect") => Kind::Codec,
        7 if is(b"trailer") || is(b"upgrade") => Kind::Codec,
        10 if is(b"connection") || is(b"keep-alive") => Kind::Codec,
        12 if is(b"x-request-id") => Kind::RequestId,
        12 if is(b"grpc-timeout") => Kind::GrpcTimeout,
        14 if is(b"content-length") || is(b"http2-settings") => Kind::Codec,
        15 if is(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is(b"proxy-connection") => Kind::Codec,
        17 if is(b"transfer-encoding") => Kind::Codec,
        17 if is(b"x-forwarded-proto") => Kind::ForwardedProto,
        23 if is(b"x-forwarded-client-cert") => Kind::ClientCert,
        _ => Kind::Other,
    }
}

/// What decoding noticed about the headers the connection manager's policy rewrites.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// The client sent `x-forwarded-for`.
    pub forwarded_for: bool,
    /// The client sent `x-request-id`.
    pub request_id: bool,
    /// The client sent `x-forwarded-client-cert`.
    pub client_cert: bool,
    /// The client sent `grpc-timeout`.
    pub grpc_timeout: bool,
}

/// Tokens of every `Connection` line, beyond `close`, `keep-alive` and `upgrade`, are
/// nominated hop-by-hop headers. `any`: the parser saw such a token (the head's `nominates`),
/// so the common head, which has none, is not scanned again.
fn nominated<'a>(any: bool, headers: &'a [httparse::Header<'_>]) -> impl Fn(&[u8]) -> bool + 'a {
    move |name: &[u8]| any && connection_tokens(headers).any(|t| eq_name(t, name))
}

fn connection_tokens<'a>(headers: &'a [httparse::Header<'_>]) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(|h| eq_name(h.name.as_bytes(), b"connection"))
        .flat_map(|h| super::parse::tokens(h.value))
}

/// The origin-form path of a target: absolute-form reduced to its path, `#fragment` removed
/// (a fragment is never sent by a conforming client; it is stripped, not rejected). Borrowed
/// from the target, so an absolute-form target without a path gives `?query` or an empty slice
/// ([`decode_request`] puts the `/` in front).
pub fn origin_path<'b>(req: &Request<'b, '_>) -> &'b [u8] {
    let p = super::parse::target_path(req.target).as_bytes();
    match p.iter().position(|&b| b == b'#') {
        Some(i) => &p[..i],
        None => p,
    }
}

/// Decode a parsed request into `head` (reused: its allocations are kept). `scheme` is the
/// connection's (`http`, `https`).
pub fn decode_request(req: &Request<'_, '_>, scheme: &'static str, head: &mut RequestHead) -> Seen {
    let path = origin_path(req);
    let authority = req.host.unwrap_or(b"");
    if matches!(path.first(), None | Some(b'?')) {
        // Absolute-form without a path (`http://h?q`, `http://h#f`): origin-form starts with
        // `/` (RFC 9112 §3.2.1), which the router and the filters must see too. Rare enough to
        // allocate for.
        head.reset(
            req.method.as_bytes(),
            scheme,
            authority,
            &[b"/", path].concat(),
        );
    } else {
        head.reset(req.method.as_bytes(), scheme, authority, path);
    }
    head.body = match req.framing {
        BodyFraming::None => BodySize::Empty,
        BodyFraming::Length(0) => BodySize::Empty,
        BodyFraming::Length(n) => BodySize::Known(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => BodySize::Unknown,
    };
    let is_nominated = nominated(req.nominates, req.headers);
    let mut seen = Seen::default();
    for h in req.headers {
        let name = h.name.as_bytes();
        match kind(name) {
            Kind::Codec | Kind::ForwardedProto => continue,
            // Nominated by `Connection`: it stays on this hop, so it is not "seen" either (the
            // policy then adds its own x-forwarded-for / x-request-id).
            _ if is_nominated(name) => continue,
            Kind::ForwardedFor => seen.forwarded_for = true,
            Kind::RequestId => seen.request_id = true,
            Kind::ClientCert => seen.client_cert = true,
            Kind::GrpcTimeout => seen.grpc_timeout = true,
            Kind::Other => {}
        }
        head.headers.append(name, h.value);
    }
    seen
}

/// The `Upgrade` a request asks for and the proxy forwards: none for `h2c` (HTTP/2 over
/// cleartext is not offered by upgrade; the header and its `Connection` token are dropped).
pub fn forwarded_upgrade<'b>(req: &Request<'b, '_>) -> Option<&'b [u8]> {
    req.upgrade
        .filter(|u| !super::parse::tokens(u).any(|t| t.eq_ignore_ascii_case(b"h2c")))
}

/// Whether a request without a body still says `content-length: 0`: every method but GET,
/// HEAD, DELETE, TRACE and CONNECT, whose semantics anticipate no content (RFC 9110 §8.6: a user
/// agent SHOULD send it for the others, and some origins answer 411 without it; Envoy's rule).
fn says_empty(method: Method) -> bool {
    !matches!(
        method,
        Method::Get | Method::Head | Method::Delete | Method::Trace | Method::Connect
    )
}

/// Write the upstream request head from the model: request line (`HTTP/1.1`), `host`, the
/// headers in order, the framing (`content-length: n` for a known length, chunked for an
/// unknown one, `content-length: 0` for no body when the method anticipates one, e.g. POST),
/// and `connection: upgrade` + `upgrade` when `upgrade` is given.
pub fn encode_request(head: &RequestHead, upgrade: Option<&[u8]>, out: &mut BytesMut) {
    let path = head.path();
    let path_prefix: &[u8] = match path.first() {
        None | Some(b'?') => b"/",
        _ => b"",
    };
    let method = head.method_str().as_bytes();
    let mut num = [0u8; 20];
    let (framing, length): (&[u8], &[u8]) = match head.body {
        BodySize::Empty if says_empty(head.method) => (b"content-length: 0", b""),
        BodySize::Empty => (b"", b""),
        BodySize::Known(n) => (b"content-length: ", decimal(n, &mut num)),
        BodySize::Unknown => (b"transfer-encoding: chunked", b""),
    };
    let mut len = method.len() + 1 + path_prefix.len() + path.len() + 11;
    len += 6 + head.authority().len() + 2;
    len += head.headers.wire_len();
    if !framing.is_empty() {
        len += framing.len() + length.len() + 2;
    }
    if let Some(u) = upgrade {
        len += 21 + 9 + u.len() + 2;
    }
    len += 2;
    out.reserve(len);
    let start = out.len();
    put(
        out,
        &[method, b" ", path_prefix, path, b" HTTP/1.1\r\nhost: "],
    );
    put(out, &[head.authority(), b"\r\n"]);
    head.headers.write_h1(out);
    if !framing.is_empty() {
        put(out, &[framing, length, b"\r\n"]);
    }
    if let Some(u) = upgrade {
        put(out, &[b"connection: upgrade\r\nupgrade: ", u, b"\r\n"]);
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len() - start, len);
}

/// Decode a parsed response into `head` (reused). A response without a body (HEAD, 304) keeps
/// its `content-length`, which then describes the representation, not this message.
pub fn decode_response(resp: &Response<'_, '_>, head: &mut ResponseHead) {
    head.status = resp.status;
    head.headers.clear();
    head.body = match resp.framing {
        BodyFraming::None | BodyFraming::Length(0) => BodySize::Empty,
        BodyFraming::Length(n) => BodySize::Known(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => BodySize::Unknown,
    };
    let keep_length = resp.framing == BodyFraming::None;
    let is_nominated = nominated(resp.nominates, resp.headers);
    for h in resp.headers {
        let name = h.name.as_bytes();
        let keep = match kind(name) {
            Kind::Codec => keep_length && eq_name(name, b"content-length"),
            _ => true,
        };
        if keep && !is_nominated(name) {
            head.headers.append(name, h.value);
        }
    }
}

/// Fields a trailer section may not carry (RFC 9110 §6.5.1: framing, routing, request
/// modifiers, authentication, response control and content metadata): dropped on decode.
pub(crate) fn forbidden_in_trailers(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"age",
        b"authorization",
        b"cache-control",
        b"content-encoding",
        b"content-range",
        b"content-type",
        b"date",
        b"expires",
        b"location",
        b"max-forwards",
        b"pragma",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"range",
        b"retry-after",
        b"set-cookie",
        b"vary",
        b"www-authenticate",
    ];
    matches!(kind(name), Kind::Codec) || NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Decode a chunked body's trailer lines (as [`super::ChunkedDecoder::take_trailers`] gives
/// them) into `out`, dropping fields a trailer may not carry. A malformed line is an error.
pub fn decode_trailers(raw: &[u8], out: &mut HeaderMap) -> Result<(), ParseError> {
    let mut buf = Vec::with_capacity(raw.len() + 2);
    buf.extend_from_slice(raw);
    buf.extend_from_slice(b"\r\n");
    let mut headers = [httparse::EMPTY_HEADER; super::MAX_HEADERS];
    match httparse::parse_headers(&buf, &mut headers) {
        Ok(httparse::Status::Complete((_, hs))) => {
            for h in hs {
                let name = h.name.as_bytes();
                if !forbidden_in_trailers(name) {
                    out.append(name, h.value);
                }
            }
            Ok(())
        }
        Ok(httparse::Status::Partial) => Err(ParseError::Malformed("incomplete trailers")),
        Err(httparse::Error::TooManyHeaders) => Err(ParseError::HeadersTooLarge),
        Err(_) => Err(ParseError::Malformed("invalid trailer field")),
    }
}

/// The end of a chunked body with `trailers`: the last chunk, the fields, the empty line.
pub fn encode_trailers(trailers: &HeaderMap, out: &mut BytesMut) {
    out.reserve(trailers.wire_len() + 5);
    out.extend_from_slice(b"0\r\n");
    trailers.write_h1(out);
    out.extend_from_slice(b"\r\n");
}

/// How the client's response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or an empty body: `content-length: 0` when `length_zero`).
    None {
        length_zero: bool,
    },
    Length(u64),
    Chunked,
    /// HTTP/1.0 client, unknown length: the body ends when the connection closes.
    UntilClose,
}

impl Framing {
    /// The framing for a body of `size` sent to a client speaking `version`; `bodiless` for
    /// responses that cannot have a body (HEAD, 1xx, 204, 304).
    pub fn for_client(size: BodySize, version: Version, bodiless: bool) -> Framing {
        match size {
            _ if bodiless => Framing::None { length_zero: false },
            BodySize::Empty => Framing::None { length_zero: true },
            BodySize::Known(n) => Framing::Length(n),
            BodySize::Unknown if version == Version::Http11 => Framing::Chunked,
            BodySize::Unknown => Framing::UntilClose,
        }
    }
}

/// What the connection header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    KeepAlive,
    Close,
    /// 101: `connection: upgrade` and this `upgrade` value.
    Upgrade,
}

/// Write the client's response head from the model: status line in `version`, the headers,
/// the framing, and the connection header (`close`; `keep-alive` to an HTTP/1.0 client kept
/// open; `upgrade` on a 101 with `upgrade` as the protocol). `reason`: an `x-ringway-reason`
/// value for local replies.
pub fn encode_response(
    head: &ResponseHead,
    version: Version,
    framing: Framing,
    persist: Persist,
    upgrade: Option<&[u8]>,
    reason: Option<&str>,
    out: &mut BytesMut,
) {
    let mut sbuf = [0u8; 20];
    let status = decimal(u64::from(head.status), &mut sbuf);
    let phrase = canonical_reason(head.status).as_bytes();
    let mut num = [0u8; 20];
    let (fr, length): (&[u8], &[u8]) = match framing {
        Framing::None { length_zero: true } => (b"content-length: 0", b""),
        Framing::None { .. } | Framing::UntilClose => (b"", b""),
        Framing::Length(n) => (b"content-length: ", decimal(n, &mut num)),
        Framing::Chunked => (b"transfer-encoding: chunked", b""),
    };
    let connection: &[u8] = match persist {
        Persist::Upgrade => b"connection: upgrade\r\n",
        Persist::Close => b"connection: close\r\n",
        Persist::KeepAlive if version == Version::Http10 => b"connection: keep-alive\r\n",
        Persist::KeepAlive => b"",
    };
    let upgrade = upgrade.filter(|_| persist == Persist::Upgrade);
    let reason = reason.filter(|r| HeaderMap::is_valid_value(r.as_bytes()));
    let mut len = 9 + status.len() + 1 + phrase.len() + 2 + head.headers.wire_len();
    if !fr.is_empty() {
        len += fr.len() + length.len() + 2;
    }
    if let Some(r) = reason {
        len += 18 + r.len() + 2;
    }
    if let Some(u) = upgrade {
        len += 9 + u.len() + 2;
    }
    len += connection.len() + 2;
    out.reserve(len);
    let start = out.len();
    put(
        out,
        &[version_bytes(version), b" ", status, b" ", phrase, b"\r\n"],
    );
    head.headers.write_h1(out);
    if !fr.is_empty() {
        put(out, &[fr, length, b"\r\n"]);
    }
    if let Some(r) = reason {
        put(out, &[b"x-ringway-reason: ", r.as_bytes(), b"\r\n"]);
    }
    if let Some(u) = upgrade {
        put(out, &[b"upgrade: ", u, b"\r\n"]);
    }
    put(out, &[connection, b"\r\n"]);
    debug_assert_eq!(out.len() - start, len);
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
