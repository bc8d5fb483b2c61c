//! Route matching rules that Envoy configs use as idioms: `prefix: ""` (every path).

use super::{assert_error, ok, with_match, R0};
use crate::config::{PathMatch, RouteAction};

#[test]
fn empty_prefix_matches_every_path() {
    for text in [r#"{ prefix: "" }"#, "{ prefix: '' }"] {
        let c = ok(&with_match(text));
        let route = &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0];
        assert!(
            matches!(&route.matcher.path, PathMatch::Prefix(p) if p.is_empty()),
            "{text}: {:?}",
            route.matcher.path
        );
        assert_eq!(
            &*route.http_route, "*",
            "tracing names it by what it matches"
        );
    }
    // With a rewrite: the (empty) matched prefix is replaced, so the rewrite is prepended.
    let c = ok(&with_match(r#"{ prefix: "" }"#).replace(
        "route: { cluster: origin }",
        "route: { cluster: origin, prefix_rewrite: /api }",
    ));
    let RouteAction::Forward(f) =
        &c.listeners[0].http().expect("http listener").virtual_hosts[0].routes[0].action
    else {
        panic!("not forward");
    };
    assert_eq!(f.prefix_rewrite.as_deref(), Some("/api"));
}

#[test]
fn other_bad_prefixes_keep_their_errors() {
    for (bad, shown) in [
        ("api/", r#""api/""#),
        (r#"" ""#, r#"" ""#),
        (r#""/a b""#, r#""/a b""#),
        (r#""no-slash""#, r#""no-slash""#),
    ] {
        assert_error(
            &with_match(&format!("{{ prefix: {bad} }}")),
            &format!(
                "{R0}.match.prefix: invalid path {shown}: must start with '/' and be printable ASCII without spaces (line 11)"
            ),
        );
    }
    // An empty `path` (exact) is still refused: no request has an empty path.
    assert_error(
        &with_match(r#"{ path: "" }"#),
        &format!(
            r#"{R0}.match.path: invalid path "": must start with '/' and be printable ASCII without spaces (line 11)"#
        ),
    );
}
