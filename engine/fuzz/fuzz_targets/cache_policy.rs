//! Fuzz target: the HTTP cache's rules over header values an upstream and a client control.
//!
//! The input is split into three header sections (a stored response, a fresh response, a
//! request) of `name: value` lines, and a clock. Every rule runs over them: `Cache-Control` of
//! both sides, freshness lifetime, initial age, `Vary` selection, validators and conditionals,
//! HTTP dates. Nothing may panic or overflow; what is checked beyond that: an HTTP date the cache
//! writes reads back as the same second, `Vary` values written for a mask are the ones selected
//! from a snapshot of all of them, and a response is never fresh for longer than its own
//! `s-maxage` or `max-age` says.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_fuzz::cache::{date, policy};
use ringway_fuzz::HeaderMap;

/// Header names the cache may vary on, as its config gives them.
const ALLOWED: [&str; 3] = ["accept-encoding", "accept-language", "x-variant"];

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

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 {
        return;
    }
    let now = u64::from_le_bytes(input[..8].try_into().unwrap());
    let mut sections = input[8..].split(|&b| b == 0xff);
    let stored = headers(sections.next().unwrap_or_default());
    let fresh = headers(sections.next().unwrap_or_default());
    let request = headers(sections.next().unwrap_or_default());

    // Cache-Control both ways, lifetimes and ages.
    for h in [&stored, &fresh] {
        let cc = policy::ResponseCc::parse(h);
        if let Some(life) = policy::freshness_lifetime(&cc, h, now) {
            if let Some(limit) = cc.s_maxage.or(cc.max_age) {
                assert_eq!(life, limit, "a lifetime other than the response's own");
            }
        }
        let _ = cc.no_stale();
        let _ = policy::initial_age(h, now);
    }
    let seen = policy::Fields::scan(&request);
    let _ = policy::RequestCc::parse_seen(&request, seen);

    // Vary: the values written for a mask are the ones selected from all of them.
    let allowed: Vec<Box<str>> = ALLOWED.iter().map(|&n| n.into()).collect();
    if let Some(mask) = policy::vary_mask(&stored, &allowed) {
        let mut all = Vec::new();
        policy::write_vary_values(
            &request,
            &allowed,
            policy::all_bits(allowed.len()),
            &mut all,
        );
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
    if let (Some(a), Some(b)) = (stored.get_bytes("etag"), fresh.get_bytes("etag")) {
        if policy::etag_strong_eq(a, b) {
            assert!(
                policy::etag_weak_eq(a, b),
                "strong match without a weak one"
            );
        }
    }

    // Dates: whatever the headers hold parses or not; what the cache writes reads back.
    for h in [&stored, &fresh, &request] {
        for (_, v) in h.iter() {
            if let Some(secs) = date::parse(v) {
                if secs <= LAST_DATE {
                    assert_eq!(date::parse(&date::format(secs)), Some(secs), "{secs}");
                }
            }
        }
    }
    let _ = date::format(now);
    if now <= LAST_DATE {
        assert_eq!(date::parse(&date::format(now)), Some(now), "{now}");
    }
});
