use serde_json::json;

use super::*;
use crate::{
    registry::ConfigProblem,
    testing::{ctx, TestRuntime, TestVars},
    FilterState,
};

/// A config, one worker's factory, and helpers to push requests through it.
struct Rig {
    cfg: Arc<dyn FilterConfig>,
    factory: Rc<dyn FilterFactory>,
}

/// What the filter did with one request (and, when it went on, its response).
#[derive(Debug)]
enum Outcome {
    /// Answered locally.
    Reply(LocalReply),
    /// Went on; the response's headers after the filter.
    Passed(HeaderMap),
}

impl Rig {
    fn new(cfg: serde_json::Value) -> Rig {
        let cfg = parse(&cfg).unwrap();
        let factory = cfg.worker(WorkerInfo { id: 0, count: 1 });
        Rig { cfg, factory }
    }

    /// Send `method` with `headers`; the upstream answers with `upstream` headers.
    fn send(&self, method: &str, headers: &[(&str, &str)], upstream: &[(&str, &str)]) -> Outcome {
        let mut req = RequestHead::new(method.as_bytes(), "https", b"api.example", b"/x");
        for (n, v) in headers {
            req.headers.append(n, v);
        }
        let rt = TestRuntime::default();
        let vars = TestVars::default();
        let mut state = FilterState::default();
        let mut f = self.factory.create();
        let st = f.on_request_headers(&mut req, true, &mut ctx(&rt, &vars, &mut state, None));
        match st {
            HeadersStatus::LocalReply(r) => return Outcome::Reply(r),
            HeadersStatus::Continue => {}
            other => panic!("unexpected {other:?}"),
        }
        let mut resp = ResponseHead {
            status: 200,
            ..Default::default()
        };
        for (n, v) in upstream {
            resp.headers.append(n, v);
        }
        let st = f.on_response_headers(
            &mut resp,
            false,
            &mut ctx(&rt, &vars, &mut state, Some(&req)),
        );
        assert!(matches!(st, HeadersStatus::Continue));
        Outcome::Passed(resp.headers)
    }

    fn get(&self, origin: &str) -> HeaderMap {
        match self.send("GET", &[("origin", origin)], &[]) {
            Outcome::Passed(h) => h,
            Outcome::Reply(r) => panic!("GET answered locally: {r:?}"),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.get(origin).get("access-control-allow-origin") == Some(origin)
    }

    fn stat(&self, name: &str) -> u64 {
        self.cfg
            .stats()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap()
    }
}

fn list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn brief_config() -> serde_json::Value {
    json!({
        "allow_origin_string_match": [
            {"exact": "https://a.example"},
            {"suffix": ".example.com"}
        ],
        "allow_methods": "GET, POST, PUT",
        "allow_headers": "content-type, x-token",
        "expose_headers": "x-request-id",
        "max_age": "86400",
        "allow_credentials": true,
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    })
}

const PREFLIGHT: &[(&str, &str)] = &[
    ("origin", "https://a.example"),
    ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "x-token"),
];

#[test]
fn allowed_preflight_is_answered_here() {
    let rig = Rig::new(brief_config());
    assert_eq!(rig.factory.hooks(), Hooks::HEADERS);
    let Outcome::Reply(r) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("preflight went upstream");
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, None, "a preflight answer is not an error");
    assert!(r.body.is_empty());
    assert_eq!(
        list(&r.headers),
        pairs(&[
            ("access-control-allow-origin", "https://a.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, POST, PUT"),
            ("access-control-allow-headers", "content-type, x-token"),
            ("access-control-max-age", "86400"),
            ("vary", "origin"),
        ])
    );
    assert_eq!(rig.stat("cors.origin_valid"), 1);
    assert_eq!(rig.stat("cors.origin_invalid"), 0);
}

#[test]
fn denied_preflight_goes_upstream_untouched() {
    let rig = Rig::new(brief_config());
    let headers = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "PUT"),
    ];
    let Outcome::Passed(h) = rig.send("OPTIONS", &headers, &[("allow", "GET")]) else {
        panic!("denied preflight answered locally");
    };
    assert_eq!(list(&h), pairs(&[("allow", "GET")]));
    assert_eq!(rig.stat("cors.origin_invalid"), 1);
    assert_eq!(rig.stat("cors.origin_valid"), 0);
}

#[test]
fn denied_preflight_answered_when_not_forwarded() {
    let mut cfg = brief_config();
    cfg["forward_not_matching_preflights"] = json!(false);
    let rig = Rig::new(cfg);
    let headers = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "PUT"),
    ];
    let Outcome::Reply(r) = rig.send("OPTIONS", &headers, &[]) else {
        panic!("expected a local answer");
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("access-control-allow-origin"), None);
    assert_eq!(r.headers.get("vary"), None);
    assert_eq!(
        r.headers.get("access-control-allow-methods"),
        Some("GET, POST, PUT")
    );
}

#[test]
fn actual_request_gets_cors_headers() {
    let rig = Rig::new(brief_config());
    let Outcome::Passed(h) = rig.send(
        "POST",
        &[("origin", "https://x.example.com")],
        &[
            ("access-control-allow-origin", "*"),
            ("vary", "Accept-Encoding"),
        ],
    ) else {
        panic!("answered locally");
    };
    assert_eq!(
        list(&h),
        pairs(&[
            ("vary", "Accept-Encoding"),
            ("access-control-allow-origin", "https://x.example.com"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "x-request-id"),
            ("vary", "origin"),
        ])
    );
    assert_eq!(rig.stat("cors.origin_valid"), 1);
}

#[test]
fn options_without_requested_method_is_an_actual_request() {
    let rig = Rig::new(brief_config());
    let Outcome::Passed(h) = rig.send("OPTIONS", &[("origin", "https://a.example")], &[]) else {
        panic!("not a preflight: must go upstream");
    };
    assert_eq!(
        h.get("access-control-allow-origin"),
        Some("https://a.example")
    );
    // A preflight-looking GET is an actual request too.
    let Outcome::Passed(_) = rig.send("GET", PREFLIGHT, &[]) else {
        panic!("GET is never a preflight");
    };
}

#[test]
fn disallowed_or_missing_origin_adds_nothing() {
    let rig = Rig::new(brief_config());
    let h = rig.get("https://b.example");
    assert!(h.is_empty(), "{:?}", list(&h));
    assert_eq!(rig.stat("cors.origin_invalid"), 1);

    for headers in [&[][..], &[("origin", "")][..]] {
        let Outcome::Passed(h) = rig.send("OPTIONS", headers, &[("x-up", "1")]) else {
            panic!("no origin: nothing to answer");
        };
        assert_eq!(list(&h), pairs(&[("x-up", "1")]));
    }
    assert_eq!(rig.stat("cors.origin_invalid"), 1, "no origin: not counted");
    assert_eq!(rig.stat("cors.origin_valid"), 0);
}

#[test]
fn credentials_and_optional_headers_only_when_configured() {
    let rig = Rig::new(json!({"allow_origin_string_match": [{"exact": "https://a.example"}]}));
    assert_eq!(
        list(&rig.get("https://a.example")),
        pairs(&[
            ("access-control-allow-origin", "https://a.example"),
            ("vary", "origin"),
        ])
    );
    let Outcome::Reply(r) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(
        list(&r.headers),
        pairs(&[
            ("access-control-allow-origin", "https://a.example"),
            ("vary", "origin"),
        ])
    );
}

#[test]
fn every_matcher_kind() {
    let rig = Rig::new(json!({"allow_origin_string_match": [
        {"exact": "https://exact.example"},
        {"prefix": "http://localhost:"},
        {"suffix": ".suffix.example"},
        {"contains": "-contains-"},
        {"safe_regex": {"google_re2": {}, "regex": "https://[a-z]+\\.b\\.com"}}
    ]}));
    for ok in [
        "https://exact.example",
        "http://localhost:3000",
        "https://app.suffix.example",
        "https://x-contains-y.example",
        "https://shop.b.com",
    ] {
        assert!(rig.allows(ok), "{ok} should be allowed");
    }
    for no in [
        "https://exact.example.evil",
        "https://EXACT.example",
        "http://LOCALHOST:3000",
        "https://suffix.example.evil",
        "https://app.SUFFIX.example",
        "https://x-CONTAINS-y.example",
        // The regex must match the whole origin.
        "https://shop.b.com.evil",
        "evil-https://shop.b.com",
        "https://sh0p.b.com",
    ] {
        assert!(!rig.allows(no), "{no} should be refused");
    }
}

#[test]
fn ignore_case() {
    let rig = Rig::new(json!({"allow_origin_string_match": [
        {"exact": "https://Exact.example", "ignore_case": true},
        {"prefix": "HTTP://LOCALHOST:", "ignore_case": true},
        {"suffix": ".Suffix.Example", "ignore_case": true},
        {"contains": "-CONTAINS-", "ignore_case": true}
    ]}));
    for ok in [
        "https://EXACT.example",
        "http://localhost:8080",
        "https://a.suffix.example",
        "https://x-contains-y",
    ] {
        assert!(rig.allows(ok), "{ok} should be allowed");
    }
    assert!(!rig.allows("https://exact.example.x"));
    assert!(!rig.allows("https://a.suffix.example.x"));
}

#[test]
fn a_matcher_matching_star_allows_every_origin() {
    let rig = Rig::new(json!({"allow_origin_string_match": [{"exact": "*"}],
                              "allow_credentials": true}));
    let h = rig.get("https://anyone.example");
    assert_eq!(
        h.get("access-control-allow-origin"),
        Some("https://anyone.example"),
        "the origin is echoed, never `*`"
    );
    let rig = Rig::new(json!({"allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}]}));
    assert!(rig.allows("https://x.example"));
}

#[test]
fn star_lists_echo_the_request() {
    let rig = Rig::new(
        json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                              "allow_methods": "*", "allow_headers": "*"}),
    );
    let Outcome::Reply(r) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(r.headers.get("access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        r.headers.get("access-control-allow-headers"),
        Some("x-token")
    );

    let Outcome::Reply(r) = rig.send("OPTIONS", &PREFLIGHT[..2], &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(
        r.headers.get("access-control-allow-headers"),
        None,
        "no headers asked: none echoed"
    );
}

#[test]
fn private_network_access() {
    let mut headers = PREFLIGHT.to_vec();
    headers.push(("access-control-request-private-network", "true"));
    let origins = json!([{"exact": "https://a.example"}]);

    let rig = Rig::new(json!({"allow_origin_string_match": origins,
                              "allow_private_network_access": true}));
    let Outcome::Reply(r) = rig.send("OPTIONS", &headers, &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(
        r.headers.get("access-control-allow-private-network"),
        Some("true")
    );
    let Outcome::Reply(r) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(r.headers.get("access-control-allow-private-network"), None);

    let rig = Rig::new(json!({"allow_origin_string_match": origins}));
    let Outcome::Reply(r) = rig.send("OPTIONS", &headers, &[]) else {
        panic!("expected a preflight answer");
    };
    assert_eq!(r.headers.get("access-control-allow-private-network"), None);
}

#[test]
fn vary_is_not_repeated() {
    let rig = Rig::new(json!({"allow_origin_string_match": [{"prefix": "https://"}]}));
    for (upstream, want) in [
        ("Accept-Encoding, Origin", "Accept-Encoding, Origin"),
        ("*", "*"),
        ("accept-encoding,origin", "accept-encoding,origin"),
    ] {
        let Outcome::Passed(h) = rig.send("GET", &[("origin", "https://a")], &[("vary", upstream)])
        else {
            panic!("answered locally");
        };
        let vary: Vec<_> = h.get_all("vary").collect();
        assert_eq!(vary, vec![want.as_bytes()], "upstream vary {upstream:?}");
    }
    let Outcome::Passed(h) = rig.send(
        "GET",
        &[("origin", "https://a")],
        &[("vary", "origin-agent")],
    ) else {
        panic!("answered locally");
    };
    let vary: Vec<_> = h.get_all("vary").collect();
    assert_eq!(vary, vec![&b"origin-agent"[..], b"origin"]);
}

#[test]
fn disabled_filter_does_nothing() {
    let mut cfg = brief_config();
    cfg["filter_enabled"] = json!({"default_value": {"numerator": 0}});
    let rig = Rig::new(cfg);
    assert_eq!(
        rig.factory.hooks(),
        Hooks::default(),
        "never enabled: no hook at all"
    );
    // Even if called, it stays out of the way.
    let Outcome::Passed(h) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("disabled filter answered a preflight");
    };
    assert!(h.is_empty());
    assert!(rig.get("https://a.example").is_empty());
    assert_eq!(rig.stat("cors.origin_valid"), 0);
}

#[test]
fn shadow_mode_counts_without_acting() {
    let mut cfg = brief_config();
    cfg["filter_enabled"] = json!({"default_value": {"numerator": 0}});
    cfg["shadow_enabled"] = json!({"default_value": {"numerator": 100}});
    let rig = Rig::new(cfg);
    assert_eq!(rig.factory.hooks(), Hooks::HEADERS);
    let Outcome::Passed(h) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
        panic!("shadow mode answered a preflight");
    };
    assert!(h.is_empty());
    assert!(rig.get("https://b.example").is_empty());
    assert_eq!(rig.stat("cors.origin_valid"), 1);
    assert_eq!(rig.stat("cors.origin_invalid"), 1);
}

#[test]
fn partial_share_is_drawn_per_request() {
    for (denominator, numerator) in [
        ("HUNDRED", 30),
        ("TEN_THOUSAND", 3000),
        ("MILLION", 300_000),
    ] {
        let rig = Rig::new(json!({
            "allow_origin_string_match": [{"exact": "https://a.example"}],
            "filter_enabled": {"default_value": {"numerator": numerator, "denominator": denominator}}
        }));
        let n = 4000;
        let hits = (0..n).filter(|_| rig.allows("https://a.example")).count();
        // 30% of 4000 = 1200; six standard deviations (about 29 each) either side.
        assert!((1030..1370).contains(&hits), "{denominator}: {hits} of {n}");
        assert_eq!(rig.stat("cors.origin_valid"), hits as u64);
    }
    // A numerator above the denominator counts as all.
    let rig = Rig::new(json!({
        "allow_origin_string_match": [{"exact": "https://a.example"}],
        "filter_enabled": {"default_value": {"numerator": 500}}
    }));
    assert!((0..200).all(|_| rig.allows("https://a.example")));
}

#[test]
fn stats_sum_over_workers() {
    let rig = Rig::new(brief_config());
    let other = rig.cfg.worker(WorkerInfo { id: 1, count: 2 });
    rig.get("https://a.example");
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    let mut req = RequestHead::new(b"GET", "https", b"h", b"/");
    req.headers.append("origin", "https://a.example");
    let mut f = other.create();
    f.on_request_headers(&mut req, true, &mut ctx(&rt, &vars, &mut state, None));
    assert_eq!(rig.stat("cors.origin_valid"), 2);
}

fn problems(cfg: serde_json::Value) -> Vec<ConfigProblem> {
    parse(&cfg).unwrap_err()
}

fn has_problem(ps: &[ConfigProblem], path: &str, needle: &str) -> bool {
    let want = ConfigProblem::at(path, "").path;
    ps.iter()
        .any(|p| p.path == want && p.message.contains(needle))
}

#[test]
fn config_errors_have_paths() {
    let ps = problems(json!({
        "allow_origin_string_match": [
            {"exact": "https://ok.example"},
            {"exact": "a", "prefix": "b"},
            {"prefix": ""},
            {"safe_regex": {"regex": "(unclosed"}},
            {"safe_regex": {"regex": "a)|(b"}},
            {},
            {"contains": "", "ignore_case": true}
        ],
        "allow_headers": "a\r\nb",
        "max_age": "1d",
        "filter_enabled": {"default_value": {"numerator": 1}, "runtime_key": "cors.on"}
    }));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.1",
        "exactly one"
    ));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.2.prefix",
        "may not be empty"
    ));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.3.safe_regex.regex",
        "invalid regex"
    ));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.4.safe_regex.regex",
        "invalid regex"
    ));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.5",
        "exactly one"
    ));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.6.contains",
        "may not be empty"
    ));
    assert!(has_problem(&ps, "allow_headers", "CR, LF"));
    assert!(has_problem(&ps, "max_age", "whole seconds"));
    assert!(has_problem(&ps, "filter_enabled.runtime_key", "no runtime"));
    assert_eq!(ps.len(), 9, "{ps:?}");

    let ps = problems(json!({"filter_enabled": {"default_value": {"denominator": "THOUSAND"}}}));
    assert!(has_problem(
        &ps,
        "filter_enabled.default_value.denominator",
        "unknown variant"
    ));
    let ps = problems(json!({"allow_origin_string_match": [{"regex": "x"}]}));
    assert!(has_problem(
        &ps,
        "allow_origin_string_match.0.regex",
        "unknown key"
    ));
    let ps = problems(json!({"allow_origin": ["*"]}));
    assert!(has_problem(&ps, "allow_origin", "unknown key"));
    let ps = problems(json!({"max_age": -5}));
    assert!(has_problem(&ps, "max_age", "expected seconds"));
    let ps = problems(json!({"shadow_enabled": {}}));
    assert!(has_problem(&ps, "shadow_enabled", "default_value"));
}

#[test]
fn max_age_forms() {
    for (v, want) in [
        (json!("600"), Some("600")),
        (json!(" 600 "), Some("600")),
        (json!(600), Some("600")),
        (json!(""), None),
    ] {
        let rig = Rig::new(
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                                  "max_age": v}),
        );
        let Outcome::Reply(r) = rig.send("OPTIONS", PREFLIGHT, &[]) else {
            panic!("expected a preflight answer");
        };
        assert_eq!(r.headers.get("access-control-max-age"), want, "{v}");
    }
}

#[test]
fn registered_under_both_names() {
    let cfg = json!({"allow_origin_string_match": [{"exact": "https://a.example"}]});
    let a = crate::registry::parse("cors", &cfg).unwrap();
    let b = crate::registry::parse("envoy.filters.http.cors", &cfg).unwrap();
    assert_eq!(a.name(), "cors");
    assert_eq!(b.name(), "cors");
    let names: Vec<_> = a.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["cors.origin_valid", "cors.origin_invalid"]);
}
