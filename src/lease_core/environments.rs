//! Environment operations (docs/contract.md §9) over the cores of one table, written once for
//! both tables: a [`crate::LeaseTable`] passes its one core, a [`crate::ConcurrentLeaseTable`]
//! every shard, all locked (in index order) and caught up to `now`.
//!
//! The registry changes copy-on-write on the first core and is then shared with the others,
//! so every core sees the same registry (the same `Arc`) after every operation, refused ones
//! included.

use std::sync::Arc;

use super::LeaseCore;
use crate::environment_keys::EnvironmentKey;
use crate::environment_record::{
    EnvironmentKind, EnvironmentPatch, EnvironmentRecord, NewEnvironment,
};
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::ids::{AsId, EnvironmentId, EnvironmentKeyId};
use crate::registry::{self, Registry};
use crate::time::Timestamp;

/// Runs `change` on the registry of `cores` (copied first only when something else shares
/// it), then hands the result to every core.
fn change<R>(
    cores: &mut [&mut LeaseCore],
    change: impl FnOnce(&mut Registry, &mut [&mut LeaseCore]) -> Result<R, Error>,
) -> Result<R, Error> {
    let first = cores.first_mut().expect("invariant: a table has a core");
    let mut registry = std::mem::take(&mut first.registry);
    let result = change(Arc::make_mut(&mut registry), cores);
    for core in cores.iter_mut() {
        core.share_registry(Arc::clone(&registry));
    }
    result
}

/// Adds an environment with `record` (created or registered); 409 when its id is taken.
pub(crate) fn insert(
    cores: &mut [&mut LeaseCore],
    record: EnvironmentRecord,
) -> Result<EnvironmentRecord, Error> {
    change(cores, |registry, cores| {
        let index = registry.insert(record)?;
        // The slot may have held a deleted environment: it starts empty in every core.
        for core in cores.iter_mut() {
            core.reset_environment(index);
        }
        Ok(registry.record(index).clone())
    })
}

/// Creates an environment (docs/contract.md §9 create).
pub(crate) fn create(
    cores: &mut [&mut LeaseCore],
    id: EnvironmentId,
    new: NewEnvironment,
    now: Timestamp,
) -> Result<EnvironmentRecord, Error> {
    new.check()?;
    insert(cores, registry::created(id, new, now))
}

/// Registers an environment named after its id, created at `at`.
pub(crate) fn register(
    cores: &mut [&mut LeaseCore],
    id: EnvironmentId,
    kind: EnvironmentKind,
    at: Timestamp,
) -> Result<(), Error> {
    insert(cores, registry::registered(id, kind, at)).map(drop)
}

/// Updates an environment (docs/contract.md §9 update).
pub(crate) fn update(
    cores: &mut [&mut LeaseCore],
    environment: &impl AsId<EnvironmentId>,
    patch: &EnvironmentPatch,
    now: Timestamp,
) -> Result<EnvironmentRecord, Error> {
    patch.check()?;
    change(cores, |registry, _| {
        let index = registry.find(environment)?;
        registry.update(index, patch, now)
    })
}

/// Archives an environment (docs/contract.md §9 archive).
pub(crate) fn archive(
    cores: &mut [&mut LeaseCore],
    environment: &impl AsId<EnvironmentId>,
    now: Timestamp,
) -> Result<EnvironmentRecord, Error> {
    change(cores, |registry, _| {
        let index = registry.find(environment)?;
        Ok(registry.archive(index, now))
    })
}

/// Deletes an environment and its items (docs/contract.md §9 delete), unless an item holds
/// a lease; nothing of it remains, in any core or in the registry.
pub(crate) fn delete(
    cores: &mut [&mut LeaseCore],
    environment: &impl AsId<EnvironmentId>,
) -> Result<EnvironmentId, Error> {
    change(cores, |registry, cores| {
        let index = registry.find(environment)?;
        let leased = cores.iter().map(|core| core.leased_in(index)).sum();
        if leased > 0 {
            return Err(Error::EnvironmentInUse {
                environment: registry.record(index).id.clone(),
                leased,
            });
        }
        let id = registry.record(index).id.clone();
        for core in cores.iter_mut() {
            core.remove_environment(index, &id);
        }
        registry.remove(index);
        Ok(id)
    })
}

impl LeaseCore {
    /// How many of environment `index`'s items hold a lease.
    pub(crate) fn leased_in(&self, index: u32) -> usize {
        self.environments[index as usize]
            .items
            .iter()
            .filter(|&&slot| self.items[slot as usize].phase.lease().is_some())
            .count()
    }

    /// Removes environment `index`'s items (none may hold a lease), its lapses not yet swept
    /// and its work.
    fn remove_environment(&mut self, index: u32, id: &EnvironmentId) {
        self.remove_items(|item| item.env() == index);
        self.journal.retain(|lapse| lapse.environment_id != *id);
        self.reset_environment(index);
    }
}

/// Adds `key` to an environment (docs/contract.md §10); returns it as listed.
pub(crate) fn create_key(
    cores: &mut [&mut LeaseCore],
    environment: &impl AsId<EnvironmentId>,
    key: EnvironmentKey,
) -> Result<EnvironmentKey, Error> {
    change(cores, |registry, _| {
        let index = registry.find(environment)?;
        let mut record = registry.record(index).clone();
        record.keys.insert(key.clone())?;
        registry.replace(index, record);
        Ok(key)
    })
}

/// Revokes an environment's key `key` (an id's text); returns its id.
pub(crate) fn revoke_key(
    cores: &mut [&mut LeaseCore],
    environment: &impl AsId<EnvironmentId>,
    key: &str,
) -> Result<EnvironmentKeyId, Error> {
    change(cores, |registry, _| {
        let index = registry.find(environment)?;
        let mut record = registry.record(index).clone();
        let removed = record
            .keys
            .remove(key)
            .ok_or_else(|| Error::EnvironmentKeyNotFound {
                id: Excerpt::new(key),
            })?;
        registry.replace(index, record);
        Ok(removed.id)
    })
}
