//! Any node answers (docs/contract.md §8): a replicated member that does not lead hands each API request
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

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::error::ApiError;
use super::extract::read_body;
use crate::access::{Opens, Target};
use crate::app::Shared;
use crate::cluster_secret;
use crate::origin::{RequestOrigin, ORIGIN, ORIGIN_HEADER, REPLAY_HEADER};
use crate::raft::{Leader, NodeId};

/// How long a request waits for a leader to be known.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(2);

/// The longest a forwarded request may take at the leader: above the longest long poll.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Marks a request a member forwarded (its value: that member's id).
const FORWARDED_BY: HeaderName = HeaderName::from_static("x-worklease-forwarded-by");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Serves `request` where it belongs: here once this node leads, else at the leader.
/// `unchecked`: the route, when the request's credential was left for the leader to check
/// (`crate::access::Grant::AtLeader`); checked here should this node lead by now.
pub(crate) async fn route<S>(
    shared: Arc<Shared>,
    inner: S,
    request: Request,
    request_id: String,
    unchecked: Option<Opens>,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let forwarded = request.headers().contains_key(FORWARDED_BY);
    match shared.submit.leader(LEADER_WAIT).await {
        Some(Leader::Me) => {
            if let Err(refused) = check_here(&shared, unchecked, request.uri(), request.headers()) {
                return refused.into_response();
            }
            let origin = RequestOrigin::of(request.headers());
            serve_here(inner, request, origin).await
        }
        Some(Leader::At(leader, address)) if !forwarded => {
            let (parts, body) = request.into_parts();
            let body = match read_body(body).await {
                Ok(body) => body,
                Err(refusal) => return refusal.into_response(),
            };
            let sent = Sent {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                extensions: parts.extensions,
                body,
            };
            // A change to the table gets an origin id, so a broken forward can be replayed
            // exactly once. A membership change is not a table command (nothing records its
            // answer) and is safe to send again by itself: it is not replayed.
            let origin = (sent.method != Method::GET
                && sent.method != Method::HEAD
                && !sent.uri.path().starts_with("/cluster/"))
            .then(|| shared.mint.value128());
            let first = proxy(&shared, &address, &sent, &request_id, origin, false).await;
            let (response, outcome) = match (first, origin) {
                (Ok(response), _) if response.status() != StatusCode::SERVICE_UNAVAILABLE => {
                    (response, "answered")
                }
                (first, Some(origin)) => {
                    if let Err(error) = &first {
                        tracing::warn!(leader, %address, ?error, "the leader did not answer a forwarded change; replaying it");
                    }
                    match replay(
                        &shared,
                        inner,
                        leader,
                        &sent,
                        &request_id,
                        origin,
                        unchecked,
                    )
                    .await
                    {
                        Some(response) => (response, "replayed"),
                        None => (
                            first.unwrap_or_else(IntoResponse::into_response),
                            "unavailable",
                        ),
                    }
                }
                (Ok(response), None) => (response, "unavailable"),
                (Err(error), None) => {
                    tracing::warn!(leader, %address, ?error, "the leader did not answer a forwarded request");
                    (error.into_response(), "unavailable")
                }
            };
            shared.metrics.forwarded(outcome);
            response
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

/// A request as it arrived, kept to be sent again.
struct Sent {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// As they arrived (the edge runs before the router, so a replay served here is routed
    /// afresh and gets its path parameters then).
    extensions: axum::http::Extensions,
    body: Bytes,
}

/// How long a follower keeps trying to replay a change whose forward broke.
const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Sends a change whose first forward got no answer (or a 503) again, tagged as a replay of
/// `origin`, to whichever member leads now, until one answers or [`REPLAY_WAIT`] passes:
/// the leader answers from its record if the first attempt was applied (`crate::origin`).
/// `None` when no leader answered.
async fn replay<S>(
    shared: &Shared,
    inner: S,
    failed: NodeId,
    sent: &Sent,
    request_id: &str,
    origin: u128,
    unchecked: Option<Opens>,
) -> Option<Response>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    let mut tries = 0;
    while tokio::time::Instant::now() < deadline {
        tries += 1;
        match shared.submit.leader(LEADER_WAIT).await {
            Some(Leader::Me) => {
                if let Err(refused) = check_here(shared, unchecked, &sent.uri, &sent.headers) {
                    return Some(refused.into_response());
                }
                let mut request = Request::new(Body::from(sent.body.clone()));
                *request.method_mut() = sent.method.clone();
                *request.uri_mut() = sent.uri.clone();
                *request.headers_mut() = sent.headers.clone();
                *request.extensions_mut() = sent.extensions.clone();
                let origin = RequestOrigin {
                    id: origin,
                    replay: true,
                };
                return Some(serve_here(inner, request, Some(origin)).await);
            }
            // The member that just failed may not know yet that it is gone: give it a moment.
            Some(Leader::At(leader, _)) if leader == failed && tries == 1 => {}
            Some(Leader::At(_, address)) => {
                if let Ok(response) =
                    proxy(shared, &address, sent, request_id, Some(origin), true).await
                {
                    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                        return Some(response);
                    }
                }
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The credential check a request left for the leader, made here now that this node leads:
/// the refusal's answer, if it is refused.
fn check_here(
    shared: &Shared,
    unchecked: Option<Opens>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(route) = unchecked else {
        return Ok(());
    };
    shared
        .access
        .check_here(route, Target::path(uri.path()), headers, &shared.submit)
        .map_err(|refusal| {
            shared.metrics.credential_refused(refusal.reason());
            ApiError::from(refusal)
        })
}

/// Runs this node's own route for `request`, with its origin (if any) visible to the write
/// path.
async fn serve_here<S>(mut inner: S, request: Request, origin: Option<RequestOrigin>) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let ready = std::future::poll_fn(|cx| inner.poll_ready(cx)).await;
    if let Err(never) = ready {
        match never {}
    }
    let answered = match origin {
        Some(origin) => ORIGIN.scope(origin, inner.call(request)).await,
        None => inner.call(request).await,
    };
    match answered {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Sends a request to the leader at `address` and returns its answer as it came.
async fn proxy(
    shared: &Shared,
    address: &str,
    sent: &Sent,
    request_id: &str,
    origin: Option<u128>,
    replay: bool,
) -> Result<Response, ApiError> {
    let Some(durable) = shared.submit.durable() else {
        unreachable!("invariant: only replicated members forward")
    };
    let path = sent
        .uri
        .path_and_query()
        .map_or_else(|| sent.uri.path(), |p| p.as_str());
    // The cluster secret in its own header (`member_call`), and the client's headers as they
    // came, its credential included: the leader checks that credential as if the client had
    // called it. Internal headers are this member's to set, never passed on.
    let mut outgoing = durable
        .links()
        .member_call(sent.method.clone(), address, path)
        .timeout(FORWARD_TIMEOUT);
    for (name, value) in &sent.headers {
        if ![
            HOST,
            CONNECTION,
            CONTENT_LENGTH,
            TRANSFER_ENCODING,
            REQUEST_ID,
        ]
        .contains(name)
            && !name.as_str().starts_with(cluster_secret::INTERNAL_PREFIX)
        {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(origin) = origin {
        outgoing = outgoing.header(ORIGIN_HEADER, RequestOrigin::header(origin));
        if replay {
            outgoing = outgoing.header(REPLAY_HEADER, "1");
        }
    }
    let answer = outgoing
        .header(REQUEST_ID, request_id)
        .header(FORWARDED_BY, durable.node_id().to_string())
        .body(sent.body.clone())
        .send()
        .await
        .map_err(|error| unanswered(address, &error))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer
        .bytes()
        .await
        .map_err(|error| unanswered(address, &error))?;
    if durable.links().drops_answers() {
        return Err(ApiError::Unavailable(format!(
            "the answer from {address} was dropped (a test's fault injection)"
        )));
    }
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
/// (the client's rule in docs/api.md, "An ambiguous outcome", covers it).
fn unanswered(address: &str, error: &reqwest::Error) -> ApiError {
    ApiError::Unavailable(format!(
        "the leader at {address} did not answer ({error}); retry"
    ))
}
