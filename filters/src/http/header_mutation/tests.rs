use std::{net::SocketAddr, time::Instant};

use serde_json::json;

use super::*;
use crate::{
    filter::Vars,
    registry::ConfigProblem,
    testing::{TestRuntime, TestVars},
    FilterState, WorkerInfo,
};

/// Vars answering what the engine's Vars answer (not `REQ`/`RESP`: those come from the heads).
struct RespVars;

impl Vars for RespVars {
    fn write(&self, name: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool {
        match (name, arg) {
            ("RESPONSE_CODE", None) => out.extend_from_slice(b"503"),
            ("DOWNSTREAM_REMOTE_ADDRESS", None) => out.extend_from_slice(b"10.0.0.1:5000"),
            _ => return false,
        }
        true
    }
}

fn with_ctx<R>(vars: &dyn Vars, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
    with_ctx_req(vars, None, f)
}

fn with_ctx_req<R>(
    vars: &dyn Vars,
    request: Option<&RequestHead>,
    f: impl FnOnce(&mut Ctx<'_>) -> R,
) -> R {
    let rt = TestRuntime::default();
    let mut state = FilterState::default();
    let mut cx = Ctx {
        peer: SocketAddr::from(([10, 0, 0, 1], 5000)),
        route: None,
        start: Instant::now(),
        state: &mut state,
        request,
        rt: &rt,
        vars,
        reply_spare: None,
    };
    f(&mut cx)
}

fn factory(cfg: serde_json::Value) -> Rc<dyn FilterFactory> {
    parse(&cfg).unwrap().worker(WorkerInfo { id: 0, count: 1 })
}

fn run_request(f: &Rc<dyn FilterFactory>, head: &mut RequestHead) {
    let mut filter = f.create();
    let st = with_ctx(&TestVars::default(), |cx| {
        filter.on_request_headers(head, true, cx)
    });
    assert!(matches!(st, HeadersStatus::Continue));
}

fn run_response(f: &Rc<dyn FilterFactory>, head: &mut ResponseHead) {
    let mut filter = f.create();
    let st = with_ctx(&RespVars, |cx| filter.on_response_headers(head, false, cx));
    assert!(matches!(st, HeadersStatus::Continue));
}

fn names(h: &HeaderMap) -> Vec<(String, String)> {
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

fn problems(cfg: serde_json::Value) -> Vec<ConfigProblem> {
    parse(&cfg).unwrap_err()
}

fn has_problem(ps: &[ConfigProblem], path: &str, needle: &str) -> bool {
    let want = ConfigProblem::at(path, "").path;
    ps.iter()
        .any(|p| p.path == want && p.message.contains(needle))
}

fn one_add(append: serde_json::Value) -> Rc<dyn FilterFactory> {
    factory(json!({"mutations": {"request_mutations": [{"append": append}]}}))
}

fn request_with(h: &[(&str, &str)]) -> RequestHead {
    let mut r = RequestHead::new(b"GET", "http", b"a.example", b"/");
    for (n, v) in h {
        r.headers.append(n, v);
    }
    r
}

#[test]
fn brief_example_edits_both_directions() {
    let f = factory(json!({"mutations": {
        "request_mutations": [
            {"append": {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"},
                        "append_action": "APPEND_IF_EXISTS_OR_ADD"}},
            {"remove": "x-internal"}
        ],
        "response_mutations": [
            {"append": {"header": {"key": "x-served-by", "value": "ringway"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
        ]
    }}));
    assert_eq!(f.hooks(), Hooks::HEADERS);

    let mut req = request_with(&[("X-Internal", "secret"), ("x-client", "earlier")]);
    run_request(&f, &mut req);
    assert_eq!(
        names(&req.headers),
        pairs(&[("x-client", "earlier"), ("x-client", "10.0.0.1:5000")])
    );

    let mut resp = ResponseHead {
        status: 200,
        ..Default::default()
    };
    resp.headers.append("x-served-by", "upstream-a");
    resp.headers.append("x-served-by", "upstream-b");
    run_response(&f, &mut resp);
    assert_eq!(names(&resp.headers), pairs(&[("x-served-by", "ringway")]));
}

#[test]
fn hooks_follow_the_configured_lists() {
    let f = factory(json!({"mutations": {"response_mutations": [{"remove": "server"}]}}));
    let h = f.hooks();
    assert!(h.response_headers && !h.request_headers);
    assert!(!h.request_trailers && !h.response_trailers && !h.request_data);

    let f = factory(json!({"mutations": {"request_trailers_mutations": [{"remove": "x-t"}]}}));
    let h = f.hooks();
    assert!(h.request_trailers && !h.request_headers && !h.response_headers);

    assert_eq!(factory(json!({})).hooks(), Hooks::default());
}

#[test]
fn append_actions_when_present_and_absent() {
    type Fields = &'static [(&'static str, &'static str)];
    let cases: &[(&str, Fields, Fields)] = &[
        ("APPEND_IF_EXISTS_OR_ADD", &[], &[("x-a", "new")]),
        (
            "APPEND_IF_EXISTS_OR_ADD",
            &[("x-a", "old")],
            &[("x-a", "old"), ("x-a", "new")],
        ),
        ("ADD_IF_ABSENT", &[], &[("x-a", "new")]),
        ("ADD_IF_ABSENT", &[("X-A", "old")], &[("X-A", "old")]),
        ("OVERWRITE_IF_EXISTS_OR_ADD", &[], &[("x-a", "new")]),
        (
            "OVERWRITE_IF_EXISTS_OR_ADD",
            &[("x-a", "1"), ("b", "2"), ("x-a", "3")],
            &[("b", "2"), ("x-a", "new")],
        ),
        ("OVERWRITE_IF_EXISTS", &[], &[]),
        (
            "OVERWRITE_IF_EXISTS",
            &[("x-a", "old"), ("b", "2")],
            &[("b", "2"), ("x-a", "new")],
        ),
    ];
    for (action, before, after) in cases {
        let f = one_add(json!({"header": {"key": "x-a", "value": "new"}, "append_action": action}));
        let mut req = request_with(before);
        run_request(&f, &mut req);
        assert_eq!(names(&req.headers), pairs(after), "{action} on {before:?}");
    }
}

#[test]
fn deprecated_append_bool() {
    let f = one_add(json!({"header": {"key": "x-a", "value": "new"}, "append": false}));
    let mut req = request_with(&[("x-a", "old")]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-a", "new")]));

    let f = one_add(json!({"header": {"key": "x-a", "value": "new"}, "append": true}));
    let mut req = request_with(&[("x-a", "old")]);
    run_request(&f, &mut req);
    assert_eq!(
        names(&req.headers),
        pairs(&[("x-a", "old"), ("x-a", "new")])
    );

    let ps = problems(json!({"mutations": {"request_mutations": [{"append":
        {"header": {"key": "x-a", "value": "v"}, "append": true,
         "append_action": "ADD_IF_ABSENT"}}]}}));
    assert!(
        has_problem(&ps, "mutations.request_mutations.0.append.append", "both"),
        "{ps:?}"
    );
}

#[test]
fn empty_values_are_dropped_unless_kept() {
    // A template whose command has no value renders empty.
    let f = one_add(json!({"header": {"key": "x-a", "value": "%REQ(x-missing)%"}}));
    let mut req = request_with(&[]);
    run_request(&f, &mut req);
    assert!(req.headers.is_empty());

    // An empty value on OVERWRITE does not remove the old one either (Envoy: nothing happens).
    let f = one_add(json!({"header": {"key": "x-a", "value": ""},
                           "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}));
    let mut req = request_with(&[("x-a", "old")]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-a", "old")]));

    let f = one_add(
        json!({"header": {"key": "x-a", "value": "%REQ(x-missing)%"},
                           "keep_empty_value": true}),
    );
    let mut req = request_with(&[]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-a", "")]));

    let f = one_add(json!({"header": {"key": "x-a"}, "keep_empty_value": true}));
    let mut req = request_with(&[]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-a", "")]));
}

#[test]
fn templates_mix_text_and_commands() {
    let f = one_add(json!({"header": {"key": "X-Echo", "value": "from %REQ(x-tenant)% (100%%)"}}));
    let mut req = request_with(&[("x-tenant", "acme")]);
    run_request(&f, &mut req);
    assert_eq!(req.headers.get("x-echo"), Some("from acme (100%)"));
    let (name, _) = req.headers.iter().last().unwrap();
    assert_eq!(name, b"x-echo", "names are lower-cased at load");
}

#[test]
fn request_values_read_the_head_as_edited_so_far() {
    let f = factory(json!({"mutations": {"request_mutations": [
        {"append": {"header": {"key": "x-a", "value": "first"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}},
        {"append": {"header": {"key": "x-copy", "value": "%REQ(x-a)%@%REQ(:path)%"}}},
        {"remove": "x-a"},
        {"append": {"header": {"key": "x-gone", "value": "%REQ(x-a)%"}}}
    ]}}));
    let mut req = request_with(&[("x-a", "original")]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-copy", "first@/")]));
}

#[test]
fn response_values_read_the_response() {
    let f = factory(json!({"mutations": {"response_mutations": [
        {"append": {"header": {"key": "x-code",
                    "value": "%RESPONSE_CODE%/%RESP(X-Upstream)%/%REQ(x-tenant)%"}}}
    ]}}));
    let mut resp = ResponseHead {
        status: 503,
        ..Default::default()
    };
    resp.headers.append("x-upstream", "u1");
    let req = request_with(&[("x-tenant", "acme")]);
    let mut filter = f.create();
    with_ctx_req(&RespVars, Some(&req), |cx| {
        filter.on_response_headers(&mut resp, false, cx)
    });
    assert_eq!(resp.headers.get("x-code"), Some("503/u1/acme"));

    // No request on the context: REQ renders nothing.
    let mut resp = ResponseHead::default();
    resp.headers.append("x-upstream", "u2");
    run_response(&f, &mut resp);
    assert_eq!(resp.headers.get("x-code"), Some("503/u2/"));
}

#[test]
fn filter_keeps_config_order() {
    // Add then remove the same name: the removal wins because it comes second.
    let f = factory(json!({"mutations": {"request_mutations": [
        {"append": {"header": {"key": "x-a", "value": "1"}}},
        {"remove": "X-A"},
        {"append": {"header": {"key": "x-b", "value": "2"}}}
    ]}}));
    let mut req = request_with(&[("x-a", "0")]);
    run_request(&f, &mut req);
    assert_eq!(names(&req.headers), pairs(&[("x-b", "2")]));
}

#[test]
fn from_specs_removes_first_then_adds() {
    let add: Vec<HeaderValueOptionSpec> = serde_json::from_value(json!([
        {"header": {"key": "x-a", "value": "new"}},
        {"header": {"key": "x-peer", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"},
         "append_action": "ADD_IF_ABSENT"}
    ]))
    .unwrap();
    let remove = vec!["x-a".to_string(), "x-gone".to_string()];
    let m = Mutations::from_specs(&add, &remove, "request_headers_to_add", "rm").unwrap();
    assert!(!m.is_empty());
    assert!(!m.reads_response());
    let mut h = HeaderMap::default();
    h.append("x-a", "old");
    h.append("x-gone", "1");
    h.append("keep", "1");
    m.apply(&mut h, &TestVars::default());
    assert_eq!(
        names(&h),
        pairs(&[("keep", "1"), ("x-a", "new"), ("x-peer", "10.0.0.1:5000")])
    );

    assert!(Mutations::from_specs(&[], &[], "a", "r")
        .unwrap()
        .is_empty());
}

#[test]
fn from_specs_reports_every_problem_with_its_path() {
    let add: Vec<HeaderValueOptionSpec> = serde_json::from_value(json!([
        {"header": {"key": "ok", "value": "v"}},
        {"header": {"key": "Host", "value": "%NOPE%"}},
    ]))
    .unwrap();
    let remove = vec![
        ":path".to_string(),
        "fine".to_string(),
        "bad name".to_string(),
    ];
    let ps = Mutations::from_specs(
        &add,
        &remove,
        "virtual_hosts.0.request_headers_to_add",
        "virtual_hosts.0.request_headers_to_remove",
    )
    .unwrap_err();
    assert_eq!(ps.len(), 4, "{ps:?}");
    assert!(has_problem(
        &ps,
        "virtual_hosts.0.request_headers_to_remove.0",
        "pseudo-header"
    ));
    assert!(has_problem(
        &ps,
        "virtual_hosts.0.request_headers_to_remove.2",
        "not a valid header name"
    ));
    assert!(has_problem(
        &ps,
        "virtual_hosts.0.request_headers_to_add.1.header.key",
        "\"host\" may not be modified"
    ));
    assert!(has_problem(
        &ps,
        "virtual_hosts.0.request_headers_to_add.1.header.value",
        "unknown command"
    ));
}

#[test]
fn refused_names() {
    for name in [
        "content-length",
        "Transfer-Encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "host",
        ":authority",
    ] {
        let ps = problems(json!({"mutations": {"response_mutations": [{"remove": name}]}}));
        assert!(
            has_problem(
                &ps,
                "mutations.response_mutations.0.remove",
                "may not be modified"
            ),
            "{name}: {ps:?}"
        );
        let ps = problems(json!({"mutations": {"request_mutations": [
            {"append": {"header": {"key": name, "value": "x"}}}]}}));
        assert!(
            has_problem(
                &ps,
                "mutations.request_mutations.0.append.header.key",
                "may not be modified"
            ),
            "{name}: {ps:?}"
        );
    }
}

#[test]
fn config_errors_have_paths() {
    let ps = problems(json!({"mutations": {"request_mutations": [
        {"remove": "ok"},
        {"append": {"header": {"key": "x", "value": "50%"}}},
        {"remove": "a", "append": {"header": {"key": "x", "value": "v"}}},
        {},
        {"remove_on_match": {"key_matcher": {"prefix": "x-"}}}
    ], "query_parameter_mutations": [{"remove": "q"}]},
    "most_specific_header_mutations_wins": true}));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.1.append.header.value",
        "unclosed"
    ));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.2",
        "exactly one"
    ));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.3",
        "exactly one"
    ));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.4.remove_on_match",
        "not supported"
    ));
    assert!(has_problem(
        &ps,
        "mutations.query_parameter_mutations",
        "not supported"
    ));
    assert!(has_problem(
        &ps,
        "most_specific_header_mutations_wins",
        "no meaning"
    ));
    assert_eq!(ps.len(), 6, "{ps:?}");

    // Decoding problems (serde) carry their path too.
    let ps = problems(json!({"mutations": {"request_mutations": [
        {"append": {"header": {"key": "x", "value": "v"}, "append_action": "SOMETIMES"}}]}}));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.0.append.append_action",
        "unknown variant"
    ));
    let ps = problems(json!({"mutations": {"request_mutations": [
        {"append": {"header": {"key": "x", "value": "v", "raw_value": "dg=="}}}]}}));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.0.append.header.raw_value",
        "unknown key"
    ));
    let ps = problems(json!({"typed_config": {}}));
    assert!(has_problem(&ps, "typed_config", "unknown key"));
}

#[test]
fn values_with_line_breaks_are_refused() {
    let ps = problems(json!({"mutations": {"request_mutations": [
        {"append": {"header": {"key": "x", "value": "a\r\nevil: 1"}}}]}}));
    assert!(has_problem(
        &ps,
        "mutations.request_mutations.0.append.header.value",
        "CR, LF"
    ));
}

#[test]
fn trailers_are_edited() {
    let f = factory(json!({"mutations": {
        "request_trailers_mutations": [{"remove": "x-checksum"}],
        "response_trailers_mutations": [
            {"append": {"header": {"key": "x-peer", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}}}]
    }}));
    let h = f.hooks();
    assert!(h.request_trailers && h.response_trailers);
    assert!(!h.request_headers && !h.response_headers);
    let mut filter = f.create();
    let mut req_t = HeaderMap::default();
    req_t.append("x-checksum", "abc");
    req_t.append("x-other", "1");
    let mut resp_t = HeaderMap::default();
    with_ctx(&RespVars, |cx| {
        assert!(matches!(
            filter.on_request_trailers(&mut req_t, cx),
            DataStatus::Continue
        ));
        assert!(matches!(
            filter.on_response_trailers(&mut resp_t, cx),
            DataStatus::Continue
        ));
    });
    assert_eq!(names(&req_t), pairs(&[("x-other", "1")]));
    assert_eq!(names(&resp_t), pairs(&[("x-peer", "10.0.0.1:5000")]));
}

#[test]
fn registered_under_both_names() {
    let cfg = json!({"mutations": {"request_mutations": [{"remove": "x"}]}});
    let a = crate::registry::parse("header_mutation", &cfg).unwrap();
    let b = crate::registry::parse("envoy.filters.http.header_mutation", &cfg).unwrap();
    assert_eq!(a.name(), "header_mutation");
    assert_eq!(b.name(), "header_mutation");
    assert!(a.stats().is_empty());
}

#[test]
fn reads_response_is_reported() {
    let add: Vec<HeaderValueOptionSpec> = serde_json::from_value(json!([
        {"header": {"key": "x-code", "value": "%RESPONSE_CODE%"}}
    ]))
    .unwrap();
    let m = Mutations::from_specs(&add, &[], "a", "r").unwrap();
    assert!(m.reads_response());
}
