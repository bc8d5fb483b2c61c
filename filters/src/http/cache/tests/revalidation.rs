//! The cache and the origin deciding together: request directives (`no-cache`, `max-age`,
//! `max-stale`, `min-fresh`, `only-if-cached`), revalidation of stale entries with their
//! validators, 304s, and the client's own conditionals. Uses the harness in `tests.rs`.

use super::*;

// ---- request directives ----

#[test]
fn request_no_cache_pragma_and_max_age_zero_revalidate() {
    let h = Harness::default();
    let stored = || {
        resp(
            200,
            &[
                ("cache-control", "max-age=600"),
                ("date", &http_date(0)),
                ("etag", "\"e1\""),
            ],
            b"body",
        )
    };
    h.run(0, get("/r"), stored());
    for hdr in [
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("cache-control", "max-age=0"),
    ] {
        let r = h.run(
            5,
            req("GET", "/r", &[hdr]),
            resp(304, &[("date", &http_date(5))], b""),
        );
        assert_eq!(r.sent_header("if-none-match"), Some("\"e1\""), "{hdr:?}");
        assert_eq!(r.status(), "revalidated");
        let reply = r.replaced();
        assert_eq!((reply.status, &reply.body[..]), (200, &b"body"[..]));
    }
    assert_eq!(h.stat("revalidations"), 3);
    // Pragma does not count when Cache-Control is there.
    let r = h.hit(
        6,
        req(
            "GET",
            "/r",
            &[("pragma", "no-cache"), ("cache-control", "max-stale=1")],
        ),
    );
    assert_eq!(r.status(), "hit");
}

#[test]
fn only_if_cached_answers_from_cache_or_504() {
    let h = Harness::default();
    let oic = || req("GET", "/o", &[("cache-control", "only-if-cached")]);
    let miss = h.hit(0, oic());
    assert_eq!(miss.local().status, 504);
    assert_eq!(miss.local().reason, Some("only_if_cached"));
    h.run(0, get("/o"), ok(0, "max-age=10", b"o"));
    assert_eq!(&h.hit(5, oic()).local().body[..], b"o");
    let stale = h.hit(10, oic());
    assert_eq!(
        (stale.local().status, stale.local().reason),
        (504, Some("only_if_cached"))
    );
    // With max-stale, the stale entry does.
    let ok_stale = h.hit(
        15,
        req(
            "GET",
            "/o",
            &[("cache-control", "only-if-cached, max-stale=10")],
        ),
    );
    assert_eq!((ok_stale.local().status, ok_stale.status()), (200, "stale"));
}

#[test]
fn request_max_age_max_stale_min_fresh() {
    let h = Harness::default();
    h.run(0, get("/m"), ok(0, "max-age=100", b"m"));
    let cc = |v: &str| req("GET", "/m", &[("cache-control", v)]);
    let served = |t: u64, v: &str| {
        matches!(
            h.run(t, cc(v), ok(t, "max-age=100", b"m")).out,
            Out::Local(_)
        )
    };
    assert!(served(30, "max-age=30"));
    assert!(!served(31, "max-age=30"));
    // The miss above stored a new copy at 31: ages count from there now.
    assert!(served(31 + 80, "min-fresh=20"));
    assert!(!served(31 + 81, "min-fresh=20"));
    // Refetched at 112: stale from 212.
    assert!(served(112 + 130, "max-stale=30"));
    let r = h.run(112 + 130, cc("max-stale=30"), resp(599, &[], b""));
    assert_eq!(r.status(), "stale");
    assert_eq!(header(r.local(), "age"), Some("130"));
    assert!(!served(112 + 131, "max-stale=30"));
}

#[test]
fn must_revalidate_and_no_cache_responses_are_never_served_stale() {
    let h = Harness::default();
    for (p, cc) in [
        ("/mr", "max-age=10, must-revalidate"),
        ("/pr", "max-age=10, proxy-revalidate"),
        ("/sm", "s-maxage=10"),
    ] {
        h.run(0, get(p), ok(0, cc, b"x"));
        let r = h.run(
            20,
            req("GET", p, &[("cache-control", "max-stale")]),
            resp(599, &[], b""),
        );
        assert_eq!(r.passed().0.status, 599, "{cc}");
    }
    // Response no-cache: stored, but every use goes to the origin with its validator.
    h.run(
        0,
        get("/nc"),
        resp(
            200,
            &[
                ("cache-control", "no-cache, max-age=600"),
                ("etag", "\"n\""),
            ],
            b"nc",
        ),
    );
    assert_eq!(h.stat("inserts"), 4);
    let r = h.run(1, get("/nc"), resp(304, &[], b""));
    assert_eq!(r.sent_header("if-none-match"), Some("\"n\""));
    assert_eq!(&r.replaced().body[..], b"nc");
    // Without a validator a no-cache response is useless: not stored.
    h.run(0, get("/nc2"), ok(0, "no-cache, max-age=600", b"x"));
    assert_eq!(h.stat("inserts"), 5); // the 304 above re-stored /nc; /nc2 added nothing
}

// ---- revalidation ----

fn validated(t: u64, max_age: u64, etag: &str, body: &[u8]) -> Resp {
    resp(
        200,
        &[
            ("cache-control", &format!("max-age={max_age}")),
            ("date", &http_date(t)),
            ("etag", etag),
            ("last-modified", &http_date(0)),
            ("x-version", "1"),
        ],
        body,
    )
}

#[test]
fn stale_entry_revalidates_with_its_validators_and_304_refreshes_it() {
    let h = Harness::default();
    h.run(0, get("/r"), validated(0, 10, "\"v1\"", b"payload"));
    let r = h.run(
        20,
        get("/r"),
        resp(
            304,
            &[
                ("date", &http_date(20)),
                ("cache-control", "max-age=100"),
                ("x-version", "2"),
                ("etag", "\"v1\""),
            ],
            b"",
        ),
    );
    assert_eq!(r.sent_header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        r.sent_header("if-modified-since"),
        Some(http_date(0).as_str())
    );
    assert_eq!(r.status(), "revalidated");
    let reply = r.replaced();
    assert_eq!((reply.status, reply.reason), (200, None));
    assert_eq!(&reply.body[..], b"payload");
    assert_eq!(header(reply, "x-version"), Some("2"));
    assert_eq!(reply.headers.get_all("x-version").count(), 1);
    assert_eq!(header(reply, "cache-control"), Some("max-age=100"));
    assert_eq!(header(reply, "age"), Some("0"));
    // The entry is fresh again, for the 304's lifetime, with its updated headers.
    let hit = h.hit(119, get("/r"));
    assert_eq!(header(hit.local(), "x-version"), Some("2"));
    assert_eq!(header(hit.local(), "age"), Some("99"));
    assert_eq!(h.stat("revalidations"), 1);
    assert_eq!(h.stat("misses"), 2);
}

#[test]
fn revalidation_304_without_date_is_dated_now() {
    let h = Harness::default();
    h.run(0, get("/d"), validated(0, 10, "\"d\"", b"d"));
    let r = h.run(
        50,
        get("/d"),
        resp(304, &[("cache-control", "max-age=30")], b""),
    );
    assert_eq!(header(r.replaced(), "date"), Some(http_date(50).as_str()));
    assert_eq!(header(h.hit(79, get("/d")).local(), "age"), Some("29"));
}

#[test]
fn revalidation_200_replaces_and_5xx_keeps_404_drops() {
    let h = Harness::default();
    h.run(0, get("/a"), validated(0, 10, "\"v1\"", b"one"));
    let r = h.run(20, get("/a"), validated(20, 10, "\"v2\"", b"two"));
    assert_eq!(r.status(), "miss");
    assert_eq!(r.passed().1, b"two");
    assert_eq!(&h.hit(21, get("/a")).local().body[..], b"two");
    assert!(h.stat("bytes") > 0);

    // A 503 during revalidation leaves the stale entry (usable with max-stale).
    let r = h.run(40, get("/a"), resp(503, &[], b"down"));
    assert_eq!(r.passed().0.status, 503);
    let stale = h.hit(41, req("GET", "/a", &[("cache-control", "max-stale")]));
    assert_eq!(&stale.local().body[..], b"two");
    // A 404 without caching headers replaces it with nothing.
    h.run(50, get("/a"), resp(404, &[], b"gone"));
    let after = h.run(
        51,
        req("GET", "/a", &[("cache-control", "max-stale")]),
        resp(599, &[], b""),
    );
    assert!(after.upstream());
    assert_eq!(h.stat("bytes"), 0);
}

#[test]
fn stale_without_validators_is_a_plain_miss() {
    let h = Harness::default();
    h.run(0, get("/p"), ok(0, "max-age=10", b"p1"));
    let r = h.run(20, get("/p"), ok(20, "max-age=10", b"p2"));
    assert_eq!(r.sent_header("if-none-match"), None);
    assert_eq!(r.sent_header("if-modified-since"), None);
    assert_eq!(&h.hit(21, get("/p")).local().body[..], b"p2");
}

#[test]
fn client_conditionals_are_forwarded_and_a_matching_304_passes_through() {
    let h = Harness::default();
    h.run(0, get("/c"), validated(0, 10, "\"v1\"", b"c"));
    // Stale; the client has v1 too: its own conditional goes upstream, ours is not added.
    let r = h.run(
        20,
        req("GET", "/c", &[("if-none-match", "\"v1\"")]),
        resp(
            304,
            &[
                ("cache-control", "max-age=100"),
                ("etag", "\"v1\""),
                ("date", &http_date(20)),
            ],
            b"",
        ),
    );
    assert_eq!(
        r.sent
            .as_ref()
            .unwrap()
            .headers
            .get_all("if-none-match")
            .count(),
        1
    );
    assert_eq!(r.sent_header("if-modified-since"), None);
    assert_eq!(r.passed().0.status, 304);
    assert_eq!(r.status(), "revalidated");
    // The 304 validated our copy too: fresh again.
    assert_eq!(header(h.hit(30, get("/c")).local(), "age"), Some("10"));

    // A client holding another version: the 304 is about its copy, not ours.
    h.run(200, get("/c"), validated(200, 10, "\"v2\"", b"c2"));
    let r = h.run(
        300,
        req("GET", "/c", &[("if-none-match", "\"v0\"")]),
        resp(
            304,
            &[("etag", "\"v0\""), ("cache-control", "max-age=100")],
            b"",
        ),
    );
    assert_eq!(r.passed().0.status, 304);
    assert_eq!(r.status(), "miss");
    assert!(h.run(301, get("/c"), resp(599, &[], b"")).upstream());
}

#[test]
fn fresh_hit_answers_client_conditionals_locally() {
    let h = Harness::default();
    h.run(0, get("/f"), validated(0, 100, "\"v1\"", b"full"));
    let inm = |v: &str| req("GET", "/f", &[("if-none-match", v)]);
    let r = h.hit(5, inm("W/\"v1\""));
    let reply = r.local();
    assert_eq!(reply.status, 304);
    assert!(reply.body.is_empty());
    assert_eq!(header(reply, "etag"), Some("\"v1\""));
    assert_eq!(header(reply, "last-modified"), Some(http_date(0).as_str()));
    assert_eq!(header(reply, "cache-control"), Some("max-age=100"));
    assert_eq!(header(reply, "age"), Some("5"));
    assert_eq!(header(reply, "x-version"), None);
    assert_eq!(r.status(), "hit");
    assert_eq!(h.hit(5, inm("\"other\"")).local().status, 200);

    let ims = |t: u64| req("GET", "/f", &[("if-modified-since", &http_date(t))]);
    assert_eq!(h.hit(5, ims(0)).local().status, 304);
    assert_eq!(h.hit(5, ims(3)).local().status, 304);
    let mut earlier = get("/f");
    earlier
        .headers
        .append("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(h.hit(5, earlier).local().status, 200);
    // Preconditions meant for the origin bypass the cache.
    let r = h.run(
        5,
        req("GET", "/f", &[("if-match", "\"v1\"")]),
        resp(599, &[], b""),
    );
    assert_eq!(r.status(), "uncacheable");
}
