//! Load balancers: pick an endpoint index of a cluster for each request. Per worker (`Cell`s, no
//! atomics); weights respected. Hot path: one [`Balancer::pick`] per forwarded request, O(1) for
//! equal weights and O(log n) otherwise, no allocation.

use std::cell::Cell;

use crate::{config::LbPolicy, rng::Rng};

#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    /// Cumulative weights (`cum[i]` = sum of weights 0..=i); empty when all weights are equal.
    cum: Vec<u64>,
    total: u64,
    n: usize,
    /// Round robin position in `0..total` (weighted) or `0..n`.
    next: Cell<u64>,
    rng: Rng,
}

impl Balancer {
    pub fn new(policy: LbPolicy, weights: &[u32], seed: u64) -> Self {
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let mut cum = Vec::new();
        let mut total = 0u64;
        if !equal {
            for w in weights {
                total += u64::from((*w).max(1));
                cum.push(total);
            }
        } else {
            total = weights.len() as u64;
        }
        let rng = Rng::new(seed);
        // Start each worker at a different place so workers don't hit endpoints in lock-step.
        let start = if total > 0 { rng.below(total) } else { 0 };
        Balancer {
            policy,
            cum,
            total,
            n: weights.len(),
            next: Cell::new(start),
            rng,
        }
    }

    fn by_weight_point(&self, point: u64) -> usize {
        if self.cum.is_empty() {
            point as usize
        } else {
            self.cum.partition_point(|&c| c <= point)
        }
    }

    fn weighted_random(&self) -> usize {
        self.by_weight_point(self.rng.below(self.total))
    }

    /// Pick an endpoint. `active(i)` is the number of requests in flight to endpoint `i` (used by
    /// least_request). `n` must be > 0.
    pub fn pick(&self, active: impl Fn(usize) -> u32) -> usize {
        if self.n <= 1 {
            return 0;
        }
        match self.policy {
            LbPolicy::RoundRobin => {
                // Weighted round robin over the weight line 0..total (interleaving by weight
                // blocks; exact proportions over every `total` picks).
                let p = self.next.get();
                self.next.set(if p + 1 >= self.total { 0 } else { p + 1 });
                self.by_weight_point(p)
            }
            // A hashing policy places a request without a hash at random (as Envoy).
            LbPolicy::Random | LbPolicy::RingHash | LbPolicy::Maglev => self.weighted_random(),
            LbPolicy::LeastRequest => {
                // Power of two choices, each chosen by weight: the less busy one wins.
                let a = self.weighted_random();
                let mut b = self.weighted_random();
                if b == a {
                    b = (a + 1 + self.rng.below(self.n as u64 - 1) as usize) % self.n;
                }
                if active(b) < active(a) {
                    b
                } else {
                    a
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(b: &Balancer, n: usize, picks: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..picks {
            c[b.pick(|_| 0)] += 1;
        }
        c
    }

    #[test]
    fn round_robin_equal_is_exact() {
        let b = Balancer::new(LbPolicy::RoundRobin, &[1, 1, 1], 7);
        assert_eq!(counts(&b, 3, 300), vec![100, 100, 100]);
    }

    #[test]
    fn round_robin_weighted_is_exact_per_cycle() {
        let b = Balancer::new(LbPolicy::RoundRobin, &[1, 3, 6], 7);
        assert_eq!(counts(&b, 3, 1000), vec![100, 300, 600]);
    }

    #[test]
    fn random_respects_weights() {
        let b = Balancer::new(LbPolicy::Random, &[1, 9], 12345);
        let c = counts(&b, 2, 100_000);
        assert!((8_500..11_500).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_prefers_idle_endpoint() {
        let b = Balancer::new(LbPolicy::LeastRequest, &[1, 1], 99);
        for _ in 0..100 {
            assert_eq!(b.pick(|i| if i == 0 { 10 } else { 0 }), 1);
        }
    }

    #[test]
    fn least_request_spreads_when_equal() {
        let b = Balancer::new(LbPolicy::LeastRequest, &[1, 1, 1, 1], 5);
        let c = counts(&b, 4, 40_000);
        assert!(c.iter().all(|&x| x > 7_000), "{c:?}");
    }

    #[test]
    fn single_endpoint_always_zero() {
        for p in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let b = Balancer::new(p, &[5], 1);
            assert_eq!(b.pick(|_| 0), 0);
        }
    }
}
