//! The `compressor` filter (Envoy's `envoy.filters.http.compressor`): compresses response
//! bodies with gzip, brotli or zstd when the client accepts it and the response is worth it.
//!
//! ```text
//! parse ─▶ Config (libraries in order, conditions, counters)        control thread, once
//!   request headers: accept-encoding ─▶ the library to use, if any (remembered);
//!                    remove_accept_encoding_header? ─▶ remove it before the upstream sees it
//!   response headers: compressible? (length, content-type, no-transform, etag, not encoded)
//!        ─▶ vary: Accept-Encoding
//!        + a body and a library ─▶ Encoder; content-encoding; strong etag made weak;
//!          body length Unknown (the codec re-frames: chunked on HTTP/1.1)
//!   response data: each piece ─▶ compressed and flushed (nothing is held back);
//!                  the last piece (maybe empty) ─▶ the stream's end (trailer bytes)
//! ```
//!
//! A response is compressed when: the request's `accept-encoding` accepts a configured library
//! (q > 0; `*` counts), the request is not HEAD (or CONNECT), the status is not 1xx, 204 or
//! 304, the response has a body whose known length is at least `min_content_length` (an
//! unknown length counts as long enough), its media type is in `content_type` (a response
//! without `content-type` qualifies, as in Envoy), `cache-control` has no `no-transform`, it
//! has no `content-encoding` yet (never compressed twice), and, with `disable_on_etag_header`,
//! no `etag`. A response that meets the response-side conditions gets `vary: Accept-Encoding`
//! even when this client is not sent it compressed (so caches in front keep both).
//!
//! ## Differences from Envoy, on purpose
//! - A library's options sit beside its `name` (no `typed_config`), and `name` picks the
//!   library (`gzip`, `brotli`, `zstd`); it also names the stats.
//! - `compressor_library` may be a list: one filter then negotiates between them (Envoy chains
//!   one filter per library). Each library's effective q is its own in `accept-encoding`, else
//!   that of `*`; the highest wins, ties go to config order (Envoy: the client's order), and
//!   `identity` wins only when its q is strictly higher.
//! - A strong `etag` of a compressed response is made weak (`W/"…"`), as nginx does; Envoy
//!   removes it.
//! - `min_content_length: 0` means 0 (Envoy reads 0 as the default, 30).
//! - zstd levels stop at 19: 20..22 need windows over the 8 MiB HTTP clients accept.
//! - Not supported: `request_direction_config` (rejected), `common_config.enabled` (disable the
//!   filter per route instead), `choose_first`, Envoy's deprecated top-level keys, gzip
//!   `memory_level` and `compression_strategy` (zlib's defaults: 8, default strategy), zstd
//!   `strategy` and `dictionary`, `chunk_size` (output grows as needed).
//! - brotli `input_block_bits` defaults to the encoder's choice for the quality (Envoy: 24).
//!
//! Stats (Envoy's names), per library: `compressor.<library>.{compressed, not_compressed,
//! total_uncompressed_bytes, total_compressed_bytes, content_length_too_small,
//! not_compressed_etag}`. Each library counts as Envoy's filter for it would: a response one
//! library compressed is `not_compressed` for the others; `content_length_too_small` and
//! `not_compressed_etag` count for every library.

mod config;
mod encoder;
#[cfg(test)]
mod tests;

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use self::{
    config::{Config, MAX_LIBRARIES, STAT_NAMES},
    encoder::Encoder,
};
use crate::{
    filter::{
        Ctx, DataStatus, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply,
        WorkerInfo,
    },
    registry::ParseResult,
    stats::Counters,
    stream::{BodySize, HeaderMap, Method, RequestHead, ResponseHead},
};

/// `%RESPONSE_CODE_DETAILS%` when an encoder fails mid-stream (the connection is closed).
pub const REASON: &str = "compression_failed";

/// Validate a `compressor` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = crate::registry::decode::<config::Spec>(v)?;
    let cfg = config::validate(spec)?;
    Ok(Arc::new(CompressorConfig(Arc::new(cfg))))
}

/// The validated config (shared by every worker).
#[derive(Debug)]
struct CompressorConfig(Arc<Config>);

impl FilterConfig for CompressorConfig {
    fn name(&self) -> &'static str {
        "compressor"
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

/// What a worker's filters share.
#[derive(Debug)]
struct Worker {
    cfg: Arc<Config>,
    stats: Arc<Counters>,
}

impl Worker {
    /// Bump counter `stat` of library `lib`.
    fn add(&self, lib: usize, stat: usize, n: u64) {
        self.stats.add(lib * STAT_NAMES.len() + stat, n);
    }

    /// Bump counter `stat` of every library.
    fn inc_all(&self, stat: usize) {
        for lib in 0..self.cfg.libraries.len() {
            self.add(lib, stat, 1);
        }
    }
}

#[derive(Debug)]
struct Factory(Rc<Worker>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            response_headers: true,
            response_data: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Compressor {
            w: Rc::clone(&self.0),
            choice: None,
            no_body: false,
            active: None,
        })
    }
}

/// One request's compressor.
#[derive(Debug)]
struct Compressor {
    w: Rc<Worker>,
    /// The library the request's `accept-encoding` prefers (index into the config's list).
    choice: Option<usize>,
    /// A HEAD or CONNECT request: its response has no body to compress.
    no_body: bool,
    /// The response's encoder and its library, while compressing.
    active: Option<(Encoder, usize)>,
}

impl HttpFilter for Compressor {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let cfg = &self.w.cfg;
        self.choice = negotiate(&cfg.libraries, &head.headers);
        self.no_body = matches!(head.method, Method::Head | Method::Connect);
        if cfg.remove_accept_encoding_header {
            head.headers.remove("accept-encoding");
        }
        HeadersStatus::Continue
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let w = Rc::clone(&self.w);
        let cfg = &w.cfg;
        let bodiless_status = head.status < 200 || head.status == 204 || head.status == 304;
        let no_body = self.no_body || bodiless_status || end_stream;
        let compressible = compressible(&w, head, self.no_body || bodiless_status);
        if compressible {
            insert_vary(&mut head.headers);
        }
        let chosen = match self.choice {
            Some(i) if compressible && !no_body && head.body != BodySize::Empty => Some(i),
            _ => None,
        };
        let size = match head.body {
            BodySize::Known(n) => Some(n),
            _ => None,
        };
        let started =
            chosen.and_then(|i| Encoder::new(&cfg.libraries[i], size).ok().map(|e| (e, i)));
        for lib in 0..cfg.libraries.len() {
            if started.as_ref().map(|(_, i)| *i) != Some(lib) {
                w.add(lib, config::NOT_COMPRESSED, 1);
            }
        }
        let Some((enc, i)) = started else {
            return HeadersStatus::Continue;
        };
        w.add(i, config::COMPRESSED, 1);
        let strong = head
            .headers
            .get_bytes("etag")
            .is_some_and(|v| !(v.starts_with(b"W/") || v.starts_with(b"w/")));
        if strong {
            head.headers.modify_last(b"etag", |old, out| {
                out.extend_from_slice(b"W/");
                out.extend_from_slice(old);
            });
        }
        head.headers
            .append("content-encoding", cfg.libraries[i].coding());
        head.body = BodySize::Unknown;
        self.active = Some((enc, i));
        HeadersStatus::Continue
    }

    fn on_response_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        let Some((enc, lib)) = self.active.as_mut() else {
            return DataStatus::Continue;
        };
        let lib = *lib;
        if data.is_empty() && !end_stream {
            return DataStatus::Continue;
        }
        let mut out = Vec::new();
        let result = enc.encode(data, end_stream, &mut out);
        if end_stream || result.is_err() {
            // The encoder's memory goes back now, not when the request ends.
            self.active = None;
        }
        if result.is_err() {
            return DataStatus::LocalReply(LocalReply::error(502, REASON, "compression failed"));
        }
        self.w
            .add(lib, config::TOTAL_UNCOMPRESSED_BYTES, data.len() as u64);
        self.w
            .add(lib, config::TOTAL_COMPRESSED_BYTES, out.len() as u64);
        *data = Bytes::from(out);
        DataStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        self.choice = None;
        self.no_body = false;
        self.active = None;
        true
    }
}

/// The response-side conditions, in Envoy's order (which decides which skip is counted):
/// length, content type, `no-transform`, etag, not already encoded. `no_body`: a response that
/// cannot have a body (HEAD, 204, 304...): its `Empty` length says nothing.
fn compressible(w: &Worker, head: &ResponseHead, no_body: bool) -> bool {
    let cfg = &w.cfg;
    let len = match head.body {
        BodySize::Known(n) => Some(n),
        BodySize::Empty if !no_body => Some(0),
        _ => None,
    };
    if len.is_some_and(|n| n < cfg.min_content_length) {
        w.inc_all(config::CONTENT_LENGTH_TOO_SMALL);
        return false;
    }
    if let Some(ct) = head.headers.get_bytes("content-type") {
        let media = ct.split(|&b| b == b';').next().unwrap_or(ct);
        if !cfg.content_type_allowed(trim(media)) {
            return false;
        }
    }
    if has_token(&head.headers, "cache-control", b"no-transform") {
        return false;
    }
    if cfg.disable_on_etag_header && head.headers.contains("etag") {
        w.inc_all(config::NOT_COMPRESSED_ETAG);
        return false;
    }
    !head.headers.contains("content-encoding")
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

/// Whether a comma-separated header (any of its lines) has `token` (case-insensitive; a
/// directive's `=argument` is ignored).
fn has_token(h: &HeaderMap, name: &str, token: &[u8]) -> bool {
    h.get_all(name).any(|v| {
        v.split(|&b| b == b',').any(|item| {
            let d = item.split(|&b| b == b'=').next().unwrap_or(item);
            trim(d).eq_ignore_ascii_case(token)
        })
    })
}

/// Add `Accept-Encoding` to `vary`, unless it is there already (or `vary` is `*`).
fn insert_vary(h: &mut HeaderMap) {
    let mut present = false;
    for v in h.get_all("vary") {
        present = true;
        let named = v.split(|&b| b == b',').any(|t| {
            let t = trim(t);
            t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding")
        });
        if named {
            return;
        }
    }
    if present {
        h.modify_last(b"vary", |old, out| {
            out.extend_from_slice(old);
            if !trim(old).is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(b"Accept-Encoding");
        });
    } else {
        h.append("vary", "Accept-Encoding");
    }
}

/// A q-value (RFC 9110 `weight`) in thousandths, read leniently (`.5`, `0.75`, `1`); above 1
/// counts as 1. `None`: not a number (the coding is then ignored, as Envoy does).
fn qvalue(v: &[u8]) -> Option<u16> {
    let v = trim(v);
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &v[v.len()..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if (int.is_empty() && frac.is_empty()) || int.len() > 3 || !digits(int) || !digits(frac) {
        return None;
    }
    let mut q = int.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')) * 1000;
    for (d, scale) in frac.iter().zip([100, 10, 1]) {
        q += u32::from(d - b'0') * scale;
    }
    Some(q.min(1000) as u16)
}

/// The library `accept-encoding` prefers (index into `libs`), if it accepts any: each
/// library's q is its own, else that of `*`; the highest non-zero q wins, ties go to config
/// order; `identity` with a strictly higher q means no compression.
fn negotiate(libs: &[config::Library], h: &HeaderMap) -> Option<usize> {
    let mut own: [Option<u16>; MAX_LIBRARIES] = [None; MAX_LIBRARIES];
    let mut wildcard: Option<u16> = None;
    let mut identity: Option<u16> = None;
    for line in h.get_all("accept-encoding") {
        for item in line.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for p in parts {
                let mut kv = p.splitn(2, |&b| b == b'=');
                let key = trim(kv.next().unwrap_or_default());
                if key.eq_ignore_ascii_case(b"q") {
                    q = kv.next().and_then(qvalue);
                }
            }
            let Some(q) = q else { continue };
            if coding == b"*" {
                wildcard.get_or_insert(q);
            } else if coding.eq_ignore_ascii_case(b"identity") {
                identity.get_or_insert(q);
            } else if let Some(i) = libs.iter().position(|l| l.accepts(coding)) {
                if let Some(slot) = own.get_mut(i) {
                    slot.get_or_insert(q);
                }
            }
        }
    }
    let mut best: Option<(usize, u16)> = None;
    for (i, q) in own.iter().enumerate().take(libs.len()) {
        let q = q.or(wildcard).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((i, q));
        }
    }
    let (i, q) = best?;
    match identity {
        Some(iq) if iq > q => None,
        _ => Some(i),
    }
}
