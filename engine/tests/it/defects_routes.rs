//! Envoy's `match: {prefix: ""}` idiom through the real proxy: it routes every request, and a
//! `prefix_rewrite` on it replaces the empty matched prefix, i.e. is prepended to the path.

use crate::support;

use support::*;

fn config(origin: std::net::SocketAddr, route: &str) -> String {
    simple_config(origin).replace(
        "                    - match: { prefix: / }\n                      route: { cluster: origin }\n",
        &format!("                    - match: {{ prefix: \"\" }}\n                      route: {route}\n"),
    )
}

/// The request line the origin received (the body of an `echo_head` answer).
fn request_line(r: &RawMessage) -> String {
    r.body_str().lines().next().unwrap_or("").to_string()
}

#[test]
fn defects_routes_empty_prefix_matches_every_path() {
    let origin = RawOrigin::echo_head();
    let cfg = config(origin.addr, "{ cluster: origin }");
    assert!(cfg.contains("prefix: \"\""), "{cfg}");
    let proxy = Proxy::start(&cfg);
    for path in ["/", "/a", "/deep/er/path?q=1", "/%41"] {
        let r = get(proxy.addr, "any.host", path);
        assert_eq!(r.status(), 200, "{path}: {r:?}");
        assert_eq!(request_line(&r), format!("GET {path} HTTP/1.1"));
    }
    assert!(proxy.stop().success());
}

#[test]
fn defects_routes_empty_prefix_rewrite_prepends() {
    let origin = RawOrigin::echo_head();
    let proxy = Proxy::start(&config(
        origin.addr,
        "{ cluster: origin, prefix_rewrite: /api }",
    ));
    for (path, sent) in [
        ("/x", "/api/x"),
        ("/v1/items?id=7", "/api/v1/items?id=7"),
        ("/", "/api/"),
    ] {
        let r = get(proxy.addr, "a", path);
        assert_eq!(r.status(), 200, "{path}: {r:?}");
        assert_eq!(request_line(&r), format!("GET {sent} HTTP/1.1"), "{path}");
    }
    assert!(proxy.stop().success());
}
