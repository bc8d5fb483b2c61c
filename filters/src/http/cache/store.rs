//! One worker's cache store: stored responses ([`Entry`]) by key, several variants per key (one
//! per set of `Vary`'d request values), bounded in bytes with least-recently-used eviction.
//!
//! ```text
//! map: key ─▶ [slot, slot, ...]  (variants, most recently stored first)
//! slots: Vec<Slot>  ── each live slot is a node of one doubly linked list, most recently used
//!                      at `head`, evicted from `tail`; freed slots are reused (their generation
//!                      moves on, so an old EntryId no longer finds them)
//! ```
//!
//! The store belongs to one worker (`Rc<RefCell<..>>` in the filter's factory): no lock, no
//! atomics. Entries are `Rc<Entry>`, so a hit hands out the entry (and its body `Bytes`) without
//! copying, and a revalidation in flight keeps its entry even if the store evicts it meanwhile.
//! A lookup is one hash of the key plus a comparison per variant; an insert or a removal is a
//! few index updates. The key is the only allocation an insert adds beside the entry.
//!
//! The map hashes with foldhash (`quality`, hashbrown's own default family), seeded at random
//! per map (SipHash, std's default, was about 2% of a cache hit's instructions). Keys come from
//! clients, so what guards against keys chosen to collide is that seed, which no response
//! reveals, and the store's bound in bytes, which caps how many keys a worker holds.

use std::{collections::HashMap, rc::Rc, time::Instant};

use bytes::Bytes;

use crate::stream::HeaderMap;

/// Bytes an entry is charged beyond its key, headers, body and `Vary` values: the node, the
/// `Entry`, the header index and the map's slot. A rough figure, so that many tiny entries
/// cannot take far more memory than `max_size_bytes` says.
pub const ENTRY_OVERHEAD: usize = 256;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    pub status: u16,
    /// End-to-end headers as stored (no `Age`, no hop-by-hop, no framing).
    pub headers: HeaderMap,
    /// The whole body, one contiguous buffer that hits share.
    pub body: Bytes,
    /// Which of the allowed `Vary` headers this variant depends on (bit i: allowed header i).
    pub vary_mask: u64,
    /// The request's values of those headers ([`super::policy::write_vary_values`]).
    pub vary_values: Box<[u8]>,
    /// The start of the request that fetched (or last validated) it: resident time counts from
    /// here.
    pub stored_at: Instant,
    /// Age in seconds when it arrived (RFC 9111 §4.2.3 `corrected_initial_age`).
    pub initial_age: u64,
    /// Freshness lifetime in seconds.
    pub lifetime: u64,
    /// Response `no-cache`: every use is revalidated.
    pub no_cache: bool,
    /// Never served stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`).
    pub no_stale: bool,
}

impl Entry {
    /// Current age in seconds at `now` (RFC 9111 §4.2.3).
    pub fn age(&self, now: Instant) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at).as_secs())
    }

    /// Bytes charged against the store for this entry under `key`.
    pub fn size(&self, key: &[u8]) -> usize {
        ENTRY_OVERHEAD
            + key.len()
            + self.headers.wire_len()
            + self.body.len()
            + self.vary_values.len()
    }

    /// Whether it carries a validator the origin can check (`ETag`, `Last-Modified`).
    pub fn has_validators(&self) -> bool {
        self.headers.contains("etag") || self.headers.contains("last-modified")
    }
}

/// A stored entry's handle; stale once the entry is removed or evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId {
    idx: u32,
    gen: u32,
}

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node {
    key: Rc<[u8]>,
    entry: Rc<Entry>,
    size: usize,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    node: Option<Node>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// `false`: the entry is larger than the whole store.
    pub stored: bool,
    /// Entries evicted to make room.
    pub evicted: u64,
}

/// The LRU store. See the module doc.
#[derive(Debug)]
pub struct Store {
    map: HashMap<Rc<[u8]>, Vec<u32>, foldhash::quality::RandomState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    bytes: usize,
    count: usize,
    max_bytes: usize,
}

impl Store {
    pub fn new(max_bytes: usize) -> Store {
        Store {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            count: 0,
            max_bytes,
        }
    }

    /// Bytes charged by the stored entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of stored entries (variants).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn node(&self, idx: u32) -> Option<&Node> {
        self.slots.get(idx as usize).and_then(|s| s.node.as_ref())
    }

    fn node_mut(&mut self, idx: u32) -> Option<&mut Node> {
        self.slots
            .get_mut(idx as usize)
            .and_then(|s| s.node.as_mut())
    }

    fn idx_of(&self, id: EntryId) -> Option<u32> {
        let s = self.slots.get(id.idx as usize)?;
        (s.gen == id.gen && s.node.is_some()).then_some(id.idx)
    }

    /// The most recently stored variant under `key` for which `matches` holds (does not count as
    /// a use: call [`Store::touch`] when it is served).
    pub fn find(
        &self,
        key: &[u8],
        mut matches: impl FnMut(&Entry) -> bool,
    ) -> Option<(EntryId, Rc<Entry>)> {
        let variants = self.map.get(key)?;
        variants.iter().find_map(|&idx| {
            let n = self.node(idx)?;
            matches(&n.entry).then(|| {
                let gen = self.slots[idx as usize].gen;
                (EntryId { idx, gen }, Rc::clone(&n.entry))
            })
        })
    }

    /// The entry behind `id`, if it is still stored.
    #[cfg(test)]
    pub fn get(&self, id: EntryId) -> Option<&Rc<Entry>> {
        self.idx_of(id).and_then(|i| self.node(i)).map(|n| &n.entry)
    }

    /// Mark `id` as just used.
    pub fn touch(&mut self, id: EntryId) {
        if let Some(i) = self.idx_of(id) {
            self.unlink(i);
            self.link_front(i);
        }
    }

    /// Store `entry` under `key`, replacing the variant with the same `Vary` values, evicting
    /// least recently used entries until it fits. An entry larger than the whole store is not
    /// stored (the variant it would replace is still removed: it is outdated).
    pub fn insert(&mut self, key: Rc<[u8]>, entry: Rc<Entry>) -> Inserted {
        self.remove_variant(&key, entry.vary_mask, &entry.vary_values);
        let size = entry.size(&key);
        if size > self.max_bytes {
            return Inserted {
                stored: false,
                evicted: 0,
            };
        }
        let mut evicted = 0;
        while self.bytes + size > self.max_bytes && self.tail != NIL {
            self.remove_idx(self.tail);
            evicted += 1;
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { gen: 0, node: None });
                (self.slots.len() - 1) as u32
            }
        };
        let key = match self.map.get_key_value(&key[..]) {
            Some((k, _)) => Rc::clone(k),
            None => key,
        };
        self.map.entry(Rc::clone(&key)).or_default().insert(0, idx);
        self.slots[idx as usize].node = Some(Node {
            key,
            entry,
            size,
            prev: NIL,
            next: NIL,
        });
        self.link_front(idx);
        self.bytes += size;
        self.count += 1;
        Inserted {
            stored: true,
            evicted,
        }
    }

    /// Remove the entry behind `id`; `false` if it was already gone.
    pub fn remove(&mut self, id: EntryId) -> bool {
        match self.idx_of(id) {
            Some(i) => {
                self.remove_idx(i);
                true
            }
            None => false,
        }
    }

    /// Remove every variant stored under `key`; how many there were.
    pub fn remove_key(&mut self, key: &[u8]) -> usize {
        let Some(variants) = self.map.get(key) else {
            return 0;
        };
        let variants = variants.clone();
        for &i in &variants {
            self.remove_idx(i);
        }
        variants.len()
    }

    fn remove_variant(&mut self, key: &[u8], mask: u64, values: &[u8]) {
        let Some(variants) = self.map.get(key) else {
            return;
        };
        let same = variants.iter().copied().find(|&i| {
            self.node(i)
                .is_some_and(|n| n.entry.vary_mask == mask && *n.entry.vary_values == *values)
        });
        if let Some(i) = same {
            self.remove_idx(i);
        }
    }

    fn remove_idx(&mut self, idx: u32) {
        self.unlink(idx);
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let Some(node) = slot.node.take() else {
            return;
        };
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(idx);
        self.bytes -= node.size;
        self.count -= 1;
        if let Some(v) = self.map.get_mut(&node.key[..]) {
            v.retain(|&i| i != idx);
            if v.is_empty() {
                self.map.remove(&node.key[..]);
            }
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Some(n) = self.node(idx) else {
            return;
        };
        let (prev, next) = (n.prev, n.next);
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        if let Some(n) = self.node_mut(idx) {
            n.prev = NIL;
            n.next = NIL;
        }
    }

    fn link_front(&mut self, idx: u32) {
        let old = self.head;
        if let Some(n) = self.node_mut(idx) {
            n.prev = NIL;
            n.next = old;
        }
        match self.node_mut(old) {
            Some(o) => o.prev = idx,
            None => self.tail = idx,
        }
        self.head = idx;
    }

    /// Keys from most to least recently used (tests check the order).
    #[cfg(test)]
    pub fn lru_order(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = self.head;
        while let Some(n) = self.node(i) {
            out.push(n.key.to_vec());
            i = n.next;
        }
        out
    }
}
