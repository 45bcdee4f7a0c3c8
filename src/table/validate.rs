//! [`LeaseTable::validate`]: every internal invariant, checked from scratch.

use super::LeaseTable;
use crate::item::Phase;

impl LeaseTable {
    /// Checks every internal invariant; for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn validate(&self) -> Result<(), String> {
        let mut listed = 0;
        for env in &self.environments {
            listed += env.items.len();
            for pair in env.items.windows(2) {
                if self.items[pair[0] as usize].id >= self.items[pair[1] as usize].id {
                    return Err(format!("{:?} items out of id order", env.id));
                }
            }
        }
        if listed != self.items.len() {
            return Err(format!("{listed} listed for {} items", self.items.len()));
        }
        for (slot, item) in self.items.iter().enumerate() {
            let slot = slot as u32;
            let env = &self.environments[item.env as usize];
            let pos = env.position_of(&item.id, &self.items);
            if self.slot_of(&item.id) != Some(slot) || env.items.get(pos) != Some(&slot) {
                return Err(format!("{:?} is not indexed at its slot", item.id));
            }
            let in_undelivered = env.undelivered.contains(&item.id);
            let ok = match &item.phase {
                Phase::Queued(None) => in_undelivered,
                Phase::Queued(Some(delivery)) => {
                    !in_undelivered && env.delivered.contains(&(delivery.at, item.id.clone()))
                }
                Phase::Starting(_) | Phase::Active(_) | Phase::Stopping(_) | Phase::Stopped => {
                    !in_undelivered
                }
            };
            if !ok {
                return Err(format!(
                    "{:?} queue index disagrees with {:?}",
                    item.id, item.phase
                ));
            }
            match (&item.phase, item.latest_heartbeat_at) {
                (Phase::Active(_), None) => {
                    return Err(format!("{:?} active without heartbeat", item.id))
                }
                (Phase::Starting(_), Some(_)) => {
                    return Err(format!("{:?} starting with a heartbeat", item.id))
                }
                (Phase::Queued(_), Some(_)) => {
                    return Err(format!("{:?} queued with a heartbeat", item.id))
                }
                _ => {}
            }
            if item.latest_heartbeat_at.is_some() && item.latest_heartbeat_at > item.last_token {
                return Err(format!("{:?} heartbeat newer than its last token", item.id));
            }
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
            .filter(|i| matches!(i.phase, Phase::Queued(_)))
            .count();
        if queued != expected {
            return Err(format!(
                "{queued} queue entries for {expected} queued items"
            ));
        }
        Ok(())
    }
}
