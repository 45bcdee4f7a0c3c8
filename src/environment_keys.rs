//! Environment keys (docs/contract.md §10) as a table holds them: each environment's list of
//! keys, each key only as the digest of its text, and the table-wide key that item secrets are
//! signed with.
//!
//! The crate never sees a key's text and never hashes: the caller (the server) mints a key,
//! hashes it and hands the table the digest in a command. So keys are replicated state like
//! any other (a command each, part of the snapshot) while no snapshot, log or answer holds a
//! key that opens anything. Comparing a presented key's digest with the stored ones is the
//! caller's too, so it can use a constant-time comparison.

use std::fmt;

use crate::error::{Error, Param};
use crate::ids::EnvironmentKeyId;
use crate::time::Timestamp;

/// The SHA-256 digest of an environment key's text: what a table stores instead of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyDigest {
    /// Shows the first four bytes only: enough to tell digests apart in a test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// One environment key as the API lists it (without the key, which only its creation shows).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvironmentKey {
    /// `id`, `ekey_…`.
    pub id: EnvironmentKeyId,
    /// `name`, when given.
    pub name: Option<String>,
    /// The SHA-256 digest of the key's text.
    pub digest: KeyDigest,
    /// `created_at`.
    pub created_at: Timestamp,
}

impl EnvironmentKey {
    /// A key as a table stores it. `name` is checked by the table (1–256 characters).
    pub fn new(
        id: EnvironmentKeyId,
        name: Option<String>,
        digest: KeyDigest,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id,
            name,
            digest,
            created_at,
        }
    }
}

/// The longest key name, in characters (as an environment's).
const MAX_KEY_NAME_CHARS: usize = 256;

/// The most keys one environment holds: enough for a fleet's rotation, and it bounds the
/// digests a request is compared with.
pub const MAX_KEYS_PER_ENVIRONMENT: usize = 64;

/// An environment's keys, ascending id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentKeys(Vec<EnvironmentKey>);

impl EnvironmentKeys {
    /// The keys, ascending id.
    pub fn iter(&self) -> std::slice::Iter<'_, EnvironmentKey> {
        self.0.iter()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `key`, checking its name and the environment's key count.
    pub(crate) fn insert(&mut self, key: EnvironmentKey) -> Result<(), Error> {
        if let Some(name) = &key.name {
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_KEY_NAME_CHARS {
                return Err(Error::invalid(Param::Name, "1 to 256 characters", name));
            }
        }
        if self.0.len() >= MAX_KEYS_PER_ENVIRONMENT {
            return Err(Error::invalid(
                Param::Id,
                "at most 64 keys per environment",
                &key.id.to_string(),
            ));
        }
        match self.0.binary_search_by(|held| held.id.cmp(&key.id)) {
            Ok(_) => Err(Error::AlreadyExists {
                id: key.id.excerpt(),
            }),
            Err(at) => {
                self.0.insert(at, key);
                Ok(())
            }
        }
    }

    /// Removes the key whose id is `id` (as text), returning it.
    pub(crate) fn remove(&mut self, id: &str) -> Option<EnvironmentKey> {
        let id = EnvironmentKeyId::parse(id).ok()?;
        let at = self.0.binary_search_by(|key| key.id.cmp(&id)).ok()?;
        Some(self.0.remove(at))
    }

    /// Keys read from a snapshot: refused unless ascending by id, within the count, and
    /// named within the limits.
    #[cfg(feature = "snapshot")]
    pub(crate) fn restored(keys: Vec<EnvironmentKey>) -> Result<Self, String> {
        let mut restored = Self::default();
        for key in keys {
            if restored.0.last().is_some_and(|last| last.id >= key.id) {
                return Err(format!("environment key {} out of order", key.id));
            }
            restored
                .insert(key)
                .map_err(|error| format!("environment key: {error}"))?;
        }
        Ok(restored)
    }
}

impl<'a> IntoIterator for &'a EnvironmentKeys {
    type Item = &'a EnvironmentKey;
    type IntoIter = std::slice::Iter<'a, EnvironmentKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The key item secrets are signed with (an HMAC key, docs/security.md): minted once by the
/// caller, kept by the table so every replica holds the same one, never shown in an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ItemSecretKey([u8; 32]);

impl ItemSecretKey {
    /// The key with these bytes (32 bytes from the OS random source).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ItemSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ItemSecretKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, name: Option<&str>) -> EnvironmentKey {
        EnvironmentKey::new(
            id.parse().unwrap(),
            name.map(str::to_owned),
            KeyDigest::from_bytes([7; 32]),
            Timestamp::from_unix_micros(0),
        )
    }

    #[test]
    fn keys_stay_in_id_order_and_refuse_duplicates() {
        let mut keys = EnvironmentKeys::default();
        keys.insert(key("ekey_02", None)).unwrap();
        keys.insert(key("ekey_01", Some("ci"))).unwrap();
        let ids: Vec<_> = keys.iter().map(|k| k.id.to_string()).collect();
        assert_eq!(ids, ["ekey_01", "ekey_02"]);
        assert_eq!(keys.insert(key("ekey_01", None)).unwrap_err().status(), 409);
        assert_eq!(keys.remove("ekey_01").unwrap().name.as_deref(), Some("ci"));
        assert!(keys.remove("ekey_01").is_none());
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn names_and_counts_are_bounded() {
        let mut keys = EnvironmentKeys::default();
        assert_eq!(
            keys.insert(key("ekey_01", Some(""))).unwrap_err().param(),
            Some(Param::Name)
        );
        for n in 0..MAX_KEYS_PER_ENVIRONMENT {
            keys.insert(key(&format!("ekey_{n:03}"), None)).unwrap();
        }
        assert_eq!(
            keys.insert(key("ekey_999", None)).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let printed = format!("{:?}", ItemSecretKey::from_bytes([0xab; 32]));
        assert!(!printed.contains("ab"), "{printed}");
    }
}
