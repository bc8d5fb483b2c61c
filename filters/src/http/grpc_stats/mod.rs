//! The `grpc_stats` filter (Envoy's `envoy.filters.http.grpc_stats`): counts gRPC calls per
//! service and method by their final `grpc-status`.
//!
//! ```text
//! request headers  application/grpc*, :path /package.Service/Method
//!                  ─▶ the method's block of counters (found once per worker per method) ─▶ total
//! response         grpc-status (trailers, or the head of a trailers-only response)
//!                  ─▶ success (0) or failure, and the status's own counter
//! ```
//!
//! Stats, under the connection manager's prefix (Envoy puts them under the cluster's):
//! `grpc.<service>.<method>.total`, `.success`, `.failure`, `.<status code>` (only those seen),
//! and `grpc.other.*` for calls past the method cap or not in the allow list.
//!
//! Counters are per worker (single writer, no lock); a method's name is registered in the
//! config's shared table the first time a worker sees it (a lock then, never again for that
//! method on that worker).

#[cfg(test)]
mod tests;

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde::Deserialize;

use crate::{
    filter::{
        Ctx, DataStatus, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, WorkerInfo,
    },
    registry::{ConfigProblem, ParseResult},
    stream::{HeaderMap, RequestHead, ResponseHead},
};

/// Methods counted by name per config; later ones count under `grpc.other`.
pub const MAX_METHODS: usize = 256;
/// Counters per method: total, success, failure, then statuses 0..=16.
const PER_METHOD: usize = 3 + 17;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// Count every method by name (default `true`; `false`: only the allow list's).
    stats_for_all_methods: Option<bool>,
    /// `{services: [{name, method_names: [...]}]}`: the methods counted by name.
    individual_method_stats_allowlist: Option<AllowSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowSpec {
    services: Vec<ServiceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    #[serde(default)]
    method_names: Vec<String>,
}

/// Validate a `grpc_stats` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec: Spec = crate::registry::decode(v)?;
    let allow = spec.individual_method_stats_allowlist.map(|a| {
        a.services
            .into_iter()
            .flat_map(|s| {
                let svc = s.name;
                s.method_names
                    .into_iter()
                    .map(move |m| format!("/{svc}/{m}"))
            })
            .collect::<Vec<_>>()
    });
    let all = spec.stats_for_all_methods.unwrap_or(allow.is_none());
    if all && allow.is_some() {
        return Err(vec![ConfigProblem::at(
            "stats_for_all_methods",
            "stats_for_all_methods and individual_method_stats_allowlist exclude each other",
        )]);
    }
    let shared = Arc::new(Shared {
        // Slot 0 is `grpc.other`.
        methods: Mutex::new(vec!["/other/".to_string()]),
        blocks: Mutex::new(Vec::new()),
    });
    Ok(Arc::new(GrpcStatsConfig {
        all,
        allow: allow.unwrap_or_default(),
        shared,
    }))
}

/// Method names (by slot) and every worker's counters.
#[derive(Debug)]
struct Shared {
    methods: Mutex<Vec<String>>,
    blocks: Mutex<Vec<Arc<Block>>>,
}

/// One worker's counters: `PER_METHOD` per slot.
#[derive(Debug)]
struct Block {
    vals: Box<[AtomicU64]>,
}

impl Block {
    fn inc(&self, i: usize) {
        if let Some(c) = self.vals.get(i) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct GrpcStatsConfig {
    all: bool,
    allow: Vec<String>,
    shared: Arc<Shared>,
}

impl FilterConfig for GrpcStatsConfig {
    fn name(&self) -> &'static str {
        "grpc_stats"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        let block = Arc::new(Block {
            vals: (0..(MAX_METHODS + 1) * PER_METHOD)
                .map(|_| AtomicU64::new(0))
                .collect(),
        });
        if let Ok(mut b) = self.shared.blocks.lock() {
            b.push(Arc::clone(&block));
        }
        Rc::new(Factory(Rc::new(WorkerState {
            all: self.all,
            allow: self.allow.clone(),
            shared: Arc::clone(&self.shared),
            block,
            slots: RefCell::new(HashMap::new()),
        })))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        let methods = self
            .shared
            .methods
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let blocks = self
            .shared
            .blocks
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        let sum = |i: usize| -> u64 {
            blocks
                .iter()
                .map(|b| b.vals.get(i).map_or(0, |v| v.load(Ordering::Relaxed)))
                .sum()
        };
        let mut out = Vec::new();
        for (slot, path) in methods.iter().enumerate() {
            let name = path.trim_matches('/').replace('/', ".");
            let base = slot * PER_METHOD;
            for (k, what) in ["total", "success", "failure"].iter().enumerate() {
                out.push((format!("grpc.{name}.{what}"), sum(base + k)));
            }
            for code in 0..17 {
                let v = sum(base + 3 + code);
                if v > 0 {
                    out.push((format!("grpc.{name}.{code}"), v));
                }
            }
        }
        out
    }
}

/// One worker's view: its counters and the slots of the methods it has seen.
struct WorkerState {
    all: bool,
    allow: Vec<String>,
    shared: Arc<Shared>,
    block: Arc<Block>,
    slots: RefCell<HashMap<Box<str>, usize>>,
}

impl WorkerState {
    /// The slot of the method at `path` (`/package.Service/Method`): found in this worker's map,
    /// or registered in the shared table (once per worker per method).
    fn slot(&self, path: &str) -> usize {
        if let Some(&s) = self.slots.borrow().get(path) {
            return s;
        }
        let counted = if self.all {
            true
        } else {
            self.allow.iter().any(|a| a == path)
        };
        let slot = if !counted || self.slots.borrow().len() >= MAX_METHODS {
            0
        } else {
            match self.shared.methods.lock() {
                Ok(mut m) => match m.iter().position(|p| p == path) {
                    Some(i) => i,
                    None if m.len() <= MAX_METHODS => {
                        m.push(path.to_string());
                        m.len() - 1
                    }
                    None => 0,
                },
                Err(_) => 0,
            }
        };
        self.slots.borrow_mut().insert(path.into(), slot);
        slot
    }
}

struct Factory(Rc<WorkerState>);

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            response_headers: true,
            response_trailers: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(GrpcStats {
            w: Rc::clone(&self.0),
            slot: None,
        })
    }
}

struct GrpcStats {
    w: Rc<WorkerState>,
    /// The call's method slot, once its request was seen to be gRPC.
    slot: Option<usize>,
}

/// `/package.Service/Method`, or `None`.
fn method_path(req: &RequestHead) -> Option<&str> {
    let p = std::str::from_utf8(req.path_only()).ok()?;
    let rest = p.strip_prefix('/')?;
    let (svc, m) = rest.split_once('/')?;
    (!svc.is_empty() && !m.is_empty() && !m.contains('/')).then_some(p)
}

fn is_grpc(req: &RequestHead) -> bool {
    req.headers
        .get_bytes("content-type")
        .is_some_and(|c| c.len() >= 16 && c[..16].eq_ignore_ascii_case(b"application/grpc"))
}

impl GrpcStats {
    fn done(&mut self, headers: &HeaderMap) -> bool {
        let Some(slot) = self.slot else { return false };
        let Some(code) = headers
            .get("grpc-status")
            .and_then(|s| s.trim().parse::<usize>().ok())
        else {
            return false;
        };
        self.slot = None;
        let base = slot * PER_METHOD;
        self.w.block.inc(base + if code == 0 { 1 } else { 2 });
        if code < 17 {
            self.w.block.inc(base + 3 + code);
        }
        true
    }
}

impl HttpFilter for GrpcStats {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        if is_grpc(head) {
            if let Some(p) = method_path(head) {
                let slot = self.w.slot(p);
                self.w.block.inc(slot * PER_METHOD);
                self.slot = Some(slot);
            }
        }
        HeadersStatus::Continue
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        // A trailers-only response (or the proxy's own gRPC error) carries its status here; a
        // non-200 is a failure with no gRPC status.
        if !self.done(&head.headers) && head.status != 200 {
            if let Some(slot) = self.slot.take() {
                self.w.block.inc(slot * PER_METHOD + 2);
            }
        }
        HeadersStatus::Continue
    }

    fn on_response_trailers(&mut self, trailers: &mut HeaderMap, _cx: &mut Ctx<'_>) -> DataStatus {
        self.done(trailers);
        DataStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        self.slot = None;
        true
    }
}
