use std::{rc::Rc, sync::Arc, time::Duration};

use serde_json::{json, Value};

use super::{
    matcher::{HeaderMatcher, HeaderMatcherSpec},
    parse,
};
use crate::{
    testing::{ctx, TestRuntime, TestVars},
    FilterConfig, FilterFactory, FilterState, HeadersStatus, HttpFilter, RequestHead, RouteInfo,
    WorkerInfo,
};

fn config(v: Value) -> Arc<dyn FilterConfig> {
    match parse(&v) {
        Ok(c) => c,
        Err(e) => panic!("{v}: {e:?}"),
    }
}

fn worker(c: &Arc<dyn FilterConfig>, id: usize, count: usize) -> Rc<dyn FilterFactory> {
    c.worker(WorkerInfo { id, count })
}

fn get(headers: &[(&str, &str)]) -> RequestHead {
    let mut h = RequestHead::new(b"GET", "http", b"a.com", b"/");
    for (n, v) in headers {
        h.headers.append(n, v);
    }
    h
}

/// What happened to one request.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Passed without a fault.
    Passed,
    /// Delayed by this much, then passed.
    Delayed(Duration),
    /// Aborted at once with this status.
    Aborted(u16),
    /// Delayed, then aborted.
    DelayedAborted(Duration, u16),
}

struct Run {
    seen: Seen,
    state: FilterState,
}

/// Run one request through a new filter of `f` (resuming after a pause, as the engine does),
/// routed to `cluster`.
fn run_on(f: &dyn FilterFactory, head: &RequestHead, cluster: Option<&str>) -> Run {
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    let mut head = head.clone();
    let mut filter = f.create();
    let seen = {
        let mut cx = ctx(&rt, &vars, &mut state, None);
        cx.route = Some(RouteInfo {
            virtual_host: "vh",
            name: "",
            cluster,
        });
        match filter.on_request_headers(&mut head, true, &mut cx) {
            HeadersStatus::Continue => Seen::Passed,
            HeadersStatus::LocalReply(r) => {
                assert_eq!(&r.body[..], b"fault filter abort");
                assert_eq!(r.reason, Some("fault_injected"));
                Seen::Aborted(r.status)
            }
            HeadersStatus::Pause(_) => {
                let d = *rt.slept.borrow().last().expect("a pause sleeps");
                match filter.on_resume(&mut head, &mut cx) {
                    HeadersStatus::Continue => Seen::Delayed(d),
                    HeadersStatus::LocalReply(r) => {
                        assert_eq!(&r.body[..], b"fault filter abort");
                        Seen::DelayedAborted(d, r.status)
                    }
                    other => panic!("resume: {other:?}"),
                }
            }
        }
    };
    assert!(rt.slept.borrow().len() <= 1);
    Run { seen, state }
}

fn run(f: &dyn FilterFactory, head: &RequestHead) -> Seen {
    run_on(f, head, Some("c")).seen
}

fn stat(c: &Arc<dyn FilterConfig>, name: &str) -> u64 {
    c.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name} in {:?}", c.stats()))
        .1
}

const S: Duration = Duration::from_secs(2);

#[test]
fn fixed_delay_then_continue() {
    let c = config(json!({"delay": {"fixed_delay": "2s"}}));
    let f = worker(&c, 0, 1);
    assert!(f.hooks().request_headers);
    assert!(!f.hooks().response_headers && !f.hooks().request_data);
    let r = run_on(&*f, &get(&[]), None);
    assert_eq!(r.seen, Seen::Delayed(S));
    assert_eq!(r.state.get("fault.injected"), Some("delay"));
    assert_eq!(stat(&c, "fault.delays_injected"), 1);
    assert_eq!(stat(&c, "fault.aborts_injected"), 0);
    assert_eq!(stat(&c, "fault.active_faults"), 0, "the delay ended");
}

#[test]
fn delay_then_abort_and_abort_alone() {
    let c = config(json!({
        "delay": {"fixed_delay": "2s", "percentage": {"numerator": 100}},
        "abort": {"http_status": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
    }));
    let f = worker(&c, 0, 1);
    let r = run_on(&*f, &get(&[]), None);
    assert_eq!(r.seen, Seen::DelayedAborted(S, 503));
    assert_eq!(r.state.get("fault.injected"), Some("delay,abort"));

    let c = config(json!({"abort": {"http_status": 418}}));
    let f = worker(&c, 0, 1);
    let r = run_on(&*f, &get(&[]), None);
    assert_eq!(r.seen, Seen::Aborted(418), "no delay: at once, no sleep");
    assert_eq!(r.state.get("fault.injected"), Some("abort"));
    assert_eq!(stat(&c, "fault.aborts_injected"), 1);
    assert_eq!(stat(&c, "fault.delays_injected"), 0);
}

#[test]
fn active_fault_lasts_while_the_aborted_request_lives() {
    let c = config(json!({"abort": {"http_status": 503}}));
    let f = worker(&c, 0, 1);
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    let mut head = get(&[]);
    let mut filter = f.create();
    let st = filter.on_request_headers(&mut head, true, &mut ctx(&rt, &vars, &mut state, None));
    assert!(matches!(st, HeadersStatus::LocalReply(_)));
    assert_eq!(stat(&c, "fault.active_faults"), 1);
    drop(filter);
    assert_eq!(stat(&c, "fault.active_faults"), 0);
}

#[test]
fn percentages() {
    let c = config(json!({
        "delay": {"fixed_delay": "1s", "percentage": {"numerator": 0}},
        "abort": {"http_status": 503, "percentage": {"numerator": 0}},
    }));
    let f = worker(&c, 0, 1);
    assert!((0..200).all(|_| run(&*f, &get(&[])) == Seen::Passed));
    assert_eq!(
        stat(&c, "fault.delays_injected") + stat(&c, "fault.aborts_injected"),
        0
    );

    // 50% delay and 50% abort, independent: about a quarter of each outcome.
    let c = config(json!({
        "delay": {"fixed_delay": "1s", "percentage": {"numerator": 5000, "denominator": "TEN_THOUSAND"}},
        "abort": {"http_status": 503, "percentage": {"numerator": 50}},
    }));
    let f = worker(&c, 0, 1);
    let mut counts = [0usize; 4];
    for _ in 0..4000 {
        counts[match run(&*f, &get(&[])) {
            Seen::Passed => 0,
            Seen::Delayed(_) => 1,
            Seen::Aborted(_) => 2,
            Seen::DelayedAborted(..) => 3,
        }] += 1;
    }
    assert!(
        counts.iter().all(|&n| (850..1150).contains(&n)),
        "{counts:?}"
    );
}

#[test]
fn header_controlled_delay() {
    let c = config(json!({"delay": {"header_delay": {}, "percentage": {"numerator": 100}}}));
    let f = worker(&c, 0, 1);
    let ms = Duration::from_millis;
    assert_eq!(run(&*f, &get(&[])), Seen::Passed, "no header: no delay");
    let d = |v: &str| run(&*f, &get(&[("x-envoy-fault-delay-request", v)]));
    assert_eq!(d("150"), Seen::Delayed(ms(150)));
    assert_eq!(d(" 20 "), Seen::Delayed(ms(20)));
    assert_eq!(d("0"), Seen::Passed);
    assert_eq!(d("abc"), Seen::Passed);
    assert_eq!(d("-5"), Seen::Passed);
    assert_eq!(
        d("99999999999999"),
        Seen::Delayed(Duration::from_secs(3600)),
        "capped"
    );
    let dp = |p: &str| {
        run(
            &*f,
            &get(&[
                ("x-envoy-fault-delay-request", "10"),
                ("x-envoy-fault-delay-request-percentage", p),
            ]),
        )
    };
    assert!((0..100).all(|_| dp("0") == Seen::Passed));
    assert!((0..100).all(|_| dp("100") == Seen::Delayed(ms(10))));
    let n = (0..4000).filter(|_| dp("25") != Seen::Passed).count();
    assert!((850..1150).contains(&n), "{n} of 4000 at 25%");

    // The header cannot raise the configured percentage.
    let c = config(json!({"delay": {"header_delay": {}, "percentage": {"numerator": 0}}}));
    let f = worker(&c, 0, 1);
    let h = get(&[
        ("x-envoy-fault-delay-request", "10"),
        ("x-envoy-fault-delay-request-percentage", "100"),
    ]);
    assert!((0..100).all(|_| run(&*f, &h) == Seen::Passed));
}

#[test]
fn header_controlled_abort() {
    let c = config(json!({"abort": {"header_abort": {}}}));
    let f = worker(&c, 0, 1);
    let a = |v: &str| run(&*f, &get(&[("x-envoy-fault-abort-request", v)]));
    assert_eq!(run(&*f, &get(&[])), Seen::Passed);
    assert_eq!(a("429"), Seen::Aborted(429));
    assert_eq!(a("200"), Seen::Aborted(200));
    assert_eq!(a("599"), Seen::Aborted(599));
    assert_eq!(a("600"), Seen::Passed);
    assert_eq!(a("199"), Seen::Passed);
    assert_eq!(a("x"), Seen::Passed);
    let h = get(&[
        ("x-envoy-fault-abort-request", "503"),
        ("x-envoy-fault-abort-request-percentage", "0"),
    ]);
    assert!((0..100).all(|_| run(&*f, &h) == Seen::Passed));
}

#[test]
fn headers_are_ignored_without_header_config() {
    let c = config(json!({
        "delay": {"fixed_delay": "2s"},
        "abort": {"http_status": 503},
    }));
    let f = worker(&c, 0, 1);
    let h = get(&[
        ("x-envoy-fault-delay-request", "10"),
        ("x-envoy-fault-delay-request-percentage", "0"),
        ("x-envoy-fault-abort-request", "418"),
        ("x-envoy-fault-abort-request-percentage", "0"),
    ]);
    assert_eq!(run(&*f, &h), Seen::DelayedAborted(S, 503));
}

#[test]
fn fault_only_where_headers_cluster_and_node_match() {
    let c = config(json!({
        "abort": {"http_status": 503},
        "headers": [
            {"name": "x-fault", "exact_match": "on"},
            {"name": "x-skip", "present_match": false},
        ],
        "upstream_cluster": "backend",
        "downstream_nodes": ["node-a", "node-b"],
    }));
    let f = worker(&c, 0, 1);
    let good = [
        ("x-fault", "on"),
        ("x-envoy-downstream-service-node", "node-b"),
    ];
    assert_eq!(
        run_on(&*f, &get(&good), Some("backend")).seen,
        Seen::Aborted(503)
    );
    assert_eq!(run_on(&*f, &get(&good), Some("other")).seen, Seen::Passed);
    assert_eq!(run_on(&*f, &get(&good), None).seen, Seen::Passed);
    let mut h = get(&good);
    h.headers.append("x-skip", "1");
    assert_eq!(run_on(&*f, &h, Some("backend")).seen, Seen::Passed);
    let h = get(&[
        ("x-fault", "off"),
        ("x-envoy-downstream-service-node", "node-a"),
    ]);
    assert_eq!(run_on(&*f, &h, Some("backend")).seen, Seen::Passed);
    let h = get(&[
        ("x-fault", "on"),
        ("x-envoy-downstream-service-node", "node-c"),
    ]);
    assert_eq!(run_on(&*f, &h, Some("backend")).seen, Seen::Passed);
    let h = get(&[("x-fault", "on")]);
    assert_eq!(
        run_on(&*f, &h, Some("backend")).seen,
        Seen::Passed,
        "no node header"
    );
    assert_eq!(stat(&c, "fault.aborts_injected"), 1);
}

fn matcher(v: Value) -> HeaderMatcher {
    let spec: HeaderMatcherSpec = serde_json::from_value(v.clone()).unwrap();
    let mut errs = Vec::new();
    match HeaderMatcher::parse(&spec, "headers.0", &mut errs) {
        Some(m) => m,
        None => panic!("{v}: {errs:?}"),
    }
}

#[test]
fn header_matchers() {
    type Case = (Value, &'static [(&'static str, &'static str)], bool);
    let cases: &[Case] = &[
        (
            json!({"name": "x-a", "exact_match": "v"}),
            &[("X-A", "v")],
            true,
        ),
        (
            json!({"name": "x-a", "exact_match": "v"}),
            &[("x-a", "V")],
            false,
        ),
        (json!({"name": "x-a", "exact_match": "v"}), &[], false),
        (
            json!({"name": "x-a", "prefix_match": "ab"}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "prefix_match": "ab"}),
            &[("x-a", "a")],
            false,
        ),
        (
            json!({"name": "x-a", "suffix_match": "bc"}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "suffix_match": "bc"}),
            &[("x-a", "c")],
            false,
        ),
        (
            json!({"name": "x-a", "contains_match": "b"}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "contains_match": "d"}),
            &[("x-a", "abc")],
            false,
        ),
        (
            json!({"name": "x-a", "string_match": {"exact": "AbC", "ignore_case": true}}),
            &[("x-a", "aBc")],
            true,
        ),
        (
            json!({"name": "x-a", "string_match": {"exact": "AbC"}}),
            &[("x-a", "aBc")],
            false,
        ),
        (
            json!({"name": "x-a", "string_match": {"prefix": "AB", "ignore_case": true}}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "string_match": {"suffix": "BC", "ignore_case": true}}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "string_match": {"contains": "B", "ignore_case": true}}),
            &[("x-a", "abc")],
            true,
        ),
        (
            json!({"name": "x-a", "string_match": {"contains": "B"}}),
            &[("x-a", "abc")],
            false,
        ),
        // No specifier: presence.
        (json!({"name": "x-a"}), &[("x-a", "")], true),
        (json!({"name": "x-a"}), &[], false),
        (
            json!({"name": "x-a", "present_match": true}),
            &[("x-a", "1")],
            true,
        ),
        (json!({"name": "x-a", "present_match": true}), &[], false),
        (json!({"name": "x-a", "present_match": false}), &[], true),
        (
            json!({"name": "x-a", "present_match": false}),
            &[("x-a", "1")],
            false,
        ),
        (
            json!({"name": "x-a", "present_match": true, "invert_match": true}),
            &[],
            true,
        ),
        (
            json!({"name": "x-a", "present_match": true, "invert_match": true}),
            &[("x-a", "1")],
            false,
        ),
        // Inverted value matchers: a different value matches, a missing header does not.
        (
            json!({"name": "x-a", "exact_match": "v", "invert_match": true}),
            &[("x-a", "w")],
            true,
        ),
        (
            json!({"name": "x-a", "exact_match": "v", "invert_match": true}),
            &[("x-a", "v")],
            false,
        ),
        (
            json!({"name": "x-a", "exact_match": "v", "invert_match": true}),
            &[],
            false,
        ),
        // Several values are one, joined with commas.
        (
            json!({"name": "x-a", "exact_match": "1,2,3"}),
            &[("x-a", "1"), ("x-a", "2"), ("x-a", "3")],
            true,
        ),
        (
            json!({"name": "x-a", "exact_match": "1"}),
            &[("x-a", "1"), ("x-a", "2")],
            false,
        ),
        (
            json!({"name": "x-a", "string_match": {"exact": ""}, "treat_missing_header_as_empty": true}),
            &[],
            true,
        ),
        (
            json!({"name": "x-a", "string_match": {"exact": ""}}),
            &[],
            false,
        ),
    ];
    for (spec, headers, want) in cases {
        let m = matcher(spec.clone());
        assert_eq!(
            m.matches(&get(headers).headers),
            *want,
            "{spec} against {headers:?}"
        );
    }
}

#[test]
fn max_active_faults_overflow() {
    let c = config(json!({"delay": {"fixed_delay": "1s"}, "max_active_faults": 2}));
    let f = worker(&c, 0, 1);
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    let mut head = get(&[]);
    let mut start = |filter: &mut Box<dyn HttpFilter>| {
        let mut cx = ctx(&rt, &vars, &mut state, None);
        matches!(
            filter.on_request_headers(&mut head, true, &mut cx),
            HeadersStatus::Pause(_)
        )
    };
    let mut a = f.create();
    let mut b = f.create();
    let mut c3 = f.create();
    assert!(start(&mut a) && start(&mut b));
    assert_eq!(stat(&c, "fault.active_faults"), 2);
    assert!(
        !start(&mut c3),
        "a third fault overflows: the request passes"
    );
    assert_eq!(stat(&c, "fault.faults_overflow"), 1);
    assert_eq!(stat(&c, "fault.delays_injected"), 2);
    drop(a);
    let mut d = f.create();
    assert!(start(&mut d), "a slot came free");
    drop((b, c3, d));
    assert_eq!(stat(&c, "fault.active_faults"), 0);

    // Per worker: ceil(3 / 2) = 2 each.
    let c = config(json!({"abort": {"http_status": 503}, "max_active_faults": 3}));
    for id in 0..2 {
        let f = worker(&c, id, 2);
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut filter = f.create();
            let mut cx = ctx(&rt, &vars, &mut state, None);
            let st = filter.on_request_headers(&mut head, true, &mut cx);
            held.push((matches!(st, HeadersStatus::LocalReply(_)), filter));
        }
        assert_eq!(
            held.iter().map(|(aborted, _)| *aborted).collect::<Vec<_>>(),
            vec![true, true, false],
            "worker {id}"
        );
    }
    assert_eq!(stat(&c, "fault.faults_overflow"), 2);
    assert_eq!(stat(&c, "fault.active_faults"), 0, "all dropped");
}

fn problems(v: Value) -> Vec<(String, String)> {
    let e = match parse(&v) {
        Ok(c) => panic!("{v} was accepted: {c:?}"),
        Err(e) => e,
    };
    e.into_iter()
        .map(|p| (p.dotted_path(), p.message))
        .collect()
}

fn has(v: Value, path: &str, words: &str) {
    let ps = problems(v.clone());
    assert!(
        ps.iter().any(|(p, m)| p == path && m.contains(words)),
        "{v}: wanted {path:?} ~ {words:?}, got {ps:?}"
    );
}

#[test]
fn config_errors_have_paths() {
    has(
        json!({"abort": {"grpc_status": 14}}),
        "abort.grpc_status",
        "not supported yet",
    );
    has(
        json!({"abort": {"http_status": 700}}),
        "abort.http_status",
        "200..599",
    );
    has(
        json!({"abort": {"http_status": 503, "header_abort": {}}}),
        "abort",
        "not both",
    );
    has(
        json!({"abort": {"percentage": {"numerator": 1}}}),
        "abort",
        "needs http_status",
    );
    has(json!({"delay": {}}), "delay", "needs fixed_delay");
    has(
        json!({"delay": {"fixed_delay": "1s", "header_delay": {}}}),
        "delay",
        "not both",
    );
    has(
        json!({"delay": {"fixed_delay": "0s"}}),
        "delay.fixed_delay",
        "> 0",
    );
    has(
        json!({"delay": {"fixed_delay": "soon"}}),
        "delay.fixed_delay",
        "invalid duration",
    );
    has(
        json!({"delay": {"header_delay": {"x": 1}}}),
        "delay.header_delay.x",
        "unknown key",
    );
    has(
        json!({"delay": {"fixed_delay": "1s", "percentage": {"numerator": 1, "denominator": "PERCENT"}}}),
        "delay.percentage.denominator",
        "unknown variant",
    );
    has(
        json!({"response_rate_limit": {"fixed_limit": {"limit_kbps": 1}}}),
        "response_rate_limit",
        "not supported",
    );
    has(
        json!({"delay_percent_runtime": "x"}),
        "delay_percent_runtime",
        "unknown key",
    );
    has(json!({"upstream_cluster": ""}), "upstream_cluster", "empty");
    has(
        json!({"headers": [{"exact_match": "a"}]}),
        "headers.0.name",
        "required",
    );
    has(
        json!({"headers": [{"name": "x a"}]}),
        "headers.0.name",
        "not a valid header name",
    );
    has(
        json!({"headers": [{"name": "x", "safe_regex_match": {"regex": "a"}}]}),
        "headers.0.safe_regex_match",
        "not supported",
    );
    has(
        json!({"headers": [{"name": "x", "range_match": {"start": 1, "end": 2}}]}),
        "headers.0.range_match",
        "not supported",
    );
    has(
        json!({"headers": [{"name": "x", "string_match": {"safe_regex": {"regex": "a"}}}]}),
        "headers.0.string_match.safe_regex",
        "not supported",
    );
    has(
        json!({"headers": [{"name": "x", "string_match": {"prefix": ""}}]}),
        "headers.0.string_match.prefix",
        "empty",
    );
    has(
        json!({"headers": [{"name": "x", "string_match": {}}]}),
        "headers.0.string_match",
        "needs one of",
    );
    has(
        json!({"headers": [{"name": "x", "string_match": {"exact": "a", "prefix": "b"}}]}),
        "headers.0.string_match",
        "only one",
    );
    has(
        json!({"headers": [{"name": "y"}, {"name": "x", "exact_match": "a", "present_match": true}]}),
        "headers.1",
        "one way to match",
    );
    has(
        json!({"headers": [{"name": "x", "prefix_match": ""}]}),
        "headers.0.prefix_match",
        "empty",
    );
    // Several problems together.
    let ps = problems(json!({"abort": {"http_status": 1}, "delay": {}}));
    assert_eq!(ps.len(), 2, "{ps:?}");
}

#[test]
fn empty_config_is_a_no_op_and_envoy_name_works() {
    let c = config(json!({}));
    assert_eq!(c.name(), "fault");
    let f = worker(&c, 0, 1);
    assert_eq!(
        run(&*f, &get(&[("x-envoy-fault-abort-request", "503")])),
        Seen::Passed
    );
    assert!(crate::registry::parse(
        "envoy.filters.http.fault",
        &json!({"abort": {"http_status": 503, "percentage": {"numerator": 10, "denominator": "HUNDRED"}}})
    )
    .is_ok());
    let names: Vec<String> = c.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "fault.delays_injected",
            "fault.aborts_injected",
            "fault.active_faults",
            "fault.faults_overflow"
        ]
    );
}
