//! The `cache` filter's config: the keys as written in the file ([`CacheSpec`]), checked into
//! the immutable [`Settings`] every worker's store is built from, and the filter's counters.
//!
//! ```yaml
//! - name: cache
//!   max_size_bytes: 67108864      # per worker
//!   max_object_bytes: 1048576
//!   default_ttl: null
//!   allowed_vary_headers: ["accept-encoding"]   # or [{exact: accept-encoding}], Envoy's shape
//! ```

use std::{rc::Rc, sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use crate::{
    filter::{FilterConfig, FilterFactory, WorkerInfo},
    registry::{ConfigProblem, ParseResult},
    stats::StatSet,
};

use super::CacheFactory;

/// Counter indexes (names in [`STAT_NAMES`], printed with the `cache.` prefix).
pub(super) const HITS: usize = 0;
pub(super) const MISSES: usize = 1;
pub(super) const REVALIDATIONS: usize = 2;
pub(super) const INSERTS: usize = 3;
pub(super) const EVICTIONS: usize = 4;
pub(super) const UNCACHEABLE: usize = 5;
pub(super) const BYTES: usize = 6;

/// Stat names, in index order.
pub(super) const STAT_NAMES: &[&str] = &[
    "hits",
    "misses",
    "revalidations",
    "inserts",
    "evictions",
    "uncacheable",
    "bytes",
];

const DEFAULT_MAX_SIZE: u64 = 64 << 20;
const DEFAULT_MAX_OBJECT: u64 = 1 << 20;

/// At most this many `allowed_vary_headers` (a variant's `Vary` is a 64-bit set over them).
const MAX_VARY_HEADERS: usize = 64;

/// The `cache` filter's keys as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheSpec {
    /// Bytes one worker's store may hold: each entry counts its key, header and body bytes and
    /// a fixed bookkeeping charge. Least recently used entries are evicted. Default 64 MiB.
    #[serde(default = "default_max_size")]
    pub max_size_bytes: u64,
    /// Largest body stored, in bytes; a larger response passes through unstored. Default 1 MiB;
    /// at most `max_size_bytes`.
    #[serde(default = "default_max_object")]
    pub max_object_bytes: u64,
    /// Freshness lifetime given to a storable response that states none (no `s-maxage`,
    /// `max-age` or `Expires`). Default none: such responses are not stored (no heuristic
    /// freshness).
    #[serde(default, deserialize_with = "crate::registry::opt_duration")]
    pub default_ttl: Option<Duration>,
    /// Request headers a stored response may vary on (`Vary`), as exact names: a string or
    /// Envoy's `{exact: name}` matcher. A response varying on any other header, or on `*`, is
    /// not stored. Default `["accept-encoding"]`.
    #[serde(default = "default_vary")]
    pub allowed_vary_headers: Vec<Value>,
}

fn default_max_size() -> u64 {
    DEFAULT_MAX_SIZE
}

fn default_max_object() -> u64 {
    DEFAULT_MAX_OBJECT
}

fn default_vary() -> Vec<Value> {
    vec![Value::from("accept-encoding")]
}

/// The checked config every worker's cache runs on.
#[derive(Debug)]
pub(super) struct Settings {
    pub max_size_bytes: usize,
    pub max_object_bytes: usize,
    /// Seconds.
    pub default_ttl: Option<u64>,
    /// Lower-case header names, at most 64.
    pub allowed_vary: Box<[Box<str>]>,
}

/// A validated `cache` config: the settings and one counter block per worker.
#[derive(Debug)]
pub struct CacheConfig {
    settings: Arc<Settings>,
    stats: StatSet,
}

impl FilterConfig for CacheConfig {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(CacheFactory::new(
            Arc::clone(&self.settings),
            self.stats.worker(),
            super::wall_clock,
        ))
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.stats.snapshot()
    }

    fn is_gauge(&self, name: &str) -> bool {
        self.stats.is_gauge(name)
    }
}

/// Validate a `cache` config (every problem, with its path).
pub fn parse(v: &Value) -> ParseResult {
    let spec = crate::registry::decode::<CacheSpec>(v)?;
    let settings = check(spec)?;
    Ok(Arc::new(CacheConfig {
        settings: Arc::new(settings),
        stats: StatSet::new("cache.", STAT_NAMES).with_gauges(&["bytes"]),
    }))
}

pub(super) fn check(spec: CacheSpec) -> Result<Settings, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if spec.max_size_bytes == 0 {
        problems.push(ConfigProblem::at(
            "max_size_bytes",
            "must be above 0 (remove the filter to disable caching)",
        ));
    }
    if spec.max_object_bytes == 0 {
        problems.push(ConfigProblem::at("max_object_bytes", "must be above 0"));
    } else if spec.max_object_bytes > spec.max_size_bytes && spec.max_size_bytes > 0 {
        problems.push(ConfigProblem::at(
            "max_object_bytes",
            format!(
                "{} is larger than max_size_bytes ({}): such an object could never be stored",
                spec.max_object_bytes, spec.max_size_bytes
            ),
        ));
    }
    let default_ttl = match spec.default_ttl {
        Some(d) if d < Duration::from_secs(1) => {
            problems.push(ConfigProblem::at(
                "default_ttl",
                "must be at least 1s (leave it out, or null, to store only responses with an explicit lifetime)",
            ));
            None
        }
        d => d.map(|d| d.as_secs()),
    };
    let mut allowed: Vec<Box<str>> = Vec::new();
    for (i, v) in spec.allowed_vary_headers.iter().enumerate() {
        let at = format!("allowed_vary_headers.{i}");
        let name = match v {
            Value::String(s) => Some(s.as_str()),
            Value::Object(m) => match (m.get("exact"), m.len()) {
                (Some(Value::String(s)), 1) => Some(s.as_str()),
                (Some(Value::String(s)), 2)
                    if m.get("ignore_case").is_some_and(Value::is_boolean) =>
                {
                    Some(s.as_str())
                }
                _ => None,
            },
            _ => None,
        };
        let Some(name) = name else {
            problems.push(ConfigProblem::at(
                &at,
                "expected a header name or {exact: name} (other matchers are not supported)",
            ));
            continue;
        };
        if name == "*" || !crate::stream::HeaderMap::is_valid_name(name.as_bytes()) {
            problems.push(ConfigProblem::at(
                &at,
                format!("{name:?} is not a header name"),
            ));
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if !allowed.iter().any(|a| **a == *lower) {
            allowed.push(lower.into());
        }
    }
    if allowed.len() > MAX_VARY_HEADERS {
        problems.push(ConfigProblem::at(
            "allowed_vary_headers",
            format!("at most {MAX_VARY_HEADERS} names"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        max_size_bytes: usize::try_from(spec.max_size_bytes).unwrap_or(usize::MAX),
        max_object_bytes: usize::try_from(spec.max_object_bytes).unwrap_or(usize::MAX),
        default_ttl,
        allowed_vary: allowed.into_boxed_slice(),
    })
}
