//! Environments as a resource (docs/contract.md §9): the record a table keeps for each environment, what
//! creating and updating one takes, and the list request and page.
//!
//! The records live in the table (they are replicated state: every change is a command and
//! part of the snapshot). The crate checks every limit docs/contract.md §9 names except that `config` is
//! JSON: it stores the config's text as given, so the server (which parses the request body)
//! checks that it is a JSON object and reads its `type`.

use std::collections::BTreeMap;

use crate::environment_keys::EnvironmentKeys;
use crate::error::{Error, Param};
use crate::ids::EnvironmentId;
use crate::metadata::{Metadata, MetadataPatch};
use crate::request::decimal;
use crate::time::Timestamp;

/// Whether an environment runs its own workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvironmentKind {
    /// `self_hosted`: workers poll this table.
    SelfHosted,
    /// `cloud`: every work operation is refused with 400.
    Cloud,
}

impl EnvironmentKind {
    /// The kind as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SelfHosted => "self_hosted",
            Self::Cloud => "cloud",
        }
    }
}

/// Longest environment name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest environment description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Largest environment config, in bytes of its JSON text.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// Who an environment is visible to, when given (`scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvironmentScope {
    /// `organization`.
    Organization,
    /// `account`.
    Account,
}

impl EnvironmentScope {
    /// The scope as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Account => "account",
        }
    }

    /// Reads a scope as the API writes it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `scope`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        match raw {
            "organization" => Ok(Self::Organization),
            "account" => Ok(Self::Account),
            _ => Err(Error::invalid(
                Param::Scope,
                "\"organization\" or \"account\"",
                raw,
            )),
        }
    }
}

/// An environment as the API shows it (docs/contract.md §9's object).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvironmentRecord {
    /// `id`.
    pub id: EnvironmentId,
    /// `name`.
    pub name: String,
    /// `config.type`.
    pub kind: EnvironmentKind,
    /// `config`, the JSON text as given (or `{"type":"self_hosted"}` when omitted).
    pub config: String,
    /// `description`.
    pub description: Option<String>,
    /// `metadata`.
    pub metadata: Metadata,
    /// `scope`.
    pub scope: Option<EnvironmentScope>,
    /// `created_at`.
    pub created_at: Timestamp,
    /// `updated_at`.
    pub updated_at: Timestamp,
    /// `archived_at`.
    pub archived_at: Option<Timestamp>,
    /// Its environment keys (docs/contract.md §10), as digests; the API renders them only
    /// through the keys routes.
    pub keys: EnvironmentKeys,
}

/// What creating an environment takes (docs/contract.md §9 create), checked by [`NewEnvironment::check`]
/// and again by the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvironment {
    /// 1–256 characters.
    pub name: String,
    /// `config.type`.
    pub kind: EnvironmentKind,
    /// The config's JSON text, at most 16 KiB; `None` writes `{"type":"<kind>"}`.
    pub config: Option<String>,
    /// At most 2048 characters.
    pub description: Option<String>,
    /// Within the work-item metadata limits.
    pub metadata: Metadata,
    /// `scope`.
    pub scope: Option<EnvironmentScope>,
}

impl NewEnvironment {
    /// A self-hosted environment called `name`, with no config text, description, metadata
    /// or scope.
    pub fn self_hosted(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: EnvironmentKind::SelfHosted,
            config: None,
            description: None,
            metadata: Metadata::new(),
            scope: None,
        }
    }

    /// Checks docs/contract.md §9's limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `name`, `description` or `config`.
    pub fn check(&self) -> Result<(), Error> {
        check_name(&self.name)?;
        if let Some(description) = &self.description {
            check_description(description)?;
        }
        if let Some(config) = &self.config {
            check_config(config)?;
        }
        Ok(())
    }
}

/// An update (docs/contract.md §9 update): `None` keeps a field; `description: Some(None)` clears it;
/// `metadata` is a merge patch in which `None` **or** an empty value deletes a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentPatch {
    /// A new name.
    pub name: Option<String>,
    /// A new description, or `Some(None)` to clear it.
    pub description: Option<Option<String>>,
    /// The metadata merge patch.
    pub metadata: Option<MetadataPatch>,
    /// A new config: its type must be the environment's (else 400 `config`), its text at most
    /// 16 KiB.
    pub config: Option<(EnvironmentKind, String)>,
    /// A new scope.
    pub scope: Option<EnvironmentScope>,
}

impl EnvironmentPatch {
    /// Checks the patch's own limits (those that do not depend on the environment).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `name`, `description` or `config`.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        if let Some(Some(description)) = &self.description {
            check_description(description)?;
        }
        if let Some((_, config)) = &self.config {
            check_config(config)?;
        }
        Ok(())
    }

    /// The metadata patch with docs/contract.md §9's extra rule applied: an empty value deletes the key.
    pub(crate) fn metadata_patch(&self) -> Option<MetadataPatch> {
        self.metadata.as_ref().map(|patch| {
            patch
                .iter()
                .map(|(key, value)| {
                    let value = value.as_ref().filter(|value| !value.is_empty()).cloned();
                    (key.clone(), value)
                })
                .collect::<BTreeMap<_, _>>()
        })
    }
}

/// A parsed environment list request (docs/contract.md §9 list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentListRequest {
    /// Page size, 1–100.
    pub limit: usize,
    /// The previous page's `next_page`: the page starts after it.
    pub after: Option<EnvironmentId>,
    /// Whether archived environments are listed.
    pub include_archived: bool,
}

impl Default for EnvironmentListRequest {
    fn default() -> Self {
        Self {
            limit: crate::ListRequest::DEFAULT_LIMIT,
            after: None,
            include_archived: false,
        }
    }
}

impl EnvironmentListRequest {
    /// Parses the list's query values: `limit` (1–100, default 20, larger capped), `page` (an
    /// environment id), `include_archived` (`true` or `false`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming the parameter.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::EnvironmentListRequest;
    /// let request = EnvironmentListRequest::parse(Some("500"), Some("env_01"), Some("true")).unwrap();
    /// assert_eq!((request.limit, request.include_archived), (100, true));
    /// assert!(EnvironmentListRequest::parse(Some("0"), None, None).is_err());
    /// assert!(EnvironmentListRequest::parse(None, None, Some("yes")).is_err());
    /// ```
    pub fn parse(
        limit: Option<&str>,
        page: Option<&str>,
        include_archived: Option<&str>,
    ) -> Result<Self, Error> {
        let limit = match limit {
            None => crate::ListRequest::DEFAULT_LIMIT,
            Some(raw) => match decimal(raw) {
                Some(0) | None => {
                    return Err(Error::invalid(Param::Limit, "a positive integer", raw))
                }
                Some(n) => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(crate::ListRequest::MAX_LIMIT),
            },
        };
        let after = match page {
            None => None,
            Some(raw) => Some(
                EnvironmentId::parse(raw)
                    .map_err(|_| Error::invalid(Param::Page, "an environment id", raw))?,
            ),
        };
        let include_archived = match include_archived {
            None | Some("false") => false,
            Some("true") => true,
            Some(raw) => return Err(Error::invalid(Param::IncludeArchived, "true or false", raw)),
        };
        Ok(Self {
            limit,
            after,
            include_archived,
        })
    }
}

/// A page of environments (docs/contract.md §9 list), ascending id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvironmentPage {
    /// The environments.
    pub data: Vec<EnvironmentRecord>,
    /// The first one's id.
    pub first_id: Option<EnvironmentId>,
    /// The last one's id.
    pub last_id: Option<EnvironmentId>,
    /// Whether more follow.
    pub has_more: bool,
    /// The `page` value that fetches the next page, when more follow.
    pub next_page: Option<EnvironmentId>,
}

impl EnvironmentPage {
    pub(crate) fn of(data: Vec<EnvironmentRecord>, has_more: bool) -> Self {
        let first_id = data.first().map(|record| record.id.clone());
        let last_id = data.last().map(|record| record.id.clone());
        Self {
            next_page: if has_more { last_id.clone() } else { None },
            data,
            first_id,
            last_id,
            has_more,
        }
    }
}

/// The default config text of an environment of `kind`.
pub(crate) fn default_config(kind: EnvironmentKind) -> String {
    format!("{{\"type\":\"{}\"}}", kind.as_str())
}

fn check_name(name: &str) -> Result<(), Error> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(Error::invalid(Param::Name, "1 to 256 characters", name));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), Error> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            Param::Description,
            "at most 2048 characters",
            description,
        ));
    }
    Ok(())
}

fn check_config(config: &str) -> Result<(), Error> {
    if config.len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid(
            Param::Config,
            "a config of at most 16 KiB",
            config,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_parameter() {
        let mut new = NewEnvironment::self_hosted("");
        assert_eq!(new.check().unwrap_err().param(), Some(Param::Name));
        new.name = "é".repeat(256);
        assert!(new.check().is_ok(), "256 characters, 512 bytes");
        new.name.push('x');
        assert_eq!(new.check().unwrap_err().param(), Some(Param::Name));
        new.name = "ok".into();
        new.description = Some("d".repeat(2049));
        assert_eq!(new.check().unwrap_err().param(), Some(Param::Description));
        new.description = None;
        new.config = Some(format!(
            "{{\"type\":\"cloud\",\"x\":\"{}\"}}",
            "a".repeat(16 * 1024)
        ));
        assert_eq!(new.check().unwrap_err().param(), Some(Param::Config));
    }

    #[test]
    fn an_empty_metadata_value_deletes_the_key() {
        let patch = EnvironmentPatch {
            metadata: Some(MetadataPatch::from([
                ("a".to_string(), Some(String::new())),
                ("b".to_string(), None),
                ("c".to_string(), Some("x".to_string())),
            ])),
            ..EnvironmentPatch::default()
        };
        let resolved = patch.metadata_patch().unwrap();
        assert_eq!(resolved["a"], None);
        assert_eq!(resolved["b"], None);
        assert_eq!(resolved["c"].as_deref(), Some("x"));
    }
}
