//! Environments as a resource (docs/contract.md §9): create, retrieve, list, update, archive, delete.
//!
//! Changing operations here are like every other: they run at `max(clock, now)` and apply the
//! lapses due then, so a log of them replays exactly. The operations themselves are the
//! core's ([`crate::lease_core::environments`]), shared with [`crate::ConcurrentLeaseTable`].

use super::LeaseTable;
use crate::environment_record::{
    EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord, NewEnvironment,
};
use crate::error::Error;
use crate::ids::{AsId, EnvironmentId};
use crate::lease_core::environments;
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
        environments::create(&mut [&mut self.core], id, new, now)
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
        let registry = &self.core.registry;
        let index = registry.find(&environment)?;
        Ok(registry.record(index).clone())
    }

    /// A page of environments in ascending id order (docs/contract.md §9 list); archived ones only when
    /// the request includes them.
    pub fn list_environments(&self, request: &EnvironmentListRequest) -> EnvironmentPage {
        self.core.registry.list(request)
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
        environments::update(&mut [&mut self.core], &environment, patch, now)
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
        environments::archive(&mut [&mut self.core], &environment, now)
    }

    /// Deletes an environment and all its items (docs/contract.md §9 delete); returns its id. Its id then
    /// answers 404 everywhere (and may be created again). Nothing of it remains: its record,
    /// its items and its lapses not yet swept are dropped, and its memory is given back.
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
        self.tick(now.into());
        environments::delete(&mut [&mut self.core], &environment)
    }
}
