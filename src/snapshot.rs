//! The byte formats of docs/contract.md §7.4: snapshots of a whole table and encoded commands. Both share
//! one framing, and both refuse any other bytes with a typed error.
//!
//! # Framing
//!
//! ```text
//! magic (4 bytes) | format version (u16, little-endian) | postcard payload | CRC-32 (u32, LE)
//! ```
//!
//! The CRC-32 (IEEE, [`crc32fast`]) covers every byte before it. A reader checks, in order:
//! length (header and trailer present, else [`DecodeError::Truncated`]), magic
//! ([`DecodeError::BadMagic`]), version ([`DecodeError::UnsupportedVersion`]: a newer format
//! may frame differently, so it is refused before anything else is read), checksum
//! ([`DecodeError::Checksum`]), then the payload ([`DecodeError::Malformed`] when postcard
//! cannot read it or bytes are left over, `Invalid` when it reads but describes nothing the
//! crate could have written).
//!
//! # Snapshot payload, version 2
//!
//! Postcard: integers are varints (signed ones zigzag), a sequence is its length then its
//! elements, an enum its variant index then its fields, a struct or tuple its fields in order.
//! The top level and each environment are tuples read and written field by field (so a
//! million items stream through without an intermediate vector); everything below them is
//! one of the `Wire*` types of this module, whose field and variant order *is* the format.
//!
//! ```text
//! snapshot    = (WireConfig, clock: Option<i64>, workers: [str], environments: [environment],
//!                journal: [WireTransition], item_secret_key: Option<[u8; 32]>)
//! environment = (id: str, kind: WireKind, profile: WireProfile, pollers: [(worker: str, last_poll: i64)],
//!                items: [WireItem], keys: [WireKey])
//! ```
//!
//! Version 1, which this build still reads, is the same without `item_secret_key` and `keys`
//! (a table restored from it has no keys and no item-secret key). Keys are written ascending
//! by id, each as the digest the table holds (never a key).
//!
//! Canonical order, so the bytes depend only on the operations applied: `workers` (every
//! worker id an item names, once) ascending by text; environments ascending by id text; each
//! environment's pollers ascending by worker id and its items ascending by work id; the
//! journal (lapses since the last sweep) ascending by `(at, work_id)`. Items name workers by
//! their index in `workers`, the journal names environments by their index in `environments`.
//! Instants are absolute microseconds since the Unix epoch, most written as the difference
//! from another of the same item (see [`WireItem`]); nothing is relative to "now", so a
//! restore at any later time changes no deadline. Derived indexes (the id index, the queues,
//! the deadline wheel, worker reference counts) are rebuilt, never stored.

use serde::{Deserialize, Serialize};

use crate::environment_record::EnvironmentKind;
use crate::environment_record::EnvironmentScope;
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::ids::MalformedId;
use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::TtlOutOfRange;

/// The magic of a snapshot.
pub(crate) const SNAPSHOT_MAGIC: [u8; 4] = *b"WLSN";
/// The magic of an encoded [`crate::Stamped`].
pub(crate) const COMMAND_MAGIC: [u8; 4] = *b"WLCM";
/// The snapshot format this build writes, and the newest it reads.
pub(crate) const SNAPSHOT_VERSION: u16 = 2;
/// The snapshot format before environment keys: read, never written.
pub(crate) const SNAPSHOT_VERSION_WITHOUT_KEYS: u16 = 1;
/// The command format this build writes, and the newest it reads.
pub(crate) const COMMAND_VERSION: u16 = 1;

const HEADER: usize = 6;
const TRAILER: usize = 4;

/// Why bytes are not a well-formed snapshot or encoded command.
///
/// # Examples
///
/// ```
/// use worklease::{DecodeError, Stamped};
/// assert!(matches!(Stamped::decode(b"WL"), Err(DecodeError::Truncated { .. })));
/// assert!(matches!(Stamped::decode(b"not a command"), Err(DecodeError::BadMagic)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Too short to hold a header and a checksum.
    #[error("truncated: {len} bytes cannot hold a header and a checksum")]
    Truncated {
        /// The length received.
        len: usize,
    },
    /// The bytes do not start with the expected magic.
    #[error("bad magic: not a worklease encoding of this kind")]
    BadMagic,
    /// A format version this build cannot read (written by a newer one, or never written).
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version the bytes carry.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The checksum does not match: the bytes were truncated or changed.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload cannot be read as the format's values (it passed the checksum, so it was
    /// written that way).
    #[error("malformed payload: {0}")]
    Malformed(#[from] MalformedPayload),
    /// The payload reads but a value in it is not valid (an id that cannot exist, an instant
    /// out of range, metadata over its limits, ...).
    #[error("invalid content: {0}")]
    Invalid(#[from] InvalidValue),
}

/// Why a payload that passed its checksum cannot be read as the format's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedPayload {
    /// The payload ends inside a value.
    #[error("the payload ends inside a value")]
    EndsEarly,
    /// Bytes follow the last value.
    #[error("{count} bytes after the payload")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A value has another shape than the format's at its place (a bad varint, tag, text,
    /// or a missing field).
    #[error("a value of another shape than the format's")]
    WrongShape,
}

impl From<postcard::Error> for MalformedPayload {
    fn from(error: postcard::Error) -> Self {
        match error {
            postcard::Error::DeserializeUnexpectedEnd => Self::EndsEarly,
            _ => Self::WrongShape,
        }
    }
}

/// What is wrong with a value inside a payload that reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// An instant outside [`Timestamp::MIN`]..=[`Timestamp::MAX`].
    #[error("instant {micros} out of range")]
    InstantOutOfRange {
        /// The instant, in microseconds since the Unix epoch.
        micros: i64,
    },
    /// An instant written relative to another overflows.
    #[error("instant {base} + {delta} overflows")]
    InstantOverflow {
        /// The base instant, in microseconds since the Unix epoch.
        base: i64,
        /// The microseconds added.
        delta: i64,
    },
    /// An id that does not parse.
    #[error(transparent)]
    Id(#[from] MalformedId),
    /// A TTL out of range.
    #[error(transparent)]
    Ttl(#[from] TtlOutOfRange),
    /// A desired TTL of zero seconds (a request that names no TTL writes none).
    #[error("desired_ttl_seconds of 0")]
    ZeroTtl,
    /// Map keys (metadata, a patch) not strictly ascending: a map writes each once, in order.
    #[error("key {key} repeated or out of order")]
    KeysOutOfOrder {
        /// The first key not greater than the one before it (its start).
        key: Excerpt,
    },
    /// A value the table's own checks refuse (metadata or an environment over its limits).
    #[error(transparent)]
    Refused(Box<Error>),
    /// An answer's refusal names an expectation this build does not know.
    #[error("unknown expectation {found}")]
    UnknownExpectation {
        /// The expectation (its start).
        found: Excerpt,
    },
    /// An error's quoted value longer than an excerpt keeps.
    #[error("an excerpt of {len} bytes")]
    ExcerptTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A count too large for this platform.
    #[error("count {count} too large")]
    Count {
        /// The count.
        count: u64,
    },
}

impl From<Error> for InvalidValue {
    fn from(error: Error) -> Self {
        Self::Refused(Box::new(error))
    }
}

/// The snapshot reader reports semantic errors as text (see [`SnapshotError::Invalid`]).
impl From<InvalidValue> for String {
    fn from(invalid: InvalidValue) -> Self {
        invalid.to_string()
    }
}

/// Why bytes are not a snapshot [`crate::LeaseTable::restore`] can restore.
///
/// # Examples
///
/// ```
/// use worklease::{DecodeError, LeaseTable, SnapshotError};
/// let refused = LeaseTable::restore(b"WLSN").unwrap_err();
/// assert_eq!(refused, SnapshotError::Decode(DecodeError::Truncated { len: 4 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes are not a well-formed snapshot encoding.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The snapshot reads but describes a table no sequence of operations leads to
    /// (duplicate or unordered ids, a lease without a deadline after the clock, a worker index
    /// out of range, ...), or one that fails [`crate::LeaseTable::validate`].
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

/// A postcard output that appends to a vector already holding the header.
pub(crate) struct Framed(Vec<u8>);

impl postcard::ser_flavors::Flavor for Framed {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// `value` framed: magic, version, postcard payload, CRC-32. `capacity` is a guess of the
/// payload's length.
pub(crate) fn frame<T: Serialize + ?Sized>(
    magic: [u8; 4],
    version: u16,
    value: &T,
    capacity: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + capacity + TRAILER);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    let mut out = postcard::serialize_with_flavor(value, Framed(out))
        .expect("invariant: the wire types serialize into a vector without error");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The payload of framed bytes, after the length, magic, version and checksum checks.
pub(crate) fn unframe(bytes: &[u8], magic: [u8; 4], supported: u16) -> Result<&[u8], DecodeError> {
    if bytes.len() < HEADER + TRAILER {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    if body[..4] != magic {
        return Err(DecodeError::BadMagic);
    }
    let found = u16::from_le_bytes([body[4], body[5]]);
    if found != supported {
        return Err(DecodeError::UnsupportedVersion { found, supported });
    }
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Checksum);
    }
    Ok(&body[HEADER..])
}

/// Reads `T` from a whole payload: leftover bytes are malformed too.
pub(crate) fn read_payload<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(MalformedPayload::TrailingBytes { count: rest.len() }.into()),
        Err(error) => Err(MalformedPayload::from(error).into()),
    }
}

/// An instant written as microseconds, refused when outside [`Timestamp::MIN`]..=
/// [`Timestamp::MAX`] (a table never holds one, and clamping would change the bytes).
pub(crate) fn instant(micros: i64) -> Result<Timestamp, InvalidValue> {
    let at = Timestamp::from_unix_micros(micros);
    if at.unix_micros() == micros {
        Ok(at)
    } else {
        Err(InvalidValue::InstantOutOfRange { micros })
    }
}

/// `base + delta`, refused when it overflows or leaves the timestamp range.
pub(crate) fn after(base: Timestamp, delta: i64) -> Result<Timestamp, InvalidValue> {
    let base = base.unix_micros();
    base.checked_add(delta)
        .ok_or(InvalidValue::InstantOverflow { base, delta })
        .and_then(instant)
}

/// `at - base` in microseconds: what [`after`] adds back.
pub(crate) fn delta(base: Timestamp, at: Timestamp) -> i64 {
    // Both within ±2^58, so the difference fits.
    at.unix_micros() - base.unix_micros()
}

/// The table's settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireConfig {
    pub(crate) default_ttl: u16,
    pub(crate) ack_ttl: u16,
    /// `None`: no limit; never `Some(0)`.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) reclaim_older_than_ms: u64,
}

/// An environment's kind.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum WireKind {
    SelfHosted,
    Cloud,
}

impl From<EnvironmentKind> for WireKind {
    fn from(kind: EnvironmentKind) -> Self {
        match kind {
            EnvironmentKind::SelfHosted => Self::SelfHosted,
            EnvironmentKind::Cloud => Self::Cloud,
        }
    }
}

impl From<WireKind> for EnvironmentKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::SelfHosted => Self::SelfHosted,
            WireKind::Cloud => Self::Cloud,
        }
    }
}

/// An environment's scope (docs/contract.md §9).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum WireScope {
    Organization,
    Account,
}

impl From<EnvironmentScope> for WireScope {
    fn from(scope: EnvironmentScope) -> Self {
        match scope {
            EnvironmentScope::Organization => Self::Organization,
            EnvironmentScope::Account => Self::Account,
        }
    }
}

impl From<WireScope> for EnvironmentScope {
    fn from(scope: WireScope) -> Self {
        match scope {
            WireScope::Organization => Self::Organization,
            WireScope::Account => Self::Account,
        }
    }
}

/// What docs/contract.md §9 shows of an environment beyond its id and kind. Instants absolute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WireProfile<'a> {
    pub(crate) name: &'a str,
    pub(crate) config: &'a str,
    pub(crate) description: Option<&'a str>,
    /// Ascending by key.
    #[serde(borrow)]
    pub(crate) metadata: Vec<(&'a str, &'a str)>,
    pub(crate) scope: Option<WireScope>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) archived_at: Option<i64>,
}

/// An environment key, as a snapshot holds it (version 2 on).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireKey<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: Option<&'a str>,
    pub(crate) digest: [u8; 32],
    pub(crate) created_at: i64,
}

/// The body of a work or session id (the text after its prefix): the minted shape (32
/// lowercase hex digits) as its 16-byte big-endian value, any other as text. A body of the
/// minted shape is never written as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireId<'a> {
    Minted([u8; 16]),
    Text(&'a str),
}

/// A work item. Instants are differences in microseconds (zigzag varints), each from a base
/// that is usually close, so a leased item with minted ids takes about 60 bytes:
/// `created` from the previous item's `created_at` in the environment (the first item's from
/// the Unix epoch); `acknowledged`, `stop_requested` and the phase's `delivered` and stopped
/// `at` from `created_at`; `started` from `acknowledged_at` (else `created_at`); `last_token`
/// from `started_at` (else `acknowledged_at`, else `created_at`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WireItem<'a> {
    #[serde(borrow)]
    pub(crate) id: WireId<'a>,
    #[serde(borrow)]
    pub(crate) session: WireId<'a>,
    pub(crate) created: i64,
    pub(crate) acknowledged: Option<i64>,
    pub(crate) started: Option<i64>,
    pub(crate) last_token: Option<i64>,
    pub(crate) lapses: u32,
    pub(crate) phase: WirePhase,
    /// Ascending by key; empty when the item has none.
    #[serde(borrow)]
    pub(crate) metadata: Vec<(&'a str, &'a str)>,
    pub(crate) stop_requested: Option<i64>,
}

/// A work item's state with the data only that state has. Workers are indexes into the
/// snapshot's `workers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WirePhase {
    Queued {
        delivered: Option<i64>,
        worker: Option<u32>,
    },
    Starting(WireLease),
    Active(WireLease),
    Stopping {
        lease: WireLease,
        beaten: bool,
    },
    Stopped {
        at: i64,
        beaten: bool,
        from_lease: bool,
    },
}

/// A lease. `deadline` is the difference from the deadline its last renewal sets: the last
/// token plus the TTL when the lease had a heartbeat, else the ack time plus the TTL. So it
/// is 0 (one byte), yet any deadline can be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireLease {
    pub(crate) ttl: u16,
    pub(crate) holder: Option<u32>,
    pub(crate) deadline: i64,
}

/// A work state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireState {
    Queued,
    Starting,
    Active,
    Stopping,
    Stopped,
}

impl From<WorkState> for WireState {
    fn from(state: WorkState) -> Self {
        match state {
            WorkState::Queued => Self::Queued,
            WorkState::Starting => Self::Starting,
            WorkState::Active => Self::Active,
            WorkState::Stopping => Self::Stopping,
            WorkState::Stopped => Self::Stopped,
        }
    }
}

impl From<WireState> for WorkState {
    fn from(state: WireState) -> Self {
        match state {
            WireState::Queued => Self::Queued,
            WireState::Starting => Self::Starting,
            WireState::Active => Self::Active,
            WireState::Stopping => Self::Stopping,
            WireState::Stopped => Self::Stopped,
        }
    }
}

/// A lapse the next sweep returns. `at` is the difference from the previous entry's (the
/// first's from the Unix epoch): the journal is sorted, so it is never negative.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireTransition<'a> {
    /// Index into the snapshot's environments.
    pub(crate) environment: u32,
    #[serde(borrow)]
    pub(crate) work: WireId<'a>,
    pub(crate) from: WireState,
    pub(crate) to: WireState,
    pub(crate) at: i64,
    pub(crate) lapses: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_checks_length_magic_version_and_checksum_in_that_order() {
        let framed = frame(SNAPSHOT_MAGIC, 1, &(7u32, "x"), 8);
        assert_eq!(unframe(&framed, SNAPSHOT_MAGIC, 1).map(<[u8]>::len), Ok(3));
        assert_eq!(
            unframe(&framed[..9], SNAPSHOT_MAGIC, 1),
            Err(DecodeError::Truncated { len: 9 })
        );
        assert_eq!(
            unframe(&framed, COMMAND_MAGIC, 1),
            Err(DecodeError::BadMagic)
        );
        assert_eq!(
            unframe(&framed, SNAPSHOT_MAGIC, 2),
            Err(DecodeError::UnsupportedVersion {
                found: 1,
                supported: 2
            })
        );
        let mut flipped = framed;
        flipped[7] ^= 1;
        assert_eq!(
            unframe(&flipped, SNAPSHOT_MAGIC, 1),
            Err(DecodeError::Checksum)
        );
    }

    #[test]
    fn instants_out_of_range_are_refused_not_clamped() {
        assert!(instant(Timestamp::MAX.unix_micros()).is_ok());
        assert!(instant(Timestamp::MAX.unix_micros() + 1).is_err());
        assert!(instant(i64::MIN).is_err());
        assert!(after(Timestamp::MAX, i64::MAX).is_err());
    }
}
