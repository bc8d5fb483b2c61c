//! The `decompressor` filter (Envoy's `envoy.filters.http.decompressor`): undoes a gzip, brotli
//! or zstd content-coding on request bodies on their way upstream and on response bodies on
//! their way to the client, streaming, so the filters and services after it see plain bodies.
//!
//! ```text
//! parse ─▶ Config (one library, two directions, counters)           control thread, once
//!   request headers: responses decompressed? ─▶ advertise the coding in accept-encoding
//!                    a body whose last content-coding is ours (no no-transform)
//!                      ─▶ drop that coding; body length Unknown (the codec re-frames)
//!   request data:    each piece ─▶ decoded as it comes (the decoder is made on the first byte)
//!                    corrupt / truncated / over max_inflate_ratio ─▶ 400
//!   response headers / data: the same for the response (failure: the stream is ended)
//! ```
//!
//! A body is decompressed when its direction is enabled, it has a body, `cache-control` has no
//! `no-transform` (unless `ignore_no_transform_header`), and the last coding of
//! `content-encoding` is the library's (`gzip` or `x-gzip`, `br`, `zstd`): that coding is taken
//! off the list (the header goes when it was the only one). Codings apply in the order listed,
//! so only the last can be undone: `br, gzip` becomes `br`; `gzip, br` is left alone.
//!
//! ## Differences from Envoy, on purpose
//! - The library's options sit beside its `name` (no `typed_config`), and `name` picks the
//!   library (`gzip`, `brotli`, `zstd`, or Envoy's `envoy.compression.<name>.decompressor`); it
//!   also names the stats (Envoy: `decompressor.<name>.<library>.`).
//! - The LAST coding of `content-encoding` is undone (RFC 9110 order); Envoy matches and
//!   removes the first. `x-gzip` counts as gzip.
//! - A corrupt or truncated body, or one over `max_inflate_ratio`, fails the stream: a 400 for
//!   a request, the connection closed for a response. Envoy forwards what it decoded up to the
//!   error and ends the body there as if it were complete. `max_inflate_ratio` applies to the
//!   body's totals so far (Envoy: each piece), for every library (Envoy: configurable for gzip,
//!   100 for brotli and zstd).
//! - 206 responses are not decompressed (a range of an encoded body does not decode), and
//!   requests with `range` get no `accept-encoding` advertisement (a range of an encoding the
//!   client never asked for would reach it). A decompressed response's strong `etag` is made
//!   weak, as the compressor does (the representation changed).
//! - `accept-encoding` already naming the coding at q=1 is left as it is; named with a lower q
//!   (or q=0), it is replaced by the bare coding, as Envoy does.
//! - No `x-envoy-decompressor-<name>-{compressed,uncompressed}-bytes` trailers (filters cannot
//!   add trailers on HTTP/1 yet); `enabled.runtime_key` and brotli's
//!   `disable_ring_buffer_reallocation` are accepted and ignored; zstd `dictionaries` are
//!   refused. zstd windows over 8 MiB are refused (RFC 9659). gzip `window_bits` is checked
//!   (9..15) but zlib-rs always keeps a 32 KiB window, so a stream that needs more window than
//!   configured still decodes (zlib would refuse it).
//! - As in Envoy, a message without a body (a HEAD response, a 304) keeps its
//!   `content-encoding`.
//!
//! Stats (Envoy's names), per direction: `decompressor.<library>.{request,response}.
//! {decompressed, not_decompressed, total_compressed_bytes, total_uncompressed_bytes}`, plus
//! `decompression_error` (corrupt, truncated or over the ratio; Envoy counts these per library
//! as `decompressor_library.zlib_data_error`, `brotli_error`, `zstd_generic_error`). Like Envoy,
//! a message without a body counts in neither `decompressed` nor `not_decompressed`.

mod config;
mod decoder;
#[cfg(test)]
mod tests;

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use self::{
    config::{Config, Direction, Library, STAT_NAMES},
    decoder::{Decoder, Failure},
};
use crate::{
    filter::{
        Ctx, DataStatus, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply,
        WorkerInfo,
    },
    registry::ParseResult,
    stats::Counters,
    stream::{BodySize, HeaderMap, RequestHead, ResponseHead},
};

/// `%RESPONSE_CODE_DETAILS%` for a body that does not decode (corrupt or cut short).
pub const REASON_FAILED: &str = "decompression_failed";
/// `%RESPONSE_CODE_DETAILS%` for a body that decodes to more than `max_inflate_ratio` times its
/// size (a decompression bomb).
pub const REASON_RATIO: &str = "decompression_ratio_exceeded";

/// Validate a `decompressor` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = crate::registry::decode::<config::Spec>(v)?;
    let cfg = config::validate(spec)?;
    Ok(Arc::new(DecompressorConfig(Arc::new(cfg))))
}

/// The validated config (shared by every worker).
#[derive(Debug)]
struct DecompressorConfig(Arc<Config>);

impl FilterConfig for DecompressorConfig {
    fn name(&self) -> &'static str {
        "decompressor"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(Factory(Rc::new(Worker {
            stats: self.0.stats.worker(),
            cfg: Arc::clone(&self.0),
        })))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.0.stats.snapshot()
    }
}

/// Which way a body goes (selects the config's switches and the stats' block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request = 0,
    Response = 1,
}

/// What a worker's filters share.
#[derive(Debug)]
struct Worker {
    cfg: Arc<Config>,
    stats: Arc<Counters>,
}

impl Worker {
    /// Add `n` to counter `stat` of direction `dir`.
    fn add(&self, dir: Dir, stat: usize, n: u64) {
        self.stats.add(dir as usize * STAT_NAMES.len() + stat, n);
    }

    fn direction(&self, dir: Dir) -> Direction {
        match dir {
            Dir::Request => self.cfg.request,
            Dir::Response => self.cfg.response,
        }
    }
}

#[derive(Debug)]
struct Factory(Rc<Worker>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            request_data: true,
            response_headers: true,
            response_data: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Decompressor {
            w: Rc::clone(&self.0),
            request: Body::Untouched,
            response: Body::Untouched,
        })
    }
}

/// One direction's body, as far as this filter is concerned.
#[derive(Debug)]
enum Body {
    /// Passed on as it is.
    Untouched,
    /// To be decoded; no byte yet (the decoder is made on the first).
    Armed,
    /// Being decoded.
    Decoding(Box<Decoder>),
    /// Failed: anything more is dropped and the failure repeated.
    Failed(Failure),
}

/// One request's decompressor.
#[derive(Debug)]
struct Decompressor {
    w: Rc<Worker>,
    request: Body,
    response: Body,
}

impl HttpFilter for Decompressor {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let cfg = &self.w.cfg;
        if cfg.response.enabled && cfg.advertise_accept_encoding && !head.headers.contains("range")
        {
            advertise(&mut head.headers, cfg.library.coding());
        }
        if !has_body(head.body, end_stream) {
            return HeadersStatus::Continue;
        }
        if self.w.arm(Dir::Request, &mut head.headers) {
            head.body = BodySize::Unknown;
            self.request = Body::Armed;
        }
        HeadersStatus::Continue
    }

    fn on_request_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        match self
            .w
            .decode(Dir::Request, &mut self.request, data, end_stream)
        {
            Ok(()) => DataStatus::Continue,
            Err(reason) => DataStatus::LocalReply(LocalReply::error(400, reason, "Bad Request")),
        }
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        if !has_body(head.body, end_stream) {
            return HeadersStatus::Continue;
        }
        if head.status == 206 {
            self.w.add(Dir::Response, config::NOT_DECOMPRESSED, 1);
            return HeadersStatus::Continue;
        }
        if self.w.arm(Dir::Response, &mut head.headers) {
            head.body = BodySize::Unknown;
            weaken_etag(&mut head.headers);
            self.response = Body::Armed;
        }
        HeadersStatus::Continue
    }

    fn on_response_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        match self
            .w
            .decode(Dir::Response, &mut self.response, data, end_stream)
        {
            Ok(()) => DataStatus::Continue,
            // The head is gone: the engine can only end the stream.
            Err(reason) => DataStatus::LocalReply(LocalReply::error(502, reason, "Bad Gateway")),
        }
    }

    fn recycle(&mut self) -> bool {
        self.request = Body::Untouched;
        self.response = Body::Untouched;
        true
    }
}

/// Whether a message has a body to look at (`Known(0)` has none).
fn has_body(size: BodySize, end_stream: bool) -> bool {
    !end_stream && !matches!(size, BodySize::Empty | BodySize::Known(0))
}

impl Worker {
    /// Decide whether a body with these headers is decompressed, count it, and if so take the
    /// coding off `content-encoding` (and drop any `content-length`: the length changes).
    fn arm(&self, dir: Dir, h: &mut HeaderMap) -> bool {
        let d = self.direction(dir);
        let decode = d.enabled
            && (d.ignore_no_transform_header || !has_token(h, "cache-control", b"no-transform"))
            && pop_last_coding(h, &self.cfg.library);
        let stat = if decode {
            config::DECOMPRESSED
        } else {
            config::NOT_DECOMPRESSED
        };
        self.add(dir, stat, 1);
        if decode {
            // The codec owns framing and keeps it out of the map; should one be there, it is
            // wrong now.
            h.remove("content-length");
        }
        decode
    }

    /// Decode one piece of a body in state `body`, replacing `data` with what it decodes to.
    /// `Err(reason)`: the body failed (now or before); `data` is emptied.
    fn decode(
        &self,
        dir: Dir,
        body: &mut Body,
        data: &mut Bytes,
        end_stream: bool,
    ) -> Result<(), &'static str> {
        if let Body::Failed(f) = *body {
            *data = Bytes::new();
            return Err(reason(f));
        }
        if matches!(body, Body::Armed) && !data.is_empty() {
            match Decoder::new(&self.cfg.library) {
                Ok(d) => *body = Body::Decoding(Box::new(d)),
                Err(f) => return Err(self.fail(dir, body, data, f)),
            }
        }
        let Body::Decoding(dec) = body else {
            if end_stream && matches!(body, Body::Armed) {
                // An empty body: nothing to decode, nothing wrong.
                *body = Body::Untouched;
            }
            return Ok(());
        };
        let mut out = Vec::new();
        let mut result = dec.push(data, &mut out);
        if end_stream && result.is_ok() {
            result = dec.finish();
        }
        if let Err(f) = result {
            return Err(self.fail(dir, body, data, f));
        }
        self.add(dir, config::TOTAL_COMPRESSED_BYTES, data.len() as u64);
        self.add(dir, config::TOTAL_UNCOMPRESSED_BYTES, out.len() as u64);
        *data = if out.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(out)
        };
        if end_stream {
            // The decoder's memory goes back now, not when the request ends.
            *body = Body::Untouched;
        }
        Ok(())
    }

    /// Record a failure: count it, drop the decoder, empty `data`; the reason to reply with.
    fn fail(&self, dir: Dir, body: &mut Body, data: &mut Bytes, f: Failure) -> &'static str {
        self.add(dir, config::DECOMPRESSION_ERROR, 1);
        *body = Body::Failed(f);
        *data = Bytes::new();
        reason(f)
    }
}

/// The `%RESPONSE_CODE_DETAILS%` of a failure.
fn reason(f: Failure) -> &'static str {
    match f {
        Failure::Corrupt => REASON_FAILED,
        Failure::TooLarge => REASON_RATIO,
    }
}

/// `value` without leading and trailing spaces and tabs.
fn trim(value: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// The non-empty items of a comma-separated header, over all its lines, trimmed.
fn items<'a>(h: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    h.get_all(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Whether a comma-separated header has directive `token` (case-insensitive; `=argument`
/// ignored).
fn has_token(h: &HeaderMap, name: &str, token: &[u8]) -> bool {
    items(h, name).any(|item| {
        let d = item.split(|&b| b == b'=').next().unwrap_or(item);
        trim(d).eq_ignore_ascii_case(token)
    })
}

/// When the last coding of `content-encoding` is `lib`'s, take it off (the header goes when it
/// was the only one) and say so.
fn pop_last_coding(h: &mut HeaderMap, lib: &Library) -> bool {
    if !items(h, "content-encoding")
        .last()
        .is_some_and(|t| lib.decodes(t))
    {
        return false;
    }
    let count = items(h, "content-encoding").count();
    let mut rest: Vec<u8> = Vec::new();
    for t in items(h, "content-encoding").take(count - 1) {
        if !rest.is_empty() {
            rest.extend_from_slice(b", ");
        }
        rest.extend_from_slice(t);
    }
    h.remove("content-encoding");
    if !rest.is_empty() {
        h.append("content-encoding", rest);
    }
    true
}

/// Make sure `accept-encoding` offers `coding` at full weight (Envoy's
/// `addEncodingToAcceptEncoding`): absent, it is added; present with a q-value below 1 (or
/// other parameters), that entry is replaced by the bare coding; at q=1, nothing changes.
fn advertise(h: &mut HeaderMap, coding: &str) {
    let mut named = false;
    let mut full = false;
    for item in items(h, "accept-encoding") {
        let mut parts = item.split(|&b| b == b';');
        if !trim(parts.next().unwrap_or_default()).eq_ignore_ascii_case(coding.as_bytes()) {
            continue;
        }
        named = true;
        let params: Vec<&[u8]> = parts.map(trim).filter(|p| !p.is_empty()).collect();
        full |= params.is_empty() || (params.len() == 1 && is_q_one(params[0]));
    }
    if full {
        return;
    }
    if !named {
        if h.contains("accept-encoding") {
            h.modify_last(b"accept-encoding", |old, out| {
                out.extend_from_slice(old);
                if !trim(old).is_empty() {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(coding.as_bytes());
            });
        } else {
            h.append("accept-encoding", coding);
        }
        return;
    }
    let mut list: Vec<u8> = Vec::new();
    for item in items(h, "accept-encoding") {
        let name = item.split(|&b| b == b';').next().unwrap_or(item);
        if trim(name).eq_ignore_ascii_case(coding.as_bytes()) {
            continue;
        }
        list.extend_from_slice(item);
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(coding.as_bytes());
    h.set("accept-encoding", list);
}

/// `q=1`, `q=1.0`... (case-insensitive `q`, spaces around `=` allowed).
fn is_q_one(param: &[u8]) -> bool {
    let mut kv = param.splitn(2, |&b| b == b'=');
    let key = trim(kv.next().unwrap_or_default());
    let value = trim(kv.next().unwrap_or_default());
    key.eq_ignore_ascii_case(b"q")
        && value.first() == Some(&b'1')
        && match value.get(1..) {
            Some([]) | None => true,
            Some([b'.', zeros @ ..]) => zeros.len() <= 3 && zeros.iter().all(|&b| b == b'0'),
            _ => false,
        }
}

/// A strong `etag` becomes weak (`W/"…"`): the decoded body is another representation.
fn weaken_etag(h: &mut HeaderMap) {
    let strong = h
        .get_bytes("etag")
        .is_some_and(|v| !(v.starts_with(b"W/") || v.starts_with(b"w/")));
    if strong {
        h.modify_last(b"etag", |old, out| {
            out.extend_from_slice(b"W/");
            out.extend_from_slice(old);
        });
    }
}
