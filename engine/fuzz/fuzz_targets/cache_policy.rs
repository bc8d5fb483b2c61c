//! Fuzz target: the HTTP cache's rules over header values an upstream and a client control.
//!
//! The input is a clock (`now`, 8 bytes LE), a step forward from it (4 bytes LE), how many
//! header names the cache may vary on (1 byte, 0..=64), then three header sections separated by
//! 0xff (a stored response, a fresh response, a request) of `name: value` lines. Every rule runs
//! over them: `Cache-Control` of both sides, freshness lifetime, initial age, whether an entry
//! may be used, `Vary` selection, validators and conditionals, HTTP dates. Nothing may panic or
//! overflow (the fuzz build has overflow checks). What is checked beyond that, each from the
//! code's docs:
//!
//! * directives: a name never holds a separator (`=`, `,`, whitespace); written back (values quoted)
//!   they read back the same; a delta-seconds is the number, capped at 2^31;
//! * lifetime and age: a lifetime is the response's own `s-maxage`/`max-age` when it has one,
//!   does not depend on the clock when `Date` and `Expires` are both valid, and never grows as
//!   the clock moves on; an initial age is at least `Age` and never shrinks as the clock moves
//!   on; an entry only gets staler as it ages (fresh, then stale, then revalidate);
//! * `Vary`: the mask names only allowed headers, and the values written for it are the ones
//!   selected from a snapshot of all of them;
//! * validators: a response validates itself; tag comparison is symmetric, reflexive for the
//!   weak one, and strong implies weak; a request carrying the stored entity tag, or the stored
//!   `Last-Modified` written back as a date, is answered "not modified";
//! * dates: a date the cache writes reads back as the same second in each of the three forms
//!   (IMF-fixdate, RFC 850 for years 1970-2069, asctime); an IMF-fixdate read is written back as
//!   it was (but for the weekday, which is not checked, and case).

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ringway_fuzz::cache::{date, policy, store::Entry};
use ringway_fuzz::HeaderMap;

/// Header names the cache may vary on, as its config gives them (lower case, at most 64); past
/// these three, `x-3` .. `x-63`.
const NAMED: [&str; 3] = ["accept-encoding", "accept-language", "x-variant"];

/// RFC 9111 §1.2.2's cap on a delta-seconds.
const DELTA_MAX: u64 = 1 << 31;

/// The last second [`date::format`] writes as itself (9999-12-31T23:59:59Z).
const LAST_DATE: u64 = 253_402_300_799;

/// `name: value` lines (split on LF; CR and NUL, which the codec never lets through, dropped).
fn headers(section: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::default();
    for line in section.split(|&b| b == b'\n') {
        let line: Vec<u8> = line
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != 0)
            .collect();
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line[..colon].trim_ascii();
            if !name.is_empty() {
                h.append(name, line[colon + 1..].trim_ascii());
            }
        }
    }
    h
}

/// The directives of every `cache-control` line of `h`, as `for_each_directive` gives them.
fn directives(h: &HeaderMap) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    policy::for_each_directive(h, "cache-control", |n, v| {
        out.push((n.to_vec(), v.map(<[u8]>::to_vec)));
    });
    out
}

/// Directive names and values as they read; `directives` written back when they can be.
fn check_directives(h: &HeaderMap) {
    let read = directives(h);
    for (n, v) in &read {
        assert!(
            !n.iter().any(|b| matches!(b, b'=' | b',' | b' ' | b'\t')),
            "separator in directive name {n:?}"
        );
        if let Some(v) = v {
            let want = v.iter().try_fold(0u64, |a, &b| {
                let d = u64::from(b.wrapping_sub(b'0'));
                (d < 10).then(|| a.saturating_mul(10).saturating_add(d).min(DELTA_MAX))
            });
            let want = want.filter(|_| !v.is_empty());
            assert_eq!(policy::delta_seconds(v), want, "delta-seconds {v:?}");
        }
    }
    // A quoted value cannot hold a quote or a backslash here (they would need escapes).
    if read.iter().any(|(_, v)| {
        v.as_ref()
            .is_some_and(|v| v.contains(&b'"') || v.contains(&b'\\'))
    }) {
        return;
    }
    let mut line = Vec::new();
    for (i, (n, v)) in read.iter().enumerate() {
        if i > 0 {
            line.extend_from_slice(b", ");
        }
        line.extend_from_slice(n);
        if let Some(v) = v {
            line.extend_from_slice(b"=\"");
            line.extend_from_slice(v);
            line.push(b'"');
        }
    }
    let mut again = HeaderMap::default();
    again.append("cache-control", &line);
    assert_eq!(directives(&again), read, "written back as {line:?}");
}

/// Fresh before stale before revalidate: what a use of an entry may only move towards as it ages.
fn rank(u: policy::Use) -> u8 {
    match u {
        policy::Use::Fresh => 0,
        policy::Use::Stale => 1,
        policy::Use::Revalidate => 2,
    }
}

/// A well-formed entity tag (`"..."` or `W/"..."`, no quote inside).
fn is_entity_tag(t: &[u8]) -> bool {
    let t = t.strip_prefix(b"W/").unwrap_or(t);
    t.len() >= 2 && t[0] == b'"' && t[t.len() - 1] == b'"' && !t[1..t.len() - 1].contains(&b'"')
}

/// `secs` in RFC 850 form (two-digit year) and in asctime form, from its IMF-fixdate.
fn other_forms(secs: u64) -> (Vec<u8>, Vec<u8>) {
    const LONG: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let imf = date::format(secs);
    let s = |r: std::ops::Range<usize>| std::str::from_utf8(&imf[r]).unwrap();
    let wday = LONG[((secs / 86_400 + 4) % 7) as usize];
    let (day, month, year, time) = (s(5..7), s(8..11), s(12..16), s(17..25));
    let rfc850 = format!("{wday}, {day}-{month}-{} {time} GMT", &year[2..]);
    let aday = day
        .strip_prefix('0')
        .map_or(day.to_owned(), |d| format!(" {d}"));
    let asctime = format!("{} {month} {aday} {time} {year}", s(0..3));
    (rfc850.into_bytes(), asctime.into_bytes())
}

fn check_date(secs: u64) {
    if secs > LAST_DATE {
        return;
    }
    assert_eq!(date::parse(&date::format(secs)), Some(secs), "{secs}");
    let (rfc850, asctime) = other_forms(secs);
    assert_eq!(date::parse(&asctime), Some(secs), "{asctime:?}");
    // 1970-01-01 .. 2069-12-31: the years a two-digit RFC 850 year stands for.
    if secs < 3_155_760_000 {
        assert_eq!(date::parse(&rfc850), Some(secs), "{rfc850:?}");
    }
}

fn check_read_date(v: &[u8]) {
    let Some(secs) = date::parse(v) else {
        return;
    };
    // A leap second (`:60`) on 9999-12-31 is the one second past the last.
    assert!(secs <= LAST_DATE + 1, "{v:?} read as {secs}");
    check_date(secs);
    let v = v.trim_ascii();
    // IMF-fixdate written back as read, when not a leap second and not before 1970 (read as 0).
    if v.get(3) == Some(&b',') && v.get(23..25) != Some(b"60") && secs > 0 {
        assert!(
            date::format(secs)[3..].eq_ignore_ascii_case(&v[3..]),
            "{v:?} read as {secs}"
        );
    }
}

/// Lifetime, age and use of the response `h` at `now` and `later`.
fn check_response(h: &HeaderMap, req: &policy::RequestCc, now: u64, later: u64) {
    check_directives(h);
    let cc = policy::ResponseCc::parse(h);
    assert!(cc.max_age.is_none_or(|s| s <= DELTA_MAX));
    assert!(cc.s_maxage.is_none_or(|s| s <= DELTA_MAX));
    if cc.s_maxage.is_some() {
        assert!(cc.no_stale(), "s-maxage implies proxy-revalidate");
    }
    let life = policy::freshness_lifetime(&cc, h, now);
    let life_later = policy::freshness_lifetime(&cc, h, later);
    if let Some(limit) = cc.s_maxage.or(cc.max_age) {
        assert_eq!(
            life,
            Some(limit),
            "a lifetime other than the response's own"
        );
        assert_eq!(life_later, Some(limit));
    }
    assert_eq!(life.is_some(), life_later.is_some());
    if let (Some(a), Some(b)) = (life, life_later) {
        assert!(
            b <= a,
            "lifetime grew from {a} to {b} as the clock moved on"
        );
        let dated = h.get_bytes("date").and_then(date::parse).is_some();
        let expires = h.get_bytes("expires").and_then(date::parse).is_some();
        if dated || !expires {
            assert_eq!(a, b, "lifetime moved with the clock");
        }
    }

    let age = policy::initial_age(h, now);
    let age_later = policy::initial_age(h, later);
    assert!(age <= age_later, "age shrank from {age} to {age_later}");
    if let Some(a) = h
        .get_bytes("age")
        .and_then(|v| policy::delta_seconds(v.trim_ascii()))
    {
        assert!(age >= a, "age {age} below Age {a}");
    }

    let entry = Entry {
        status: 200,
        headers: h.clone(),
        body: bytes::Bytes::new(),
        vary_mask: 0,
        vary_values: Box::default(),
        stored_at: Instant::now(),
        initial_age: age,
        lifetime: life.unwrap_or(0),
        no_cache: cc.no_cache,
        no_stale: cc.no_stale(),
    };
    let _ = entry.age(Instant::now());
    let ages = [
        0,
        age,
        age_later,
        age_later.saturating_add(later - now),
        u64::MAX,
    ];
    let mut last = 0;
    for a in ages {
        let used = policy::usable(&entry, a, req);
        match used {
            policy::Use::Fresh => assert!(entry.lifetime > a && !entry.no_cache),
            policy::Use::Stale => assert!(req.max_stale.is_some() && !entry.no_stale),
            policy::Use::Revalidate => {}
        }
        assert!(rank(used) >= last, "{used:?} at age {a} after a staler use");
        last = rank(used);
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 13 {
        return;
    }
    let now = u64::from_le_bytes(input[..8].try_into().unwrap());
    let step = u32::from_le_bytes(input[8..12].try_into().unwrap());
    let later = now.saturating_add(u64::from(step));
    let n_allowed = usize::from(input[12]) % 65;
    let mut sections = input[13..].split(|&b| b == 0xff);
    let stored = headers(sections.next().unwrap_or_default());
    let fresh = headers(sections.next().unwrap_or_default());
    let request = headers(sections.next().unwrap_or_default());

    // The request's Cache-Control (or Pragma).
    check_directives(&request);
    let seen = policy::Fields::scan(&request);
    let rcc = policy::RequestCc::parse_seen(&request, seen);
    assert!(rcc.max_age.is_none_or(|s| s <= DELTA_MAX));
    assert!(rcc.min_fresh.is_none_or(|s| s <= DELTA_MAX));
    assert!(rcc
        .max_stale
        .is_none_or(|s| s <= DELTA_MAX || s == u64::MAX));
    if !seen.has(policy::Fields::CACHE_CONTROL | policy::Fields::PRAGMA) {
        assert_eq!(rcc, policy::RequestCc::default());
    }

    // Responses: lifetimes, ages, use.
    check_response(&stored, &rcc, now, later);
    check_response(&fresh, &rcc, now, later);

    // Vary: the values written for a mask are the ones selected from all of them.
    let allowed: Vec<Box<str>> = (0..n_allowed)
        .map(|i| {
            NAMED
                .get(i)
                .map_or_else(|| format!("x-{i}"), |n| n.to_string())
        })
        .map(String::into_boxed_str)
        .collect();
    let all_bits = policy::all_bits(allowed.len());
    if let Some(mask) = policy::vary_mask(&stored, &allowed) {
        assert_eq!(mask & !all_bits, 0, "mask {mask:b} past {n_allowed} names");
        let mut all = Vec::new();
        policy::write_vary_values(&request, &allowed, all_bits, &mut all);
        let mut some = Vec::new();
        policy::write_vary_values(&request, &allowed, mask, &mut some);
        assert_eq!(
            &*policy::select_vary(&all, allowed.len(), mask),
            &some[..],
            "mask {mask:b}"
        );
    }

    // Validators and conditionals.
    let _ = policy::not_modified(&request, &stored);
    let _ = policy::validates(&fresh, &stored);
    for h in [&stored, &fresh] {
        assert!(
            policy::validates(h, h),
            "a response that does not validate itself"
        );
    }
    if let (Some(a), Some(b)) = (stored.get_bytes("etag"), fresh.get_bytes("etag")) {
        let strong = policy::etag_strong_eq(a, b);
        let weak = policy::etag_weak_eq(a, b);
        assert!(!strong || weak, "strong match without a weak one");
        assert_eq!(strong, policy::etag_strong_eq(b, a));
        assert_eq!(weak, policy::etag_weak_eq(b, a));
        assert!(policy::etag_weak_eq(a, a));
    }
    if let Some(tag) = stored.get_bytes("etag").filter(|t| is_entity_tag(t)) {
        let mut req = HeaderMap::default();
        req.append("if-none-match", tag);
        assert!(
            policy::not_modified(&req, &stored),
            "If-None-Match: {tag:?}"
        );
    }
    if let Some(lm) = stored
        .get_bytes("last-modified")
        .and_then(date::parse)
        .filter(|&lm| lm <= LAST_DATE)
    {
        let mut req = HeaderMap::default();
        req.append("if-modified-since", date::format(lm));
        assert!(
            policy::not_modified(&req, &stored),
            "If-Modified-Since {lm}"
        );
    }

    // Dates: whatever the headers hold parses or not; what the cache writes reads back.
    for h in [&stored, &fresh, &request] {
        for (_, v) in h.iter() {
            check_read_date(v);
        }
    }
    let _ = date::format(now);
    let _ = date::format(later);
    check_date(now);
    check_date(later);
});
