//! Config validation and `accept-encoding` negotiation.

use serde_json::{json, Value};

use super::super::{
    config::{self, BrotliMode, Library},
    negotiate, qvalue,
};
use crate::stream::HeaderMap;

fn validated(v: Value) -> config::Config {
    let spec = crate::registry::decode::<config::Spec>(&v).unwrap();
    config::validate(spec).unwrap()
}

/// Every problem of a refused config, as `(dotted path, message)`.
fn problems(v: Value) -> Vec<(String, String)> {
    let e = super::super::parse(&v).expect_err("config should be refused");
    e.into_iter()
        .map(|p| (p.dotted_path(), p.message))
        .collect()
}

// ---- negotiation ----

fn libs(names: &[&str]) -> Vec<Library> {
    let list: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    validated(json!({ "compressor_library": list })).libraries
}

fn pick(names: &[&str], accept: &[&str]) -> Option<&'static str> {
    let libs = libs(names);
    let mut h = HeaderMap::default();
    for a in accept {
        h.append("accept-encoding", a);
    }
    negotiate(&libs, &h).map(|i| libs[i].coding())
}

#[test]
fn q_values() {
    assert_eq!(qvalue(b"1"), Some(1000));
    assert_eq!(qvalue(b"0"), Some(0));
    assert_eq!(qvalue(b" 0.5 "), Some(500));
    assert_eq!(qvalue(b"0.125"), Some(125));
    assert_eq!(qvalue(b".25"), Some(250));
    assert_eq!(qvalue(b"0.0001"), Some(0));
    assert_eq!(qvalue(b"1.000"), Some(1000));
    assert_eq!(qvalue(b"2"), Some(1000));
    assert_eq!(qvalue(b""), None);
    assert_eq!(qvalue(b"."), None);
    assert_eq!(qvalue(b"abc"), None);
    assert_eq!(qvalue(b"-1"), None);
    assert_eq!(qvalue(b"99999999999"), None);
}

#[test]
fn negotiation_by_q_values() {
    let all = ["brotli", "zstd", "gzip"];
    assert_eq!(pick(&["gzip"], &["gzip"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["GZip"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["x-gzip"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["deflate"]), None);
    assert_eq!(pick(&["gzip"], &[]), None);
    assert_eq!(pick(&["gzip"], &[""]), None);
    assert_eq!(pick(&["gzip"], &["gzip;q=0"]), None);
    assert_eq!(pick(&["gzip"], &["gzip; Q=0.000"]), None);
    assert_eq!(pick(&["gzip"], &["gzip;q=0.001"]), Some("gzip"));
    // The client's preference decides.
    assert_eq!(
        pick(&all, &["br;q=0.5, gzip;q=0.8, zstd;q=0.7"]),
        Some("gzip")
    );
    assert_eq!(pick(&all, &["gzip;q=0.4", "zstd;q=0.6"]), Some("zstd"));
    // Ties go to config order, whatever the client's order.
    assert_eq!(pick(&all, &["gzip, zstd, br"]), Some("br"));
    assert_eq!(pick(&["gzip", "brotli"], &["br, gzip"]), Some("gzip"));
    // `*` covers the libraries the client did not name.
    assert_eq!(pick(&["gzip"], &["*"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["*;q=0"]), None);
    assert_eq!(pick(&["gzip"], &["gzip;q=0, *"]), None);
    assert_eq!(pick(&all, &["br;q=0, *"]), Some("zstd"));
    assert_eq!(pick(&all, &["br;q=0.2, *;q=0.5"]), Some("zstd"));
    assert_eq!(pick(&all, &["gzip;q=0.9, *;q=0.5"]), Some("gzip"));
    // `identity` wins only when strictly preferred; `identity;q=0` changes nothing.
    assert_eq!(pick(&["gzip"], &["gzip, identity;q=0"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["identity, gzip"]), Some("gzip"));
    assert_eq!(pick(&["gzip"], &["identity;q=1, gzip;q=0.5"]), None);
    // An unreadable q-value drops that coding only.
    assert_eq!(
        pick(&["gzip", "brotli"], &["gzip;q=abc, br;q=0.1"]),
        Some("br")
    );
    // Other parameters are ignored; whitespace is allowed around everything.
    assert_eq!(
        pick(&["zstd"], &[" zstd ; level=3 ; q = 0.5 "]),
        Some("zstd")
    );
    // The first mention of a coding counts.
    assert_eq!(pick(&["gzip"], &["gzip;q=0, gzip"]), None);
}

// ---- config ----

#[test]
fn defaults() {
    let c = validated(json!({"compressor_library": {"name": "gzip"}}));
    assert_eq!(
        c.libraries,
        [Library::Gzip {
            level: 6,
            window_bits: 12
        }]
    );
    assert_eq!(c.min_content_length, 30);
    assert_eq!(c.content_types.len(), config::DEFAULT_CONTENT_TYPES.len());
    assert!(c.content_type_allowed(b"application/XHTML+xml"));
    assert!(!c.disable_on_etag_header);
    assert!(!c.remove_accept_encoding_header);
    let c = validated(json!({"compressor_library": [{"name": "brotli"}, {"name": "zstd"}]}));
    assert_eq!(
        c.libraries,
        [
            Library::Brotli {
                quality: 3,
                window_bits: 18,
                input_block_bits: None,
                mode: BrotliMode::Generic,
                disable_literal_context_modeling: false
            },
            Library::Zstd {
                level: 3,
                checksum: false
            }
        ]
    );
}

#[test]
fn envoy_gzip_level_names() {
    for (v, level) in [
        (json!("DEFAULT_COMPRESSION"), 6),
        (json!("best_speed"), 1),
        (json!("BEST_COMPRESSION"), 9),
        (json!("COMPRESSION_LEVEL_4"), 4),
        (json!(2), 2),
    ] {
        let c = validated(
            json!({"compressor_library": {"name": "gzip", "compression_level": v.clone()}}),
        );
        assert!(
            matches!(c.libraries[0], Library::Gzip { level: l, .. } if l == level),
            "{v}"
        );
    }
}

#[test]
fn config_errors_name_their_paths() {
    let has = |v: Value, path: &str, words: &str| {
        let p = problems(v.clone());
        assert!(
            p.iter().any(|(at, m)| at == path && m.contains(words)),
            "{v}: wanted {path:?} ~ {words:?}, got {p:?}"
        );
    };
    has(json!({}), "compressor_library", "required");
    has(
        json!({"compressor_library": []}),
        "compressor_library",
        "no library",
    );
    has(
        json!({"compressor_library": {"name": "deflate"}}),
        "compressor_library.name",
        "unknown library",
    );
    has(
        json!({"compressor_library": {}}),
        "compressor_library",
        "name",
    );
    has(
        json!({"compressor_library": [{"name": "gzip"}, {"name": "gzip", "window_bits": 10}]}),
        "compressor_library.1.name",
        "listed twice",
    );
    has(
        json!({"compressor_library": [{"name": "gzip", "speed": 1}]}),
        "compressor_library.0.speed",
        "unknown key",
    );
    has(
        json!({"compressor_library": {"name": "gzip", "window_bits": "x"}}),
        "compressor_library.window_bits",
        "invalid type",
    );
    for level in [
        json!(0),
        json!(10),
        json!("FAST"),
        json!("COMPRESSION_LEVEL_0"),
    ] {
        has(
            json!({"compressor_library": {"name": "gzip", "compression_level": level}}),
            "compressor_library.compression_level",
            "",
        );
    }
    has(
        json!({"compressor_library": {"name": "gzip", "window_bits": 8}}),
        "compressor_library.window_bits",
        "9..15",
    );
    has(
        json!({"compressor_library": {"name": "gzip", "quality": 4}}),
        "compressor_library.quality",
        "not an option of gzip",
    );
    has(
        json!({"compressor_library": {"name": "brotli", "quality": 12}}),
        "compressor_library.quality",
        "0..11",
    );
    has(
        json!({"compressor_library": {"name": "brotli", "window_bits": 25}}),
        "compressor_library.window_bits",
        "10..24",
    );
    has(
        json!({"compressor_library": {"name": "brotli", "input_block_bits": 15}}),
        "compressor_library.input_block_bits",
        "16..24",
    );
    has(
        json!({"compressor_library": {"name": "brotli", "encoder_mode": "FAST"}}),
        "compressor_library.encoder_mode",
        "TEXT",
    );
    has(
        json!({"compressor_library": {"name": "brotli", "compression_level": 5}}),
        "compressor_library.compression_level",
        "quality",
    );
    has(
        json!({"compressor_library": {"name": "zstd", "compression_level": 20}}),
        "compressor_library.compression_level",
        "1..19",
    );
    has(
        json!({"compressor_library": {"name": "zstd", "window_bits": 20}}),
        "compressor_library.window_bits",
        "not an option of zstd",
    );
    has(
        json!({"compressor_library": {"name": "gzip"}, "request_direction_config": {}}),
        "request_direction_config",
        "not supported",
    );
    has(
        json!({"compressor_library": {"name": "gzip"}, "content_length": 10}),
        "content_length",
        "unknown key",
    );
    has(
        json!({"compressor_library": {"name": "gzip"},
               "response_direction_config": {"common_config": {"content_type": ["text/html; charset=utf-8"]}}}),
        "response_direction_config.common_config.content_type.0",
        "without parameters",
    );
    has(
        json!({"compressor_library": {"name": "gzip"},
               "response_direction_config": {"common_config": {"enabled": true}}}),
        "response_direction_config.common_config.enabled",
        "unknown key",
    );
    // Every problem is reported, not just the first.
    let p = problems(json!({"compressor_library": [
        {"name": "gzip", "window_bits": 99},
        {"name": "brotli", "quality": 99}
    ]}));
    assert_eq!(p.len(), 2, "{p:?}");
}
