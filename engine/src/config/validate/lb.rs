//! Validation of a cluster's load-balancer settings: `lb_policy` with the tables of the hashing
//! policies (`ring_hash_lb_config`, `maglev_lb_config`) and the `slow_start_config` of
//! `round_robin` / `least_request`. A setting for a policy the cluster does not use is an error
//! (it would silently do nothing).

use super::Problems;
use crate::config::{
    defaults,
    model::{HashLbConfig, LbPolicy, SlowStart},
    path::DocPath,
    schema::{ClusterSpec, LbPolicySpec, SlowStartSpec},
};

/// Envoy's bounds and defaults.
const MIN_RING: u64 = 1024;
const MAX_RING: u64 = 8 * 1024 * 1024;
const MAGLEV_TABLE: u64 = 65537;
/// Largest Maglev table accepted (Envoy's limit: 5000011).
const MAX_MAGLEV_TABLE: u64 = 5_000_011;

/// The policy, its hash table settings, and its slow start.
pub(super) fn lb(
    c: &ClusterSpec,
    path: &DocPath,
    problems: &mut Problems,
) -> (LbPolicy, Option<HashLbConfig>, Option<SlowStart>) {
    let policy = match c.lb_policy {
        None => {
            problems.filled(&path.key("lb_policy"), &defaults::LB_POLICY.as_str());
            defaults::LB_POLICY
        }
        Some(LbPolicySpec::RoundRobin) => LbPolicy::RoundRobin,
        Some(LbPolicySpec::LeastRequest) => LbPolicy::LeastRequest,
        Some(LbPolicySpec::Random) => LbPolicy::Random,
        Some(LbPolicySpec::RingHash) => LbPolicy::RingHash,
        Some(LbPolicySpec::Maglev) => LbPolicy::Maglev,
    };
    let misplaced = |key: &str, wants: &str, problems: &mut Problems| {
        problems.value(
            &path.key(key),
            format!("{key} applies to lb_policy {wants}, and this cluster's is {policy:?}"),
        );
    };
    if c.ring_hash_lb_config.is_some() && policy != LbPolicy::RingHash {
        misplaced("ring_hash_lb_config", "ring_hash", problems);
    }
    if c.maglev_lb_config.is_some() && policy != LbPolicy::Maglev {
        misplaced("maglev_lb_config", "maglev", problems);
    }
    if c.round_robin_lb_config.is_some() && policy != LbPolicy::RoundRobin {
        misplaced("round_robin_lb_config", "round_robin", problems);
    }
    if c.least_request_lb_config.is_some() && policy != LbPolicy::LeastRequest {
        misplaced("least_request_lb_config", "least_request", problems);
    }
    let hash = match policy {
        LbPolicy::RingHash => Some(ring(c, path, problems)),
        LbPolicy::Maglev => Some(maglev(c, path, problems)),
        _ => None,
    };
    let slow = match (&c.round_robin_lb_config, &c.least_request_lb_config) {
        (Some(rr), _) => rr.slow_start_config.as_ref().and_then(|s| {
            let at = path.key("round_robin_lb_config").key("slow_start_config");
            slow_start(s, &at, problems)
        }),
        (None, Some(lr)) => {
            let at = path.key("least_request_lb_config");
            if let Some(n) = lr.choice_count.filter(|&n| n != 2) {
                problems.value(
                    &at.key("choice_count"),
                    format!("choice_count {n} is not supported: least_request picks the less busy of 2 (Envoy's default)"),
                );
            }
            lr.slow_start_config
                .as_ref()
                .and_then(|s| slow_start(s, &at.key("slow_start_config"), problems))
        }
        (None, None) => None,
    };
    (policy, hash, slow)
}

fn ring(c: &ClusterSpec, path: &DocPath, problems: &mut Problems) -> HashLbConfig {
    let at = path.key("ring_hash_lb_config");
    let r = c.ring_hash_lb_config.as_ref();
    let min_size = problems.or(
        r.and_then(|r| r.minimum_ring_size),
        &at.key("minimum_ring_size"),
        MIN_RING,
    );
    let max_size = problems.or(
        r.and_then(|r| r.maximum_ring_size),
        &at.key("maximum_ring_size"),
        MAX_RING,
    );
    if min_size == 0 || min_size > MAX_RING {
        problems.value(
            &at.key("minimum_ring_size"),
            format!("minimum_ring_size must be 1..={MAX_RING} (found {min_size})"),
        );
    }
    if max_size > MAX_RING {
        problems.value(
            &at.key("maximum_ring_size"),
            format!("maximum_ring_size must be at most {MAX_RING} (found {max_size})"),
        );
    } else if max_size < min_size {
        problems.value(
            &at.key("maximum_ring_size"),
            format!("maximum_ring_size {max_size} is below minimum_ring_size {min_size}"),
        );
    }
    let murmur = match r.and_then(|r| r.hash_function.as_deref()) {
        None => {
            problems.filled(&at.key("hash_function"), &"XX_HASH");
            false
        }
        Some("XX_HASH") => false,
        Some("MURMUR_HASH_2") => true,
        Some(other) => {
            problems.value(
                &at.key("hash_function"),
                format!("hash_function must be XX_HASH or MURMUR_HASH_2 (found {other:?})"),
            );
            false
        }
    };
    HashLbConfig::Ring {
        min_size: min_size.clamp(1, MAX_RING),
        max_size: max_size.clamp(min_size.clamp(1, MAX_RING), MAX_RING),
        murmur,
    }
}

fn maglev(c: &ClusterSpec, path: &DocPath, problems: &mut Problems) -> HashLbConfig {
    let table_size = problems.or(
        c.maglev_lb_config.as_ref().and_then(|m| m.table_size),
        &path.key("maglev_lb_config").key("table_size"),
        MAGLEV_TABLE,
    );
    if !is_prime(table_size) || table_size > MAX_MAGLEV_TABLE {
        problems.value(
            &path.key("maglev_lb_config").key("table_size"),
            format!("table_size must be a prime up to {MAX_MAGLEV_TABLE} (found {table_size}; the default is 65537)"),
        );
        return HashLbConfig::Maglev {
            table_size: MAGLEV_TABLE,
        };
    }
    HashLbConfig::Maglev { table_size }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn slow_start(s: &SlowStartSpec, at: &DocPath, problems: &mut Problems) -> Option<SlowStart> {
    let Some(window) = s.slow_start_window.map(|d| d.0).filter(|d| !d.is_zero()) else {
        problems.value(
            &at.key("slow_start_window"),
            "slow_start_config needs a slow_start_window of more than zero",
        );
        return None;
    };
    let aggression = match &s.aggression {
        None => 1.0,
        Some(v) => match v
            .as_f64()
            .or_else(|| v.get("default_value").and_then(|d| d.as_f64()))
        {
            Some(a) if a > 0.0 && a.is_finite() => a,
            _ => {
                problems.value(
                    &at.key("aggression"),
                    "aggression is a number above 0 (or {default_value: N})",
                );
                return None;
            }
        },
    };
    let min_weight = match &s.min_weight_percent {
        None => 10.0,
        Some(p) if (0.0..=100.0).contains(&p.value()) => p.value(),
        Some(p) => {
            problems.value(
                &at.key("min_weight_percent"),
                format!(
                    "min_weight_percent is a percentage: 0..=100 (found {})",
                    p.value()
                ),
            );
            return None;
        }
    };
    Some(SlowStart {
        window,
        aggression,
        min_weight: min_weight / 100.0,
    })
}
