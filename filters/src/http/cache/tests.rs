//! The `cache` filter driven through its hooks, request by request, on a fake clock: each
//! exchange runs at `t` seconds after the harness started (the request's `Ctx::start`, and the
//! wall clock the filter reads for `Date`). Request directives, revalidation and conditionals
//! are in `tests/revalidation.rs`; the pure rules, dates and the store in `tests/units.rs`.

mod config_keys;
mod revalidation;
mod units;

use std::{
    cell::Cell,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde_json::json;

use super::{config, date, store::ENTRY_OVERHEAD, CacheFactory, STATUS_KEY};
use crate::{
    filter::{FilterFactory, HeadersStatus, Hooks, LocalReply},
    registry,
    stats::StatSet,
    testing::{ctx, TestRuntime, TestVars},
    BodySize, FilterState, RequestHead, ResponseHead,
};

/// The fake wall clock's value at t = 0.
const WALL0: u64 = 1_700_000_000;

thread_local! {
    static WALL: Cell<u64> = const { Cell::new(WALL0) };
}

fn fake_wall() -> u64 {
    WALL.with(Cell::get)
}

/// `Date` value for fake time `t`.
fn http_date(t: u64) -> String {
    String::from_utf8(date::format(WALL0 + t).to_vec()).unwrap()
}

/// An upstream response to play.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    /// The body ends (`end_stream`) with its last chunk; `false`: the stream is cut.
    complete: bool,
    /// Overrides the head's body size (default: `Known` of the chunks' sum, `Empty` when none).
    size: Option<BodySize>,
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    Resp {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        chunks: if body.is_empty() {
            Vec::new()
        } else {
            vec![body.to_vec()]
        },
        complete: true,
        size: None,
    }
}

/// A 200 with `cache-control: <cc>` and a `Date` of fake time `t`.
fn ok(t: u64, cc: &str, body: &[u8]) -> Resp {
    resp(200, &[("cache-control", cc), ("date", &http_date(t))], body)
}

fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut r = RequestHead::new(method.as_bytes(), "http", b"example.com", path.as_bytes());
    for (n, v) in headers {
        r.headers.append(n, v);
    }
    r
}

fn get(path: &str) -> RequestHead {
    req("GET", path, &[])
}

/// What came of one exchange.
#[derive(Debug)]
enum Out {
    /// The cache answered at request time; the upstream was not asked.
    Local(LocalReply),
    /// The upstream answered and the cache replaced that answer (a 304 turned into the stored
    /// response).
    Replaced(LocalReply),
    /// The upstream's response passed through: its head as the client gets it, and the body.
    Passed(ResponseHead, Vec<u8>),
}

struct Ex {
    out: Out,
    /// The request as sent upstream (`None`: answered locally).
    sent: Option<RequestHead>,
    /// `cache.status` after the exchange.
    status: Option<String>,
}

impl Ex {
    fn local(&self) -> &LocalReply {
        match &self.out {
            Out::Local(r) => r,
            o => panic!("expected a local reply, got {o:?}"),
        }
    }

    fn passed(&self) -> (&ResponseHead, &[u8]) {
        match &self.out {
            Out::Passed(h, b) => (h, b),
            o => panic!("expected the upstream's response, got {o:?}"),
        }
    }

    fn replaced(&self) -> &LocalReply {
        match &self.out {
            Out::Replaced(r) => r,
            o => panic!("expected a reply replacing the upstream's, got {o:?}"),
        }
    }

    fn sent_header(&self, name: &str) -> Option<&str> {
        self.sent.as_ref().and_then(|r| r.headers.get(name))
    }

    /// The request went to the upstream (the cache could not answer it).
    fn upstream(&self) -> bool {
        self.sent.is_some()
    }

    fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("")
    }
}

struct Harness {
    factory: CacheFactory,
    stats: StatSet,
    base: Instant,
    rt: TestRuntime,
    vars: TestVars,
}

impl Harness {
    fn new(cfg: serde_json::Value) -> Harness {
        let spec = registry::decode::<config::CacheSpec>(&cfg).unwrap();
        let settings = config::check(spec).unwrap();
        let stats = StatSet::new("cache.", config::STAT_NAMES);
        let factory = CacheFactory::new(Arc::new(settings), stats.worker(), fake_wall);
        Harness {
            factory,
            stats,
            base: Instant::now(),
            rt: TestRuntime::default(),
            vars: TestVars::default(),
        }
    }

    fn default() -> Harness {
        Harness::new(json!({}))
    }

    fn stat(&self, name: &str) -> u64 {
        let full = format!("cache.{name}");
        self.stats
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == full)
            .map(|(_, v)| v)
            .unwrap()
    }

    /// Run `request` at fake time `t`; `upstream` answers it if the cache lets it through.
    fn run(&self, t: u64, mut request: RequestHead, upstream: Resp) -> Ex {
        WALL.with(|w| w.set(WALL0 + t));
        let start = self.base + Duration::from_secs(t);
        let mut filter = self.factory.create();
        let mut state = FilterState::default();
        let st = {
            let mut cx = ctx(&self.rt, &self.vars, &mut state, None);
            cx.start = start;
            filter.on_request_headers(&mut request, true, &mut cx)
        };
        match st {
            HeadersStatus::Continue => {}
            HeadersStatus::LocalReply(r) => {
                return Ex {
                    out: Out::Local(r),
                    sent: None,
                    status: state.get(STATUS_KEY).map(String::from),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        let total: usize = upstream.chunks.iter().map(Vec::len).sum();
        let mut head = ResponseHead {
            status: upstream.status,
            body: upstream.size.unwrap_or(if total == 0 {
                BodySize::Empty
            } else {
                BodySize::Known(total as u64)
            }),
            ..ResponseHead::default()
        };
        for (n, v) in &upstream.headers {
            head.headers.append(n, v);
        }
        let mut cx = ctx(&self.rt, &self.vars, &mut state, Some(&request));
        cx.start = start;
        let end = upstream.chunks.is_empty() && upstream.complete;
        let out = match filter.on_response_headers(&mut head, end, &mut cx) {
            HeadersStatus::Continue => {
                let mut body = Vec::new();
                let n = upstream.chunks.len();
                for (i, c) in upstream.chunks.iter().enumerate() {
                    let mut data = Bytes::copy_from_slice(c);
                    let at = data.as_ptr();
                    filter.on_response_data(&mut data, upstream.complete && i + 1 == n, &mut cx);
                    // The data passes through unchanged, not copied.
                    assert_eq!(data.as_ptr(), at);
                    body.extend_from_slice(&data);
                }
                Out::Passed(head, body)
            }
            HeadersStatus::LocalReply(r) => Out::Replaced(r),
            other => panic!("unexpected {other:?}"),
        };
        drop(filter);
        Ex {
            out,
            sent: Some(request),
            status: state.get(STATUS_KEY).map(String::from),
        }
    }

    /// Run `request` at `t` expecting the cache to answer it (the upstream would say 599).
    fn hit(&self, t: u64, request: RequestHead) -> Ex {
        self.run(t, request, resp(599, &[], b"upstream"))
    }
}

fn header<'a>(r: &'a LocalReply, name: &str) -> Option<&'a str> {
    r.headers.get(name)
}

// ---- store and serve ----

#[test]
fn miss_stores_then_hit_serves_the_stored_response() {
    let h = Harness::default();
    let first = h.run(
        0,
        get("/a"),
        resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", &http_date(0)),
                ("content-type", "text/plain"),
                ("x-origin", "1"),
            ],
            b"hello",
        ),
    );
    assert_eq!(first.status(), "miss");
    assert_eq!(first.passed().1, b"hello");
    assert_eq!((h.stat("misses"), h.stat("inserts")), (1, 1));

    let a = h.hit(10, get("/a"));
    assert_eq!(a.status(), "hit");
    let r = a.local();
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, None);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(header(r, "content-type"), Some("text/plain"));
    assert_eq!(header(r, "x-origin"), Some("1"));
    assert_eq!(header(r, "date"), Some(http_date(0).as_str()));
    assert_eq!(header(r, "age"), Some("10"));
    // Zero-copy: every hit shares the stored body.
    let b = h.hit(20, get("/a"));
    assert_eq!(b.local().body.as_ptr(), r.body.as_ptr());
    assert_eq!(header(b.local(), "age"), Some("20"));
    assert_eq!(h.stat("hits"), 2);
    // The byte gauge: overhead + key + stored header lines + body.
    let key = "http example.com /a".len();
    let hdrs = [
        ("cache-control", "max-age=60"),
        ("date", http_date(0).as_str()),
        ("content-type", "text/plain"),
        ("x-origin", "1"),
    ]
    .iter()
    .map(|(n, v)| n.len() + v.len() + 4)
    .sum::<usize>();
    assert_eq!(h.stat("bytes"), (ENTRY_OVERHEAD + key + hdrs + 5) as u64);
    // At 60 s it is stale: the upstream is asked again.
    let c = h.run(60, get("/a"), ok(60, "max-age=60", b"new"));
    assert_eq!(c.status(), "miss");
    assert_eq!(c.passed().1, b"new");
    assert_eq!(&h.hit(61, get("/a")).local().body[..], b"new");
}

#[test]
fn cacheable_statuses_only() {
    let h = Harness::default();
    let stored = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
    for (i, s) in [
        200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501, 206, 302, 307, 500, 503,
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/s{i}");
        let body: &[u8] = if s == 204 { b"" } else { b"x" };
        let mut r = ok(0, "max-age=60", body);
        r.status = s;
        h.run(0, get(&path), r);
        let again = h.run(1, get(&path), resp(599, &[], b""));
        if stored.contains(&s) {
            assert_eq!(
                again.local().status,
                s,
                "status {s} should be served from cache"
            );
        } else {
            assert_eq!(
                again.passed().0.status,
                599,
                "status {s} must not be stored"
            );
        }
    }
    assert_eq!(h.stat("inserts"), stored.len() as u64);
    // Each unstored status twice: its own response and the 599 that follows it.
    assert_eq!(h.stat("uncacheable"), 2 * 5);
}

#[test]
fn explicit_freshness_needed_unless_default_ttl() {
    let h = Harness::default();
    let r = h.run(0, get("/x"), resp(200, &[("date", &http_date(0))], b"x"));
    assert_eq!(r.status(), "uncacheable");
    assert_eq!(
        h.run(1, get("/x"), resp(599, &[], b"")).passed().0.status,
        599
    );
    // `public` alone gives no lifetime either (no heuristics).
    h.run(0, get("/p"), ok(0, "public", b"x"));
    assert_eq!(
        h.run(1, get("/p"), resp(599, &[], b"")).passed().0.status,
        599
    );

    let h = Harness::new(json!({"default_ttl": "30s"}));
    h.run(0, get("/x"), resp(200, &[("date", &http_date(0))], b"x"));
    assert_eq!(header(h.hit(29, get("/x")).local(), "age"), Some("29"));
    assert_eq!(
        h.run(30, get("/x"), resp(599, &[], b"")).passed().0.status,
        599
    );
    // An explicit lifetime wins over default_ttl.
    h.run(0, get("/y"), ok(0, "max-age=5", b"y"));
    assert_eq!(
        h.run(5, get("/y"), resp(599, &[], b"")).passed().0.status,
        599
    );
}

#[test]
fn lifetime_s_maxage_over_max_age_then_expires() {
    let h = Harness::default();
    h.run(0, get("/s"), ok(0, "max-age=10, s-maxage=100", b"s"));
    assert_eq!(h.hit(99, get("/s")).status(), "hit");
    assert!(h.run(100, get("/s"), resp(599, &[], b"")).upstream());

    // Expires - Date = 50 s.
    let (d0, d50) = (http_date(0), http_date(50));
    h.run(
        0,
        get("/e"),
        resp(200, &[("date", &d0), ("expires", &d50)], b"e"),
    );
    assert_eq!(h.hit(49, get("/e")).status(), "hit");
    assert!(h.run(50, get("/e"), resp(599, &[], b"")).upstream());
    // An invalid Expires is already expired: not worth storing without validators.
    h.run(0, get("/i"), resp(200, &[("expires", "0")], b"i"));
    assert_eq!(
        h.run(1, get("/i"), resp(599, &[], b"")).passed().0.status,
        599
    );
}

#[test]
fn age_counts_apparent_age_upstream_age_and_residence() {
    let h = Harness::default();
    // Fetched at t=100 with a Date of t=70: 30 s old on arrival.
    h.run(100, get("/a"), ok(70, "max-age=60", b"a"));
    assert_eq!(header(h.hit(110, get("/a")).local(), "age"), Some("40"));
    // 30 + 30 = 60: stale.
    assert!(h.run(130, get("/a"), resp(599, &[], b"")).upstream());
    // An Age field larger than the apparent age wins.
    h.run(
        0,
        get("/b"),
        resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", &http_date(0)),
                ("age", "50"),
            ],
            b"b",
        ),
    );
    assert_eq!(header(h.hit(5, get("/b")).local(), "age"), Some("55"));
    // The stored copy has one age, the recomputed one.
    assert_eq!(
        h.hit(5, get("/b")).local().headers.get_all("age").count(),
        1
    );
}

#[test]
fn no_store_private_and_set_cookie_are_not_stored() {
    let h = Harness::default();
    for (path, cc) in [
        ("/ns", "max-age=60, no-store"),
        ("/pr", "max-age=60, private"),
        ("/pq", "private=\"x-user\", max-age=60"),
    ] {
        assert_eq!(h.run(0, get(path), ok(0, cc, b"x")).status(), "uncacheable");
        assert_eq!(
            h.run(1, get(path), resp(599, &[], b"")).passed().0.status,
            599
        );
    }
    let mut r = ok(0, "max-age=60", b"x");
    r.headers.push(("set-cookie".into(), "sid=1".into()));
    h.run(0, get("/ck"), r);
    assert_eq!(
        h.run(1, get("/ck"), resp(599, &[], b"")).passed().0.status,
        599
    );
    assert_eq!(h.stat("inserts"), 0);
}

#[test]
fn request_no_store_neither_served_nor_stored() {
    let h = Harness::default();
    h.run(0, get("/a"), ok(0, "max-age=60", b"old"));
    let ns = || req("GET", "/a", &[("cache-control", "no-store")]);
    let r = h.run(1, ns(), ok(1, "max-age=60", b"new"));
    assert_eq!(r.status(), "uncacheable");
    assert_eq!(r.passed().1, b"new");
    // The stored response is the old one still.
    assert_eq!(&h.hit(2, get("/a")).local().body[..], b"old");
}

#[test]
fn authorization_needs_public_s_maxage_or_must_revalidate() {
    let h = Harness::default();
    let auth = |p: &str| req("GET", p, &[("authorization", "Bearer x")]);
    for (i, (cc, stored)) in [
        ("max-age=60", false),
        ("max-age=60, public", true),
        ("s-maxage=60", true),
        ("max-age=60, must-revalidate", true),
        ("max-age=60, proxy-revalidate", false),
    ]
    .into_iter()
    .enumerate()
    {
        let p = format!("/auth{i}");
        h.run(0, auth(&p), ok(0, cc, b"x"));
        let again = h.run(1, get(&p), resp(599, &[], b""));
        assert_eq!(matches!(again.out, Out::Local(_)), stored, "{cc}");
    }
}

#[test]
fn key_is_scheme_authority_path_and_query() {
    let h = Harness::default();
    h.run(0, get("/k?q=1"), ok(0, "max-age=60", b"k"));
    let upper = RequestHead::new(b"GET", "http", b"EXAMPLE.com", b"/k?q=1");
    assert_eq!(h.hit(1, upper).status(), "hit");
    for other in [
        RequestHead::new(b"GET", "https", b"example.com", b"/k?q=1"),
        RequestHead::new(b"GET", "http", b"example.org", b"/k?q=1"),
        RequestHead::new(b"GET", "http", b"example.com", b"/K?q=1"),
        RequestHead::new(b"GET", "http", b"example.com", b"/k?q=2"),
        RequestHead::new(b"GET", "http", b"example.com", b"/k"),
    ] {
        assert!(h.run(1, other, resp(599, &[], b"")).upstream());
    }
}

#[test]
fn head_reads_the_get_entry_and_is_never_stored() {
    let h = Harness::default();
    // A HEAD miss goes upstream; its response is not stored.
    let r = h.run(0, req("HEAD", "/h", &[]), ok(0, "max-age=60", b""));
    assert_eq!(r.status(), "miss");
    assert_eq!(h.stat("inserts"), 0);
    h.run(0, get("/h"), ok(0, "max-age=60", b"body"));
    let r = h.hit(5, req("HEAD", "/h", &[]));
    assert_eq!(r.status(), "hit");
    assert_eq!(r.local().status, 200);
    // The body is there for its length; the engine sends none for HEAD.
    assert_eq!(&r.local().body[..], b"body");
    // A stale entry and HEAD: passed upstream without our conditionals.
    h.run(
        0,
        get("/hv"),
        resp(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"1\"")],
            b"x",
        ),
    );
    let r = h.run(5, req("HEAD", "/hv", &[]), resp(200, &[], b""));
    assert_eq!(r.sent_header("if-none-match"), None);
}

#[test]
fn vary_keeps_one_variant_per_request_value() {
    let h = Harness::new(json!({"allowed_vary_headers": ["accept-encoding", "origin"]}));
    let ae = |v: &str| req("GET", "/v", &[("accept-encoding", v)]);
    let varied = |body: &[u8]| {
        let mut r = ok(0, "max-age=60", body);
        r.headers.push(("vary".into(), "Accept-Encoding".into()));
        r
    };
    h.run(0, ae("gzip"), varied(b"gzipped"));
    h.run(0, ae("br"), varied(b"brotli"));
    assert_eq!(&h.hit(1, ae("gzip")).local().body[..], b"gzipped");
    assert_eq!(&h.hit(1, ae("br")).local().body[..], b"brotli");
    // Other values, and no value at all, are other variants.
    assert!(h.run(1, ae("identity"), resp(599, &[], b"")).upstream());
    assert!(h.run(1, get("/v"), resp(599, &[], b"")).upstream());
    // A header the response does not vary on does not split variants.
    let other = req(
        "GET",
        "/v",
        &[("accept-encoding", "gzip"), ("origin", "https://a")],
    );
    assert_eq!(h.hit(1, other).status(), "hit");

    // Vary: * and a header not allowed: not stored.
    for (p, v) in [("/star", "*"), ("/cookie", "accept-encoding, cookie")] {
        let mut r = ok(0, "max-age=60", b"x");
        r.headers.push(("vary".into(), v.into()));
        assert_eq!(h.run(0, get(p), r).status(), "uncacheable");
        assert!(h.run(1, get(p), resp(599, &[], b"")).upstream());
    }
}

#[test]
fn vary_values_are_the_request_as_the_cache_saw_it() {
    // A later filter may change the request (e.g. strip accept-encoding): the variant is keyed
    // on the client's values, taken when the cache saw the request.
    let h = Harness::default();
    let mut r = ok(0, "max-age=60", b"z");
    r.headers.push(("vary".into(), "accept-encoding".into()));
    let mut request = req("GET", "/z", &[("accept-encoding", "gzip")]);
    let mut filter = h.factory.create();
    let mut state = FilterState::default();
    {
        let mut cx = ctx(&h.rt, &h.vars, &mut state, None);
        cx.start = h.base;
        assert!(matches!(
            filter.on_request_headers(&mut request, true, &mut cx),
            HeadersStatus::Continue
        ));
    }
    request.headers.remove("accept-encoding");
    let mut head = ResponseHead {
        status: 200,
        ..ResponseHead::default()
    };
    for (n, v) in &r.headers {
        head.headers.append(n, v);
    }
    let mut cx = ctx(&h.rt, &h.vars, &mut state, Some(&request));
    cx.start = h.base;
    filter.on_response_headers(&mut head, true, &mut cx);
    drop(filter);
    assert_eq!(
        h.hit(1, req("GET", "/z", &[("accept-encoding", "gzip")]))
            .status(),
        "hit"
    );
    assert!(h.run(1, get("/z"), resp(599, &[], b"")).upstream());
}

// ---- streaming ----

#[test]
fn body_is_stored_only_when_it_ends() {
    let h = Harness::default();
    let mut r = ok(0, "max-age=60", b"");
    r.chunks = vec![b"ab".to_vec(), b"cd".to_vec(), b"e".to_vec()];
    let ex = h.run(0, get("/s"), r);
    assert_eq!(ex.passed().1, b"abcde");
    assert_eq!(&h.hit(1, get("/s")).local().body[..], b"abcde");

    // Cut before end_stream: nothing stored.
    let mut r = ok(0, "max-age=60", b"");
    r.chunks = vec![b"ab".to_vec(), b"cd".to_vec()];
    r.complete = false;
    h.run(0, get("/cut"), r);
    assert!(h.run(1, get("/cut"), resp(599, &[], b"")).upstream());
    assert_eq!(h.stat("inserts"), 1);
}

#[test]
fn objects_over_max_object_bytes_pass_through_unstored() {
    let h = Harness::new(json!({"max_object_bytes": 4}));
    // Length known up front.
    let r = h.run(0, get("/k"), ok(0, "max-age=60", b"12345"));
    assert_eq!(r.status(), "uncacheable");
    assert_eq!(r.passed().1, b"12345");
    // Length unknown: found out while streaming; the data keeps flowing.
    let mut r = ok(0, "max-age=60", b"");
    r.chunks = vec![b"123".to_vec(), b"45".to_vec(), b"6".to_vec()];
    r.size = Some(BodySize::Unknown);
    let ex = h.run(0, get("/u"), r);
    assert_eq!(ex.passed().1, b"123456");
    assert_eq!(ex.status(), "uncacheable");
    // Exactly the limit is stored.
    let mut r = ok(0, "max-age=60", b"");
    r.chunks = vec![b"12".to_vec(), b"34".to_vec()];
    r.size = Some(BodySize::Unknown);
    h.run(0, get("/eq"), r);
    for p in ["/k", "/u"] {
        assert!(h.run(1, get(p), resp(599, &[], b"")).upstream());
    }
    assert_eq!(&h.hit(1, get("/eq")).local().body[..], b"1234");
    assert_eq!(h.stat("inserts"), 1);
}

// ---- invalidation ----

#[test]
fn unsafe_methods_invalidate_on_success() {
    let h = Harness::new(json!({"allowed_vary_headers": ["accept-encoding"]}));
    let store_two = |p: &str| {
        for ae in ["gzip", "br"] {
            let mut r = ok(0, "max-age=600", b"x");
            r.headers.push(("vary".into(), "accept-encoding".into()));
            h.run(0, req("GET", p, &[("accept-encoding", ae)]), r);
        }
    };
    let cached = |p: &str| {
        matches!(
            h.run(
                1,
                req("GET", p, &[("accept-encoding", "br")]),
                resp(599, &[], b"")
            )
            .out,
            Out::Local(_)
        )
    };
    for (i, m) in ["POST", "PUT", "DELETE", "PATCH", "PURGE"]
        .into_iter()
        .enumerate()
    {
        let p = format!("/u{i}");
        store_two(&p);
        // A failed unsafe request changes nothing.
        let r = h.run(1, req(m, &p, &[]), resp(500, &[], b""));
        assert_eq!(r.status(), "uncacheable");
        assert!(cached(&p), "{m} 500");
        h.run(1, req(m, &p, &[]), resp(204, &[], b""));
        assert!(!cached(&p), "{m} 204");
    }
    // Safe methods other than GET/HEAD leave entries alone and are not looked up.
    store_two("/safe");
    let r = h.run(1, req("OPTIONS", "/safe", &[]), resp(200, &[], b""));
    assert_eq!(r.passed().0.status, 200);
    assert!(cached("/safe"));
    // 3xx invalidates too.
    h.run(1, req("POST", "/safe", &[]), resp(303, &[], b""));
    assert!(!cached("/safe"));
}

// ---- bounds ----

#[test]
fn lru_bounded_by_max_size_bytes() {
    // Each entry: overhead + 19-byte key + cache-control and date lines + 100-byte body.
    let one = ENTRY_OVERHEAD
        + "http example.com /a".len()
        + ("cache-control".len() + "max-age=600".len() + 4)
        + ("date".len() + 29 + 4)
        + 100;
    let h = Harness::new(json!({"max_size_bytes": 2 * one + 10, "max_object_bytes": 200}));
    let body = [b'x'; 100];
    h.run(0, get("/a"), ok(0, "max-age=600", &body));
    h.run(0, get("/b"), ok(0, "max-age=600", &body));
    assert_eq!(h.stat("bytes"), 2 * one as u64);
    // /a used last: /b goes when /c comes.
    h.hit(1, get("/a"));
    h.run(2, get("/c"), ok(2, "max-age=600", &body));
    assert_eq!(h.stat("evictions"), 1);
    assert_eq!(h.stat("bytes"), 2 * one as u64);
    assert_eq!(h.hit(3, get("/a")).status(), "hit");
    assert_eq!(h.hit(3, get("/c")).status(), "hit");
    assert!(h.run(3, get("/b"), resp(599, &[], b"")).upstream());

    // An object bigger than the whole store is not stored.
    let h = Harness::new(json!({"max_size_bytes": 300, "max_object_bytes": 300}));
    let r = h.run(0, get("/big"), ok(0, "max-age=600", &[b'y'; 100]));
    assert_eq!(r.status(), "uncacheable");
    assert_eq!((h.stat("inserts"), h.stat("bytes")), (0, 0));
}

#[test]
fn range_requests_bypass_the_cache() {
    let h = Harness::default();
    h.run(0, get("/r"), ok(0, "max-age=60", b"0123456789"));
    let r = h.run(
        1,
        req("GET", "/r", &[("range", "bytes=0-3")]),
        resp(206, &[], b"0123"),
    );
    assert_eq!(r.status(), "uncacheable");
    assert_eq!(r.passed().0.status, 206);
}

#[test]
fn stored_response_gets_a_date_when_the_origin_sent_none() {
    let h = Harness::default();
    let r = h.run(
        7,
        get("/n"),
        resp(200, &[("cache-control", "max-age=60")], b"n"),
    );
    assert_eq!(
        r.passed().0.headers.get("date"),
        Some(http_date(7).as_str())
    );
    let hit = h.hit(9, get("/n"));
    assert_eq!(header(hit.local(), "date"), Some(http_date(7).as_str()));
    assert_eq!(header(hit.local(), "age"), Some("2"));
}

#[test]
fn workers_do_not_share_stores() {
    let cfg = registry::parse("cache", &json!({})).unwrap();
    let w0 = cfg.worker(crate::WorkerInfo { id: 0, count: 2 });
    let w1 = cfg.worker(crate::WorkerInfo { id: 1, count: 2 });
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let play = |f: &dyn FilterFactory, store: bool| -> bool {
        let mut filter = f.create();
        let mut state = FilterState::default();
        let mut request = get("/w");
        let mut cx = ctx(&rt, &vars, &mut state, None);
        if let HeadersStatus::LocalReply(_) = filter.on_request_headers(&mut request, true, &mut cx)
        {
            return true;
        }
        if store {
            let mut head = ResponseHead {
                status: 200,
                ..ResponseHead::default()
            };
            head.headers.append("cache-control", "max-age=600");
            let mut cx = ctx(&rt, &vars, &mut state, Some(&request));
            filter.on_response_headers(&mut head, true, &mut cx);
        }
        false
    };
    assert!(!play(&*w0, true));
    assert!(play(&*w0, false));
    assert!(!play(&*w1, false));
    let stats = cfg.stats();
    let get_stat = |n: &str| stats.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    assert_eq!(get_stat("cache.hits"), Some(1));
    assert_eq!(get_stat("cache.misses"), Some(2));
}
