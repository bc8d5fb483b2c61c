//! Filter counters without sharing a cache line between workers: each worker gets its own block
//! of `AtomicU64`s (written only by that worker, `Relaxed` load + store, no locked
//! read-modify-write); the control side sums the blocks when stats are read.
//!
//! ```text
//! FilterConfig (control thread, Arc) ── StatSet { names, blocks: Mutex<Vec<Arc<Counters>>> }
//!     worker k: StatSet::worker() ─▶ Arc<Counters> kept in its factory, bumped per request
//!     admin /stats: StatSet::snapshot() sums every block by name
//! ```
//!
//! The mutex is taken when a worker builds its factory and when stats are read: never on the
//! request path.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

/// One worker's counters of one filter instance (index = position in the set's names).
#[derive(Debug)]
pub struct Counters {
    vals: Box<[AtomicU64]>,
}

impl Counters {
    /// Add one to counter `i` (single writer: this worker).
    #[inline]
    pub fn inc(&self, i: usize) {
        self.add(i, 1);
    }

    /// Add `n` to counter `i`.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.vals.get(i) {
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// Set gauge `i`.
    #[inline]
    pub fn set(&self, i: usize, v: u64) {
        if let Some(c) = self.vals.get(i) {
            c.store(v, Ordering::Relaxed);
        }
    }

    pub fn get(&self, i: usize) -> u64 {
        self.vals.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The counters of one filter config, one block per worker.
#[derive(Debug)]
pub struct StatSet {
    /// Full stat names (e.g. `local_rate_limit.api.rate_limited`).
    names: Vec<String>,
    /// Which of `names` are levels (gauges, set with [`Counters::set`]) rather than counts.
    gauges: Vec<bool>,
    blocks: Mutex<Vec<Arc<Counters>>>,
}

impl StatSet {
    /// `prefix` then each of `names` (`"cache." + "hits"`).
    pub fn new(prefix: &str, names: &[&str]) -> StatSet {
        StatSet {
            names: names.iter().map(|n| format!("{prefix}{n}")).collect(),
            gauges: vec![false; names.len()],
            blocks: Mutex::new(Vec::new()),
        }
    }

    /// Mark the stats whose own names (without the prefix) are in `gauges` as levels.
    pub fn with_gauges(mut self, gauges: &[&str]) -> StatSet {
        for (i, n) in self.names.iter().enumerate() {
            if gauges.iter().any(|g| n.rsplit('.').next() == Some(*g)) {
                self.gauges[i] = true;
            }
        }
        self
    }

    /// Whether the stat named `name` (full name) is a gauge.
    pub fn is_gauge(&self, name: &str) -> bool {
        self.names
            .iter()
            .position(|n| n == name)
            .is_some_and(|i| self.gauges[i])
    }

    /// A new block for a worker's factory.
    pub fn worker(&self) -> Arc<Counters> {
        let c = Arc::new(Counters {
            vals: self.names.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        if let Ok(mut b) = self.blocks.lock() {
            b.push(Arc::clone(&c));
        }
        c
    }

    /// Every counter summed over the workers, as `(name, value)`.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let blocks = match self.blocks.lock() {
            Ok(b) => b.clone(),
            Err(_) => Vec::new(),
        };
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), blocks.iter().map(|b| b.get(i)).sum()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers() {
        let s = StatSet::new("f.", &["a", "b"]);
        let w0 = s.worker();
        let w1 = s.worker();
        w0.inc(0);
        w1.add(0, 2);
        w1.inc(1);
        w1.inc(7); // out of range: ignored
        let g = StatSet::new("f.", &["a", "level"]).with_gauges(&["level"]);
        assert!(g.is_gauge("f.level"));
        assert!(!g.is_gauge("f.a"));
        assert!(!s.is_gauge("f.a"));
        assert_eq!(
            s.snapshot(),
            vec![("f.a".to_string(), 3), ("f.b".to_string(), 1)]
        );
    }
}
