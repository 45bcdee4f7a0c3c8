//! [`LeaseTable::validate`]: every internal invariant, checked from scratch.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::LeaseTable;
use crate::item::Phase;
use crate::metadata::Metadata;
use crate::workers::WorkerRef;

impl LeaseTable {
    /// Checks every internal invariant; for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn validate(&self) -> Result<(), String> {
        let texts = &self.texts;
        let mut listed = 0;
        // The environment listing each slot: one pass, rather than a search per item.
        let mut listed_in = vec![u32::MAX; self.items.len()];
        for (index, env) in (0u32..).zip(&self.environments) {
            listed += env.items.len();
            for &slot in &env.items {
                match listed_in.get_mut(slot as usize) {
                    Some(entry) if *entry == u32::MAX => *entry = index,
                    _ => {
                        return Err(format!(
                            "{:?} lists slot {slot} twice or of no item",
                            env.id
                        ))
                    }
                }
            }
            for pair in env.items.windows(2) {
                let (a, b) = (&self.items[pair[0] as usize], &self.items[pair[1] as usize]);
                if a.body(texts) >= b.body(texts) {
                    return Err(format!("{:?} items out of id order", env.id));
                }
            }
        }
        if listed != self.items.len() {
            return Err(format!("{listed} listed for {} items", self.items.len()));
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
                    let id = item.id(texts);
                    return Err(format!("{id:?} is not indexed at its slot"));
                }
            }
        }
        let mut references: HashMap<WorkerRef, u32, RandomState> = HashMap::default();
        for (slot, item) in self.items.iter().enumerate() {
            let slot = slot as u32;
            let id = item.id(texts);
            let env = &self.environments[item.env() as usize];
            if listed_in[slot as usize] != item.env() {
                return Err(format!("{id:?} is not indexed at its slot"));
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
                return Err(format!(
                    "{id:?} queue index disagrees with {:?}",
                    item.phase
                ));
            }
            if item.phase.beaten() && item.last_token.is_none() {
                return Err(format!("{id:?} had a heartbeat but holds no token"));
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
                return Err(format!(
                    "{id:?} stop request disagrees with {:?}",
                    item.phase
                ));
            }
            if self.metadata.get(&slot).is_some_and(Metadata::is_empty) {
                return Err(format!("{id:?} stores empty metadata"));
            }
        }
        let registered: HashMap<WorkerRef, u32, RandomState> = self.workers.counts().collect();
        if registered != references {
            return Err(format!(
                "worker references {references:?} but registry counts {registered:?}"
            ));
        }
        if self
            .stop_requests
            .keys()
            .chain(self.metadata.keys())
            .any(|&slot| slot as usize >= self.items.len())
        {
            return Err("side data for a slot with no item".to_owned());
        }
        let leases = self.items.iter().enumerate().filter_map(|(slot, item)| {
            item.phase
                .lease()
                .map(|lease| (slot as u32, lease.deadline))
        });
        self.deadlines.validate(leases)?;
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
            return Err(format!(
                "{queued} queue entries for {expected} queued items"
            ));
        }
        Ok(())
    }
}
