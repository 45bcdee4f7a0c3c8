//! The outermost service: names the route, picks the request id, authenticates, sends a
//! change to the leader when this member does not lead, answers a plain heartbeat itself, and
//! renders refusals and counts answers. What the handlers share lives in `error` and `extract`.

use std::convert::Infallible;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::error::{render_refusal, ApiError};
use super::route::{Route, UNMATCHED};
use super::{forward, work};
use crate::access::{Grant, Target};
use crate::app::Shared;
use crate::cluster_secret;
use crate::metrics::NOT_A_MEMBER;
use crate::mint::Mint;
use crate::origin::{RequestOrigin, ORIGIN};
use crate::raft::{ADMISSION_ROUTE, APPEND_ROUTE, SEED_ROUTE, SNAPSHOT_ROUTE, VOTE_ROUTE};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RESPONSE_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The one service in front of the router: names the route for the request counter, picks
/// the request id (the client's `x-request-id` when it is sane), checks credentials (every
/// route but `/healthz` and `/readyz`), renders any refusal as the envelope that carries the request id,
/// echoes the id as `request-id`, and counts the answer (`worklease_http_requests_total`).
///
/// One hand-written service rather than three `from_fn` layers: each of those costs a boxed
/// future and a clone of the inner service per request, a measurable share of a heartbeat.
/// And around the whole router rather than as its layer: `Router::layer` wraps every route
/// in a second boxed route, which is cloned, called and boxed again on every request (~1 700
/// instructions of a heartbeat, callgrind, `scripts/request-instructions.sh`). So the route
/// is named from the path ([`route_of`]), before the router matches it.
#[derive(Clone, Debug)]
pub(crate) struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Edge<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

/// How a request will be answered.
enum Answer<F> {
    /// By this node's route.
    Here(F),
    /// Refused at the edge.
    Refused(ApiError),
    /// Wherever the leader is (a replicated member that does not lead).
    AtLeader(Pin<Box<dyn Future<Output = Response> + Send>>),
    /// By the heartbeat route's own code (`work::renew`), without the router.
    Heartbeat(Request, HeartbeatIds),
}

/// Where a heartbeat path's ids are (byte ranges of the path, found by [`route_of`]), when
/// they need no percent-decoding: the edge answers such a heartbeat itself, with the route's code, instead
/// of through the router. The router's matching, its percent-decoded copies of the path
/// parameters, its matched-path extension and its boxed route futures were ~6 000
/// instructions of a heartbeat, more than everything else the server adds to a bare axum
/// route (callgrind, `scripts/request-instructions.sh`).
pub(super) struct HeartbeatIds {
    environment: Range<usize>,
    work: Range<usize>,
}

impl HeartbeatIds {
    /// The environment's and the work item's ids in `path` (the path they were found in).
    fn in_path<'p>(&self, path: &'p str) -> (&'p str, &'p str) {
        (&path[self.environment.clone()], &path[self.work.clone()])
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let (route, heartbeat) = route_of(request.uri().path(), request.method());
        let request_id = RequestId::of(request.headers(), &self.shared.mint);
        let internal = cluster_secret::is_internal(request.uri().path());
        if self.shared.submit.is_replicated() && !internal {
            // What only a member may say (origin and replay tags) is ignored from anyone else.
            cluster_secret::ignore_unless_member(
                self.shared.cluster_secret.as_ref(),
                request.headers_mut(),
            );
        }
        let path = request.uri().path();
        let target = match &heartbeat {
            Some(ids) => {
                let (environment, work) = ids.in_path(path);
                Target::with_ids(path, environment, work)
            }
            None => Target::path(path),
        };
        let grant = match route {
            // The members' own routes take the cluster secret, checked below, and nothing else.
            _ if internal => Ok(None),
            Some(route) if route.is_open() => Ok(None),
            Some(route) => self
                .shared
                .access
                .check(
                    route.opens(),
                    target,
                    request.headers(),
                    &self.shared.submit,
                )
                .map(Some),
            // No route: answered 404 by the router, but only to a caller with credentials.
            None => self
                .shared
                .access
                .check(
                    Route::Healthz.opens(),
                    target,
                    request.headers(),
                    &self.shared.submit,
                )
                .map(|_| None),
        };
        let answer = if route.is_some_and(Route::is_open) {
            Answer::Here(self.inner.call(request))
        } else if internal {
            // The members' own routes: the cluster secret alone opens them.
            let secret = self.shared.cluster_secret.as_ref();
            match cluster_secret::admit(secret, request.headers(), request.uri().path()) {
                Ok(()) => Answer::Here(self.inner.call(request)),
                Err(cluster_secret::NotAMember) => {
                    self.shared.metrics.credential_refused(NOT_A_MEMBER);
                    Answer::Refused(ApiError::own(
                        StatusCode::UNAUTHORIZED,
                        "authentication_error",
                        cluster_secret::NotAMember::MESSAGE.to_owned(),
                    ))
                }
            }
        } else if let Err(refusal) = grant {
            self.shared.metrics.credential_refused(refusal.reason());
            Answer::Refused(refusal.into())
        } else if route.is_some_and(Route::goes_to_leader) && !self.shared.submit.leads() {
            Answer::AtLeader(Box::pin(forward::route(
                self.shared.clone(),
                self.inner.clone(),
                request,
                request_id.as_str().to_owned(),
                route
                    .filter(|_| grant == Ok(Some(Grant::AtLeader)))
                    .map(Route::opens),
            )))
        } else if let Some(origin) = self
            .shared
            .submit
            .is_replicated()
            .then(|| RequestOrigin::of(request.headers()))
            .flatten()
        {
            // A change a follower forwarded: the write path logs its origin id with it.
            let answered = self.inner.call(request);
            Answer::AtLeader(Box::pin(async move {
                match ORIGIN.scope(origin, answered).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }))
        } else if let Some(ids) = heartbeat.filter(|_| request.method() == Method::POST) {
            Answer::Heartbeat(request, ids)
        } else {
            Answer::Here(self.inner.call(request))
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut response = match answer {
                Answer::Here(future) => match future.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Answer::Heartbeat(request, ids) => {
                    let (environment, item) = ids.in_path(request.uri().path());
                    work::renew(&shared, environment, item, request.uri().query())
                        .await
                        .into_response()
                }
                Answer::Refused(refusal) => refusal.into_response(),
                Answer::AtLeader(future) => future.await,
            };
            render_refusal(&mut response, || request_id.as_str());
            response
                .headers_mut()
                .insert(RESPONSE_REQUEST_ID, request_id.into_header());
            let label = route.map_or(UNMATCHED, Route::label);
            shared.metrics.request(label, response.status().as_u16());
            Ok(response)
        })
    }
}

/// A request's id: the client's, or `req_` and 32 hex digits minted here.
enum RequestId {
    Client(HeaderValue),
    Minted([u8; 36]),
}

impl RequestId {
    fn of(headers: &HeaderMap, mint: &Mint) -> Self {
        let client = headers.get(REQUEST_ID).filter(|value| {
            let id = value.as_bytes();
            !id.is_empty() && id.len() <= 128 && id.iter().all(u8::is_ascii_graphic)
        });
        match client {
            Some(value) => Self::Client(value.clone()),
            None => {
                let mut id = *b"req_00000000000000000000000000000000";
                mint.hex128_into(&mut id[4..]);
                Self::Minted(id)
            }
        }
    }

    fn as_str(&self) -> &str {
        let bytes = match self {
            Self::Client(value) => value.as_bytes(),
            Self::Minted(id) => id.as_slice(),
        };
        // Both are visible ASCII (checked above, or hex digits).
        std::str::from_utf8(bytes).unwrap_or("req_invalid")
    }

    fn into_header(self) -> HeaderValue {
        match self {
            Self::Client(value) => value,
            Self::Minted(id) => HeaderValue::from_bytes(&id)
                .unwrap_or_else(|_| HeaderValue::from_static("req_invalid")),
        }
    }
}

/// The route a request's path and method name, the same under both prefixes: the route
/// `super::router` matches it to, or `None` when it matches none. Mirrors the router's
/// templates (a `{param}` is one segment, which may be empty unless it ends the path; static
/// segments win; `HEAD` is served as `GET`); a test in `super` checks it against the router
/// itself. For a heartbeat whose ids hold no `%`, also where the ids are ([`HeartbeatIds`]).
pub(super) fn route_of(path: &str, method: &Method) -> (Option<Route>, Option<HeartbeatIds>) {
    match path {
        "/healthz" => return (Some(Route::Healthz), None),
        "/readyz" => return (Some(Route::Readyz), None),
        "/cluster" => return (Some(Route::Cluster), None),
        "/metrics" => return (Some(Route::Metrics), None),
        "/internal/digest" => return (Some(Route::Digest), None),
        APPEND_ROUTE => return (Some(Route::RaftAppend), None),
        VOTE_ROUTE => return (Some(Route::RaftVote), None),
        SNAPSHOT_ROUTE => return (Some(Route::RaftSnapshot), None),
        ADMISSION_ROUTE => return (Some(Route::RaftAdmission), None),
        SEED_ROUTE => return (Some(Route::RaftSeed), None),
        "/cluster/members" if method == Method::POST => return (Some(Route::AddMember), None),
        "/cluster/members" => return (Some(Route::ListMembers), None),
        "/cluster/snapshot" => return (Some(Route::Backup), None),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/cluster/members/") {
        let route = (!id.is_empty() && !id.contains('/')).then_some(Route::RemoveMember);
        return (route, None);
    }
    let read = method == Method::GET || method == Method::HEAD;
    let Some(rest) = path
        .strip_prefix("/api/v1/cloud")
        .or_else(|| path.strip_prefix("/v1"))
        .and_then(|tail| tail.strip_prefix("/environments"))
    else {
        return (None, None);
    };
    if rest.is_empty() {
        let route = if read {
            Route::ListEnvironments
        } else {
            Route::CreateEnvironment
        };
        return (Some(route), None);
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return (None, None);
    };
    // The slashes and any `%` found by the `memchr` crate's vector search (AVX2 where the CPU
    // has it), a few instructions per 32 bytes where a loop over the bytes takes ~10 a byte.
    let mut slashes = [rest.len(); 3];
    let mut found = 0;
    for at in memchr::memchr_iter(b'/', rest.as_bytes()) {
        if found == slashes.len() {
            return (None, None);
        }
        slashes[found] = at;
        found += 1;
    }
    let encoded = memchr::memchr(b'%', rest.as_bytes()).is_some();
    // Segment `n` (0: the environment's), if the path has it.
    let segment = |n: usize| -> Option<&str> {
        let start = match n {
            0 => 0,
            _ if n > found => return None,
            _ => slashes[n - 1] + 1,
        };
        let end = slashes.get(n).copied().unwrap_or(rest.len());
        rest.get(start..end)
    };
    let environment = segment(0).unwrap_or("");
    let route = match (segment(1), segment(2), segment(3)) {
        // A parameter ending the path must have text; one followed by more path need not.
        (None, None, None) if environment.is_empty() => None,
        (None, None, None) if read => Some(Route::RetrieveEnvironment),
        (None, None, None) if method == Method::DELETE => Some(Route::DeleteEnvironment),
        (None, None, None) => Some(Route::UpdateEnvironment),
        (Some("archive"), None, None) => Some(Route::ArchiveEnvironment),
        (Some("keys"), None, None) if read => Some(Route::ListEnvironmentKeys),
        (Some("keys"), None, None) => Some(Route::CreateEnvironmentKey),
        (Some("keys"), Some(key), None) if !key.is_empty() => Some(Route::RevokeEnvironmentKey),
        (Some("work"), None | Some(""), None) if !read => Some(Route::CreateWork),
        (Some("work"), None | Some(""), None) => Some(Route::ListWork),
        (Some("work"), Some("poll"), None) => Some(Route::Poll),
        (Some("work"), Some("stats"), None) => Some(Route::Stats),
        (Some("work"), Some(_), tail) => match tail {
            None if read => Some(Route::RetrieveWork),
            None => Some(Route::UpdateWork),
            Some("heartbeat") => Some(Route::Heartbeat),
            Some("ack") => Some(Route::Ack),
            Some("stop") => Some(Route::Stop),
            Some(_) => None,
        },
        _ => None,
    };
    // `rest` ends `path`, so its offsets shift by what precedes it.
    let offset = path.len() - rest.len();
    let ids = (route == Some(Route::Heartbeat) && !encoded).then(|| HeartbeatIds {
        environment: offset..offset + slashes[0],
        work: offset + slashes[1] + 1..offset + slashes[2],
    });
    (route, ids)
}
