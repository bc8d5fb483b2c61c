//! The `fault` filter (Envoy's `envoy.filters.http.fault`): delays requests and/or answers them
//! with an error instead of the upstream, for resilience tests.
//!
//! ```text
//! request headers ─▶ upstream_cluster, downstream_nodes, headers all match?  no ─▶ Continue
//!   delay chosen (percentage) and a fault slot free? ─▶ Pause(sleep(d)) ─▶ on_resume:
//!       abort chosen? ─▶ LocalReply(status, "fault filter abort")  else ─▶ Continue
//!   no delay: abort chosen and a slot free? ─▶ LocalReply  else ─▶ Continue
//! ```
//!
//! As Envoy: the delay comes first and the abort is decided when it ends (its own roll of the
//! abort percentage); `header_delay` / `header_abort` take the value from the request's
//! `x-envoy-fault-delay-request` (milliseconds) / `x-envoy-fault-abort-request` (status
//! 200..599) headers, and only then do `x-envoy-fault-delay-request-percentage` /
//! `x-envoy-fault-abort-request-percentage` lower the configured numerator (same denominator).
//! A request counts as one active fault from its delay or abort until it ends (a delay not
//! followed by an abort stops counting when the delay ends); a fault that would exceed
//! `max_active_faults` is not injected and counted in `faults_overflow`.
//!
//! ## Differences from Envoy
//! - A missing `percentage` means 100% (Envoy's proto default is 0%, which injects nothing).
//! - `max_active_faults` is per worker: each of n workers allows `ceil(max / n)` (Envoy counts
//!   per process). The `active_faults` gauge is the sum over workers.
//! - A delay asked by header is capped at one hour (the header is a client's to set).
//! - Not built: `grpc_status` / `x-envoy-fault-abort-grpc-request`, `response_rate_limit`,
//!   the runtime keys (`fault.http.*`) and per-downstream-cluster stats; the header
//!   matchers have no regex or range form. The config refuses what is not built, with a
//!   message, rather than ignoring it.
//!
//! Stats (Envoy's): `fault.delays_injected`, `fault.aborts_injected`, `fault.active_faults`
//! (gauge), `fault.faults_overflow`. Filter state: `fault.injected` = `delay`, `abort` or
//! `delay,abort`.

mod config;
mod matcher;
#[cfg(test)]
mod tests;

use std::{cell::Cell, rc::Rc, sync::Arc, time::Duration};

use self::config::{AbortKind, Config, DelayKind};
use crate::{
    filter::{
        Ctx, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply, WorkerInfo,
    },
    http::local_ratelimit::percent::{Percent, Rng},
    registry::ParseResult,
    stats::Counters,
    stream::RequestHead,
};

/// Filter state key naming the faults injected.
pub const STATE_KEY: &str = "fault.injected";
/// Body of an abort (Envoy's).
pub const BODY: &str = "fault filter abort";
/// An abort's `%RESPONSE_CODE_DETAILS%`.
pub const REASON: &str = "fault_injected";
/// The longest delay a request header may ask for.
pub const MAX_HEADER_DELAY: Duration = Duration::from_secs(3600);

const DELAY_REQUEST: &str = "x-envoy-fault-delay-request";
const DELAY_PERCENTAGE: &str = "x-envoy-fault-delay-request-percentage";
const ABORT_REQUEST: &str = "x-envoy-fault-abort-request";
const ABORT_PERCENTAGE: &str = "x-envoy-fault-abort-request-percentage";
const DOWNSTREAM_NODE: &str = "x-envoy-downstream-service-node";

/// Validate a `fault` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = crate::registry::decode::<config::Spec>(v)?;
    let cfg = config::validate(spec)?;
    Ok(Arc::new(Fault(Arc::new(cfg))))
}

/// The validated config (shared by every worker).
#[derive(Debug)]
struct Fault(Arc<Config>);

impl FilterConfig for Fault {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn worker(&self, w: WorkerInfo) -> Rc<dyn FilterFactory> {
        let workers = w.count.max(1) as u64;
        Rc::new(Factory(Rc::new(Worker {
            max_active: self
                .0
                .max_active_faults
                .map(|m| u64::from(m).div_ceil(workers)),
            active: Cell::new(0),
            rng: Rng::for_worker(w.id),
            stats: self.0.stats.worker(),
            cfg: Arc::clone(&self.0),
        })))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.0.stats.snapshot()
    }

    fn is_gauge(&self, name: &str) -> bool {
        self.0.stats.is_gauge(name)
    }
}

/// One worker's state.
#[derive(Debug)]
struct Worker {
    cfg: Arc<Config>,
    /// This worker's share of `max_active_faults`.
    max_active: Option<u64>,
    /// Requests in a fault on this worker.
    active: Cell<u64>,
    rng: Rng,
    stats: Arc<Counters>,
}

impl Worker {
    /// Whether the fault applies to this request at all.
    fn applies(&self, head: &RequestHead, cx: &Ctx<'_>) -> bool {
        let cfg = &*self.cfg;
        if let Some(want) = &cfg.upstream_cluster {
            if cx.route.and_then(|r| r.cluster) != Some(want.as_str()) {
                return false;
            }
        }
        if !cfg.downstream_nodes.is_empty() {
            let Some(node) = head.headers.get(DOWNSTREAM_NODE) else {
                return false;
            };
            if !cfg.downstream_nodes.iter().any(|n| n == node) {
                return false;
            }
        }
        cfg.headers.iter().all(|m| m.matches(&head.headers))
    }

    /// The delay for this request, if one is chosen.
    fn delay(&self, head: &RequestHead) -> Option<Duration> {
        let d = self.cfg.delay?;
        let (len, percent) = match d.kind {
            DelayKind::Fixed(t) => (t, d.percent),
            DelayKind::Header => {
                let ms = header_number(head, DELAY_REQUEST)?;
                let len = Duration::from_millis(ms).min(MAX_HEADER_DELAY);
                (len, header_percent(head, DELAY_PERCENTAGE, d.percent))
            }
        };
        (!len.is_zero() && percent.roll(&self.rng)).then_some(len)
    }

    /// The abort status for this request, if an abort is chosen.
    fn abort(&self, head: &RequestHead) -> Option<u16> {
        let a = self.cfg.abort?;
        let (status, percent) = match a.kind {
            AbortKind::Http(s) => (s, a.percent),
            AbortKind::Header => {
                let s = header_number(head, ABORT_REQUEST).filter(|s| (200..600).contains(s))?;
                (s as u16, header_percent(head, ABORT_PERCENTAGE, a.percent))
            }
        };
        percent.roll(&self.rng).then_some(status)
    }

    fn set_active(&self, n: u64) {
        self.active.set(n);
        self.stats.set(config::ACTIVE_FAULTS, n);
    }
}

/// The first value of `name` as a decimal number (absent or invalid: `None`).
fn header_number(head: &RequestHead, name: &str) -> Option<u64> {
    head.headers.get(name)?.trim().parse().ok()
}

/// `configured`, its numerator lowered by the request's percentage header when it has one.
fn header_percent(head: &RequestHead, name: &str, configured: Percent) -> Percent {
    match header_number(head, name) {
        Some(n) => configured.capped(u32::try_from(n).unwrap_or(u32::MAX)),
        None => configured,
    }
}

/// The factory: the worker's state, shared with each request's filter.
#[derive(Debug)]
struct Factory(Rc<Worker>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Filter {
            worker: Rc::clone(&self.0),
            active: false,
            delayed: false,
        })
    }
}

/// One request's filter.
struct Filter {
    worker: Rc<Worker>,
    /// This request holds one of the worker's active-fault slots.
    active: bool,
    /// A delay was injected.
    delayed: bool,
}

impl Filter {
    /// Take an active-fault slot (one per request, whatever the faults); `false` on overflow.
    fn activate(&mut self) -> bool {
        if self.active {
            return true;
        }
        let w = &*self.worker;
        let n = w.active.get();
        if w.max_active.is_some_and(|max| n >= max) {
            w.stats.inc(config::FAULTS_OVERFLOW);
            return false;
        }
        w.set_active(n + 1);
        self.active = true;
        true
    }

    fn deactivate(&mut self) {
        if self.active {
            self.active = false;
            let w = &*self.worker;
            w.set_active(w.active.get().saturating_sub(1));
        }
    }

    fn maybe_abort(&mut self, head: &RequestHead, cx: &mut Ctx<'_>) -> Option<LocalReply> {
        let status = self.worker.abort(head)?;
        if !self.activate() {
            return None;
        }
        self.worker.stats.inc(config::ABORTS_INJECTED);
        cx.state.set(
            STATE_KEY,
            if self.delayed { "delay,abort" } else { "abort" },
        );
        Some(LocalReply::error(status, REASON, BODY))
    }
}

impl HttpFilter for Filter {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        if !self.worker.applies(head, cx) {
            return HeadersStatus::Continue;
        }
        if let Some(d) = self.worker.delay(head) {
            if self.activate() {
                self.delayed = true;
                self.worker.stats.inc(config::DELAYS_INJECTED);
                cx.state.set(STATE_KEY, "delay");
                return HeadersStatus::Pause(cx.sleep(d));
            }
        }
        match self.maybe_abort(head, cx) {
            Some(r) => HeadersStatus::LocalReply(r),
            None => HeadersStatus::Continue,
        }
    }

    fn on_resume(&mut self, head: &mut RequestHead, cx: &mut Ctx<'_>) -> HeadersStatus {
        match self.maybe_abort(head, cx) {
            Some(r) => HeadersStatus::LocalReply(r),
            None => {
                // The delay is over and nothing follows: the request is no longer in a fault.
                self.deactivate();
                HeadersStatus::Continue
            }
        }
    }

    fn recycle(&mut self) -> bool {
        self.reset();
        true
    }
}

impl Filter {
    /// Back to a fresh request's state (the fault slot released).
    fn reset(&mut self) {
        self.deactivate();
        self.delayed = false;
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        self.deactivate();
    }
}
