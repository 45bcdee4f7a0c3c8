//! The HTTP edge: the routes under both prefixes, the operations endpoints, and the layers
//! every request passes (counting, request ids, authentication).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::app::Shared;

mod edge;
mod environments;
mod ops;
mod work;

pub(crate) use edge::ApiError;

/// Every route under both prefixes, plus `/cluster` and `/metrics`, behind authentication and
/// the request-id layer; `/healthz` answers without credentials.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/environments", post(environments::create))
        .route(
            "/environments/{environment_id}/work",
            get(work::list).post(work::create),
        )
        .route("/environments/{environment_id}/work/", get(work::list))
        .route("/environments/{environment_id}/work/poll", get(work::poll))
        .route(
            "/environments/{environment_id}/work/stats",
            get(work::stats),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}",
            get(work::retrieve).post(work::update),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/ack",
            post(work::ack),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/heartbeat",
            post(work::heartbeat),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/stop",
            post(work::stop),
        );
    let authenticated = Router::new()
        .nest("/api/v1/cloud", routes.clone())
        .nest("/v1", routes)
        .route("/cluster", get(ops::cluster))
        .route("/metrics", get(ops::metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            edge::authenticate,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .merge(authenticated)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            edge::request_ids,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), edge::count))
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

/// Path segments that do not even decode are malformed ids: 404, like any unknown id.
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(segments)| segments).map_err(|rejection| {
        ApiError::own(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("not found: {rejection}"),
        )
    })
}

/// The start of a caller's text, for messages.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
