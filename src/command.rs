//! Every changing operation as a value (docs/contract.md §7.3): a [`Command`], stamped with its time
//! ([`Stamped`]), applied by [`crate::LeaseTable::apply`] with the answer as an [`Applied`].
//!
//! A log of `Stamped` values is the table's whole history: applying the same log to two tables
//! gives the same answers and the same state (and byte-identical snapshots), whatever their
//! hash seeds, shard counts or capacities. That is what lets an existing engine (a write-ahead
//! log, a Raft group) make the table durable and replicated without the crate doing any I/O.
//!
//! Ids an operation *refers to* (an environment, a work item) are carried as the text a
//! request gave, so a server can build a command from any request without validating ids
//! first: a malformed one is answered exactly as the direct call answers it (404 in docs/contract.md
//! §3.3's order). Ids a command *creates* are typed: the caller mints and checks them.

use crate::environment_keys::{EnvironmentKey, ItemSecretKey, KeyDigest};
use crate::environment_record::EnvironmentKind;
use crate::environment_record::{EnvironmentPatch, EnvironmentRecord, NewEnvironment};
use crate::heartbeat::{Heartbeat, HeartbeatRequest};
use crate::ids::{EnvironmentId, EnvironmentKeyId, SessionId, WorkId, WorkerId};
use crate::item::{Transition, WorkItem};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Polled, StopMode, Updated};
use crate::request::PollRequest;
use crate::time::Timestamp;

#[cfg(feature = "snapshot")]
mod answer;
#[cfg(feature = "snapshot")]
mod wire;

/// One changing operation with everything it needs (docs/contract.md §7.3).
///
/// # Examples
///
/// ```
/// use worklease::*;
///
/// let mut table = LeaseTable::new(Config::default());
/// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
/// let log = [
///     Stamped::new(t0, Command::RegisterEnvironment {
///         id: "env_01".parse()?,
///         kind: EnvironmentKind::SelfHosted,
///     }),
///     Stamped::new(t0, Command::CreateWork {
///         environment: "env_01".into(),
///         id: "work_01".parse()?,
///         session: "sess_01".parse()?,
///         metadata: Metadata::new(),
///     }),
///     // A malformed id is still a command: it is answered 404, as the direct call would be.
///     Stamped::new(t0, Command::Ack {
///         environment: "env_01".into(),
///         work: "work_not an id".into(),
///         worker: None,
///     }),
/// ];
/// let answers: Vec<_> = log.iter().map(|stamped| table.apply(stamped)).collect();
/// assert!(matches!(answers[1], Ok(Applied::Created(_))));
/// assert_eq!(answers[2].as_ref().unwrap_err().status(), 404);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// [`crate::LeaseTable::register_environment`].
    RegisterEnvironment {
        /// The new environment's id.
        id: EnvironmentId,
        /// Its kind.
        kind: EnvironmentKind,
    },
    /// [`crate::LeaseTable::create_environment`].
    CreateEnvironment {
        /// The new environment's id.
        id: EnvironmentId,
        /// What it is created with.
        new: NewEnvironment,
    },
    /// [`crate::LeaseTable::update_environment`].
    UpdateEnvironment {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The update.
        patch: EnvironmentPatch,
    },
    /// [`crate::LeaseTable::archive_environment`].
    ArchiveEnvironment {
        /// The environment, as the request named it.
        environment: Box<str>,
    },
    /// [`crate::LeaseTable::delete_environment`].
    DeleteEnvironment {
        /// The environment, as the request named it.
        environment: Box<str>,
    },
    /// [`crate::LeaseTable::create_work`].
    CreateWork {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The new item's id, minted by the caller.
        id: WorkId,
        /// Its session.
        session: SessionId,
        /// Its initial metadata.
        metadata: Metadata,
    },
    /// [`crate::LeaseTable::poll`].
    Poll {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The poll's parameters (`block_ms` is the server's and does not change the answer).
        request: PollRequest,
    },
    /// [`crate::LeaseTable::ack`].
    Ack {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The item, as the request named it.
        work: Box<str>,
        /// The acknowledging worker, if it named itself.
        worker: Option<WorkerId>,
    },
    /// [`crate::LeaseTable::heartbeat`]. Still a command on a stopping item, where it renews
    /// nothing (docs/contract.md §3.3): it moves the table's clock and applies the lapses due,
    /// as every command does, and its answer depends on the state at its place in the log.
    Heartbeat {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The item, as the request named it.
        work: Box<str>,
        /// The parsed heartbeat parameters.
        request: HeartbeatRequest,
    },
    /// [`crate::LeaseTable::stop`].
    Stop {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The item, as the request named it.
        work: Box<str>,
        /// Graceful or forced.
        mode: StopMode,
    },
    /// [`crate::LeaseTable::update_metadata`].
    UpdateMetadata {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The item, as the request named it.
        work: Box<str>,
        /// The merge patch.
        patch: MetadataPatch,
    },
    /// [`crate::LeaseTable::sweep`].
    Sweep,
    /// [`crate::LeaseTable::purge_stopped`].
    PurgeStopped {
        /// Items stopped before this instant are removed.
        before: Timestamp,
    },
    /// [`crate::LeaseTable::create_environment_key`].
    CreateEnvironmentKey {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The new key's id, minted by the caller.
        id: EnvironmentKeyId,
        /// Its name, if given.
        name: Option<String>,
        /// The SHA-256 digest of the key the caller minted (never the key).
        digest: KeyDigest,
    },
    /// [`crate::LeaseTable::revoke_environment_key`].
    RevokeEnvironmentKey {
        /// The environment, as the request named it.
        environment: Box<str>,
        /// The key's id, as the request named it.
        key: Box<str>,
    },
    /// [`crate::LeaseTable::set_item_secret_key`].
    SetItemSecretKey {
        /// The key, minted by the caller from the OS random source.
        key: ItemSecretKey,
    },
}

/// A [`Command`] with the time it runs at: the unit of a replayable log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// The operation's `now` (the table runs it at `max(clock, now)`, docs/contract.md §7.1).
    pub now: Timestamp,
    /// The operation.
    pub command: Command,
}

impl Stamped {
    /// `command` at `now`.
    pub fn new(now: impl Into<Timestamp>, command: Command) -> Self {
        Self {
            now: now.into(),
            command,
        }
    }
}

/// The answer to an applied [`Command`]: one variant per outcome, each exactly what the
/// direct method returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// An environment was registered.
    EnvironmentRegistered,
    /// An environment was created.
    EnvironmentCreated(EnvironmentRecord),
    /// An environment was updated.
    EnvironmentUpdated(EnvironmentRecord),
    /// An environment's archive answer.
    EnvironmentArchived(EnvironmentRecord),
    /// An environment was deleted.
    EnvironmentDeleted(EnvironmentId),
    /// A work item was created.
    Created(WorkItem),
    /// A poll's answer.
    Polled(Polled),
    /// An ack's answer.
    Acked(Updated),
    /// A heartbeat's answer.
    Heartbeat(Heartbeat),
    /// A stop's answer.
    Stopped(Updated),
    /// A metadata patch's answer.
    MetadataUpdated(Updated),
    /// A sweep's transitions, in canonical order.
    Swept(Vec<Transition>),
    /// How many stopped items a purge removed.
    Purged(usize),
    /// An environment key was created.
    EnvironmentKeyCreated(EnvironmentKey),
    /// An environment key was revoked.
    EnvironmentKeyRevoked(EnvironmentKeyId),
    /// The item-secret key is set (the first one set stays).
    ItemSecretKeySet,
}

/// The body of both tables' `apply`: one match from a command to the direct method, so the two
/// entry points cannot drift (the direct methods are the one implementation).
macro_rules! apply_command {
    ($table:expr, $stamped:expr) => {{
        use $crate::command::{Applied, Command};
        let stamped: &$crate::command::Stamped = $stamped;
        let now = stamped.now;
        match &stamped.command {
            Command::RegisterEnvironment { id, kind } => $table
                .register_environment(id.clone(), *kind)
                .map(|()| Applied::EnvironmentRegistered),
            Command::CreateEnvironment { id, new } => $table
                .create_environment(id.clone(), new.clone(), now)
                .map(Applied::EnvironmentCreated),
            Command::UpdateEnvironment { environment, patch } => $table
                .update_environment(&**environment, patch, now)
                .map(Applied::EnvironmentUpdated),
            Command::ArchiveEnvironment { environment } => $table
                .archive_environment(&**environment, now)
                .map(Applied::EnvironmentArchived),
            Command::DeleteEnvironment { environment } => $table
                .delete_environment(&**environment, now)
                .map(Applied::EnvironmentDeleted),
            Command::CreateWork {
                environment,
                id,
                session,
                metadata,
            } => $table
                .create_work(
                    &**environment,
                    id.clone(),
                    session.clone(),
                    metadata.clone(),
                    now,
                )
                .map(Applied::Created),
            Command::Poll {
                environment,
                request,
            } => $table
                .poll(&**environment, request, now)
                .map(Applied::Polled),
            Command::Ack {
                environment,
                work,
                worker,
            } => $table
                .ack(&**environment, &**work, worker.as_ref(), now)
                .map(Applied::Acked),
            Command::Heartbeat {
                environment,
                work,
                request,
            } => $table
                .heartbeat(&**environment, &**work, *request, now)
                .map(Applied::Heartbeat),
            Command::Stop {
                environment,
                work,
                mode,
            } => $table
                .stop(&**environment, &**work, *mode, now)
                .map(Applied::Stopped),
            Command::UpdateMetadata {
                environment,
                work,
                patch,
            } => $table
                .update_metadata(&**environment, &**work, patch, now)
                .map(Applied::MetadataUpdated),
            Command::Sweep => Ok(Applied::Swept($table.sweep(now))),
            Command::PurgeStopped { before } => {
                Ok(Applied::Purged($table.purge_stopped(*before, now)))
            }
            Command::CreateEnvironmentKey {
                environment,
                id,
                name,
                digest,
            } => $table
                .create_environment_key(&**environment, id.clone(), name.clone(), *digest, now)
                .map(Applied::EnvironmentKeyCreated),
            Command::RevokeEnvironmentKey { environment, key } => $table
                .revoke_environment_key(&**environment, key, now)
                .map(Applied::EnvironmentKeyRevoked),
            Command::SetItemSecretKey { key } => {
                $table.set_item_secret_key(*key, now);
                Ok(Applied::ItemSecretKeySet)
            }
        }
    }};
}
pub(crate) use apply_command;
