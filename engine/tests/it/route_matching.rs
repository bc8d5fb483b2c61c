//! Routing (issue 10, point 5): virtual hosts by domain, routes in order by path, prefix and
//! regex, header and method matchers, and the three actions (forward with rewrites and a
//! timeout, direct response, redirect), checked through the real proxy.
use crate::support;
use std::net::SocketAddr;

use support::*;

/// Every virtual host answers with its own name, so the one chosen is visible in the body;
/// `catch_all` is the domain of virtual host `any` (`*` makes it the catch-all).
fn vhost_config(catch_all: &str) -> String {
    let hosts: [(&str, &[&str]); 7] = [
        ("exact", &["a.example.com", "10.0.0.1", "[::1]"]),
        ("suffix_long", &["*.b.example.com"]),
        ("suffix", &["*.example.com"]),
        ("prefix", &["www.*"]),
        ("prefix_long", &["www.shop.*"]),
        ("any", &[catch_all]),
        ("mixed_case", &["MiXeD.Example.ORG"]),
    ];
    let mut b = ConfigBuilder::new();
    for (name, domains) in hosts {
        b = b
            .virtual_host(name, domains)
            .direct_response("prefix: /", 200, name);
    }
    b.virtual_host("empty", &["empty.test"]).yaml()
}

fn vhost_of(addr: SocketAddr, host: &str) -> String {
    let r = get(addr, host, "/");
    assert_eq!(r.status(), 200, "Host {host}: {r:?}");
    r.body_str()
}

#[test]
fn route_virtual_hosts_most_specific_domain_wins() {
    let proxy = Proxy::start(&vhost_config("*"));
    let cases = [
        // Exact, case-insensitive, port ignored.
        ("a.example.com", "exact"),
        ("A.Example.COM", "exact"),
        ("a.example.com:8080", "exact"),
        ("10.0.0.1:80", "exact"),
        ("[::1]:8080", "exact"),
        ("mixed.example.org", "mixed_case"),
        // Exact beats every wildcard; the longest suffix beats a shorter one.
        ("x.b.example.com", "suffix_long"),
        ("y.x.b.example.com", "suffix_long"),
        ("b.example.com", "suffix"),
        ("c.example.com:9", "suffix"),
        // `*.example.com` does not match `example.com` itself.
        ("example.com", "any"),
        // Suffix wildcards come before prefix wildcards.
        ("www.example.com", "suffix"),
        ("www.foo.org", "prefix"),
        ("www.shop.org", "prefix_long"),
        ("WWW.SHOP.ORG:443", "prefix_long"),
        // `www.*` needs something after the dot.
        ("www.", "any"),
        ("unknown.test", "any"),
    ];
    let mut c = Client::connect(proxy.addr);
    for (host, want) in cases {
        let r = c.get(host, "/");
        assert_eq!(
            (r.status(), r.body_str()),
            (200, want.to_string()),
            "Host {host}"
        );
    }
    assert_eq!(vhost_of(proxy.addr, "a.example.com"), "exact");
    // HTTP/1.0 without Host matches only `*`.
    let r = request(proxy.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "any"));
    // A virtual host with no route matching is a 404 with the reason.
    let r = get(proxy.addr, "empty.test", "/");
    assert_eq!(r.status(), 404, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some("no_route"));
    assert_eq!(r.body_str(), "no route\n");
    assert_eq!(proxy.stop().code(), Some(0));
}

#[test]
fn route_without_catch_all_host_is_404() {
    let yaml = vhost_config("any.test");
    assert!(!yaml.contains(r#"["*"]"#));
    let proxy = Proxy::start(&yaml);
    for host in ["unknown.test", "example.com"] {
        let r = get(proxy.addr, host, "/");
        assert_eq!(r.status(), 404, "{host}: {r:?}");
        assert_eq!(r.header("x-ringway-reason"), Some("no_route"));
    }
    let r = request(proxy.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status(), 404, "{r:?}");
    assert_eq!(vhost_of(proxy.addr, "a.example.com"), "exact");
}

/// Routes of one virtual host, each answering with its own name.
fn routes_config() -> String {
    ConfigBuilder::new()
        .virtual_host("routes", &["*"])
        .direct_response("path: /exact", 200, "path")
        .direct_response("prefix: /pre/", 200, "prefix")
        .direct_response(r#"regex: "/re/[0-9]+""#, 200, "regex")
        .direct_response(r#"prefix: "/search?q=""#, 200, "prefix-with-query")
        .direct_response("prefix: /order/", 200, "order-first")
        .direct_response("prefix: /order/special", 200, "order-second")
        .direct_response(
            r#"path: /hdr, headers: [{ name: x-exact, exact: "yes" }]"#,
            200,
            "h-exact",
        )
        .direct_response(
            r#"path: /hdr, headers: [{ name: x-prefix, prefix: "ab" }]"#,
            200,
            "h-prefix",
        )
        .direct_response(
            r#"path: /hdr, headers: [{ name: x-re, regex: "[0-9]{3}" }]"#,
            200,
            "h-regex",
        )
        .direct_response(
            "path: /hdr, headers: [{ name: x-present, present: true }]",
            200,
            "h-present",
        )
        .route_raw(
            r#"match:
  path: /hdr
  headers:
    - { name: x-both-a, exact: "1" }
    - { name: x-both-b, exact: "2" }
direct_response: { status: 200, body: "h-both" }"#,
        )
        .direct_response(
            r#"path: /hdr, headers: [{ name: x-not, exact: "no", invert: true }, { name: x-not, present: true }]"#,
            200,
            "h-invert",
        )
        .direct_response(
            "path: /hdr, headers: [{ name: authorization, present: true, invert: true }]",
            200,
            "h-no-auth",
        )
        .direct_response("path: /hdr", 200, "h-fallback")
        .direct_response("path: /m, methods: [POST, put]", 200, "m-post-put")
        .direct_response("path: /m, methods: [GET]", 200, "m-get")
        .direct_response("path: /teapot", 418, "short and stout")
        .route("path: /empty", "direct_response: { status: 204 }")
        .yaml()
}

fn rq(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> RawMessage {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: r.test\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        s.push_str("content-length: 0\r\n");
    }
    s.push_str("\r\n");
    c.roundtrip(s.as_bytes())
}

fn body_or_404(r: &RawMessage) -> String {
    match r.status() {
        200 => r.body_str(),
        404 => {
            assert_eq!(r.header("x-ringway-reason"), Some("no_route"), "{r:?}");
            "404".to_string()
        }
        s => panic!("unexpected status {s}: {r:?}"),
    }
}

#[test]
fn route_path_prefix_regex_in_order() {
    let proxy = Proxy::start(&routes_config());
    let mut c = Client::connect(proxy.addr);
    let cases = [
        ("/exact", "path"),
        // `path` ignores the query string ...
        ("/exact?x=1", "path"),
        // ... but is exact otherwise, and case-sensitive.
        ("/exact/", "404"),
        ("/Exact", "404"),
        ("/exactly", "404"),
        ("/pre/", "prefix"),
        ("/pre/a/b?c", "prefix"),
        ("/pre", "404"),
        ("/PRE/x", "404"),
        // `regex` matches the whole path, without the query.
        ("/re/123", "regex"),
        ("/re/123?q=abc", "regex"),
        ("/re/123x", "404"),
        ("/re/", "404"),
        ("/x/re/1", "404"),
        // `prefix` looks at the query too.
        ("/search?q=rust", "prefix-with-query"),
        ("/search?x=1", "404"),
        // The first matching route wins, even when a later one is more specific.
        ("/order/special", "order-first"),
        ("/order/x", "order-first"),
        ("/nothing", "404"),
    ];
    for (path, want) in cases {
        let r = rq(&mut c, "GET", path, &[]);
        assert_eq!(body_or_404(&r), want, "GET {path}");
    }
}

#[test]
fn route_header_matchers() {
    let proxy = Proxy::start(&routes_config());
    let mut c = Client::connect(proxy.addr);
    let auth = ("authorization", "Bearer x");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("x-exact", "yes"), auth], "h-exact"),
        // Header names are case-insensitive; values are not.
        (vec![("X-EXACT", "yes"), auth], "h-exact"),
        (vec![("x-exact", "YES"), auth], "h-fallback"),
        (vec![("x-exact", "yes!"), auth], "h-fallback"),
        // Only the first header of a name is checked.
        (
            vec![("x-exact", "no"), ("x-exact", "yes"), auth],
            "h-fallback",
        ),
        (vec![("x-prefix", "abc"), auth], "h-prefix"),
        (vec![("x-prefix", "ab"), auth], "h-prefix"),
        (vec![("x-prefix", "xab"), auth], "h-fallback"),
        // Regex is anchored on the whole value.
        (vec![("x-re", "123"), auth], "h-regex"),
        (vec![("x-re", "1234"), auth], "h-fallback"),
        (vec![("x-re", "a123"), auth], "h-fallback"),
        (vec![("x-present", ""), auth], "h-present"),
        (vec![("x-present", "anything"), auth], "h-present"),
        // Every matcher of a route must match.
        (vec![("x-both-a", "1"), ("x-both-b", "2"), auth], "h-both"),
        (vec![("x-both-a", "1"), auth], "h-fallback"),
        (vec![("x-both-b", "2"), auth], "h-fallback"),
        // Inverted: present but not "no".
        (vec![("x-not", "yes"), auth], "h-invert"),
        (vec![("x-not", "no"), auth], "h-fallback"),
        // An inverted `present` matches requests without the header.
        (vec![], "h-no-auth"),
        (vec![auth], "h-fallback"),
    ];
    for (headers, want) in cases {
        let r = rq(&mut c, "GET", "/hdr", &headers);
        assert_eq!(body_or_404(&r), want, "headers {headers:?}");
    }
}

#[test]
fn route_methods_and_direct_responses() {
    let proxy = Proxy::start(&routes_config());
    let mut c = Client::connect(proxy.addr);
    for (method, want) in [
        ("POST", "m-post-put"),
        ("PUT", "m-post-put"),
        ("GET", "m-get"),
        ("DELETE", "404"),
        // Methods are case-sensitive on the wire: `post` is not POST.
        ("post", "404"),
    ] {
        let r = rq(&mut c, method, "/m", &[]);
        assert_eq!(body_or_404(&r), want, "{method} /m");
    }
    // HEAD of a 404: same head, no body; the connection stays usable.
    let r = rq(&mut c, "HEAD", "/m", &[]);
    assert_eq!(r.status(), 404);
    assert_eq!(r.header("content-length"), Some("9"));
    assert!(r.body.is_empty());

    let r = rq(&mut c, "GET", "/teapot", &[]);
    assert_eq!(r.status(), 418);
    assert_eq!(r.body_str(), "short and stout");
    assert_eq!(r.header("content-length"), Some("15"));
    assert_eq!(
        r.header("x-ringway-reason"),
        None,
        "a configured answer is not an error"
    );
    let r = rq(&mut c, "GET", "/empty", &[]);
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("content-length"), None);
    // Still the same keep-alive connection.
    let r = rq(&mut c, "GET", "/exact", &[]);
    assert_eq!(r.body_str(), "path");
}

fn redirects_config() -> String {
    ConfigBuilder::new()
        .route("prefix: /https", "redirect: { https_redirect: true }")
        .route(
            "prefix: /host",
            r#"redirect: { host_redirect: "new.example.org:8443", response_code: 302 }"#,
        )
        .route(
            "prefix: /path",
            r#"redirect: { path_redirect: "/new?x=1", response_code: 307 }"#,
        )
        .route(
            "prefix: /all",
            "redirect: { https_redirect: true, host_redirect: secure.example.org, path_redirect: /landing, response_code: 308 }",
        )
        .route(
            "prefix: /see",
            "redirect: { path_redirect: /other, response_code: 303 }",
        )
        .yaml()
}

#[test]
fn route_redirects_set_location_and_status() {
    let proxy = Proxy::start(&redirects_config());
    let mut c = Client::connect(proxy.addr);
    let cases = [
        // https: the plain-HTTP port is dropped, path and query kept.
        (
            "a.test:8080",
            "/https/x?y=1",
            301,
            "https://a.test/https/x?y=1",
        ),
        ("a.test", "/https", 301, "https://a.test/https"),
        ("[::1]:8080", "/https", 301, "https://[::1]/https"),
        // host: scheme stays http, the path (with query) is kept.
        (
            "a.test:8080",
            "/host/p?q=2",
            302,
            "http://new.example.org:8443/host/p?q=2",
        ),
        // path: the request's host, port included, is kept; the new path replaces path and query.
        (
            "a.test:8080",
            "/path/old?z=9",
            307,
            "http://a.test:8080/new?x=1",
        ),
        (
            "b.test",
            "/all/x",
            308,
            "https://secure.example.org/landing",
        ),
        ("b.test", "/see", 303, "http://b.test/other"),
    ];
    for (host, path, status, location) in cases {
        let r = c.get(host, path);
        assert_eq!(r.status(), status, "{host}{path}: {r:?}");
        assert_eq!(r.header("location"), Some(location), "{host}{path}");
        assert_eq!(r.header("content-length"), Some("0"), "{host}{path}");
        assert!(r.body.is_empty());
    }
}

fn forward_config(origin: SocketAddr, slow: SocketAddr) -> String {
    let to = |cluster: &str, rest: &str| format!("route: {{ cluster: {cluster}, {rest} }}");
    ConfigBuilder::new()
        .hcm_extra("generate_request_id: false")
        .route("prefix: /static/", &to("origin", "prefix_rewrite: /"))
        .route("prefix: /api", &to("origin", "prefix_rewrite: /v2/api"))
        .route("path: /old", &to("origin", "prefix_rewrite: /new/place"))
        .route(
            r#"regex: "/rx/[a-z]+""#,
            &to("origin", "prefix_rewrite: /regex-target"),
        )
        .route(
            "prefix: /host",
            &to("origin", "host_rewrite: internal.example"),
        )
        .route(
            "prefix: /delay/, headers: [{ name: x-fast, present: true }]",
            &to("slow", "timeout: 300ms"),
        )
        .route("prefix: /delay/", &to("slow", "timeout: 3s"))
        .route_prefix("/", "origin")
        .cluster("origin", &[origin])
        .cluster("slow", &[slow])
        .yaml()
}

/// The request line and Host the origin saw (the echo origin answers with the head it got).
fn seen(r: &RawMessage) -> (String, String) {
    assert_eq!(r.status(), 200, "{r:?}");
    let body = r.body_str();
    let mut lines = body.split("\r\n");
    let start = lines.next().unwrap_or("").to_string();
    let host = lines
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("<none>")
        .to_string();
    (start, host)
}

#[test]
fn route_forward_rewrites_path_and_host() {
    let origin = RawOrigin::echo_head();
    let slow = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&forward_config(origin.addr, slow.addr));
    let mut c = Client::connect(proxy.addr);
    let cases = [
        // prefix_rewrite on a prefix route replaces the matched prefix.
        (
            "/static/css/a.css?v=1",
            "GET /css/a.css?v=1 HTTP/1.1",
            "h.test",
        ),
        ("/static/", "GET / HTTP/1.1", "h.test"),
        ("/api/users", "GET /v2/api/users HTTP/1.1", "h.test"),
        ("/apix", "GET /v2/apix HTTP/1.1", "h.test"),
        // On a path or regex route it replaces the whole path; the query is kept.
        ("/old?k=v", "GET /new/place?k=v HTTP/1.1", "h.test"),
        ("/rx/abc?z", "GET /regex-target?z HTTP/1.1", "h.test"),
        // host_rewrite changes the Host sent upstream, not the path.
        ("/host/p?q", "GET /host/p?q HTTP/1.1", "internal.example"),
        // No rewrite: as sent.
        (
            "/plain/x?y=%20",
            "GET /plain/x?y=%20 HTTP/1.1",
            "h.test:8080",
        ),
    ];
    for (path, want_line, want_host) in cases {
        let host = if want_host == "h.test:8080" {
            "h.test:8080"
        } else {
            "h.test"
        };
        let r = c.get(host, path);
        assert_eq!(
            seen(&r),
            (want_line.to_string(), want_host.to_string()),
            "GET {path}"
        );
    }
    // An absolute-form target is sent upstream in origin-form, rewritten the same way.
    let r = c.roundtrip(b"GET http://abs.test/static/z.js HTTP/1.1\r\nHost: abs.test\r\n\r\n");
    assert_eq!(
        seen(&r),
        ("GET /z.js HTTP/1.1".to_string(), "abs.test".to_string())
    );
}

#[test]
fn route_timeout_is_per_route() {
    let origin = RawOrigin::ok();
    let slow = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&forward_config(origin.addr, slow.addr));
    // 600 ms at the origin: within the 3 s route, past the 300 ms one.
    let r = get(proxy.addr, "t", "/delay/600");
    assert_eq!(r.status(), 200, "{r:?}");
    let t0 = std::time::Instant::now();
    let r = request(
        proxy.addr,
        b"GET /delay/600 HTTP/1.1\r\nHost: t\r\nx-fast: 1\r\n\r\n",
    );
    let took = t0.elapsed();
    assert_eq!(r.status(), 504, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some("upstream_timeout"));
    assert!(
        took >= std::time::Duration::from_millis(250)
            && took < std::time::Duration::from_millis(2000),
        "504 after {took:?} with a 300ms route timeout"
    );
}
