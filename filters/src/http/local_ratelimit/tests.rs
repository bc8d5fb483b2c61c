use std::{
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::{
    bucket::{Bucket, BucketMap, BucketSpec, Share},
    parse,
    percent::{Denominator, Percent, Rng},
};
use crate::{
    testing::{ctx, TestRuntime, TestVars},
    FilterConfig, FilterFactory, FilterState, HeadersStatus, RequestHead, ResponseHead, WorkerInfo,
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

fn get() -> RequestHead {
    RequestHead::new(b"GET", "http", b"a.com", b"/")
}

fn with_header(name: &str, value: &str) -> RequestHead {
    let mut h = get();
    h.headers.append(name, value);
    h
}

/// One request through `f` at `at` from `peer`: the status, the filter state, and the response
/// head after the response path (when the request passed).
struct Outcome {
    status: HeadersStatus,
    state: FilterState,
    response: Option<ResponseHead>,
}

fn send(f: &dyn FilterFactory, head: &RequestHead, peer: &str, at: Instant) -> Outcome {
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    let mut head = head.clone();
    let mut filter = f.create();
    let status = {
        let mut cx = ctx(&rt, &vars, &mut state, None);
        cx.peer = peer.parse::<SocketAddr>().unwrap();
        cx.start = at;
        filter.on_request_headers(&mut head, true, &mut cx)
    };
    let response = match status {
        HeadersStatus::Continue if f.hooks().response_headers => {
            let mut resp = ResponseHead {
                status: 200,
                ..ResponseHead::default()
            };
            let mut cx = ctx(&rt, &vars, &mut state, Some(&head));
            cx.start = at;
            filter.on_response_headers(&mut resp, true, &mut cx);
            Some(resp)
        }
        _ => None,
    };
    Outcome {
        status,
        state,
        response,
    }
}

fn passed(o: &Outcome) -> bool {
    matches!(o.status, HeadersStatus::Continue)
}

/// How many of `n` requests pass at `at`.
fn passes(f: &dyn FilterFactory, head: &RequestHead, peer: &str, at: Instant, n: usize) -> usize {
    (0..n).filter(|_| passed(&send(f, head, peer, at))).count()
}

fn stat(c: &Arc<dyn FilterConfig>, name: &str) -> u64 {
    c.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name} in {:?}", c.stats()))
        .1
}

const PEER: &str = "10.0.0.1:5000";

fn spec(max: u64, per_fill: u64, ms: u64) -> BucketSpec {
    BucketSpec {
        max_tokens: max,
        tokens_per_fill: per_fill,
        fill_interval: Duration::from_millis(ms),
    }
}

// ---- bucket arithmetic ----

#[test]
fn bucket_exhausts_refills_in_whole_intervals_and_caps() {
    let s = Share::of(&spec(5, 2, 1000), 0, 1);
    let t0 = Instant::now();
    let mut b = Bucket::default();
    b.refill(&s, t0);
    assert_eq!(b.tokens(), 5, "starts full");
    for _ in 0..5 {
        assert!(b.take());
    }
    assert!(!b.take(), "exhausted");
    b.refill(&s, t0 + Duration::from_millis(999));
    assert_eq!(b.tokens(), 0, "no fill before a whole interval");
    b.refill(&s, t0 + Duration::from_millis(1000));
    assert_eq!(b.tokens(), 2, "one fill");
    b.refill(&s, t0 + Duration::from_millis(1500));
    assert_eq!(b.tokens(), 2, "the same interval is not credited twice");
    b.refill(&s, t0 + Duration::from_millis(2000));
    assert_eq!(b.tokens(), 4);
    b.refill(&s, t0 + Duration::from_secs(60));
    assert_eq!(b.tokens(), 5, "capped at max_tokens");
    // An earlier arrival (a request parsed late) credits nothing and takes what is there.
    b.refill(&s, t0);
    assert_eq!(b.tokens(), 5);
}

#[test]
fn reset_is_seconds_to_next_fill_rounded_up() {
    let s = Share::of(&spec(1, 1, 1500), 0, 1);
    let t0 = Instant::now();
    let mut b = Bucket::default();
    b.refill(&s, t0);
    assert!(b.take());
    assert_eq!(b.reset_secs(&s, t0), 2, "1.5 s rounds up to 2");
    assert_eq!(b.reset_secs(&s, t0 + Duration::from_millis(600)), 1);
    let s = Share::of(&spec(1, 1, 100), 0, 1);
    assert_eq!(b.reset_secs(&s, t0), 1, "never 0");
}

#[test]
fn split_between_workers_sums_exactly() {
    for n in 1..=9usize {
        for (m, p) in [
            (100, 100),
            (10, 1),
            (5, 5),
            (1, 1),
            (7, 3),
            (3, 10),
            (1000, 7),
        ] {
            let shares: Vec<Share> = (0..n).map(|i| Share::of(&spec(m, p, 1000), i, n)).collect();
            assert_eq!(
                shares.iter().map(|s| s.cap).sum::<u64>(),
                m,
                "caps of {m} over {n}"
            );
            // The remainder goes to the lowest-indexed workers.
            for w in shares.windows(2) {
                assert!(w[0].cap >= w[1].cap, "{m} over {n}: {shares:?}");
            }
            // Drain every worker, then count what k fills give each: the totals sum to k*P
            // whenever each bucket can hold a fill.
            let t0 = Instant::now();
            let mut buckets: Vec<Bucket> = vec![Bucket::default(); n];
            for (b, s) in buckets.iter_mut().zip(&shares) {
                b.refill(s, t0);
                while b.take() {}
            }
            let mut total = 0;
            for k in 1..=(2 * n as u64) {
                for (b, s) in buckets.iter_mut().zip(&shares) {
                    b.refill(s, t0 + Duration::from_secs(k));
                    while b.take() {
                        total += 1;
                    }
                }
            }
            if m >= p {
                assert_eq!(total, 2 * n as u64 * p, "{m}/{p} over {n} workers");
            } else {
                assert!(total <= 2 * n as u64 * p);
            }
            // Every worker that can hold a token gets some within n fills (no worker starves
            // when tokens_per_fill < workers).
            for (i, (b, s)) in buckets.iter_mut().zip(&shares).enumerate() {
                if s.cap > 0 {
                    b.refill(s, t0 + Duration::from_secs(3 * n as u64));
                    assert!(b.tokens() > 0, "worker {i} of {n} starves with {m}/{p}");
                }
            }
        }
    }
}

#[test]
fn split_examples() {
    let caps = |m, n| {
        (0..n)
            .map(|i| Share::of(&spec(m, 1, 1000), i, n).cap)
            .collect::<Vec<_>>()
    };
    assert_eq!(caps(10, 4), vec![3, 3, 2, 2]);
    assert_eq!(caps(1, 2), vec![1, 0], "a worker may hold no token");
    // max_tokens 100, tokens_per_fill 10 over 3 workers: fills of 4, 3, 3.
    let t0 = Instant::now();
    let got: Vec<u64> = (0..3)
        .map(|i| {
            let s = Share::of(&spec(100, 10, 1000), i, 3);
            let mut b = Bucket::default();
            b.refill(&s, t0);
            while b.take() {}
            b.refill(&s, t0 + Duration::from_secs(1));
            b.tokens()
        })
        .collect();
    assert_eq!(got, vec![4, 3, 3]);
}

#[test]
fn lru_map_bounds_values() {
    let mut m = BucketMap::new(2);
    let s = Share::of(&spec(1, 1, 1000), 0, 1);
    let t0 = Instant::now();
    for k in [&b"a"[..], b"b"] {
        let b = m.get(k);
        b.refill(&s, t0);
        assert!(b.take());
    }
    assert!(
        !m.get(b"a").take(),
        "a's bucket is remembered (and a is now the most recent)"
    );
    m.get(b"c"); // evicts b, the least recently used
    assert_eq!(m.len(), 2);
    assert!(m.contains(b"a") && m.contains(b"c") && !m.contains(b"b"));
    let b = m.get(b"b"); // evicts a
    b.refill(&s, t0);
    assert!(b.take(), "a forgotten value starts full");
    assert!(!m.contains(b"a"));
    // Many values through a bound of 2 keep it.
    for i in 0..1000u32 {
        m.get(&i.to_le_bytes());
    }
    assert_eq!(m.len(), 2);
    assert!(m.contains(&999u32.to_le_bytes()) && m.contains(&998u32.to_le_bytes()));
}

#[test]
fn percent_rolls() {
    let rng = Rng::seeded(7);
    let never = Percent::new(0, Denominator::Hundred);
    let always = Percent::new(100, Denominator::Hundred);
    assert!((0..1000).all(|_| !never.roll(&rng)));
    assert!((0..1000).all(|_| always.roll(&rng)));
    assert!(Percent::new(2_000_000, Denominator::Million).roll(&rng));
    let half = Percent::new(5000, Denominator::TenThousand);
    let n = (0..10_000).filter(|_| half.roll(&rng)).count();
    assert!((4500..5500).contains(&n), "{n} of 10000 at 50%");
    let tenth = Percent::new(10, Denominator::Hundred);
    let n = (0..10_000).filter(|_| tenth.roll(&rng)).count();
    assert!((800..1200).contains(&n), "{n} of 10000 at 10%");
    assert_eq!(always.capped(30), Percent::new(30, Denominator::Hundred));
    assert_eq!(tenth.capped(30), tenth);
}

// ---- the filter ----

#[test]
fn refuses_without_a_token_and_refills() {
    let c = config(json!({
        "stat_prefix": "api",
        "token_bucket": {"max_tokens": 3, "fill_interval": "1s"},
    }));
    let f = worker(&c, 0, 1);
    let t0 = Instant::now();
    assert_eq!(passes(&*f, &get(), PEER, t0, 3), 3);
    let o = send(&*f, &get(), PEER, t0 + Duration::from_millis(300));
    let HeadersStatus::LocalReply(r) = &o.status else {
        panic!("expected a refusal, got {:?}", o.status)
    };
    assert_eq!(r.status, 429);
    assert_eq!(&r.body[..], b"local_rate_limited");
    assert_eq!(r.reason, Some("rate_limited"));
    assert_eq!(r.headers.get("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.headers.get("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.headers.get("x-ratelimit-reset"), Some("1"));
    assert_eq!(r.headers.get("retry-after"), Some("1"));
    assert_eq!(r.headers.get("x-envoy-ratelimited"), Some("true"));
    assert_eq!(o.state.get("local_ratelimit.limited"), Some("true"));
    // tokens_per_fill defaults to 1.
    assert_eq!(passes(&*f, &get(), PEER, t0 + Duration::from_secs(1), 3), 1);
    assert_eq!(
        passes(&*f, &get(), PEER, t0 + Duration::from_secs(60), 10),
        3
    );
    assert_eq!(stat(&c, "api.http_local_rate_limit.enabled"), 17);
    assert_eq!(stat(&c, "api.http_local_rate_limit.ok"), 7);
    assert_eq!(stat(&c, "api.http_local_rate_limit.rate_limited"), 10);
    assert_eq!(stat(&c, "api.http_local_rate_limit.enforced"), 10);
    let ok = send(&*f, &get(), PEER, t0 + Duration::from_secs(120));
    assert!(passed(&ok) && ok.state.get("local_ratelimit.limited").is_none());
    assert!(
        ok.response.is_none(),
        "no response hook without x-ratelimit headers"
    );
}

#[test]
fn each_worker_holds_its_share() {
    let c = config(json!({
        "stat_prefix": "api",
        "token_bucket": {"max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "1s"},
    }));
    let t0 = Instant::now();
    let got: Vec<usize> = (0..4)
        .map(|i| passes(&*worker(&c, i, 4), &get(), PEER, t0, 20))
        .collect();
    assert_eq!(got, vec![3, 3, 2, 2]);
    let c = config(json!({
        "stat_prefix": "api",
        "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
    }));
    assert_eq!(passes(&*worker(&c, 0, 2), &get(), PEER, t0, 5), 1);
    assert_eq!(passes(&*worker(&c, 1, 2), &get(), PEER, t0, 5), 0);
    // The summed stats cover both workers.
    assert_eq!(stat(&c, "api.http_local_rate_limit.enabled"), 10);
}

#[test]
fn descriptor_per_remote_address_with_lru_bound() {
    let c = config(json!({
        "stat_prefix": "api",
        "descriptors": [{
            "entries": [{"key": "remote_address"}],
            "token_bucket": {"max_tokens": 2, "fill_interval": "1s"},
            "max_buckets": 2,
        }],
    }));
    let f = worker(&c, 0, 1);
    let t0 = Instant::now();
    assert_eq!(passes(&*f, &get(), "10.0.0.1:1", t0, 5), 2);
    assert_eq!(
        passes(&*f, &get(), "10.0.0.1:2", t0, 5),
        0,
        "same IP, other port"
    );
    assert_eq!(
        passes(&*f, &get(), "10.0.0.2:1", t0, 5),
        2,
        "another IP: its own bucket"
    );
    assert_eq!(
        passes(&*f, &get(), "[::ffff:10.0.0.2]:1", t0, 1),
        0,
        "IPv4-mapped IPv6 is the same client"
    );
    assert_eq!(passes(&*f, &get(), "[2001:db8::1]:1", t0, 5), 2);
    // Three addresses through a bound of 2: 10.0.0.1 (least recently used) was forgotten.
    assert_eq!(passes(&*f, &get(), "10.0.0.1:1", t0, 5), 2);
    assert_eq!(
        passes(&*f, &get(), "[2001:db8::1]:1", t0, 5),
        0,
        "still remembered"
    );
}

#[test]
fn descriptor_per_header_value_and_absent_header() {
    let c = config(json!({
        "stat_prefix": "api",
        "token_bucket": {"max_tokens": 100, "tokens_per_fill": 100, "fill_interval": "1s"},
        "descriptors": [
            {
                "entries": [{"key": "header", "header_name": "X-Tenant", "value": "free"}],
                "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
            },
            {
                "entries": [{"key": "header", "header_name": "x-tenant"}],
                "token_bucket": {"max_tokens": 3, "fill_interval": "1s"},
            },
        ],
    }));
    let f = worker(&c, 0, 1);
    let t0 = Instant::now();
    assert_eq!(
        passes(&*f, &with_header("x-tenant", "free"), PEER, t0, 5),
        1
    );
    assert_eq!(passes(&*f, &with_header("x-tenant", "a"), PEER, t0, 5), 3);
    assert_eq!(passes(&*f, &with_header("x-tenant", "b"), PEER, t0, 5), 3);
    // No header: no descriptor applies, only the route bucket (100, of which 7 are gone and
    // refused requests took none).
    assert_eq!(passes(&*f, &get(), PEER, t0, 200), 93);
    // The route bucket is empty now: even a fresh tenant is refused, and its descriptor
    // bucket keeps its token.
    assert_eq!(passes(&*f, &with_header("x-tenant", "c"), PEER, t0, 1), 0);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(passes(&*f, &with_header("x-tenant", "c"), PEER, t1, 5), 3);
}

#[test]
fn descriptor_with_several_entries_keys_by_combination() {
    let c = config(json!({
        "stat_prefix": "api",
        "descriptors": [{
            "entries": [{"key": "remote_address"}, {"key": "request_headers", "header_name": "x-user"}],
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
        }],
    }));
    let f = worker(&c, 0, 1);
    let t0 = Instant::now();
    let u = |v| with_header("x-user", v);
    assert_eq!(passes(&*f, &u("a"), "10.0.0.1:1", t0, 3), 1);
    assert_eq!(passes(&*f, &u("a"), "10.0.0.2:1", t0, 3), 1);
    assert_eq!(passes(&*f, &u("b"), "10.0.0.1:1", t0, 3), 1);
    assert_eq!(
        passes(&*f, &u("a"), "10.0.0.1:1", t0, 3),
        0,
        "(10.0.0.1, a) is spent"
    );
    assert_eq!(
        passes(&*f, &get(), "10.0.0.1:1", t0, 3),
        3,
        "no x-user: unlimited"
    );
}

#[test]
fn remote_address_value_restricts_descriptor() {
    let c = config(json!({
        "stat_prefix": "api",
        "descriptors": [{
            "entries": [{"key": "remote_address", "value": "10.0.0.9"}],
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
        }],
    }));
    let f = worker(&c, 0, 1);
    let t0 = Instant::now();
    assert_eq!(passes(&*f, &get(), "10.0.0.9:1", t0, 3), 1);
    assert_eq!(passes(&*f, &get(), "10.0.0.8:1", t0, 3), 3);
}

#[test]
fn enabled_and_enforced_percentages() {
    let base = json!({"max_tokens": 1, "fill_interval": "1s"});
    let pct = |n: u32| json!({"default_value": {"numerator": n, "denominator": "HUNDRED"}});
    let t0 = Instant::now();

    let c = config(json!({"stat_prefix": "a", "token_bucket": base, "filter_enabled": pct(0)}));
    let f = worker(&c, 0, 1);
    assert_eq!(passes(&*f, &get(), PEER, t0, 10), 10);
    assert_eq!(stat(&c, "a.http_local_rate_limit.enabled"), 0);

    let c = config(json!({"stat_prefix": "a", "token_bucket": base, "filter_enforced": pct(0)}));
    let f = worker(&c, 0, 1);
    let outs: Vec<Outcome> = (0..10).map(|_| send(&*f, &get(), PEER, t0)).collect();
    assert!(
        outs.iter().all(passed),
        "not enforced: every request passes"
    );
    let limited = outs
        .iter()
        .filter(|o| o.state.get("local_ratelimit.limited") == Some("true"))
        .count();
    assert_eq!(limited, 9, "but the limited ones are marked");
    assert_eq!(stat(&c, "a.http_local_rate_limit.rate_limited"), 9);
    assert_eq!(stat(&c, "a.http_local_rate_limit.enforced"), 0);
    assert_eq!(stat(&c, "a.http_local_rate_limit.ok"), 1);

    // Explicit 100% (in another denominator) is the same as absent.
    let c = config(json!({
        "stat_prefix": "a", "token_bucket": base,
        "filter_enabled": {"default_value": {"numerator": 1_000_000, "denominator": "MILLION"}, "runtime_key": "x"},
        "filter_enforced": {"default_value": {"numerator": 10_000, "denominator": "TEN_THOUSAND"}},
    }));
    let f = worker(&c, 0, 1);
    assert_eq!(passes(&*f, &get(), PEER, t0, 10), 1);
    assert_eq!(stat(&c, "a.http_local_rate_limit.enforced"), 9);

    // 50% enabled: about half of the requests are looked at.
    let c = config(
        json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}, "filter_enabled": pct(50)}),
    );
    let f = worker(&c, 0, 1);
    let n = passes(&*f, &get(), PEER, t0, 4000);
    assert!(
        (1800..2200).contains(&n),
        "{n} of 4000 passed at 50% enabled"
    );
}

#[test]
fn status_and_headers_of_the_refusal() {
    let t0 = Instant::now();
    for (status, want) in [
        (json!(503), 503),
        (json!({"code": "TooManyRequests"}), 429),
        (json!({"code": "ServiceUnavailable"}), 503),
        (json!({"code": 420}), 420),
    ] {
        let c = config(json!({
            "stat_prefix": "a",
            "token_bucket": {"max_tokens": 1, "fill_interval": "2500ms"},
            "status": status,
            "response_headers_to_add": [
                {"header": {"key": "X-A", "value": "b"}},
                {"header": {"key": "x-a", "value": "c"}},
                {"header": {"key": "retry-after", "value": "9"}, "append": false},
                {"header": {"key": "x-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}, "append_action": "ADD_IF_ABSENT"},
                {"header": {"key": "x-empty", "value": "%RESPONSE_CODE%"}},
                {"header": {"key": "x-kept", "value": ""}, "keep_empty_value": true},
                {"header": {"key": "x-none", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS"},
            ],
        }));
        let f = worker(&c, 0, 1);
        assert!(passed(&send(&*f, &get(), PEER, t0)));
        let o = send(&*f, &get(), PEER, t0);
        let HeadersStatus::LocalReply(r) = o.status else {
            panic!("expected a refusal")
        };
        assert_eq!(r.status, want);
        assert_eq!(
            r.headers.get_all("x-a").collect::<Vec<_>>(),
            vec![&b"b"[..], b"c"]
        );
        assert_eq!(r.headers.get("retry-after"), Some("9"), "replaced");
        assert_eq!(
            r.headers.get("x-ratelimit-reset"),
            Some("3"),
            "2.5 s rounds up"
        );
        assert_eq!(r.headers.get("x-ip"), Some("10.0.0.1:5000"));
        assert!(!r.headers.contains("x-empty"));
        assert_eq!(r.headers.get("x-kept"), Some(""));
        assert!(!r.headers.contains("x-none"));
    }
}

#[test]
fn x_ratelimit_headers_on_passed_responses() {
    let c = config(json!({
        "stat_prefix": "a",
        "token_bucket": {"max_tokens": 10, "fill_interval": "1s"},
        "descriptors": [{
            "entries": [{"key": "header", "header_name": "x-user"}],
            "token_bucket": {"max_tokens": 2, "fill_interval": "5s"},
        }],
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }));
    let f = worker(&c, 0, 1);
    assert!(f.hooks().response_headers);
    let t0 = Instant::now();
    let o = send(&*f, &get(), PEER, t0);
    let h = &o.response.as_ref().unwrap().headers;
    assert_eq!(h.get("x-ratelimit-limit"), Some("10"));
    assert_eq!(h.get("x-ratelimit-remaining"), Some("9"), "after taking");
    assert_eq!(h.get("x-ratelimit-reset"), Some("1"));
    // With a descriptor, the bucket with fewer tokens left speaks.
    let o = send(&*f, &with_header("x-user", "u"), PEER, t0);
    let h = &o.response.as_ref().unwrap().headers;
    assert_eq!(h.get("x-ratelimit-limit"), Some("2"));
    assert_eq!(h.get("x-ratelimit-remaining"), Some("1"));
    assert_eq!(h.get("x-ratelimit-reset"), Some("5"));
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
    let tb = json!({"max_tokens": 1, "fill_interval": "1s"});
    has(json!({"token_bucket": tb}), "stat_prefix", "required");
    has(
        json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 1, "fill_interval": "10ms"}}),
        "token_bucket.fill_interval",
        "50ms",
    );
    has(
        json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}),
        "token_bucket.max_tokens",
        "> 0",
    );
    has(
        json!({"stat_prefix": "a", "token_bucket": {"fill_interval": "1s"}}),
        "token_bucket.max_tokens",
        "required",
    );
    has(
        json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 1, "tokens_per_fill": 0, "fill_interval": "1s"}}),
        "token_bucket.tokens_per_fill",
        "> 0",
    );
    has(
        json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 1}}),
        "token_bucket.fill_interval",
        "required",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "remote_address"}], "token_bucket": tb}, {"entries": [{"key": "client_id"}], "token_bucket": tb}]}),
        "descriptors.1.entries.0.key",
        "unknown descriptor key \"client_id\"",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "header"}], "token_bucket": tb}]}),
        "descriptors.0.entries.0.header_name",
        "required",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "remote_address", "value": "nope"}], "token_bucket": tb}]}),
        "descriptors.0.entries.0.value",
        "not an IP",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [], "token_bucket": tb}]}),
        "descriptors.0.entries",
        "at least one",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "remote_address"}]}]}),
        "descriptors.0.token_bucket",
        "required",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "remote_address"}], "token_bucket": {"max_tokens": 1, "fill_interval": "1ms"}}]}),
        "descriptors.0.token_bucket.fill_interval",
        "50ms",
    );
    has(
        json!({"stat_prefix": "a", "descriptors": [{"entries": [{"key": "remote_address"}], "token_bucket": tb, "max_buckets": 0}]}),
        "descriptors.0.max_buckets",
        "must be",
    );
    has(
        json!({"stat_prefix": "a", "status": 200}),
        "status",
        "400..599",
    );
    has(
        json!({"stat_prefix": "a", "status": {"code": "Teapot"}}),
        "status.code",
        "unknown status name",
    );
    has(
        json!({"stat_prefix": "a", "status": {"cod": 429}}),
        "status.cod",
        "unknown key",
    );
    has(
        json!({"stat_prefix": "a", "response_headers_to_add": [{"header": {"key": "content-length", "value": "1"}}]}),
        "response_headers_to_add.0.header.key",
        "codec",
    );
    has(
        json!({"stat_prefix": "a", "response_headers_to_add": [{"header": {"key": "x", "value": "%NOPE%"}}]}),
        "response_headers_to_add.0.header.value",
        "unknown command",
    );
    has(
        json!({"stat_prefix": "a", "response_headers_to_add": [{"header": {"key": "x", "value": "a\nb"}}]}),
        "response_headers_to_add.0.header.value",
        "CR",
    );
    has(
        json!({"stat_prefix": "a", "response_headers_to_add": [{"header": {"key": "x", "value": "1"}, "append": true, "append_action": "ADD_IF_ABSENT"}]}),
        "response_headers_to_add.0.append",
        "not both",
    );
    has(
        json!({"stat_prefix": "a", "filter_enabled": {"default_value": {"numerator": 1, "denominator": "THOUSAND"}}}),
        "filter_enabled.default_value.denominator",
        "unknown variant",
    );
    has(
        json!({"stat_prefix": "a", "enable_x_ratelimit_headers": "DRAFT_VERSION_02"}),
        "enable_x_ratelimit_headers",
        "unknown variant",
    );
    has(
        json!({"stat_prefix": "a", "local_rate_limit_per_downstream_connection": true}),
        "local_rate_limit_per_downstream_connection",
        "unknown key",
    );
    // Several problems are reported together.
    let ps = problems(json!({"token_bucket": {"max_tokens": 0, "fill_interval": "1ms"}}));
    assert_eq!(ps.len(), 3, "{ps:?}");
}

#[test]
fn minimal_configs() {
    // Only a stat_prefix: a placeholder that limits nothing (routes override it).
    let c = config(json!({"stat_prefix": "a"}));
    assert_eq!(c.name(), "local_ratelimit");
    let f = worker(&c, 0, 1);
    assert!(!f.hooks().response_headers);
    assert_eq!(passes(&*f, &get(), PEER, Instant::now(), 100), 100);
    // Envoy's spelling of the registry name works too.
    assert!(crate::registry::parse(
        "envoy.filters.http.local_ratelimit",
        &json!({"stat_prefix": "a", "token_bucket": {"max_tokens": 1, "fill_interval": 1}})
    )
    .is_ok());
}
