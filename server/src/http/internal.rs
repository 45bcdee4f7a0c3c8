//! Raft's internal routes (docs/contract.md §8 "Addresses"): the other members' RPCs arrive here, on the
//! same listener as the API, opened only by the cluster secret (the edge checks it:
//! `crate::cluster_secret`). Bodies are `crate::raft`'s RPC bytes;
//! a body that does not decode gets 400, a node that is stopping or cut off 503, a sender whose
//! table configuration differs from this member's 409.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openraft::error::{Fatal, InstallSnapshotError, RaftError};

use crate::app::Shared;
use crate::raft::{self, CodecError, Durable, TypeConfig};

/// The largest RPC body read: a snapshot chunk (64 MiB) and its envelope.
const RPC_LIMIT: usize = 80 * 1024 * 1024;

/// `POST /internal/raft/append`.
pub(crate) async fn append(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let heard = shared.clone();
    let table_time = headers
        .get(raft::TABLE_TIME_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<i64>().ok())
        .map(worklease::Timestamp::from_unix_micros);
    rpc(
        &shared,
        &headers,
        body,
        raft::decode_append,
        |node, r| async move {
            if let Some(durable) = heard.submit.durable() {
                durable.heard_commit(r.leader_commit);
            }
            let answer = node.append_entries(r).await.map_err(fatal)?;
            // A leader this member follows says where the table's time is now: this member's
            // live view of the timeline, should it lead next (`crate::clock`). A stale
            // leader's word (refused for a higher vote) is not taken.
            if !matches!(answer, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                if let (Some(durable), Some(at)) = (heard.submit.durable(), table_time) {
                    durable.heard_table_time(at);
                }
            }
            Ok(raft::encode_append_response(&answer))
        },
    )
    .await
}

/// `POST /internal/raft/vote`.
pub(crate) async fn vote(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rpc(
        &shared,
        &headers,
        body,
        raft::decode_vote_request,
        |node, r| async move {
            let answer = node.vote(r).await.map_err(fatal)?;
            Ok(raft::encode_vote_response(&answer))
        },
    )
    .await
}

/// `POST /internal/raft/snapshot`: one chunk of a snapshot the leader sends.
pub(crate) async fn snapshot(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rpc(
        &shared,
        &headers,
        body,
        raft::decode_install,
        |node, r| async move {
            match node.install_snapshot(r).await {
                Ok(answer) => Ok(raft::encode_install_response(&Ok(answer))),
                // A chunk out of order: the leader starts the snapshot over.
                Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch))) => {
                    Ok(raft::encode_install_response(&Err(mismatch)))
                }
                Err(RaftError::Fatal(error)) => Err(error),
            }
        },
    )
    .await
}

/// One RPC: checks the sender and reads the body ([`accept`]), decodes it (400 when it does
/// not), and hands it to this member's Raft node with `call`: its bytes are the answer, its
/// Raft error (the core stopped, or its storage failed) a 500 that the sender's openraft gets
/// back as a `RemoteError` of that kind (`raft::RAFT_ERROR_HEADER`).
async fn rpc<T, F>(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    decode: fn(&[u8]) -> Result<T, CodecError>,
    call: impl FnOnce(openraft::Raft<TypeConfig>, T) -> F,
) -> Response
where
    F: std::future::Future<Output = Result<Vec<u8>, Fatal<raft::NodeId>>>,
{
    let (durable, bytes) = match accept(shared, headers, body).await {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal,
    };
    let request = match decode(&bytes) {
        Ok(request) => request,
        Err(error) => return plain(StatusCode::BAD_REQUEST, error.to_string()),
    };
    match call(durable.raft().clone(), request).await {
        Ok(answer) => octets(answer),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(raft::RAFT_ERROR_HEADER, "1")],
            raft::encode_fatal(&error),
        )
            .into_response(),
    }
}

/// The error of an RPC that has no error of its own to answer (append, vote).
fn fatal(error: RaftError<raft::NodeId>) -> Fatal<raft::NodeId> {
    match error {
        RaftError::Fatal(fatal) => fatal,
        RaftError::APIError(never) => match never {},
    }
}

/// `GET /internal/digest`: this node's own table, summarized: its applied index and the
/// [`table_digest`] of its canonical snapshot (docs/contract.md §7.4). Replicas that applied the
/// same log answer the same digest, so operators and tests compare replicas with it without
/// moving whole tables; compare digests taken at the same applied index.
pub(crate) async fn digest(State(shared): State<Arc<Shared>>) -> Response {
    let (bytes, index) = shared.submit.local_snapshot();
    super::error::json(
        StatusCode::OK,
        &serde_json::json!({
            "node_id": shared.submit.cluster_status().node_id,
            "last_applied_index": index,
            "digest": table_digest(&bytes),
            "bytes": bytes.len(),
        }),
    )
}

/// The SHA-256 of a table's canonical snapshot bytes, in hex. A checksum that covers its own
/// trailer cannot serve: the snapshot ends with a CRC-32 of what precedes it, and a CRC-32
/// over data followed by its own CRC is the same constant for every table.
pub(crate) fn table_digest(snapshot: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(snapshot)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The node and the body, when this node takes RPCs at all.
async fn accept<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'a Durable, Bytes), Response> {
    let Some(durable) = shared.submit.durable().filter(|d| d.is_replicated()) else {
        return Err(plain(
            StatusCode::NOT_FOUND,
            "this node is not a member of a replicated cluster".to_owned(),
        ));
    };
    if !durable.admitted() {
        return Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "this member's data directory is new and the cluster has not let it in yet \
             (its log says why)"
                .to_owned(),
        ));
    }
    if durable.links().is_cut() {
        return Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is cut off".to_owned(),
        ));
    }
    let theirs = headers
        .get(raft::CONFIG_HEADER)
        .and_then(|v| v.to_str().ok());
    durable
        .links()
        .same_config(theirs)
        .map_err(|message| plain(StatusCode::CONFLICT, message))?;
    let bytes = axum::body::to_bytes(body, RPC_LIMIT)
        .await
        .map_err(|error| plain(StatusCode::BAD_REQUEST, format!("unreadable body: {error}")))?;
    Ok((durable, bytes))
}

fn octets(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response()
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

#[cfg(test)]
mod tests {
    use worklease::{
        Config, EnvironmentId, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata,
        PollRequest, Timestamp, WorkId,
    };

    use super::table_digest;

    /// A table holding one lease, renewed once at `renewed` (its token).
    fn one_lease(renewed: Timestamp) -> LeaseTable {
        let t0 = Timestamp::from_unix_micros(1_700_000_000_000_000);
        let mut table = LeaseTable::new(Config::default());
        let environment = EnvironmentId::mint(t0, 0, 1);
        table
            .register_environment(environment.clone(), EnvironmentKind::SelfHosted)
            .expect("registers");
        let work = WorkId::mint(t0, 1, 7);
        let session = "sess_1".parse().expect("a session id");
        table
            .create_work(&environment, work.clone(), session, Metadata::new(), t0)
            .expect("creates");
        table
            .poll(&environment, &PollRequest::default(), t0)
            .expect("polls");
        table.ack(&environment, &work, None, t0).expect("acks");
        table
            .heartbeat(&environment, &work, HeartbeatRequest::default(), renewed)
            .expect("renews");
        table
    }

    #[test]
    fn tables_that_differ_in_one_token_have_different_digests() {
        let at = Timestamp::from_unix_micros(1_700_000_001_000_000);
        let one = one_lease(at);
        let other = one_lease(Timestamp::from_unix_micros(at.unix_micros() + 1));
        let same = one_lease(at);
        assert_eq!(
            table_digest(&one.snapshot()),
            table_digest(&same.snapshot())
        );
        assert_ne!(
            table_digest(&one.snapshot()),
            table_digest(&other.snapshot())
        );
        // What the digest used to be (a CRC-32 over the snapshot and its own CRC-32 trailer)
        // is the same for both: the check this replaces could not fail.
        assert_eq!(
            crc32fast::hash(&one.snapshot()),
            crc32fast::hash(&other.snapshot())
        );
    }
}
