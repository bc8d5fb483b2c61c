//! The filter on whole exchanges: what it decompresses, in which pieces, what it leaves alone,
//! and what it counts. Failures (corrupt, truncated, bombs) are in `tests/failures.rs`, config
//! validation in `tests/parse.rs`.

mod failures;
mod parse;

use std::io::Write;

use bytes::Bytes;
use serde_json::{json, Value};

use super::config;
use crate::{
    filter::{DataStatus, FilterConfig, HeadersStatus, HttpFilter, WorkerInfo},
    stream::{BodySize, HeaderMap, RequestHead, ResponseHead},
    testing::{ctx, TestRuntime, TestVars},
    FilterState,
};

// ---- helpers ----

fn filter_config(v: Value) -> std::sync::Arc<dyn FilterConfig> {
    match super::parse(&v) {
        Ok(c) => c,
        Err(e) => panic!("config {v} refused: {e:?}"),
    }
}

fn lib_config(name: &str) -> std::sync::Arc<dyn FilterConfig> {
    filter_config(json!({"decompressor_library": {"name": name}}))
}

fn stat(c: &dyn FilterConfig, name: &str) -> u64 {
    c.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name} in {:?}", c.stats()))
        .1
}

/// The three libraries: config name, content-coding.
const LIBS: [(&str, &str); 3] = [("gzip", "gzip"), ("brotli", "br"), ("zstd", "zstd")];

/// Text that compresses well, `n` bytes.
fn text(n: usize) -> Vec<u8> {
    let words = b"the quick brown fox jumps over the lazy dog while ringway decompresses ";
    words.iter().copied().cycle().take(n).collect()
}

/// Bytes that do not compress (an LCG's high bytes), `n` of them.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// A body of `n` bytes that compresses about as real content does (well under 100:1): text
/// and noise in turns.
fn mixed(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n + 4096);
    let mut i = 0;
    while b.len() < n {
        b.extend(noise(700, i));
        b.extend(text(2000 + (i as usize % 7) * 100));
        i += 1;
    }
    b.truncate(n);
    b
}

/// `body` encoded with `coding`, by the libraries' own encoders.
fn compress(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(body).unwrap();
            }
            out
        }
        "zstd" => zstd::stream::encode_all(body, 3).unwrap(),
        other => panic!("no encoder for {other}"),
    }
}

/// `wire` cut into pieces whose sizes cycle through `sizes`.
fn split<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    for n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at((*n).min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// What one direction of an exchange looked like after the filter.
struct Sent {
    headers: HeaderMap,
    size: BodySize,
    /// Body pieces as the filter passed them on.
    out: Vec<Bytes>,
    statuses: Vec<DataStatus>,
}

impl Sent {
    fn body(&self) -> Vec<u8> {
        self.out.iter().flat_map(|b| b.iter().copied()).collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
    /// The first local reply's (status, reason), if the filter made one.
    fn failure(&self) -> Option<(u16, &'static str)> {
        self.statuses.iter().find_map(|s| match s {
            DataStatus::LocalReply(r) => Some((r.status, r.reason.unwrap_or("-"))),
            _ => None,
        })
    }
}

/// One filter instance, driven through a request and its response.
struct Flow {
    f: Box<dyn HttpFilter>,
    rt: TestRuntime,
    vars: TestVars,
    state: FilterState,
    request: RequestHead,
}

impl Flow {
    fn new(cfg: &dyn FilterConfig) -> Flow {
        let factory = cfg.worker(WorkerInfo { id: 0, count: 1 });
        Flow {
            f: factory.create(),
            rt: TestRuntime::default(),
            vars: TestVars::default(),
            state: FilterState::default(),
            request: RequestHead::new(b"POST", "http", b"example.com", b"/x"),
        }
    }

    /// The request with `headers` and `body` pieces (the last sent with end_stream; none: a
    /// head-only request). Its length is the pieces' total.
    fn request(&mut self, headers: &[(&str, &str)], body: &[&[u8]]) -> Sent {
        for (n, v) in headers {
            self.request.headers.append(n, v);
        }
        self.request.body = size_of(body);
        let mut cx = ctx(&self.rt, &self.vars, &mut self.state, None);
        let st = self
            .f
            .on_request_headers(&mut self.request, body.is_empty(), &mut cx);
        assert!(matches!(st, HeadersStatus::Continue), "{st:?}");
        let mut sent = Sent {
            headers: HeaderMap::default(),
            size: self.request.body,
            out: Vec::new(),
            statuses: Vec::new(),
        };
        for (i, piece) in body.iter().enumerate() {
            let mut data = Bytes::copy_from_slice(piece);
            let st = self
                .f
                .on_request_data(&mut data, i + 1 == body.len(), &mut cx);
            sent.statuses.push(st);
            sent.out.push(data);
        }
        sent.headers = self.request.headers.clone();
        sent
    }

    /// The response: `status`, `headers`, `body` pieces as for [`Flow::request`].
    fn response(&mut self, status: u16, headers: &[(&str, &str)], body: &[&[u8]]) -> Sent {
        let mut head = ResponseHead {
            status,
            headers: HeaderMap::default(),
            body: size_of(body),
        };
        for (n, v) in headers {
            head.headers.append(n, v);
        }
        let mut cx = ctx(&self.rt, &self.vars, &mut self.state, Some(&self.request));
        let st = self
            .f
            .on_response_headers(&mut head, body.is_empty(), &mut cx);
        assert!(matches!(st, HeadersStatus::Continue), "{st:?}");
        let mut sent = Sent {
            headers: head.headers,
            size: head.body,
            out: Vec::new(),
            statuses: Vec::new(),
        };
        for (i, piece) in body.iter().enumerate() {
            let mut data = Bytes::copy_from_slice(piece);
            let st = self
                .f
                .on_response_data(&mut data, i + 1 == body.len(), &mut cx);
            sent.statuses.push(st);
            sent.out.push(data);
        }
        sent
    }
}

fn size_of(body: &[&[u8]]) -> BodySize {
    if body.is_empty() {
        BodySize::Empty
    } else {
        BodySize::Known(body.iter().map(|p| p.len() as u64).sum())
    }
}

/// A request through a fresh filter.
fn request(cfg: &dyn FilterConfig, headers: &[(&str, &str)], body: &[&[u8]]) -> Sent {
    Flow::new(cfg).request(headers, body)
}

/// A response (to a head-only GET) through a fresh filter.
fn response(cfg: &dyn FilterConfig, headers: &[(&str, &str)], body: &[&[u8]]) -> Sent {
    let mut flow = Flow::new(cfg);
    flow.request(&[], &[]);
    flow.response(200, headers, body)
}

// ---- round trips ----

#[test]
fn every_library_round_trips_in_odd_and_one_byte_pieces_both_ways() {
    let body = mixed(40_000);
    for (name, coding) in LIBS {
        // Two gzip members or zstd frames: with 1-byte pieces one ends exactly on a piece.
        let mut wire = compress(coding, &body[..10_000]);
        if coding == "br" {
            wire = compress(coding, &body);
        } else {
            wire.extend(compress(coding, &body[10_000..]));
        }
        for sizes in [&[1usize][..], &[1, 7, 1, 333, 4096, 2, 13, 65_536, 5]] {
            let pieces = split(&wire, sizes);
            let cfg = lib_config(name);
            let mut flow = Flow::new(&*cfg);
            let rq = flow.request(&[("content-encoding", coding)], &pieces);
            assert_eq!(rq.failure(), None, "{name}");
            assert_eq!(rq.body(), body, "{name} request, pieces {sizes:?}");
            assert_eq!(rq.header("content-encoding"), None, "{name}");
            assert_eq!(rq.size, BodySize::Unknown, "{name}");
            let rs = flow.response(200, &[("content-encoding", coding)], &pieces);
            assert_eq!(rs.failure(), None, "{name}");
            assert_eq!(rs.body(), body, "{name} response, pieces {sizes:?}");
            assert_eq!(rs.header("content-encoding"), None, "{name}");
            assert_eq!(rs.size, BodySize::Unknown, "{name}");
            for dir in ["request", "response"] {
                let p = format!("decompressor.{name}.{dir}.");
                assert_eq!(stat(&*cfg, &format!("{p}decompressed")), 1);
                assert_eq!(stat(&*cfg, &format!("{p}not_decompressed")), 0);
                assert_eq!(stat(&*cfg, &format!("{p}decompression_error")), 0);
                assert_eq!(
                    stat(&*cfg, &format!("{p}total_compressed_bytes")),
                    wire.len() as u64
                );
                assert_eq!(
                    stat(&*cfg, &format!("{p}total_uncompressed_bytes")),
                    body.len() as u64
                );
            }
        }
    }
}

#[test]
fn a_large_multi_member_body_streams_in_16k_pieces() {
    let body = mixed(1 << 20);
    let (a, b) = body.split_at(body.len() / 3);
    for (name, coding) in LIBS {
        // gzip members and zstd frames may follow one another; brotli is one stream.
        let mut wire = compress(coding, a);
        if coding == "br" {
            wire = compress(coding, &body);
        } else {
            wire.extend(compress(coding, b));
        }
        let pieces = split(&wire, &[16_384]);
        let mut sent: Vec<&[u8]> = pieces.clone();
        sent.push(b"");
        let cfg = lib_config(name);
        let rq = request(&*cfg, &[("content-encoding", coding)], &sent);
        assert_eq!(rq.failure(), None, "{name}");
        assert_eq!(rq.body().len(), body.len(), "{name}");
        assert!(rq.body() == body, "{name}: decoded body differs");
        // Streaming: output comes as input does, not at the end. gzip and brotli give some
        // for every 16 KiB; zstd decodes whole blocks (up to 128 KiB of content each), so
        // it may wait a few pieces, never more than a block's worth.
        let held = if coding == "zstd" { 9 } else { 0 };
        let mut run = 0;
        for (i, out) in rq.out.iter().enumerate().take(pieces.len() - 1) {
            run = if out.is_empty() { run + 1 } else { 0 };
            assert!(run <= held, "{name}: piece {i} held back ({run} in a row)");
        }
        // Output of one piece is bounded by what the piece decodes to, not the body.
        let biggest = rq.out.iter().map(Bytes::len).max().unwrap_or(0);
        assert!(biggest < body.len() / 4, "{name}: {biggest} bytes at once");
        let rs = response(&*cfg, &[("content-encoding", coding)], &sent);
        assert!(rs.body() == body, "{name}: response body differs");
    }
}

#[test]
fn an_empty_body_with_a_coding_passes_without_error() {
    let cfg = lib_config("gzip");
    let mut flow = Flow::new(&*cfg);
    let mut head = RequestHead::new(b"POST", "http", b"h", b"/");
    head.headers.append("content-encoding", "gzip");
    head.body = BodySize::Unknown;
    let mut cx = ctx(&flow.rt, &flow.vars, &mut flow.state, None);
    flow.f.on_request_headers(&mut head, false, &mut cx);
    let mut data = Bytes::new();
    let st = flow.f.on_request_data(&mut data, true, &mut cx);
    assert!(matches!(st, DataStatus::Continue), "{st:?}");
    assert!(data.is_empty());
    assert_eq!(
        stat(&*cfg, "decompressor.gzip.request.decompression_error"),
        0
    );
}

// ---- which codings are undone ----

/// (config, content-encoding lines, wire, decoded?, content-encoding after)
type CodingCase<'a> = (
    &'a dyn FilterConfig,
    Vec<&'a str>,
    &'a [u8],
    bool,
    Option<&'a str>,
);

#[test]
fn only_the_last_coding_is_undone() {
    let body = text(3000);
    let gz = compress("gzip", &body);
    let br = compress("br", &body);
    let gzip = lib_config("gzip");
    let brotli = lib_config("brotli");
    let cases: Vec<CodingCase<'_>> = vec![
        (&*gzip, vec!["gzip"], &gz, true, None),
        (&*gzip, vec!["GZip"], &gz, true, None),
        (&*gzip, vec!["x-gzip"], &gz, true, None),
        (&*gzip, vec![" gzip , "], &gz, true, None),
        (&*gzip, vec!["br, gzip"], &gz, true, Some("br")),
        (&*gzip, vec!["br", "gzip"], &gz, true, Some("br")),
        (
            &*gzip,
            vec!["deflate,br ,gzip"],
            &gz,
            true,
            Some("deflate, br"),
        ),
        (&*gzip, vec!["gzip, br"], &br, false, Some("gzip, br")),
        (&*gzip, vec!["gzip", "br"], &br, false, Some("gzip")),
        (&*gzip, vec!["identity"], &gz, false, Some("identity")),
        (
            &*gzip,
            vec!["gzip, identity"],
            &gz,
            false,
            Some("gzip, identity"),
        ),
        (&*gzip, vec!["deflate"], &gz, false, Some("deflate")),
        (&*gzip, vec!["gzipx"], &gz, false, Some("gzipx")),
        (&*gzip, vec![], &gz, false, None),
        (&*brotli, vec!["gzip, br"], &br, true, Some("gzip")),
        (&*brotli, vec!["br, gzip"], &gz, false, Some("br, gzip")),
    ];
    for (cfg, lines, wire, decoded, after) in cases {
        let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("content-encoding", *l)).collect();
        let sent = request(cfg, &headers, &[wire]);
        assert_eq!(sent.failure(), None, "{lines:?}");
        assert_eq!(sent.header("content-encoding"), after, "{lines:?}");
        if decoded {
            assert_eq!(sent.body(), body, "{lines:?}");
            assert_eq!(sent.size, BodySize::Unknown, "{lines:?}");
        } else {
            assert_eq!(sent.body(), *wire, "{lines:?}");
            assert_eq!(sent.size, BodySize::Known(wire.len() as u64), "{lines:?}");
        }
    }
    assert_eq!(stat(&*gzip, "decompressor.gzip.request.decompressed"), 7);
    assert_eq!(
        stat(&*gzip, "decompressor.gzip.request.not_decompressed"),
        7
    );
    assert_eq!(
        stat(&*brotli, "decompressor.brotli.request.decompressed"),
        1
    );
    assert_eq!(
        stat(&*brotli, "decompressor.brotli.request.not_decompressed"),
        1
    );
}

#[test]
fn no_transform_is_honoured_unless_ignored() {
    let body = text(2000);
    let gz = compress("gzip", &body);
    let cfg = lib_config("gzip");
    for cc in [
        "no-transform",
        "public, No-Transform",
        "max-age=5,no-transform",
    ] {
        let rq = request(
            &*cfg,
            &[("content-encoding", "gzip"), ("cache-control", cc)],
            &[&gz],
        );
        assert_eq!(rq.body(), gz, "{cc}");
        assert_eq!(rq.header("content-encoding"), Some("gzip"));
        let rs = response(
            &*cfg,
            &[
                ("cache-control", "private"),
                ("cache-control", cc),
                ("content-encoding", "gzip"),
            ],
            &[&gz],
        );
        assert_eq!(rs.body(), gz, "{cc}");
    }
    // A directive that merely starts with the word is another directive.
    let rq = request(
        &*cfg,
        &[
            ("content-encoding", "gzip"),
            ("cache-control", "no-transformation"),
        ],
        &[&gz],
    );
    assert_eq!(rq.body(), body);
    assert_eq!(stat(&*cfg, "decompressor.gzip.request.not_decompressed"), 3);
    assert_eq!(
        stat(&*cfg, "decompressor.gzip.response.not_decompressed"),
        3
    );

    let common = json!({"common_config": {"ignore_no_transform_header": true}});
    let cfg = filter_config(json!({
        "decompressor_library": {"name": "gzip"},
        "request_direction_config": common.clone(),
        "response_direction_config": common,
    }));
    let headers = [
        ("content-encoding", "gzip"),
        ("cache-control", "no-transform"),
    ];
    assert_eq!(request(&*cfg, &headers, &[&gz]).body(), body);
    assert_eq!(response(&*cfg, &headers, &[&gz]).body(), body);
}

#[test]
fn a_disabled_direction_is_left_alone_and_counted() {
    let body = text(2000);
    let gz = compress("gzip", &body);
    let ce = [("content-encoding", "gzip")];
    for off in [
        json!(false),
        json!({"default_value": false, "runtime_key": "rq_on"}),
    ] {
        let cfg = filter_config(json!({
            "decompressor_library": {"name": "gzip"},
            "request_direction_config": {"common_config": {"enabled": off}},
        }));
        assert_eq!(request(&*cfg, &ce, &[&gz]).body(), gz);
        assert_eq!(response(&*cfg, &ce, &[&gz]).body(), body);
        assert_eq!(stat(&*cfg, "decompressor.gzip.request.not_decompressed"), 1);
        assert_eq!(stat(&*cfg, "decompressor.gzip.response.decompressed"), 1);

        let cfg = filter_config(json!({
            "decompressor_library": {"name": "gzip"},
            "response_direction_config": {"common_config": {"enabled": off}},
        }));
        assert_eq!(request(&*cfg, &ce, &[&gz]).body(), body);
        let rs = response(&*cfg, &ce, &[&gz]);
        assert_eq!(rs.body(), gz);
        assert_eq!(rs.header("content-encoding"), Some("gzip"));
        assert_eq!(
            stat(&*cfg, "decompressor.gzip.response.not_decompressed"),
            1
        );
    }
    // `enabled: true` in either shape is the default.
    for on in [json!(true), json!({"default_value": true})] {
        let cfg = filter_config(json!({
            "decompressor_library": {"name": "gzip"},
            "request_direction_config": {"common_config": {"enabled": on}},
        }));
        assert_eq!(request(&*cfg, &ce, &[&gz]).body(), body);
    }
}

#[test]
fn messages_without_a_body_are_not_counted_and_206_is_not_decoded() {
    let gz = compress("gzip", &text(500));
    let cfg = lib_config("gzip");
    let mut flow = Flow::new(&*cfg);
    let rq = flow.request(&[("content-encoding", "gzip")], &[]);
    assert_eq!(rq.header("content-encoding"), Some("gzip"));
    let rs = flow.response(304, &[("content-encoding", "gzip")], &[]);
    assert_eq!(rs.header("content-encoding"), Some("gzip"));
    assert_eq!(rs.size, BodySize::Empty);
    for dir in ["request", "response"] {
        let p = format!("decompressor.gzip.{dir}.");
        assert_eq!(stat(&*cfg, &format!("{p}decompressed")), 0);
        assert_eq!(stat(&*cfg, &format!("{p}not_decompressed")), 0);
    }
    // A range of an encoded body does not decode: passed on as it is.
    let part = &gz[..50];
    let mut flow = Flow::new(&*cfg);
    flow.request(&[], &[]);
    let rs = flow.response(206, &[("content-encoding", "gzip")], &[part]);
    assert_eq!(rs.body(), part);
    assert_eq!(rs.header("content-encoding"), Some("gzip"));
    assert_eq!(
        stat(&*cfg, "decompressor.gzip.response.not_decompressed"),
        1
    );
}

#[test]
fn a_decoded_response_gets_a_weak_etag() {
    let body = text(1000);
    let gz = compress("gzip", &body);
    let cfg = lib_config("gzip");
    for (etag, after) in [("\"v1\"", "W/\"v1\""), ("W/\"v2\"", "W/\"v2\"")] {
        let rs = response(
            &*cfg,
            &[("content-encoding", "gzip"), ("etag", etag)],
            &[&gz],
        );
        assert_eq!(rs.body(), body);
        assert_eq!(rs.header("etag"), Some(after));
    }
    // Not decoded: not touched.
    let rs = response(
        &*cfg,
        &[("content-encoding", "br"), ("etag", "\"v1\"")],
        &[&gz],
    );
    assert_eq!(rs.header("etag"), Some("\"v1\""));
}

// ---- accept-encoding ----

/// The request's `accept-encoding` lines after the filter, for these lines before.
fn advertised(cfg: &dyn FilterConfig, before: &[&str], extra: &[(&str, &str)]) -> Vec<String> {
    let mut headers: Vec<(&str, &str)> = before.iter().map(|v| ("accept-encoding", *v)).collect();
    headers.extend_from_slice(extra);
    let sent = request(cfg, &headers, &[]);
    sent.headers
        .get_all("accept-encoding")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn accept_encoding_is_advertised_upstream() {
    let gzip = lib_config("gzip");
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["gzip"]),
        (&["br"], &["br, gzip"]),
        (&[""], &["gzip"]),
        (&["gzip"], &["gzip"]),
        (&["deflate, GZIP;q=1.0"], &["deflate, GZIP;q=1.0"]),
        (&["gzip; q=1"], &["gzip; q=1"]),
        (&["gzip;q=0.5, br"], &["br, gzip"]),
        (&["gzip;q=0"], &["gzip"]),
        (&["br", "deflate"], &["br", "deflate, gzip"]),
        (&["br", "gzip;q=0.2, zstd"], &["br, zstd, gzip"]),
        (&["x-gzip"], &["x-gzip, gzip"]),
        (&["*"], &["*, gzip"]),
    ];
    for (before, after) in cases {
        assert_eq!(advertised(&*gzip, before, &[]), *after, "{before:?}");
    }
    assert_eq!(
        advertised(&*lib_config("brotli"), &["gzip"], &[]),
        ["gzip, br"]
    );
    assert_eq!(advertised(&*lib_config("zstd"), &[], &[]), ["zstd"]);
    // Not with `range`: a range of an encoding the client did not ask for would reach it.
    assert_eq!(
        advertised(&*gzip, &["br"], &[("range", "bytes=0-9")]),
        ["br"]
    );
    // Not when responses are not decompressed, nor when turned off.
    let off = filter_config(json!({
        "decompressor_library": {"name": "gzip"},
        "response_direction_config": {"common_config": {"enabled": false}},
    }));
    assert_eq!(advertised(&*off, &["br"], &[]), ["br"]);
    let off = filter_config(json!({
        "decompressor_library": {"name": "gzip"},
        "request_direction_config": {"advertise_accept_encoding": false},
    }));
    assert!(advertised(&*off, &[], &[]).is_empty());
    // Request decompression off does not stop the advertisement.
    let rq_off = filter_config(json!({
        "decompressor_library": {"name": "gzip"},
        "request_direction_config": {"common_config": {"enabled": false}},
    }));
    assert_eq!(advertised(&*rq_off, &[], &[]), ["gzip"]);
}

// ---- the filter's shape ----

#[test]
fn hooks_and_per_request_state_are_small() {
    let cfg = lib_config("gzip");
    let hooks = cfg.worker(WorkerInfo { id: 0, count: 1 }).hooks();
    assert!(hooks.request_headers && hooks.request_data);
    assert!(hooks.response_headers && hooks.response_data);
    assert!(!hooks.request_trailers && !hooks.response_trailers);
    assert_eq!(hooks.buffer_request_body, None);
    // Two words per direction and the worker's pointer: the decoder is boxed, and made only
    // when a body's first byte arrives.
    assert!(std::mem::size_of::<super::Decompressor>() <= 48);
    assert_eq!(cfg.name(), "decompressor");
    assert!(crate::registry::find("envoy.filters.http.decompressor").is_some());
    let names: Vec<String> = cfg.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2 * config::STAT_NAMES.len());
    assert!(names.contains(&"decompressor.gzip.response.decompression_error".to_string()));
}
