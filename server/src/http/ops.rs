//! Operations endpoints (SPEC §8): `/healthz`, `/cluster`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::edge::json;
use crate::app::Shared;

/// The node id of an in-memory server: a one-member cluster.
const NODE_ID: u64 = 1;

/// `GET /healthz`, without credentials: 200 while the process serves.
pub(crate) async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// `GET /cluster`'s answer.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    node_id: u64,
    leader_id: Option<u64>,
    term: u64,
    role: &'static str,
    last_applied_index: u64,
}

/// `GET /cluster`: in memory, a one-member cluster this node leads.
pub(crate) async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    let status = ClusterStatus {
        node_id: NODE_ID,
        leader_id: Some(NODE_ID),
        term: 0,
        role: "leader",
        last_applied_index: shared.submit.last_applied_index(),
    };
    json(StatusCode::OK, &status)
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let items = shared.submit.count_by_state().await;
    let text = shared
        .metrics
        .render(items, shared.submit.last_applied_index(), 0, Some(NODE_ID));
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
