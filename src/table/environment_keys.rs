//! Environment keys and the item-secret key (docs/contract.md §10): the table keeps them, the
//! caller mints, hashes and checks them ([`crate::environment_keys`]).
//!
//! Like every changing operation these run at `max(clock, now)` and apply the lapses due then,
//! so a log of them replays exactly.

use super::LeaseTable;
use crate::environment_keys::{EnvironmentKey, EnvironmentKeys, ItemSecretKey, KeyDigest};
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::ids::{AsId, EnvironmentId, EnvironmentKeyId};
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
        self.expire_due(now);
        let index = self.environment_slot(&environment)?;
        self.add_key_in_shard(index, EnvironmentKey::new(id, name, digest, now))
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
        let now = self.tick(now.into());
        self.expire_due(now);
        let index = self.environment_slot(&environment)?;
        self.remove_key_in_shard(index, key)
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
        let index = self.environment_slot(&environment)?;
        Ok(&self.environments[index as usize].profile.keys)
    }

    /// Sets the key item secrets are signed with, unless one is set: the first key a log
    /// sets stays, so two members that both proposed one end up with the same.
    pub fn set_item_secret_key(&mut self, key: ItemSecretKey, now: impl Into<Timestamp>) {
        let now = self.tick(now.into());
        self.expire_due(now);
        self.item_secret_key.get_or_insert(key);
    }

    /// The key item secrets are signed with, once one was set.
    pub fn item_secret_key(&self) -> Option<&ItemSecretKey> {
        self.item_secret_key.as_ref()
    }

    // ---- the halves the concurrent table runs on every shard ----

    pub(crate) fn add_key_in_shard(
        &mut self,
        index: u32,
        key: EnvironmentKey,
    ) -> Result<EnvironmentKey, Error> {
        self.environments[index as usize]
            .profile
            .keys
            .insert(key.clone())?;
        Ok(key)
    }

    pub(crate) fn remove_key_in_shard(
        &mut self,
        index: u32,
        key: &str,
    ) -> Result<EnvironmentKeyId, Error> {
        self.environments[index as usize]
            .profile
            .keys
            .remove(key)
            .map(|removed| removed.id)
            .ok_or_else(|| Error::EnvironmentKeyNotFound {
                id: Excerpt::new(key),
            })
    }

    pub(crate) fn set_item_secret_key_in_shard(&mut self, key: ItemSecretKey) {
        self.item_secret_key.get_or_insert(key);
    }
}
