//! The workers a table's items name, registered once: an item holds a 4-byte [`WorkerRef`]
//! instead of a 16-byte shared string, which is what lets a work item fit its budget (see
//! docs/performance.md).
//!
//! References are counted, so a worker id no item names any more is forgotten: the registry
//! holds the workers of live deliveries and leases, not every worker ever seen.

use std::collections::HashMap;
use std::num::NonZeroU32;

use foldhash::fast::RandomState;

use crate::ids::WorkerId;

/// A registered worker: an owned reference, like an `Arc` clone. Whoever stores one in an
/// item took it with [`Workers::acquire`] or [`Workers::retain`], and the item's phase change
/// gives it back with [`Workers::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WorkerRef(NonZeroU32);

impl WorkerRef {
    /// The reference's position in the registry: below the number of workers ever
    /// registered at once.
    pub(crate) fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Workers {
    /// By `WorkerRef::index`: the worker and how many references it has; `None` when free.
    entries: Vec<Option<(WorkerId, u32)>>,
    by_id: HashMap<WorkerId, WorkerRef, RandomState>,
    free: Vec<WorkerRef>,
}

impl Workers {
    /// A new reference to `worker`, registering it if needed.
    pub(crate) fn acquire(&mut self, worker: &WorkerId) -> WorkerRef {
        if let Some(&known) = self.by_id.get(worker) {
            self.retain(known);
            return known;
        }
        let reference = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            let number = u32::try_from(self.entries.len())
                .ok()
                .and_then(NonZeroU32::new)
                .expect("invariant: fewer than 2^32 - 1 workers");
            WorkerRef(number)
        });
        self.entries[reference.index()] = Some((worker.clone(), 1));
        self.by_id.insert(worker.clone(), reference);
        reference
    }

    /// One more reference to a registered worker.
    pub(crate) fn retain(&mut self, reference: WorkerRef) {
        if let Some((_, count)) = &mut self.entries[reference.index()] {
            *count += 1;
        }
    }

    /// Gives a reference back; the last one forgets the worker.
    pub(crate) fn release(&mut self, reference: WorkerRef) {
        let entry = &mut self.entries[reference.index()];
        if let Some((worker, count)) = entry {
            *count -= 1;
            if *count == 0 {
                self.by_id.remove(worker);
                *entry = None;
                self.free.push(reference);
            }
        }
    }

    /// The worker a live reference names.
    pub(crate) fn get(&self, reference: WorkerRef) -> &WorkerId {
        &self.entries[reference.index()]
            .as_ref()
            .expect("invariant: a live reference names a registered worker")
            .0
    }

    /// Every registered worker with its reference (any order).
    #[cfg(feature = "snapshot")]
    pub(crate) fn registered(&self) -> impl Iterator<Item = (WorkerRef, &WorkerId)> + '_ {
        self.counts()
            .map(|(reference, _)| (reference, self.get(reference)))
    }

    /// Reference counts as the registry holds them, for `validate`.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (WorkerRef, u32)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let (_, count) = entry.as_ref()?;
                let number = NonZeroU32::new(u32::try_from(index + 1).ok()?)?;
                Some((WorkerRef(number), *count))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_release_forgets_a_worker_and_frees_its_number() {
        let mut workers = Workers::default();
        let (a, b) = (WorkerId::parse("a").unwrap(), WorkerId::parse("b").unwrap());
        let first = workers.acquire(&a);
        assert_eq!(workers.acquire(&a), first);
        workers.retain(first);
        assert_eq!(workers.get(first), &a);
        for _ in 0..3 {
            workers.release(first);
        }
        assert_eq!(workers.counts().count(), 0);
        // The number is reused for the next worker.
        assert_eq!(workers.acquire(&b), first);
        assert_eq!(workers.get(first), &b);
    }
}
