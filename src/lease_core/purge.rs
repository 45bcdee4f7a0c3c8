//! [`crate::LeaseTable::purge_stopped`]: removing stopped items, so that a long-running table holds
//! its live work and the history its owner chooses to keep, not everything it ever saw.
//!
//! Items live in one vector addressed by slot; a purge closes each gap by moving the last
//! item into it (`swap_remove`), and renames that item's slot wherever one is held: the id
//! index, the deadline wheel, the environment's id order and the side maps.

use super::{hash_of, LeaseCore};
use crate::item::{Item, Phase};
use crate::time::Timestamp;

impl LeaseCore {
    /// Removes every stopped item whose `stopped_at` is before `before`, applying no lapse;
    /// returns how many (see [`crate::LeaseTable::purge_stopped`]).
    pub(crate) fn purge_stopped(&mut self, before: Timestamp) -> usize {
        self.remove_items(|item| matches!(item.phase, Phase::Stopped { at, .. } if at < before))
    }

    /// Removes every item `doomed` picks; none may hold a lease. Returns how many.
    pub(crate) fn remove_items(&mut self, doomed: impl Fn(&Item) -> bool) -> usize {
        let doomed: Vec<u32> = (0u32..)
            .zip(&self.items)
            .filter(|(_, item)| doomed(item))
            .map(|(slot, _)| slot)
            .collect();
        if doomed.is_empty() {
            return 0;
        }
        // While every item is still in place: the index (whose removals rehash neighbours),
        // the side data and the text arena.
        let mut is_doomed = vec![false; self.items.len()];
        for &slot in &doomed {
            is_doomed[slot as usize] = true;
            let (hasher, items, texts) = (&self.hasher, &self.items, &self.texts);
            let hash = hash_of(hasher, items[slot as usize].key(texts));
            self.work_index.remove(hash, slot, |s| {
                hash_of(hasher, items[s as usize].key(texts))
            });
            self.metadata.remove(&slot);
            self.stop_requests.remove(&slot);
            let item = &self.items[slot as usize];
            debug_assert!(
                item.phase.lease().is_none(),
                "leased items are never removed"
            );
            // A delivered queued item holds its delivery's worker.
            if let Some(worker) = item.phase.worker() {
                self.workers.release(worker);
            }
            item.release_texts(&mut self.texts);
        }
        for environment in &mut self.environments {
            environment.items.retain(|&slot| !is_doomed[slot as usize]);
        }
        // Close the gaps from the highest down, so the item moved in is never doomed.
        for &slot in doomed.iter().rev() {
            let last = (self.items.len() - 1) as u32;
            if slot != last {
                self.move_item(last, slot);
            }
            self.items.swap_remove(slot as usize);
        }
        self.deadlines.truncate_slots(self.items.len());
        doomed.len()
    }

    /// Renames slot `from` (the last item) to `to` everywhere a slot is held, before the
    /// vector moves the item itself.
    fn move_item(&mut self, from: u32, to: u32) {
        let texts = &self.texts;
        let item = &self.items[from as usize];
        let hash = hash_of(&self.hasher, item.key(texts));
        self.work_index.rename(hash, from, to);
        let lease = item.phase.lease();
        if let Some(lease) = lease {
            self.deadlines.unschedule(from, lease.deadline);
        }
        let environment = &mut self.environments[item.env() as usize];
        let position = environment.position_of(item.body(texts), &self.items, texts);
        debug_assert_eq!(environment.items.get(position), Some(&from));
        environment.items[position] = to;
        if let Some(metadata) = self.metadata.remove(&from) {
            self.metadata.insert(to, metadata);
        }
        if let Some(at) = self.stop_requests.remove(&from) {
            self.stop_requests.insert(to, at);
        }
        if let Some(lease) = lease {
            self.deadlines.schedule(to, lease.deadline);
        }
    }
}
