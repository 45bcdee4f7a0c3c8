//! How Raft's own values are written to disk (and, later, to peers): postcard over small
//! mirror types, so the stored format is ours and does not move with openraft's serde output.
//! Every record ends with a CRC-32 of what precedes it, so a flipped or truncated value is
//! refused instead of read. A command inside an entry is `Stamped::encode()`'s bytes, which
//! carry their own magic, version and checksum.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use worklease::Stamped;

use super::{NodeId, Origin, Proposal, Record, TypeConfig};
use crate::request::{Asked, Kind};
use std::sync::Arc;

/// Why stored bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError(pub(crate) String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct WireLogId {
    term: u64,
    node: u64,
    index: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireVote {
    term: u64,
    node: u64,
    committed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireMembership {
    configs: Vec<Vec<u64>>,
    nodes: Vec<(u64, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireStoredMembership {
    log_id: Option<WireLogId>,
    membership: WireMembership,
}

#[derive(Debug, Serialize, Deserialize)]
enum WirePayload<'a> {
    Blank,
    /// A batch of commands, each `Stamped::encode()`.
    #[serde(borrow)]
    Normal(Vec<&'a [u8]>),
    Membership(WireMembership),
    /// A batch in which some commands carry the origin id of a forwarded request:
    /// `(index in the batch, id)`. (Appended, so logs written without origins read as before.)
    Tagged {
        #[serde(borrow)]
        commands: Vec<&'a [u8]>,
        origins: Vec<(u32, u128)>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct WireEntry<'a> {
    log_id: WireLogId,
    #[serde(borrow)]
    payload: WirePayload<'a>,
}

/// What a snapshot file says about the table bytes that follow it.
#[derive(Debug, Serialize, Deserialize)]
struct WireSnapshotMeta {
    last_log_id: Option<WireLogId>,
    membership: WireStoredMembership,
    snapshot_id: String,
}

/// The replay record in a snapshot payload of version 1: origin ids and their answers
/// (`Applied::encode_answer()`, which carry their own magic, version and checksum), oldest
/// first.
#[derive(Debug, Serialize, Deserialize)]
struct WireRecordV1<'a> {
    #[serde(borrow)]
    answers: Vec<(u128, &'a [u8])>,
}

/// The replay record in a snapshot payload of version 2: origin ids, what each asked (kind
/// byte, fingerprint of its ids: `crate::request::Asked`) and its answer, oldest first.
#[derive(Debug, Serialize, Deserialize)]
struct WireRecord<'a> {
    #[serde(borrow)]
    records: Vec<(u128, u8, u64, &'a [u8])>,
}

fn wire_log_id(id: &LogId<NodeId>) -> WireLogId {
    WireLogId {
        term: id.leader_id.term,
        node: id.leader_id.node_id,
        index: id.index,
    }
}

fn log_id(wire: WireLogId) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(wire.term, wire.node), wire.index)
}

fn wire_membership(membership: &Membership<NodeId, BasicNode>) -> WireMembership {
    WireMembership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|set| set.iter().copied().collect())
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect(),
    }
}

/// A membership openraft can use: one configuration, or two during a change (joint), none
/// empty (a voter named without a node gets one without an address, as `Membership::new`
/// does). openraft assumes it (a membership without voters stops a member's Raft core on every
/// start), so bytes that say otherwise are refused here, whether a log or a member sent them.
fn membership(wire: WireMembership) -> Result<Membership<NodeId, BasicNode>, CodecError> {
    let configs: Vec<BTreeSet<NodeId>> = wire
        .configs
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect();
    let nodes: BTreeMap<NodeId, BasicNode> = wire
        .nodes
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    if configs.is_empty() || configs.len() > 2 {
        return Err(CodecError(format!(
            "a membership of {} configurations (1, or 2 during a change)",
            configs.len()
        )));
    }
    if configs.iter().any(BTreeSet::is_empty) {
        return Err(CodecError(
            "a membership configuration without voters".to_owned(),
        ));
    }
    Ok(Membership::new(configs, nodes))
}

fn wire_stored(stored: &StoredMembership<NodeId, BasicNode>) -> WireStoredMembership {
    WireStoredMembership {
        log_id: stored.log_id().as_ref().map(wire_log_id),
        membership: wire_membership(stored.membership()),
    }
}

fn stored(wire: WireStoredMembership) -> Result<StoredMembership<NodeId, BasicNode>, CodecError> {
    Ok(StoredMembership::new(
        wire.log_id.map(log_id),
        membership(wire.membership)?,
    ))
}

/// `value` in postcard with a CRC-32 trailer.
fn seal<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = postcard::to_allocvec(value).expect("invariant: postcard writes to a Vec");
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The payload of sealed bytes, once its trailer matches.
fn unseal(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let split = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| CodecError(format!("truncated record of {} bytes", bytes.len())))?;
    let (payload, trailer) = bytes.split_at(split);
    let expected = u32::from_le_bytes(trailer.try_into().expect("invariant: 4 bytes"));
    if crc32fast::hash(payload) != expected {
        return Err(CodecError("checksum mismatch".to_owned()));
    }
    Ok(payload)
}

fn read<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    postcard::from_bytes(unseal(bytes)?).map_err(|error| CodecError(format!("malformed: {error}")))
}

/// A log entry as stored.
pub(crate) fn encode_entry(entry: &Entry<TypeConfig>) -> Vec<u8> {
    let commands: Vec<Vec<u8>>;
    let payload = match &entry.payload {
        EntryPayload::Blank => WirePayload::Blank,
        EntryPayload::Normal(Proposal(batch, origins)) => {
            commands = batch.iter().map(Stamped::encode).collect();
            let slices = commands.iter().map(Vec::as_slice).collect();
            if origins.is_empty() {
                WirePayload::Normal(slices)
            } else {
                WirePayload::Tagged {
                    commands: slices,
                    origins: origins.iter().map(|o| (o.index, o.id)).collect(),
                }
            }
        }
        EntryPayload::Membership(m) => WirePayload::Membership(wire_membership(m)),
    };
    seal(&WireEntry {
        log_id: wire_log_id(&entry.log_id),
        payload,
    })
}

/// A stored log entry.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, CodecError> {
    let wire: WireEntry<'_> = read(bytes)?;
    let payload = match wire.payload {
        WirePayload::Blank => EntryPayload::Blank,
        WirePayload::Normal(commands) => {
            EntryPayload::Normal(Proposal(decode_commands(commands)?, Arc::from([])))
        }
        WirePayload::Tagged { commands, origins } => {
            let commands = decode_commands(commands)?;
            let origins: Arc<[Origin]> = origins
                .into_iter()
                .map(|(index, id)| Origin { index, id })
                .collect();
            if origins.iter().any(|o| o.index as usize >= commands.len()) {
                return Err(CodecError("an origin names no command".to_owned()));
            }
            EntryPayload::Normal(Proposal(commands, origins))
        }
        WirePayload::Membership(m) => EntryPayload::Membership(membership(m)?),
    };
    Ok(Entry {
        log_id: log_id(wire.log_id),
        payload,
    })
}

fn decode_commands(commands: Vec<&[u8]>) -> Result<Arc<[Stamped]>, CodecError> {
    commands
        .into_iter()
        .map(|command| {
            Stamped::decode(command).map_err(|error| CodecError(format!("command: {error}")))
        })
        .collect()
}

pub(crate) fn encode_vote(vote: &Vote<NodeId>) -> Vec<u8> {
    seal(&WireVote {
        term: vote.leader_id.term,
        node: vote.leader_id.node_id,
        committed: vote.committed,
    })
}

pub(crate) fn decode_vote(bytes: &[u8]) -> Result<Vote<NodeId>, CodecError> {
    let wire: WireVote = read(bytes)?;
    Ok(if wire.committed {
        Vote::new_committed(wire.term, wire.node)
    } else {
        Vote::new(wire.term, wire.node)
    })
}

pub(crate) fn encode_log_id(id: &LogId<NodeId>) -> Vec<u8> {
    seal(&wire_log_id(id))
}

pub(crate) fn decode_log_id(bytes: &[u8]) -> Result<LogId<NodeId>, CodecError> {
    read(bytes).map(log_id)
}

/// A snapshot's metadata, as its file stores it.
pub(crate) fn encode_snapshot_meta(meta: &openraft::SnapshotMeta<NodeId, BasicNode>) -> Vec<u8> {
    seal(&WireSnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(wire_log_id),
        membership: wire_stored(&meta.last_membership),
        snapshot_id: meta.snapshot_id.clone(),
    })
}

pub(crate) fn decode_snapshot_meta(
    bytes: &[u8],
) -> Result<openraft::SnapshotMeta<NodeId, BasicNode>, CodecError> {
    let wire: WireSnapshotMeta = read(bytes)?;
    // A state machine that has applied no membership entry yet (a new data directory's first
    // snapshot) stores none. Whether such a snapshot may be installed from another member is
    // `super::rpc`'s question.
    let nothing_yet = wire.membership.log_id.is_none()
        && wire.membership.membership.configs.is_empty()
        && wire.membership.membership.nodes.is_empty();
    Ok(openraft::SnapshotMeta {
        last_log_id: wire.last_log_id.map(log_id),
        last_membership: if nothing_yet {
            StoredMembership::default()
        } else {
            stored(wire.membership)?
        },
        snapshot_id: wire.snapshot_id,
    })
}

/// The replay record, as a snapshot stores it beside the table (payload version 2). Every
/// record says what was asked: a record restored from version 1 without it is written as it
/// was read, with kind byte 0.
pub(crate) fn encode_record(records: &[(u128, Record)]) -> Vec<u8> {
    let encoded: Vec<(u128, u8, u64, Vec<u8>)> = records
        .iter()
        .map(|(id, record)| {
            let (kind, targets) = record
                .asked
                .map_or((0, 0), |asked| (asked.kind as u8, asked.targets));
            (
                *id,
                kind,
                targets,
                worklease::Applied::encode_answer(&record.answer),
            )
        })
        .collect();
    seal(&WireRecord {
        records: encoded
            .iter()
            .map(|(id, kind, targets, bytes)| (*id, *kind, *targets, bytes.as_slice()))
            .collect(),
    })
}

/// The replay record as payload version 1 wrote it (answers alone), for tests of reading it.
#[cfg(test)]
pub(crate) fn encode_record_v1(answers: &[(u128, super::CommandAnswer)]) -> Vec<u8> {
    let encoded: Vec<(u128, Vec<u8>)> = answers
        .iter()
        .map(|(id, answer)| (*id, worklease::Applied::encode_answer(answer)))
        .collect();
    seal(&WireRecordV1 {
        answers: encoded
            .iter()
            .map(|(id, bytes)| (*id, bytes.as_slice()))
            .collect(),
    })
}

/// A replay record written in snapshot payload `version` (1 or 2).
pub(crate) fn decode_record(bytes: &[u8], version: u16) -> Result<Vec<(u128, Record)>, CodecError> {
    let wire: Vec<(u128, Option<Asked>, &[u8])> = if version == 1 {
        let wire: WireRecordV1<'_> = read(bytes)?;
        wire.answers
            .into_iter()
            .map(|(id, answer)| (id, None, answer))
            .collect()
    } else {
        let wire: WireRecord<'_> = read(bytes)?;
        wire.records
            .into_iter()
            .map(|(id, kind, targets, answer)| {
                let asked = match kind {
                    0 => None,
                    byte => Some(Asked {
                        kind: Kind::from_byte(byte).ok_or_else(|| {
                            CodecError(format!("origin {id:032x}: unknown command kind {byte}"))
                        })?,
                        targets,
                    }),
                };
                Ok((id, asked, answer))
            })
            .collect::<Result<_, CodecError>>()?
    };
    wire.into_iter()
        .map(|(id, asked, bytes)| {
            worklease::Applied::decode_answer(bytes)
                .map(|answer| (id, Record { asked, answer }))
                .map_err(|e| CodecError(format!("the answer to origin {id:032x}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use worklease::{Command, Timestamp};

    #[test]
    fn entries_votes_and_metas_read_back() {
        let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]);
        let members = Membership::new(vec![BTreeSet::from([1])], nodes);
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Membership(members.clone()),
            EntryPayload::Normal(Proposal(
                Arc::from(vec![
                    Stamped::new(
                        Timestamp::from_unix_micros(1_782_893_700_000_000),
                        Command::Sweep,
                    );
                    3
                ]),
                Arc::from([]),
            )),
            EntryPayload::Normal(Proposal(
                Arc::from(vec![
                    Stamped::new(
                        Timestamp::from_unix_micros(1_782_893_700_000_000),
                        Command::Sweep,
                    );
                    2
                ]),
                Arc::from([Origin {
                    index: 1,
                    id: u128::MAX - 7,
                }]),
            )),
        ] {
            let entry = Entry::<TypeConfig> {
                log_id: id,
                payload,
            };
            let bytes = encode_entry(&entry);
            let back = decode_entry(&bytes).unwrap();
            assert_eq!(back.log_id, entry.log_id);
            assert_eq!(
                format!("{:?}", back.payload),
                format!("{:?}", entry.payload)
            );
            for cut in 0..bytes.len() {
                assert!(decode_entry(&bytes[..cut]).is_err());
            }
            let mut flipped = bytes.clone();
            flipped[0] ^= 1;
            assert!(decode_entry(&flipped).is_err());
        }
        let vote = Vote::new_committed(4, 1);
        assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
        assert_eq!(decode_log_id(&encode_log_id(&id)).unwrap(), id);
        let meta = openraft::SnapshotMeta {
            last_log_id: Some(id),
            last_membership: StoredMembership::new(Some(id), members),
            snapshot_id: "s".to_owned(),
        };
        assert_eq!(
            decode_snapshot_meta(&encode_snapshot_meta(&meta)).unwrap(),
            meta
        );
    }

    #[test]
    fn memberships_openraft_cannot_use_are_refused() {
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        let at = |id: u64| (id, "127.0.0.1:1".to_owned());
        let entry = |configs: Vec<Vec<u64>>, nodes: Vec<(u64, String)>| {
            seal(&WireEntry {
                log_id: wire_log_id(&id),
                payload: WirePayload::Membership(WireMembership { configs, nodes }),
            })
        };
        assert!(decode_entry(&entry(vec![vec![1, 2]], vec![at(1), at(2)])).is_ok());
        assert!(decode_entry(&entry(vec![vec![1], vec![1, 2]], vec![at(1), at(2), at(3)])).is_ok());
        for (configs, nodes) in [
            (vec![], vec![]),
            (vec![], vec![at(1)]),
            (vec![vec![]], vec![at(1)]),
            (vec![vec![1], vec![]], vec![at(1)]),
            (vec![vec![1], vec![1], vec![1]], vec![at(1)]),
        ] {
            let refused = decode_entry(&entry(configs.clone(), nodes.clone()));
            assert!(refused.is_err(), "{configs:?} {nodes:?}");
        }
        // The snapshot a new data directory starts with knows no membership, and reads back.
        let first = openraft::SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: String::new(),
        };
        assert_eq!(
            decode_snapshot_meta(&encode_snapshot_meta(&first)).unwrap(),
            first
        );
        // A membership with a configuration must be one openraft can use.
        let joint_of_three = openraft::SnapshotMeta {
            last_log_id: Some(id),
            last_membership: StoredMembership::new(
                Some(id),
                Membership::new(
                    vec![
                        BTreeSet::from([1]),
                        BTreeSet::from([1]),
                        BTreeSet::from([1]),
                    ],
                    BTreeMap::new(),
                ),
            ),
            ..first
        };
        assert!(decode_snapshot_meta(&encode_snapshot_meta(&joint_of_three)).is_err());
    }
}
