//! Embedding a `LeaseTable` in an axum server: the heartbeat and ack routes, and the sweeper
//! task that applies lapses on time and purges old history.
//!
//! Every request follows the same loop: parse the raw request with the crate's parsers, call
//! the table with `now`, render the typed answer (or the error envelope), and tell the sweeper
//! when its next wake-up may have moved earlier. The sweeper sleeps until `next_wakeup()`,
//! sweeps, logs the transitions and purges what stopped more than a day ago.
//!
//! ```sh
//! cargo run --example axum_embedding --features serde
//! # it prints the ids of the one environment and item it creates, and curl lines to try
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use tokio::sync::Notify;
use worklease::json::{ErrorEnvelope, Work, WorkHeartbeat};
use worklease::{
    parse_worker_id, Config, EnvironmentKind, Error, HeartbeatRequest, LeaseTable, Metadata,
    PollRequest, WorkId,
};

/// How long stopped items stay readable before the sweeper purges them.
const KEEP_STOPPED: chrono::Duration = chrono::Duration::days(1);

/// The table and the sweeper's alarm clock, shared by every handler.
struct Shared {
    table: Mutex<LeaseTable>,
    /// Rung when an operation may have moved `next_wakeup()` earlier (an ack opens a lease).
    wakeup_moved: Notify,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, LeaseTable> {
        // A handler that panicked while holding the lock left the table as its last whole
        // operation left it: operations change nothing until they cannot fail.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = Arc::new(Shared {
        table: Mutex::new(LeaseTable::new(Config::default())),
        wakeup_moved: Notify::new(),
    });
    let (environment, work) = seed(&shared)?;

    tokio::spawn(sweeper(Arc::clone(&shared)));
    let app = Router::new()
        .route("/v1/environments/{environment}/work/{work}/ack", post(ack))
        .route(
            "/v1/environments/{environment}/work/{work}/heartbeat",
            post(heartbeat),
        )
        .with_state(shared);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!(
        "http://{}/v1/environments/{environment}/work/{work}",
        listener.local_addr()?
    );
    println!("curl -s -X POST {base}/ack");
    println!("curl -s -X POST '{base}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'");
    axum::serve(listener, app).await?;
    Ok(())
}

/// One self-hosted environment with one queued item, polled once so it can be acked.
fn seed(shared: &Shared) -> Result<(String, String), Box<dyn std::error::Error>> {
    let now = Utc::now();
    let mut table = shared.table();
    let environment = "env_embedding".parse()?;
    table.register_environment(environment, EnvironmentKind::SelfHosted)?;
    let work = WorkId::mint(now.into(), 0, rand_seed());
    table.create_work(
        "env_embedding",
        work.clone(),
        "sess_01".parse()?,
        Metadata::new(),
        now,
    )?;
    table.poll("env_embedding", &PollRequest::default(), now)?;
    Ok(("env_embedding".to_owned(), work.to_string()))
}

/// `POST …/{work}/ack`: queued → starting, which opens a lease the sweeper must watch.
async fn ack(
    State(shared): State<Arc<Shared>>,
    Path((environment, work)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // 1. Parse: a bad header is a 400 naming it, before anything is looked up.
    let worker = match parse_worker_id(headers.get("worker-id").and_then(|v| v.to_str().ok())) {
        Ok(worker) => worker,
        Err(error) => return refuse(&error),
    };
    // 2. Call, with `now`; path ids go in as text (a malformed one is a 404, like an unknown one).
    let acked = shared
        .table()
        .ack(&environment, &work, worker.as_ref(), Utc::now());
    match acked {
        Ok(updated) => {
            // 4. The new lease's deadline may be earlier than the sweeper's sleep.
            shared.wakeup_moved.notify_waiters();
            // 3. Render the documented shape.
            json(StatusCode::OK, serde_json::to_vec(&Work(&updated.item)))
        }
        Err(error) => refuse(&error),
    }
}

/// `POST …/{work}/heartbeat?expected_last_heartbeat=&desired_ttl_seconds=`.
async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    Path((environment, work)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let (mut expected, mut ttl) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*key {
            "expected_last_heartbeat" => expected = Some(value),
            "desired_ttl_seconds" => ttl = Some(value),
            _ => {} // unknown parameters are ignored, as the official SDKs add their own
        }
    }
    let request = match HeartbeatRequest::parse(expected.as_deref(), ttl.as_deref()) {
        Ok(request) => request,
        Err(error) => return refuse(&error),
    };
    // A renewal only moves a deadline later, so the sweeper need not wake.
    let beat = shared
        .table()
        .heartbeat(&environment, &work, request, Utc::now());
    match beat {
        Ok(beat) => json(StatusCode::OK, Ok(WorkHeartbeat(&beat).to_vec())),
        Err(error) => refuse(&error),
    }
}

/// The error envelope, with the status the error maps to.
fn refuse(error: &Error) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(
        status,
        serde_json::to_vec(&ErrorEnvelope::of(error, "req_example")),
    )
}

fn json(status: StatusCode, body: Result<Vec<u8>, serde_json::Error>) -> Response {
    match body {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(body),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Sweeps at `next_wakeup()` (step 4) and purges (step 5): lapses are applied and logged when
/// due, not only when a request happens to touch the table, and stopped items do not pile up.
async fn sweeper(shared: Arc<Shared>) {
    loop {
        // Registered before reading the wake-up, so a notification in between is not lost.
        let moved = shared.wakeup_moved.notified();
        let wakeup = shared.table().next_wakeup();
        let sleep = match wakeup {
            Some(at) => (at.to_datetime() - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = moved => continue,
        }
        let now = Utc::now();
        let mut table = shared.table();
        for lapse in table.sweep(now) {
            println!(
                "lease lapsed: {} {} -> {} at {}",
                lapse.work_id, lapse.from, lapse.to, lapse.at
            );
        }
        let purged = table.purge_stopped(now - KEEP_STOPPED, now);
        if purged > 0 {
            println!(
                "purged {purged} items stopped before {}",
                now - KEEP_STOPPED
            );
        }
    }
}

/// Varies the minted ids between runs; a real server uses a random source.
fn rand_seed() -> u64 {
    let nanos = Utc::now().timestamp_subsec_nanos();
    u64::from(nanos) ^ u64::from(std::process::id()) << 32
}
