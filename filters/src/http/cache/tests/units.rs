//! Unit tests of the pure parts: dates, RFC 9111 rules, the LRU store.

use std::{rc::Rc, time::Duration, time::Instant};

use bytes::Bytes;

use super::super::{
    date,
    policy::{self, Fields, RequestCc, ResponseCc, Use},
    store::{Entry, Store, ENTRY_OVERHEAD},
};
use crate::{HeaderMap, RequestHead};

fn headers(fields: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::default();
    for (n, v) in fields {
        h.append(n, v);
    }
    h
}

// ---- dates ----

/// RFC 9110 §5.6.7's example instant: 1994-11-06 08:49:37 UTC.
const EXAMPLE: u64 = 784_111_777;

#[test]
fn date_three_forms_read_the_same_instant() {
    assert_eq!(date::parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
    assert_eq!(
        date::parse(b"Sunday, 06-Nov-94 08:49:37 GMT"),
        Some(EXAMPLE)
    );
    assert_eq!(date::parse(b"Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
    // Surrounding whitespace and case of names are tolerated.
    assert_eq!(
        date::parse(b"  sun, 06 NOV 1994 08:49:37 GMT "),
        Some(EXAMPLE)
    );
}

#[test]
fn date_epoch_leap_days_and_two_digit_years() {
    assert_eq!(date::parse(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    // 2000 is a leap year (divisible by 400): 29 Feb exists. 11017 days after the epoch.
    assert_eq!(
        date::parse(b"Tue, 29 Feb 2000 00:00:00 GMT"),
        Some(11_016 * 86_400)
    );
    // 1900 is not a leap year (divisible by 100, not 400); a valid date before 1970 reads as 0.
    assert_eq!(date::parse(b"Thu, 29 Feb 1900 00:00:00 GMT"), None);
    assert_eq!(date::parse(b"Mon, 01 Jan 1900 00:00:00 GMT"), Some(0));
    assert_eq!(date::parse(b"Thu, 29 Feb 2001 00:00:00 GMT"), None);
    assert_eq!(date::parse(b"Mon, 31 Apr 2024 00:00:00 GMT"), None);
    // RFC 850 years: below 70 is 20xx.
    assert_eq!(
        date::parse(b"Saturday, 01-Jan-00 00:00:00 GMT"),
        Some(10_957 * 86_400)
    );
    assert_eq!(date::parse(b"Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
}

#[test]
fn date_rejects_malformed() {
    for bad in [
        &b""[..],
        b"0",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nox 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 08:60:00 GMT",
        b"Sun, 00 Nov 1994 08:49:37 GMT",
        b"Xyz, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMTx",
        b"Sun Nov 6 08:49:37 1994",
        b"-1",
    ] {
        assert_eq!(date::parse(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn date_format_writes_imf_fixdate_and_round_trips() {
    assert_eq!(&date::format(EXAMPLE), b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(&date::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    // A spread of instants across leap years and centuries.
    let mut t = 0u64;
    while t < 8_000_000_000 {
        let s = date::format(t);
        assert_eq!(date::parse(&s), Some(t), "{}", String::from_utf8_lossy(&s));
        t += 86_400 * 37 + 3_661;
    }
}

// ---- Cache-Control ----

#[test]
fn request_directives() {
    let cc = RequestCc::parse(&headers(&[(
        "Cache-Control",
        "Max-Age=5, max-stale, min-fresh=\"7\", only-if-cached",
    )]));
    assert_eq!(cc.max_age, Some(5));
    assert_eq!(cc.max_stale, Some(u64::MAX));
    assert_eq!(cc.min_fresh, Some(7));
    assert!(cc.only_if_cached && !cc.no_cache && !cc.no_store);

    // Several lines; the first occurrence of a directive wins.
    let cc = RequestCc::parse(&headers(&[
        ("cache-control", "max-stale=30"),
        ("cache-control", "max-stale=99 ,no-store"),
    ]));
    assert_eq!(cc.max_stale, Some(30));
    assert!(cc.no_store);

    // Pragma counts only without Cache-Control.
    assert!(RequestCc::parse(&headers(&[("pragma", "no-cache")])).no_cache);
    assert!(
        !RequestCc::parse(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=9")
        ]))
        .no_cache
    );
    // Huge values are capped at 2^31.
    let cc = RequestCc::parse(&headers(&[(
        "cache-control",
        "max-age=99999999999999999999",
    )]));
    assert_eq!(cc.max_age, Some(1 << 31));
}

#[test]
fn response_directives() {
    let cc = ResponseCc::parse(&headers(&[(
        "cache-control",
        "public, s-maxage=10, max-age=20, no-cache=\"set-cookie, x-a\", proxy-revalidate",
    )]));
    assert!(cc.public && cc.no_cache && cc.proxy_revalidate && !cc.must_revalidate);
    assert_eq!((cc.s_maxage, cc.max_age), (Some(10), Some(20)));
    assert!(cc.no_stale());
    // The quoted list did not leak directives: x-a is not read as one.
    let cc = ResponseCc::parse(&headers(&[("cache-control", "private=\"no-store\"")]));
    assert!(cc.private && !cc.no_store);
    // An invalid max-age reads as 0 (stale).
    let cc = ResponseCc::parse(&headers(&[("cache-control", "max-age=soon")]));
    assert_eq!(cc.max_age, Some(0));
    let cc = ResponseCc::parse(&headers(&[("cache-control", "max-age=60")]));
    assert!(!cc.no_stale());
}

#[test]
fn freshness_lifetime_precedence() {
    let now = 1_000_000;
    let life = |h: &HeaderMap| policy::freshness_lifetime(&ResponseCc::parse(h), h, now);
    let d = |t: u64| String::from_utf8(date::format(t).to_vec()).unwrap();
    let expires = d(now + 500);
    let date_h = d(now - 100);
    assert_eq!(
        life(&headers(&[
            ("cache-control", "max-age=20, s-maxage=40"),
            ("expires", &expires)
        ])),
        Some(40)
    );
    assert_eq!(
        life(&headers(&[
            ("cache-control", "max-age=20"),
            ("expires", &expires)
        ])),
        Some(20)
    );
    // Expires minus Date.
    assert_eq!(
        life(&headers(&[("expires", &expires), ("date", &date_h)])),
        Some(600)
    );
    // No Date: Expires minus the time received.
    assert_eq!(life(&headers(&[("expires", &expires)])), Some(500));
    // Expires before Date, and an invalid Expires: already expired.
    assert_eq!(
        life(&headers(&[("expires", &date_h), ("date", &expires)])),
        Some(0)
    );
    assert_eq!(life(&headers(&[("expires", "0")])), Some(0));
    // Nothing explicit.
    assert_eq!(life(&headers(&[("cache-control", "public")])), None);
}

#[test]
fn initial_age_is_the_larger_of_apparent_age_and_age() {
    let now = 1_000_000;
    let d = |t: u64| String::from_utf8(date::format(t).to_vec()).unwrap();
    assert_eq!(
        policy::initial_age(&headers(&[("date", &d(now - 30))]), now),
        30
    );
    assert_eq!(
        policy::initial_age(&headers(&[("date", &d(now - 30)), ("age", "100")]), now),
        100
    );
    // A Date in the future (clock skew) gives 0, not a negative age.
    assert_eq!(
        policy::initial_age(&headers(&[("date", &d(now + 30))]), now),
        0
    );
    assert_eq!(policy::initial_age(&headers(&[("age", "junk")]), now), 0);
}

#[test]
fn vary_masks_and_values() {
    let allowed: Vec<Box<str>> = vec!["accept-encoding".into(), "origin".into()];
    assert_eq!(policy::vary_mask(&headers(&[]), &allowed), Some(0));
    assert_eq!(
        policy::vary_mask(
            &headers(&[("vary", "Origin"), ("vary", " accept-encoding ,")]),
            &allowed
        ),
        Some(0b11)
    );
    assert_eq!(
        policy::vary_mask(&headers(&[("vary", "*")]), &allowed),
        None
    );
    assert_eq!(
        policy::vary_mask(&headers(&[("vary", "origin, cookie")]), &allowed),
        None
    );

    // Values: whitespace and line splits normalised; absent differs from empty.
    let mut a = Vec::new();
    let mut b = Vec::new();
    policy::write_vary_values(
        &headers(&[("accept-encoding", "gzip, br")]),
        &allowed,
        0b01,
        &mut a,
    );
    policy::write_vary_values(
        &headers(&[("Accept-Encoding", "gzip"), ("accept-encoding", "br")]),
        &allowed,
        0b01,
        &mut b,
    );
    assert_eq!(a, b);
    policy::write_vary_values(&headers(&[]), &allowed, 0b01, &mut a);
    policy::write_vary_values(&headers(&[("accept-encoding", "")]), &allowed, 0b01, &mut b);
    assert_ne!(a, b);

    // A snapshot of every allowed header, narrowed to the response's Vary, equals what a
    // lookup writes for that Vary.
    let req = headers(&[("origin", "https://a"), ("accept-encoding", "gzip")]);
    let mut snap = Vec::new();
    policy::write_vary_values(&req, &allowed, policy::all_bits(allowed.len()), &mut snap);
    for mask in 0..4u64 {
        policy::write_vary_values(&req, &allowed, mask, &mut a);
        assert_eq!(
            &*policy::select_vary(&snap, allowed.len(), mask),
            &a[..],
            "mask {mask}"
        );
    }
}

#[test]
fn entity_tags_and_conditionals() {
    assert!(policy::etag_weak_eq(b"W/\"1\"", b"\"1\""));
    assert!(!policy::etag_strong_eq(b"W/\"1\"", b"\"1\""));
    assert!(policy::etag_strong_eq(b"\"1\"", b"\"1\""));
    assert!(!policy::etag_weak_eq(b"\"1\"", b"\"2\""));

    let stored = headers(&[
        ("etag", "\"v,2\""),
        ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ]);
    let nm = |h: &[(&str, &str)]| policy::not_modified(&headers(h), &stored);
    assert!(nm(&[("if-none-match", "\"x\", W/\"v,2\"")]));
    assert!(nm(&[("if-none-match", "*")]));
    assert!(!nm(&[("if-none-match", "\"v\"")]));
    // If-None-Match present: If-Modified-Since is not looked at.
    assert!(!nm(&[
        ("if-none-match", "\"x\""),
        ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
    ]));
    assert!(nm(&[(
        "if-modified-since",
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )]));
    assert!(nm(&[(
        "if-modified-since",
        "Mon, 07 Nov 1994 00:00:00 GMT"
    )]));
    assert!(!nm(&[(
        "if-modified-since",
        "Sat, 05 Nov 1994 00:00:00 GMT"
    )]));
    assert!(!nm(&[("if-modified-since", "yesterday")]));

    // Which 304 may update a stored response (RFC 9111 §4.3.4).
    assert!(policy::validates(&headers(&[("etag", "\"v,2\"")]), &stored));
    assert!(!policy::validates(&headers(&[("etag", "\"v3\"")]), &stored));
    assert!(policy::validates(&headers(&[]), &stored));
    assert!(!policy::validates(
        &headers(&[("last-modified", "Mon, 07 Nov 1994 00:00:00 GMT")]),
        &stored
    ));
}

#[test]
fn cache_key_lowercases_the_authority_only() {
    let mut k1 = Vec::new();
    let mut k2 = Vec::new();
    policy::write_key(
        &RequestHead::new(b"GET", "http", b"Example.COM", b"/A?x=1"),
        &mut k1,
    );
    policy::write_key(
        &RequestHead::new(b"HEAD", "http", b"example.com", b"/A?x=1"),
        &mut k2,
    );
    assert_eq!(k1, k2);
    assert_eq!(k1, b"http example.com /A?x=1");
    policy::write_key(
        &RequestHead::new(b"GET", "https", b"example.com", b"/A?x=1"),
        &mut k2,
    );
    assert_ne!(k1, k2);
    policy::write_key(
        &RequestHead::new(b"GET", "http", b"example.com", b"/a?x=1"),
        &mut k2,
    );
    assert_ne!(k1, k2);
}

fn entry(lifetime: u64, initial_age: u64, at: Instant) -> Entry {
    Entry {
        status: 200,
        headers: HeaderMap::default(),
        body: Bytes::new(),
        vary_mask: 0,
        vary_values: Box::default(),
        stored_at: at,
        initial_age,
        lifetime,
        no_cache: false,
        no_stale: false,
    }
}

#[test]
fn usable_follows_request_directives() {
    let t0 = Instant::now();
    let e = entry(100, 10, t0);
    assert_eq!(e.age(t0 + Duration::from_secs(50)), 60);
    let cc = |v: &str| RequestCc::parse(&headers(&[("cache-control", v)]));
    let none = RequestCc::default();
    assert_eq!(policy::usable(&e, 99, &none), Use::Fresh);
    assert_eq!(policy::usable(&e, 100, &none), Use::Revalidate);
    assert_eq!(policy::usable(&e, 50, &cc("no-cache")), Use::Revalidate);
    assert_eq!(policy::usable(&e, 0, &cc("max-age=0")), Use::Revalidate);
    assert_eq!(policy::usable(&e, 50, &cc("max-age=50")), Use::Fresh);
    assert_eq!(policy::usable(&e, 51, &cc("max-age=50")), Use::Revalidate);
    assert_eq!(policy::usable(&e, 80, &cc("min-fresh=20")), Use::Fresh);
    assert_eq!(policy::usable(&e, 81, &cc("min-fresh=20")), Use::Revalidate);
    assert_eq!(policy::usable(&e, 130, &cc("max-stale=30")), Use::Stale);
    assert_eq!(
        policy::usable(&e, 131, &cc("max-stale=30")),
        Use::Revalidate
    );
    assert_eq!(policy::usable(&e, 100_000, &cc("max-stale")), Use::Stale);
    // max-age bounds max-stale.
    assert_eq!(
        policy::usable(&e, 120, &cc("max-stale, max-age=110")),
        Use::Revalidate
    );
    let mut strict = entry(100, 0, t0);
    strict.no_stale = true;
    assert_eq!(
        policy::usable(&strict, 101, &cc("max-stale")),
        Use::Revalidate
    );
    strict.no_cache = true;
    assert_eq!(policy::usable(&strict, 0, &none), Use::Revalidate);
}

/// `min-fresh` with `max-stale` (found by the `cache_policy` fuzz target): `min-fresh` counts as
/// age against `max-stale` too, so an entry only gets less usable as it ages. A 6 s lifetime
/// was refetched while still fresh, yet served as stale once 2^64 - 1 s old.
#[test]
fn usable_min_fresh_with_max_stale_only_gets_staler() {
    let e = entry(6, 0, Instant::now());
    let cc = |v: &str| RequestCc::parse(&headers(&[("cache-control", v)]));
    let both = cc("max-stale, min-fresh=66");
    assert_eq!(policy::usable(&e, 0, &both), Use::Stale);
    assert_eq!(policy::usable(&e, u64::MAX, &both), Use::Stale);
    // 5 s past the lifetime plus 5 s wanted ahead: 10 s of staleness.
    let e = entry(100, 0, Instant::now());
    let bounded = cc("max-stale=10, min-fresh=5");
    assert_eq!(policy::usable(&e, 95, &bounded), Use::Fresh);
    assert_eq!(policy::usable(&e, 96, &bounded), Use::Stale);
    assert_eq!(policy::usable(&e, 105, &bounded), Use::Stale);
    assert_eq!(policy::usable(&e, 106, &bounded), Use::Revalidate);
    let rank = |u| match u {
        Use::Fresh => 0,
        Use::Stale => 1,
        Use::Revalidate => 2,
    };
    for (life, mf, ms) in [(6, 66, None), (100, 5, Some(10)), (0, 1, Some(0))] {
        let e = entry(life, 0, Instant::now());
        let req = RequestCc {
            min_fresh: Some(mf),
            max_stale: Some(ms.unwrap_or(u64::MAX)),
            ..RequestCc::default()
        };
        let uses: Vec<u8> = (0..200)
            .chain([u64::MAX])
            .map(|age| rank(policy::usable(&e, age, &req)))
            .collect();
        assert!(uses.is_sorted(), "{life} {mf} {ms:?}: {uses:?}");
    }
}

// ---- store ----

fn sized(body: usize, vary: &[u8]) -> Rc<Entry> {
    let mut e = entry(60, 0, Instant::now());
    e.body = Bytes::from(vec![b'x'; body]);
    e.vary_mask = u64::from(!vary.is_empty());
    e.vary_values = vary.into();
    Rc::new(e)
}

fn key(k: &str) -> Rc<[u8]> {
    Rc::from(k.as_bytes())
}

#[test]
fn store_evicts_least_recently_used() {
    // Each entry: overhead + 1-byte key + 100-byte body.
    let one = ENTRY_OVERHEAD + 1 + 100;
    let mut s = Store::new(3 * one);
    for k in ["a", "b", "c"] {
        let r = s.insert(key(k), sized(100, b""));
        assert!(r.stored && r.evicted == 0);
    }
    assert_eq!(s.bytes(), 3 * one);
    // Use "a": "b" is now the least recently used.
    let (id, _) = s.find(b"a", |_| true).unwrap();
    s.touch(id);
    let r = s.insert(key("d"), sized(100, b""));
    assert_eq!(r.evicted, 1);
    assert_eq!(
        s.lru_order(),
        vec![b"d".to_vec(), b"a".to_vec(), b"c".to_vec()]
    );
    assert!(s.find(b"b", |_| true).is_none());
    assert_eq!(s.bytes(), 3 * one);
    // A bigger entry evicts as many as it needs.
    let r = s.insert(key("e"), sized(100 + one, b""));
    assert_eq!(r.evicted, 2);
    assert_eq!(s.lru_order(), vec![b"e".to_vec(), b"d".to_vec()]);
    assert_eq!(s.bytes(), 3 * one);
    // Larger than the whole store: not stored, nothing evicted.
    let r = s.insert(key("f"), sized(3 * one, b""));
    assert!(!r.stored && r.evicted == 0);
    assert_eq!(s.len(), 2);
}

#[test]
fn store_keeps_variants_and_replaces_the_same_one() {
    let mut s = Store::new(1 << 20);
    s.insert(key("k"), sized(1, b"gzip"));
    s.insert(key("k"), sized(2, b"br"));
    assert_eq!(s.len(), 2);
    let (_, e) = s.find(b"k", |e| *e.vary_values == *b"gzip").unwrap();
    assert_eq!(e.body.len(), 1);
    // Same variant again: replaced, not added.
    s.insert(key("k"), sized(3, b"gzip"));
    assert_eq!(s.len(), 2);
    let (_, e) = s.find(b"k", |e| *e.vary_values == *b"gzip").unwrap();
    assert_eq!(e.body.len(), 3);
    let both = 2 * (ENTRY_OVERHEAD + 1) + 3 + 4 + 2 + 2;
    assert_eq!(s.bytes(), both);
    assert_eq!(s.remove_key(b"k"), 2);
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 0);
    assert_eq!(s.remove_key(b"k"), 0);
}

#[test]
fn store_ids_go_stale_when_slots_are_reused() {
    let mut s = Store::new(1 << 20);
    s.insert(key("a"), sized(1, b""));
    let (old, _) = s.find(b"a", |_| true).unwrap();
    assert!(s.remove(old));
    assert!(!s.remove(old));
    s.insert(key("b"), sized(1, b""));
    // The slot is reused by "b": the old id must not reach it.
    assert!(s.get(old).is_none());
    s.touch(old);
    assert!(!s.remove(old));
    assert_eq!(s.len(), 1);
    let (new, e) = s.find(b"b", |_| true).unwrap();
    assert!(Rc::ptr_eq(s.get(new).unwrap(), &e));
}

/// One pass finds every field the cache reads, whatever the case, and nothing else.
#[test]
fn fields_scan() {
    let all = headers(&[
        ("Cache-Control", "max-age=1"),
        ("PRAGMA", "no-cache"),
        ("range", "bytes=0-1"),
        ("Authorization", "x"),
        ("If-None-Match", "\"a\""),
        ("if-range", "\"a\""),
    ]);
    let f = Fields::scan(&all);
    for want in [
        Fields::CACHE_CONTROL,
        Fields::PRAGMA,
        Fields::RANGE,
        Fields::AUTHORIZATION,
        Fields::CONDITIONALS,
        Fields::ORIGIN_PRECONDITIONS,
    ] {
        assert!(f.has(want), "{want:?}");
    }
    for (name, want) in [
        ("if-modified-since", Fields::CONDITIONALS),
        ("If-Match", Fields::ORIGIN_PRECONDITIONS),
        ("if-unmodified-since", Fields::ORIGIN_PRECONDITIONS),
    ] {
        assert_eq!(Fields::scan(&headers(&[(name, "x")])), want, "{name}");
    }
    let none = Fields::scan(&headers(&[
        ("ranges", "x"),
        ("x-cache-control", "x"),
        ("if-none-matc", "x"),
        ("content-type", "x"),
    ]));
    assert_eq!(none, Fields::default());
    // Without `Cache-Control` or `Pragma` nothing is parsed: the defaults.
    let cc = RequestCc::parse_seen(&all, Fields::default());
    assert_eq!(cc, RequestCc::default());
}
