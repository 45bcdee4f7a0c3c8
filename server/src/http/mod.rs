//! The HTTP edge: the routes under both prefixes, the operations endpoints, and the layers
//! every request passes (counting, request ids, authentication).

use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::RawPathParams;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

use crate::app::Shared;

mod edge;
mod environments;
mod forward;
mod internal;
mod ops;
mod work;

pub(crate) use edge::ApiError;

/// Every route under both prefixes, plus `/healthz`, `/cluster` and `/metrics`, inside the one
/// edge layer (request ids, authentication but for `/healthz`, counting).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    // Each route under both prefixes, registered whole rather than nested: a nested router
    // rebuilds the request's URI and matched path on every request.
    for prefix in ["/api/v1/cloud", "/v1"] {
        let environments = format!("{prefix}/environments");
        let work = format!("{environments}/{{environment_id}}/work");
        let environment = format!("{environments}/{{environment_id}}");
        router = router
            .route(
                &environments,
                post(environments::create).get(environments::list),
            )
            .route(
                &environment,
                get(environments::retrieve)
                    .post(environments::update)
                    .delete(environments::delete),
            )
            .route(
                &format!("{environment}/archive"),
                post(environments::archive),
            )
            .route(&work, get(work::list).post(work::create))
            .route(&format!("{work}/"), get(work::list))
            .route(&format!("{work}/poll"), get(work::poll))
            .route(&format!("{work}/stats"), get(work::stats))
            .route(
                &format!("{work}/{{work_id}}"),
                get(work::retrieve).post(work::update),
            )
            .route(&format!("{work}/{{work_id}}/ack"), post(work::ack))
            .route(
                &format!("{work}/{{work_id}}/heartbeat"),
                post(work::heartbeat),
            )
            .route(&format!("{work}/{{work_id}}/stop"), post(work::stop));
    }
    router
        .route("/cluster", get(ops::cluster))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route(crate::raft::APPEND_ROUTE, post(internal::append))
        .route(crate::raft::VOTE_ROUTE, post(internal::vote))
        .route(crate::raft::SNAPSHOT_ROUTE, post(internal::snapshot))
        .route("/internal/digest", get(internal::digest))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(edge::EdgeLayer(shared.clone()))
        .with_state(shared)
}

async fn unknown_route() -> ApiError {
    ApiError::own(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "no such route".to_owned(),
    )
}

async fn wrong_method() -> ApiError {
    ApiError::own(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "this route does not take that method".to_owned(),
    )
}

/// A request's path ids, as sent (percent-decoded), without copying them.
pub(crate) struct Ids(RawPathParams);

impl Ids {
    /// Path segments that do not even decode are malformed ids: 404, like any unknown id.
    fn of(params: Result<RawPathParams, RawPathParamsRejection>) -> Result<Self, ApiError> {
        params.map(Self).map_err(|rejection| {
            ApiError::own(
                StatusCode::NOT_FOUND,
                "not_found_error",
                format!("not found: {rejection}"),
            )
        })
    }

    /// A named segment; a missing one is empty, which no id is (so: not found).
    fn named(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value)
    }

    fn environment(&self) -> &str {
        self.named("environment_id")
    }

    fn work(&self) -> &str {
        self.named("work_id")
    }
}

/// The start of a caller's text, for messages.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
