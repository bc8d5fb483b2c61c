//! Route table tests: domain precedence, port stripping, path kinds, query handling, header
//! matchers (invert, present, regex), methods and route order. Tables are built from YAML
//! through the real config loader, so these also pin the config -> router contract.

use ringway_filters::HeaderMap;

use super::RouteTable;
use crate::config::{load_str, Format, Route, RouteAction};

/// A config with one listener whose virtual hosts are `vhosts` (YAML, indented 16 spaces).
fn table(vhosts: &str) -> RouteTable {
    let text = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
{vhosts}
clusters:
  - name: c
    endpoints: [\"127.0.0.1:9000\"]
"
    );
    match load_str(&text, Format::Yaml, "test") {
        Ok(config) => RouteTable::new(config.listeners[0].http().expect("http listener")),
        Err(e) => panic!("test config invalid:\n{e}\n{text}"),
    }
}

/// The body of the direct response a route gives: the tests label routes that way.
fn label(route: Option<&Route>) -> Option<&str> {
    match &route?.action {
        RouteAction::DirectResponse { body, .. } => std::str::from_utf8(body).ok(),
        _ => Some("<not a direct response>"),
    }
}

fn find<'a>(t: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
    label(t.find(
        host.as_bytes(),
        path.as_bytes(),
        b"GET",
        &HeaderMap::default(),
    ))
}

fn vh_name<'a>(t: &'a RouteTable, host: &str) -> Option<&'a str> {
    t.virtual_host(host.as_bytes()).map(|vh| vh.name.as_str())
}

/// One virtual host per domain pattern, each answering its own name.
fn domains_table() -> RouteTable {
    let mut y = String::new();
    for (name, domain) in [
        ("exact", "a.com"),
        ("star_a", "*.a.com"),
        ("star_b_a", "*.b.a.com"),
        ("www_star", "www.*"),
        ("www_a_star", "www.a.*"),
        ("any", "*"),
        ("v6", "[::1]"),
        ("v4", "10.1.2.3"),
    ] {
        y.push_str(&format!(
            "                - name: {name}
                  domains: [\"{domain}\"]
                  routes:
                    - match: {{ prefix: / }}
                      direct_response: {{ status: 200, body: {name} }}
"
        ));
    }
    table(&y)
}

#[test]
fn exact_domain_beats_wildcards() {
    let t = domains_table();
    assert_eq!(vh_name(&t, "a.com"), Some("exact"));
    assert_eq!(find(&t, "a.com", "/"), Some("exact"));
}

#[test]
fn longest_suffix_wildcard_wins() {
    let t = domains_table();
    assert_eq!(vh_name(&t, "x.a.com"), Some("star_a"));
    assert_eq!(vh_name(&t, "x.c.a.com"), Some("star_a"));
    assert_eq!(vh_name(&t, "x.b.a.com"), Some("star_b_a"));
    assert_eq!(vh_name(&t, "y.x.b.a.com"), Some("star_b_a"));
    // `*.b.a.com` does not match `b.a.com` itself, `*.a.com` does.
    assert_eq!(vh_name(&t, "b.a.com"), Some("star_a"));
    // The `*` needs at least one character.
    assert_eq!(vh_name(&t, ".a.com"), Some("any"));
}

#[test]
fn suffix_beats_prefix_and_longest_prefix_wins() {
    let t = domains_table();
    // www.a.com: exact? no. suffix *.a.com: yes -> beats www.*
    assert_eq!(vh_name(&t, "www.a.com"), Some("star_a"));
    assert_eq!(vh_name(&t, "www.example.org"), Some("www_star"));
    assert_eq!(vh_name(&t, "www.a.org"), Some("www_a_star"));
    assert_eq!(vh_name(&t, "www."), Some("any"));
}

#[test]
fn star_catches_the_rest_and_a_missing_host() {
    let t = domains_table();
    assert_eq!(vh_name(&t, "other.org"), Some("any"));
    assert_eq!(vh_name(&t, "a.comx"), Some("any"));
    assert_eq!(vh_name(&t, ""), Some("any"));
    assert_eq!(vh_name(&t, ":80"), Some("any"));
}

#[test]
fn missing_host_matches_only_star() {
    let t = table(
        "                - name: only
                  domains: [\"a.com\", \"*.a.com\", \"a.*\"]
                  routes:
                    - match: { prefix: / }
                      direct_response: { status: 200, body: only }
",
    );
    assert_eq!(vh_name(&t, ""), None);
    assert_eq!(find(&t, "", "/"), None);
    assert_eq!(vh_name(&t, "b.com"), None);
    assert_eq!(vh_name(&t, "a.com"), Some("only"));
}

#[test]
fn host_is_case_insensitive() {
    let t = domains_table();
    assert_eq!(vh_name(&t, "A.COM"), Some("exact"));
    assert_eq!(vh_name(&t, "X.B.A.Com"), Some("star_b_a"));
    assert_eq!(vh_name(&t, "WWW.Example.org"), Some("www_star"));
    let long = format!("{}.A.COM", "X".repeat(400));
    assert_eq!(vh_name(&t, &long), Some("star_a"));
    let long_exact = "Y".repeat(400);
    assert_eq!(vh_name(&t, &long_exact), Some("any"));
}

#[test]
fn port_is_stripped() {
    let t = domains_table();
    assert_eq!(vh_name(&t, "a.com:8080"), Some("exact"));
    assert_eq!(vh_name(&t, "A.com:80"), Some("exact"));
    assert_eq!(vh_name(&t, "x.a.com:443"), Some("star_a"));
    assert_eq!(vh_name(&t, "[::1]:80"), Some("v6"));
    assert_eq!(vh_name(&t, "[::1]"), Some("v6"));
    assert_eq!(vh_name(&t, "10.1.2.3:9000"), Some("v4"));
    // An unbracketed IPv6 address is not mangled into something else.
    assert_eq!(vh_name(&t, "::1"), Some("any"));
}

fn routes_table(routes: &str) -> RouteTable {
    table(&format!(
        "                - name: vh
                  domains: [\"*\"]
                  routes:
{routes}"
    ))
}

#[test]
fn path_kinds_and_query() {
    let t = routes_table(
        "                    - match: { path: /exact }
                      direct_response: { status: 200, body: exact }
                    - match: { regex: \"/users/[0-9]+\" }
                      direct_response: { status: 200, body: regex }
                    - match: { prefix: \"/search?q=\" }
                      direct_response: { status: 200, body: prefix_query }
                    - match: { prefix: /api/ }
                      direct_response: { status: 200, body: prefix }
",
    );
    assert_eq!(find(&t, "h", "/exact"), Some("exact"));
    assert_eq!(find(&t, "h", "/exact?x=1"), Some("exact"));
    assert_eq!(find(&t, "h", "/exact/"), None);
    assert_eq!(find(&t, "h", "/exactly"), None);
    assert_eq!(find(&t, "h", "/Exact"), None);

    assert_eq!(find(&t, "h", "/users/42"), Some("regex"));
    assert_eq!(find(&t, "h", "/users/42?tab=1"), Some("regex"));
    // anchored: the whole path must match
    assert_eq!(find(&t, "h", "/users/42/x"), None);
    assert_eq!(find(&t, "h", "/v1/users/42"), None);
    assert_eq!(find(&t, "h", "/users/"), None);

    // prefix sees the query string (Envoy)
    assert_eq!(find(&t, "h", "/search?q=rust"), Some("prefix_query"));
    assert_eq!(find(&t, "h", "/search"), None);

    assert_eq!(find(&t, "h", "/api/"), Some("prefix"));
    assert_eq!(find(&t, "h", "/api/v1?x"), Some("prefix"));
    assert_eq!(find(&t, "h", "/api"), None);
}

#[test]
fn regex_on_non_utf8_path_never_matches() {
    let t = routes_table(
        "                    - match: { regex: \"/.*\" }
                      direct_response: { status: 200, body: regex }
",
    );
    assert_eq!(
        label(t.find(b"h", b"/\xff", b"GET", &HeaderMap::default())),
        None
    );
    assert_eq!(
        label(t.find(b"h", b"/ok", b"GET", &HeaderMap::default())),
        Some("regex")
    );
}

fn hdr<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
    httparse::Header {
        name,
        value: value.as_bytes(),
    }
}

#[test]
fn header_matchers() {
    let t = routes_table(
        "                    - match:
                        prefix: /
                        headers: [{ name: X-Exact, exact: yes }]
                      direct_response: { status: 200, body: exact }
                    - match:
                        prefix: /
                        headers: [{ name: x-prefix, prefix: abc }]
                      direct_response: { status: 200, body: prefix }
                    - match:
                        prefix: /
                        headers: [{ name: x-regex, regex: \"[0-9]{3}\" }]
                      direct_response: { status: 200, body: regex }
                    - match:
                        prefix: /
                        headers: [{ name: x-present, present: true }]
                      direct_response: { status: 200, body: present }
                    - match:
                        prefix: /
                        headers:
                          - { name: x-not-gzip, exact: gzip, invert: true }
                          - { name: x-must, present: true }
                      direct_response: { status: 200, body: inverted_exact }
                    - match:
                        prefix: /
                        headers: [{ name: authorization, present: true, invert: true }]
                      direct_response: { status: 200, body: absent }
                    - match: { prefix: / }
                      direct_response: { status: 200, body: fallback }
",
    );
    let f = |headers: &[httparse::Header<'_>]| {
        let mut map = HeaderMap::default();
        for h in headers {
            map.append(h.name, h.value);
        }
        label(t.find(b"h", b"/", b"GET", &map))
    };
    let auth = hdr("authorization", "x");

    assert_eq!(f(&[hdr("x-exact", "yes"), auth]), Some("exact"));
    assert_eq!(f(&[hdr("X-EXACT", "yes"), auth]), Some("exact"));
    assert_eq!(f(&[hdr("x-exact", "Yes"), auth]), Some("fallback"));
    assert_eq!(f(&[hdr("x-exact", "yes!"), auth]), Some("fallback"));
    // the first header of that name is the one checked
    assert_eq!(
        f(&[hdr("x-exact", "no"), hdr("x-exact", "yes"), auth]),
        Some("fallback")
    );

    assert_eq!(f(&[hdr("x-prefix", "abcdef"), auth]), Some("prefix"));
    assert_eq!(f(&[hdr("x-prefix", "ab"), auth]), Some("fallback"));

    assert_eq!(f(&[hdr("x-regex", "123"), auth]), Some("regex"));
    assert_eq!(f(&[hdr("x-regex", "1234"), auth]), Some("fallback"));
    assert_eq!(f(&[hdr("x-regex", "a123"), auth]), Some("fallback"));

    assert_eq!(f(&[hdr("x-present", ""), auth]), Some("present"));

    // inverted exact: matches a different value and a missing header
    assert_eq!(
        f(&[hdr("x-not-gzip", "br"), hdr("x-must", "1"), auth]),
        Some("inverted_exact")
    );
    assert_eq!(f(&[hdr("x-must", "1"), auth]), Some("inverted_exact"));
    assert_eq!(
        f(&[hdr("x-not-gzip", "gzip"), hdr("x-must", "1"), auth]),
        Some("fallback")
    );

    // inverted present: matches only when the header is absent
    assert_eq!(f(&[]), Some("absent"));
    assert_eq!(f(&[auth]), Some("fallback"));
}

#[test]
fn methods() {
    let t = routes_table(
        "                    - match: { prefix: /, methods: [get, HEAD] }
                      direct_response: { status: 200, body: read }
                    - match: { prefix: /, methods: [POST] }
                      direct_response: { status: 200, body: write }
",
    );
    let f = |m: &[u8]| label(t.find(b"h", b"/", m, &HeaderMap::default()));
    assert_eq!(f(b"GET"), Some("read"));
    assert_eq!(f(b"HEAD"), Some("read"));
    assert_eq!(f(b"POST"), Some("write"));
    assert_eq!(f(b"post"), None);
    assert_eq!(f(b"DELETE"), None);
}

#[test]
fn first_matching_route_wins() {
    let t = routes_table(
        "                    - match: { prefix: / }
                      direct_response: { status: 200, body: first }
                    - match: { path: /specific }
                      direct_response: { status: 200, body: never }
",
    );
    assert_eq!(find(&t, "h", "/specific"), Some("first"));

    let t = routes_table(
        "                    - match: { path: /specific }
                      direct_response: { status: 200, body: specific }
                    - match: { prefix: /spec }
                      direct_response: { status: 200, body: spec }
                    - match: { prefix: / }
                      direct_response: { status: 200, body: rest }
",
    );
    assert_eq!(find(&t, "h", "/specific"), Some("specific"));
    assert_eq!(find(&t, "h", "/spectrum"), Some("spec"));
    assert_eq!(find(&t, "h", "/"), Some("rest"));
}

#[test]
fn forward_route_carries_cluster() {
    let t = routes_table(
        "                    - match: { prefix: / }
                      route: { cluster: c, prefix_rewrite: /x/ }
",
    );
    match t
        .find(b"h", b"/a", b"GET", &HeaderMap::default())
        .map(|r| &r.action)
    {
        Some(RouteAction::Forward(f)) => {
            assert_eq!(f.cluster, 0);
            assert_eq!(f.cluster_name, "c");
            assert_eq!(f.prefix_rewrite.as_deref(), Some("/x/"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn virtual_host_without_routes_is_a_404() {
    let t = table(
        "                - name: empty
                  domains: [\"*\"]
                  routes: []
",
    );
    assert_eq!(vh_name(&t, "x"), Some("empty"));
    assert!(t.find(b"x", b"/", b"GET", &HeaderMap::default()).is_none());
}
