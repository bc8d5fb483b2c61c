//! Envoy's `FractionalPercent` (`{numerator, denominator: HUNDRED | TEN_THOUSAND | MILLION}`)
//! and the per-worker random numbers that roll it. Used by `local_ratelimit`
//! (`filter_enabled`, `filter_enforced`) and by `fault` (`percentage`).
//!
//! A roll is `random % denominator < numerator`, as Envoy's `featureEnabled`; a numerator at or
//! above the denominator is always true and 0 is always false, both without drawing a number
//! (so 0% and 100% cost nothing and are exact). The generator is a xorshift64* per worker
//! factory, seeded from the worker's index and the wall clock once when the factory is built:
//! no lock, no dependency, no clock read per request. It is not for secrets.

use std::cell::Cell;

use serde::Deserialize;

/// Envoy's `FractionalPercent.DenominatorType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Denominator {
    /// 100.
    #[default]
    Hundred,
    /// 10,000.
    TenThousand,
    /// 1,000,000.
    Million,
}

impl Denominator {
    pub(crate) fn value(self) -> u32 {
        match self {
            Denominator::Hundred => 100,
            Denominator::TenThousand => 10_000,
            Denominator::Million => 1_000_000,
        }
    }
}

/// Envoy's `FractionalPercent` as written in a config file.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FractionalPercentSpec {
    /// Share of requests, over `denominator` (default 0, as Envoy; above the denominator means
    /// all).
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`.
    #[serde(default)]
    pub denominator: Denominator,
}

/// Envoy's `RuntimeFractionalPercent`: ringway has no runtime layer, so `runtime_key` is
/// accepted (configs copied from Envoy keep working) and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuntimeFractionalPercentSpec {
    /// The percentage.
    #[serde(default)]
    pub default_value: FractionalPercentSpec,
    /// Envoy's runtime override key: accepted, ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub runtime_key: Option<String>,
}

/// A validated percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Percent {
    numerator: u32,
    denominator: u32,
}

impl Percent {
    /// Every request.
    pub(crate) const ALWAYS: Percent = Percent {
        numerator: 100,
        denominator: 100,
    };

    pub(crate) fn new(numerator: u32, denominator: Denominator) -> Percent {
        Percent {
            numerator,
            denominator: denominator.value(),
        }
    }

    pub(crate) fn from_spec(s: FractionalPercentSpec) -> Percent {
        Percent::new(s.numerator, s.denominator)
    }

    /// This percentage with its numerator lowered to `n` when `n` is smaller (Envoy's
    /// `x-envoy-fault-*-percentage` headers: capped by the config, same denominator).
    pub(crate) fn capped(self, n: u32) -> Percent {
        Percent {
            numerator: self.numerator.min(n),
            denominator: self.denominator,
        }
    }

    /// Whether this request is in the share.
    #[inline]
    pub(crate) fn roll(self, rng: &Rng) -> bool {
        if self.numerator == 0 {
            false
        } else if self.numerator >= self.denominator {
            true
        } else {
            rng.next() % u64::from(self.denominator) < u64::from(self.numerator)
        }
    }
}

/// xorshift64*: one `Cell<u64>` per worker factory.
#[derive(Debug)]
pub(crate) struct Rng(Cell<u64>);

impl Rng {
    /// A generator for worker `id`, seeded from `id` and the wall clock.
    pub(crate) fn for_worker(id: usize) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::seeded(nanos ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A generator from `seed` (splitmix64 once, so close seeds give unrelated streams; never
    /// zero, which xorshift cannot leave).
    pub(crate) fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(Cell::new(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z }))
    }

    #[inline]
    pub(crate) fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
