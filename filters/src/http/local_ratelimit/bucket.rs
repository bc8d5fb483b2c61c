//! Token buckets as one worker holds them: this worker's share of a configured bucket
//! ([`Share`]), the bucket's state refilled lazily from the request's arrival time
//! ([`Bucket`]), and one bucket per distinct descriptor value with a least-recently-used bound
//! ([`BucketMap`]).
//!
//! ## The split between workers
//! A configured bucket (`max_tokens` M, `tokens_per_fill` P, `fill_interval` T) is cut into one
//! bucket per worker, with no lock and no message between them:
//! - capacity: worker `i` of `n` holds `M / n`, plus one for the `M % n` lowest-indexed workers
//!   (the capacities sum to M exactly; with M < n some workers hold 0 and refuse everything);
//! - fills go to the workers that can hold a token (the first `m = min(n, M)`). When P >= m,
//!   worker `i` gets `P / m` per fill plus one for the `P % m` lowest-indexed workers (which
//!   are also the ones with the larger capacity, so no fill overflows a drained bucket when
//!   M >= P). When P < m, a fixed split would give most workers 0 per fill forever; instead the
//!   P tokens rotate: after `k` fills worker `i` has been given `floor((k·P + m-1-i) / m)`
//!   tokens (Hermite's identity makes the workers' totals sum to `k·P`), i.e. exactly P tokens
//!   every m fills, one at a time.
//!
//! ## Time
//! Envoy refills on a timer. Here a bucket is anchored at the arrival time of the first request
//! that touches it (it starts full) and, on each request, is given the tokens of every whole
//! fill interval since the anchor that it has not had yet (counted from the anchor, so no drift
//! accumulates), capped at its capacity. For a request the outcome is the same as a timer's;
//! only the phase of the fills differs. No clock is read: the time is the request's `start`.

use std::{collections::HashMap, rc::Rc, time::Duration, time::Instant};

/// A configured token bucket (validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketSpec {
    /// `max_tokens`.
    pub max_tokens: u64,
    /// `tokens_per_fill`.
    pub tokens_per_fill: u64,
    /// `fill_interval`.
    pub fill_interval: Duration,
}

/// One worker's share of a [`BucketSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    /// Tokens this worker's bucket holds at most.
    pub cap: u64,
    /// Tokens given after `k` fills: `(k·a + c) / b`.
    a: u64,
    b: u64,
    c: u64,
    interval_ns: u128,
}

impl Share {
    /// Worker `id`'s share of `spec` among `count` workers (see the module doc).
    pub(crate) fn of(spec: &BucketSpec, id: usize, count: usize) -> Share {
        let n = count.max(1) as u64;
        let i = (id as u64).min(n - 1);
        let (m, p) = (spec.max_tokens, spec.tokens_per_fill);
        let cap = m / n + u64::from(i < m % n);
        let active = n.min(m);
        let (a, b, c) = if i >= active {
            (0, 1, 0)
        } else if p >= active {
            (p / active + u64::from(i < p % active), 1, 0)
        } else {
            (p, active, active - 1 - i)
        };
        Share {
            cap,
            a,
            b,
            c,
            interval_ns: spec.fill_interval.as_nanos().max(1),
        }
    }

    /// Tokens given to this worker by the first `k` fills.
    fn given(&self, k: u64) -> u128 {
        (u128::from(k) * u128::from(self.a) + u128::from(self.c)) / u128::from(self.b)
    }
}

/// One bucket's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    tokens: u64,
    /// When the bucket was first used (`None`: never; it is full).
    anchor: Option<Instant>,
    /// Whole fill intervals since `anchor` already credited.
    fills: u64,
}

impl Bucket {
    /// Credit the fills due at `now` (a request's arrival; an earlier time than the last one
    /// seen credits nothing).
    pub(crate) fn refill(&mut self, s: &Share, now: Instant) {
        let Some(anchor) = self.anchor else {
            self.anchor = Some(now);
            self.tokens = s.cap;
            self.fills = 0;
            return;
        };
        let k = now.saturating_duration_since(anchor).as_nanos() / s.interval_ns;
        let k = u64::try_from(k).unwrap_or(u64::MAX);
        if k > self.fills {
            let added = s.given(k).saturating_sub(s.given(self.fills));
            let added = u64::try_from(added).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(added).min(s.cap);
            self.fills = k;
        }
    }

    /// Tokens left (after [`Bucket::refill`]).
    pub(crate) fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Take one token; `false` when there is none.
    pub(crate) fn take(&mut self) -> bool {
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Whole seconds, rounded up, from `now` until the next fill that gives this worker a
    /// token (a bucket that never gets any: one fill interval). At least 1.
    pub(crate) fn reset_secs(&self, s: &Share, now: Instant) -> u64 {
        let ns = match self.anchor {
            Some(anchor) if s.a > 0 => {
                let elapsed = now.saturating_duration_since(anchor).as_nanos();
                let base = s.given(self.fills);
                // Within `b` fills the worker is given at least one token (a > 0).
                let j = (1..=s.b)
                    .find(|&j| s.given(self.fills.saturating_add(j)) > base)
                    .unwrap_or(1);
                let at = u128::from(self.fills.saturating_add(j)) * s.interval_ns;
                at.saturating_sub(elapsed)
            }
            _ => s.interval_ns,
        };
        u64::try_from(ns.div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot {
    key: Rc<[u8]>,
    bucket: Bucket,
    prev: u32,
    next: u32,
}

/// Buckets by descriptor value, at most `cap` of them: past that, the least recently used one
/// is forgotten (its value starts again with a full bucket when it comes back). A lookup of a
/// known value allocates nothing; a new value allocates its key once.
#[derive(Debug)]
pub(crate) struct BucketMap {
    index: HashMap<Rc<[u8]>, u32>,
    slots: Vec<Slot>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    cap: usize,
}

impl BucketMap {
    pub(crate) fn new(cap: usize) -> BucketMap {
        BucketMap {
            index: HashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            cap: cap.max(1),
        }
    }

    /// Values held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `key` has a bucket (does not count as a use).
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// The bucket of `key`, created (full) when absent; it becomes the most recently used.
    pub(crate) fn get(&mut self, key: &[u8]) -> &mut Bucket {
        let i = match self.index.get(key) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None => self.insert(key),
        };
        self.push_front(i);
        &mut self.slots[i as usize].bucket
    }

    fn insert(&mut self, key: &[u8]) -> u32 {
        let key: Rc<[u8]> = Rc::from(key);
        let i = if self.slots.len() < self.cap {
            self.slots.push(Slot {
                key: Rc::clone(&key),
                bucket: Bucket::default(),
                prev: NIL,
                next: NIL,
            });
            (self.slots.len() - 1) as u32
        } else {
            let i = self.tail;
            self.unlink(i);
            let slot = &mut self.slots[i as usize];
            self.index.remove(&slot.key);
            slot.key = Rc::clone(&key);
            slot.bucket = Bucket::default();
            i
        };
        self.index.insert(key, i);
        i
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.slots[o as usize].prev = i,
        }
        self.head = i;
    }
}
