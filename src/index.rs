//! The id index: work id → item slot, in 4 bytes per bucket.
//!
//! Open addressing with linear probing over `2^b` buckets. A bucket holds the slot (plus one,
//! so 0 is empty) in its low `b` bits and, in the bits left over, a tag of the id's hash —
//! never the id itself: the id lives once, in the item, and a lookup compares it there. The
//! item is read next anyway, so this costs no extra cache miss, and a probe that meets another
//! id is told apart by the tag before the item is touched. Load stays at most 3/4, so every
//! slot fits in `b` bits and the tag has `32 - b`: 11 bits at a million items (one probe in
//! 2048 that meets another id reads its item). Items are never removed from a table, so there
//! are no tombstones.
//!
//! At a million items this is 8 MiB (2^21 buckets), where a `HashMap<WorkId, u32>` holds
//! 48-byte buckets: about 100 MiB.

const EMPTY: u32 = 0;

#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    buckets: Vec<u32>,
    /// `2^b - 1` for `2^b` buckets: picks the bucket from a hash, and the slot from a bucket.
    mask: usize,
    len: usize,
}

impl SlotIndex {
    /// The tag of `hash` in a bucket of a table with this `mask`: hash bits the bucket
    /// position does not use, above the slot's bits.
    fn tag(hash: u64, mask: usize) -> u32 {
        // Truncation intended: the hash's high half.
        ((hash >> 32) as u32) & !(mask as u32)
    }

    fn entry(&self, hash: u64, slot: u32) -> u32 {
        Self::tag(hash, self.mask) | (slot + 1)
    }

    /// The slot of the id with this hash for which `matches` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask;
        // Truncation intended: the low bits pick the bucket.
        let mut at = hash as usize & mask;
        let tag = Self::tag(hash, mask);
        loop {
            let bucket = self.buckets[at];
            if bucket == EMPTY {
                return None;
            }
            if bucket & !(mask as u32) == tag {
                // The slot bits hold slot + 1 ≥ 1.
                let slot = (bucket & mask as u32) - 1;
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
        self.place(self.entry(hash, slot), hash);
        self.len += 1;
    }

    /// Adds `slot` under `hash` unless an id for which `matches` holds is indexed already (then
    /// returns `false`): one probe run for a lookup and an insert. `hash_of` as for
    /// [`Self::insert`].
    #[cfg(feature = "snapshot")]
    pub(crate) fn insert_new(
        &mut self,
        hash: u64,
        slot: u32,
        mut matches: impl FnMut(u32) -> bool,
        hash_of: impl Fn(u32) -> u64,
    ) -> bool {
        assert!(slot < u32::MAX, "invariant: fewer than 2^32 - 1 items");
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
        let mask = self.mask;
        // Truncation intended: the low bits pick the bucket.
        let mut at = hash as usize & mask;
        let tag = Self::tag(hash, mask);
        loop {
            let bucket = self.buckets[at];
            if bucket == EMPTY {
                self.buckets[at] = self.entry(hash, slot);
                self.len += 1;
                return true;
            }
            // The slot bits hold slot + 1 ≥ 1.
            if bucket & !(mask as u32) == tag && matches((bucket & mask as u32) - 1) {
                return false;
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds every `(hash, slot)` of `entries` (reordered on the way) as [`Self::insert_new`]
    /// does; returns the slot of the first entry whose id `matches` one already indexed.
    ///
    /// Entries go in by home bucket, so the inserts walk the buckets in order: at a million
    /// entries that is one pass over memory instead of a cache miss each.
    #[cfg(feature = "snapshot")]
    pub(crate) fn insert_all_new(
        &mut self,
        entries: &mut [(u64, u32)],
        mut matches: impl FnMut(u32, u32) -> bool,
        hash_of: impl Fn(u32) -> u64,
    ) -> Result<(), u32> {
        self.reserve(entries.len(), &hash_of);
        let mask = self.mask as u64;
        entries.sort_unstable_by_key(|&(hash, _)| hash & mask);
        for &(hash, slot) in entries.iter() {
            if !self.insert_new(hash, slot, |other| matches(slot, other), &hash_of) {
                return Err(slot);
            }
        }
        Ok(())
    }

    /// Makes room for `additional` more entries, so inserting them never grows the index.
    #[cfg(feature = "snapshot")]
    pub(crate) fn reserve(&mut self, additional: usize, hash_of: impl Fn(u32) -> u64) {
        while (self.len + additional) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
    }

    /// The bucket holding `slot`, indexed under `hash`.
    fn position(&self, hash: u64, slot: u32) -> usize {
        let mask = self.mask;
        let mut at = hash as usize & mask;
        loop {
            let bucket = self.buckets[at];
            assert!(
                bucket != EMPTY,
                "invariant: the slot is indexed under its hash"
            );
            if bucket & mask as u32 == slot + 1 {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// Removes `slot`, indexed under `hash`. Backward-shift deletion: each later entry of the
    /// probe run moves into the hole when its home bucket allows, so no tombstone is needed and
    /// every remaining id stays reachable from its home. `hash_of` gives the hash of any slot
    /// indexed.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        let mask = self.mask;
        let mut hole = self.position(hash, slot);
        let mut next = (hole + 1) & mask;
        loop {
            let bucket = self.buckets[next];
            if bucket == EMPTY {
                break;
            }
            let home = hash_of((bucket & mask as u32) - 1) as usize & mask;
            // The entry may move back to the hole unless its home lies after the hole (in
            // probe order, up to the entry itself).
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.buckets[hole] = bucket;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }

    /// Points the entry of slot `old`, indexed under `hash`, at slot `new`.
    pub(crate) fn rename(&mut self, hash: u64, old: u32, new: u32) {
        let at = self.position(hash, old);
        self.buckets[at] = self.entry(hash, new);
    }

    fn place(&mut self, entry: u32, hash: u64) {
        let mut at = hash as usize & self.mask;
        while self.buckets[at] != EMPTY {
            at = (at + 1) & self.mask;
        }
        self.buckets[at] = entry;
    }

    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; size]);
        let old_mask = self.mask as u32;
        self.mask = size - 1;
        for bucket in old.into_iter().filter(|&b| b != EMPTY) {
            let slot = (bucket & old_mask) - 1;
            let hash = hash_of(slot);
            self.place(self.entry(hash, slot), hash);
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
        // Remove every third slot (the colliding run included), rename a few, look up all.
        for slot in (0..1000).step_by(3) {
            index.remove(hash(slot), slot, hash);
        }
        for slot in (1..1000).step_by(3) {
            index.rename(hash(slot), slot, slot + 1000);
        }
        for slot in 0..1000 {
            let want = match slot % 3 {
                0 => None,
                1 => Some(slot + 1000),
                _ => Some(slot),
            };
            let found = index.find(hash(slot), |s| s == want.unwrap_or(u32::MAX));
            assert_eq!(found, want, "slot {slot}");
        }
        assert_eq!(index.len, 1000 - 334);
        // Slots 0..1000 fit in 11 bits, so tags keep 21.
        assert_eq!(SlotIndex::tag(u64::MAX, index.mask), !0x7ff);
    }
}
