//! Operations endpoints (docs/contract.md §8): `/healthz`, `/readyz`, `/cluster`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::json;
use crate::app::Shared;

/// `GET /healthz`, without credentials: 200 while the process serves.
pub(crate) async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`, without credentials: 200 while this node can answer (in replicated mode:
/// it knows a leader and has applied up to the commit index it last heard of), else 503 with
/// the reason. `/healthz` says the process is alive; this says whether to send it requests.
pub(crate) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.submit.readiness() {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "not_ready", "reason": reason}),
        ),
    }
}

/// `GET /cluster`'s answer.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    node_id: u64,
    leader_id: Option<u64>,
    term: u64,
    role: &'static str,
    last_applied_index: u64,
    log_syncs: u64,
    read_rounds: u64,
}

/// `GET /cluster`: in memory, a one-member cluster this node leads at term 0 that never syncs;
/// in durable mode, the Raft node's own term, leader, role, applied index and log syncs.
pub(crate) async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.submit.cluster_status();
    let status = ClusterStatus {
        node_id: now.node_id,
        leader_id: now.leader_id,
        term: now.term,
        role: now.role,
        last_applied_index: now.last_applied_index,
        log_syncs: now.log_syncs,
        read_rounds: now.read_rounds,
    };
    json(StatusCode::OK, &status)
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let items = shared.submit.count_by_state().await;
    let now = shared.submit.cluster_status();
    let text = shared.metrics.render(items, &now);
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
