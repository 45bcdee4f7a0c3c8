//! [`LeaseCore::validate`]: every internal invariant, checked from scratch, and
//! [`InvariantViolation`], what a broken one is.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::LeaseCore;
use crate::ids::{EnvironmentId, WorkId};
use crate::item::Phase;
use crate::metadata::Metadata;
use crate::state::WorkState;
use crate::workers::WorkerRef;

/// A broken internal invariant, as `validate` (a testing aid of both tables) finds it.
///
/// Any of these is a bug in the crate, never a caller's mistake: a table the public API built
/// always validates. Tests and fuzzers call `validate` after every step.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantViolation {
    /// An environment lists a slot twice, or a slot that holds no item.
    #[error("environment {environment} lists slot {slot} twice or of no item")]
    SlotListedTwice {
        /// The environment.
        environment: EnvironmentId,
        /// The slot.
        slot: u32,
    },
    /// An environment's items are not in ascending id order.
    #[error("environment {environment} lists its items out of id order")]
    ItemsOutOfOrder {
        /// The environment.
        environment: EnvironmentId,
    },
    /// The environments list a different number of items than the table holds.
    #[error("{listed} items listed for {items} items")]
    ListedCount {
        /// Items the environments list.
        listed: usize,
        /// Items the table holds.
        items: usize,
    },
    /// An item is not found at its slot through the id index or its environment's list.
    #[error("work item {work} is not indexed at its slot")]
    NotIndexed {
        /// The item.
        work: WorkId,
    },
    /// An item's queue entries disagree with its state.
    #[error("the queue entries of {work} disagree with its state, {state}")]
    QueueEntries {
        /// The item.
        work: WorkId,
        /// Its state.
        state: WorkState,
    },
    /// An item had a heartbeat but holds no token.
    #[error("{work} had a heartbeat but holds no token")]
    MissingToken {
        /// The item.
        work: WorkId,
    },
    /// An item's stop request disagrees with its state.
    #[error("the stop request of {work} disagrees with its state, {state}")]
    StopRequest {
        /// The item.
        work: WorkId,
        /// Its state.
        state: WorkState,
    },
    /// Empty metadata is stored for an item (it should hold none).
    #[error("{work} stores empty metadata")]
    EmptyMetadata {
        /// The item.
        work: WorkId,
    },
    /// The worker registry's reference counts disagree with the items that name workers.
    #[error("worker reference counts disagree with the items naming workers")]
    WorkerReferences,
    /// Side data (metadata, a stop request) is stored for a slot with no item.
    #[error("side data for a slot with no item")]
    SideData,
    /// The deadline index disagrees with the leases; the detail names its internal parts.
    #[error("deadline index: {detail}")]
    DeadlineIndex {
        /// What disagrees, for the human debugging it.
        detail: String,
    },
    /// The queues hold a different number of entries than there are queued items.
    #[error("{entries} queue entries for {queued} queued items")]
    QueueCount {
        /// Entries in the environments' queues.
        entries: usize,
        /// Queued items.
        queued: usize,
    },
    /// A shard holds work of an environment the table's registry does not hold.
    #[error("work of environment index {index}, which the registry does not hold")]
    UnknownEnvironment {
        /// The environment's index.
        index: u32,
    },
    /// A shard of a [`crate::ConcurrentLeaseTable`] does not share the table's registry.
    #[error("the shard does not share the table's environment registry")]
    RegistryNotShared,
    /// A shard of a [`crate::ConcurrentLeaseTable`] is broken.
    #[error("shard {shard}: {violation}")]
    Shard {
        /// The shard's index.
        shard: usize,
        /// What is broken in it.
        violation: Box<Self>,
    },
}

impl LeaseCore {
    /// Checks every internal invariant.
    pub(crate) fn validate(&self) -> Result<(), InvariantViolation> {
        if self.environments.len() != self.registry.slots() {
            return Err(InvariantViolation::UnknownEnvironment {
                index: self.environments.len() as u32,
            });
        }
        for (index, env) in (0u32..).zip(&self.environments) {
            let empty =
                env.items.is_empty() && env.undelivered.is_empty() && env.delivered.is_empty();
            if !empty && !self.registry.is_live(index) {
                return Err(InvariantViolation::UnknownEnvironment { index });
            }
        }
        let texts = &self.texts;
        let mut listed = 0;
        // The environment listing each slot: one pass, rather than a search per item.
        let mut listed_in = vec![u32::MAX; self.items.len()];
        for (index, env) in (0u32..).zip(&self.environments) {
            let environment = || self.registry.record(index).id.clone();
            listed += env.items.len();
            for &slot in &env.items {
                match listed_in.get_mut(slot as usize) {
                    Some(entry) if *entry == u32::MAX => *entry = index,
                    _ => {
                        return Err(InvariantViolation::SlotListedTwice {
                            environment: environment(),
                            slot,
                        })
                    }
                }
            }
            for pair in env.items.windows(2) {
                let (a, b) = (&self.items[pair[0] as usize], &self.items[pair[1] as usize]);
                if a.body(texts) >= b.body(texts) {
                    return Err(InvariantViolation::ItemsOutOfOrder {
                        environment: environment(),
                    });
                }
            }
        }
        if listed != self.items.len() {
            return Err(InvariantViolation::ListedCount {
                listed,
                items: self.items.len(),
            });
        }
        // foldhash: a million items' references counted in a few ms rather than SipHash's tens.
        // Every item is found at its slot: eight hashes first, then their lookups, so the
        // index probes (a cache miss each at a million items) are independent and overlap.
        let mut hashes = [0u64; 8];
        for (base, chunk) in (0u32..).step_by(8).zip(self.items.chunks(8)) {
            for (hash, item) in hashes.iter_mut().zip(chunk) {
                *hash = self.hash(item.key(texts));
            }
            for ((slot, item), &hash) in (base..).zip(chunk).zip(&hashes) {
                if self.find(item.key(texts), hash) != Some(slot) {
                    return Err(InvariantViolation::NotIndexed {
                        work: item.id(texts),
                    });
                }
            }
        }
        let mut references: HashMap<WorkerRef, u32, RandomState> = HashMap::default();
        for (slot, item) in self.items.iter().enumerate() {
            let slot = slot as u32;
            let id = item.id(texts);
            let env = &self.environments[item.env() as usize];
            if listed_in[slot as usize] != item.env() {
                return Err(InvariantViolation::NotIndexed { work: id });
            }
            let in_undelivered = env.undelivered.contains(&id);
            let ok = match item.phase {
                Phase::Queued {
                    delivered_at: None,
                    worker,
                } => in_undelivered && worker.is_none(),
                Phase::Queued {
                    delivered_at: Some(at),
                    ..
                } => !in_undelivered && env.delivered.contains(&(at, id.clone())),
                Phase::Starting { .. }
                | Phase::Active { .. }
                | Phase::Stopping { .. }
                | Phase::Stopped { .. } => !in_undelivered,
            };
            if !ok {
                return Err(InvariantViolation::QueueEntries {
                    work: id,
                    state: item.phase.state(),
                });
            }
            if item.phase.beaten() && item.last_token.is_none() {
                return Err(InvariantViolation::MissingToken { work: id });
            }
            if let Some(worker) = item.phase.worker() {
                *references.entry(worker).or_default() += 1;
            }
            let stop_requested = self.stop_requests.contains_key(&slot);
            let may_have_request =
                matches!(item.phase, Phase::Stopping { .. } | Phase::Stopped { .. });
            if matches!(item.phase, Phase::Stopping { .. }) && !stop_requested
                || stop_requested && !may_have_request
            {
                return Err(InvariantViolation::StopRequest {
                    work: id,
                    state: item.phase.state(),
                });
            }
            if self.metadata.get(&slot).is_some_and(Metadata::is_empty) {
                return Err(InvariantViolation::EmptyMetadata { work: id });
            }
        }
        let registered: HashMap<WorkerRef, u32, RandomState> = self.workers.counts().collect();
        if registered != references {
            return Err(InvariantViolation::WorkerReferences);
        }
        if self
            .stop_requests
            .keys()
            .chain(self.metadata.keys())
            .any(|&slot| slot as usize >= self.items.len())
        {
            return Err(InvariantViolation::SideData);
        }
        let leases = self.items.iter().enumerate().filter_map(|(slot, item)| {
            item.phase
                .lease()
                .map(|lease| (slot as u32, lease.deadline))
        });
        self.deadlines
            .validate(leases)
            .map_err(|detail| InvariantViolation::DeadlineIndex { detail })?;
        let queued: usize = self
            .environments
            .iter()
            .map(|e| e.undelivered.len() + e.delivered.len())
            .sum();
        let expected = self
            .items
            .iter()
            .filter(|i| matches!(i.phase, Phase::Queued { .. }))
            .count();
        if queued != expected {
            return Err(InvariantViolation::QueueCount {
                entries: queued,
                queued: expected,
            });
        }
        Ok(())
    }
}
