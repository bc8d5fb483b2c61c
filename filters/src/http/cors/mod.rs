//! The `cors` filter (Envoy's `envoy.filters.http.cors`, with the `CorsPolicy` as the filter's
//! own config): answers CORS preflights and adds the CORS headers to responses for allowed
//! origins.
//!
//! ```text
//! request head ─▶ enabled? (per-worker draw of filter_enabled / shadow_enabled)
//!              ─▶ Origin present? ─▶ allowed? (count cors.origin_valid / origin_invalid)
//!              ─▶ OPTIONS + Access-Control-Request-Method: preflight
//!                    allowed ─▶ LocalReply 200 with the allow-* headers (not an error)
//!                    not allowed ─▶ on to the upstream (or a bare 200 when
//!                                   forward_not_matching_preflights is false)
//!              ─▶ otherwise: latch the origin, continue
//! response head ─▶ latched origin? add allow-origin, allow-credentials, expose-headers
//! ```
//!
//! As Envoy, the filter echoes the request's origin (never `*`) in
//! `access-control-allow-origin`. Unlike Envoy, it also adds `vary: origin` wherever it wrote
//! that header (unless a `vary` already names `origin` or is `*`), so shared caches keep the
//! answers of different origins apart.
//!
//! Cost: requests without `Origin` read one header. An allowed cross-origin request copies its
//! origin once (to answer on the response path, as Envoy latches it).

mod config;
mod matcher;
#[cfg(test)]
mod tests;

use std::{
    cell::Cell,
    hash::{BuildHasher, Hasher},
    rc::Rc,
    sync::Arc,
};

use bytes::Bytes;

use crate::{
    filter::{
        Ctx, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply, WorkerInfo,
    },
    registry::{decode, ParseResult},
    stats::{Counters, StatSet},
    stream::{HeaderMap, Method, RequestHead, ResponseHead},
};

pub use config::{CorsSpec, Denominator, FractionSpec, RuntimeFractionSpec};
use config::{Fraction, Policy};
pub use matcher::{RegexMatcherSpec, StringMatcher, StringMatcherSpec};

/// Counter indexes in the stat set.
const ORIGIN_VALID: usize = 0;
const ORIGIN_INVALID: usize = 1;

/// Validate a `cors` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = decode::<CorsSpec>(v)?;
    let policy = spec.validate()?;
    Ok(Arc::new(CorsConfig {
        policy: Arc::new(policy),
        stats: StatSet::new("cors.", &["origin_valid", "origin_invalid"]),
    }))
}

/// The validated config: immutable, shared by every worker.
#[derive(Debug)]
pub struct CorsConfig {
    policy: Arc<Policy>,
    stats: StatSet,
}

impl FilterConfig for CorsConfig {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn worker(&self, w: WorkerInfo) -> Rc<dyn FilterFactory> {
        let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
        seed.write_usize(w.id);
        Rc::new(Factory(Rc::new(Worker {
            policy: Arc::clone(&self.policy),
            counters: self.stats.worker(),
            rng: Cell::new(seed.finish() | 1),
        })))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.stats.snapshot()
    }
}

/// A worker's policy, counters and random draws.
#[derive(Debug)]
struct Worker {
    policy: Arc<Policy>,
    counters: Arc<Counters>,
    /// xorshift64* state (never 0), for `filter_enabled` / `shadow_enabled` shares.
    rng: Cell<u64>,
}

impl Worker {
    /// Whether this request falls in `f`.
    fn pick(&self, f: Fraction) -> bool {
        if f.is_all() {
            return true;
        }
        if f.is_none() {
            return false;
        }
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let draw = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        draw % u64::from(f.denominator) < u64::from(f.numerator)
    }

    fn origin_allowed(&self, origin: &[u8]) -> bool {
        let p = &self.policy;
        p.any_origin || p.origins.iter().any(|m| m.matches(origin))
    }
}

struct Factory(Rc<Worker>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        let p = &self.0.policy;
        let never = p.enabled.is_none() && p.shadow.is_none_or(Fraction::is_none);
        if never {
            Hooks::default()
        } else {
            Hooks::HEADERS
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Cors {
            w: Rc::clone(&self.0),
            origin: None,
        })
    }
}

/// One request's filter.
struct Cors {
    w: Rc<Worker>,
    /// The allowed origin to answer on the response (enforcing mode only).
    origin: Option<Box<[u8]>>,
}

impl HttpFilter for Cors {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let w = &*self.w;
        let p = &*w.policy;
        let enabled = w.pick(p.enabled);
        if !enabled && !p.shadow.is_some_and(|f| w.pick(f)) {
            return HeadersStatus::Continue;
        }
        let origin = match head.headers.get_bytes("origin") {
            Some(o) if !o.is_empty() => o,
            _ => return HeadersStatus::Continue,
        };
        let allowed = w.origin_allowed(origin);
        w.counters.inc(if allowed {
            ORIGIN_VALID
        } else {
            ORIGIN_INVALID
        });
        if !enabled {
            return HeadersStatus::Continue;
        }
        let requested_method = head
            .headers
            .get_bytes("access-control-request-method")
            .filter(|m| !m.is_empty());
        let preflight = head.method == Method::Options && requested_method.is_some();
        if !preflight {
            if allowed {
                self.origin = Some(origin.into());
            }
            return HeadersStatus::Continue;
        }
        if !allowed && p.forward_not_matching_preflights {
            return HeadersStatus::Continue;
        }
        HeadersStatus::LocalReply(preflight_reply(p, &head.headers, allowed))
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        if let Some(origin) = &self.origin {
            let p = &*self.w.policy;
            let h = &mut head.headers;
            h.set("access-control-allow-origin", origin);
            if p.allow_credentials {
                h.set("access-control-allow-credentials", "true");
            }
            if let Some(e) = &p.expose_headers {
                h.set("access-control-expose-headers", e.as_bytes());
            }
            add_vary_origin(h);
        }
        HeadersStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        self.origin = None;
        true
    }
}

/// The answer to a preflight (`req`: its headers), Envoy's headers in Envoy's order.
fn preflight_reply(p: &Policy, req: &HeaderMap, allowed: bool) -> LocalReply {
    let mut h = HeaderMap::with_capacity(8, 256);
    if allowed {
        if let Some(o) = req.get_bytes("origin") {
            h.append("access-control-allow-origin", o);
        }
    }
    if p.allow_credentials {
        h.append("access-control-allow-credentials", "true");
    }
    if let Some(m) = echo(&p.allow_methods, req, "access-control-request-method") {
        h.append("access-control-allow-methods", m);
    }
    if let Some(v) = echo(&p.allow_headers, req, "access-control-request-headers") {
        h.append("access-control-allow-headers", v);
    }
    if let Some(a) = &p.max_age {
        h.append("access-control-max-age", a.as_bytes());
    }
    if p.allow_private_network_access
        && req.get_bytes("access-control-request-private-network") == Some(b"true")
    {
        h.append("access-control-allow-private-network", "true");
    }
    if allowed {
        add_vary_origin(&mut h);
    }
    LocalReply {
        status: 200,
        headers: h,
        body: Bytes::new(),
        reason: None,
    }
}

/// The configured list, or for `*` the request's `asked` header (as Envoy: a literal `*` is not
/// honoured by browsers on credentialed requests).
fn echo<'a>(configured: &'a Option<Box<str>>, req: &'a HeaderMap, asked: &str) -> Option<&'a [u8]> {
    match configured.as_deref()? {
        "*" => req.get_bytes(asked).filter(|v| !v.is_empty()),
        list => Some(list.as_bytes()),
    }
}

/// Add `vary: origin` unless a `vary` field already lists `origin` or `*`.
fn add_vary_origin(h: &mut HeaderMap) {
    let covered = h.get_all("vary").any(|v| {
        v.split(|&b| b == b',').any(|item| {
            let item = item.trim_ascii();
            item == b"*" || item.eq_ignore_ascii_case(b"origin")
        })
    });
    if !covered {
        h.append("vary", "origin");
    }
}
