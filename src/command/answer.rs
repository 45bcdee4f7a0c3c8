//! [`Applied::encode_answer`] and [`Applied::decode_answer`]: an applied command's answer as
//! bytes, so a server that answers a retried request from a record of earlier answers can keep
//! that record in its own snapshots.
//!
//! The wire types below are the format, version 1 (framing: magic `WLAN`, version, CRC-32, as
//! [`crate::snapshot`] describes). A field or variant is never reordered or removed; a new
//! field means a new version, a new answer or refusal is a variant appended at the end (every
//! earlier encoding unchanged; an older reader refuses it as malformed). An environment
//! record is written without its key digests: no answer renders them, and a record of
//! answers is one place fewer that holds them. Ids are written as their text and must parse back; instants are
//! absolute microseconds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Applied;
use crate::environment_keys::{EnvironmentKey, EnvironmentKeys, KeyDigest};
use crate::environment_record::EnvironmentRecord;
use crate::error::{Error, Param};
use crate::excerpt::Excerpt;
use crate::heartbeat::{Heartbeat, LeaseSnapshot, Precondition};
use crate::ids::{EnvironmentId, MalformedId, SessionId, WorkId, WorkerId};
use crate::item::{Transition, WorkItem};
use crate::metadata::Metadata;
use crate::outcome::{Polled, Updated};
use crate::snapshot::{
    frame, instant, read_payload, unframe, DecodeError, InvalidValue, WireKind, WireProfile,
    WireState,
};
use crate::state::Operation;
use crate::time::Timestamp;
use crate::ttl::Ttl;

/// The magic of an encoded answer.
const ANSWER_MAGIC: [u8; 4] = *b"WLAN";
/// The answer format this build writes, and the newest it reads.
const ANSWER_VERSION: u16 = 1;

/// What an [`Error::InvalidParameter`] can say a parameter must be: the field is
/// `&'static str`, so a decoded answer takes its text from here, and an answer naming any
/// other expectation is refused ([`DecodeError::Invalid`]) rather than leaked into memory.
/// Every expectation the crate writes is listed.
const EXPECTATIONS: &[&str] = &[
    "1 to 256 characters",
    "1–128 visible ASCII characters",
    "NO_HEARTBEAT or an RFC 3339 timestamp",
    "\"organization\" or \"account\"",
    "a config of at most 16 KiB",
    "a non-negative integer",
    "a positive integer",
    "a work id",
    "an environment id",
    "an integer from 1 to 999",
    "at most 16 keys",
    "at most 2048 characters",
    "at most 64 keys per environment",
    "data.id `sess_…`",
    "data.type \"session\"",
    "keys of 1 to 64 bytes",
    "the environment's config type, which cannot change",
    "true or false",
    "values of at most 512 bytes",
    "{\"type\": \"session\", \"id\": \"sess_…\"}",
];

#[derive(Debug, Serialize, Deserialize)]
enum WireAnswer<'a> {
    #[serde(borrow)]
    Applied(WireApplied<'a>),
    #[serde(borrow)]
    Refused(WireError<'a>),
}

#[derive(Debug, Serialize, Deserialize)]
enum WireApplied<'a> {
    EnvironmentRegistered,
    #[serde(borrow)]
    EnvironmentCreated(WireRecord<'a>),
    #[serde(borrow)]
    EnvironmentUpdated(WireRecord<'a>),
    #[serde(borrow)]
    EnvironmentArchived(WireRecord<'a>),
    #[serde(borrow)]
    EnvironmentDeleted(Cow<'a, str>),
    #[serde(borrow)]
    Created(WireWorkItem<'a>),
    #[serde(borrow)]
    Delivered(WireWorkItem<'a>),
    Empty {
        next_claimable_at: Option<i64>,
    },
    Acked {
        #[serde(borrow)]
        item: WireWorkItem<'a>,
        changed: bool,
    },
    Heartbeat(WireHeartbeat),
    Stopped {
        #[serde(borrow)]
        item: WireWorkItem<'a>,
        changed: bool,
    },
    MetadataUpdated {
        #[serde(borrow)]
        item: WireWorkItem<'a>,
        changed: bool,
    },
    #[serde(borrow)]
    Swept(Vec<WireTransition<'a>>),
    Purged(u64),
    #[serde(borrow)]
    EnvironmentKeyCreated(WireKey<'a>),
    #[serde(borrow)]
    EnvironmentKeyRevoked(Cow<'a, str>),
    ItemSecretKeySet,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireKey<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    name: Option<&'a str>,
    digest: [u8; 32],
    created_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireRecord<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    kind: WireKind,
    #[serde(borrow)]
    profile: WireProfile<'a>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireWorkItem<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    environment: Cow<'a, str>,
    #[serde(borrow)]
    session: Cow<'a, str>,
    state: WireState,
    created_at: i64,
    acknowledged_at: Option<i64>,
    started_at: Option<i64>,
    latest_heartbeat_at: Option<i64>,
    stop_requested_at: Option<i64>,
    stopped_at: Option<i64>,
    /// Ascending by key.
    #[serde(borrow)]
    metadata: Vec<(&'a str, &'a str)>,
    lapses: u32,
    lease_epoch: u32,
    lease_deadline: Option<i64>,
    lease_ttl: Option<u16>,
    delivered_at: Option<i64>,
    worker: Option<&'a str>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireHeartbeat {
    /// `None` for a stopping item stopped before its first heartbeat.
    last_heartbeat: Option<i64>,
    state: WireState,
    ttl: u16,
    ttl_clamped: bool,
    deadline: i64,
    lease_epoch: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireTransition<'a> {
    #[serde(borrow)]
    environment: Cow<'a, str>,
    #[serde(borrow)]
    work: Cow<'a, str>,
    from: WireState,
    to: WireState,
    at: i64,
    lapses: u32,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireError<'a> {
    InvalidParameter {
        param: WireParam,
        expected: &'a str,
        #[serde(borrow)]
        found: WireExcerpt<'a>,
    },
    ConflictingParameters {
        first: WireParam,
        second: WireParam,
    },
    #[serde(borrow)]
    NotSelfHosted(Cow<'a, str>),
    #[serde(borrow)]
    EnvironmentNotFound(WireExcerpt<'a>),
    #[serde(borrow)]
    WorkNotFound(WireExcerpt<'a>),
    #[serde(borrow)]
    AlreadyExists(WireExcerpt<'a>),
    InvalidState {
        operation: WireOperation,
        state: WireState,
    },
    WorkerMismatch {
        holder: &'a str,
        worker: &'a str,
    },
    #[serde(borrow)]
    EnvironmentArchived(Cow<'a, str>),
    EnvironmentInUse {
        #[serde(borrow)]
        environment: Cow<'a, str>,
        leased: u64,
    },
    PreconditionFailed {
        expected: WirePrecondition,
        current: WireLeaseSnapshot,
    },
    #[serde(borrow)]
    EnvironmentKeyNotFound(WireExcerpt<'a>),
}

#[derive(Debug, Serialize, Deserialize)]
struct WireExcerpt<'a> {
    text: &'a str,
    truncated: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WireParam {
    DesiredTtlSeconds,
    ExpectedLastHeartbeat,
    ReclaimOlderThanMs,
    BlockMs,
    Limit,
    Page,
    AfterId,
    BeforeId,
    WorkerId,
    Metadata,
    Data,
    Id,
    Name,
    Description,
    Config,
    Scope,
    IncludeArchived,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WireOperation {
    Poll,
    Ack,
    Heartbeat,
    Stop,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WirePrecondition {
    Unconditional,
    NoHeartbeat,
    LastHeartbeat(i64),
    Unmatchable,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct WireLeaseSnapshot {
    last_heartbeat: Option<i64>,
    state: WireState,
    ttl: u16,
    deadline: i64,
    lease_epoch: u32,
}

impl Applied {
    /// An applied command's answer (what [`crate::LeaseTable::apply`] returned) as bytes that
    /// [`Self::decode_answer`] reads back equal: for a server that keeps the answers of
    /// recently applied requests (to answer a retry as the first attempt was) in its own
    /// snapshots.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::new(Config::default());
    /// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
    /// let register = Stamped::new(t0, Command::RegisterEnvironment {
    ///     id: "env_01".parse()?,
    ///     kind: EnvironmentKind::SelfHosted,
    /// });
    /// for answer in [table.apply(&register), table.apply(&register)] {
    ///     assert_eq!(Applied::decode_answer(&Applied::encode_answer(&answer))?, answer);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode_answer(answer: &Result<Self, Error>) -> Vec<u8> {
        let wire = match answer {
            Ok(applied) => WireAnswer::Applied(wire_applied(applied)),
            Err(error) => WireAnswer::Refused(wire_error(error)),
        };
        frame(ANSWER_MAGIC, ANSWER_VERSION, &wire, 256)
    }

    /// The answer [`Self::encode_answer`] wrote.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for any other bytes (truncated, changed, another magic, a newer
    /// version, an id that does not parse); never panics.
    pub fn decode_answer(bytes: &[u8]) -> Result<Result<Self, Error>, DecodeError> {
        let payload = unframe(bytes, ANSWER_MAGIC, ANSWER_VERSION)?;
        let wire: WireAnswer<'_> = read_payload(payload)?;
        match wire {
            WireAnswer::Applied(applied) => read_applied(applied).map(Ok),
            WireAnswer::Refused(error) => read_error(error).map(Err),
        }
        .map_err(DecodeError::Invalid)
    }
}

/// An id's text (ids keep it inline or packed, so it is written out).
fn text(id: &impl std::fmt::Display) -> Cow<'static, str> {
    Cow::Owned(id.to_string())
}

fn wire_applied(applied: &Applied) -> WireApplied<'_> {
    match applied {
        Applied::EnvironmentRegistered => WireApplied::EnvironmentRegistered,
        Applied::EnvironmentCreated(record) => WireApplied::EnvironmentCreated(wire_record(record)),
        Applied::EnvironmentUpdated(record) => WireApplied::EnvironmentUpdated(wire_record(record)),
        Applied::EnvironmentArchived(record) => {
            WireApplied::EnvironmentArchived(wire_record(record))
        }
        Applied::EnvironmentDeleted(id) => WireApplied::EnvironmentDeleted(text(id)),
        Applied::Created(item) => WireApplied::Created(wire_item(item)),
        Applied::Polled(Polled::Delivered(item)) => WireApplied::Delivered(wire_item(item)),
        Applied::Polled(Polled::Empty { next_claimable_at }) => WireApplied::Empty {
            next_claimable_at: next_claimable_at.map(Timestamp::unix_micros),
        },
        Applied::Acked(updated) => WireApplied::Acked {
            item: wire_item(&updated.item),
            changed: updated.changed,
        },
        Applied::Heartbeat(beat) => WireApplied::Heartbeat(WireHeartbeat {
            last_heartbeat: beat.last_heartbeat.map(Timestamp::unix_micros),
            state: beat.state.into(),
            ttl: beat.ttl.seconds() as u16,
            ttl_clamped: beat.ttl_clamped,
            deadline: beat.deadline.unix_micros(),
            lease_epoch: beat.lease_epoch,
        }),
        Applied::Stopped(updated) => WireApplied::Stopped {
            item: wire_item(&updated.item),
            changed: updated.changed,
        },
        Applied::MetadataUpdated(updated) => WireApplied::MetadataUpdated {
            item: wire_item(&updated.item),
            changed: updated.changed,
        },
        Applied::Swept(transitions) => WireApplied::Swept(
            transitions
                .iter()
                .map(|transition| WireTransition {
                    environment: text(&transition.environment_id),
                    work: text(&transition.work_id),
                    from: transition.from.into(),
                    to: transition.to.into(),
                    at: transition.at.unix_micros(),
                    lapses: transition.lapses,
                })
                .collect(),
        ),
        Applied::Purged(count) => WireApplied::Purged(*count as u64),
        Applied::EnvironmentKeyCreated(key) => WireApplied::EnvironmentKeyCreated(WireKey {
            id: text(&key.id),
            name: key.name.as_deref(),
            digest: *key.digest.as_bytes(),
            created_at: key.created_at.unix_micros(),
        }),
        Applied::EnvironmentKeyRevoked(id) => WireApplied::EnvironmentKeyRevoked(text(id)),
        Applied::ItemSecretKeySet => WireApplied::ItemSecretKeySet,
    }
}

fn wire_record(record: &EnvironmentRecord) -> WireRecord<'_> {
    WireRecord {
        id: text(&record.id),
        kind: record.kind.into(),
        profile: WireProfile {
            name: &record.name,
            config: &record.config,
            description: record.description.as_deref(),
            metadata: record.metadata.iter().collect(),
            scope: record.scope.map(Into::into),
            created_at: record.created_at.unix_micros(),
            updated_at: record.updated_at.unix_micros(),
            archived_at: record.archived_at.map(Timestamp::unix_micros),
        },
    }
}

fn wire_item(item: &WorkItem) -> WireWorkItem<'_> {
    let micros = |at: Option<Timestamp>| at.map(Timestamp::unix_micros);
    WireWorkItem {
        id: text(&item.id),
        environment: text(&item.environment_id),
        session: text(&item.session_id),
        state: item.state.into(),
        created_at: item.created_at.unix_micros(),
        acknowledged_at: micros(item.acknowledged_at),
        started_at: micros(item.started_at),
        latest_heartbeat_at: micros(item.latest_heartbeat_at),
        stop_requested_at: micros(item.stop_requested_at),
        stopped_at: micros(item.stopped_at),
        metadata: item.metadata.iter().collect(),
        lapses: item.lapses,
        lease_epoch: item.lease_epoch,
        lease_deadline: micros(item.lease_deadline),
        lease_ttl: item.lease_ttl.map(|ttl| ttl.seconds() as u16),
        delivered_at: micros(item.delivered_at),
        worker: item.worker.as_ref().map(WorkerId::as_str),
    }
}

fn wire_error(error: &Error) -> WireError<'_> {
    match error {
        Error::InvalidParameter {
            param,
            expected,
            found,
        } => WireError::InvalidParameter {
            param: (*param).into(),
            expected,
            found: excerpt(found),
        },
        Error::ConflictingParameters { first, second } => WireError::ConflictingParameters {
            first: (*first).into(),
            second: (*second).into(),
        },
        Error::NotSelfHosted { environment } => WireError::NotSelfHosted(text(environment)),
        Error::EnvironmentNotFound { id } => WireError::EnvironmentNotFound(excerpt(id)),
        Error::WorkNotFound { id } => WireError::WorkNotFound(excerpt(id)),
        Error::EnvironmentKeyNotFound { id } => WireError::EnvironmentKeyNotFound(excerpt(id)),
        Error::AlreadyExists { id } => WireError::AlreadyExists(excerpt(id)),
        Error::InvalidState { operation, state } => WireError::InvalidState {
            operation: (*operation).into(),
            state: (*state).into(),
        },
        Error::WorkerMismatch { holder, worker } => WireError::WorkerMismatch {
            holder: holder.as_str(),
            worker: worker.as_str(),
        },
        Error::EnvironmentArchived { environment } => {
            WireError::EnvironmentArchived(text(environment))
        }
        Error::EnvironmentInUse {
            environment,
            leased,
        } => WireError::EnvironmentInUse {
            environment: text(environment),
            leased: *leased as u64,
        },
        Error::PreconditionFailed { expected, current } => WireError::PreconditionFailed {
            expected: match *expected {
                Precondition::Unconditional => WirePrecondition::Unconditional,
                Precondition::NoHeartbeat => WirePrecondition::NoHeartbeat,
                Precondition::LastHeartbeat(at) => {
                    WirePrecondition::LastHeartbeat(at.unix_micros())
                }
                Precondition::Unmatchable => WirePrecondition::Unmatchable,
            },
            current: WireLeaseSnapshot {
                last_heartbeat: current.last_heartbeat.map(Timestamp::unix_micros),
                state: current.state.into(),
                ttl: current.ttl.seconds() as u16,
                deadline: current.deadline.unix_micros(),
                lease_epoch: current.lease_epoch,
            },
        },
    }
}

fn excerpt(excerpt: &Excerpt) -> WireExcerpt<'_> {
    WireExcerpt {
        text: excerpt.as_str(),
        truncated: excerpt.is_truncated(),
    }
}

fn read_applied(wire: WireApplied<'_>) -> Result<Applied, InvalidValue> {
    Ok(match wire {
        WireApplied::EnvironmentRegistered => Applied::EnvironmentRegistered,
        WireApplied::EnvironmentCreated(record) => {
            Applied::EnvironmentCreated(read_record(record)?)
        }
        WireApplied::EnvironmentUpdated(record) => {
            Applied::EnvironmentUpdated(read_record(record)?)
        }
        WireApplied::EnvironmentArchived(record) => {
            Applied::EnvironmentArchived(read_record(record)?)
        }
        WireApplied::EnvironmentDeleted(id) => Applied::EnvironmentDeleted(id_of(&id)?),
        WireApplied::Created(item) => Applied::Created(read_item(&item)?),
        WireApplied::Delivered(item) => {
            Applied::Polled(Polled::Delivered(Box::new(read_item(&item)?)))
        }
        WireApplied::Empty { next_claimable_at } => Applied::Polled(Polled::Empty {
            next_claimable_at: next_claimable_at.map(instant).transpose()?,
        }),
        WireApplied::Acked { item, changed } => Applied::Acked(read_updated(&item, changed)?),
        WireApplied::Heartbeat(beat) => Applied::Heartbeat(Heartbeat {
            last_heartbeat: beat.last_heartbeat.map(instant).transpose()?,
            state: beat.state.into(),
            ttl: ttl(beat.ttl)?,
            ttl_clamped: beat.ttl_clamped,
            deadline: instant(beat.deadline)?,
            lease_epoch: beat.lease_epoch,
        }),
        WireApplied::Stopped { item, changed } => Applied::Stopped(read_updated(&item, changed)?),
        WireApplied::MetadataUpdated { item, changed } => {
            Applied::MetadataUpdated(read_updated(&item, changed)?)
        }
        WireApplied::Swept(transitions) => Applied::Swept(
            transitions
                .into_iter()
                .map(|wire| {
                    Ok(Transition {
                        environment_id: id_of(&wire.environment)?,
                        work_id: id_of(&wire.work)?,
                        from: wire.from.into(),
                        to: wire.to.into(),
                        at: instant(wire.at)?,
                        lapses: wire.lapses,
                    })
                })
                .collect::<Result<_, InvalidValue>>()?,
        ),
        WireApplied::EnvironmentKeyCreated(key) => {
            if key
                .name
                .is_some_and(|name| name.is_empty() || name.chars().count() > crate::MAX_NAME_CHARS)
            {
                let name = key.name.unwrap_or_default();
                return Err(Error::invalid(Param::Name, "1 to 256 characters", name).into());
            }
            Applied::EnvironmentKeyCreated(EnvironmentKey::new(
                id_of(&key.id)?,
                key.name.map(str::to_owned),
                KeyDigest::from_bytes(key.digest),
                instant(key.created_at)?,
            ))
        }
        WireApplied::EnvironmentKeyRevoked(id) => Applied::EnvironmentKeyRevoked(id_of(&id)?),
        WireApplied::ItemSecretKeySet => Applied::ItemSecretKeySet,
        WireApplied::Purged(count) => {
            Applied::Purged(usize::try_from(count).map_err(|_| InvalidValue::Count { count })?)
        }
    })
}

fn id_of<T: std::str::FromStr<Err = MalformedId>>(text: &str) -> Result<T, InvalidValue> {
    Ok(text.parse()?)
}

fn ttl(seconds: u16) -> Result<Ttl, InvalidValue> {
    Ok(Ttl::from_seconds(u64::from(seconds))?)
}

fn metadata(pairs: &[(&str, &str)]) -> Result<Metadata, InvalidValue> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    if map.len() != pairs.len() {
        let mut keys: Vec<&str> = pairs.iter().map(|&(key, _)| key).collect();
        keys.sort_unstable();
        let repeated = keys
            .windows(2)
            .find(|pair| pair[0] == pair[1])
            .map_or("", |pair| pair[0]);
        return Err(InvalidValue::KeysOutOfOrder {
            key: Excerpt::new(repeated),
        });
    }
    Ok(Metadata::from_map(map)?)
}

fn read_record(wire: WireRecord<'_>) -> Result<EnvironmentRecord, InvalidValue> {
    let profile = wire.profile;
    Ok(EnvironmentRecord {
        id: id_of(&wire.id)?,
        name: profile.name.to_owned(),
        kind: wire.kind.into(),
        config: profile.config.to_owned(),
        description: profile.description.map(str::to_owned),
        metadata: metadata(&profile.metadata)?,
        scope: profile.scope.map(Into::into),
        created_at: instant(profile.created_at)?,
        updated_at: instant(profile.updated_at)?,
        archived_at: profile.archived_at.map(instant).transpose()?,
        keys: EnvironmentKeys::default(),
    })
}

fn read_updated(item: &WireWorkItem<'_>, changed: bool) -> Result<Updated, InvalidValue> {
    Ok(Updated {
        item: read_item(item)?,
        changed,
    })
}

fn read_item(wire: &WireWorkItem<'_>) -> Result<WorkItem, InvalidValue> {
    let at = |micros: Option<i64>| micros.map(instant).transpose();
    Ok(WorkItem {
        id: id_of::<WorkId>(&wire.id)?,
        environment_id: id_of::<EnvironmentId>(&wire.environment)?,
        session_id: id_of::<SessionId>(&wire.session)?,
        state: wire.state.into(),
        created_at: instant(wire.created_at)?,
        acknowledged_at: at(wire.acknowledged_at)?,
        started_at: at(wire.started_at)?,
        latest_heartbeat_at: at(wire.latest_heartbeat_at)?,
        stop_requested_at: at(wire.stop_requested_at)?,
        stopped_at: at(wire.stopped_at)?,
        metadata: metadata(&wire.metadata)?,
        lapses: wire.lapses,
        lease_epoch: wire.lease_epoch,
        lease_deadline: at(wire.lease_deadline)?,
        lease_ttl: wire.lease_ttl.map(ttl).transpose()?,
        delivered_at: at(wire.delivered_at)?,
        worker: wire
            .worker
            .map(|text| WorkerId::parse(text).map_err(InvalidValue::from))
            .transpose()?,
    })
}

fn read_error(wire: WireError<'_>) -> Result<Error, InvalidValue> {
    let restored = |wire: WireExcerpt<'_>| {
        Excerpt::restored(wire.text, wire.truncated).ok_or(InvalidValue::ExcerptTooLong {
            len: wire.text.len(),
        })
    };
    let worker = |text: &str| WorkerId::parse(text).map_err(InvalidValue::from);
    Ok(match wire {
        WireError::InvalidParameter {
            param,
            expected,
            found,
        } => Error::InvalidParameter {
            param: param.into(),
            expected: EXPECTATIONS
                .iter()
                .find(|known| **known == expected)
                .copied()
                .ok_or_else(|| InvalidValue::UnknownExpectation {
                    found: Excerpt::new(expected),
                })?,
            found: restored(found)?,
        },
        WireError::ConflictingParameters { first, second } => Error::ConflictingParameters {
            first: first.into(),
            second: second.into(),
        },
        WireError::NotSelfHosted(environment) => Error::NotSelfHosted {
            environment: id_of(&environment)?,
        },
        WireError::EnvironmentNotFound(id) => Error::EnvironmentNotFound { id: restored(id)? },
        WireError::WorkNotFound(id) => Error::WorkNotFound { id: restored(id)? },
        WireError::EnvironmentKeyNotFound(id) => {
            Error::EnvironmentKeyNotFound { id: restored(id)? }
        }
        WireError::AlreadyExists(id) => Error::AlreadyExists { id: restored(id)? },
        WireError::InvalidState { operation, state } => Error::InvalidState {
            operation: operation.into(),
            state: state.into(),
        },
        WireError::WorkerMismatch {
            holder,
            worker: asked,
        } => Error::WorkerMismatch {
            holder: worker(holder)?,
            worker: worker(asked)?,
        },
        WireError::EnvironmentArchived(environment) => Error::EnvironmentArchived {
            environment: id_of(&environment)?,
        },
        WireError::EnvironmentInUse {
            environment,
            leased,
        } => Error::EnvironmentInUse {
            environment: id_of(&environment)?,
            leased: usize::try_from(leased).map_err(|_| InvalidValue::Count { count: leased })?,
        },
        WireError::PreconditionFailed { expected, current } => Error::PreconditionFailed {
            expected: match expected {
                WirePrecondition::Unconditional => Precondition::Unconditional,
                WirePrecondition::NoHeartbeat => Precondition::NoHeartbeat,
                WirePrecondition::LastHeartbeat(at) => Precondition::LastHeartbeat(instant(at)?),
                WirePrecondition::Unmatchable => Precondition::Unmatchable,
            },
            current: LeaseSnapshot {
                last_heartbeat: current.last_heartbeat.map(instant).transpose()?,
                state: current.state.into(),
                ttl: ttl(current.ttl)?,
                deadline: instant(current.deadline)?,
                lease_epoch: current.lease_epoch,
            },
        },
    })
}

macro_rules! mirror {
    ($wire:ident, $public:ident, [$($variant:ident),* $(,)?]) => {
        impl From<$public> for $wire {
            fn from(value: $public) -> Self {
                match value {
                    $($public::$variant => Self::$variant,)*
                }
            }
        }

        impl From<$wire> for $public {
            fn from(value: $wire) -> Self {
                match value {
                    $($wire::$variant => Self::$variant,)*
                }
            }
        }
    };
}

mirror!(
    WireParam,
    Param,
    [
        DesiredTtlSeconds,
        ExpectedLastHeartbeat,
        ReclaimOlderThanMs,
        BlockMs,
        Limit,
        Page,
        AfterId,
        BeforeId,
        WorkerId,
        Metadata,
        Data,
        Id,
        Name,
        Description,
        Config,
        Scope,
        IncludeArchived,
    ]
);
mirror!(WireOperation, Operation, [Poll, Ack, Heartbeat, Stop]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::{LeaseSnapshot, Precondition};
    use crate::state::WorkState;

    fn round_trip(answer: &Result<Applied, Error>) {
        assert_eq!(
            Applied::decode_answer(&Applied::encode_answer(answer)).as_ref(),
            Ok(answer)
        );
    }

    /// Refusals the model test rarely reaches through `apply`, built directly.
    #[test]
    fn every_kind_of_refusal_round_trips() {
        let environment: EnvironmentId = "env_01".parse().expect("valid");
        let worker = |text| WorkerId::parse(text).expect("valid");
        let at = Timestamp::from_unix_micros(1_782_893_700_000_000);
        for expected in EXPECTATIONS {
            round_trip(&Err(Error::InvalidParameter {
                param: Param::Metadata,
                expected,
                found: Excerpt::new(&"é".repeat(50)),
            }));
        }
        for error in [
            Error::ConflictingParameters {
                first: Param::AfterId,
                second: Param::BeforeId,
            },
            Error::NotSelfHosted {
                environment: environment.clone(),
            },
            Error::EnvironmentNotFound {
                id: Excerpt::new("env_ not an id"),
            },
            Error::WorkNotFound {
                id: Excerpt::new(""),
            },
            Error::AlreadyExists {
                id: Excerpt::new("work_01"),
            },
            Error::InvalidState {
                operation: Operation::Stop,
                state: WorkState::Stopped,
            },
            Error::WorkerMismatch {
                holder: worker("a"),
                worker: worker("b"),
            },
            Error::EnvironmentArchived {
                environment: environment.clone(),
            },
            Error::EnvironmentInUse {
                environment,
                leased: 3,
            },
            Error::PreconditionFailed {
                expected: Precondition::LastHeartbeat(at),
                current: LeaseSnapshot {
                    last_heartbeat: None,
                    state: WorkState::Starting,
                    ttl: Ttl::DEFAULT,
                    deadline: at,
                    lease_epoch: 2,
                },
            },
        ] {
            round_trip(&Err(error));
        }
        round_trip(&Ok(Applied::Purged(7)));
        round_trip(&Ok(Applied::Polled(Polled::Empty {
            next_claimable_at: Some(at),
        })));
    }

    #[test]
    fn other_bytes_are_refused_by_name() {
        let bytes = Applied::encode_answer(&Ok(Applied::Purged(7)));
        let mut flipped = bytes.clone();
        flipped[7] ^= 1;
        assert_eq!(Applied::decode_answer(&flipped), Err(DecodeError::Checksum));
        assert_eq!(
            Applied::decode_answer(&bytes[..5]),
            Err(DecodeError::Truncated { len: 5 })
        );
        let unknown = frame(
            ANSWER_MAGIC,
            ANSWER_VERSION,
            &WireAnswer::Refused(WireError::InvalidParameter {
                param: WireParam::Limit,
                expected: "something no build writes",
                found: WireExcerpt {
                    text: "x",
                    truncated: false,
                },
            }),
            16,
        );
        assert!(matches!(
            Applied::decode_answer(&unknown),
            Err(DecodeError::Invalid(InvalidValue::UnknownExpectation { found }))
                if found.as_str() == "something no build writes"
        ));
    }
}
