//! Listener, connection manager, domain and route rules: each asserts the exact path, message
//! and line of the error (fixtures edit one line of `BASE`, so the lines are BASE's).

use std::time::Duration;

use super::{
    assert_error, assert_errors, edit, errors, ok, two_listeners, with_action, with_match, BASE,
    HCM, R0,
};
use crate::config::{HeaderMatchKind, PathMatch, RouteAction};

// ---- listeners ------------------------------------------------------------------------------

#[test]
fn listener_address_must_be_ip_and_port() {
    assert_error(
        &edit("address: 127.0.0.1:10000", "address: localhost:10000"),
        r#"listeners[0].address: invalid address "localhost:10000": expected IP:port; host names such as "localhost" are not resolved (use 127.0.0.1 or [::1] for localhost) (line 3)"#,
    );
    assert_error(
        &edit("address: 127.0.0.1:10000", "address: 127.0.0.1"),
        r#"listeners[0].address: invalid address "127.0.0.1": expected IP:port, e.g. "127.0.0.1:8080" (line 3)"#,
    );
    assert_error(
        &edit("address: 127.0.0.1:10000", "address: 127.0.0.1:70000"),
        r#"listeners[0].address: invalid address "127.0.0.1:70000" (line 3)"#,
    );
    let c = ok(&edit(
        "address: 127.0.0.1:10000",
        r#"address: "[::1]:8080""#,
    ));
    assert_eq!(c.listeners[0].address.to_string(), "[::1]:8080");
    // port 0 (kernel-chosen) is fine for listeners: tests use it
    assert_eq!(
        ok(&edit("127.0.0.1:10000", "127.0.0.1:0")).listeners[0]
            .address
            .port(),
        0
    );
}

#[test]
fn listener_names_and_addresses_are_unique() {
    assert_error(
        &two_listeners("main", "127.0.0.1:10001"),
        "listeners[1].name: duplicate listener name \"main\" (first defined at listeners[0]) (line 13)",
    );
    assert_error(
        &two_listeners("second", "127.0.0.1:10000"),
        "listeners[1].address: duplicate listener address 127.0.0.1:10000 (also used by listeners[0]) (line 14)",
    );
    let c = ok(&two_listeners("second", "127.0.0.1:10001"));
    assert_eq!(c.listeners.len(), 2);
    let c = ok(&two_listeners("second", "127.0.0.1:0").replace("127.0.0.1:10000", "127.0.0.1:0"));
    assert_eq!(c.listeners.len(), 2);
}

#[test]
fn listeners_are_required_and_backlog_positive() {
    assert_error(
        "listeners: []\n",
        "listeners: at least one listener is required (line 1)",
    );
    assert_error(
        &edit(
            "    address: 127.0.0.1:10000\n",
            "    address: 127.0.0.1:10000\n    backlog: 0\n",
        ),
        "listeners[0].backlog: backlog must be at least 1 (line 4)",
    );
}

#[test]
fn filter_chains_each_with_one_terminal_filter() {
    assert_errors(
        &edit(
            "    filter_chains:\n      - filters:\n",
            "    filter_chains:\n      - filters: []\n      - filters:\n",
        ),
        &[
            "listeners[0].filter_chains[0].filters: exactly one filter (`http_connection_manager` or `tcp_proxy`) is supported for now (found 0) (line 5)",
            "listeners[0].filter_chains[1].filter_chain_match: filter_chain_match (empty) is the same as listeners[0].filter_chains[0]'s: a connection could not tell them apart (line 6)",
        ],
    );
    // Both terminal filters in one chain: one error, at the second, naming both.
    assert_errors(
        &edit("      - filters:\n          - http_connection_manager:\n", "      - filters:\n          - tcp_proxy: { cluster: origin }\n          - http_connection_manager:\n"),
        &[
            "listeners[0].filter_chains[0].filters[1].http_connection_manager: `http_connection_manager` and `tcp_proxy` cannot share a filter chain: each is a terminal filter that owns the connection (give each its own filter chain or listener) (line 7)",
        ],
    );
    // Two connection managers: the count.
    assert_errors(
        &edit("      - filters:\n          - http_connection_manager:\n", "      - filters:\n          - http_connection_manager: { virtual_hosts: [{ name: a, domains: [a], routes: [] }] }\n          - http_connection_manager:\n"),
        &[
            "listeners[0].filter_chains[0].filters: exactly one filter (`http_connection_manager` or `tcp_proxy`) is supported for now (found 2) (line 6)",
        ],
    );
    let text = "listeners:
  - name: tcp
    address: 127.0.0.1:10000
    filter_chains:
      - filters:
          - mongo_proxy: { cluster: origin }
";
    assert_error(
        text,
        "listeners[0].filter_chains[0].filters[0].mongo_proxy: filter `mongo_proxy` is not supported yet (only `http_connection_manager` and `tcp_proxy` are) (line 6)",
    );
    let text = "listeners:
  - name: none
    address: 127.0.0.1:10000
    filter_chains: []
";
    assert_error(
        text,
        "listeners[0].filter_chains: a listener needs at least one filter chain (or a `default_filter_chain`) (line 4)",
    );
    let text = "listeners:
  - name: two-keys
    address: 127.0.0.1:10000
    filter_chains:
      - filters:
          - { http_connection_manager: { virtual_hosts: [] }, tcp_proxy: {} }
";
    let e = errors(text);
    assert!(
        e.contains(&"listeners[0].filter_chains[0].filters[0]: a filter is a map with exactly one key, the filter name; list each filter as its own item (line 6)".to_owned()),
        "{e:?}"
    );
}

// ---- connection manager ---------------------------------------------------------------------

/// BASE with `line` inserted at the top of the connection manager (line 7).
fn hcm_with(line: &str) -> String {
    edit(
        "              virtual_hosts:\n",
        &format!("              {line}\n              virtual_hosts:\n"),
    )
}

#[test]
fn max_request_headers_kb_is_1_to_96() {
    for bad in ["0", "97"] {
        assert_error(
            &hcm_with(&format!("max_request_headers_kb: {bad}")),
            &format!("{HCM}.max_request_headers_kb: max_request_headers_kb must be 1..=96 (found {bad}) (line 7)"),
        );
    }
    let c = ok(&hcm_with("max_request_headers_kb: 1"));
    assert_eq!(
        c.listeners[0]
            .http()
            .expect("http listener")
            .max_request_headers_bytes,
        1024
    );
    assert_eq!(
        c.listeners[0].http().expect("http listener").max_uri_bytes,
        1024
    );
    let c = ok(&hcm_with("max_request_headers_kb: 96"));
    assert_eq!(
        c.listeners[0]
            .http()
            .expect("http listener")
            .max_request_headers_bytes,
        96 * 1024
    );
    assert_eq!(
        c.listeners[0].http().expect("http listener").max_uri_bytes,
        8 * 1024
    );
}

#[test]
fn connection_manager_timeouts_must_be_positive() {
    for key in [
        "request_headers_timeout",
        "idle_timeout",
        "request_body_timeout",
    ] {
        assert_error(
            &hcm_with(&format!("{key}: 0s")),
            &format!("{HCM}.{key}: {key} must be more than zero (line 7)"),
        );
    }
    let c = ok(&hcm_with("idle_timeout: 300s"));
    assert_eq!(
        c.listeners[0].http().expect("http listener").idle_timeout,
        Duration::from_secs(300)
    );
}

#[test]
fn virtual_hosts_required_and_names_unique() {
    assert_error(
        &edit(
            "              virtual_hosts:\n                - name: default\n                  domains: [\"*\"]\n                  routes:\n                    - match: { prefix: / }\n                      route: { cluster: origin }\n",
            "              virtual_hosts: []\n",
        ),
        &format!("{HCM}.virtual_hosts: at least one virtual host is required (line 7)"),
    );
    let text = edit(
        "                - name: default\n",
        "                - { name: default, domains: [a.com], routes: [] }\n                - name: default\n",
    );
    assert_error(
        &text,
        &format!("{HCM}.virtual_hosts[1].name: duplicate virtual host name \"default\" (first defined at {HCM}.virtual_hosts[0]) (line 9)"),
    );
}

// ---- domains --------------------------------------------------------------------------------

fn with_domains(domains: &str) -> String {
    edit(r#"domains: ["*"]"#, &format!("domains: {domains}"))
}

#[test]
fn domain_forms() {
    let c = ok(&with_domains(
        r#"["A.com", "*.B.com", "www.*", "*", "[::1]", "10.0.0.1", "x_y-z.a"]"#,
    ));
    assert_eq!(
        c.listeners[0].http().expect("http listener").virtual_hosts[0].domains,
        ["a.com", "*.b.com", "www.*", "*", "[::1]", "10.0.0.1", "x_y-z.a"]
    );
    for (bad, why) in [
        (
            "*a.com",
            r#"a wildcard is only allowed as "*", "*.suffix" or "prefix.*""#,
        ),
        (
            "a.*.com",
            r#"a wildcard is only allowed as "*", "*.suffix" or "prefix.*""#,
        ),
        (
            "*.a.*",
            r#"a wildcard is only allowed as "*", "*.suffix" or "prefix.*""#,
        ),
        (
            "*.",
            r#"a wildcard is only allowed as "*", "*.suffix" or "prefix.*""#,
        ),
        (
            "**",
            r#"a wildcard is only allowed as "*", "*.suffix" or "prefix.*""#,
        ),
        (
            "a.com:8080",
            "remove the port (hosts are matched without it)",
        ),
        ("[::1]:80", r#"expected an IPv6 literal like "[::1]""#),
    ] {
        assert_error(
            &with_domains(&format!("[\"{bad}\"]")),
            &format!(
                r#"{HCM}.virtual_hosts[0].domains[0]: invalid domain "{bad}": {why} (line 9)"#
            ),
        );
    }
    assert_error(
        &with_domains(r#"["a b"]"#),
        &format!(r#"{HCM}.virtual_hosts[0].domains[0]: invalid domain "a b" (line 9)"#),
    );
    assert_error(
        &with_domains("[]"),
        &format!(
            "{HCM}.virtual_hosts[0].domains: a virtual host needs at least one domain (line 9)"
        ),
    );
}

#[test]
fn domains_are_unique_across_virtual_hosts() {
    let text = edit(
        "                - name: default\n",
        "                - { name: first, domains: [a.com, \"*\"], routes: [] }\n                - name: default\n",
    );
    assert_error(
        &text,
        &format!(
            r#"{HCM}.virtual_hosts[1].domains[0]: duplicate domain "*" (also in virtual host "first") (line 10)"#
        ),
    );
    assert_error(
        &with_domains(r#"["A.com", "a.COM"]"#),
        &format!(
            r#"{HCM}.virtual_hosts[0].domains[1]: duplicate domain "a.com" (also in virtual host "default") (line 9)"#
        ),
    );
}

// ---- routes ---------------------------------------------------------------------------------

#[test]
fn exactly_one_path_matcher() {
    assert_error(
        &with_match("{ }"),
        &format!(
            "{R0}.match: a match needs exactly one of path, prefix, regex (found none) (line 11)"
        ),
    );
    assert_error(
        &with_match("{ path: /a, regex: /b }"),
        &format!("{R0}.match: a match needs exactly one of path, prefix, regex (found path and regex) (line 11)"),
    );
    assert_error(
        &with_match("{ prefix: api/ }"),
        &format!(
            r#"{R0}.match.prefix: invalid path "api/": must start with '/' and be printable ASCII without spaces (line 11)"#
        ),
    );
    let c = ok(&with_match("{ path: /exact }"));
    assert!(
        matches!(&c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].matcher.path, PathMatch::Exact(p) if p == "/exact")
    );
}

#[test]
fn regexes_compile_anchored() {
    assert_error(
        &with_match(r#"{ regex: "/a[" }"#),
        &format!(r#"{R0}.match.regex: invalid regex "/a[": unclosed character class (line 11)"#),
    );
    // `a|b` anchored as a whole, not as `^a|b$`
    let c = ok(&with_match(r#"{ regex: "/a|/b" }"#));
    let PathMatch::Regex(re) = &c.listeners[0].http().expect("http listener").virtual_hosts[0]
        .routes[0]
        .matcher
        .path
    else {
        panic!("not a regex");
    };
    assert!(re.is_match("/a") && re.is_match("/b"));
    assert!(!re.is_match("/ab") && !re.is_match("x/b") && !re.is_match("/a/"));
}

#[test]
fn header_matchers_need_one_kind() {
    let m = |h: &str| with_match(&format!("{{ prefix: /, headers: [{h}] }}"));
    assert_error(
        &m("{ name: x-a }"),
        &format!("{R0}.match.headers[0]: a header matcher needs exactly one of exact, prefix, regex, present (found none) (line 11)"),
    );
    assert_error(
        &m("{ name: x-a, exact: a, regex: b }"),
        &format!("{R0}.match.headers[0]: a header matcher needs exactly one of exact, prefix, regex, present (found exact and regex) (line 11)"),
    );
    assert_error(
        &m("{ name: x-a, present: false }"),
        &format!("{R0}.match.headers[0].present: present must be true (to match a missing header, use present: true with invert: true) (line 11)"),
    );
    assert_error(
        &m("{ name: \"x a\", present: true }"),
        &format!(r#"{R0}.match.headers[0].name: invalid header name "x a" (line 11)"#),
    );
    assert_error(
        &m(r#"{ name: x-a, regex: "(" }"#),
        &format!(r#"{R0}.match.headers[0].regex: invalid regex "(": unclosed group (line 11)"#),
    );
    let c = ok(&m("{ name: X-Canary, exact: \"1\", invert: true }"));
    let h = &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0]
        .matcher
        .headers[0];
    assert_eq!(h.name, "x-canary");
    assert!(h.invert);
    assert!(matches!(&h.kind, HeaderMatchKind::Exact(v) if v == "1"));
}

#[test]
fn methods_are_tokens_upper_cased() {
    let c = ok(&with_match("{ prefix: /, methods: [get, POST] }"));
    assert_eq!(
        c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0]
            .matcher
            .methods,
        ["GET", "POST"]
    );
    assert_error(
        &with_match(r#"{ prefix: /, methods: [GET, "G T"] }"#),
        &format!(r#"{R0}.match.methods[1]: invalid method "G T" (line 11)"#),
    );
}

#[test]
fn exactly_one_route_action() {
    assert_error(
        &with_action("redirect: { path_redirect: / }\n                      route: { cluster: origin }"),
        &format!("{R0}: a route needs exactly one of route, direct_response, redirect (found route and redirect) (line 11)"),
    );
    let text = BASE.replace("                      route: { cluster: origin }\n", "");
    assert_error(
        &text,
        &format!("{R0}: a route needs exactly one of route, direct_response, redirect (found none) (line 11)"),
    );
}

#[test]
fn route_cluster_must_exist() {
    assert_error(
        &with_action("route: { cluster: origni }"),
        &format!(
            r#"{R0}.route.cluster: unknown cluster "origni" (not defined under clusters), did you mean "origin"? (line 12)"#
        ),
    );
}

#[test]
fn route_timeout_rewrites_and_defaults() {
    let c = ok(BASE);
    let RouteAction::Forward(f) =
        &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action
    else {
        panic!("not forward");
    };
    assert_eq!(f.timeout, Some(Duration::from_secs(15)));
    assert_eq!((f.cluster, f.cluster_name.as_str()), (0, "origin"));
    assert_eq!(
        (f.prefix_rewrite.as_deref(), f.host_rewrite.as_deref()),
        (None, None)
    );

    let c = ok(&with_action(
        "route: { cluster: origin, timeout: 0s, prefix_rewrite: /v2/, host_rewrite: up.internal }",
    ));
    let RouteAction::Forward(f) =
        &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action
    else {
        panic!("not forward");
    };
    assert_eq!(f.timeout, None);
    assert_eq!(f.prefix_rewrite.as_deref(), Some("/v2/"));
    assert_eq!(f.host_rewrite.as_deref(), Some("up.internal"));

    assert_errors(
        &with_action(r#"route: { cluster: origin, prefix_rewrite: "x y", host_rewrite: "a/b" }"#),
        &[
            &format!(
                r#"{R0}.route.prefix_rewrite: invalid path "x y": must start with '/' and be printable ASCII without spaces (line 12)"#
            ),
            &format!(
                r#"{R0}.route.host_rewrite: invalid host "a/b": expected a host name, optionally with :port (line 12)"#
            ),
        ],
    );
}

#[test]
fn direct_response_status_200_to_599() {
    for bad in [199, 600] {
        assert_error(
            &with_action(&format!("direct_response: {{ status: {bad} }}")),
            &format!(
                "{R0}.direct_response.status: invalid status {bad}: expected 200..=599 (line 12)"
            ),
        );
    }
    for good in [200u16, 599] {
        let c = ok(&with_action(&format!(
            "direct_response: {{ status: {good} }}"
        )));
        match &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action {
            RouteAction::DirectResponse { status, body } => {
                assert_eq!(*status, good);
                assert!(body.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_error(
        &with_action("direct_response: { status: 70000 }"),
        &format!("{R0}.direct_response.status: invalid value: integer `70000`, expected an integer from 0 to 65535 (line 12)"),
    );
}

#[test]
fn redirect_codes_and_defaults() {
    for code in [301u16, 302, 303, 307, 308] {
        let c = ok(&with_action(&format!(
            "redirect: {{ https_redirect: true, response_code: {code} }}"
        )));
        match &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action {
            RouteAction::Redirect(r) => assert_eq!(r.response_code, code),
            other => panic!("{other:?}"),
        }
    }
    for bad in [300, 304, 200] {
        assert_error(
            &with_action(&format!("redirect: {{ https_redirect: true, response_code: {bad} }}")),
            &format!("{R0}.redirect.response_code: invalid response_code {bad}: expected 301, 302, 303, 307 or 308 (line 12)"),
        );
    }
    let c = ok(&with_action("redirect: { host_redirect: www.example.com }"));
    match &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action {
        RouteAction::Redirect(r) => {
            assert_eq!(r.response_code, 301);
            assert!(!r.https_redirect);
            assert_eq!(r.host_redirect.as_deref(), Some("www.example.com"));
            assert_eq!(r.path_redirect, None);
        }
        other => panic!("{other:?}"),
    }
    assert_error(
        &with_action("redirect: { response_code: 302 }"),
        &format!("{R0}.redirect: a redirect must change something: set https_redirect, host_redirect or path_redirect (line 12)"),
    );
}
