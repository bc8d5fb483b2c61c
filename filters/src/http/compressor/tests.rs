//! The filter on whole exchanges: what it compresses, how, and what it leaves alone.

mod parse;

use std::io::Write;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::{
    filter::{DataStatus, FilterConfig, HeadersStatus, WorkerInfo},
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

fn stat(c: &dyn FilterConfig, name: &str) -> u64 {
    c.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name}"))
        .1
}

/// Text that compresses well, `n` bytes.
fn text(n: usize) -> Vec<u8> {
    let words = b"the quick brown fox jumps over the lazy dog while ringway compresses ";
    words.iter().copied().cycle().take(n).collect()
}

/// Bytes that do not compress (an LCG's high bytes), `n` of them.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// A streaming decoder for a content-coding: bytes in, what they decode to so far out.
enum Decoder {
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    /// The bytes so far (brotli's writer-decoder holds some output back until more input
    /// comes, so each feed decodes the whole prefix afresh).
    Br(Vec<u8>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
}

impl Decoder {
    fn new(coding: &str) -> Decoder {
        match coding {
            "gzip" => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            "br" => Decoder::Br(Vec::new()),
            "zstd" => Decoder::Zstd(Box::new(
                zstd::stream::write::Decoder::new(Vec::new()).unwrap(),
            )),
            other => panic!("no decoder for {other}"),
        }
    }

    /// Feed `b`; everything decoded so far.
    fn feed(&mut self, b: &[u8]) -> Vec<u8> {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(b).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Decoder::Br(wire) => {
                wire.extend_from_slice(b);
                let a = brotli::enc::StandardAlloc::default;
                let mut state = brotli::BrotliState::new(a(), a(), a());
                let mut out = vec![0u8; 1 << 20];
                let (mut avail_in, mut in_off) = (wire.len(), 0);
                let (mut avail_out, mut out_off, mut total) = (out.len(), 0, 0);
                let r = brotli::BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_off,
                    wire,
                    &mut avail_out,
                    &mut out_off,
                    &mut out,
                    &mut total,
                    &mut state,
                );
                assert!(
                    matches!(
                        r,
                        brotli::BrotliResult::NeedsMoreInput | brotli::BrotliResult::ResultSuccess
                    ),
                    "{r:?}"
                );
                out.truncate(out_off);
                out
            }
            Decoder::Zstd(d) => {
                d.write_all(b).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
        }
    }
}

/// Decode a whole body, checking the stream is complete.
fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(body).unwrap(),
        other => panic!("no decoder for {other}"),
    }
    out
}

/// One exchange through a filter built from `cfg`.
struct Exchange {
    request: RequestHead,
    response: ResponseHead,
    /// Body pieces as the filter passed them on.
    out: Vec<Bytes>,
    statuses: Vec<DataStatus>,
}

impl Exchange {
    fn body(&self) -> Vec<u8> {
        self.out.iter().flat_map(|b| b.iter().copied()).collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.response.headers.get(name)
    }
}

struct Req<'a> {
    method: &'a [u8],
    accept: Option<&'a str>,
}

const GET_GZIP: Req<'static> = Req {
    method: b"GET",
    accept: Some("gzip"),
};

/// Response `status` with `headers` and `body` pieces (the last sent with end_stream; a body
/// of no pieces is a head-only response). The response's length is `len`.
fn exchange(
    cfg: &dyn FilterConfig,
    req: Req<'_>,
    status: u16,
    headers: &[(&str, &str)],
    len: BodySize,
    body: &[&[u8]],
) -> Exchange {
    let factory = cfg.worker(WorkerInfo { id: 0, count: 1 });
    let hooks = factory.hooks();
    assert!(hooks.request_headers && hooks.response_headers && hooks.response_data);
    let mut f = factory.create();
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();

    let mut request = RequestHead::new(req.method, "http", b"example.com", b"/x");
    if let Some(a) = req.accept {
        request.headers.append("accept-encoding", a);
    }
    {
        let mut cx = ctx(&rt, &vars, &mut state, None);
        assert!(matches!(
            f.on_request_headers(&mut request, true, &mut cx),
            HeadersStatus::Continue
        ));
    }
    let mut response = ResponseHead {
        status,
        headers: HeaderMap::default(),
        body: len,
    };
    for (n, v) in headers {
        response.headers.append(n, v);
    }
    let mut out = Vec::new();
    let mut statuses = Vec::new();
    {
        let mut cx = ctx(&rt, &vars, &mut state, Some(&request));
        assert!(matches!(
            f.on_response_headers(&mut response, body.is_empty(), &mut cx),
            HeadersStatus::Continue
        ));
        for (i, piece) in body.iter().enumerate() {
            let mut data = Bytes::copy_from_slice(piece);
            statuses.push(f.on_response_data(&mut data, i + 1 == body.len(), &mut cx));
            out.push(data);
        }
    }
    Exchange {
        request,
        response,
        out,
        statuses,
    }
}

fn html() -> Vec<(&'static str, &'static str)> {
    vec![("content-type", "text/html; charset=utf-8")]
}

fn gzip_cfg() -> std::sync::Arc<dyn FilterConfig> {
    filter_config(json!({"compressor_library": {"name": "gzip"}}))
}

// ---- compression round trips ----

#[test]
fn each_library_round_trips_a_known_length_body() {
    for (name, coding) in [("gzip", "gzip"), ("brotli", "br"), ("zstd", "zstd")] {
        let cfg = filter_config(json!({"compressor_library": {"name": name}}));
        let body = text(20_000);
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some(coding),
            },
            200,
            &html(),
            BodySize::Known(body.len() as u64),
            &[&body],
        );
        assert_eq!(x.header("content-encoding"), Some(coding), "{name}");
        assert_eq!(x.header("vary"), Some("Accept-Encoding"), "{name}");
        assert_eq!(x.response.body, BodySize::Unknown, "{name}");
        let wire = x.body();
        assert!(wire.len() < body.len() / 10, "{name}: {} bytes", wire.len());
        assert_eq!(decode(coding, &wire), body, "{name}");
        let p = format!("compressor.{name}.");
        assert_eq!(stat(&*cfg, &format!("{p}compressed")), 1);
        assert_eq!(stat(&*cfg, &format!("{p}not_compressed")), 0);
        assert_eq!(
            stat(&*cfg, &format!("{p}total_uncompressed_bytes")),
            body.len() as u64
        );
        assert_eq!(
            stat(&*cfg, &format!("{p}total_compressed_bytes")),
            wire.len() as u64
        );
    }
}

#[test]
fn streamed_pieces_are_flushed_as_they_come_and_finished_on_an_empty_last_piece() {
    for (name, coding) in [("gzip", "gzip"), ("brotli", "br"), ("zstd", "zstd")] {
        let cfg = filter_config(json!({"compressor_library": {"name": name}}));
        let pieces: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                let mut p = format!("piece {i}: ").into_bytes();
                p.extend(text(3000 + i * 700));
                p
            })
            .collect();
        let mut sent: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        sent.push(b"");
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some(coding),
            },
            200,
            &[("content-type", "application/json")],
            BodySize::Unknown,
            &sent,
        );
        assert_eq!(x.header("content-encoding"), Some(coding));
        assert!(x.statuses.iter().all(|s| matches!(s, DataStatus::Continue)));
        // Each piece's output decodes, on its own, to everything sent so far.
        let mut dec = Decoder::new(coding);
        let mut expected = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            expected.extend_from_slice(piece);
            assert!(!x.out[i].is_empty(), "{name}: piece {i} held back");
            let got = dec.feed(&x.out[i]);
            assert!(
                got == expected,
                "{name}: piece {i}: decoded {} of {} bytes",
                got.len(),
                expected.len()
            );
        }
        // The empty last piece carries the stream's end.
        assert!(!x.out[5].is_empty(), "{name}: no trailer");
        assert_eq!(decode(coding, &x.body()), expected, "{name}");
    }
}

#[test]
fn incompressible_and_large_bodies_round_trip() {
    let mut body = noise(300_000);
    body.extend(text(700_000));
    let pieces: Vec<&[u8]> = body.chunks(65_536).collect();
    for (name, coding) in [("gzip", "gzip"), ("brotli", "br"), ("zstd", "zstd")] {
        let cfg = filter_config(json!({"compressor_library": {"name": name}}));
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some(coding),
            },
            200,
            &html(),
            BodySize::Known(body.len() as u64),
            &pieces,
        );
        assert_eq!(x.header("content-encoding"), Some(coding));
        assert_eq!(decode(coding, &x.body()), body, "{name}");
    }
}

#[test]
fn library_options_are_applied() {
    let body = text(50_000);
    for lib in [
        json!({"name": "gzip", "compression_level": "BEST_SPEED", "window_bits": 9}),
        json!({"name": "gzip", "compression_level": 9, "window_bits": 15}),
        json!({"name": "brotli", "quality": 0, "window_bits": 10}),
        json!({"name": "brotli", "quality": 11, "window_bits": 24, "input_block_bits": 16,
               "encoder_mode": "TEXT", "disable_literal_context_modeling": true}),
        json!({"name": "zstd", "compression_level": 1}),
        json!({"name": "zstd", "compression_level": 19, "enable_checksum": true}),
    ] {
        let cfg = filter_config(json!({ "compressor_library": lib.clone() }));
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some("gzip, br, zstd"),
            },
            200,
            &html(),
            BodySize::Unknown,
            &[&body[..25_000], &body[25_000..]],
        );
        let coding = x.header("content-encoding").unwrap().to_string();
        assert_eq!(decode(&coding, &x.body()), body, "{lib}");
    }
    // The zstd checksum is really written: a frame with one is 4 bytes longer.
    let len = |checksum: bool| {
        let cfg = filter_config(json!({"compressor_library":
            {"name": "zstd", "enable_checksum": checksum}}));
        exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some("zstd"),
            },
            200,
            &html(),
            BodySize::Unknown,
            &[&body],
        )
        .body()
        .len()
    };
    assert_eq!(len(true), len(false) + 4);
}

#[test]
fn a_body_longer_than_its_pledged_length_fails_the_stream() {
    let cfg = filter_config(json!({"compressor_library": {"name": "zstd"}}));
    let x = exchange(
        &*cfg,
        Req {
            method: b"GET",
            accept: Some("zstd"),
        },
        200,
        &html(),
        BodySize::Known(100),
        &[&text(60), &text(60)],
    );
    assert_eq!(x.header("content-encoding"), Some("zstd"));
    assert!(
        x.statuses
            .iter()
            .any(|s| matches!(s, DataStatus::LocalReply(r) if r.reason == Some(super::REASON))),
        "{:?}",
        x.statuses
    );
}

// ---- when a response is (not) compressed ----

#[test]
fn skipped_without_an_accepted_coding_but_vary_is_still_added() {
    let cfg = gzip_cfg();
    let body = text(100);
    for accept in [None, Some("br"), Some("gzip;q=0"), Some("identity")] {
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept,
            },
            200,
            &html(),
            BodySize::Known(100),
            &[&body],
        );
        assert_eq!(x.header("content-encoding"), None, "{accept:?}");
        assert_eq!(x.header("vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(x.body(), body);
        assert_eq!(x.response.body, BodySize::Known(100));
    }
    assert_eq!(stat(&*cfg, "compressor.gzip.not_compressed"), 4);
    assert_eq!(stat(&*cfg, "compressor.gzip.compressed"), 0);
}

#[test]
fn skip_conditions_on_the_response() {
    let cfg = gzip_cfg();
    let body = text(100);
    // (headers, vary expected) for responses that must pass unchanged.
    let cases: Vec<(Vec<(&str, &str)>, bool)> = vec![
        (vec![("content-type", "image/png")], false),
        (vec![("content-type", "text/htmlx")], false),
        (
            vec![
                ("content-type", "text/html"),
                ("cache-control", "public, No-Transform"),
            ],
            false,
        ),
        (
            vec![("content-type", "text/html"), ("content-encoding", "br")],
            false,
        ),
        (
            vec![
                ("content-type", "text/html"),
                ("content-encoding", "identity"),
            ],
            false,
        ),
    ];
    for (headers, vary) in &cases {
        let x = exchange(
            &*cfg,
            GET_GZIP,
            200,
            headers,
            BodySize::Known(100),
            &[&body],
        );
        assert_eq!(
            x.response.headers.get_all("content-encoding").count(),
            headers.iter().filter(|h| h.0 == "content-encoding").count(),
            "{headers:?}"
        );
        assert_ne!(x.header("content-encoding"), Some("gzip"), "{headers:?}");
        assert_eq!(x.header("vary").is_some(), *vary, "{headers:?}");
        assert_eq!(x.body(), body, "{headers:?}");
    }
    assert_eq!(
        stat(&*cfg, "compressor.gzip.not_compressed"),
        cases.len() as u64
    );
    assert_eq!(stat(&*cfg, "compressor.gzip.content_length_too_small"), 0);
}

#[test]
fn content_type_is_matched_without_parameters_and_case() {
    let cfg = gzip_cfg();
    let body = text(100);
    for ct in [
        "TEXT/HTML",
        "application/json;charset=utf-8",
        " image/svg+xml ; x=y",
    ] {
        let x = exchange(
            &*cfg,
            GET_GZIP,
            200,
            &[("content-type", ct)],
            BodySize::Known(100),
            &[&body],
        );
        assert_eq!(x.header("content-encoding"), Some("gzip"), "{ct}");
    }
    // No content-type at all: compressed, as in Envoy.
    let x = exchange(&*cfg, GET_GZIP, 200, &[], BodySize::Known(100), &[&body]);
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    // A configured list replaces the default one.
    let cfg = filter_config(json!({"compressor_library": {"name": "gzip"},
        "response_direction_config": {"common_config": {"content_type": ["Image/PNG"]}}}));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &[("content-type", "image/png")],
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("content-encoding"), None);
}

#[test]
fn min_content_length() {
    let cfg = gzip_cfg();
    let small = text(29);
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(29),
        &[&small],
    );
    assert_eq!(x.header("content-encoding"), None);
    assert_eq!(x.header("vary"), None);
    assert_eq!(x.body(), small);
    assert_eq!(stat(&*cfg, "compressor.gzip.content_length_too_small"), 1);
    // Exactly the minimum is compressed.
    let at = text(30);
    let x = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Known(30), &[&at]);
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &x.body()), at);
    // An unknown length is compressed, however short it turns out.
    let x = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Unknown, &[b"hi"]);
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &x.body()), b"hi");
    // An empty body is too small.
    let x = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Empty, &[]);
    assert_eq!(x.header("content-encoding"), None);
    assert_eq!(stat(&*cfg, "compressor.gzip.content_length_too_small"), 2);
    // Configured.
    let cfg = filter_config(json!({"compressor_library": {"name": "gzip"},
        "response_direction_config": {"common_config": {"min_content_length": 0}}}));
    let x = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Known(1), &[b"a"]);
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &x.body()), b"a");
    let cfg = filter_config(json!({"compressor_library": {"name": "gzip"},
        "response_direction_config": {"common_config": {"min_content_length": 1000}}}));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(999),
        &[&text(999)],
    );
    assert_eq!(x.header("content-encoding"), None);
}

#[test]
fn responses_without_a_body_are_not_compressed() {
    let cfg = gzip_cfg();
    // 204 and 304 carry no body; 304 still gets vary (it stands for the 200 it validates).
    for status in [204, 304] {
        let x = exchange(&*cfg, GET_GZIP, status, &html(), BodySize::Empty, &[]);
        assert_eq!(x.header("content-encoding"), None, "{status}");
        assert_eq!(x.header("vary"), Some("Accept-Encoding"), "{status}");
    }
    // Even when a body follows a 1xx/204/304 head (the codec will drop it), nothing starts.
    for status in [101, 204, 304] {
        let x = exchange(&*cfg, GET_GZIP, status, &html(), BodySize::Unknown, &[b"x"]);
        assert_eq!(x.header("content-encoding"), None, "{status}");
        assert_eq!(x.body(), b"x");
    }
    // HEAD: the headers a GET would get, minus the encoding.
    let head = Req {
        method: b"HEAD",
        accept: Some("gzip"),
    };
    let x = exchange(&*cfg, head, 200, &html(), BodySize::Known(5000), &[]);
    assert_eq!(x.header("content-encoding"), None);
    assert_eq!(x.header("vary"), Some("Accept-Encoding"));
    assert_eq!(x.response.body, BodySize::Known(5000));
    // A 200 whose head ends the stream.
    let x = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Unknown, &[]);
    assert_eq!(x.header("content-encoding"), None);
    assert_eq!(x.response.body, BodySize::Unknown);
    assert_eq!(stat(&*cfg, "compressor.gzip.compressed"), 0);
    assert_eq!(stat(&*cfg, "compressor.gzip.not_compressed"), 7);
}

#[test]
fn etags() {
    let body = text(100);
    let cfg = gzip_cfg();
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &[("content-type", "text/html"), ("etag", "\"v1\"")],
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    assert_eq!(x.header("etag"), Some("W/\"v1\""));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &[("content-type", "text/html"), ("etag", "W/\"v1\"")],
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("etag"), Some("W/\"v1\""));
    // Not compressed: the etag is left alone.
    let x = exchange(
        &*cfg,
        Req {
            method: b"GET",
            accept: None,
        },
        200,
        &[("content-type", "text/html"), ("etag", "\"v1\"")],
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("etag"), Some("\"v1\""));
    assert_eq!(stat(&*cfg, "compressor.gzip.not_compressed_etag"), 0);

    let cfg = filter_config(json!({"compressor_library": {"name": "gzip"},
        "response_direction_config": {"disable_on_etag_header": true}}));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &[("content-type", "text/html"), ("etag", "W/\"v1\"")],
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("content-encoding"), None);
    assert_eq!(x.header("vary"), None);
    assert_eq!(x.body(), body);
    assert_eq!(stat(&*cfg, "compressor.gzip.not_compressed_etag"), 1);
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.header("content-encoding"), Some("gzip"));
}

#[test]
fn vary_is_appended_once() {
    let cfg = gzip_cfg();
    let body = text(100);
    let vary_after = |vary: &[&str]| -> Vec<String> {
        let mut headers = html();
        for v in vary {
            headers.push(("vary", v));
        }
        let x = exchange(
            &*cfg,
            GET_GZIP,
            200,
            &headers,
            BodySize::Known(100),
            &[&body],
        );
        assert_eq!(x.header("content-encoding"), Some("gzip"));
        x.response
            .headers
            .get_all("vary")
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(vary_after(&[]), ["Accept-Encoding"]);
    assert_eq!(vary_after(&["Origin"]), ["Origin, Accept-Encoding"]);
    assert_eq!(
        vary_after(&["Origin", "Cookie"]),
        ["Origin", "Cookie, Accept-Encoding"]
    );
    assert_eq!(
        vary_after(&["origin, ACCEPT-ENCODING"]),
        ["origin, ACCEPT-ENCODING"]
    );
    assert_eq!(
        vary_after(&["accept-encoding", "origin"]),
        ["accept-encoding", "origin"]
    );
    assert_eq!(vary_after(&["*"]), ["*"]);
    assert_eq!(vary_after(&[""]), ["Accept-Encoding"]);
}

#[test]
fn accept_encoding_is_removed_only_when_asked() {
    let body = text(100);
    let cfg = gzip_cfg();
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.request.headers.get("accept-encoding"), Some("gzip"));

    let cfg = filter_config(json!({"compressor_library": {"name": "gzip"},
        "response_direction_config": {"remove_accept_encoding_header": true}}));
    let x = exchange(
        &*cfg,
        GET_GZIP,
        200,
        &html(),
        BodySize::Known(100),
        &[&body],
    );
    assert_eq!(x.request.headers.get("accept-encoding"), None);
    // The choice was made before the header went: the response is still compressed.
    assert_eq!(x.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &x.body()), body);
}

#[test]
fn a_list_negotiates_and_counts_per_library() {
    let cfg = filter_config(json!({"compressor_library": [
        {"name": "brotli", "quality": 4},
        {"name": "zstd", "compression_level": 3},
        {"name": "gzip", "compression_level": 6}
    ]}));
    let body = text(5000);
    for (accept, coding) in [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("zstd, gzip", "zstd"),
        ("*", "br"),
    ] {
        let x = exchange(
            &*cfg,
            Req {
                method: b"GET",
                accept: Some(accept),
            },
            200,
            &html(),
            BodySize::Known(5000),
            &[&body],
        );
        assert_eq!(x.header("content-encoding"), Some(coding), "{accept}");
        assert_eq!(decode(coding, &x.body()), body, "{accept}");
    }
    let too_small = exchange(&*cfg, GET_GZIP, 200, &html(), BodySize::Known(3), &[b"abc"]);
    assert_eq!(too_small.header("content-encoding"), None);
    for (lib, compressed, not) in [("brotli", 2, 3), ("zstd", 1, 4), ("gzip", 1, 4)] {
        let p = format!("compressor.{lib}.");
        assert_eq!(stat(&*cfg, &format!("{p}compressed")), compressed, "{lib}");
        assert_eq!(stat(&*cfg, &format!("{p}not_compressed")), not, "{lib}");
        assert_eq!(stat(&*cfg, &format!("{p}content_length_too_small")), 1);
    }
    let names: Vec<String> = cfg.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 18);
    assert!(names.contains(&"compressor.zstd.total_compressed_bytes".to_string()));
}

#[test]
fn two_filters_never_compress_twice() {
    // Envoy's way: one filter per library. The one nearer the upstream compresses; the other
    // sees content-encoding and leaves the body alone.
    let gz = gzip_cfg();
    let br = filter_config(json!({"compressor_library": {"name": "brotli"}}));
    let body = text(1000);
    let first = exchange(
        &*br,
        Req {
            method: b"GET",
            accept: Some("gzip, br"),
        },
        200,
        &html(),
        BodySize::Known(1000),
        &[&body],
    );
    let headers: Vec<(String, String)> = first
        .response
        .headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let wire = first.body();
    let second = exchange(
        &*gz,
        Req {
            method: b"GET",
            accept: Some("gzip, br"),
        },
        200,
        &headers,
        BodySize::Unknown,
        &[&wire],
    );
    assert_eq!(second.header("content-encoding"), Some("br"));
    assert_eq!(second.body(), wire);
    assert_eq!(decode("br", &second.body()), body);
}
