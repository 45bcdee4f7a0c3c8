//! The membership and backup routes (docs/contract.md §12), admin-only:
//! `GET /cluster/members`, `POST /cluster/members`, `DELETE /cluster/members/{node_id}` and
//! `GET /cluster/snapshot`, answered by the leader (a follower forwards them,
//! `super::forward`); and the two internal routes a new member's admission uses
//! (`crate::raft::admission`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{json, ApiError};
use super::extract::{parse_json, Query};
use crate::app::Shared;
use crate::raft::{Durable, NodeId, Refusal, Unavailable};

/// `POST /cluster/members`' body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    node_id: NodeId,
    address: String,
}

/// This server's Raft node, when it is a cluster member.
fn member(shared: &Shared) -> Result<&Durable, ApiError> {
    shared
        .submit
        .durable()
        .filter(|durable| durable.is_replicated())
        .ok_or_else(|| {
            ApiError::own(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "this server is not a cluster member: start it with --node-id and --peers"
                    .to_owned(),
            )
        })
}

/// `GET /cluster/members`: the membership the leader holds, and the leader's id.
pub(crate) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    match member(&shared) {
        Ok(durable) => json(StatusCode::OK, &durable.members()),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /cluster/members` `{"node_id", "address"}`: adds a learner and promotes it to voter
/// once it has caught up; 200 with the membership once it votes, 503 with `Retry-After` when
/// it has not caught up within 30 s (it stays a learner: the same request continues).
pub(crate) async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let durable = match member(&shared) {
        Ok(durable) => durable,
        Err(refusal) => return refusal.into_response(),
    };
    let new: NewMember = match parse_json(&body) {
        Ok(Some(new)) => new,
        Ok(None) => {
            return ApiError::bad_request(
                "send {\"node_id\": N, \"address\": \"HOST:PORT\"}".to_owned(),
                None,
            )
            .into_response()
        }
        Err(refusal) => return refusal.into_response(),
    };
    if new.node_id == 0 {
        return ApiError::bad_request("member ids start at 1".to_owned(), Some("node_id"))
            .into_response();
    }
    let address = match crate::cli::parse_listen(new.address.trim()) {
        Ok(address) if !address.ends_with(":0") => address,
        Ok(_) => {
            return ApiError::bad_request(
                "a member's address needs a port".to_owned(),
                Some("address"),
            )
            .into_response()
        }
        Err(why) => return ApiError::bad_request(why, Some("address")).into_response(),
    };
    answer(durable.add_member(new.node_id, &address).await)
}

/// `DELETE /cluster/members/{node_id}`.
pub(crate) async fn remove(
    State(shared): State<Arc<Shared>>,
    Path(node): Path<String>,
) -> Response {
    let durable = match member(&shared) {
        Ok(durable) => durable,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(node) = node.parse::<NodeId>() else {
        return ApiError::own(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("{node:?} is not a member id"),
        )
        .into_response();
    };
    answer(durable.remove_member(node).await)
}

fn answer(changed: Result<crate::raft::Members, Refusal>) -> Response {
    match changed {
        Ok(members) => json(StatusCode::OK, &members),
        Err(Refusal::Unknown(why)) => {
            ApiError::own(StatusCode::NOT_FOUND, "not_found_error", why).into_response()
        }
        Err(Refusal::Conflict(why)) => {
            ApiError::own(StatusCode::CONFLICT, "invalid_request_error", why).into_response()
        }
        Err(Refusal::Unavailable(why)) => ApiError::Unavailable(why).into_response(),
    }
}

/// `GET /cluster/snapshot`: a backup of the table as of a committed index
/// (`crate::backup` describes the bytes); the index is also in `x-worklease-index`.
pub(crate) async fn backup(State(shared): State<Arc<Shared>>) -> Response {
    let Some(durable) = shared.submit.durable() else {
        return ApiError::own(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "an in-memory server keeps no snapshot: back up a server started with --data-dir"
                .to_owned(),
        )
        .into_response();
    };
    match durable.backup().await {
        Ok(backup) => (
            StatusCode::OK,
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (INDEX, HeaderValue::from(backup.index)),
            ],
            crate::backup::encode(&backup),
        )
            .into_response(),
        Err(Unavailable(why)) => ApiError::Unavailable(why).into_response(),
    }
}

/// The log index a backup is as of.
const INDEX: HeaderName = HeaderName::from_static("x-worklease-index");

/// `GET /internal/raft/admission?node_id=N`: what this member knows of node N (a new member
/// asks before it takes part, and a leader asks whether a member answers at all).
pub(crate) async fn admission(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(durable) = reachable(&shared) else {
        return unreachable_here();
    };
    let query = Query::parse(query.as_deref());
    let Some(node) = query.get("node_id").and_then(|id| id.parse().ok()) else {
        return (StatusCode::BAD_REQUEST, "node_id=N is required").into_response();
    };
    json(StatusCode::OK, &durable.standing_of(node))
}

/// `POST /internal/raft/seed?from=N`: the lowest id in `--peers` is about to initialize a new
/// cluster with this member: 200 when this member joins it, 409 when it will not.
pub(crate) async fn seed(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let Some(durable) = reachable(&shared) else {
        return unreachable_here();
    };
    let query = Query::parse(query.as_deref());
    let Some(from) = query.get("from").and_then(|id| id.parse().ok()) else {
        return (StatusCode::BAD_REQUEST, "from=N is required").into_response();
    };
    match durable.seeded_by(from) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => (StatusCode::CONFLICT, why).into_response(),
    }
}

/// This node's Raft node, when it is a member that is not cut off (a test's fault injector).
fn reachable(shared: &Shared) -> Option<&Durable> {
    shared
        .submit
        .durable()
        .filter(|durable| durable.is_replicated() && !durable.links().is_cut())
}

fn unreachable_here() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "this node is not a reachable cluster member",
    )
        .into_response()
}
