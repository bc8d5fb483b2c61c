//! The worker's pseudo-random numbers: a tiny xorshift64* generator, one per user per worker
//! (never shared, never locked). Load balancers draw endpoints from it (`upstream::lb`),
//! tracing draws trace and span ids and sampling decisions, and the `x-request-id` generator
//! draws its per-worker prefix. Not cryptographic: it spreads load and makes ids unlikely to
//! collide, nothing more.
//!
//! A leaf: it imports nothing from the crate.

use std::cell::Cell;

/// xorshift64*: fast, per worker, good enough to spread load.
#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(Cell::new(seed | 1))
    }
    pub fn next_u64(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}
