//! The routes: each handler parses with the crate's parsers, calls the table under the lock
//! with `now` read here at the edge, and renders with `worklease::json`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Router};
use chrono::Utc;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use worklease::json::{
    CreateWork, ListPage, StopWork, UpdateWork, Work, WorkHeartbeat, WorkQueueStats,
};
use worklease::{
    parse_worker_id, EnvironmentId, EnvironmentKind, HeartbeatRequest, LeaseTable, ListRequest,
    PollRequest, Polled, StopMode, Timestamp, WorkId, WorkState,
};

use crate::edge::{self, json, parse_json, read_body, worker_header, ApiError, Mint, Query};

/// What every request shares: the table behind one lock, and the two wake-up signals.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) table: Mutex<LeaseTable>,
    /// A work item may have become claimable: long polls look again.
    pub(crate) work_ready: Notify,
    /// The table's next wake-up may have moved: the sweeper looks again.
    pub(crate) schedule: Notify,
    pub(crate) token: String,
    pub(crate) mint: Mint,
    /// How long stopped items are kept (`--keep-stopped-seconds`); `None`: forever.
    pub(crate) keep_stopped: Option<Duration>,
    /// The latest instant an id was minted at (Unix µs), so ids keep sorting in creation order
    /// even if the wall clock steps back.
    minted_at: AtomicI64,
}

impl Shared {
    pub(crate) fn new(table: LeaseTable, token: String) -> Self {
        Self {
            table: Mutex::new(table),
            work_ready: Notify::new(),
            schedule: Notify::new(),
            token,
            mint: Mint::new(),
            keep_stopped: None,
            minted_at: AtomicI64::new(i64::MIN),
        }
    }

    /// A new id's time and sequence. Called under the table lock, so ids sort in the order
    /// the table receives them: the time never goes back and the sequence breaks ties.
    fn mint_inputs(&self, now: Timestamp) -> (Timestamp, u64, u64) {
        let previous = self
            .minted_at
            .fetch_max(now.unix_micros(), Ordering::Relaxed);
        let at = Timestamp::from_unix_micros(previous.max(now.unix_micros()));
        let sequence = self.mint.sequence();
        (at, sequence, self.mint.entropy(sequence, 1))
    }
}

type Handled = Result<Response, ApiError>;

/// The time of this request: the one clock read the table's callers make.
fn now() -> Timestamp {
    Timestamp::from(Utc::now())
}

/// How long from `now` until `at` (zero when it is past).
/// A duration in whole microseconds, saturated.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn until(at: Timestamp, now: Timestamp) -> Duration {
    let micros = at.unix_micros().saturating_sub(now.unix_micros()).max(0);
    Duration::from_micros(micros.unsigned_abs())
}

/// Every route under both prefixes, behind authentication and the request-id layer.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/environments", post(create_environment))
        .route(
            "/environments/{environment_id}/work",
            get(list).post(create_work),
        )
        .route("/environments/{environment_id}/work/", get(list))
        .route("/environments/{environment_id}/work/poll", get(poll))
        .route("/environments/{environment_id}/work/stats", get(stats))
        .route(
            "/environments/{environment_id}/work/{work_id}",
            get(retrieve).post(update),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/ack",
            post(ack),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/heartbeat",
            post(heartbeat),
        )
        .route(
            "/environments/{environment_id}/work/{work_id}/stop",
            post(stop),
        );
    Router::new()
        .nest("/api/v1/cloud", routes.clone())
        .nest("/v1", routes)
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            edge::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            edge::request_ids,
        ))
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

/// The environment object a create returns: the documented fields first, then the ones the
/// Anthropic SDK's `BetaEnvironment` also reads.
#[derive(Debug, Serialize)]
struct EnvironmentObject<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    config: EnvironmentConfig,
    metadata: serde_json::Map<String, Value>,
    description: Option<String>,
    created_at: &'a str,
    updated_at: &'a str,
    archived_at: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EnvironmentConfig {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `POST /environments`: `{"name": …, "config": {"type": "self_hosted" | "cloud"}}`.
async fn create_environment(State(shared): State<Arc<Shared>>, body: Body) -> Handled {
    let body: Value = parse_json(&read_body(body).await?)?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required".to_owned(), None))?;
    let name = match body.get("name") {
        Some(Value::String(name)) if !name.is_empty() && name.len() <= 256 => name.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "name must be a string of 1 to 256 bytes".to_owned(),
                Some("name"),
            ))
        }
    };
    let kind = match body.get("config").map(|config| config.get("type")) {
        None | Some(Some(Value::Null)) => EnvironmentKind::SelfHosted,
        Some(Some(Value::String(kind))) if kind == "self_hosted" => EnvironmentKind::SelfHosted,
        Some(Some(Value::String(kind))) if kind == "cloud" => EnvironmentKind::Cloud,
        Some(_) => {
            return Err(ApiError::bad_request(
                "config.type must be \"self_hosted\" or \"cloud\"".to_owned(),
                Some("config"),
            ))
        }
    };
    let (now, id) = {
        let mut table = shared.table.lock();
        let now = now();
        let (at, sequence, entropy) = shared.mint_inputs(now);
        let id = EnvironmentId::mint(at, sequence, entropy);
        table.register_environment(id.clone(), kind)?;
        (now, id)
    };
    let created_at = now.to_rfc3339();
    let environment = EnvironmentObject {
        id: id.to_string(),
        kind: "environment",
        name,
        config: EnvironmentConfig {
            kind: kind.as_str(),
        },
        metadata: serde_json::Map::new(),
        description: None,
        created_at: created_at.as_str(),
        updated_at: created_at.as_str(),
        archived_at: None,
    };
    eprintln!("{now} environment {id} created ({})", kind.as_str());
    Ok(json(StatusCode::OK, &environment))
}

/// `POST …/work`: `{"data": {"type": "session", "id": "sess_…"}, "metadata": {…}}`.
async fn create_work(
    State(shared): State<Arc<Shared>>,
    environment: Result<Path<String>, PathRejection>,
    body: Body,
) -> Handled {
    let environment = path(environment)?;
    let body: CreateWork = parse_json(&read_body(body).await?)?.unwrap_or_default();
    let session = body.session()?;
    let metadata = body.metadata()?;
    let item = {
        let mut table = shared.table.lock();
        let now = now();
        let (at, sequence, entropy) = shared.mint_inputs(now);
        let id = WorkId::mint(at, sequence, entropy);
        table.create_work(environment.as_str(), id, session, metadata, now)?
    };
    shared.work_ready.notify_waiters();
    shared.schedule.notify_one();
    Ok(json(StatusCode::OK, &Work(&item)))
}

/// `GET …/work/poll`: the oldest claimable item or `null`, waiting up to `block_ms` for one.
async fn poll(
    State(shared): State<Arc<Shared>>,
    environment: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Handled {
    let environment = path(environment)?;
    let query = Query::parse(query.as_deref());
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
        let ready = shared.work_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let now = now();
        let polled = shared
            .table
            .lock()
            .poll(environment.as_str(), &request, now)?;
        let next_claimable_at = match polled {
            Polled::Delivered(item) => {
                shared.schedule.notify_one();
                return Ok(json(StatusCode::OK, &Work(&item)));
            }
            Polled::Empty { next_claimable_at } => next_claimable_at,
        };
        let left = give_up.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(json(StatusCode::OK, &Value::Null));
        }
        let wait = next_claimable_at.map_or(left, |at| left.min(until(at, now)));
        tokio::select! {
            () = &mut ready => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// `POST …/work/{work_id}/ack`.
async fn ack(
    State(shared): State<Arc<Shared>>,
    ids: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Handled {
    let (environment, work) = path(ids)?;
    let worker = parse_worker_id(worker_header(&headers).as_deref())?;
    let updated =
        shared
            .table
            .lock()
            .ack(environment.as_str(), work.as_str(), worker.as_ref(), now())?;
    shared.schedule.notify_one();
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `POST …/work/{work_id}/heartbeat?expected_last_heartbeat=…&desired_ttl_seconds=…`.
async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    ids: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Handled {
    let query = Query::parse(query.as_deref());
    // SPEC §3.3: parameters are checked before anything else.
    let request = HeartbeatRequest::parse(
        query.get("expected_last_heartbeat"),
        query.get("desired_ttl_seconds"),
    )?;
    let (environment, work) = path(ids)?;
    let beat =
        shared
            .table
            .lock()
            .heartbeat(environment.as_str(), work.as_str(), request, now())?;
    shared.schedule.notify_one();
    Ok(json(StatusCode::OK, &WorkHeartbeat(&beat)))
}

/// `POST …/work/{work_id}/stop`, graceful unless `{"force": true}` (or `?force=true`).
async fn stop(
    State(shared): State<Arc<Shared>>,
    ids: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Handled {
    let (environment, work) = path(ids)?;
    let query = Query::parse(query.as_deref());
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
        .table
        .lock()
        .stop(environment.as_str(), work.as_str(), mode, now())?;
    if updated.changed {
        shared.schedule.notify_one();
        if updated.item.state == WorkState::Stopped {
            eprintln!("{} work {} stopped", now(), updated.item.id);
        }
    }
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `GET …/work?limit=&page=&after_id=&before_id=`.
async fn list(
    State(shared): State<Arc<Shared>>,
    environment: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Handled {
    let environment = path(environment)?;
    let query = Query::parse(query.as_deref());
    let request = ListRequest::parse(
        query.get("limit"),
        query.get("page"),
        query.get("after_id"),
        query.get("before_id"),
    )?;
    let page = shared
        .table
        .lock()
        .list(environment.as_str(), &request, now())?;
    Ok(json(StatusCode::OK, &ListPage(&page)))
}

/// `GET …/work/{work_id}`.
async fn retrieve(
    State(shared): State<Arc<Shared>>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Handled {
    let (environment, work) = path(ids)?;
    let item = shared
        .table
        .lock()
        .get(environment.as_str(), work.as_str(), now())?;
    Ok(json(StatusCode::OK, &Work(&item)))
}

/// `POST …/work/{work_id}`: `{"metadata": {"key": "value" | null}}`, a merge patch.
async fn update(
    State(shared): State<Arc<Shared>>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Handled {
    let (environment, work) = path(ids)?;
    let body: UpdateWork = parse_json(&read_body(body).await?)?.unwrap_or_default();
    let patch = body.metadata.unwrap_or_default();
    let updated =
        shared
            .table
            .lock()
            .update_metadata(environment.as_str(), work.as_str(), &patch, now())?;
    Ok(json(StatusCode::OK, &Work(&updated.item)))
}

/// `GET …/work/stats`.
async fn stats(
    State(shared): State<Arc<Shared>>,
    environment: Result<Path<String>, PathRejection>,
) -> Handled {
    let environment = path(environment)?;
    let stats = shared.table.lock().stats(environment.as_str(), now())?;
    Ok(json(StatusCode::OK, &WorkQueueStats(&stats)))
}

/// The start of a caller's text, for messages.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Expires lapsed leases when they are due, logs each transition, and wakes long polls when
/// an item is queued again. Sleeps until the table's next wake-up or until an operation may
/// have moved it.
///
/// With `--keep-stopped-seconds`, it also purges the items stopped longer ago than that, every
/// so often (the retention, at most a minute), so the table's memory follows its live work.
pub(crate) async fn sweeper(shared: Arc<Shared>) {
    let purge_every = shared
        .keep_stopped
        .map(|keep| keep.clamp(Duration::from_secs(1), Duration::from_secs(60)));
    let mut last_purge: Option<Timestamp> = None;
    loop {
        let changed = shared.schedule.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = now();
        let purge_due = purge_every.is_some_and(|every| {
            last_purge.map_or(true, |at: Timestamp| {
                now.unix_micros().saturating_sub(at.unix_micros()) >= micros(every)
            })
        });
        let (transitions, next, purged) = {
            let mut table = shared.table.lock();
            let purged = match shared.keep_stopped {
                Some(keep) if purge_due => {
                    Some(table.purge_stopped(now.saturating_sub_micros(micros(keep)), now))
                }
                Some(_) | None => None,
            };
            (table.sweep(now), table.next_wakeup(), purged)
        };
        if let Some(purged) = purged {
            last_purge = Some(now);
            if purged > 0 {
                eprintln!("{now} purged {purged} stopped item(s)");
            }
        }
        let mut requeued = false;
        for transition in &transitions {
            requeued |= transition.to == WorkState::Queued;
            eprintln!(
                "{} lease lapsed: {}/{} {} -> {} (lapses: {})",
                transition.at,
                transition.environment_id,
                transition.work_id,
                transition.from,
                transition.to,
                transition.lapses
            );
        }
        if requeued {
            shared.work_ready.notify_waiters();
        }
        // With nothing scheduled, wait for an operation to say otherwise.
        let wait = next.map_or(Duration::from_secs(3600), |at| until(at, now));
        let wait = purge_every.map_or(wait, |every| wait.min(every));
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
