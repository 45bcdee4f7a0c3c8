//! Environments as a resource (docs/contract.md §9): create, retrieve, list, update, archive, delete.
//!
//! Changing operations here are like every other: they run at `max(clock, now)` and apply the
//! lapses due then, so a log of them replays exactly. [`crate::ConcurrentLeaseTable`] runs the
//! `*_in_shard` halves on every shard under all shard locks.

use super::LeaseTable;
use crate::environment::{Environment, Profile};
use crate::environment_keys::EnvironmentKeys;
use crate::environment_record::{
    default_config, EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord,
    NewEnvironment,
};
use crate::error::{Error, Param};
use crate::excerpt::Excerpt;
use crate::ids::{AsId, EnvironmentId};
use crate::time::Timestamp;

impl LeaseTable {
    /// Creates an environment (docs/contract.md §9 create).
    ///
    /// # Errors
    ///
    /// 400 naming `name`, `description` or `config` for a value over its limit,
    /// [`Error::AlreadyExists`] when the id is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::default();
    /// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
    /// let mut new = NewEnvironment::self_hosted("builds");
    /// new.description = Some("CI runners".into());
    /// let env = table.create_environment("env_01".parse()?, new, t0)?;
    /// assert_eq!((env.name.as_str(), env.config.as_str()), ("builds", r#"{"type":"self_hosted"}"#));
    ///
    /// table.archive_environment("env_01", t0)?;
    /// let refused = table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), t0);
    /// assert_eq!(refused.unwrap_err().error_code(), Some("environment_archived"));
    /// assert_eq!(table.delete_environment("env_01", t0)?.to_string(), "env_01");
    /// assert_eq!(table.retrieve_environment("env_01").unwrap_err().status(), 404);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_environment(
        &mut self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        new.check()?;
        self.create_environment_in_shard(id, new, now)
    }

    /// One environment (docs/contract.md §9 retrieve).
    ///
    /// # Errors
    ///
    /// [`Error::EnvironmentNotFound`] for an unknown, deleted or malformed id.
    pub fn retrieve_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Result<EnvironmentRecord, Error> {
        let index = self.environment_slot(&environment)?;
        Ok(self.environments[index as usize].record())
    }

    /// A page of environments in ascending id order (docs/contract.md §9 list); archived ones only when
    /// the request includes them.
    pub fn list_environments(&self, request: &EnvironmentListRequest) -> EnvironmentPage {
        let mut listed: Vec<&Environment> = self
            .environments
            .iter()
            .filter(|env| !env.deleted)
            .filter(|env| request.include_archived || env.profile.archived_at.is_none())
            .filter(|env| request.after.as_ref().map_or(true, |after| env.id > *after))
            .collect();
        listed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let limit = request.limit.clamp(1, crate::ListRequest::MAX_LIMIT);
        let has_more = listed.len() > limit;
        let data = listed.iter().take(limit).map(|env| env.record()).collect();
        EnvironmentPage::of(data, has_more)
    }

    /// Updates an environment (docs/contract.md §9 update): omitted fields keep their value, metadata is a
    /// merge patch in which `None` or `""` deletes a key, `updated_at` becomes the operation's
    /// instant.
    ///
    /// # Errors
    ///
    /// 400 naming the parameter over its limit (or `config` when its type would change),
    /// 404 for the environment, [`Error::EnvironmentArchived`] for an archived one. A refused
    /// update changes nothing.
    pub fn update_environment(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        patch: &EnvironmentPatch,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        patch.check()?;
        let index = self.environment_slot(&environment)?;
        let profile = self.updated_profile(index, patch, now)?;
        self.set_profile(index, profile);
        Ok(self.environments[index as usize].record())
    }

    /// Archives an environment (docs/contract.md §9 archive): it takes no new work and no updates, while
    /// the work in it goes on. Archiving an archived environment returns it unchanged.
    ///
    /// # Errors
    ///
    /// 404 for the environment.
    pub fn archive_environment(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let index = self.environment_slot(&environment)?;
        self.archive_in_shard(index, now);
        Ok(self.environments[index as usize].record())
    }

    /// Deletes an environment and all its items (docs/contract.md §9 delete); returns its id. Its id then
    /// answers 404 everywhere (and may be created again).
    ///
    /// # Errors
    ///
    /// 404 for the environment, [`Error::EnvironmentInUse`] while any of its items holds a
    /// lease (starting, active, stopping): stop them first.
    pub fn delete_environment(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentId, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let index = self.environment_slot(&environment)?;
        let leased = self.leased_in(index);
        if leased > 0 {
            return Err(Error::EnvironmentInUse {
                environment: self.environments[index as usize].id.clone(),
                leased,
            });
        }
        Ok(self.delete_in_shard(index))
    }

    // ---- the halves the concurrent table runs on every shard ----

    /// Registers a checked new environment; 409 when the id is taken.
    pub(crate) fn create_environment_in_shard(
        &mut self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error> {
        let profile = Profile {
            name: new.name,
            config: new.config.unwrap_or_else(|| default_config(new.kind)),
            description: new.description,
            metadata: new.metadata,
            scope: new.scope,
            created_at: now,
            updated_at: now,
            archived_at: None,
            keys: EnvironmentKeys::default(),
        };
        let index = self.insert_environment(id, new.kind, profile)?;
        Ok(self.environments[index as usize].record())
    }

    /// Environment `index`'s profile with `patch` applied at `now`, or why it cannot be.
    pub(crate) fn updated_profile(
        &self,
        index: u32,
        patch: &EnvironmentPatch,
        now: Timestamp,
    ) -> Result<Profile, Error> {
        let environment = &self.environments[index as usize];
        if environment.profile.archived_at.is_some() {
            return Err(Error::EnvironmentArchived {
                environment: environment.id.clone(),
            });
        }
        let mut profile = environment.profile.clone();
        if let Some((kind, config)) = &patch.config {
            if *kind != environment.kind {
                return Err(Error::InvalidParameter {
                    param: Param::Config,
                    expected: "the environment's config type, which cannot change",
                    found: Excerpt::new(kind.as_str()),
                });
            }
            profile.config.clone_from(config);
        }
        if let Some(metadata) = patch.metadata_patch() {
            profile.metadata.apply(&metadata)?;
        }
        if let Some(name) = &patch.name {
            profile.name.clone_from(name);
        }
        if let Some(description) = &patch.description {
            profile.description.clone_from(description);
        }
        if let Some(scope) = patch.scope {
            profile.scope = Some(scope);
        }
        profile.updated_at = now;
        Ok(profile)
    }

    /// Replaces environment `index`'s profile (one [`Self::updated_profile`] made).
    pub(crate) fn set_profile(&mut self, index: u32, profile: Profile) {
        self.environments[index as usize].profile = profile;
    }

    /// Sets `archived_at` unless it is set.
    pub(crate) fn archive_in_shard(&mut self, index: u32, now: Timestamp) {
        let profile = &mut self.environments[index as usize].profile;
        if profile.archived_at.is_none() {
            profile.archived_at = Some(now);
            profile.updated_at = now;
        }
    }

    /// How many of environment `index`'s items hold a lease.
    pub(crate) fn leased_in(&self, index: u32) -> usize {
        self.environments[index as usize]
            .items
            .iter()
            .filter(|&&slot| self.items[slot as usize].phase.lease().is_some())
            .count()
    }

    /// Removes environment `index`, its items (none may hold a lease) and its lapses not yet
    /// swept: nothing of it is left. Returns its id.
    pub(crate) fn delete_in_shard(&mut self, index: u32) -> EnvironmentId {
        self.remove_items(|item| item.env() == index);
        let id = &self.environments[index as usize].id;
        self.journal.retain(|lapse| lapse.environment_id != *id);
        let environment = &mut self.environments[index as usize];
        self.environment_index.remove(&*environment.text);
        environment.delete();
        environment.id.clone()
    }
}
