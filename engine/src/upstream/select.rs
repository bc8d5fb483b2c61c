//! How a worker chooses among a cluster's endpoints: priority levels, the healthy set, the
//! balancer or hash table within a level, and slow start.
//!
//! A [`Selection`] is built from the cluster's endpoints (weights, priorities, addresses) and,
//! for a health-checked cluster, the shared health flags as of one generation
//! ([`Selection::healthy`]); without health it is built once and every endpoint counts as
//! healthy ([`Selection::all`]).
//!
//! - **Priorities** (`priority` on endpoints, 0 the highest): each level's health is its
//!   healthy share × 1.4 (Envoy's default overprovisioning factor), capped at 100%; level 0
//!   takes its health in percent of the traffic, the next level the rest up to its own health,
//!   and so on; when the levels' health adds up to less than 100%, the loads are scaled up to
//!   100%. A request draws its level by those loads (a hashing request by its hash, so it stays
//!   sticky while nothing changes).
//! - **Panic** (`healthy_panic_threshold`): with one level, below the threshold percent healthy
//!   every endpoint takes traffic (Envoy's rule). With several levels, when every level is
//!   below the threshold, every endpoint of every level takes traffic (Envoy applies panic per
//!   level within the priority loads: coarser here; documented).
//! - **Within a level**: the cluster's balancer ([`lb::Balancer`]) over the level's endpoints,
//!   or for `ring_hash` / `maglev` the hash table over them ([`hash`]): a request with a hash
//!   takes the table's host, one without is placed at random. The tables hash each endpoint's
//!   `IP:port`, so every worker and every restart builds the same table.
//! - **Slow start** (`slow_start_config`): an endpoint that came back (passed its checks again,
//!   or its ejection ended) has its weight scaled by max(min_weight, (t / window)^(1 /
//!   aggression)) until the window ends; the cluster rebuilds its selection once a second
//!   while an endpoint ramps up (weights × 100 then, for a 1% resolution).

use crate::{
    config::{HashLbConfig, LbPolicy, SlowStart},
    endpoint_health as health,
    rng::Rng,
};

use super::{
    hash::{self, HashFunction},
    lb,
};

/// Envoy's default overprovisioning factor (1.4), in percent.
const OVERPROVISIONING: u64 = 140;

/// What a selection is built from: the cluster's endpoints and settings.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub policy: LbPolicy,
    pub weights: &'a [u32],
    pub priorities: &'a [u32],
    /// Each endpoint's `IP:port` (hash table keys).
    pub keys: &'a [String],
    pub hash: Option<HashLbConfig>,
    pub seed: u64,
    /// Slow start: the settings, when each endpoint came back (0: it did not), and now (ms on
    /// the cluster's clock).
    pub slow: Option<(SlowStart, &'a [u64], u64)>,
}

/// A hashing balancer's table.
#[derive(Debug)]
enum Table {
    Ring(hash::Ring),
    Maglev(hash::Maglev),
}

/// One priority level's endpoints and how to choose among them.
#[derive(Debug)]
struct Level {
    /// Endpoint indexes (`None`: every endpoint of the cluster, in order).
    idx: Option<Vec<usize>>,
    lb: lb::Balancer,
    table: Option<Table>,
}

impl Level {
    fn new(idx: Option<Vec<usize>>, inp: &Inputs<'_>, seed: u64, ramping: bool) -> Level {
        let members: Vec<usize> = match &idx {
            Some(v) => v.clone(),
            None => (0..inp.weights.len()).collect(),
        };
        let weights: Vec<u32> = members
            .iter()
            .map(|&i| match (ramping, inp.slow) {
                (true, Some((s, back, now))) => ramped(inp.weights[i], s, back[i], now),
                _ => inp.weights[i],
            })
            .collect();
        let table = inp.hash.map(|cfg| {
            let hosts: Vec<(String, u32)> = members
                .iter()
                .map(|&i| (inp.keys[i].clone(), inp.weights[i]))
                .collect();
            match cfg {
                HashLbConfig::Ring {
                    min_size,
                    max_size,
                    murmur,
                } => {
                    let f = match murmur {
                        true => HashFunction::MurmurHash2,
                        false => HashFunction::XxHash,
                    };
                    // Sized for the whole cluster, so a ring over its healthy hosts differs
                    // from the full one only by the missing hosts' entries.
                    let per = hash::Ring::entries_per_weight(
                        inp.weights.iter().copied(),
                        min_size,
                        max_size,
                    );
                    Table::Ring(hash::Ring::build_with(&hosts, per, f))
                }
                HashLbConfig::Maglev { table_size } => {
                    Table::Maglev(hash::Maglev::build(&hosts, table_size))
                }
            }
        });
        Level {
            idx,
            lb: lb::Balancer::new(inp.policy, &weights, seed),
            table,
        }
    }

    fn len(&self, all: usize) -> usize {
        self.idx.as_ref().map_or(all, Vec::len)
    }

    #[inline]
    fn map(&self, k: usize) -> usize {
        match &self.idx {
            None => k,
            Some(v) => v[k],
        }
    }

    #[inline]
    fn pick(&self, hash: Option<u64>, active: &impl Fn(usize) -> u32) -> usize {
        let k = match (hash, &self.table) {
            (Some(h), Some(Table::Ring(r))) => r.pick(h),
            (Some(h), Some(Table::Maglev(m))) => m.pick(h),
            _ => None,
        };
        let k = match k {
            Some(k) => k,
            None => self.lb.pick(|j| active(self.map(j))),
        };
        self.map(k)
    }
}

/// A slow-starting endpoint's weight (× 100).
fn ramped(weight: u32, s: SlowStart, back: u64, now: u64) -> u32 {
    let full = weight.saturating_mul(100);
    let window = s.window.as_millis() as u64;
    if back == 0 || now.saturating_sub(back) >= window {
        return full;
    }
    let t = now.saturating_sub(back) as f64 / window as f64;
    let f = t.powf(1.0 / s.aggression).max(s.min_weight).clamp(0.0, 1.0);
    ((f64::from(full) * f).round() as u32).max(1)
}

/// The endpoints a worker may choose from as of one health generation, by priority level.
#[derive(Debug)]
pub struct Selection {
    /// The health generation it was built from (0 without health).
    pub seen: u64,
    levels: Vec<Level>,
    /// Cumulative traffic shares of `levels`, in percent (the last is 100).
    load: Vec<u32>,
    /// Every endpoint takes traffic: too few are healthy.
    pub panic: bool,
    /// An endpoint is in slow start: rebuild once a second.
    pub ramping: bool,
    rng: Rng,
    /// Endpoints in the cluster.
    all: usize,
}

impl Selection {
    /// Every endpoint healthy (a cluster without health checks or outlier detection).
    pub fn all(inp: &Inputs<'_>) -> Selection {
        let n = inp.weights.len();
        Self::from_health(inp, 0, &vec![true; n], 100.0)
    }

    /// From the shared health flags.
    pub fn healthy(h: &health::ClusterHealth, inp: &Inputs<'_>) -> Selection {
        let n = inp.weights.len().min(h.hosts.len());
        let ok: Vec<bool> = (0..n).map(|i| h.hosts[i].healthy()).collect();
        Self::from_health(inp, h.generation(), &ok, h.panic_threshold)
    }

    fn from_health(inp: &Inputs<'_>, seen: u64, ok: &[bool], panic_threshold: f64) -> Selection {
        let n = ok.len();
        let seed = inp.seed ^ seen;
        let ramping = inp.slow.is_some_and(|(s, back, now)| {
            let w = s.window.as_millis() as u64;
            (0..n).any(|i| ok[i] && back[i] != 0 && now.saturating_sub(back[i]) < w)
        });
        // Distinct priorities, highest (0) first.
        let mut prios: Vec<u32> = inp.priorities[..n].to_vec();
        prios.sort_unstable();
        prios.dedup();
        let per: Vec<(Vec<usize>, usize)> = prios
            .iter()
            .map(|&p| {
                let members: Vec<usize> = (0..n).filter(|&i| inp.priorities[i] == p).collect();
                let healthy: Vec<usize> = members.iter().copied().filter(|&i| ok[i]).collect();
                (healthy, members.len())
            })
            .collect();
        let pct = |(healthy, total): &(Vec<usize>, usize)| {
            if *total == 0 {
                0.0
            } else {
                100.0 * healthy.len() as f64 / *total as f64
            }
        };
        let panic = n > 0 && per.iter().all(|l| pct(l) < panic_threshold);
        let mut sel = Selection {
            seen,
            levels: Vec::new(),
            load: Vec::new(),
            panic,
            ramping,
            rng: Rng::new(seed ^ 0x51_7cc1_b727_220a),
            all: n,
        };
        if n == 0 {
            return sel;
        }
        if panic {
            let idx = (prios.len() > 1 || ok.iter().any(|&o| !o)).then(|| (0..n).collect());
            sel.levels.push(Level::new(idx, inp, seed, ramping));
            sel.load.push(100);
            return sel;
        }
        // Each level's health (overprovisioned, capped), then its load.
        let health: Vec<u64> = per
            .iter()
            .map(|(h, t)| {
                if *t == 0 {
                    0
                } else {
                    (h.len() as u64 * OVERPROVISIONING / *t as u64).min(100)
                }
            })
            .collect();
        let sum: u64 = health.iter().sum();
        let mut left = 100u64;
        let mut cum = 0u32;
        for (i, (healthy, total)) in per.into_iter().enumerate() {
            let share = if sum >= 100 {
                let s = health[i].min(left);
                left -= s;
                s
            } else {
                (health[i] * 100).checked_div(sum).unwrap_or(0)
            };
            if share == 0 || healthy.is_empty() {
                continue;
            }
            cum += share as u32;
            let idx = (healthy.len() < n || total < n).then_some(healthy);
            sel.levels
                .push(Level::new(idx, inp, seed ^ i as u64, ramping));
            sel.load.push(cum);
        }
        // Rounding: the last level takes what integer division left.
        if let Some(last) = sel.load.last_mut() {
            *last = 100;
        }
        sel
    }

    /// The endpoint for a request with `hash` (`None`: no hash policy produced one); `active(i)`
    /// is endpoint `i`'s requests in flight. `None`: nothing to choose from.
    #[inline]
    pub fn pick(&self, hash: Option<u64>, active: impl Fn(usize) -> u32) -> Option<usize> {
        let level = match self.levels.len() {
            0 => return None,
            1 => &self.levels[0],
            _ => {
                let draw = match hash {
                    Some(h) => (h % 100) as u32,
                    None => self.rng.below(100) as u32,
                };
                let k = self.load.partition_point(|&c| c <= draw);
                &self.levels[k.min(self.levels.len() - 1)]
            }
        };
        Some(level.pick(hash, &active))
    }

    /// The endpoints that may take traffic, in level order (tests, diagnostics).
    pub fn members(&self) -> Vec<usize> {
        self.levels
            .iter()
            .flat_map(|l| (0..l.len(self.all)).map(move |k| l.map(k)))
            .collect()
    }

    /// Each level's share of traffic, in percent.
    pub fn loads(&self) -> Vec<u32> {
        let mut prev = 0;
        self.load
            .iter()
            .map(|&c| {
                let s = c - prev;
                prev = c;
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 8000 + i)).collect()
    }

    fn inputs<'a>(w: &'a [u32], p: &'a [u32], k: &'a [String]) -> Inputs<'a> {
        Inputs {
            policy: LbPolicy::RoundRobin,
            weights: w,
            priorities: p,
            keys: k,
            hash: None,
            seed: 7,
            slow: None,
        }
    }

    #[test]
    fn priority_loads_follow_the_healthy_share_with_overprovisioning() {
        let (w, p, k) = ([1; 6], [0, 0, 0, 0, 1, 1], keys(6));
        let inp = inputs(&w, &p, &k);
        let all = Selection::from_health(&inp, 1, &[true; 6], 50.0);
        assert_eq!(all.loads(), vec![100]);
        assert_eq!(all.members(), vec![0, 1, 2, 3]);
        // 3 of 4 healthy at P0: 75% × 1.4 = 105 → 100.
        let ok = [true, true, true, false, true, true];
        assert_eq!(
            Selection::from_health(&inp, 1, &ok, 50.0).loads(),
            vec![100]
        );
        // 2 of 4: 70% to P0, 30% to P1.
        let ok = [true, true, false, false, true, true];
        let s = Selection::from_health(&inp, 1, &ok, 50.0);
        assert_eq!(s.loads(), vec![70, 30]);
        assert_eq!(s.members(), vec![0, 1, 4, 5]);
        // 1 of 4 at P0 (35) and 1 of 2 at P1 (70): 35 + 65.
        let ok = [true, false, false, false, true, false];
        assert_eq!(
            Selection::from_health(&inp, 1, &ok, 20.0).loads(),
            vec![35, 65]
        );
        // P0 empty of healthy hosts: everything to P1.
        let ok = [false, false, false, false, true, true];
        let s = Selection::from_health(&inp, 1, &ok, 50.0);
        assert_eq!((s.loads(), s.members()), (vec![100], vec![4, 5]));
        // Every level below the panic threshold: every endpoint.
        let ok = [true, false, false, false, false, false];
        let s = Selection::from_health(&inp, 1, &ok, 50.0);
        assert!(s.panic);
        assert_eq!(s.members(), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn priority_draws_match_the_loads() {
        let (w, p, k) = ([1; 4], [0, 0, 1, 1], keys(4));
        let inp = inputs(&w, &p, &k);
        let s = Selection::from_health(&inp, 1, &[true, false, true, true], 10.0);
        assert_eq!(s.loads(), vec![70, 30]);
        let mut p1 = 0;
        for _ in 0..10_000 {
            if s.pick(None, |_| 0).expect("pick") >= 2 {
                p1 += 1;
            }
        }
        assert!(
            (2700..3300).contains(&p1),
            "{p1} of 10000 at P1 for a 30% load"
        );
    }

    #[test]
    fn slow_start_ramps_a_returning_endpoint() {
        let s = SlowStart {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight: 0.1,
        };
        assert_eq!(ramped(1, s, 0, 5_000), 100);
        assert_eq!(ramped(1, s, 1_000, 1_500), 10, "the floor: min_weight");
        assert_eq!(ramped(1, s, 1_000, 6_000), 50);
        assert_eq!(ramped(3, s, 1_000, 6_000), 150);
        assert_eq!(ramped(1, s, 1_000, 11_000), 100);
        let square = SlowStart {
            aggression: 2.0,
            ..s
        };
        // (0.25)^(1/2) = 0.5.
        assert_eq!(ramped(1, square, 1, 2_501), 50);
        let (w, p, k) = ([1, 1], [0, 0], keys(2));
        let back = [0, 1_000];
        let inp = Inputs {
            slow: Some((s, &back, 3_000)),
            ..inputs(&w, &p, &k)
        };
        let sel = Selection::from_health(&inp, 1, &[true, true], 50.0);
        assert!(sel.ramping);
        let mut got = [0; 2];
        for _ in 0..12_000 {
            got[sel.pick(None, |_| 0).expect("pick")] += 1;
        }
        // Weights 100 and 20: one sixth to the returning endpoint.
        assert_eq!(got, [10_000, 2_000]);
    }

    #[test]
    fn hashing_levels_are_sticky_and_agree_across_builds() {
        let (w, p, k) = ([1; 5], [0; 5], keys(5));
        for cfg in [
            HashLbConfig::Ring {
                min_size: 1024,
                max_size: 8 << 20,
                murmur: false,
            },
            HashLbConfig::Maglev { table_size: 65537 },
        ] {
            let inp = Inputs {
                policy: LbPolicy::RingHash,
                hash: Some(cfg),
                ..inputs(&w, &p, &k)
            };
            let a = Selection::all(&inp);
            let b = Selection::all(&Inputs { seed: 99, ..inp });
            for h in 0..1000u64 {
                let h = hash::xxhash64(&h.to_le_bytes(), 0);
                assert_eq!(a.pick(Some(h), |_| 0), b.pick(Some(h), |_| 0));
            }
        }
    }
}
