//! The work endpoints (docs/contract.md §3): each handler parses with the crate's parsers, submits or
//! reads through the one write path, and renders with `worklease::json`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use worklease::json::{
    CreateWork, DeliveredWork, ListPage, StopWork, UpdateWork, Work, WorkHeartbeat, WorkQueueStats,
};
use worklease::{
    parse_worker_id, HeartbeatRequest, ListRequest, PollRequest, Polled, StopMode, WorkItem,
};

use super::error::{json, json_bytes, ApiError};
use super::extract::{excerpt, parse_json, read_body, worker_header, Ids, Query};
use crate::access::item_secret;
use crate::app::Shared;
use crate::submit::until;

type Handled = Result<Response, ApiError>;

/// `POST …/work`: `{"data": {"type": "session", "id": "sess_…"}, "metadata": {…}}`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    body: Body,
) -> Handled {
    let ids = Ids::of(ids)?;
    let body: CreateWork = parse_json(&read_body(body).await?)?.unwrap_or_default();
    let session = body.session()?;
    let metadata = body.metadata()?;
    let item = shared
        .submit
        .create_work(ids.environment(), session, metadata)
        .await?;
    Ok(json(StatusCode::OK, &Work(&item)))
}

/// `GET …/work/poll`: the oldest claimable item or `null`, waiting up to `block_ms` for one.
pub(crate) async fn poll(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Handled {
    let ids = Ids::of(ids)?;
    let query = Query::parse(uri.query());
    let request = PollRequest::parse(
        worker_header(&headers).as_deref(),
        query.get("reclaim_older_than_ms"),
        query.get("block_ms"),
    )?;
    let give_up =
        tokio::time::Instant::now() + Duration::from_millis(request.block_ms.map_or(0, u64::from));
    loop {
        // Registered before looking, so work created between the look and the wait still
        // wakes this poll.
        let ready = shared.submit.work_ready().notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let polled = shared.submit.poll(ids.environment(), &request).await?;
        let next_claimable_at = match polled {
            Polled::Delivered(item) => return delivered(&shared, &item).await,
            Polled::Empty { next_claimable_at } => next_claimable_at,
        };
        let left = give_up.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(json(StatusCode::OK, &Value::Null));
        }
        let wait = next_claimable_at.map_or(left, |at| left.min(until(at, shared.submit.now())));
        tokio::select! {
            () = &mut ready => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A delivered item with its `secret` (docs/contract.md §10), signed with the table's
/// item-secret key (set the first time one is needed).
async fn delivered(shared: &Arc<Shared>, item: &WorkItem) -> Handled {
    // On a task of its own: setting the key is a change of its own, which must not carry this
    // request's origin id (`crate::origin`, a task-local) as if it were this request.
    let setter = shared.clone();
    let key = tokio::spawn(async move { setter.submit.item_secret_key().await })
        .await
        .map_err(|error| ApiError::Unavailable(format!("the item-secret key: {error}")))??;
    let Some(delivery) = item_secret::Delivery::of(item) else {
        // A poll's answer always records its delivery; without one there is nothing to bind.
        return Ok(json(StatusCode::OK, &Work(item)));
    };
    let secret = item_secret::secret(&item_secret::sessions_token(&key, &delivery));
    Ok(json(
        StatusCode::OK,
        &DeliveredWork {
            item,
            secret: &secret,
        },
    ))
}

/// `POST …/work/{work_id}/ack`.
pub(crate) async fn ack(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
) -> Handled {
    let ids = Ids::of(ids)?;
    let worker = parse_worker_id(worker_header(&headers).as_deref())?;
    let updated = shared
        .submit
        .ack(ids.environment(), ids.work(), worker.as_ref())
        .await?;
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `POST …/work/{work_id}/heartbeat?expected_last_heartbeat=…&desired_ttl_seconds=…`.
pub(crate) async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    uri: Uri,
) -> Handled {
    // docs/contract.md §3.3: parameters are checked before anything else.
    let request = heartbeat_request(&shared, uri.query())?;
    let ids = Ids::of(ids)?;
    beat(&shared, ids.environment(), ids.work(), request).await
}

/// The heartbeat route for ids that need no decoding, called by the edge without the router
/// (`edge::HeartbeatIds`): the same steps as [`heartbeat`], in the same order.
pub(crate) async fn renew(
    shared: &Shared,
    environment: &str,
    work: &str,
    query: Option<&str>,
) -> Handled {
    let request = heartbeat_request(shared, query)?;
    beat(shared, environment, work, request).await
}

fn heartbeat_request(shared: &Shared, query: Option<&str>) -> Result<HeartbeatRequest, ApiError> {
    let query = Query::parse(query);
    HeartbeatRequest::parse(
        query.get("expected_last_heartbeat"),
        query.get("desired_ttl_seconds"),
    )
    .inspect_err(|_| shared.metrics.heartbeat_refused_early())
    .map_err(ApiError::from)
}

async fn beat(
    shared: &Shared,
    environment: &str,
    work: &str,
    request: HeartbeatRequest,
) -> Handled {
    let beat = shared.submit.heartbeat(environment, work, request).await?;
    Ok(json_bytes(StatusCode::OK, WorkHeartbeat(&beat).to_vec()))
}

/// `POST …/work/{work_id}/stop`, graceful unless `{"force": true}` (or `?force=true`).
pub(crate) async fn stop(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    uri: Uri,
    body: Body,
) -> Handled {
    let ids = Ids::of(ids)?;
    let query = Query::parse(uri.query());
    let from_query = match query.get("force") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("force must be true or false, found {:?}", excerpt(other)),
                Some("force"),
            ))
        }
    };
    let body: StopWork = parse_json(&read_body(body).await?)?.unwrap_or_default();
    let mode = if body.force.or(from_query).unwrap_or(false) {
        StopMode::Force
    } else {
        StopMode::Graceful
    };
    let updated = shared
        .submit
        .stop(ids.environment(), ids.work(), mode)
        .await?;
    if updated.changed {
        tracing::info!(
            environment_id = %updated.item.environment_id,
            work_id = %updated.item.id,
            state = %updated.item.state,
            force = mode == StopMode::Force,
            "work stopped"
        );
    }
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `GET …/work?limit=&page=&after_id=&before_id=`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    uri: Uri,
) -> Handled {
    let ids = Ids::of(ids)?;
    let query = Query::parse(uri.query());
    let request = ListRequest::parse(
        query.get("limit"),
        query.get("page"),
        query.get("after_id"),
        query.get("before_id"),
    )?;
    let page = shared.submit.list(ids.environment(), &request).await?;
    Ok(json(StatusCode::OK, &ListPage(&page)))
}

/// `GET …/work/{work_id}`.
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let item = shared.submit.get(ids.environment(), ids.work()).await?;
    Ok(json(StatusCode::OK, &Work(&item)))
}

/// `POST …/work/{work_id}`: `{"metadata": {"key": "value" | null}}`, a merge patch.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    body: Body,
) -> Handled {
    let ids = Ids::of(ids)?;
    let body: UpdateWork = parse_json(&read_body(body).await?)?.unwrap_or_default();
    let patch = body.metadata.unwrap_or_default();
    let updated = shared
        .submit
        .update_metadata(ids.environment(), ids.work(), &patch)
        .await?;
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `GET …/work/stats`.
pub(crate) async fn stats(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let stats = shared.submit.stats(ids.environment()).await?;
    Ok(json(StatusCode::OK, &WorkQueueStats(&stats)))
}
