//! The id index: work id → item slot, in 8 bytes per bucket.
//!
//! Open addressing with linear probing. A bucket holds 32 bits of the id's hash and the slot,
//! never the id itself: the id lives once, in the item, and a lookup compares it there — the
//! item is read next anyway, so this costs no extra cache miss, and a probe that meets another
//! id is told apart by the stored hash bits before the item is touched. Items are never
//! removed from a table, so there are no tombstones. Load stays at most 3/4.
//!
//! At a million items this is 16 MiB (2^21 buckets), where a `HashMap<WorkId, u32>` holds
//! 48-byte buckets: about 100 MiB.

const EMPTY: u64 = 0;

#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    /// `(hash >> 32) << 32 | (slot + 1)`; 0 is empty.
    buckets: Vec<u64>,
    len: usize,
}

fn entry(hash: u64, slot: u32) -> u64 {
    (hash & !0xffff_ffff) | (u64::from(slot) + 1)
}

impl SlotIndex {
    /// The slot of the id with this hash for which `matches` holds.
    pub(crate) fn find(&self, hash: u64, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        // Truncation intended: the low bits pick the bucket.
        let mut at = hash as usize & mask;
        let tag = hash & !0xffff_ffff;
        loop {
            let bucket = self.buckets[at];
            if bucket == EMPTY {
                return None;
            }
            if bucket & !0xffff_ffff == tag {
                // The low half is slot + 1 ≥ 1.
                let slot = (bucket & 0xffff_ffff) as u32 - 1;
                if matches(slot) {
                    return Some(slot);
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `slot` under `hash`; the caller checked the id is absent. `hash_of` gives the hash
    /// of any slot already indexed, for growing.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        assert!(slot < u32::MAX, "invariant: fewer than 2^32 - 1 items");
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
        self.place(entry(hash, slot), hash);
        self.len += 1;
    }

    fn place(&mut self, entry: u64, hash: u64) {
        let mask = self.buckets.len() - 1;
        let mut at = hash as usize & mask;
        while self.buckets[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.buckets[at] = entry;
    }

    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; size]);
        for bucket in old.into_iter().filter(|&b| b != EMPTY) {
            let slot = (bucket & 0xffff_ffff) as u32 - 1;
            let hash = hash_of(slot);
            self.place(entry(hash, slot), hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_slot_even_when_all_hashes_collide() {
        let mut index = SlotIndex::default();
        let hash = |slot: u32| {
            if slot % 2 == 0 {
                7
            } else {
                u64::from(slot) << 40
            }
        };
        for slot in 0..1000 {
            assert_eq!(index.find(hash(slot), |s| s == slot), None);
            index.insert(hash(slot), slot, hash);
        }
        for slot in 0..1000 {
            assert_eq!(index.find(hash(slot), |s| s == slot), Some(slot));
        }
        assert_eq!(index.buckets.len(), 2048);
    }
}
