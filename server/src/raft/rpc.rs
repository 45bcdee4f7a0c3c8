//! Raft RPC messages between members, as bytes: postcard envelopes around the log's own sealed
//! encodings (`codec`), so an entry travels in exactly the bytes it is stored in and every
//! value carries its checksum across the wire too. Only members of one build talk to each
//! other, but a damaged or foreign body is still refused with an error, never a panic.

use openraft::error::{Fatal, InstallSnapshotError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, LogId, SnapshotSegmentId, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use super::codec::{self, CodecError};
use super::{NodeId, TypeConfig};

#[derive(Serialize, Deserialize)]
struct WireAppend {
    vote: Vec<u8>,
    prev_log_id: Option<Vec<u8>>,
    entries: Vec<Vec<u8>>,
    leader_commit: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
enum WireAppendResponse {
    Success,
    PartialSuccess(Option<Vec<u8>>),
    Conflict,
    HigherVote(Vec<u8>),
}

#[derive(Serialize, Deserialize)]
struct WireVoteRequest {
    vote: Vec<u8>,
    last_log_id: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct WireVoteResponse {
    vote: Vec<u8>,
    vote_granted: bool,
    last_log_id: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct WireInstall<'a> {
    vote: Vec<u8>,
    meta: Vec<u8>,
    offset: u64,
    /// A snapshot chunk (up to 64 MiB): borrowed, not copied, on the way in and out.
    #[serde(borrow)]
    data: &'a [u8],
    done: bool,
}

/// What a member answers to a snapshot chunk.
#[derive(Serialize, Deserialize)]
enum WireInstallResponse {
    Installed {
        vote: Vec<u8>,
    },
    /// The chunk is not the one the receiver expected: the sender starts the snapshot over.
    Mismatch {
        expect: (String, u64),
        got: (String, u64),
    },
}

fn malformed(error: &postcard::Error) -> CodecError {
    CodecError(format!("malformed message: {error}"))
}

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("invariant: postcard writes to a Vec")
}

fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|e| malformed(&e))
}

fn log_id_bytes(id: Option<&LogId<NodeId>>) -> Option<Vec<u8>> {
    id.map(codec::encode_log_id)
}

fn log_id_of(bytes: Option<&Vec<u8>>) -> Result<Option<LogId<NodeId>>, CodecError> {
    bytes.map(|b| codec::decode_log_id(b)).transpose()
}

pub(crate) fn encode_append(request: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    to_bytes(&WireAppend {
        vote: codec::encode_vote(&request.vote),
        prev_log_id: log_id_bytes(request.prev_log_id.as_ref()),
        entries: request.entries.iter().map(codec::encode_entry).collect(),
        leader_commit: log_id_bytes(request.leader_commit.as_ref()),
    })
}

pub(crate) fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    let wire: WireAppend = from_bytes(bytes)?;
    let request = AppendEntriesRequest {
        vote: codec::decode_vote(&wire.vote)?,
        prev_log_id: log_id_of(wire.prev_log_id.as_ref())?,
        entries: wire
            .entries
            .iter()
            .map(|entry| codec::decode_entry(entry))
            .collect::<Result<_, _>>()?,
        leader_commit: log_id_of(wire.leader_commit.as_ref())?,
    };
    fits(&request)?;
    Ok(request)
}

/// What every leader's append is, and openraft assumes of one: entries that follow
/// `prev_log_id` one index after another, none from a term before the previous one's or after
/// the sender's vote. An append that says otherwise is refused before it reaches the log.
fn fits(request: &AppendEntriesRequest<TypeConfig>) -> Result<(), CodecError> {
    let mut previous = request.prev_log_id;
    for entry in &request.entries {
        let id = entry.log_id;
        let expected = previous.map_or(Some(0), |p| p.index.checked_add(1));
        if Some(id.index) != expected {
            return Err(CodecError(format!(
                "entry {} does not follow {}",
                id.index,
                previous.map_or_else(
                    || "the start of the log".to_owned(),
                    |p| p.index.to_string()
                )
            )));
        }
        if previous.is_some_and(|p| id.leader_id.term < p.leader_id.term)
            || id.leader_id.term > request.vote.leader_id.term
        {
            return Err(CodecError(format!(
                "entry {} of term {} does not fit between its predecessor and the vote of term {}",
                id.index, id.leader_id.term, request.vote.leader_id.term
            )));
        }
        previous = Some(id);
    }
    Ok(())
}

pub(crate) fn encode_append_response(response: &AppendEntriesResponse<NodeId>) -> Vec<u8> {
    to_bytes(&match response {
        AppendEntriesResponse::Success => WireAppendResponse::Success,
        AppendEntriesResponse::PartialSuccess(id) => {
            WireAppendResponse::PartialSuccess(log_id_bytes(id.as_ref()))
        }
        AppendEntriesResponse::Conflict => WireAppendResponse::Conflict,
        AppendEntriesResponse::HigherVote(vote) => {
            WireAppendResponse::HigherVote(codec::encode_vote(vote))
        }
    })
}

pub(crate) fn decode_append_response(
    bytes: &[u8],
) -> Result<AppendEntriesResponse<NodeId>, CodecError> {
    Ok(match from_bytes(bytes)? {
        WireAppendResponse::Success => AppendEntriesResponse::Success,
        WireAppendResponse::PartialSuccess(id) => {
            AppendEntriesResponse::PartialSuccess(log_id_of(id.as_ref())?)
        }
        WireAppendResponse::Conflict => AppendEntriesResponse::Conflict,
        WireAppendResponse::HigherVote(vote) => {
            AppendEntriesResponse::HigherVote(codec::decode_vote(&vote)?)
        }
    })
}

pub(crate) fn encode_vote_request(request: &VoteRequest<NodeId>) -> Vec<u8> {
    to_bytes(&WireVoteRequest {
        vote: codec::encode_vote(&request.vote),
        last_log_id: log_id_bytes(request.last_log_id.as_ref()),
    })
}

pub(crate) fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<NodeId>, CodecError> {
    let wire: WireVoteRequest = from_bytes(bytes)?;
    Ok(VoteRequest {
        vote: codec::decode_vote(&wire.vote)?,
        last_log_id: log_id_of(wire.last_log_id.as_ref())?,
    })
}

pub(crate) fn encode_vote_response(response: &VoteResponse<NodeId>) -> Vec<u8> {
    to_bytes(&WireVoteResponse {
        vote: codec::encode_vote(&response.vote),
        vote_granted: response.vote_granted,
        last_log_id: log_id_bytes(response.last_log_id.as_ref()),
    })
}

pub(crate) fn decode_vote_response(bytes: &[u8]) -> Result<VoteResponse<NodeId>, CodecError> {
    let wire: WireVoteResponse = from_bytes(bytes)?;
    Ok(VoteResponse {
        vote: codec::decode_vote(&wire.vote)?,
        vote_granted: wire.vote_granted,
        last_log_id: log_id_of(wire.last_log_id.as_ref())?,
    })
}

pub(crate) fn encode_install(request: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    to_bytes(&WireInstall {
        vote: codec::encode_vote(&request.vote),
        meta: codec::encode_snapshot_meta(&request.meta),
        offset: request.offset,
        data: &request.data,
        done: request.done,
    })
}

pub(crate) fn decode_install(
    bytes: &[u8],
) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    let wire: WireInstall<'_> = from_bytes(bytes)?;
    let meta = codec::decode_snapshot_meta(&wire.meta)?;
    // A leader sends a snapshot in place of entries it no longer holds, and its membership
    // with it: one that covers none, or names no voters, is nothing a member could install.
    if meta.last_log_id.is_none() {
        return Err(CodecError("a snapshot that covers no entry".to_owned()));
    }
    if meta
        .last_membership
        .membership()
        .get_joint_config()
        .is_empty()
    {
        return Err(CodecError("a snapshot without a membership".to_owned()));
    }
    Ok(InstallSnapshotRequest {
        vote: codec::decode_vote(&wire.vote)?,
        meta,
        offset: wire.offset,
        data: wire.data.to_vec(),
        done: wire.done,
    })
}

/// A snapshot chunk's answer: installed (with the receiver's vote), or a mismatch.
pub(crate) fn encode_install_response(
    response: &Result<InstallSnapshotResponse<NodeId>, SnapshotMismatch>,
) -> Vec<u8> {
    let segment = |s: &SnapshotSegmentId| (s.id.clone(), s.offset);
    to_bytes(&match response {
        Ok(installed) => WireInstallResponse::Installed {
            vote: codec::encode_vote(&installed.vote),
        },
        Err(mismatch) => WireInstallResponse::Mismatch {
            expect: segment(&mismatch.expect),
            got: segment(&mismatch.got),
        },
    })
}

pub(crate) fn decode_install_response(
    bytes: &[u8],
) -> Result<Result<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, CodecError> {
    let segment = |(id, offset): (String, u64)| SnapshotSegmentId { id, offset };
    Ok(match from_bytes(bytes)? {
        WireInstallResponse::Installed { vote } => Ok(InstallSnapshotResponse {
            vote: codec::decode_vote(&vote)?,
        }),
        WireInstallResponse::Mismatch { expect, got } => {
            Err(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: segment(expect),
                got: segment(got),
            }))
        }
    })
}

/// The header that marks an answer as the receiving member's Raft error (its body:
/// [`encode_fatal`]), which the sender hands its openraft as a `RemoteError`.
pub(crate) const RAFT_ERROR_HEADER: &str = "x-worklease-raft-error";

/// A Raft error a member answers an RPC with: its core stopped, panicked, or its storage
/// failed (the message then says how).
#[derive(Serialize, Deserialize)]
enum WireFatal {
    Stopped,
    Panicked,
    Storage(String),
}

/// Why this member's Raft could not handle an RPC, for the sender.
pub(crate) fn encode_fatal(fatal: &Fatal<NodeId>) -> Vec<u8> {
    to_bytes(&match fatal {
        Fatal::Stopped => WireFatal::Stopped,
        Fatal::Panicked => WireFatal::Panicked,
        Fatal::StorageError(error) => WireFatal::Storage(error.to_string()),
    })
}

/// The receiver's Raft error, of the kind it had (a storage error keeps its message, not its
/// subject: the sender only reports it).
pub(crate) fn decode_fatal(bytes: &[u8]) -> Result<Fatal<NodeId>, CodecError> {
    Ok(match from_bytes(bytes)? {
        WireFatal::Stopped => Fatal::Stopped,
        WireFatal::Panicked => Fatal::Panicked,
        WireFatal::Storage(message) => Fatal::StorageError(StorageError::IO {
            source: StorageIOError::write(AnyError::error(message)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{
        BasicNode, CommittedLeaderId, Entry, EntryPayload, Membership, SnapshotMeta,
        StoredMembership, Vote,
    };
    use worklease::{Command, Stamped, Timestamp};

    use super::*;
    use crate::raft::Proposal;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Proposal(
                Arc::from(vec![Stamped::new(
                    Timestamp::from_unix_micros(1_782_893_700_000_000),
                    Command::Sweep,
                )]),
                Arc::from([super::super::Origin { index: 0, id: 7 }]),
            )),
        }
    }

    #[test]
    fn every_message_reads_back_and_damage_is_refused() {
        let vote = Vote::new_committed(2, 1);
        let id = LogId::new(CommittedLeaderId::new(2, 1), 4);
        let append = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(id),
            entries: vec![entry(5), entry(6)],
            leader_commit: Some(id),
        };
        let bytes = encode_append(&append);
        let back = decode_append(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{append:?}"));
        for cut in 0..bytes.len() {
            assert!(decode_append(&bytes[..cut]).is_err(), "cut at {cut}");
        }

        for response in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(id)),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(vote),
        ] {
            let back = decode_append_response(&encode_append_response(&response)).unwrap();
            assert_eq!(back, response);
        }

        for fatal in [
            Fatal::Stopped,
            Fatal::Panicked,
            Fatal::StorageError(StorageError::IO {
                source: StorageIOError::write_logs(AnyError::error("disk full")),
            }),
        ] {
            let back = decode_fatal(&encode_fatal(&fatal)).unwrap();
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&fatal)
            );
            if let Fatal::StorageError(_) = fatal {
                assert!(back.to_string().contains("disk full"), "{back}");
            }
        }
        assert!(decode_fatal(b"\xff").is_err());

        let request = VoteRequest::new(Vote::new(3, 2), Some(id));
        let back = decode_vote_request(&encode_vote_request(&request)).unwrap();
        assert_eq!(back, request);
        let response = VoteResponse::new(vote, Some(id), true);
        let back = decode_vote_response(&encode_vote_response(&response)).unwrap();
        assert_eq!(back, response);

        let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]);
        let meta = SnapshotMeta {
            last_log_id: Some(id),
            last_membership: StoredMembership::new(
                Some(id),
                Membership::new(vec![BTreeSet::from([1])], nodes),
            ),
            snapshot_id: "2-4-1".to_owned(),
        };
        let install = InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta,
            offset: 0,
            data: vec![1, 2, 3],
            done: true,
        };
        let back = decode_install(&encode_install(&install)).unwrap();
        assert_eq!(back, install);
        let installed = Ok(InstallSnapshotResponse { vote });
        assert_eq!(
            decode_install_response(&encode_install_response(&installed)).unwrap(),
            Ok(InstallSnapshotResponse { vote })
        );
        let segment = |offset| SnapshotSegmentId {
            id: "s".to_owned(),
            offset,
        };
        let mismatch = SnapshotMismatch {
            expect: segment(0),
            got: segment(9),
        };
        assert_eq!(
            decode_install_response(&encode_install_response(&Err(mismatch.clone()))).unwrap(),
            Err(InstallSnapshotError::SnapshotMismatch(mismatch))
        );
        assert!(decode_vote_request(b"\xff\xff").is_err());
        assert!(decode_install(&[]).is_err());
        // Entries that do not fit the log are refused: a gap, a step back, a term after the
        // vote's, a term before the previous entry's.
        for (prev, indexes, terms) in [
            (Some(4), vec![6, 7], vec![2, 2]),
            (Some(4), vec![5, 5], vec![2, 2]),
            (None, vec![1], vec![2]),
            (Some(4), vec![5], vec![3]),
            (Some(4), vec![5, 6], vec![2, 1]),
        ] {
            let forged = AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: prev.map(|index| LogId::new(CommittedLeaderId::new(2, 1), index)),
                entries: indexes
                    .iter()
                    .zip(&terms)
                    .map(|(index, term)| Entry {
                        log_id: LogId::new(CommittedLeaderId::new(*term, 1), *index),
                        payload: EntryPayload::Blank,
                    })
                    .collect(),
                leader_commit: None,
            };
            let refused = decode_append(&encode_append(&forged));
            assert!(refused.is_err(), "{prev:?} {indexes:?} {terms:?}");
        }
        // Found by the `rpc_decode` fuzz target: a snapshot covering no entry, whose membership
        // is empty, decoded and would have reached openraft.
        let empty = InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta::default(),
            offset: 0,
            data: Vec::new(),
            done: true,
        };
        assert!(decode_install(&encode_install(&empty)).is_err());
        let covering = InstallSnapshotRequest::<TypeConfig> {
            meta: SnapshotMeta {
                last_log_id: Some(id),
                ..SnapshotMeta::default()
            },
            ..empty
        };
        assert!(decode_install(&encode_install(&covering)).is_err());
    }
}
