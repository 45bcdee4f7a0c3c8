//! The environment registry: every environment's record, held once, found by id text.
//!
//! One registry serves a whole table: a [`crate::LeaseTable`]'s single core and every shard of
//! a [`crate::ConcurrentLeaseTable`] share it through one `Arc`, so a record (its config up to
//! 16 KiB) is stored once whatever the shard count. The registry changes only under every
//! core's lock; a change is made copy-on-write ([`Arc::make_mut`]: free when nothing else holds
//! the registry, a copy of the index and of the record pointers otherwise) and then handed to
//! every core, so all cores see one registry at every instant.
//!
//! An environment's index (which items carry, 30 bits) is its slot in `entries`. A deleted
//! environment's slot is emptied and reused by the next environment created, so a table's
//! environment memory is bounded by the most environments it held at once, not by how many it
//! ever held: nothing of a deleted environment remains (docs/contract.md §9 delete).

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::environment_keys::EnvironmentKeys;
use crate::environment_record::{
    default_config, EnvironmentKind, EnvironmentListRequest, EnvironmentPage, EnvironmentPatch,
    EnvironmentRecord, NewEnvironment,
};
use crate::error::{Error, Param};
use crate::excerpt::Excerpt;
use crate::ids::{AsId, EnvironmentId};
use crate::item::MAX_ENVIRONMENTS;
use crate::time::Timestamp;

/// One live environment: its id's canonical text (so an id given as text is matched without
/// parsing it), its kind (which every work operation checks, kept beside the text so the check
/// reads one cache line) and its record.
#[derive(Clone, Debug)]
struct Entry {
    text: Box<str>,
    kind: EnvironmentKind,
    record: Arc<EnvironmentRecord>,
}

/// Every live environment, by index and by id text.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    /// By environment index; `None` for the slot of a deleted environment, until reused.
    entries: Vec<Option<Entry>>,
    /// Empty slots, reused last-freed first.
    free: Vec<u32>,
    /// Index by id text, for tables with many environments.
    index: HashMap<Box<str>, u32, RandomState>,
}

impl Registry {
    /// How many slots the registry has (live environments and empty slots): every index is
    /// below this.
    pub(crate) fn slots(&self) -> usize {
        self.entries.len()
    }

    /// The live environments' indexes and records, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &EnvironmentRecord)> + '_ {
        (0u32..)
            .zip(&self.entries)
            .filter_map(|(index, entry)| entry.as_ref().map(|entry| (index, &*entry.record)))
    }

    /// Whether `index` names a live environment.
    pub(crate) fn is_live(&self, index: u32) -> bool {
        self.entries
            .get(index as usize)
            .is_some_and(Option::is_some)
    }

    /// The record of live environment `index`.
    ///
    /// # Panics
    ///
    /// When `index` is not a live environment's: callers hold an index found in this registry.
    #[inline]
    pub(crate) fn record(&self, index: u32) -> &EnvironmentRecord {
        self.entry(index).record.as_ref()
    }

    /// The id text of live environment `index`.
    #[cfg(feature = "snapshot")]
    pub(crate) fn text(&self, index: u32) -> &str {
        &self.entry(index).text
    }

    #[inline]
    fn entry(&self, index: u32) -> &Entry {
        self.entries[index as usize]
            .as_ref()
            .expect("invariant: an index in use names a live environment")
    }

    /// The environment's index, or 404 (unknown, deleted or malformed). Ids are canonical
    /// text, so equal text is the same id: nothing is parsed and nothing allocated.
    #[inline]
    pub(crate) fn find(&self, environment: &impl AsId<EnvironmentId>) -> Result<u32, Error> {
        let typed;
        let text = match environment.as_text() {
            Some(text) => text,
            None => {
                typed = environment
                    .as_id()
                    .map_err(|id| Error::EnvironmentNotFound { id })?
                    .excerpt();
                typed.as_str()
            }
        };
        // A handful of environments is the common case: comparing texts beats hashing.
        let found = if self.entries.len() <= 8 {
            (0u32..)
                .zip(&self.entries)
                .find(|(_, entry)| entry.as_ref().is_some_and(|entry| *entry.text == *text))
                .map(|(index, _)| index)
        } else {
            self.index.get(text).copied()
        };
        found.ok_or_else(|| Error::EnvironmentNotFound {
            id: Excerpt::new(text),
        })
    }

    /// The environment's index, checked as docs/contract.md §3.3 orders for work operations:
    /// exists (404), self-hosted (400).
    #[inline]
    pub(crate) fn find_self_hosted(
        &self,
        environment: &impl AsId<EnvironmentId>,
    ) -> Result<u32, Error> {
        let index = self.find(environment)?;
        match self.entry(index).kind {
            EnvironmentKind::SelfHosted => Ok(index),
            EnvironmentKind::Cloud => Err(Error::NotSelfHosted {
                environment: self.record(index).id.clone(),
            }),
        }
    }

    /// Adds `record`; returns its index, or 409 when its id is taken.
    pub(crate) fn insert(&mut self, record: EnvironmentRecord) -> Result<u32, Error> {
        let text = record.id.excerpt();
        if self.find(&record.id).is_ok() {
            return Err(Error::AlreadyExists { id: text });
        }
        let entry = Entry {
            text: text.as_str().into(),
            kind: record.kind,
            record: Arc::new(record),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index as usize] = Some(entry);
                index
            }
            None => {
                assert!(
                    self.entries.len() < MAX_ENVIRONMENTS,
                    "invariant: fewer than 2^30 environments"
                );
                self.entries.push(Some(entry));
                // Below 2^30, checked just above.
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(text.as_str().into(), index);
        Ok(index)
    }

    /// Removes environment `index`, leaving its slot for the next environment created.
    pub(crate) fn remove(&mut self, index: u32) -> EnvironmentId {
        let entry = self.entries[index as usize]
            .take()
            .expect("invariant: only a live environment is removed");
        self.index.remove(&entry.text);
        self.free.push(index);
        // Trailing empty slots go: a table that shrinks back gives their memory back too.
        while let Some(None) = self.entries.last() {
            self.entries.pop();
            let last = self.entries.len() as u32;
            self.free.retain(|&free| free != last);
        }
        if self.entries.is_empty() {
            self.entries = Vec::new();
            self.free = Vec::new();
            self.index = HashMap::default();
        }
        Arc::unwrap_or_clone(entry.record).id
    }

    /// Replaces environment `index`'s record.
    pub(crate) fn replace(&mut self, index: u32, record: EnvironmentRecord) {
        let entry = self.entries[index as usize]
            .as_mut()
            .expect("invariant: only a live environment is changed");
        entry.record = Arc::new(record);
    }

    /// A page of environments in ascending id order (docs/contract.md §9 list).
    pub(crate) fn list(&self, request: &EnvironmentListRequest) -> EnvironmentPage {
        let mut listed: Vec<&EnvironmentRecord> = self
            .iter()
            .map(|(_, record)| record)
            .filter(|record| request.include_archived || record.archived_at.is_none())
            .filter(|record| {
                request
                    .after
                    .as_ref()
                    .map_or(true, |after| record.id > *after)
            })
            .collect();
        listed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let limit = request.limit.clamp(1, crate::ListRequest::MAX_LIMIT);
        let has_more = listed.len() > limit;
        let data = listed
            .iter()
            .take(limit)
            .map(|&record| record.clone())
            .collect();
        EnvironmentPage::of(data, has_more)
    }

    /// Updates environment `index` (docs/contract.md §9 update); a refused update changes
    /// nothing.
    pub(crate) fn update(
        &mut self,
        index: u32,
        patch: &EnvironmentPatch,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error> {
        let current = self.record(index);
        if current.archived_at.is_some() {
            return Err(Error::EnvironmentArchived {
                environment: current.id.clone(),
            });
        }
        let mut record = current.clone();
        if let Some((kind, config)) = &patch.config {
            if *kind != record.kind {
                return Err(Error::InvalidParameter {
                    param: Param::Config,
                    expected: "the environment's config type, which cannot change",
                    found: Excerpt::new(kind.as_str()),
                });
            }
            record.config.clone_from(config);
        }
        if let Some(metadata) = patch.metadata_patch() {
            record.metadata.apply(&metadata)?;
        }
        if let Some(name) = &patch.name {
            record.name.clone_from(name);
        }
        if let Some(description) = &patch.description {
            record.description.clone_from(description);
        }
        if let Some(scope) = patch.scope {
            record.scope = Some(scope);
        }
        record.updated_at = now;
        self.replace(index, record.clone());
        Ok(record)
    }

    /// Sets environment `index`'s `archived_at` unless it is set (docs/contract.md §9 archive).
    pub(crate) fn archive(&mut self, index: u32, now: Timestamp) -> EnvironmentRecord {
        let mut record = self.record(index).clone();
        if record.archived_at.is_none() {
            record.archived_at = Some(now);
            record.updated_at = now;
            self.replace(index, record.clone());
        }
        record
    }
}

/// The record of a new environment created at `now`, once [`NewEnvironment::check`] passed.
pub(crate) fn created(id: EnvironmentId, new: NewEnvironment, now: Timestamp) -> EnvironmentRecord {
    EnvironmentRecord {
        id,
        name: new.name,
        kind: new.kind,
        config: new.config.unwrap_or_else(|| default_config(new.kind)),
        description: new.description,
        metadata: new.metadata,
        scope: new.scope,
        created_at: now,
        updated_at: now,
        archived_at: None,
        keys: EnvironmentKeys::default(),
    }
}

/// What registering an environment gives it: its id as name, the default config, created at
/// `at`.
pub(crate) fn registered(
    id: EnvironmentId,
    kind: EnvironmentKind,
    at: Timestamp,
) -> EnvironmentRecord {
    let mut new = NewEnvironment::self_hosted(id.to_string());
    new.kind = kind;
    created(id, new, at)
}
