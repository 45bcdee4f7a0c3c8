//! An environment's work as one core holds it: its items in id order, its queue of claimable
//! items and the workers polling it.

use std::collections::{BTreeSet, HashMap};

use crate::ids::{BodyRef, WorkId, WorkerId};
use crate::item::{Item, Texts};
use crate::time::Timestamp;

/// How long a worker counts as polling after its last poll (docs/contract.md §3.5 `workers_polling`).
const POLLING_WINDOW_MICROS: i64 = 30_000_000;

/// One environment's work as one core holds it: its items in id order, its queue of claimable
/// items and the workers polling it. Its record lives in the [`crate::registry::Registry`];
/// a deleted environment's work is replaced by an empty one, which holds no memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Environment {
    /// Every item's slot, ascending id: list order. A sorted vector (4 bytes an item) rather
    /// than a tree (about 60): ids minted in creation order append at the end; an id out of
    /// order costs a move of the larger slots.
    pub(crate) items: Vec<u32>,
    /// Queued items no poll has handed out (since creation or the last lapse).
    pub(crate) undelivered: BTreeSet<WorkId>,
    /// Queued items a poll handed out, by delivery time.
    pub(crate) delivered: BTreeSet<(Timestamp, WorkId)>,
    /// Each named worker's last poll, both ways round so old entries can be dropped in order.
    pollers: HashMap<WorkerId, Timestamp, foldhash::fast::RandomState>,
    polls: BTreeSet<(Timestamp, WorkerId)>,
}

impl Environment {
    /// Adds `slot` (whose id is `items[slot]`'s) in id order.
    pub(crate) fn insert_item(&mut self, slot: u32, items: &[Item], texts: &Texts) {
        let id = items[slot as usize].body(texts);
        let at = match self.items.last() {
            Some(&last) if items[last as usize].body(texts) > id => {
                self.position_after(id, items, texts)
            }
            Some(_) | None => self.items.len(),
        };
        self.items.insert(at, slot);
    }

    /// Index in `self.items` of the first item with an id greater than `id`.
    pub(crate) fn position_after(&self, id: BodyRef<'_>, items: &[Item], texts: &Texts) -> usize {
        self.items
            .partition_point(|&slot| items[slot as usize].body(texts) <= id)
    }

    /// Index in `self.items` of the first item with an id not less than `id`.
    pub(crate) fn position_of(&self, id: BodyRef<'_>, items: &[Item], texts: &Texts) -> usize {
        self.items
            .partition_point(|&slot| items[slot as usize].body(texts) < id)
    }

    /// Adds `count` distinct ids, none there yet, to `undelivered`.
    pub(crate) fn requeue(&mut self, ids: impl Iterator<Item = WorkId>, count: usize) {
        // A tree insert is a root-to-leaf search, about log2(len) id comparisons and cache
        // misses; `append` merges two sorted sets in one pass over both. Merge when the batch
        // is a sizeable share of the queue.
        if count.saturating_mul(4) >= self.undelivered.len() {
            let mut batch: BTreeSet<WorkId> = ids.collect();
            self.undelivered.append(&mut batch);
        } else {
            self.undelivered.extend(ids);
        }
    }

    /// The lowest claimable id at `now` with reclaim window `reclaim` (µs).
    pub(crate) fn claimable(&self, reclaim: i64, now: Timestamp) -> Option<&WorkId> {
        let cutoff = now.unix_micros().saturating_sub(reclaim);
        let reclaimable = self
            .delivered
            .iter()
            .take_while(|(at, _)| at.unix_micros() <= cutoff)
            .map(|(_, id)| id)
            .min();
        match (self.undelivered.first(), reclaimable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the earliest delivery's reclaim window ends.
    pub(crate) fn next_reclaim(&self, reclaim: i64) -> Option<Timestamp> {
        self.delivered
            .first()
            .map(|(at, _)| at.saturating_add_micros(reclaim))
    }

    /// `(claimable, pending)` at `now` with reclaim window `reclaim` (µs).
    pub(crate) fn depth(&self, reclaim: i64, now: Timestamp) -> (usize, usize) {
        let cutoff = now.unix_micros().saturating_sub(reclaim);
        let reclaimable = self
            .delivered
            .iter()
            .take_while(|(at, _)| at.unix_micros() <= cutoff)
            .count();
        (
            self.undelivered.len() + reclaimable,
            self.delivered.len() - reclaimable,
        )
    }

    /// The lowest queued id.
    pub(crate) fn oldest_queued(&self) -> Option<&WorkId> {
        self.delivered
            .iter()
            .map(|(_, id)| id)
            .chain(self.undelivered.first())
            .min()
    }

    pub(crate) fn record_poll(&mut self, worker: &WorkerId, now: Timestamp) {
        if let Some(previous) = self.pollers.insert(worker.clone(), now) {
            self.polls.remove(&(previous, worker.clone()));
        }
        self.polls.insert((now, worker.clone()));
        self.forget_pollers_before(now);
    }

    /// Each named worker's last poll, in no particular order.
    #[cfg(feature = "snapshot")]
    pub(crate) fn pollers(&self) -> impl Iterator<Item = (&WorkerId, Timestamp)> + '_ {
        self.pollers.iter().map(|(worker, &at)| (worker, at))
    }

    /// Records `worker`'s last poll at `at` as a snapshot holds it, forgetting nothing.
    #[cfg(feature = "snapshot")]
    pub(crate) fn restore_poller(&mut self, worker: WorkerId, at: Timestamp) {
        if let Some(previous) = self.pollers.insert(worker.clone(), at) {
            self.polls.remove(&(previous, worker.clone()));
        }
        self.polls.insert((at, worker));
    }

    /// How many workers polled less than 30 s before `at`, dropping none.
    pub(crate) fn pollers_at(&self, at: Timestamp) -> usize {
        let horizon = at.saturating_sub_micros(POLLING_WINDOW_MICROS);
        self.polls
            .iter()
            .rev()
            .take_while(|(polled, _)| *polled > horizon)
            .count()
    }

    /// Drops workers whose last poll is 30 s or more before `now`; returns how many remain.
    pub(crate) fn forget_pollers_before(&mut self, now: Timestamp) -> usize {
        let horizon = now.saturating_sub_micros(POLLING_WINDOW_MICROS);
        while let Some((at, worker)) = self.polls.first() {
            if *at > horizon {
                break;
            }
            self.pollers.remove(worker);
            self.polls.pop_first();
        }
        self.pollers.len()
    }
}
