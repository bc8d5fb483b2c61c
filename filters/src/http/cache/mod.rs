//! The `cache` filter: a shared HTTP cache (RFC 9111 rules for a shared cache) kept by each
//! worker, bounded in bytes, least recently used entries evicted first.
//!
//! ```text
//! request headers ─▶ GET/HEAD? ─no─▶ (unsafe method: remember to invalidate) ─▶ upstream
//!     │ key = scheme authority path?query; variant = request values of the `Vary`'d headers
//!     ├─ fresh (or stale within max-stale) ─▶ LocalReply: stored head + `age`, body shared
//!     │                                        (or a local 304 for the client's conditionals)
//!     ├─ only-if-cached ─▶ LocalReply 504
//!     └─ miss / stale / forced revalidation ─▶ upstream (+ if-none-match / if-modified-since)
//! response headers ─▶ 304 to our validators ─▶ freshen the entry, LocalReply from it
//!                  ─▶ storable? ─▶ collect the body as it passes (Bytes clones)
//! response data ──▶ pass through unchanged; at end_stream: one contiguous body ─▶ store.insert
//! ```
//!
//! Each worker's store ([`store::Store`]) lives in the worker's factory (`Rc<RefCell<..>>`):
//! workers share nothing, take no lock, and each holds up to `max_size_bytes`. The rules
//! (cacheability, freshness, age, `Vary`, validators) are pure functions in [`policy`]; dates
//! in [`date`]. "Now" for ages is the request's start ([`Ctx::start`], no clock read); the wall
//! clock (for `Date`) is read once per response the cache considers storing or revalidates.
//!
//! Costs: a request that is not GET or HEAD does a method match and sets the access-log status
//! (an unsafe method also builds the key once on a 2xx/3xx response, to invalidate). A lookup
//! writes the key into a reused buffer and hashes it once. A hit builds one `HeaderMap` and
//! shares the stored body. A cacheable miss allocates one buffer (its key and the request's
//! `Vary` values); storing adds the entry and one copy of the body at the end (the body is
//! copied once into an exact-size buffer rather than keeping the chunks, which point into the
//! engine's larger read buffers and would hold more memory than is counted).
//!
//! Access log: `%FILTER_STATE(cache.status)%` is `hit`, `stale` (served stale within the
//! request's `max-stale`), `revalidated` (the origin answered 304 to a revalidation), `miss` or
//! `uncacheable` (the request or the response could not use the cache).

mod config;
mod date;
mod policy;
mod store;
#[cfg(test)]
mod tests;

pub use config::{parse, CacheConfig};

use std::{
    cell::RefCell,
    rc::Rc,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};

use crate::{
    filter::{Ctx, DataStatus, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply},
    stats::Counters,
    stream::{BodySize, HeaderMap, Method, RequestHead, ResponseHead},
};

use config::{Settings, BYTES, EVICTIONS, HITS, INSERTS, MISSES, REVALIDATIONS, UNCACHEABLE};
use policy::{Fields, RequestCc, ResponseCc, Use};
use store::{Entry, EntryId, Store};

/// The filter-state key the access log reads.
const STATUS_KEY: &str = "cache.status";

/// Seconds since the Unix epoch on the system clock.
fn wall_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The worker's store with two reused scratch buffers (the key and `Vary` values of a lookup).
struct Shared {
    store: Store,
    key: Vec<u8>,
    vary: Vec<u8>,
}

/// One worker's cache: settings, counters and store.
struct Worker {
    settings: Arc<Settings>,
    stats: Arc<Counters>,
    shared: RefCell<Shared>,
    /// The wall clock in Unix seconds (tests substitute their own).
    wall: fn() -> u64,
}

impl Worker {
    fn set_bytes_gauge(&self, store: &Store) {
        self.stats.set(BYTES, store.bytes() as u64);
    }

    /// The request does not use the cache.
    fn bypass(&self, cx: &mut Ctx<'_>) -> HeadersStatus {
        self.stats.inc(UNCACHEABLE);
        cx.state.set(STATUS_KEY, "uncacheable");
        HeadersStatus::Continue
    }

    /// The stored variant for this request: its key (left in the key buffer for
    /// [`Worker::fetch`]) and the request's values of the headers each variant varies on.
    fn lookup(&self, head: &RequestHead) -> Option<(EntryId, Rc<Entry>)> {
        let mut sh = self.shared.borrow_mut();
        let Shared { store, key, vary } = &mut *sh;
        policy::write_key(head, key);
        if store.is_empty() {
            return None;
        }
        let allowed = &self.settings.allowed_vary;
        store.find(key, |e| {
            if e.vary_mask == 0 {
                // No `Vary`: the one variant (its values are empty).
                return true;
            }
            policy::write_vary_values(&head.headers, allowed, e.vary_mask, vary);
            *e.vary_values == vary[..]
        })
    }

    /// The reply from `e` when it may answer this request (fresh, or stale within `max-stale`):
    /// the stored response, or a 304 when the client's conditionals say it has it.
    fn serve(
        &self,
        id: EntryId,
        e: &Entry,
        req: &RequestCc,
        seen: Fields,
        h: &HeaderMap,
        cx: &mut Ctx<'_>,
    ) -> Option<LocalReply> {
        let age = e.age(cx.start);
        let status = match policy::usable(e, age, req) {
            Use::Fresh => "hit",
            Use::Stale => "stale",
            Use::Revalidate => return None,
        };
        self.shared.borrow_mut().store.touch(id);
        self.stats.inc(HITS);
        cx.state.set(STATUS_KEY, status);
        Some(
            if seen.has(Fields::CONDITIONALS) && policy::not_modified(h, &e.headers) {
                not_modified_reply(e, age, cx.reply_headers())
            } else {
                full_reply(e, age, cx.reply_headers())
            },
        )
    }

    /// What a GET that goes upstream keeps for its response: the key (from the lookup's
    /// buffer), the request's `Vary` values, and the variant it found, whose validators it adds
    /// to the request unless the client sent conditionals of its own.
    fn fetch(
        &self,
        head: &mut RequestHead,
        seen: Fields,
        found: Option<(EntryId, Rc<Entry>)>,
    ) -> Fetch {
        let mut sh = self.shared.borrow_mut();
        let Shared { key, vary, .. } = &mut *sh;
        let allowed = &self.settings.allowed_vary;
        let all = policy::all_bits(allowed.len());
        policy::write_vary_values(&head.headers, allowed, all, vary);
        let mut key_vary = Vec::with_capacity(key.len() + vary.len());
        key_vary.extend_from_slice(key);
        key_vary.extend_from_slice(vary);
        let mut fetch = Fetch {
            key_len: key.len(),
            key_vary,
            authorization: seen.has(Fields::AUTHORIZATION),
            old: None,
            ours: false,
            client_matches: false,
        };
        drop(sh);
        let Some((id, e)) = found else {
            return fetch;
        };
        if seen.has(Fields::CONDITIONALS) {
            fetch.client_matches = policy::not_modified(&head.headers, &e.headers);
        } else if e.has_validators() {
            if let Some(tag) = e.headers.get_bytes("etag") {
                head.headers.append("if-none-match", tag);
            }
            if let Some(lm) = e.headers.get_bytes("last-modified") {
                head.headers.append("if-modified-since", lm);
            }
            fetch.ours = true;
        }
        fetch.old = Some((id, e));
        fetch
    }

    /// Store `entry`, counting what happened.
    fn insert(&self, store: &mut Store, key: Rc<[u8]>, entry: Rc<Entry>, cx: &mut Ctx<'_>) {
        let done = store.insert(key, entry);
        if done.stored {
            self.stats.inc(INSERTS);
        } else {
            self.stats.inc(UNCACHEABLE);
            cx.state.set(STATUS_KEY, "uncacheable");
        }
        self.stats.add(EVICTIONS, done.evicted);
        self.set_bytes_gauge(store);
    }
}

/// The `cache` filter's per-worker factory: owns the worker's store.
pub struct CacheFactory {
    w: Rc<Worker>,
}

impl CacheFactory {
    fn new(settings: Arc<Settings>, stats: Arc<Counters>, wall: fn() -> u64) -> CacheFactory {
        let store = Store::new(settings.max_size_bytes);
        CacheFactory {
            w: Rc::new(Worker {
                settings,
                stats,
                shared: RefCell::new(Shared {
                    store,
                    key: Vec::new(),
                    vary: Vec::new(),
                }),
                wall,
            }),
        }
    }
}

impl FilterFactory for CacheFactory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            response_headers: true,
            response_data: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(CacheFilter {
            w: Rc::clone(&self.w),
            phase: Phase::Off,
        })
    }
}

/// Where a request stands with the cache.
enum Phase {
    /// Nothing to do on the response.
    Off,
    /// An unsafe method: a 2xx/3xx response invalidates the URL.
    Invalidate,
    /// Sent upstream after a lookup; the response may be stored or may validate an entry.
    Fetch(Fetch),
    /// A storable response whose body is passing through.
    Storing(Box<Storing>),
}

struct Fetch {
    /// The key, then the request's values of every allowed `Vary` header
    /// ([`policy::write_vary_values`]): the one allocation a cacheable miss makes.
    key_vary: Vec<u8>,
    key_len: usize,
    /// The request carried `Authorization`.
    authorization: bool,
    /// The stored variant this request found but could not use (stale, or revalidation forced).
    old: Option<(EntryId, Rc<Entry>)>,
    /// The upstream request carries our validators (not the client's).
    ours: bool,
    /// The client's own conditionals say it holds `old`.
    client_matches: bool,
}

impl Fetch {
    /// The key, as the store keeps it.
    fn key(&self) -> Rc<[u8]> {
        Rc::from(&self.key_vary[..self.key_len])
    }

    fn vary(&self) -> &[u8] {
        &self.key_vary[self.key_len..]
    }
}

struct Storing {
    key: Rc<[u8]>,
    /// The response to store, its body still empty.
    entry: Entry,
    chunks: Vec<Bytes>,
    len: usize,
}

/// The `cache` filter for one request.
pub struct CacheFilter {
    w: Rc<Worker>,
    phase: Phase,
}

impl HttpFilter for CacheFilter {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let w = Rc::clone(&self.w);
        match head.method {
            Method::Get | Method::Head => {}
            Method::Post | Method::Put | Method::Delete | Method::Patch | Method::Other => {
                self.phase = Phase::Invalidate;
                return w.bypass(cx);
            }
            _ => return w.bypass(cx),
        }
        let seen = Fields::scan(&head.headers);
        let req = RequestCc::parse_seen(&head.headers, seen);
        if req.no_store || seen.has(Fields::RANGE | Fields::ORIGIN_PRECONDITIONS) {
            return w.bypass(cx);
        }
        let found = w.lookup(head);
        if let Some((id, e)) = &found {
            if let Some(reply) = w.serve(*id, e, &req, seen, &head.headers, cx) {
                return HeadersStatus::LocalReply(reply);
            }
        }
        w.stats.inc(MISSES);
        cx.state.set(STATUS_KEY, "miss");
        if req.only_if_cached {
            return HeadersStatus::LocalReply(LocalReply::error(
                504,
                "only_if_cached",
                "Gateway Timeout\n",
            ));
        }
        if head.method == Method::Head {
            // A HEAD response has no body to store; HEAD only reads what GET stored.
            return HeadersStatus::Continue;
        }
        self.phase = Phase::Fetch(w.fetch(head, seen, found));
        HeadersStatus::Continue
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        match std::mem::replace(&mut self.phase, Phase::Off) {
            Phase::Off | Phase::Storing(_) => HeadersStatus::Continue,
            Phase::Invalidate => {
                if (200..400).contains(&head.status) {
                    self.invalidate(cx);
                }
                HeadersStatus::Continue
            }
            Phase::Fetch(f) if head.status == 304 => self.not_modified(f, head, cx),
            Phase::Fetch(f) => {
                self.fetched(f, head, end_stream, cx);
                HeadersStatus::Continue
            }
        }
    }

    fn on_response_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> DataStatus {
        let Phase::Storing(s) = &mut self.phase else {
            return DataStatus::Continue;
        };
        if s.len + data.len() > self.w.settings.max_object_bytes {
            // Too large: stop collecting; the data keeps flowing to the client.
            self.phase = Phase::Off;
            self.w.stats.inc(UNCACHEABLE);
            cx.state.set(STATUS_KEY, "uncacheable");
            return DataStatus::Continue;
        }
        if !data.is_empty() {
            s.chunks.push(data.clone());
            s.len += data.len();
        }
        if end_stream {
            if let Phase::Storing(s) = std::mem::replace(&mut self.phase, Phase::Off) {
                let Storing {
                    key,
                    mut entry,
                    chunks,
                    len,
                } = *s;
                entry.body = concat(&chunks, len);
                let mut sh = self.w.shared.borrow_mut();
                self.w.insert(&mut sh.store, key, Rc::new(entry), cx);
            }
        }
        DataStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        self.phase = Phase::Off;
        true
    }
}

impl CacheFilter {
    /// A 2xx/3xx response to an unsafe method: drop every stored variant of its URL (RFC 9111
    /// §4.4). The key comes from the request head as forwarded.
    fn invalidate(&self, cx: &mut Ctx<'_>) {
        let Some(req) = cx.request else {
            return;
        };
        let mut sh = self.w.shared.borrow_mut();
        let Shared { store, key, .. } = &mut *sh;
        if store.is_empty() {
            return;
        }
        policy::write_key(req, key);
        if store.remove_key(key) > 0 {
            self.w.set_bytes_gauge(store);
        }
    }

    /// The origin answered 304. To our validators: freshen the entry and answer the client with
    /// it. To the client's own conditionals that also match the entry: freshen it and pass the
    /// 304 on. Otherwise the 304 is the client's business.
    fn not_modified(&self, mut f: Fetch, head: &ResponseHead, cx: &mut Ctx<'_>) -> HeadersStatus {
        let Some((id, old)) = f.old.take() else {
            return HeadersStatus::Continue;
        };
        let validated = policy::validates(&head.headers, &old.headers);
        if !(f.ours || f.client_matches && validated) {
            return HeadersStatus::Continue;
        }
        let w = &*self.w;
        w.stats.inc(REVALIDATIONS);
        cx.state.set(STATUS_KEY, "revalidated");
        let mut entry = old;
        if validated {
            let (fresh, storable) = freshen(&entry, &head.headers, cx.start, (w.wall)());
            entry = Rc::new(fresh);
            let mut sh = w.shared.borrow_mut();
            if storable {
                w.insert(&mut sh.store, f.key(), Rc::clone(&entry), cx);
            } else if sh.store.remove(id) {
                w.set_bytes_gauge(&sh.store);
            }
        }
        if f.ours {
            let age = entry.age(cx.start);
            HeadersStatus::LocalReply(full_reply(&entry, age, cx.reply_headers()))
        } else {
            HeadersStatus::Continue
        }
    }

    /// A full response from the origin: it supersedes the variant we found; store it when
    /// storable (at once when it has no body, else as the body passes).
    fn fetched(&mut self, f: Fetch, head: &mut ResponseHead, end_stream: bool, cx: &mut Ctx<'_>) {
        let w = Rc::clone(&self.w);
        if let Some((id, _)) = &f.old {
            // A 5xx says nothing about the resource: keep what we have.
            if head.status < 500 {
                let mut sh = w.shared.borrow_mut();
                if sh.store.remove(*id) {
                    w.set_bytes_gauge(&sh.store);
                }
            }
        }
        let Some(entry) = self.storable(&f, head, cx.start) else {
            w.stats.inc(UNCACHEABLE);
            cx.state.set(STATUS_KEY, "uncacheable");
            return;
        };
        if end_stream {
            let mut sh = w.shared.borrow_mut();
            w.insert(&mut sh.store, f.key(), Rc::new(entry), cx);
        } else {
            self.phase = Phase::Storing(Box::new(Storing {
                key: f.key(),
                entry,
                chunks: Vec::new(),
                len: 0,
            }));
        }
    }

    /// The entry to store for this response (body still empty), or `None` when it may not or
    /// need not be stored (RFC 9111 §3 for a shared cache, and this cache's limits).
    fn storable(&self, f: &Fetch, head: &mut ResponseHead, now: Instant) -> Option<Entry> {
        let s = &*self.w.settings;
        let h = &head.headers;
        if !policy::status_cacheable(head.status) || h.contains("set-cookie") {
            return None;
        }
        if matches!(head.body, BodySize::Known(n) if n > s.max_object_bytes as u64) {
            return None;
        }
        let cc = ResponseCc::parse(h);
        if cc.no_store || cc.private {
            return None;
        }
        if f.authorization && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
            return None;
        }
        let vary_mask = policy::vary_mask(h, &s.allowed_vary)?;
        let wall = (self.w.wall)();
        let lifetime = policy::freshness_lifetime(&cc, h, wall).or(s.default_ttl)?;
        let initial_age = policy::initial_age(h, wall);
        let entry = Entry {
            status: head.status,
            headers: stored_headers(h, wall),
            body: Bytes::new(),
            vary_mask,
            vary_values: policy::select_vary(f.vary(), s.allowed_vary.len(), vary_mask),
            stored_at: now,
            initial_age,
            lifetime,
            no_cache: cc.no_cache,
            no_stale: cc.no_stale(),
        };
        // Useless unless it can be served fresh or revalidated.
        let usable_fresh = lifetime > initial_age && !cc.no_cache;
        if !usable_fresh && !entry.has_validators() {
            return None;
        }
        // RFC 9110 §6.6.1: a cache adds the `Date` it recorded to a response without one.
        let date = entry.headers.get_bytes("date").unwrap_or_default();
        head.headers.set_if_absent("date", date);
        Some(entry)
    }
}

/// The headers kept with a stored response: all of them except `Age` (recomputed when served),
/// with a `Date` (the time received) when the origin sent none. One compact map.
fn stored_headers(h: &HeaderMap, wall: u64) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len() + 1, h.wire_len() + 40);
    for (n, v) in h.iter() {
        if !n.eq_ignore_ascii_case(b"age") {
            out.append(n, v);
        }
    }
    if !out.contains("date") {
        out.append("date", date::format(wall));
    }
    out
}

/// Headers a 304 must not change in a stored response (RFC 9111 §3.2): the framing, and the
/// content coding the stored body is in. `Age` is recomputed.
fn keep_on_update(name: &[u8]) -> bool {
    [
        &b"content-length"[..],
        b"content-encoding",
        b"transfer-encoding",
        b"age",
    ]
    .iter()
    .any(|k| name.eq_ignore_ascii_case(k))
}

/// `old` updated by a 304's headers (RFC 9111 §4.3.4, §3.2): each field the 304 carries replaces
/// the stored field of that name; freshness and age are taken anew from the result. Returns the
/// entry and whether the updated response may still be stored.
fn freshen(old: &Entry, h304: &HeaderMap, now: Instant, wall: u64) -> (Entry, bool) {
    let replaced = |n: &[u8]| !keep_on_update(n) && h304.contains(n);
    let mut headers = HeaderMap::with_capacity(
        old.headers.len() + h304.len() + 1,
        old.headers.wire_len() + h304.wire_len() + 40,
    );
    for (n, v) in old.headers.iter().filter(|(n, _)| !replaced(n)) {
        headers.append(n, v);
    }
    for (n, v) in h304.iter().filter(|(n, _)| !keep_on_update(n)) {
        headers.append(n, v);
    }
    if !h304.contains("date") {
        headers.set("date", date::format(wall));
    }
    let cc = ResponseCc::parse(&headers);
    let lifetime = policy::freshness_lifetime(&cc, &headers, wall).unwrap_or(old.lifetime);
    let initial_age = policy::initial_age(h304, wall);
    let storable = !cc.no_store && !cc.private;
    let entry = Entry {
        status: old.status,
        headers,
        body: old.body.clone(),
        vary_mask: old.vary_mask,
        vary_values: old.vary_values.clone(),
        stored_at: now,
        initial_age,
        lifetime,
        no_cache: cc.no_cache,
        no_stale: cc.no_stale(),
    };
    (entry, storable)
}

/// One contiguous copy of the collected body chunks.
fn concat(chunks: &[Bytes], len: usize) -> Bytes {
    let mut body = BytesMut::with_capacity(len);
    for c in chunks {
        body.extend_from_slice(c);
    }
    body.freeze()
}

/// `n` in decimal.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The `age` value for `age` seconds (capped at 2^31, RFC 9111 §1.2.2).
fn age_value(age: u64, buf: &mut [u8; 20]) -> &[u8] {
    decimal(age.min(1 << 31), buf)
}

/// The stored response as a reply: its status and headers plus `age`, the body shared.
/// `headers`: an empty map to fill (the stream's own, from `Ctx::reply_headers`).
fn full_reply(e: &Entry, age: u64, mut headers: HeaderMap) -> LocalReply {
    headers.extend_from(&e.headers);
    headers.append("age", age_value(age, &mut [0; 20]));
    LocalReply {
        status: e.status,
        headers,
        body: e.body.clone(),
        reason: None,
    }
}

/// Fields a 304 carries from the stored response (RFC 9110 §15.4.5, and `Last-Modified`).
const NOT_MODIFIED_FIELDS: [&str; 7] = [
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "last-modified",
    "vary",
];

/// A 304 for a client whose conditionals match the stored response: its validators and
/// caching fields, no body.
fn not_modified_reply(e: &Entry, age: u64, mut headers: HeaderMap) -> LocalReply {
    for (n, v) in e.headers.iter() {
        if NOT_MODIFIED_FIELDS
            .iter()
            .any(|f| n.eq_ignore_ascii_case(f.as_bytes()))
        {
            headers.append(n, v);
        }
    }
    headers.append("age", age_value(age, &mut [0; 20]));
    LocalReply {
        status: 304,
        headers,
        body: Bytes::new(),
        reason: None,
    }
}
