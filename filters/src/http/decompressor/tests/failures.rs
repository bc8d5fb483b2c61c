//! Bodies that do not decode: corrupt, truncated, followed by junk, or bombs over
//! `max_inflate_ratio`; and the decoder's limits (chunk overshoot, windows).

use std::io::Write;

use bytes::Bytes;
use serde_json::json;

use super::super::{
    config::{Kind, Library},
    decoder::{Decoder, Failure},
    REASON_FAILED, REASON_RATIO,
};
use super::{
    compress, filter_config, lib_config, mixed, noise, request, response, split, stat, text, LIBS,
};
use crate::filter::DataStatus;

/// Bodies that must fail to decode with `coding`, named. brotli has no checksum: a changed
/// byte in its middle may decode to other bytes without error, so its corruption is a header
/// RFC 7932 forbids (the large-window marker); zstd is checksummed here so its middle is.
fn bad_bodies(coding: &str, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let wire = if coding == "zstd" {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(body).unwrap();
        e.finish().unwrap()
    } else {
        compress(coding, body)
    };
    let mut bad = Vec::new();
    let mut header = wire.clone();
    header[0] = if coding == "br" { 0x11 } else { 0x00 };
    bad.push(("bad header", header));
    if coding != "br" {
        let mut middle = wire.clone();
        for b in &mut middle[wire.len() / 2..wire.len() / 2 + 16] {
            *b ^= 0x5a;
        }
        bad.push(("changed middle", middle));
        bad.push(("not encoded", body.to_vec()));
    }
    bad.push(("truncated", wire[..wire.len() - 7].to_vec()));
    let mut trailing = wire;
    trailing.extend_from_slice(b"and then some junk that is no stream at all");
    bad.push(("trailing junk", trailing));
    bad
}

#[test]
fn corrupt_truncated_and_trailing_input_fail_the_stream() {
    let body = mixed(30_000);
    for (name, coding) in LIBS {
        let cfg = lib_config(name);
        let bad = bad_bodies(coding, &body);
        for (what, wire) in &bad {
            let pieces = split(wire, &[1000]);
            let rq = request(&*cfg, &[("content-encoding", coding)], &pieces);
            assert_eq!(
                rq.failure(),
                Some((400, REASON_FAILED)),
                "{name} {what} request"
            );
            // Nothing comes out of the failing piece or after it, and it stays failed.
            let first = rq
                .statuses
                .iter()
                .position(|s| matches!(s, DataStatus::LocalReply(_)))
                .unwrap();
            assert!(rq.out[first..].iter().all(Bytes::is_empty), "{name} {what}");
            assert!(
                rq.statuses[first..]
                    .iter()
                    .all(|s| matches!(s, DataStatus::LocalReply(_))),
                "{name} {what}: a failed body must stay failed"
            );
            let rs = response(&*cfg, &[("content-encoding", coding)], &pieces);
            assert_eq!(
                rs.failure(),
                Some((502, REASON_FAILED)),
                "{name} {what} response"
            );
        }
        for dir in ["request", "response"] {
            let p = format!("decompressor.{name}.{dir}.");
            let n = bad.len() as u64;
            assert_eq!(stat(&*cfg, &format!("{p}decompression_error")), n, "{p}");
            assert_eq!(stat(&*cfg, &format!("{p}decompressed")), n, "{p}");
        }
    }
}

#[test]
fn a_truncated_stream_fails_on_its_empty_last_piece() {
    for (name, coding) in LIBS {
        // Several zstd blocks, so some are complete before the cut.
        let wire = compress(coding, &mixed(400_000));
        let cut = &wire[..wire.len() - 3];
        let cfg = lib_config(name);
        let rq = request(&*cfg, &[("content-encoding", coding)], &[cut, b""]);
        assert!(matches!(rq.statuses[0], DataStatus::Continue), "{name}");
        assert!(!rq.out[0].is_empty(), "{name}: what decoded is passed on");
        assert!(
            matches!(&rq.statuses[1], DataStatus::LocalReply(r) if r.reason == Some(REASON_FAILED)),
            "{name}: {:?}",
            rq.statuses[1]
        );
    }
}

#[test]
fn a_decompression_bomb_is_stopped_at_max_inflate_ratio() {
    let zeros = vec![0u8; 10 << 20];
    for (name, coding) in LIBS {
        let bomb = compress(coding, &zeros);
        assert!(bomb.len() < 20_000, "{name}: {} bytes", bomb.len());
        let pieces = split(&bomb, &[1024]);
        let cfg = lib_config(name);
        let rq = request(&*cfg, &[("content-encoding", coding)], &pieces);
        assert_eq!(rq.failure(), Some((400, REASON_RATIO)), "{name}");
        let rs = response(&*cfg, &[("content-encoding", coding)], &pieces);
        assert_eq!(rs.failure(), Some((502, REASON_RATIO)), "{name}");
        let passed: usize = rq.out.iter().map(Bytes::len).sum();
        assert!(passed < 200 * 1024, "{name}: {passed} bytes passed on");
        assert_eq!(
            stat(
                &*cfg,
                &format!("decompressor.{name}.request.decompression_error")
            ),
            1
        );
    }
    // The same body under a ratio it fits decodes whole.
    let cfg = filter_config(json!({"decompressor_library":
        {"name": "gzip", "max_inflate_ratio": 2000, "chunk_size": 65536}}));
    let gz = compress("gzip", &zeros);
    let rq = request(&*cfg, &[("content-encoding", "gzip")], &split(&gz, &[4096]));
    assert_eq!(rq.failure(), None);
    assert_eq!(rq.body().len(), zeros.len());
}

#[test]
fn the_decoder_overshoots_the_ratio_by_at_most_one_chunk() {
    let zeros = vec![0u8; 4 << 20];
    for (kind, coding) in [
        (Kind::Gzip, "gzip"),
        (Kind::Brotli, "br"),
        (Kind::Zstd, "zstd"),
    ] {
        let wire = compress(coding, &zeros);
        for (ratio, chunk) in [(10u64, 4096usize), (100, 65_536)] {
            let lib = Library {
                kind,
                window_bits: 15,
                chunk_size: chunk,
                max_inflate_ratio: ratio,
            };
            let mut d = Decoder::new(&lib).unwrap();
            let mut out = Vec::new();
            assert_eq!(d.push(&wire, &mut out), Err(Failure::TooLarge), "{coding}");
            let limit = ratio as usize * wire.len() + chunk;
            assert!(out.len() <= limit, "{coding}: {} > {limit}", out.len());
            assert!(out.iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn a_stream_ending_on_a_full_chunk_is_complete() {
    // The decoder asks again after a full chunk, with no input left: that call must not make
    // a finished stream look unfinished.
    let body = mixed(3 * 4096);
    for (kind, coding) in [
        (Kind::Gzip, "gzip"),
        (Kind::Brotli, "br"),
        (Kind::Zstd, "zstd"),
    ] {
        let lib = Library {
            kind,
            window_bits: 15,
            chunk_size: 4096,
            max_inflate_ratio: 100,
        };
        let wire = compress(coding, &body);
        for pieces in [vec![&wire[..]], split(&wire, &[1])] {
            let mut d = Decoder::new(&lib).unwrap();
            let mut out = Vec::new();
            for p in &pieces {
                d.push(p, &mut out).unwrap();
            }
            assert_eq!(d.finish(), Ok(()), "{coding}");
            assert!(out == body, "{coding}");
        }
    }
}

#[test]
fn window_limits() {
    // gzip: zlib-rs keeps a 32 KiB window whatever `window_bits` says, so a stream with matches
    // 20,000 bytes back still decodes under `window_bits: 9` (zlib would refuse it).
    let mut body = noise(20_000, 7);
    body.extend_from_within(..20_000);
    let gz = compress("gzip", &body);
    assert!(gz.len() < 25_000, "the encoder found the far matches");
    let small = filter_config(json!({"decompressor_library": {"name": "gzip", "window_bits": 9}}));
    let rq = request(
        &*small,
        &[("content-encoding", "gzip")],
        &split(&gz, &[3000]),
    );
    assert_eq!(rq.body(), body);

    // zstd: a frame asking for a 32 MiB window is refused (RFC 9659: 8 MiB).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(25).unwrap();
    enc.write_all(&text(1000)).unwrap();
    let big = enc.finish().unwrap();
    let rq = request(
        &*lib_config("zstd"),
        &[("content-encoding", "zstd")],
        &[&big],
    );
    assert_eq!(rq.failure(), Some((400, REASON_FAILED)));
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(23).unwrap();
    enc.write_all(&text(1000)).unwrap();
    let ok = enc.finish().unwrap();
    let rq = request(
        &*lib_config("zstd"),
        &[("content-encoding", "zstd")],
        &[&ok],
    );
    assert_eq!(rq.body(), text(1000));
}
