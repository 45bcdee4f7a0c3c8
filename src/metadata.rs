//! Work-item metadata: a small string → string map, and the merge patch that updates it.

use std::collections::BTreeMap;

use crate::error::{Error, Param};

/// A work item's metadata: at most 16 keys of 1–64 bytes, values of at most 512 bytes.
///
/// Kept sorted by key so every rendering of an item is identical. The limits keep one
/// caller from growing the table without bound through metadata alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata(BTreeMap<String, String>);

/// A merge patch for [`Metadata`]: `Some(value)` sets a key, `None` deletes it.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

impl Metadata {
    /// Most keys an item may carry.
    pub const MAX_KEYS: usize = 16;
    /// Longest key, in bytes.
    pub const MAX_KEY_LEN: usize = 64;
    /// Longest value, in bytes.
    pub const MAX_VALUE_LEN: usize = 512;

    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata from a map, validated.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`metadata`) when the map breaks a limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use worklease::Metadata;
    /// let map = BTreeMap::from([("repo".to_string(), "worklease".to_string())]);
    /// assert_eq!(Metadata::from_map(map).unwrap().get("repo"), Some("worklease"));
    /// ```
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, Error> {
        for (key, value) in &map {
            check_entry(key, value)?;
        }
        check_count(map.len())?;
        Ok(Self(map))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies a merge patch, all or nothing, and says whether anything changed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`metadata`) when the result would break a limit; the
    /// metadata is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Metadata, MetadataPatch};
    /// let mut metadata = Metadata::new();
    /// let patch = MetadataPatch::from([("step".to_string(), Some("build".to_string()))]);
    /// assert!(metadata.apply(&patch).unwrap());
    /// let delete = MetadataPatch::from([("step".to_string(), None)]);
    /// assert!(metadata.apply(&delete).unwrap());
    /// assert!(metadata.is_empty());
    /// ```
    pub fn apply(&mut self, patch: &MetadataPatch) -> Result<bool, Error> {
        let mut count = self.0.len();
        for (key, value) in patch {
            match value {
                Some(value) => {
                    check_entry(key, value)?;
                    count += usize::from(!self.0.contains_key(key));
                }
                None => count -= usize::from(self.0.contains_key(key)),
            }
        }
        check_count(count)?;
        let mut changed = false;
        for (key, value) in patch {
            changed |= match value {
                Some(value) => self.0.insert(key.clone(), value.clone()).as_ref() != Some(value),
                None => self.0.remove(key).is_some(),
            };
        }
        Ok(changed)
    }
}

fn check_entry(key: &str, value: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > Metadata::MAX_KEY_LEN {
        return Err(Error::invalid(
            Param::Metadata,
            "keys of 1 to 64 bytes",
            key,
        ));
    }
    if value.len() > Metadata::MAX_VALUE_LEN {
        return Err(Error::invalid(
            Param::Metadata,
            "values of at most 512 bytes",
            value,
        ));
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), Error> {
    if count > Metadata::MAX_KEYS {
        return Err(Error::invalid(
            Param::Metadata,
            "at most 16 keys",
            "more keys",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(entries: &[(&str, Option<&str>)]) -> MetadataPatch {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn a_patch_that_breaks_a_limit_changes_nothing() {
        let mut metadata = Metadata::new();
        let keys: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
        let full: Vec<(&str, Option<&str>)> =
            keys.iter().map(|k| (k.as_str(), Some("v"))).collect();
        assert!(metadata.apply(&patch(&full)).expect("16 keys fit"));
        let before = metadata.clone();
        assert!(metadata.apply(&patch(&[("k16", Some("v"))])).is_err());
        assert_eq!(metadata, before);
        // Deleting one key makes room for another in the same patch.
        assert!(metadata
            .apply(&patch(&[("k0", None), ("k16", Some("v"))]))
            .expect("room"));
        assert_eq!(metadata.len(), 16);
        assert!(metadata.apply(&patch(&[("", Some("v"))])).is_err());
        assert!(metadata
            .apply(&patch(&[("big", Some(&"x".repeat(513)))]))
            .is_err());
    }

    #[test]
    fn setting_the_same_value_or_deleting_a_missing_key_is_no_change() {
        let mut metadata = Metadata::new();
        assert!(metadata.apply(&patch(&[("a", Some("1"))])).expect("ok"));
        assert!(!metadata
            .apply(&patch(&[("a", Some("1")), ("b", None)]))
            .expect("ok"));
    }
}
