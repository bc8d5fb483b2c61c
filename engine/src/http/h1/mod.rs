//! HTTP/1.x codec: pure functions over bytes, no I/O.
//!
//! API CONTRACT (the connection manager is written against exactly these names; keep them):
//!
//! * [`parse_request`] turns the bytes at the front of a connection's read buffer into a
//!   [`Request`] view (zero-copy: everything borrows `buf`), or `Ok(None)` when the head is not
//!   complete yet, or a [`ParseError`] that maps to a 400/414/431/501/505 local reply
//!   ([`ParseError::status`]). It applies every
//!   request-smuggling rule (see [`ParseError`]).
//! * [`parse_response`] does the same for an upstream response head.
//! * [`encode_request_head`] / [`encode_response_head`] write the head to forward, with hop-by-hop
//!   headers removed and the framing re-decided.
//! * [`ChunkedDecoder`] decodes a chunked body incrementally; [`encode_chunk_header`] and
//!   [`LAST_CHUNK`] re-frame it.
//!
//! Data enters as the bytes at the front of a read buffer and leaves as views borrowing those
//! bytes (parse) or as bytes appended to a caller's `BytesMut` (encode). Nothing here allocates
//! except by growing that `BytesMut`, reserved once per call for the exact length written.
//!
//! Hot path, per request: `parse_request` (httparse plus one pass over the headers that decides
//! framing, keep-alive, expect, upgrade and host, and a check of the bytes in front of each header
//! line for bare LF), `encode_request_head`, `parse_response`, `encode_response_head`; per body
//! chunk, [`ChunkedDecoder::decode`], which hands out data with `split_to` (no copy).
//!
//! Policy choices where the RFCs leave a choice (tests in `tests/` pin each one):
//!
//! * Transfer-Encoding in a request: exactly `chunked` (one coding, any case) is accepted;
//!   `chunked` applied twice or not last (`chunked, gzip`) is a 400 ([`ParseError::Malformed`],
//!   RFC 9112 §6.3 says 400); any other coding list (`gzip`, `xchunked`, `gzip, chunked`) is a 501
//!   ([`ParseError::UnsupportedTransferEncoding`]); an empty one is a 400. Transfer-Encoding in an
//!   HTTP/1.0 request is a 400 (RFC 9112 §6.1: its framing is faulty).
//! * Content-Length: a comma list of identical values (`5, 5`, or repeated lines) is one value;
//!   anything but 1*DIGIT that fits a `u64` is [`ParseError::InvalidContentLength`].
//! * A response with both Content-Length and Transfer-Encoding: chunked is read as chunked and the
//!   upstream connection is not reused (`keep_alive = false`); any transfer coding but exactly
//!   `chunked` in a response is [`ParseError::UnsupportedTransferEncoding`] (the proxy re-frames
//!   bodies, so it cannot pass an unknown coding through).
//! * Bare LF and obs-fold are rejected in responses as well as requests. Any error parsing a
//!   response is the upstream's fault: the caller answers 502, whatever [`ParseError::status`]
//!   says.
//! * An HTTP/1.1 request without a Host header, or any request with two, is a 400 (RFC 9112 §3.2);
//!   a Host (or absolute-form authority) with characters outside an authority's, or with
//!   userinfo, is a 400. The request-target must be origin-form, absolute-form, `*` (OPTIONS) or
//!   authority-form (CONNECT).
//! * `Expect: 100-continue` and `Upgrade` are ignored in HTTP/1.0 requests (RFC 9110 §10.1.1, §7.8).
//! * `x-forwarded-for`: the client's lines are forwarded in place and `, <client ip>` is appended
//!   to the last one.

use bytes::{Bytes, BytesMut};

mod chunked;
mod encode;
pub mod model;
mod parse;
#[cfg(test)]
mod tests;

/// Headers parsed per message at most (more is a 431).
pub const MAX_HEADERS: usize = 128;

/// Protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Response only: the body runs until the upstream closes.
    UntilClose,
}

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request head (request line + headers), bytes: longer is 431.
    pub max_head_bytes: usize,
    /// Longest request-target, bytes: longer is 414.
    pub max_uri_bytes: usize,
}

/// Why a head could not be parsed. Every variant is a reason to answer and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("request-target too long")]
    UriTooLong,
    #[error("headers too large")]
    HeadersTooLarge,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    #[error("obsolete line folding")]
    ObsFold,
    #[error("bare LF where CRLF is required")]
    BareLf,
    #[error("unsupported HTTP version")]
    Version,
}

impl ParseError {
    /// The status of the local reply for this error (400, 414, 431, 501 or 505).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge => 431,
            ParseError::UnsupportedTransferEncoding => 501,
            ParseError::Version => 505,
            ParseError::Malformed(_)
            | ParseError::ContentLengthWithTransferEncoding
            | ParseError::ConflictingContentLength
            | ParseError::InvalidContentLength
            | ParseError::ObsFold
            | ParseError::BareLf => 400,
        }
    }
    /// Short machine-readable reason for `x-ringway-reason` (e.g. `bad_request`,
    /// `uri_too_long`, `headers_too_large`, `request_smuggling`).
    ///
    /// Framing ambiguities that let two parsers disagree on where a message ends (CL with TE,
    /// conflicting or invalid CL, obs-fold, bare LF) are `request_smuggling`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Malformed(_) => "bad_request",
            ParseError::UriTooLong => "uri_too_long",
            ParseError::HeadersTooLarge => "headers_too_large",
            ParseError::ContentLengthWithTransferEncoding
            | ParseError::ConflictingContentLength
            | ParseError::InvalidContentLength
            | ParseError::ObsFold
            | ParseError::BareLf => "request_smuggling",
            ParseError::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            ParseError::Version => "http_version_not_supported",
        }
    }
}

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub struct Request<'b, 'h> {
    pub method: &'b str,
    /// Request-target as sent (origin-form `/p?q`, or absolute-form `http://h/p`).
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of `buf` the head occupies (the body starts here).
    pub head_len: usize,
    pub framing: BodyFraming,
    /// Connection persists after this exchange (version default, `Connection: close`/`keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Value of `Upgrade` when `Connection` names `upgrade` (e.g. `websocket`).
    pub upgrade: Option<&'b [u8]>,
    /// `Host` header (or the authority of an absolute-form target), port included as sent.
    pub host: Option<&'b [u8]>,
}

impl Request<'_, '_> {
    /// The path part of the target (for absolute-form, with scheme and authority removed), query included.
    ///
    /// An absolute-form target with an empty path gives `/`; `*` (OPTIONS) and an authority-form
    /// target (CONNECT) are returned as they are.
    pub fn path(&self) -> &str {
        parse::target_path(self.target)
    }
    /// `true` for GET, HEAD, OPTIONS, TRACE, PUT, DELETE (idempotent per RFC 9110).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }
    /// First value of a header, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parse a request head at the front of `buf`.
///
/// `Ok(None)`: incomplete; if `buf.len()` already exceeds `limits.max_head_bytes` the caller gets
/// `Err(HeadersTooLarge)` (or `UriTooLong` if the request line alone is too long) instead.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
    limits: &Limits,
) -> Result<Option<Request<'b, 'h>>, ParseError> {
    parse::request(buf, headers, limits)
}

/// A parsed response head, borrowing the read buffer.
#[derive(Debug)]
pub struct Response<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    /// Decided with the request method: HEAD, 1xx, 204, 304 have no body.
    pub framing: BodyFraming,
    /// Upstream connection may be reused after this response.
    pub keep_alive: bool,
}

/// Parse a response head at the front of `buf`. `request_was_head` decides the framing.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
    request_was_head: bool,
    max_head_bytes: usize,
) -> Result<Option<Response<'b, 'h>>, ParseError> {
    parse::response(buf, headers, request_was_head, max_head_bytes)
}

/// What the proxy changes while forwarding a request head upstream.
#[derive(Debug)]
pub struct RequestRewrite<'a> {
    /// Path (with query) to send instead of `req.path()`; `None` keeps it.
    pub path: Option<&'a str>,
    /// Host to send instead of the client's; `None` keeps it.
    pub host: Option<&'a str>,
    /// Client IP to append to `x-forwarded-for`.
    pub client_ip: std::net::IpAddr,
    /// Value for `x-forwarded-proto` (`http` or `https`).
    pub forwarded_proto: &'static str,
    /// Value to set as `x-request-id` when the client sent none.
    pub request_id: &'a str,
    /// Forward the upgrade (`Connection: upgrade` + `Upgrade`) instead of dropping it.
    pub upgrade: bool,
    /// Trace context to send instead of the client's (tracing configured).
    pub trace: Option<TraceRewrite<'a>>,
}

/// The trace context headers of a forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct TraceRewrite<'a> {
    /// Complete header lines (each ending in CRLF) written after `x-request-id`.
    pub lines: &'a [u8],
    /// The client's `tracestate` is forwarded (else dropped with the other trace headers:
    /// `traceparent`, `b3`, `x-b3-*`, which are always replaced by `lines`).
    pub keep_tracestate: bool,
}

/// Write the upstream request head: request line (`HTTP/1.1`, origin-form path), the client's
/// end-to-end headers in order (hop-by-hop removed: Connection and every header it names,
/// Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade unless `rw.upgrade`, Proxy-Connection;
/// Expect removed too, the proxy answers 100-continue itself), `Host` (rewritten if asked),
/// `x-forwarded-for` appended, `x-forwarded-proto` set, `x-request-id` added when absent,
/// then the framing: `Content-Length: n` or `Transfer-Encoding: chunked` per `req.framing`,
/// and `Connection: upgrade`/`Upgrade` when upgrading. Keep-alive is the HTTP/1.1 default, so no
/// `Connection` header is sent otherwise.
///
/// Exact layout: request line, `host`, the kept client headers in their order (the last
/// `x-forwarded-for` line gets `, <client_ip>` appended), then `x-forwarded-for: <ip>` if the
/// client sent none, `x-forwarded-proto`, `x-request-id` if absent, trace context lines
/// (`rw.trace`, replacing the client's), framing, upgrade, blank line.
/// Generated names are lower-case; copied names keep the client's spelling. Without a host to
/// send (HTTP/1.0 client, no rewrite) `host` is sent empty, as RFC 9112 §3.2 asks.
/// `rw.path`, `rw.host` and `rw.request_id` MUST NOT contain CR, LF or other control bytes.
pub fn encode_request_head(req: &Request<'_, '_>, rw: &RequestRewrite<'_>, out: &mut BytesMut) {
    encode::request_head(req, rw, out)
}

/// Write the downstream response head: status line in `client_version`, the upstream's end-to-end
/// headers (hop-by-hop removed, as for requests; `Upgrade` kept on a 101), then framing for the
/// client: `framing_out` is `Length(n)` -> `Content-Length: n`, `Chunked` -> `Transfer-Encoding:
/// chunked`, `None`/`UntilClose` -> nothing (a 204/304/HEAD response keeps the upstream's
/// Content-Length header as is). Adds `Connection: close` when `!keep_alive` (and
/// `Connection: keep-alive` to an HTTP/1.0 client when `keep_alive`), `Connection: upgrade` on a
/// 101.
///
/// The upstream's Content-Length is dropped whenever this function frames the body itself or
/// the upstream response had a body (`resp.framing` not `None`), so the client never sees two.
/// An empty upstream reason phrase is replaced by the standard one for the status.
pub fn encode_response_head(
    resp: &Response<'_, '_>,
    client_version: Version,
    framing_out: BodyFraming,
    keep_alive: bool,
    out: &mut BytesMut,
) {
    encode::response_head(resp, client_version, framing_out, keep_alive, out)
}

/// Write a complete locally generated response (`content-length` framed, `content-type:
/// text/plain`, `x-ringway-reason: <reason>` when `reason` is given, `Connection: close` when
/// `close`). `extra` holds more headers (e.g. `location`). For a HEAD request pass `head = true`:
/// the Content-Length is still the body's, but no body bytes are written.
///
/// Layout: status line (standard reason phrase), `content-type: text/plain` (unless `extra`
/// has a content-type), `content-length`, `x-ringway-reason`, `extra` in order, `connection:
/// close` (or `connection: keep-alive` to an HTTP/1.0 client when not closing), blank line, body.
/// A 1xx, 204 or 304 gets neither content-type, content-length nor body. An `extra` header whose
/// name or value holds CR or LF is dropped (no response splitting through a caller's value).
#[allow(clippy::too_many_arguments)]
pub fn encode_local_reply(
    status: u16,
    reason: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
    version: Version,
    close: bool,
    head: bool,
    out: &mut BytesMut,
) {
    encode::local_reply(status, reason, extra, body, version, close, head, out)
}

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes (split off the input without copying).
    Data(Bytes),
    /// More input is needed.
    NeedMore,
    /// The last chunk and the trailers (discarded) have been read; the message is complete.
    End,
}

/// Incremental decoder of `Transfer-Encoding: chunked`. Strict: chunk-size must be hex digits
/// (at most 16), optional chunk extensions are skipped, every line ends in CRLF (bare LF is an
/// error), trailer section is read and dropped (at most 16 KiB).
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: chunked::State,
    /// Bytes of the current chunk-size line (extensions included), or of the trailer section.
    line_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Consume from the front of `input`; returns the next piece. Bytes consumed are split off
    /// `input` (what remains is the unread rest, possibly the next pipelined message after End).
    ///
    /// After `End`, further calls return `End` and consume nothing. Errors are
    /// [`ParseError::Malformed`] (bad chunk size, missing CRLF after data, extension over 4 KiB),
    /// [`ParseError::BareLf`], or [`ParseError::HeadersTooLarge`] (trailers over 16 KiB); the
    /// decoder must not be used after an error.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Chunk, ParseError> {
        self.step(input)
    }
    /// `true` once the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, chunked::State::Done)
    }
}

/// Chunk header for `len` bytes of data: `"{len:x}\r\n"`. The caller sends data then `b"\r\n"`.
pub fn encode_chunk_header(len: usize, out: &mut BytesMut) {
    encode::chunk_header(len, out)
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
