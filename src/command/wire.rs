//! [`Stamped::encode`] and [`Stamped::decode`]: a command as bytes, for a log (docs/contract.md §7.4).
//!
//! The wire types below are the format, version 1, separate from the public types so that
//! those can grow without changing it: a field or variant is never reordered or removed, a
//! new field means a new version. A new command is a variant appended at the end: every
//! earlier encoding stays byte for byte what it was, and a reader that predates the variant
//! refuses it as malformed instead of misreading it. Framing (magic `WLCM`, version, CRC-32) is
//! [`crate::snapshot`]'s. Ids a command refers to are the request's text, kept byte for byte
//! (a malformed one included); ids it creates and worker ids are written as their text and
//! must parse back.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use super::{Command, Stamped};
use crate::environment_keys::{ItemSecretKey, KeyDigest};
use crate::environment_record::EnvironmentKind;
use crate::environment_record::{EnvironmentPatch, EnvironmentScope, NewEnvironment};
use crate::excerpt::Excerpt;
use crate::heartbeat::{HeartbeatRequest, Precondition};
use crate::ids::{EnvironmentId, EnvironmentKeyId, SessionId, WorkId, WorkerId};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::StopMode;
use crate::request::PollRequest;
use crate::snapshot::{
    frame, instant, read_payload, unframe, DecodeError, InvalidValue, WireKind, WireScope,
    COMMAND_MAGIC, COMMAND_VERSION,
};

#[derive(Debug, Serialize, Deserialize)]
struct WireStamped<'a> {
    now: i64,
    #[serde(borrow)]
    command: WireCommand<'a>,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireCommand<'a> {
    RegisterEnvironment {
        id: &'a str,
        kind: WireKind,
    },
    CreateWork {
        environment: &'a str,
        id: &'a str,
        session: &'a str,
        /// Ascending by key.
        #[serde(borrow)]
        metadata: Vec<(&'a str, &'a str)>,
    },
    Poll {
        environment: &'a str,
        worker: Option<&'a str>,
        reclaim_older_than_ms: u64,
        block_ms: Option<u16>,
    },
    Ack {
        environment: &'a str,
        work: &'a str,
        worker: Option<&'a str>,
    },
    Heartbeat {
        environment: &'a str,
        work: &'a str,
        precondition: WirePrecondition,
        /// Never 0.
        desired_ttl_seconds: Option<u64>,
    },
    Stop {
        environment: &'a str,
        work: &'a str,
        force: bool,
    },
    UpdateMetadata {
        environment: &'a str,
        work: &'a str,
        /// Ascending by key; `None` deletes.
        #[serde(borrow)]
        patch: Vec<(&'a str, Option<&'a str>)>,
    },
    Sweep,
    PurgeStopped {
        before: i64,
    },
    CreateEnvironment {
        id: &'a str,
        kind: WireKind,
        name: &'a str,
        config: Option<&'a str>,
        description: Option<&'a str>,
        /// Ascending by key.
        #[serde(borrow)]
        metadata: Vec<(&'a str, &'a str)>,
        scope: Option<WireScope>,
    },
    UpdateEnvironment {
        environment: &'a str,
        name: Option<&'a str>,
        /// `Some(None)` clears the description.
        description: Option<Option<&'a str>>,
        /// Ascending by key; `None` deletes.
        #[serde(borrow)]
        metadata: Option<Vec<(&'a str, Option<&'a str>)>>,
        config: Option<(WireKind, &'a str)>,
        scope: Option<WireScope>,
    },
    ArchiveEnvironment {
        environment: &'a str,
    },
    DeleteEnvironment {
        environment: &'a str,
    },
    CreateEnvironmentKey {
        environment: &'a str,
        id: &'a str,
        name: Option<&'a str>,
        digest: [u8; 32],
    },
    RevokeEnvironmentKey {
        environment: &'a str,
        key: &'a str,
    },
    SetItemSecretKey {
        key: [u8; 32],
    },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum WirePrecondition {
    Unconditional,
    NoHeartbeat,
    LastHeartbeat(i64),
    Unmatchable,
}

#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
impl Stamped {
    /// The command as bytes: magic `WLCM`, format version, a postcard payload, CRC-32. Equal
    /// commands give equal bytes, and [`Self::decode`] gives the command back.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let stamped = Stamped::new(
    ///     Timestamp::from_unix_micros(1_782_893_706_120_394),
    ///     Command::Heartbeat {
    ///         environment: "env_01".into(),
    ///         work: "work_019f3be4fd2475d9a784bf2c739e1194".into(),
    ///         request: HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60"))?,
    ///     },
    /// );
    /// let bytes = stamped.encode();
    /// assert_eq!(Stamped::decode(&bytes)?, stamped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        // The text of typed ids, which the wire form borrows.
        let (id_text, session_text): (String, String);
        let command = match &self.command {
            Command::RegisterEnvironment { id, kind } => {
                id_text = id.to_string();
                WireCommand::RegisterEnvironment {
                    id: &id_text,
                    kind: (*kind).into(),
                }
            }
            Command::CreateWork {
                environment,
                id,
                session,
                metadata,
            } => {
                (id_text, session_text) = (id.to_string(), session.to_string());
                WireCommand::CreateWork {
                    environment,
                    id: &id_text,
                    session: &session_text,
                    metadata: metadata.iter().collect(),
                }
            }
            Command::Poll {
                environment,
                request,
            } => WireCommand::Poll {
                environment,
                worker: request.worker.as_ref().map(WorkerId::as_str),
                reclaim_older_than_ms: request.reclaim_older_than_ms,
                block_ms: request.block_ms,
            },
            Command::Ack {
                environment,
                work,
                worker,
            } => WireCommand::Ack {
                environment,
                work,
                worker: worker.as_ref().map(WorkerId::as_str),
            },
            Command::Heartbeat {
                environment,
                work,
                request,
            } => WireCommand::Heartbeat {
                environment,
                work,
                precondition: match request.precondition {
                    Precondition::Unconditional => WirePrecondition::Unconditional,
                    Precondition::NoHeartbeat => WirePrecondition::NoHeartbeat,
                    Precondition::LastHeartbeat(token) => {
                        WirePrecondition::LastHeartbeat(token.unix_micros())
                    }
                    Precondition::Unmatchable => WirePrecondition::Unmatchable,
                },
                desired_ttl_seconds: request.desired_ttl_seconds.map(NonZeroU64::get),
            },
            Command::Stop {
                environment,
                work,
                mode,
            } => WireCommand::Stop {
                environment,
                work,
                force: match mode {
                    StopMode::Graceful => false,
                    StopMode::Force => true,
                },
            },
            Command::UpdateMetadata {
                environment,
                work,
                patch,
            } => WireCommand::UpdateMetadata {
                environment,
                work,
                patch: patch
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_deref()))
                    .collect(),
            },
            Command::Sweep => WireCommand::Sweep,
            Command::PurgeStopped { before } => WireCommand::PurgeStopped {
                before: before.unix_micros(),
            },
            Command::CreateEnvironment { id, new } => {
                id_text = id.to_string();
                WireCommand::CreateEnvironment {
                    id: &id_text,
                    kind: new.kind.into(),
                    name: &new.name,
                    config: new.config.as_deref(),
                    description: new.description.as_deref(),
                    metadata: new.metadata.iter().collect(),
                    scope: new.scope.map(WireScope::from),
                }
            }
            Command::UpdateEnvironment { environment, patch } => WireCommand::UpdateEnvironment {
                environment,
                name: patch.name.as_deref(),
                description: patch.description.as_ref().map(Option::as_deref),
                metadata: patch.metadata.as_ref().map(|patch| {
                    patch
                        .iter()
                        .map(|(key, value)| (key.as_str(), value.as_deref()))
                        .collect()
                }),
                config: patch
                    .config
                    .as_ref()
                    .map(|(kind, text)| ((*kind).into(), text.as_str())),
                scope: patch.scope.map(WireScope::from),
            },
            Command::ArchiveEnvironment { environment } => {
                WireCommand::ArchiveEnvironment { environment }
            }
            Command::DeleteEnvironment { environment } => {
                WireCommand::DeleteEnvironment { environment }
            }
            Command::CreateEnvironmentKey {
                environment,
                id,
                name,
                digest,
            } => {
                id_text = id.to_string();
                WireCommand::CreateEnvironmentKey {
                    environment,
                    id: &id_text,
                    name: name.as_deref(),
                    digest: *digest.as_bytes(),
                }
            }
            Command::RevokeEnvironmentKey { environment, key } => {
                WireCommand::RevokeEnvironmentKey { environment, key }
            }
            Command::SetItemSecretKey { key } => WireCommand::SetItemSecretKey {
                key: *key.as_bytes(),
            },
        };
        let wire = WireStamped {
            now: self.now.unix_micros(),
            command,
        };
        frame(COMMAND_MAGIC, COMMAND_VERSION, &wire, 64)
    }

    /// The command [`Self::encode`] wrote.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for any other bytes: too short, another magic, a newer version, a
    /// checksum mismatch, an unreadable payload, or one that reads but holds a value no
    /// command can (an out-of-range instant, a created id that does not parse, metadata over
    /// its limits, keys out of order). Never panics, whatever the bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    /// let bytes = Stamped::new(Timestamp::from_unix_micros(0), Command::Sweep).encode();
    /// assert!(matches!(Stamped::decode(&bytes)?.command, Command::Sweep));
    /// assert_eq!(Stamped::decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Checksum));
    /// # Ok::<(), DecodeError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let payload = unframe(bytes, COMMAND_MAGIC, COMMAND_VERSION)?;
        let wire: WireStamped<'_> = read_payload(payload)?;
        let now = instant(wire.now).map_err(invalid)?;
        let command = match wire.command {
            WireCommand::RegisterEnvironment { id, kind } => Command::RegisterEnvironment {
                id: EnvironmentId::parse(id).map_err(invalid)?,
                kind: EnvironmentKind::from(kind),
            },
            WireCommand::CreateWork {
                environment,
                id,
                session,
                metadata,
            } => Command::CreateWork {
                environment: environment.into(),
                id: WorkId::parse(id).map_err(invalid)?,
                session: SessionId::parse(session).map_err(invalid)?,
                metadata: metadata_of(&metadata)?,
            },
            WireCommand::Poll {
                environment,
                worker,
                reclaim_older_than_ms,
                block_ms,
            } => Command::Poll {
                environment: environment.into(),
                request: PollRequest {
                    worker: worker_id(worker)?,
                    reclaim_older_than_ms,
                    block_ms,
                },
            },
            WireCommand::Ack {
                environment,
                work,
                worker,
            } => Command::Ack {
                environment: environment.into(),
                work: work.into(),
                worker: worker_id(worker)?,
            },
            WireCommand::Heartbeat {
                environment,
                work,
                precondition,
                desired_ttl_seconds,
            } => Command::Heartbeat {
                environment: environment.into(),
                work: work.into(),
                request: HeartbeatRequest {
                    precondition: match precondition {
                        WirePrecondition::Unconditional => Precondition::Unconditional,
                        WirePrecondition::NoHeartbeat => Precondition::NoHeartbeat,
                        WirePrecondition::LastHeartbeat(token) => {
                            Precondition::LastHeartbeat(instant(token).map_err(invalid)?)
                        }
                        WirePrecondition::Unmatchable => Precondition::Unmatchable,
                    },
                    desired_ttl_seconds: match desired_ttl_seconds {
                        None => None,
                        Some(seconds) => Some(
                            NonZeroU64::new(seconds)
                                .ok_or(DecodeError::Invalid(InvalidValue::ZeroTtl))?,
                        ),
                    },
                },
            },
            WireCommand::Stop {
                environment,
                work,
                force,
            } => Command::Stop {
                environment: environment.into(),
                work: work.into(),
                mode: if force {
                    StopMode::Force
                } else {
                    StopMode::Graceful
                },
            },
            WireCommand::UpdateMetadata {
                environment,
                work,
                patch,
            } => {
                let patch = patch_of(&patch)?;
                Command::UpdateMetadata {
                    environment: environment.into(),
                    work: work.into(),
                    patch,
                }
            }
            WireCommand::Sweep => Command::Sweep,
            WireCommand::PurgeStopped { before } => Command::PurgeStopped {
                before: instant(before).map_err(invalid)?,
            },
            WireCommand::CreateEnvironment {
                id,
                kind,
                name,
                config,
                description,
                metadata,
                scope,
            } => {
                let new = NewEnvironment {
                    name: name.to_owned(),
                    kind: EnvironmentKind::from(kind),
                    config: config.map(str::to_owned),
                    description: description.map(str::to_owned),
                    metadata: metadata_of(&metadata)?,
                    scope: scope.map(EnvironmentScope::from),
                };
                // A command holds what the table would accept: limits are part of the format.
                new.check().map_err(invalid)?;
                Command::CreateEnvironment {
                    id: EnvironmentId::parse(id).map_err(invalid)?,
                    new,
                }
            }
            WireCommand::UpdateEnvironment {
                environment,
                name,
                description,
                metadata,
                config,
                scope,
            } => {
                let metadata = metadata.as_deref().map(patch_of).transpose()?;
                let patch = EnvironmentPatch {
                    name: name.map(str::to_owned),
                    description: description.map(|text| text.map(str::to_owned)),
                    metadata,
                    config: config
                        .map(|(kind, text)| (EnvironmentKind::from(kind), text.to_owned())),
                    scope: scope.map(EnvironmentScope::from),
                };
                patch.check().map_err(invalid)?;
                Command::UpdateEnvironment {
                    environment: environment.into(),
                    patch,
                }
            }
            WireCommand::ArchiveEnvironment { environment } => Command::ArchiveEnvironment {
                environment: environment.into(),
            },
            WireCommand::DeleteEnvironment { environment } => Command::DeleteEnvironment {
                environment: environment.into(),
            },
            WireCommand::CreateEnvironmentKey {
                environment,
                id,
                name,
                digest,
            } => Command::CreateEnvironmentKey {
                environment: environment.into(),
                id: EnvironmentKeyId::parse(id).map_err(invalid)?,
                name: name.map(str::to_owned),
                digest: KeyDigest::from_bytes(digest),
            },
            WireCommand::RevokeEnvironmentKey { environment, key } => {
                Command::RevokeEnvironmentKey {
                    environment: environment.into(),
                    key: key.into(),
                }
            }
            WireCommand::SetItemSecretKey { key } => Command::SetItemSecretKey {
                key: ItemSecretKey::from_bytes(key),
            },
        };
        Ok(Self { now, command })
    }
}

/// A value that reads but is not valid.
fn invalid(value: impl Into<InvalidValue>) -> DecodeError {
    DecodeError::Invalid(value.into())
}

/// Metadata as written: keys ascending, within the limits.
fn metadata_of(pairs: &[(&str, &str)]) -> Result<Metadata, DecodeError> {
    ascending(pairs.iter().map(|(key, _)| key))?;
    let map = pairs
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    Metadata::from_map(map).map_err(|e| DecodeError::Invalid(e.into()))
}

/// A metadata patch as written: keys ascending; `None` deletes.
fn patch_of(pairs: &[(&str, Option<&str>)]) -> Result<MetadataPatch, DecodeError> {
    ascending(pairs.iter().map(|(key, _)| key))?;
    Ok(pairs
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.map(str::to_owned)))
        .collect::<BTreeMap<_, _>>())
}

fn worker_id(worker: Option<&str>) -> Result<Option<WorkerId>, DecodeError> {
    worker
        .map(|text| WorkerId::parse(text).map_err(|e| DecodeError::Invalid(e.into())))
        .transpose()
}

/// Refuses keys that are not strictly ascending: a map writes them so, once each.
fn ascending<'k>(mut keys: impl Iterator<Item = &'k &'k str>) -> Result<(), DecodeError> {
    let Some(mut previous) = keys.next() else {
        return Ok(());
    };
    for key in keys {
        if key <= previous {
            return Err(invalid(InvalidValue::KeysOutOfOrder {
                key: Excerpt::new(key),
            }));
        }
        previous = key;
    }
    Ok(())
}
