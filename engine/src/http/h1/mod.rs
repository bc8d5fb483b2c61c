//! HTTP/1.x codec: pure functions over bytes, no I/O.
//!
//! API CONTRACT (the connection manager and the router are written against exactly these names;
//! keep them):
//!
//! * [`parse_request`] turns the bytes at the front of a connection's read buffer into a
//!   [`Request`] view (zero-copy: everything borrows `buf`), or `Ok(None)` when the head is not
//!   complete yet, or a [`ParseError`] that maps to a 400/414/431/501/505 local reply
//!   ([`ParseError::status`]). It applies every request-smuggling rule (see [`ParseError`]).
//! * [`parse_response`] does the same for an upstream response head.
//! * [`model::decode_request`] / [`model::decode_response`] turn a parsed head into the
//!   codec-neutral stream model (`ringway_filters::{RequestHead, ResponseHead}`) that the router,
//!   the filters and the observers see: hop-by-hop headers and the framing stay with the codec,
//!   `Host` becomes the authority, the target becomes an origin-form path. The request decoder
//!   also notes what the forwarding policy needs ([`model::Seen`]);
//!   [`model::forwarded_upgrade`] says which `Upgrade` may go upstream (never `h2c`).
//! * [`model::encode_request`] / [`model::encode_response`] write a model head back as HTTP/1:
//!   request line or status line (the canonical reason phrase), `host`, the headers in order,
//!   then the framing the codec decides (`content-length`, `transfer-encoding: chunked`, or
//!   nothing; [`model::Framing::for_client`] for responses) and the connection header
//!   ([`model::Persist`]: `close`, `keep-alive` to an HTTP/1.0 client, `upgrade`). Local replies
//!   are model heads too, encoded with their `x-ringway-reason`.
//! * [`ChunkedDecoder`] decodes a chunked body incrementally; [`encode_chunk_header`] and
//!   [`LAST_CHUNK`] re-frame it.
//!
//! Data enters as the bytes at the front of a read buffer and leaves as views borrowing those
//! bytes (parse), as a model head the caller reuses from request to request (decode: one copy of
//! the kept headers into its map, no allocation once the map has grown), or as bytes appended to
//! a caller's `BytesMut` (encode: one reservation of the exact length written).
//!
//! Hot path, per request: `parse_request` (httparse plus one pass over the headers that decides
//! framing, keep-alive, expect, upgrade and host, and a check of the bytes in front of each header
//! line for bare LF), `decode_request`, `encode_request`, `parse_response`, `decode_response`,
//! `encode_response`; per body chunk, [`ChunkedDecoder::decode`], which hands out data with
//! `split_to` (no copy). The connection manager's header policy (`x-forwarded-*`,
//! `x-request-id`, trace context) is not the codec's: it edits the model (`crate::http::policy`).
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
//! * A `#fragment` in the request-target is stripped, not rejected; an absolute-form target is
//!   reduced to its origin-form path (`/` when it has none).
//! * Responses: the upstream's reason phrase is replaced by the canonical one for the status
//!   (empty for a status without one). The upstream's Content-Length is kept only on a response
//!   that has no body (HEAD, 1xx, 204, 304), where it describes the representation; any other
//!   response is re-framed by the codec.

use bytes::{Bytes, BytesMut};

mod chunked;
mod encode;
pub mod model;
mod parse;
#[cfg(test)]
mod tests;

/// Headers parsed per message at most (more is a 431).
pub const MAX_HEADERS: usize = 128;

/// Room for a head's parsed headers, left uninitialized: httparse writes only the entries it
/// fills. (An array of `httparse::EMPTY_HEADER` would be 4 KiB of stores per parse.)
pub type HeaderSlots<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh [`HeaderSlots`], at no cost.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

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
    /// A `Connection` line names a header beyond `close`, `keep-alive` and `upgrade` (that
    /// header stays on this hop).
    pub nominates: bool,
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
    headers: &'h mut HeaderSlots<'b>,
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
    /// As [`Request::nominates`].
    pub nominates: bool,
}

/// Parse a response head at the front of `buf`. `request_was_head` decides the framing.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    request_was_head: bool,
    max_head_bytes: usize,
) -> Result<Option<Response<'b, 'h>>, ParseError> {
    parse::response(buf, headers, request_was_head, max_head_bytes)
}

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes (split off the input without copying).
    Data(Bytes),
    /// More input is needed.
    NeedMore,
    /// The last chunk and the trailers have been read; the message is complete. The trailers
    /// are dropped unless the decoder keeps them ([`ChunkedDecoder::keeping_trailers`]).
    End,
}

/// Incremental decoder of `Transfer-Encoding: chunked`. Strict: chunk-size must be hex digits
/// (at most 16), optional chunk extensions are skipped, every line ends in CRLF (bare LF is an
/// error), the trailer section is read (at most 16 KiB) and dropped, or kept when asked.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: chunked::State,
    /// Bytes of the current chunk-size line (extensions included), or of the trailer section.
    line_bytes: usize,
    /// The trailer lines as received (each with its CRLF), when they are kept.
    trailers: Option<BytesMut>,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }
    /// A decoder that keeps the trailer section for [`ChunkedDecoder::take_trailers`].
    pub fn keeping_trailers() -> Self {
        ChunkedDecoder {
            trailers: Some(BytesMut::new()),
            ..Self::default()
        }
    }
    /// The trailer lines (`name: value\r\n` each, as received; parse them with
    /// [`model::decode_trailers`]), once the body ended. `None`: none were sent or kept.
    pub fn take_trailers(&mut self) -> Option<BytesMut> {
        self.trailers.take().filter(|t| !t.is_empty())
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
