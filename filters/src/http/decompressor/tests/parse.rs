//! Config validation: defaults, Envoy's names, and every problem with its path.

use serde_json::{json, Value};

use super::super::config::{self, Direction, Kind, Library};

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

#[test]
fn defaults_are_envoys() {
    let c = validated(json!({"decompressor_library": {"name": "gzip"}}));
    assert_eq!(
        c.library,
        Library {
            kind: Kind::Gzip,
            window_bits: 15,
            chunk_size: 4096,
            max_inflate_ratio: 100
        }
    );
    let on = Direction {
        enabled: true,
        ignore_no_transform_header: false,
    };
    assert_eq!((c.request, c.response), (on, on));
    assert!(c.advertise_accept_encoding);
    assert_eq!(c.stats.snapshot().len(), 10);
}

#[test]
fn options_and_envoy_names_are_read() {
    for (name, kind) in [
        ("envoy.compression.gzip.decompressor", Kind::Gzip),
        ("envoy.compression.brotli.decompressor", Kind::Brotli),
        ("envoy.compression.zstd.decompressor", Kind::Zstd),
        ("brotli", Kind::Brotli),
        ("zstd", Kind::Zstd),
    ] {
        let c = validated(json!({"decompressor_library": {"name": name}}));
        assert_eq!(c.library.kind, kind, "{name}");
        // Stats use the short name.
        let short = c.library.name();
        assert!(c.stats.snapshot()[0]
            .0
            .starts_with(&format!("decompressor.{short}.request.")));
    }
    let c = validated(json!({
        "decompressor_library": {"name": "gzip", "window_bits": 10, "chunk_size": 65536,
                                 "max_inflate_ratio": 7},
        "request_direction_config": {
            "common_config": {"enabled": {"default_value": false, "runtime_key": "k"},
                              "ignore_no_transform_header": true},
            "advertise_accept_encoding": false
        },
        "response_direction_config": {"common_config": {"enabled": false}}
    }));
    assert_eq!(
        c.library,
        Library {
            kind: Kind::Gzip,
            window_bits: 10,
            chunk_size: 65536,
            max_inflate_ratio: 7
        }
    );
    assert_eq!(
        c.request,
        Direction {
            enabled: false,
            ignore_no_transform_header: true
        }
    );
    assert!(!c.response.enabled);
    assert!(!c.advertise_accept_encoding);
    // brotli's memory knob is accepted.
    let c = validated(json!({"decompressor_library":
        {"name": "brotli", "disable_ring_buffer_reallocation": true, "max_inflate_ratio": 1}}));
    assert_eq!(c.library.max_inflate_ratio, 1);
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
    let lib = |extra: Value| {
        let mut l = json!({"name": "gzip"});
        for (k, v) in extra.as_object().unwrap() {
            l[k] = v.clone();
        }
        json!({ "decompressor_library": l })
    };
    has(json!({}), "decompressor_library", "required");
    has(
        json!({"decompressor_library": {"name": "deflate"}}),
        "decompressor_library.name",
        "unknown library",
    );
    has(
        json!({"decompressor_library": {"name": "basic", "typed_config": {}}}),
        "decompressor_library.typed_config",
        "unknown key",
    );
    has(
        json!({"decompressor_library": {}}),
        "decompressor_library",
        "name",
    );
    has(
        lib(json!({"window_bits": 8})),
        "decompressor_library.window_bits",
        "9..15",
    );
    has(
        lib(json!({"window_bits": 16})),
        "decompressor_library.window_bits",
        "9..15",
    );
    has(
        lib(json!({"window_bits": "x"})),
        "decompressor_library.window_bits",
        "invalid type",
    );
    for size in [0, 100, 4095, 65537] {
        has(
            lib(json!({"chunk_size": size})),
            "decompressor_library.chunk_size",
            "4096..65536",
        );
    }
    has(
        lib(json!({"max_inflate_ratio": 0})),
        "decompressor_library.max_inflate_ratio",
        "at least 1",
    );
    has(
        lib(json!({"max_inflate_ratio": -1})),
        "decompressor_library.max_inflate_ratio",
        "invalid value",
    );
    has(
        json!({"decompressor_library": {"name": "brotli", "window_bits": 15}}),
        "decompressor_library.window_bits",
        "not an option of brotli",
    );
    has(
        lib(json!({"disable_ring_buffer_reallocation": true})),
        "decompressor_library.disable_ring_buffer_reallocation",
        "not an option of gzip",
    );
    has(
        json!({"decompressor_library": {"name": "zstd", "dictionaries": []}}),
        "decompressor_library.dictionaries",
        "not supported",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"}, "compressor_library": {}}),
        "compressor_library",
        "unknown key",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "request_direction_config": {"common_config": {"enabled": "yes"}}}),
        "request_direction_config.common_config.enabled",
        "not true, false",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "response_direction_config": {"common_config": {"enabled": {"runtime_key": "k"}}}}),
        "response_direction_config.common_config.enabled.default_value",
        "required",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "response_direction_config": {"common_config": {"enabled": {"default_value": 1}}}}),
        "response_direction_config.common_config.enabled.default_value",
        "invalid type",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "response_direction_config": {"common_config": {"enabled": {"default_value": true, "fraction": 1}}}}),
        "response_direction_config.common_config.enabled.fraction",
        "unknown key",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "response_direction_config": {"advertise_accept_encoding": true}}),
        "response_direction_config.advertise_accept_encoding",
        "unknown key",
    );
    has(
        json!({"decompressor_library": {"name": "gzip"},
               "request_direction_config": {"common_config": {"min_content_length": 3}}}),
        "request_direction_config.common_config.min_content_length",
        "unknown key",
    );
    // Every problem is reported, not just the first.
    let p = problems(json!({
        "decompressor_library": {"name": "gzip", "window_bits": 99, "chunk_size": 1},
        "request_direction_config": {"common_config": {"enabled": 3}},
        "response_direction_config": {"common_config": {"enabled": {}}}
    }));
    assert_eq!(p.len(), 4, "{p:?}");
}
