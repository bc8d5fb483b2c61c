//! The `local_ratelimit` filter (Envoy's `envoy.filters.http.local_ratelimit`): token buckets
//! kept on each worker, refusing a request with a local reply (429 by default, body
//! `local_rate_limited`) when it finds no token.
//!
//! ```text
//! parse ─▶ Config (buckets, percentages, reply)            control thread, once
//!   worker(i of n) ─▶ Worker: this worker's share of every bucket, its rng, its counters
//!     request headers: filter_enabled? ─▶ route bucket + first applicable descriptor's bucket
//!         both have a token: take both, pass (x-ratelimit-* saved for the response if asked)
//!         otherwise: rate_limited; filter_enforced? ─▶ local reply : pass
//! ```
//!
//! A request takes a token from the route-level bucket (`token_bucket`, when configured) and
//! from the bucket of the first descriptor whose entries all have a value (an entry on a header
//! the request lacks has none), for that descriptor's value. It passes only when both have one;
//! then both are taken, else neither.
//!
//! The refusal: `status` (429), body `local_rate_limited`, details `rate_limited`, headers
//! `x-envoy-ratelimited: true` (as Envoy), `x-ratelimit-limit`, `x-ratelimit-remaining: 0`,
//! `x-ratelimit-reset` and `retry-after` (seconds until the refusing bucket's next fill on this
//! worker, rounded up), then `response_headers_to_add`.
//!
//! ## Differences from Envoy, on purpose
//! - `filter_enabled` and `filter_enforced` default to 100% (Envoy: 0%, so an Envoy config
//!   without them limits nothing). `runtime_key` is accepted and ignored.
//! - Shared nothing: Envoy shares one bucket between its workers (atomics); here each worker
//!   holds its share of every bucket (see [`bucket`] for the exact split: capacities and fills
//!   sum to the configured numbers), so the limit is exact in total only when traffic is spread
//!   over the workers. The kernel spreads connections between workers; a client whose
//!   connections all land on one worker sees that worker's share (`max_tokens / workers`
//!   burst), and with `max_tokens` below the worker count some workers hold no token at all
//!   and refuse every request. Descriptor buckets are split the same way, per value.
//! - Buckets refill lazily on each request, from the request's arrival time, in whole fill
//!   intervals (Envoy refills on a timer: the same tokens, another phase).
//! - `descriptors` are ringway's simpler form: each entry names where its value comes from
//!   (`remote_address`, `header`), instead of Envoy's route `rate_limits` actions.
//! - `x-ratelimit-limit` is the configured `max_tokens` of the bucket that decided (the one that
//!   refused, or the one with fewer tokens left); `x-ratelimit-remaining` is this worker's
//!   bucket.
//!
//! Per route: an override is a whole config, with its own buckets and counters.
//!
//! Stats (Envoy's): `<stat_prefix>.http_local_rate_limit.{enabled, enforced, rate_limited, ok}`.
//! Filter state: `local_ratelimit.limited` = `true` on every request found without a token
//! (enforced or not).

pub(crate) mod bucket;
mod config;
pub(crate) mod percent;
#[cfg(test)]
mod tests;

use std::{cell::RefCell, net::IpAddr, rc::Rc, sync::Arc, time::Instant};

use bytes::Bytes;

use self::{
    bucket::{Bucket, BucketMap, Share},
    config::{AppendAction, Config, Descriptor, EntryValue, Source},
    percent::Rng,
};
use crate::{
    filter::{
        Ctx, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply, WorkerInfo,
    },
    registry::ParseResult,
    stats::Counters,
    stream::{HeaderMap, RequestHead, ResponseHead},
};

/// Filter state key set on limited requests.
pub const STATE_KEY: &str = "local_ratelimit.limited";
/// Body of the refusal (Envoy's).
pub const BODY: &str = "local_rate_limited";
/// The refusal's `%RESPONSE_CODE_DETAILS%`.
pub const REASON: &str = "rate_limited";

/// Validate a `local_ratelimit` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = crate::registry::decode::<config::Spec>(v)?;
    let cfg = config::validate(spec)?;
    Ok(Arc::new(LocalRateLimit(Arc::new(cfg))))
}

/// The validated config (shared by every worker).
#[derive(Debug)]
struct LocalRateLimit(Arc<Config>);

impl FilterConfig for LocalRateLimit {
    fn name(&self) -> &'static str {
        "local_ratelimit"
    }

    fn worker(&self, w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(Factory(Rc::new(Worker::new(Arc::clone(&self.0), w))))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.0.stats.snapshot()
    }
}

/// One descriptor's buckets on this worker.
#[derive(Debug)]
struct DescriptorBuckets {
    share: Share,
    map: BucketMap,
}

/// The worker's mutable state.
#[derive(Debug)]
struct State {
    route: Bucket,
    descriptors: Vec<DescriptorBuckets>,
    /// The descriptor key being built (reused: no allocation per request).
    key: Vec<u8>,
}

/// One worker's factory: its share of every bucket.
#[derive(Debug)]
struct Worker {
    cfg: Arc<Config>,
    route_share: Option<Share>,
    state: RefCell<State>,
    rng: Rng,
    stats: Arc<Counters>,
}

impl Worker {
    fn new(cfg: Arc<Config>, w: WorkerInfo) -> Worker {
        let route_share = cfg.bucket.map(|b| Share::of(&b, w.id, w.count));
        let descriptors = cfg
            .descriptors
            .iter()
            .map(|d| DescriptorBuckets {
                share: Share::of(&d.bucket, w.id, w.count),
                map: BucketMap::new(d.max_buckets),
            })
            .collect();
        Worker {
            route_share,
            state: RefCell::new(State {
                route: Bucket::default(),
                descriptors,
                key: Vec::new(),
            }),
            rng: Rng::for_worker(w.id),
            stats: cfg.stats.worker(),
            cfg,
        }
    }

    /// Check (and on success take) this request's tokens.
    fn check(&self, head: &RequestHead, peer: IpAddr, now: Instant) -> Decision {
        let mut st = self.state.borrow_mut();
        let State {
            route,
            descriptors,
            key,
        } = &mut *st;
        let route = self.route_share.as_ref().map(|s| {
            route.refill(s, now);
            (route, s, self.cfg.bucket.map_or(0, |b| b.max_tokens))
        });
        let desc = self
            .cfg
            .descriptors
            .iter()
            .position(|d| descriptor_key(d, head, peer, key))
            .map(|i| {
                let d = &mut descriptors[i];
                let b = d.map.get(key);
                b.refill(&d.share, now);
                (b, &d.share, self.cfg.descriptors[i].bucket.max_tokens)
            });
        let empty = |b: &Option<(&mut Bucket, &Share, u64)>| {
            b.as_ref().is_some_and(|(b, _, _)| b.tokens() == 0)
        };
        let refused = if empty(&route) {
            route
        } else if empty(&desc) {
            desc
        } else {
            let mut tightest: Option<Report> = None;
            for (b, s, limit) in [route, desc].into_iter().flatten() {
                b.take();
                if tightest.is_none_or(|t| b.tokens() < t.remaining) {
                    tightest = Some(Report {
                        limit,
                        remaining: b.tokens(),
                        reset: b.reset_secs(s, now),
                    });
                }
            }
            return Decision::Pass(tightest);
        };
        Decision::Limited(refused.map_or(
            Report {
                limit: 0,
                remaining: 0,
                reset: 1,
            },
            |(b, s, limit)| Report {
                limit,
                remaining: 0,
                reset: b.reset_secs(s, now),
            },
        ))
    }

    /// The refusal.
    fn reply(&self, r: Report, cx: &Ctx<'_>) -> LocalReply {
        let mut headers = HeaderMap::with_capacity(5 + self.cfg.add_headers.len(), 128);
        let mut buf = [0u8; 20];
        headers.append("x-envoy-ratelimited", "true");
        headers.append("x-ratelimit-limit", decimal(r.limit, &mut buf));
        headers.append("x-ratelimit-remaining", "0");
        headers.append("x-ratelimit-reset", decimal(r.reset, &mut buf));
        headers.append("retry-after", decimal(r.reset, &mut buf));
        let mut v = Vec::new();
        for h in &self.cfg.add_headers {
            v.clear();
            h.value.render(cx.vars, &mut v);
            if v.is_empty() && !h.keep_empty {
                continue;
            }
            match h.action {
                AppendAction::AppendIfExistsOrAdd => headers.append(&h.name, &v),
                AppendAction::AddIfAbsent => {
                    headers.set_if_absent(&h.name, &v);
                }
                AppendAction::OverwriteIfExistsOrAdd => headers.set(&h.name, &v),
                AppendAction::OverwriteIfExists => {
                    if headers.contains(&h.name) {
                        headers.set(&h.name, &v);
                    }
                }
            }
        }
        LocalReply {
            status: self.cfg.status,
            headers,
            body: Bytes::from_static(BODY.as_bytes()),
            reason: Some(REASON),
        }
    }
}

/// Write descriptor `d`'s key for this request into `key`; `false` when an entry has no value
/// (or not the value the entry requires): the descriptor does not apply.
fn descriptor_key(d: &Descriptor, head: &RequestHead, peer: IpAddr, key: &mut Vec<u8>) -> bool {
    key.clear();
    for e in &d.entries {
        match &e.source {
            Source::RemoteAddress => {
                if let Some(EntryValue::Ip(ip)) = &e.only {
                    if canonical(*ip) != canonical(peer) {
                        return false;
                    }
                }
                match canonical(peer) {
                    IpAddr::V4(a) => {
                        key.push(4);
                        key.extend_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        key.push(6);
                        key.extend_from_slice(&a.octets());
                    }
                }
            }
            Source::Header(name) => {
                let Some(v) = head.headers.get_bytes(name) else {
                    return false;
                };
                if let Some(EntryValue::Bytes(only)) = &e.only {
                    if v != only.as_slice() {
                        return false;
                    }
                }
                key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                key.extend_from_slice(v);
            }
        }
    }
    true
}

/// An IPv4-mapped IPv6 address as IPv4 (a dual-stack listener reports IPv4 clients so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// What the `x-ratelimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    /// The deciding bucket's configured `max_tokens`.
    limit: u64,
    /// Its tokens left on this worker.
    remaining: u64,
    /// Seconds until its next fill.
    reset: u64,
}

enum Decision {
    /// Tokens taken (`None`: no bucket applied).
    Pass(Option<Report>),
    Limited(Report),
}

/// The factory: the worker's state, shared with each request's filter.
#[derive(Debug)]
struct Factory(Rc<Worker>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            response_headers: self.0.cfg.x_headers,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Filter {
            worker: Rc::clone(&self.0),
            report: None,
        })
    }
}

/// One request's filter.
struct Filter {
    worker: Rc<Worker>,
    /// Headers for the response (only with `enable_x_ratelimit_headers`).
    report: Option<Report>,
}

impl HttpFilter for Filter {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let w = &*self.worker;
        if !w.cfg.enabled.roll(&w.rng) {
            return HeadersStatus::Continue;
        }
        w.stats.inc(config::ENABLED);
        match w.check(head, cx.peer.ip(), cx.start) {
            Decision::Pass(report) => {
                w.stats.inc(config::OK);
                if w.cfg.x_headers {
                    self.report = report;
                }
                HeadersStatus::Continue
            }
            Decision::Limited(report) => {
                w.stats.inc(config::RATE_LIMITED);
                cx.state.set(STATE_KEY, "true");
                if !w.cfg.enforced.roll(&w.rng) {
                    return HeadersStatus::Continue;
                }
                w.stats.inc(config::ENFORCED);
                HeadersStatus::LocalReply(w.reply(report, cx))
            }
        }
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        if let Some(r) = self.report {
            let mut buf = [0u8; 20];
            head.headers
                .set("x-ratelimit-limit", decimal(r.limit, &mut buf));
            head.headers
                .set("x-ratelimit-remaining", decimal(r.remaining, &mut buf));
            head.headers
                .set("x-ratelimit-reset", decimal(r.reset, &mut buf));
        }
        HeadersStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        self.report = None;
        true
    }
}
