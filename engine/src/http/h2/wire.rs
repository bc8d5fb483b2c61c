//! HTTP/2 heads ⇄ the stream model, and the preface: pure functions, no I/O (fuzzed by
//! `engine/fuzz`'s `h2_mapping`).
//!
//! Mapping (RFC 9113 §8.2-8.3): `:authority` is the authority (`host` when it is absent; a
//! `host` header is never forwarded beside it), connection-specific headers never reach the
//! model (the `h2` crate refuses them from clients), `te` is dropped (only `trailers` is
//! allowed on HTTP/2, and the router passes that on by itself), several `cookie` fields are
//! joined with `; ` into one. Going out, connection-specific headers are dropped and names
//! lower-cased.

use ringway_filters::{BodySize, HeaderMap, RequestHead};

use crate::http::h1::{
    model::{self, Kind, Seen},
    BodyFraming,
};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection's first bytes are HTTP/2's preface (all of it, or as much of it as has
/// arrived, at least `PRI * `: no HTTP/1 request starts that way).
pub fn is_preface(first: &[u8]) -> bool {
    let n = first.len().min(PREFACE.len());
    n >= 6 && first[..n] == PREFACE[..n]
}

/// Decode an HTTP/2 request head into `head` (reused). `end`: the HEADERS frame ended the
/// stream (no body). Returns what the policy needs to know and the body's framing as the
/// stream layer sees it (`Length` from `content-length`, `Chunked` for an unknown length).
pub fn decode_request(
    parts: &::http::request::Parts,
    scheme: &'static str,
    end: bool,
    head: &mut RequestHead,
) -> (Seen, BodyFraming) {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    let path = if path.is_empty() { b"/" } else { path };
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => parts
            .headers
            .get(::http::header::HOST)
            .map_or(&b""[..], |h| h.as_bytes()),
    };
    head.reset(parts.method.as_str().as_bytes(), scheme, authority, path);
    let length = parts
        .headers
        .get(::http::header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let framing = match (end, length) {
        (true, _) | (false, Some(0)) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
        (false, None) => BodyFraming::Chunked,
    };
    head.body = match framing {
        BodyFraming::Length(n) => BodySize::Known(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => BodySize::Unknown,
        BodyFraming::None => BodySize::Empty,
    };
    let mut seen = Seen::default();
    let mut cookies: Option<Vec<u8>> = None;
    for (name, value) in &parts.headers {
        let n = name.as_str().as_bytes();
        match model::kind(n) {
            Kind::Codec | Kind::ForwardedProto => continue,
            Kind::ForwardedFor => seen.forwarded_for = true,
            Kind::RequestId => seen.request_id = true,
            Kind::ClientCert => seen.client_cert = true,
            Kind::GrpcTimeout => seen.grpc_timeout = true,
            Kind::Other if name == ::http::header::COOKIE => {
                // RFC 9113 §8.2.3: several cookie fields become one for HTTP/1.
                let c = cookies.get_or_insert_with(Vec::new);
                if !c.is_empty() {
                    c.extend_from_slice(b"; ");
                }
                c.extend_from_slice(value.as_bytes());
                continue;
            }
            Kind::Other => {}
        }
        head.headers.append(n, value.as_bytes());
    }
    if let Some(c) = cookies {
        head.headers.append("cookie", c);
    }
    (seen, framing)
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2), dropped from what goes to a client.
pub fn connection_specific(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"host",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The model's headers as `h2` takes them (names lower-cased; invalid fields dropped).
pub fn to_http_headers(src: &HeaderMap, out: &mut ::http::HeaderMap) {
    for (n, v) in src.iter() {
        if connection_specific(n) {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            ::http::HeaderName::from_bytes(n),
            ::http::HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        out.append(name, value);
    }
}

/// Trailers from `h2` into the model (pseudo-fields and fields a trailer may not carry dropped).
pub fn from_http_trailers(src: &::http::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::default();
    for (n, v) in src {
        let n = n.as_str().as_bytes();
        if model::forbidden_in_trailers(n) || connection_specific(n) {
            continue;
        }
        out.append(n, v.as_bytes());
    }
    out
}
