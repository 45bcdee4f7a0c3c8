//! Environment keys and the item-secret key (docs/contract.md §10): the table keeps them, the
//! caller mints, hashes and checks them ([`crate::environment_keys`]).
//!
//! Like every changing operation these run at `max(clock, now)` and apply the lapses due then,
//! so a log of them replays exactly.

use super::LeaseTable;
use crate::environment_keys::{EnvironmentKey, EnvironmentKeys, ItemSecretKey, KeyDigest};
use crate::error::Error;
use crate::ids::{AsId, EnvironmentId, EnvironmentKeyId};
use crate::lease_core::environments;
use crate::time::Timestamp;

impl LeaseTable {
    /// Adds a key to an environment (docs/contract.md §10): the caller minted `id` and the key,
    /// and passes the key's SHA-256 `digest` only. Archived environments take keys too (their
    /// work drains). Returns the key as listed.
    ///
    /// # Errors
    ///
    /// 404 for the environment; 400 naming `name` (1–256 characters) or `id` (at most
    /// [`crate::MAX_KEYS_PER_ENVIRONMENT`] keys); 409 when the id is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::default();
    /// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
    /// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
    /// let digest = KeyDigest::from_bytes([1; 32]);
    /// let key = table.create_environment_key("env_01", "ekey_01".parse()?, None, digest, t0)?;
    /// assert_eq!(table.environment_keys("env_01")?.iter().next(), Some(&key));
    /// table.revoke_environment_key("env_01", "ekey_01", t0)?;
    /// assert!(table.environment_keys("env_01")?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_environment_key(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        id: EnvironmentKeyId,
        name: Option<String>,
        digest: KeyDigest,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKey, Error> {
        let now = self.tick(now.into());
        let key = EnvironmentKey::new(id, name, digest, now);
        environments::create_key(&mut [&mut self.core], &environment, key)
    }

    /// Revokes one of an environment's keys (docs/contract.md §10); returns its id.
    ///
    /// # Errors
    ///
    /// 404 for the environment, [`Error::EnvironmentKeyNotFound`] for a key it does not hold
    /// (or a malformed key id).
    pub fn revoke_environment_key(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        key: &str,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKeyId, Error> {
        self.tick(now.into());
        environments::revoke_key(&mut [&mut self.core], &environment, key)
    }

    /// An environment's keys, ascending id.
    ///
    /// # Errors
    ///
    /// 404 for an unknown, deleted or malformed environment id.
    pub fn environment_keys(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Result<&EnvironmentKeys, Error> {
        let registry = &self.core.registry;
        let index = registry.find(&environment)?;
        Ok(&registry.record(index).keys)
    }

    /// Sets the key item secrets are signed with, unless one is set: the first key a log
    /// sets stays, so two members that both proposed one end up with the same.
    pub fn set_item_secret_key(&mut self, key: ItemSecretKey, now: impl Into<Timestamp>) {
        self.tick(now.into());
        self.core.item_secret_key.get_or_insert(key);
    }

    /// The key item secrets are signed with, once one was set.
    pub fn item_secret_key(&self) -> Option<&ItemSecretKey> {
        self.core.item_secret_key.as_ref()
    }
}
