//! Consistent hashing for the `ring_hash` and `maglev` load balancers, and the hash functions
//! they use: xxHash64 (what `hash_policy` values and ring entries are hashed with) and
//! MurmurHash64A (`hash_function: MURMUR_HASH_2`).
//!
//! A worker builds a [`Ring`] or a [`Maglev`] table per cluster (per priority level, over the
//! endpoints that may take traffic: `upstream::select`) from each endpoint's `IP:port` and
//! weight, so every worker and every restart builds the same table; a request's hash (from the
//! route's `hash_policy`) then picks with one binary search (ring) or one index (Maglev),
//! without allocating. A request without a hash is placed at random by the caller.
//!
//! A leaf: std only.

/// The ring's hash function (`ring_hash_lb_config.hash_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    XxHash,
    MurmurHash2,
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn read64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn read32(b: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")))
}

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(h: u64, v: u64) -> u64 {
    (h ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 of `data` with `seed`.
pub fn xxhash64(data: &[u8], seed: u64) -> u64 {
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, v) in v.iter_mut().enumerate() {
                *v = round(*v, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for v in v {
            h = merge(h, v);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, read64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// MurmurHash64A of `data` with `seed` (Envoy's ring uses seed 0xc70f6907).
pub fn murmur2_64(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut k = read64(c);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^ (h >> R)
}

/// Envoy's seed for MurmurHash2 on the ring.
const MURMUR_SEED: u64 = 0xc70f_6907;

/// A hash ring (Ketama): each host owns entries in proportion to its weight; a hash belongs to
/// the first entry at or after it, wrapping around.
#[derive(Debug)]
pub struct Ring {
    /// (entry hash, host index), sorted by hash.
    entries: Vec<(u64, u32)>,
}

impl Ring {
    /// Build from `(key, weight)` per host (the key is the host's `IP:port`); the ring holds
    /// at least `min_size` entries (so the lightest host gets its share) and at most
    /// `max_size`. Hosts of weight 0 own nothing.
    pub fn build(hosts: &[(String, u32)], min_size: u64, max_size: u64, f: HashFunction) -> Ring {
        let per = Self::entries_per_weight(hosts.iter().map(|(_, w)| *w), min_size, max_size);
        Self::build_with(hosts, per, f)
    }

    /// Entries per unit of weight for a cluster of these weights (Envoy's sizing: the
    /// lightest host gets ceil(its share × `min_size`) entries, the ring at most `max_size`).
    pub fn entries_per_weight(
        weights: impl Iterator<Item = u32> + Clone,
        min_size: u64,
        max_size: u64,
    ) -> f64 {
        let total: f64 = weights.clone().map(f64::from).sum();
        if total == 0.0 {
            return 0.0;
        }
        let min_w = weights
            .filter(|&w| w > 0)
            .map(|w| f64::from(w) / total)
            .fold(1.0, f64::min);
        let scale = ((min_w * min_size as f64).ceil() / min_w).min(max_size as f64);
        scale / total
    }

    /// Build with `per_weight` entries per unit of weight: a host's entries depend only on its
    /// own key and weight, so a ring over a subset of the cluster (its healthy hosts) is the
    /// full ring without the missing hosts' entries — removing a host moves only its keys.
    pub fn build_with(hosts: &[(String, u32)], per_weight: f64, f: HashFunction) -> Ring {
        let mut entries = Vec::new();
        let mut key = Vec::with_capacity(64);
        for (host, (name, w)) in hosts.iter().enumerate() {
            if *w == 0 {
                continue;
            }
            let count = (per_weight * f64::from(*w)).ceil().max(1.0) as u64;
            for i in 0..count {
                key.clear();
                key.extend_from_slice(name.as_bytes());
                key.push(b'_');
                key.extend_from_slice(i.to_string().as_bytes());
                let h = match f {
                    HashFunction::XxHash => xxhash64(&key, 0),
                    HashFunction::MurmurHash2 => murmur2_64(&key, MURMUR_SEED),
                };
                entries.push((h, host as u32));
            }
        }
        entries.sort_unstable();
        Ring { entries }
    }

    /// The host owning `hash` (`None`: an empty ring).
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        Some(self.entries[self.start(hash)].1 as usize)
    }

    /// The entries, `(hash, host index)` sorted by hash (e.g. entries per host for stats).
    pub fn entries(&self) -> &[(u64, u32)] {
        &self.entries
    }

    /// Index of the first entry at or after `hash`, wrapping to 0 (the ring is not empty).
    #[inline]
    fn start(&self, hash: u64) -> usize {
        let i = self.entries.partition_point(|&(h, _)| h < hash);
        if i == self.entries.len() {
            0
        } else {
            i
        }
    }

    /// Entries on the ring.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A Maglev lookup table: `table_size` (a prime) slots, each naming a host; a hash picks slot
/// `hash % table_size`.
///
/// Each host walks its own permutation of the slots (offset = xxHash64(key, 0) % M, skip =
/// xxHash64(key, 1) % (M − 1) + 1) and takes the next free slot on its turn. Weighted as
/// Envoy's: hosts take turns in rounds; in round r a host takes a slot only while
/// r × its normalized weight has reached its target, and each slot it takes raises its target
/// by the largest normalized weight — so the heaviest host takes one slot per round and the
/// others in proportion.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    pub fn build(hosts: &[(String, u32)], table_size: u64) -> Maglev {
        debug_assert!(table_size >= 2);
        let m = table_size;
        let total: f64 = hosts.iter().map(|(_, w)| f64::from(*w)).sum();
        if total == 0.0 || m == 0 {
            return Maglev { table: Vec::new() };
        }
        struct Walk {
            host: u32,
            offset: u64,
            skip: u64,
            next: u64,
            weight: f64,
            target: f64,
        }
        let mut walks: Vec<Walk> = hosts
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| *w > 0)
            .map(|(i, (key, w))| Walk {
                host: i as u32,
                offset: xxhash64(key.as_bytes(), 0) % m,
                skip: xxhash64(key.as_bytes(), 1) % (m - 1) + 1,
                next: 0,
                weight: f64::from(*w) / total,
                target: 0.0,
            })
            .collect();
        let max_w = walks.iter().map(|w| w.weight).fold(0.0, f64::max);
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < m {
            for w in walks.iter_mut() {
                if (round as f64) * w.weight < w.target {
                    continue;
                }
                w.target += max_w;
                let mut slot = (w.offset + w.skip * w.next) % m;
                while table[slot as usize] != u32::MAX {
                    w.next += 1;
                    slot = (w.offset + w.skip * w.next) % m;
                }
                table[slot as usize] = w.host;
                w.next += 1;
                filled += 1;
                if filled == m {
                    break;
                }
            }
            round += 1;
        }
        Maglev { table }
    }

    /// The host of `hash`'s slot (`None`: an empty table).
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }

    /// Slots in the table (0: no host of nonzero weight).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table: the host index of each slot.
    pub fn table(&self) -> &[u32] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_the_reference() {
        // Vectors checked with python-xxhash (the reference C library).
        assert_eq!(xxhash64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxhash64(b"Nobody inspects the spammish repetition", 0),
            0xFBCE_A83C_8A37_8BF1
        );
        assert_eq!(xxhash64(b"abc", 1), 0xBEA9_CA81_9932_8908);
        assert_eq!(xxhash64(b"127.0.0.1:8080_0", 0), 0xF673_A43B_9624_FA24);
    }

    fn hosts(n: usize, w: &[u32]) -> Vec<(String, u32)> {
        (0..n)
            .map(|i| {
                (
                    format!("10.0.0.{}:80", i + 1),
                    w.get(i).copied().unwrap_or(1),
                )
            })
            .collect()
    }

    fn spread(pick: impl Fn(u64) -> Option<usize>, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for k in 0..100_000u64 {
            c[pick(xxhash64(&k.to_le_bytes(), 7)).expect("pick")] += 1;
        }
        c
    }

    #[test]
    fn ring_and_maglev_spread_by_weight() {
        let h = hosts(3, &[1, 1, 2]);
        let ring = Ring::build(&h, 1024, 8 << 20, HashFunction::XxHash);
        let mag = Maglev::build(&h, 65537);
        for c in [spread(|x| ring.pick(x), 3), spread(|x| mag.pick(x), 3)] {
            for (i, want) in [25_000, 25_000, 50_000].into_iter().enumerate() {
                let got = c[i] as i64;
                assert!(
                    (got - want).abs() < 5_000,
                    "host {i}: {got}, want ~{want}: {c:?}"
                );
            }
        }
    }

    #[test]
    fn removing_a_host_moves_mostly_its_own_keys() {
        let five = hosts(5, &[]);
        let four: Vec<(String, u32)> = five[..4].to_vec();
        let r5 = Ring::build(&five, 1024, 8 << 20, HashFunction::XxHash);
        // The ring over a subset keeps the full cluster's sizing (as a worker builds it).
        let per = Ring::entries_per_weight(five.iter().map(|(_, w)| *w), 1024, 8 << 20);
        let r4 = Ring::build_with(&four, per, HashFunction::XxHash);
        let m5 = Maglev::build(&five, 65537);
        let m4 = Maglev::build(&four, 65537);
        for (name, a, b, bound) in [
            (
                "ring",
                &|x| r5.pick(x) as Option<usize>,
                &|x| r4.pick(x) as Option<usize>,
                0.0,
            ),
            ("maglev", &|x| m5.pick(x), &|x| m4.pick(x), 0.1),
        ]
            as [(
                &str,
                &dyn Fn(u64) -> Option<usize>,
                &dyn Fn(u64) -> Option<usize>,
                f64,
            ); 2]
        {
            let (mut others, mut moved) = (0, 0);
            for k in 0..50_000u64 {
                let x = xxhash64(&k.to_le_bytes(), 3);
                let before = a(x).expect("pick");
                if before == 4 {
                    continue;
                }
                others += 1;
                if b(x) != Some(before) {
                    moved += 1;
                }
            }
            let share = moved as f64 / others as f64;
            assert!(share <= bound + 1e-9, "{name}: {share} of other keys moved");
        }
    }

    #[test]
    fn tables_are_deterministic_and_empty_sets_pick_nothing() {
        let h = hosts(4, &[3, 1, 1, 2]);
        let (a, b) = (Maglev::build(&h, 65537), Maglev::build(&h, 65537));
        let (r1, r2) = (
            Ring::build(&h, 1024, 8 << 20, HashFunction::MurmurHash2),
            Ring::build(&h, 1024, 8 << 20, HashFunction::MurmurHash2),
        );
        for k in 0..10_000u64 {
            assert_eq!(a.pick(k * 7919), b.pick(k * 7919));
            assert_eq!(r1.pick(k * 7919), r2.pick(k * 7919));
        }
        assert!(r1.len() >= 1024);
        let none = hosts(2, &[0, 0]);
        assert_eq!(
            Ring::build(&none, 1024, 8 << 20, HashFunction::XxHash).pick(5),
            None
        );
        assert_eq!(Maglev::build(&none, 65537).pick(5), None);
        assert_eq!(Maglev::build(&[], 65537).pick(5), None);
        // A host of weight 0 owns nothing.
        let z = Ring::build(&hosts(2, &[0, 1]), 1024, 8 << 20, HashFunction::XxHash);
        assert!((0..1000u64).all(|k| z.pick(k << 50) == Some(1)));
    }

    #[test]
    fn murmur2_64_matches_the_reference() {
        // Computed with Austin Appleby's reference C implementation (MurmurHash64A).
        assert_eq!(murmur2_64(b"", 0), 0);
        assert_eq!(murmur2_64(b"hello", 0), 0x1E68_D17C_457B_F117);
        assert_eq!(
            murmur2_64(b"127.0.0.1:8080_0", MURMUR_SEED),
            0xDE6D_9B15_4853_8B53
        );
    }

    // More vectors, each checked here against the system's reference libxxhash 0.8.1 (Python
    // ctypes `XXH64(data, len, seed)`); together they cover every path: the 4-byte and 1-byte
    // tails, 8-byte words, exactly one 32-byte stripe, and several stripes plus a tail.
    #[test]
    fn xxhash64_covers_every_path() {
        assert_eq!(xxhash64(b"", 1), 0xD5AF_BA13_36A3_BE4B);
        assert_eq!(xxhash64(b"abcd", 0), 0xDE03_27B0_D25D_92CC);
        assert_eq!(xxhash64(b"abcdefgh", 0), 0x3AD3_5177_5B46_34B7);
        assert_eq!(xxhash64(b"127.0.0.1:8080", 0), 0xC65E_86B0_00FB_3CBF);
        assert_eq!(xxhash64(b"127.0.0.1:8080", 1), 0xA5D6_DC00_53AB_4ED8);
        assert_eq!(
            xxhash64(b"0123456789abcdef0123456789abcdef", 0),
            0x642A_9495_8E71_E6C5
        );
        let bytes: Vec<u8> = (0..100).collect();
        assert_eq!(xxhash64(&bytes, 0), 0x6AC1_E580_3216_6597);
        assert_eq!(
            xxhash64(&bytes, 0x9E37_79B9_7F4A_7C15),
            0x3B97_D91E_BA03_E785
        );
    }

    // With Envoy's seed, MurmurHash64A is libstdc++'s 64-bit `std::hash<std::string>`
    // (`_Hash_bytes`): each value below was printed by g++'s `std::hash` and by Appleby's C
    // `MurmurHash64A`, which agree; "", "foo", "foo\nbar" and "lyft" are also in Envoy's own
    // hash tests.
    #[test]
    fn murmur2_64_is_libstdcxx_std_hash() {
        let s = MURMUR_SEED;
        assert_eq!(murmur2_64(b"", s), 6142509188972423790);
        assert_eq!(murmur2_64(b"a", s), 4993892634952068459);
        assert_eq!(murmur2_64(b"foo", s), 9631199822919835226);
        assert_eq!(murmur2_64(b"foo\nbar", s), 16306510975912980159);
        assert_eq!(murmur2_64(b"lyft", s), 12847078931730529320);
        assert_eq!(murmur2_64(b"abcdefgh", s), 8664279048047335611);
        assert_eq!(
            murmur2_64(b"Nobody inspects the spammish repetition", s),
            14101402996947411153
        );
        assert_eq!(murmur2_64(b"a", 0), 0x0717_17D2_D36B_6B11);
        assert_eq!(murmur2_64(b"foo/bar", 0), 0x1084_3F51_3AC5_10CC);
    }

    fn per_host(ring: &Ring, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &(_, h) in ring.entries() {
            c[h as usize] += 1;
        }
        c
    }

    #[test]
    fn ring_sizing_and_keys() {
        // Envoy's sizing: the lightest host's share of min_size, rounded up, sets the scale.
        let r = Ring::build(&hosts(3, &[1, 1, 2]), 1024, 8 << 20, HashFunction::XxHash);
        assert_eq!(per_host(&r, 3), vec![256, 256, 512]);
        // 5 equal hosts: ceil(0.2 × 1024) = 205 each.
        let r = Ring::build(&hosts(5, &[]), 1024, 8 << 20, HashFunction::XxHash);
        assert_eq!(per_host(&r, 5), vec![205; 5]);
        // max_size caps the ring.
        let r = Ring::build(&hosts(4, &[]), 1024, 8, HashFunction::XxHash);
        assert_eq!(per_host(&r, 4), vec![2; 4]);
        // Entry i of a host is the hash of "<key>_<i>".
        for f in [HashFunction::XxHash, HashFunction::MurmurHash2] {
            let r = Ring::build(&[("h".to_string(), 1)], 3, 3, f);
            let mut want: Vec<(u64, u32)> = ["h_0", "h_1", "h_2"]
                .iter()
                .map(|k| match f {
                    HashFunction::XxHash => (xxhash64(k.as_bytes(), 0), 0),
                    HashFunction::MurmurHash2 => (murmur2_64(k.as_bytes(), MURMUR_SEED), 0),
                })
                .collect();
            want.sort_unstable();
            assert_eq!(r.entries(), &want[..]);
        }
        // Lookup: an exact hit, just past it, and past the last entry (wraps to the first).
        let r = Ring::build(&hosts(2, &[]), 16, 16, HashFunction::XxHash);
        let e = r.entries();
        assert!(e.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(r.pick(e[3].0), Some(e[3].1 as usize));
        assert_eq!(r.pick(e[3].0 + 1), Some(e[4].1 as usize));
        assert_eq!(r.pick(e[e.len() - 1].0 + 1), Some(e[0].1 as usize));
        assert_eq!(r.pick(u64::MAX), Some(e[0].1 as usize));
    }

    #[test]
    fn ring_rebuilt_for_fewer_hosts_moves_few_other_keys() {
        // Rebuilt with its own sizing (Ring::build, 205 -> 256 entries per host), the other
        // hosts' new entries take some keys from each other too: still well under a quarter.
        let five = hosts(5, &[]);
        let four: Vec<(String, u32)> = five[..4].to_vec();
        let r5 = Ring::build(&five, 1024, 8 << 20, HashFunction::XxHash);
        let r4 = Ring::build(&four, 1024, 8 << 20, HashFunction::XxHash);
        let (mut others, mut moved) = (0, 0);
        for k in 0..50_000u64 {
            let x = xxhash64(&k.to_le_bytes(), 5);
            let before = r5.pick(x).expect("pick");
            if before == 4 {
                continue;
            }
            others += 1;
            if r4.pick(x) != Some(before) {
                moved += 1;
            }
        }
        assert!(moved * 4 < others, "{moved} of {others} other keys moved");
    }

    #[test]
    fn maglev_slots_follow_weights() {
        let count = |m: &Maglev, n: usize| {
            let mut c = vec![0u64; n];
            for &h in m.table() {
                c[h as usize] += 1;
            }
            c
        };
        let m = Maglev::build(&hosts(3, &[1, 1, 2]), 65537);
        assert_eq!(m.len(), 65537);
        let c = count(&m, 3);
        for (got, want) in c.iter().zip([16384u64, 16384, 32769]) {
            assert!(got.abs_diff(want) <= 2, "{c:?}");
        }
        let m = Maglev::build(&hosts(3, &[1, 3, 7]), 10007);
        let c = count(&m, 3);
        for (got, w) in c.iter().zip([1u64, 3, 7]) {
            assert!(got.abs_diff(10007 * w / 11) <= 2, "{c:?}");
        }
        let m = Maglev::build(&hosts(3, &[1, 0, 1]), 101);
        assert!(m.table().iter().all(|&h| h != 1));
        assert!(Maglev::build(&[], 101).is_empty());
    }
}
