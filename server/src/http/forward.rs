//! Any node answers (SPEC §8): a replicated member that does not lead hands each API request
//! to the leader and returns its answer, so clients need no redirect logic. While no leader is
//! known (an election) a request waits up to [`LEADER_WAIT`], then gets 503 with
//! `Retry-After: 1`, which the official SDK retries.
//!
//! A request is forwarded at most once: the leader it reaches may have just lost an election,
//! and then it waits for the next leader itself (or answers 503) instead of passing the
//! request on again, so a request never circles between nodes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::edge::{read_body, ApiError};
use crate::app::Shared;
use crate::raft::Leader;

/// How long a request waits for a leader to be known.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(2);

/// The longest a forwarded request may take at the leader: above the longest long poll.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Marks a request a member forwarded (its value: that member's id).
const FORWARDED_BY: HeaderName = HeaderName::from_static("x-worklease-forwarded-by");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether requests to `route` (an edge route name) go to the leader: every API route, but
/// not the node's own operations endpoints or Raft's internal routes.
pub(crate) fn goes_to_leader(route: &str) -> bool {
    !matches!(
        route,
        "healthz" | "cluster" | "metrics" | "internal" | "unmatched"
    )
}

/// Serves `request` where it belongs: here once this node leads, else at the leader.
pub(crate) async fn route<S>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request,
    request_id: String,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let forwarded = request.headers().contains_key(FORWARDED_BY);
    match shared.submit.leader(LEADER_WAIT).await {
        Some(Leader::Me) => {
            let ready = std::future::poll_fn(|cx| inner.poll_ready(cx)).await;
            let answered = match ready {
                Ok(()) => inner.call(request).await,
                Err(never) => match never {},
            };
            match answered {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        Some(Leader::At(leader, address)) if !forwarded => {
            match proxy(&shared, &address, request, &request_id).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(leader, %address, ?error, "the leader did not answer a forwarded request");
                    error.into_response()
                }
            }
        }
        Some(Leader::At(leader, _)) => ApiError::Unavailable(format!(
            "this node no longer leads (node {leader} does); retry"
        ))
        .into_response(),
        None => ApiError::Unavailable(format!(
            "no leader was elected within {} s; retry",
            LEADER_WAIT.as_secs()
        ))
        .into_response(),
    }
}

/// Sends `request` to the leader at `address` and returns its answer as it came.
async fn proxy(
    shared: &Shared,
    address: &str,
    request: Request,
    request_id: &str,
) -> Result<Response, ApiError> {
    let Some(durable) = shared.submit.durable() else {
        unreachable!("invariant: only replicated members forward")
    };
    let (parts, body) = request.into_parts();
    let body = read_body(body).await?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let mut outgoing = durable
        .links()
        .client()
        .request(parts.method, format!("http://{address}{path}"))
        .timeout(FORWARD_TIMEOUT);
    for (name, value) in &parts.headers {
        if ![
            HOST,
            CONNECTION,
            CONTENT_LENGTH,
            TRANSFER_ENCODING,
            REQUEST_ID,
        ]
        .contains(name)
        {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing
        .header(REQUEST_ID, request_id)
        .header(FORWARDED_BY, durable.node_id().to_string())
        .body(body)
        .send()
        .await
        .map_err(|error| unanswered(address, &error))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer
        .bytes()
        .await
        .map_err(|error| unanswered(address, &error))?;
    let mut response = (status, Body::from(bytes)).into_response();
    for (name, value) in &headers {
        if ![CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING].contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key("retry-after")
    {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// The leader could not be reached, or broke off: for a change, its outcome is unknown
/// (the README's client rule covers it).
fn unanswered(address: &str, error: &reqwest::Error) -> ApiError {
    ApiError::Unavailable(format!(
        "the leader at {address} did not answer ({error}); retry"
    ))
}
