//! The config keys: defaults, Envoy's matcher shape, problems with their paths, the declared
//! hooks.

use super::*;

// ---- config ----

#[test]
fn config_defaults_and_registry() {
    let cfg = registry::parse("envoy.filters.http.cache", &json!({})).unwrap();
    assert_eq!(cfg.name(), "cache");
    let names: Vec<String> = cfg.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "cache.hits",
            "cache.misses",
            "cache.revalidations",
            "cache.inserts",
            "cache.evictions",
            "cache.uncacheable",
            "cache.bytes"
        ]
    );
    let s = config::check(registry::decode(&json!({})).unwrap()).unwrap();
    assert_eq!(s.max_size_bytes, 64 << 20);
    assert_eq!(s.max_object_bytes, 1 << 20);
    assert_eq!(s.default_ttl, None);
    assert_eq!(&*s.allowed_vary, &["accept-encoding".into()] as &[Box<str>]);

    let s = config::check(
        registry::decode(&json!({
            "max_size_bytes": 1000, "max_object_bytes": 10, "default_ttl": "2m",
            "allowed_vary_headers": ["Accept-Language", {"exact": "origin"}, "accept-language",
                                     {"exact": "x-a", "ignore_case": true}]
        }))
        .unwrap(),
    )
    .unwrap();
    assert_eq!((s.max_size_bytes, s.max_object_bytes), (1000, 10));
    assert_eq!(s.default_ttl, Some(120));
    assert_eq!(
        &*s.allowed_vary,
        &["accept-language".into(), "origin".into(), "x-a".into()] as &[Box<str>]
    );
}

#[test]
fn config_problems_have_paths() {
    let paths = |v: serde_json::Value| -> Vec<String> {
        match registry::parse("cache", &v) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|p| p.dotted_path()).collect(),
        }
    };
    assert_eq!(paths(json!({"max_sise_bytes": 1})), ["max_sise_bytes"]);
    assert_eq!(
        paths(json!({"max_size_bytes": 10, "max_object_bytes": 11})),
        ["max_object_bytes"]
    );
    assert_eq!(
        paths(json!({"max_size_bytes": 0, "max_object_bytes": 0})),
        ["max_size_bytes", "max_object_bytes"]
    );
    assert_eq!(paths(json!({"default_ttl": "500ms"})), ["default_ttl"]);
    assert_eq!(paths(json!({"default_ttl": null})), Vec::<String>::new());
    assert_eq!(
        paths(json!({"allowed_vary_headers": ["ok", "*", {"prefix": "x"}, "a b", 3]})),
        [
            "allowed_vary_headers.1",
            "allowed_vary_headers.2",
            "allowed_vary_headers.3",
            "allowed_vary_headers.4"
        ]
    );
}

#[test]
fn hooks_declared() {
    let h = Harness::default();
    assert_eq!(
        h.factory.hooks(),
        Hooks {
            request_headers: true,
            response_headers: true,
            response_data: true,
            ..Hooks::default()
        }
    );
}
