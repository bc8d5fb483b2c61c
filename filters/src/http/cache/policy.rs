//! RFC 9111 rules for a shared cache, as pure functions over heads: the cache key, the
//! `Cache-Control` directives of requests and responses, whether a response may be stored, its
//! freshness lifetime and age, `Vary`, and validators (`ETag`, `Last-Modified`) with the
//! client's conditionals. [`super`] (the filter) decides with these; the store never looks at
//! headers. Nothing here allocates but [`select_vary`]; the key and `Vary` values are written
//! into the caller's buffers.

use crate::stream::{eq_name, HeaderMap, RequestHead};

use super::{date, store::Entry};

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_MAX: u64 = 1 << 31;

/// Statuses a cache may store (RFC 9110 §15.1's heuristically cacheable codes, less 206, whose
/// ranges this cache does not handle); this cache still wants an explicit lifetime for them.
pub fn status_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Write the cache key of `head` into `out`: scheme, authority (lower-cased), path and query,
/// separated by a space (which none of them can hold).
pub fn write_key(head: &RequestHead, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(head.scheme.as_bytes());
    out.push(b' ');
    let host = out.len();
    out.extend_from_slice(head.authority());
    out[host..].make_ascii_lowercase();
    out.push(b' ');
    out.extend_from_slice(head.path());
}

/// Call `f(name, value)` for each directive of every `name` field (comma lists, `token` or
/// `token=value`, quoted values given without their quotes and unescaped as written).
pub fn for_each_directive(
    headers: &HeaderMap,
    name: &str,
    mut f: impl FnMut(&[u8], Option<&[u8]>),
) {
    for line in headers.get_all(name) {
        let mut rest = line;
        loop {
            rest = skip(rest, |b| b == b',' || b == b' ' || b == b'\t');
            if rest.is_empty() {
                break;
            }
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'=' | b',' | b' ' | b'\t'))
                .unwrap_or(rest.len());
            let dname = &rest[..end];
            rest = skip(&rest[end..], |b| b == b' ' || b == b'\t');
            let mut value = None;
            if let Some(v) = rest.strip_prefix(b"=") {
                let v = skip(v, |b| b == b' ' || b == b'\t');
                if let Some(q) = v.strip_prefix(b"\"") {
                    let close = quoted_end(q);
                    value = Some(&q[..close]);
                    rest = q.get(close + 1..).unwrap_or_default();
                } else {
                    let end = v
                        .iter()
                        .position(|&b| matches!(b, b',' | b' ' | b'\t'))
                        .unwrap_or(v.len());
                    value = Some(&v[..end]);
                    rest = &v[end..];
                }
            }
            f(dname, value);
            // Anything up to the next comma is junk after the directive: skip it.
            let next = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            rest = &rest[next..];
        }
    }
}

/// Index of the closing quote of a quoted-string whose opening quote is already consumed
/// (`s.len()` when it is not closed).
fn quoted_end(s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    s.len()
}

fn skip(s: &[u8], f: impl Fn(u8) -> bool) -> &[u8] {
    let n = s.iter().position(|&b| !f(b)).unwrap_or(s.len());
    &s[n..]
}

/// A delta-seconds value (RFC 9111 §1.2.2): digits only, capped at 2^31.
pub fn delta_seconds(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        v.iter()
            .fold(0u64, |a, &b| (a * 10 + u64::from(b - b'0')).min(DELTA_MAX)),
    )
}

/// The request's `Cache-Control` (RFC 9111 §5.2.1), with `Pragma: no-cache` when there is no
/// `Cache-Control` (§5.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCc {
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    pub max_age: Option<u64>,
    /// `Some(u64::MAX)`: `max-stale` without a value (any staleness).
    pub max_stale: Option<u64>,
    pub min_fresh: Option<u64>,
}

impl RequestCc {
    #[cfg(test)]
    pub fn parse(h: &HeaderMap) -> RequestCc {
        RequestCc::parse_seen(h, Fields::scan(h))
    }

    /// As [`RequestCc::parse`], with the request's [`Fields`] known.
    pub fn parse_seen(h: &HeaderMap, seen: Fields) -> RequestCc {
        let mut cc = RequestCc::default();
        if !seen.has(Fields::PRAGMA | Fields::CACHE_CONTROL) {
            return cc;
        }
        if !seen.has(Fields::CACHE_CONTROL) {
            for_each_directive(h, "pragma", |n, _| {
                cc.no_cache |= n.eq_ignore_ascii_case(b"no-cache");
            });
            return cc;
        }
        for_each_directive(h, "cache-control", |n, v| {
            let secs = v.and_then(delta_seconds);
            if n.eq_ignore_ascii_case(b"no-cache") {
                cc.no_cache = true;
            } else if n.eq_ignore_ascii_case(b"no-store") {
                cc.no_store = true;
            } else if n.eq_ignore_ascii_case(b"only-if-cached") {
                cc.only_if_cached = true;
            } else if n.eq_ignore_ascii_case(b"max-age") {
                cc.max_age = cc.max_age.or(secs);
            } else if n.eq_ignore_ascii_case(b"max-stale") {
                cc.max_stale = cc.max_stale.or(Some(secs.unwrap_or(u64::MAX)));
            } else if n.eq_ignore_ascii_case(b"min-fresh") {
                cc.min_fresh = cc.min_fresh.or(secs);
            }
        });
        cc
    }
}

/// The response's `Cache-Control` (RFC 9111 §5.2.2) as a shared cache reads it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCc {
    pub no_store: bool,
    /// `no-cache`, with or without a field list (a list is treated as the whole response).
    pub no_cache: bool,
    /// `private`, with or without a field list.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// An invalid value reads as 0 (RFC 9111 §4.2.1: treat as stale).
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl ResponseCc {
    pub fn parse(h: &HeaderMap) -> ResponseCc {
        let mut cc = ResponseCc::default();
        for_each_directive(h, "cache-control", |n, v| {
            let secs = Some(v.and_then(delta_seconds).unwrap_or(0));
            if n.eq_ignore_ascii_case(b"no-store") {
                cc.no_store = true;
            } else if n.eq_ignore_ascii_case(b"no-cache") {
                cc.no_cache = true;
            } else if n.eq_ignore_ascii_case(b"private") {
                cc.private = true;
            } else if n.eq_ignore_ascii_case(b"public") {
                cc.public = true;
            } else if n.eq_ignore_ascii_case(b"must-revalidate") {
                cc.must_revalidate = true;
            } else if n.eq_ignore_ascii_case(b"proxy-revalidate") {
                cc.proxy_revalidate = true;
            } else if n.eq_ignore_ascii_case(b"max-age") {
                cc.max_age = cc.max_age.or(secs);
            } else if n.eq_ignore_ascii_case(b"s-maxage") {
                cc.s_maxage = cc.s_maxage.or(secs);
            }
        });
        cc
    }

    /// Never served stale by a shared cache: `must-revalidate`, `proxy-revalidate`, `s-maxage`
    /// (§5.2.2.10: it implies `proxy-revalidate`) and `no-cache`.
    pub fn no_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some() || self.no_cache
    }
}

/// The explicit freshness lifetime (RFC 9111 §4.2.1), in seconds: `s-maxage`, else `max-age`,
/// else `Expires` minus `Date` (`now` when there is no `Date`; an invalid `Expires` is 0). `None`:
/// no explicit lifetime (heuristics are not used).
pub fn freshness_lifetime(cc: &ResponseCc, h: &HeaderMap, now: u64) -> Option<u64> {
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Some(s);
    }
    let expires = h.get_bytes("expires")?;
    let Some(expires) = date::parse(expires) else {
        return Some(0);
    };
    let date = h.get_bytes("date").and_then(date::parse).unwrap_or(now);
    Some(expires.saturating_sub(date))
}

/// The response's age when it arrived (RFC 9111 §4.2.3's `corrected_initial_age`): the larger of
/// its apparent age (`now` minus `Date`) and its `Age` field. The request's own delay is not
/// added here: the resident time counts from the request's start, which covers it.
pub fn initial_age(h: &HeaderMap, now: u64) -> u64 {
    let apparent = h
        .get_bytes("date")
        .and_then(date::parse)
        .map_or(0, |d| now.saturating_sub(d));
    let age = h
        .get_bytes("age")
        .and_then(|v| delta_seconds(v.trim_ascii()))
        .unwrap_or(0);
    apparent.max(age)
}

/// The response's `Vary` as a bit set over `allowed` (bit i: `allowed[i]`); `None` when it
/// names `*` or a header not in `allowed` (such a response is not stored).
pub fn vary_mask(h: &HeaderMap, allowed: &[Box<str>]) -> Option<u64> {
    let mut mask = 0u64;
    for line in h.get_all("vary") {
        for name in line.split(|&b| b == b',') {
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            let i = allowed
                .iter()
                .position(|a| a.as_bytes().eq_ignore_ascii_case(name))?;
            mask |= 1 << i;
        }
    }
    Some(mask)
}

/// Append the normalised value of every `name` field of `h` (each comma-separated element
/// trimmed, joined by `,`), tagged so that "absent" and "empty" differ: `0` when absent, else
/// `1`, its length (4 bytes LE) and the bytes.
fn write_vary_value(h: &HeaderMap, name: &str, out: &mut Vec<u8>) {
    let mut lines = h.get_all(name).peekable();
    if lines.peek().is_none() {
        out.push(0);
        return;
    }
    out.push(1);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut first = true;
    for line in lines {
        for el in line.split(|&b| b == b',') {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(el.trim_ascii());
        }
    }
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The request's values of the `allowed` headers in `mask`, in `allowed` order, written into
/// `out` (cleared first): what a stored variant keeps and what a lookup compares.
pub fn write_vary_values(h: &HeaderMap, allowed: &[Box<str>], mask: u64, out: &mut Vec<u8>) {
    out.clear();
    for (i, name) in allowed.iter().enumerate() {
        if mask & (1 << i) != 0 {
            write_vary_value(h, name, out);
        }
    }
}

/// Every bit for a list of `n` allowed headers.
pub fn all_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Keep from the values of every allowed header (taken on a miss, before the response says
/// which ones it varies on) only those in `mask`.
pub fn select_vary(snapshot: &[u8], n: usize, mask: u64) -> Box<[u8]> {
    let mut out = Vec::new();
    let mut rest = snapshot;
    for i in 0..n {
        let seg_len = match rest.first() {
            Some(1) => {
                let len = rest
                    .get(1..5)
                    .map_or(0, |l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
                5 + len
            }
            Some(_) => 1,
            None => break,
        };
        let seg = &rest[..seg_len.min(rest.len())];
        if mask & (1 << i) != 0 {
            out.extend_from_slice(seg);
        }
        rest = &rest[seg.len()..];
    }
    out.into_boxed_slice()
}

/// The opaque part of an entity tag (without `W/`), and whether it was weak.
fn opaque(tag: &[u8]) -> (bool, &[u8]) {
    let tag = tag.trim_ascii();
    match tag.strip_prefix(b"W/") {
        Some(t) => (true, t),
        None => (false, tag),
    }
}

/// Weak comparison of two entity tags (RFC 9110 §8.8.3.2).
pub fn etag_weak_eq(a: &[u8], b: &[u8]) -> bool {
    opaque(a).1 == opaque(b).1
}

/// Strong comparison: both strong and equal.
pub fn etag_strong_eq(a: &[u8], b: &[u8]) -> bool {
    let (wa, a) = opaque(a);
    let (wb, b) = opaque(b);
    !wa && !wb && a == b
}

/// Whether any `If-None-Match` list in `h` holds `*` or a tag weakly equal to `etag`.
fn if_none_match(h: &HeaderMap, etag: Option<&[u8]>) -> bool {
    for line in h.get_all("if-none-match") {
        let mut rest = line;
        loop {
            rest = skip(rest, |b| b == b',' || b == b' ' || b == b'\t');
            if rest.is_empty() {
                break;
            }
            if rest[0] == b'*' {
                return true;
            }
            let start = rest;
            let body = rest.strip_prefix(b"W/").unwrap_or(rest);
            let Some(q) = body.strip_prefix(b"\"") else {
                // Not an entity tag: skip to the next comma.
                let n = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                rest = &rest[n..];
                continue;
            };
            let close = q.iter().position(|&b| b == b'"').unwrap_or(q.len());
            let tag_len = start.len() - q.len() + (close + 1).min(q.len());
            let tag = &start[..tag_len];
            if etag.is_some_and(|e| etag_weak_eq(e, tag)) {
                return true;
            }
            rest = &start[tag_len..];
        }
    }
    false
}

/// Which of the request fields the cache reads are present, found in one pass over the fields
/// (a lookup for each cost a hit more than the pass).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fields(u16);

impl Fields {
    pub const CACHE_CONTROL: Fields = Fields(1);
    pub const PRAGMA: Fields = Fields(1 << 1);
    pub const RANGE: Fields = Fields(1 << 2);
    pub const AUTHORIZATION: Fields = Fields(1 << 3);
    /// `If-None-Match`, `If-Modified-Since`: the client's own conditionals.
    pub const CONDITIONALS: Fields = Fields(1 << 4);
    /// `If-Match`, `If-Unmodified-Since`, `If-Range`: preconditions meant for the origin, which
    /// a cache leaves alone.
    pub const ORIGIN_PRECONDITIONS: Fields = Fields(1 << 5);

    pub fn scan(h: &HeaderMap) -> Fields {
        let mut seen = 0;
        for (n, _) in h.iter() {
            let is = |want: &str| eq_name(n, want.as_bytes());
            let f = match n.len() {
                5 if is("range") => Fields::RANGE,
                6 if is("pragma") => Fields::PRAGMA,
                8 if is("if-match") || is("if-range") => Fields::ORIGIN_PRECONDITIONS,
                13 if is("cache-control") => Fields::CACHE_CONTROL,
                13 if is("authorization") => Fields::AUTHORIZATION,
                13 if is("if-none-match") => Fields::CONDITIONALS,
                17 if is("if-modified-since") => Fields::CONDITIONALS,
                19 if is("if-unmodified-since") => Fields::ORIGIN_PRECONDITIONS,
                _ => continue,
            };
            seen |= f.0;
        }
        Fields(seen)
    }

    /// Whether any of `f` is present.
    pub fn has(self, f: Fields) -> bool {
        self.0 & f.0 != 0
    }
}

impl std::ops::BitOr for Fields {
    type Output = Fields;
    fn bitor(self, o: Fields) -> Fields {
        Fields(self.0 | o.0)
    }
}

/// Whether the request's conditionals say the client already has `stored` (RFC 9110 §13.2.2):
/// `If-None-Match` against its `ETag`, else `If-Modified-Since` against its `Last-Modified` (or
/// `Date`). An unparsable date never matches.
pub fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if req.contains("if-none-match") {
        return if_none_match(req, stored.get_bytes("etag"));
    }
    let Some(since) = req.get_bytes("if-modified-since").and_then(date::parse) else {
        return false;
    };
    stored
        .get_bytes("last-modified")
        .or_else(|| stored.get_bytes("date"))
        .and_then(date::parse)
        .is_some_and(|lm| lm <= since)
}

/// RFC 9111 §4.3.4: may a 304 carrying `fresh` update the stored response `stored`? When the 304
/// has a strong `ETag` it must equal the stored one; a weak one must match weakly; without
/// `ETag`, a `Last-Modified` must equal the stored one; with no validator at all, yes (the
/// request's conditional was built from this very response).
pub fn validates(fresh: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(tag) = fresh.get_bytes("etag") {
        let Some(mine) = stored.get_bytes("etag") else {
            return false;
        };
        return if opaque(tag).0 {
            etag_weak_eq(tag, mine)
        } else {
            etag_strong_eq(tag, mine)
        };
    }
    match fresh.get_bytes("last-modified").and_then(date::parse) {
        Some(lm) => stored
            .get_bytes("last-modified")
            .and_then(date::parse)
            .is_some_and(|m| m == lm),
        None => true,
    }
}

/// What a stored response may do for a request (RFC 9111 §4.2 with the request's directives,
/// §5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh, and fresh enough for the request: serve it.
    Fresh,
    /// Stale, but within the request's `max-stale` and allowed to be served stale: serve it.
    Stale,
    /// Ask the origin (with validators when the entry has some).
    Revalidate,
}

/// Whether `e`, `age` seconds old, may answer a request with directives `req`. Request
/// `no-cache` and `max-age=0` always revalidate, as does a response `no-cache`. `min-fresh`
/// counts as age against `max-stale` too (as Squid and httpd read the pair), so an entry only
/// gets less usable as it ages: fresh, then stale, then revalidate.
pub fn usable(e: &Entry, age: u64, req: &RequestCc) -> Use {
    if e.no_cache || req.no_cache || req.max_age.is_some_and(|m| m == 0 || age > m) {
        return Use::Revalidate;
    }
    if e.lifetime > age && req.min_fresh.is_none_or(|m| e.lifetime - age >= m) {
        return Use::Fresh;
    }
    let wanted = age.saturating_add(req.min_fresh.unwrap_or(0));
    match req.max_stale {
        Some(ms) if !e.no_stale && wanted.saturating_sub(e.lifetime) <= ms => Use::Stale,
        _ => Use::Revalidate,
    }
}
