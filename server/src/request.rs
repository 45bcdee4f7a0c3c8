//! The typed write path: each changing request is its own type, which knows the command it
//! becomes ([`Request::command`]), the answer it expects ([`Request::Answer`]) and how to take
//! that answer out of the table's `Applied` ([`Request::answer`]). `Submit` is generic over
//! them, so a handler gets its own answer type back and no caller downcasts.
//!
//! The table answers a command with the `Applied` variant of that command, so
//! [`Request::answer`] meets another variant only when that rule breaks, or when a replayed
//! forward (`crate::origin`) brings back the recorded answer of a request whose record does not
//! say what was asked (recorded before records did). Either way it is a typed [`Mismatch`],
//! answered with the error envelope, never a panic.
//!
//! [`Asked`] is what a request asked, small enough to keep beside every recorded answer: its
//! kind and a fingerprint of the ids it names. A replay whose request does not ask what its
//! origin id's first attempt asked is refused (409), never answered with that other answer.

use std::fmt;

use worklease::{
    Applied, Command, EnvironmentId, EnvironmentKey, EnvironmentKeyId, EnvironmentPatch,
    EnvironmentRecord, Error, Heartbeat, HeartbeatRequest, ItemSecretKey, KeyDigest, LeaseTable,
    Metadata, MetadataPatch, NewEnvironment, PollRequest, Polled, SessionId, Stamped, StopMode,
    Timestamp, Transition, Updated, WorkId, WorkerId,
};

/// A new id's inputs: time, sequence, entropy (`Submit::mint_inputs`).
pub(crate) type MintInputs = (Timestamp, u64, u64);

/// A changing request of one kind, typed from the handler to its answer.
pub(crate) trait Request: Sized {
    /// What the handler gets back.
    type Answer;

    /// What this request asks: compared with a replayed origin's record.
    fn asked(&self) -> Asked;

    /// The command it becomes, new ids minted from `mint` (called at most once).
    fn command(self, mint: impl FnOnce() -> MintInputs) -> Command;

    /// Its answer, out of what the table answered its command.
    ///
    /// # Errors
    ///
    /// [`Mismatch::Answer`] when `applied` is another command's outcome.
    fn answer(applied: Applied) -> Result<Self::Answer, Mismatch>;

    /// What its answer may have changed for the sweeper and long polls.
    fn wakes(_answer: &Self::Answer) -> Wake {
        Wake::Nothing
    }

    /// Applies it to an in-memory table at `now`: the command, as a log would apply it.
    ///
    /// # Errors
    ///
    /// The table's refusal inside, a [`Mismatch`] outside.
    fn apply_to(
        self,
        table: &mut LeaseTable,
        now: Timestamp,
        mint: impl FnOnce() -> MintInputs,
    ) -> Result<Result<Self::Answer, Error>, Mismatch> {
        match table.apply(&Stamped::new(now, self.command(mint))) {
            Ok(applied) => Self::answer(applied).map(Ok),
            Err(error) => Ok(Err(error)),
        }
    }
}

/// What an applied answer may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nothing the sweeper or a long poll waits for.
    Nothing,
    /// A lease now ends at this instant.
    Deadline(Timestamp),
    /// The table's next wake-up may have moved earlier.
    NextWakeup,
    /// A work item may have become claimable.
    WorkReady,
}

/// The kinds of commands, as records and messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    RegisterEnvironment = 1,
    CreateEnvironment = 2,
    UpdateEnvironment = 3,
    ArchiveEnvironment = 4,
    DeleteEnvironment = 5,
    CreateWork = 6,
    Poll = 7,
    Ack = 8,
    Heartbeat = 9,
    Stop = 10,
    UpdateMetadata = 11,
    Sweep = 12,
    PurgeStopped = 13,
    /// A command added to the library after this build (`Command` is non-exhaustive).
    Unknown = 14,
    CreateEnvironmentKey = 15,
    RevokeEnvironmentKey = 16,
    SetItemSecretKey = 17,
}

impl Kind {
    const ALL: [Self; 17] = [
        Self::RegisterEnvironment,
        Self::CreateEnvironment,
        Self::UpdateEnvironment,
        Self::ArchiveEnvironment,
        Self::DeleteEnvironment,
        Self::CreateWork,
        Self::Poll,
        Self::Ack,
        Self::Heartbeat,
        Self::Stop,
        Self::UpdateMetadata,
        Self::Sweep,
        Self::PurgeStopped,
        Self::Unknown,
        Self::CreateEnvironmentKey,
        Self::RevokeEnvironmentKey,
        Self::SetItemSecretKey,
    ];

    /// The kind a stored byte names.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }

    fn name(self) -> &'static str {
        match self {
            Self::RegisterEnvironment => "environment registration",
            Self::CreateEnvironment => "environment creation",
            Self::UpdateEnvironment => "environment update",
            Self::ArchiveEnvironment => "environment archive",
            Self::DeleteEnvironment => "environment deletion",
            Self::CreateWork => "work creation",
            Self::Poll => "poll",
            Self::Ack => "ack",
            Self::Heartbeat => "heartbeat",
            Self::Stop => "stop",
            Self::UpdateMetadata => "metadata update",
            Self::Sweep => "sweep",
            Self::PurgeStopped => "purge",
            Self::Unknown => "unknown",
            Self::CreateEnvironmentKey => "environment key creation",
            Self::RevokeEnvironmentKey => "environment key revocation",
            Self::SetItemSecretKey => "item-secret key",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a request asked: its kind and a fingerprint of the environment and work ids it named
/// (as the request spelled them). Minted ids, stamps and bodies are not part of it: a replay
/// mints nothing, and the ids name what a mismatch would touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) kind: Kind,
    pub(crate) targets: u64,
}

impl Asked {
    /// `kind` on `environment` (and `work`), fingerprinted with FNV-1a, which every replica and
    /// every build computes alike (a snapshot stores it).
    pub(crate) fn new(kind: Kind, environment: Option<&str>, work: Option<&str>) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(PRIME);
            }
        };
        // Each id behind a marker byte ids never hold, so ("ab", "c") is not ("a", "bc").
        for id in [environment, work] {
            match id {
                Some(id) => {
                    eat(&[0xff]);
                    eat(id.as_bytes());
                }
                None => eat(&[0xfe]),
            }
        }
        Self {
            kind,
            targets: hash,
        }
    }

    /// What a logged command asked.
    pub(crate) fn of(command: &Command) -> Self {
        match command {
            Command::RegisterEnvironment { id, .. } => {
                Self::new(Kind::RegisterEnvironment, Some(&id.to_string()), None)
            }
            // The new id is minted per attempt: not what was asked.
            Command::CreateEnvironment { .. } => Self::new(Kind::CreateEnvironment, None, None),
            Command::UpdateEnvironment { environment, .. } => {
                Self::new(Kind::UpdateEnvironment, Some(environment), None)
            }
            Command::ArchiveEnvironment { environment } => {
                Self::new(Kind::ArchiveEnvironment, Some(environment), None)
            }
            Command::DeleteEnvironment { environment } => {
                Self::new(Kind::DeleteEnvironment, Some(environment), None)
            }
            Command::CreateWork { environment, .. } => {
                Self::new(Kind::CreateWork, Some(environment), None)
            }
            Command::Poll { environment, .. } => Self::new(Kind::Poll, Some(environment), None),
            Command::Ack {
                environment, work, ..
            } => Self::new(Kind::Ack, Some(environment), Some(work)),
            Command::Heartbeat {
                environment, work, ..
            } => Self::new(Kind::Heartbeat, Some(environment), Some(work)),
            Command::Stop {
                environment, work, ..
            } => Self::new(Kind::Stop, Some(environment), Some(work)),
            Command::UpdateMetadata {
                environment, work, ..
            } => Self::new(Kind::UpdateMetadata, Some(environment), Some(work)),
            Command::Sweep => Self::new(Kind::Sweep, None, None),
            Command::PurgeStopped { .. } => Self::new(Kind::PurgeStopped, None, None),
            Command::CreateEnvironmentKey { environment, .. } => {
                Self::new(Kind::CreateEnvironmentKey, Some(environment), None)
            }
            Command::RevokeEnvironmentKey { environment, key } => {
                Self::new(Kind::RevokeEnvironmentKey, Some(environment), Some(key))
            }
            Command::SetItemSecretKey { .. } => Self::new(Kind::SetItemSecretKey, None, None),
            _ => Self::new(Kind::Unknown, None, None),
        }
    }
}

/// A request and an answer that do not belong together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Mismatch {
    /// A replayed forward whose origin id was first used for another request: 409.
    /// `recorded`: `None` when the record does not say (restored from an older snapshot).
    #[error(
        "the origin id {origin:032x} was first used for {}; a replay must repeat that \
         request, not send a {asked} request with other ids or of another kind",
        recorded.map_or_else(|| "another request".to_owned(), |kind| format!("a {kind} request"))
    )]
    Replay {
        origin: u128,
        recorded: Option<Kind>,
        asked: Kind,
    },
    /// The table answered a command with another command's outcome: a broken invariant,
    /// answered 500.
    #[error("a {asked} request was answered with another kind of outcome ({answered})")]
    Answer { asked: Kind, answered: &'static str },
}

impl Mismatch {
    fn answer(asked: Kind, applied: &Applied) -> Self {
        Self::Answer {
            asked,
            answered: outcome(applied),
        }
    }
}

/// The name of an outcome, for [`Mismatch::Answer`].
fn outcome(applied: &Applied) -> &'static str {
    match applied {
        Applied::EnvironmentRegistered => "environment registered",
        Applied::EnvironmentCreated(_) => "environment created",
        Applied::EnvironmentUpdated(_) => "environment updated",
        Applied::EnvironmentArchived(_) => "environment archived",
        Applied::EnvironmentDeleted(_) => "environment deleted",
        Applied::Created(_) => "work created",
        Applied::Polled(_) => "polled",
        Applied::Acked(_) => "acked",
        Applied::Heartbeat(_) => "heartbeat",
        Applied::Stopped(_) => "stopped",
        Applied::MetadataUpdated(_) => "metadata updated",
        Applied::Swept(_) => "swept",
        Applied::Purged(_) => "purged",
        Applied::EnvironmentKeyCreated(_) => "environment key created",
        Applied::EnvironmentKeyRevoked(_) => "environment key revoked",
        Applied::ItemSecretKeySet => "item-secret key set",
        // `Applied` is non-exhaustive: an outcome added to the library after this build.
        _ => "an outcome this server does not know",
    }
}

/// Defines a request whose answer is one `Applied` variant's value.
macro_rules! answers {
    ($kind:expr, $variant:ident) => {
        fn answer(applied: Applied) -> Result<Self::Answer, Mismatch> {
            match applied {
                Applied::$variant(answer) => Ok(answer),
                other => Err(Mismatch::answer($kind, &other)),
            }
        }
    };
}

/// `POST /v1/environments`.
#[derive(Debug)]
pub(crate) struct CreateEnvironment {
    pub(crate) new: NewEnvironment,
}

impl Request for CreateEnvironment {
    type Answer = EnvironmentRecord;
    fn asked(&self) -> Asked {
        Asked::new(Kind::CreateEnvironment, None, None)
    }
    fn command(self, mint: impl FnOnce() -> MintInputs) -> Command {
        let (at, sequence, entropy) = mint();
        Command::CreateEnvironment {
            id: EnvironmentId::mint(at, sequence, entropy),
            new: self.new,
        }
    }
    answers!(Kind::CreateEnvironment, EnvironmentCreated);
}

/// `POST /v1/environments/{id}/keys`: the key was minted and hashed by the handler; the
/// command carries its digest only.
#[derive(Debug)]
pub(crate) struct CreateEnvironmentKey<'a> {
    pub(crate) environment: &'a str,
    pub(crate) name: Option<String>,
    pub(crate) digest: KeyDigest,
}

impl Request for CreateEnvironmentKey<'_> {
    type Answer = EnvironmentKey;
    fn asked(&self) -> Asked {
        Asked::new(Kind::CreateEnvironmentKey, Some(self.environment), None)
    }
    fn command(self, mint: impl FnOnce() -> MintInputs) -> Command {
        let (at, sequence, entropy) = mint();
        Command::CreateEnvironmentKey {
            environment: self.environment.into(),
            id: EnvironmentKeyId::mint(at, sequence, entropy),
            name: self.name,
            digest: self.digest,
        }
    }
    answers!(Kind::CreateEnvironmentKey, EnvironmentKeyCreated);
}

/// `DELETE /v1/environments/{id}/keys/{key_id}`.
#[derive(Debug)]
pub(crate) struct RevokeEnvironmentKey<'a> {
    pub(crate) environment: &'a str,
    pub(crate) key: &'a str,
}

impl Request for RevokeEnvironmentKey<'_> {
    type Answer = EnvironmentKeyId;
    fn asked(&self) -> Asked {
        Asked::new(
            Kind::RevokeEnvironmentKey,
            Some(self.environment),
            Some(self.key),
        )
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::RevokeEnvironmentKey {
            environment: self.environment.into(),
            key: self.key.into(),
        }
    }
    answers!(Kind::RevokeEnvironmentKey, EnvironmentKeyRevoked);
}

/// The key item secrets are signed with, set once (the first set stays).
#[derive(Debug)]
pub(crate) struct SetItemSecretKey {
    pub(crate) key: ItemSecretKey,
}

impl Request for SetItemSecretKey {
    type Answer = ();
    fn asked(&self) -> Asked {
        Asked::new(Kind::SetItemSecretKey, None, None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::SetItemSecretKey { key: self.key }
    }
    fn answer(applied: Applied) -> Result<(), Mismatch> {
        match applied {
            Applied::ItemSecretKeySet => Ok(()),
            other => Err(Mismatch::answer(Kind::SetItemSecretKey, &other)),
        }
    }
}

/// An environment's update.
#[derive(Debug)]
pub(crate) struct UpdateEnvironment<'a> {
    pub(crate) environment: &'a str,
    pub(crate) patch: &'a EnvironmentPatch,
}

impl Request for UpdateEnvironment<'_> {
    type Answer = EnvironmentRecord;
    fn asked(&self) -> Asked {
        Asked::new(Kind::UpdateEnvironment, Some(self.environment), None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::UpdateEnvironment {
            environment: self.environment.into(),
            patch: self.patch.clone(),
        }
    }
    answers!(Kind::UpdateEnvironment, EnvironmentUpdated);
}

/// An environment's archive.
#[derive(Debug)]
pub(crate) struct ArchiveEnvironment<'a> {
    pub(crate) environment: &'a str,
}

impl Request for ArchiveEnvironment<'_> {
    type Answer = EnvironmentRecord;
    fn asked(&self) -> Asked {
        Asked::new(Kind::ArchiveEnvironment, Some(self.environment), None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::ArchiveEnvironment {
            environment: self.environment.into(),
        }
    }
    answers!(Kind::ArchiveEnvironment, EnvironmentArchived);
}

/// An environment's deletion.
#[derive(Debug)]
pub(crate) struct DeleteEnvironment<'a> {
    pub(crate) environment: &'a str,
}

impl Request for DeleteEnvironment<'_> {
    type Answer = EnvironmentId;
    fn asked(&self) -> Asked {
        Asked::new(Kind::DeleteEnvironment, Some(self.environment), None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::DeleteEnvironment {
            environment: self.environment.into(),
        }
    }
    answers!(Kind::DeleteEnvironment, EnvironmentDeleted);
}

/// A new work item.
#[derive(Debug)]
pub(crate) struct CreateWork<'a> {
    pub(crate) environment: &'a str,
    pub(crate) session: SessionId,
    pub(crate) metadata: Metadata,
}

impl Request for CreateWork<'_> {
    type Answer = worklease::WorkItem;
    fn asked(&self) -> Asked {
        Asked::new(Kind::CreateWork, Some(self.environment), None)
    }
    fn command(self, mint: impl FnOnce() -> MintInputs) -> Command {
        let (at, sequence, entropy) = mint();
        Command::CreateWork {
            environment: self.environment.into(),
            id: WorkId::mint(at, sequence, entropy),
            session: self.session,
            metadata: self.metadata,
        }
    }
    answers!(Kind::CreateWork, Created);
    fn wakes(_: &Self::Answer) -> Wake {
        Wake::WorkReady
    }
}

/// One look for claimable work.
#[derive(Debug)]
pub(crate) struct Poll<'a> {
    pub(crate) environment: &'a str,
    pub(crate) request: &'a PollRequest,
}

impl Request for Poll<'_> {
    type Answer = Polled;
    fn asked(&self) -> Asked {
        Asked::new(Kind::Poll, Some(self.environment), None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::Poll {
            environment: self.environment.into(),
            // Waiting is the server's (the handler's long-poll loop), not the log's.
            request: PollRequest {
                block_ms: None,
                ..self.request.clone()
            },
        }
    }
    answers!(Kind::Poll, Polled);
    fn wakes(answer: &Polled) -> Wake {
        match answer {
            Polled::Delivered(_) => Wake::NextWakeup,
            _ => Wake::Nothing,
        }
    }
}

/// An item's ack, stop or metadata update: answered with [`Updated`].
fn updated_wakes(updated: &Updated) -> Wake {
    if updated.changed {
        Wake::NextWakeup
    } else {
        Wake::Nothing
    }
}

/// An ack.
#[derive(Debug)]
pub(crate) struct Ack<'a> {
    pub(crate) environment: &'a str,
    pub(crate) work: &'a str,
    pub(crate) worker: Option<&'a WorkerId>,
}

impl Request for Ack<'_> {
    type Answer = Updated;
    fn asked(&self) -> Asked {
        Asked::new(Kind::Ack, Some(self.environment), Some(self.work))
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::Ack {
            environment: self.environment.into(),
            work: self.work.into(),
            worker: self.worker.cloned(),
        }
    }
    answers!(Kind::Ack, Acked);
    fn wakes(answer: &Updated) -> Wake {
        updated_wakes(answer)
    }
}

/// A heartbeat: the hot path.
#[derive(Debug)]
pub(crate) struct Beat<'a> {
    pub(crate) environment: &'a str,
    pub(crate) work: &'a str,
    pub(crate) request: HeartbeatRequest,
}

impl Request for Beat<'_> {
    type Answer = Heartbeat;
    fn asked(&self) -> Asked {
        Asked::new(Kind::Heartbeat, Some(self.environment), Some(self.work))
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::Heartbeat {
            environment: self.environment.into(),
            work: self.work.into(),
            request: self.request,
        }
    }
    answers!(Kind::Heartbeat, Heartbeat);
    fn wakes(answer: &Heartbeat) -> Wake {
        if answer.lease_extended() {
            Wake::Deadline(answer.deadline)
        } else {
            Wake::Nothing
        }
    }
    /// What `table.apply` does with the heartbeat command (its arm is this call), without
    /// copying the ids into the command's two boxed strings: heartbeats are the hot path, and
    /// those copies cost ~450 instructions a request (callgrind,
    /// scripts/request-instructions.sh). And no `Applied` to take apart.
    fn apply_to(
        self,
        table: &mut LeaseTable,
        now: Timestamp,
        _: impl FnOnce() -> MintInputs,
    ) -> Result<Result<Heartbeat, Error>, Mismatch> {
        Ok(table.heartbeat(self.environment, self.work, self.request, now))
    }
}

/// A stop.
#[derive(Debug)]
pub(crate) struct Stop<'a> {
    pub(crate) environment: &'a str,
    pub(crate) work: &'a str,
    pub(crate) mode: StopMode,
}

impl Request for Stop<'_> {
    type Answer = Updated;
    fn asked(&self) -> Asked {
        Asked::new(Kind::Stop, Some(self.environment), Some(self.work))
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::Stop {
            environment: self.environment.into(),
            work: self.work.into(),
            mode: self.mode,
        }
    }
    answers!(Kind::Stop, Stopped);
    fn wakes(answer: &Updated) -> Wake {
        updated_wakes(answer)
    }
}

/// A metadata merge patch.
#[derive(Debug)]
pub(crate) struct UpdateMetadata<'a> {
    pub(crate) environment: &'a str,
    pub(crate) work: &'a str,
    pub(crate) patch: &'a MetadataPatch,
}

impl Request for UpdateMetadata<'_> {
    type Answer = Updated;
    fn asked(&self) -> Asked {
        Asked::new(
            Kind::UpdateMetadata,
            Some(self.environment),
            Some(self.work),
        )
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::UpdateMetadata {
            environment: self.environment.into(),
            work: self.work.into(),
            patch: self.patch.clone(),
        }
    }
    answers!(Kind::UpdateMetadata, MetadataUpdated);
    fn wakes(answer: &Updated) -> Wake {
        updated_wakes(answer)
    }
}

/// The lapses due (the sweeper's, logged only when one is due).
#[derive(Debug)]
pub(crate) struct Sweep;

impl Request for Sweep {
    type Answer = Vec<Transition>;
    fn asked(&self) -> Asked {
        Asked::new(Kind::Sweep, None, None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::Sweep
    }
    answers!(Kind::Sweep, Swept);
}

/// Forgets items stopped before an instant (the sweeper's).
#[derive(Debug)]
pub(crate) struct PurgeStopped {
    pub(crate) before: Timestamp,
}

impl Request for PurgeStopped {
    type Answer = usize;
    fn asked(&self) -> Asked {
        Asked::new(Kind::PurgeStopped, None, None)
    }
    fn command(self, _: impl FnOnce() -> MintInputs) -> Command {
        Command::PurgeStopped {
            before: self.before,
        }
    }
    answers!(Kind::PurgeStopped, Purged);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mint() -> MintInputs {
        (Timestamp::from_unix_micros(1_800_000_000_000_000), 1, 2)
    }

    /// A request asks what its command asks, so a record made from the log compares equal
    /// to a replay of the same request.
    fn agrees(request: impl Request) {
        let asked = request.asked();
        assert_eq!(Asked::of(&request.command(mint)), asked);
    }

    #[test]
    fn every_request_asks_what_its_command_asks() {
        let patch = MetadataPatch::default();
        let poll = PollRequest::default();
        let env_patch = EnvironmentPatch::default();
        agrees(CreateEnvironment {
            new: NewEnvironment::self_hosted("e"),
        });
        agrees(UpdateEnvironment {
            environment: "env_a",
            patch: &env_patch,
        });
        agrees(ArchiveEnvironment {
            environment: "env_a",
        });
        agrees(DeleteEnvironment {
            environment: "env_a",
        });
        agrees(CreateWork {
            environment: "env_a",
            session: SessionId::from_u128(7),
            metadata: Metadata::default(),
        });
        agrees(Poll {
            environment: "env_a",
            request: &poll,
        });
        agrees(Ack {
            environment: "env_a",
            work: "w",
            worker: None,
        });
        agrees(Beat {
            environment: "env_a",
            work: "w",
            request: HeartbeatRequest::default(),
        });
        agrees(Stop {
            environment: "env_a",
            work: "w",
            mode: StopMode::Graceful,
        });
        agrees(UpdateMetadata {
            environment: "env_a",
            work: "w",
            patch: &patch,
        });
        agrees(Sweep);
        agrees(PurgeStopped {
            before: Timestamp::from_unix_micros(0),
        });
    }

    #[test]
    fn asked_tells_kinds_and_targets_apart() {
        let ack = Asked::new(Kind::Ack, Some("e"), Some("w"));
        assert_ne!(ack, Asked::new(Kind::Stop, Some("e"), Some("w")));
        assert_ne!(ack, Asked::new(Kind::Ack, Some("e"), Some("x")));
        assert_ne!(
            Asked::new(Kind::Ack, Some("ab"), Some("c")),
            Asked::new(Kind::Ack, Some("a"), Some("bc"))
        );
        for kind in Kind::ALL {
            assert_eq!(Kind::from_byte(kind as u8), Some(kind));
        }
        assert_eq!(Kind::from_byte(0), None);
    }

    #[test]
    fn another_commands_outcome_is_a_mismatch_not_a_panic() {
        assert_eq!(
            Stop::answer(Applied::Purged(3)),
            Err(Mismatch::Answer {
                asked: Kind::Stop,
                answered: "purged"
            })
        );
        assert!(Sweep::answer(Applied::Purged(1)).is_err());
        assert_eq!(PurgeStopped::answer(Applied::Purged(1)), Ok(1));
    }
}
