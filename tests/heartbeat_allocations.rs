//! The heartbeat path allocates nothing: success, 412, 409 and 404, on both tables, with ids
//! given parsed or as text; nor does formatting or parsing a token.

// `GlobalAlloc` is an unsafe trait: counting allocations needs `unsafe impl`. The crate itself
// forbids unsafe code; this test is a separate crate and only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentId, EnvironmentKind, HeartbeatRequest, LeaseTable,
    Metadata, Precondition, StopMode, Timestamp, WorkId,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

const ENV: &str = "env_019e64e01a137caf953ac2ac7b42ec5c";
/// Minted ids (32 lowercase hex digits, held inline) …
const MINTED: [&str; 3] = [
    "work_019f3be4fd2475d9a784bf2c739e1194",
    "work_019f3be4fd2475d9a784bf2c739e1195",
    "work_019f3be4fd2475d9a784bf2c739e1196",
];
/// … and caller-chosen ones, whose bodies a table holds as shared text.
const CHOSEN: [&str; 3] = ["work_build42", "work_build43", "work_nothere"];
const LEASED: usize = 0;
const QUEUED: usize = 1;
const UNKNOWN: usize = 2;
const T0: i64 = 1_782_893_706_120_394;

fn at(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + micros)
}

/// Checks the four heartbeat outcomes through `beat`, which takes the index of a work id in
/// `WORK` (leased, queued, unknown), the request and the time.
fn outcomes(
    mut beat: impl FnMut(usize, HeartbeatRequest, Timestamp) -> Result<Option<Timestamp>, u16>,
) {
    let unconditional = HeartbeatRequest::default();
    // Warm up: the first renewal may move the lease within the deadline index.
    let token = beat(LEASED, unconditional, at(1))
        .expect("leased")
        .expect("renewed");
    let (n, result) = allocations(|| beat(LEASED, unconditional, at(2)));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(n, 0, "heartbeat success allocated");
    let echoed = HeartbeatRequest {
        precondition: Precondition::LastHeartbeat(
            result.expect("checked").expect("a renewal has a token"),
        ),
        desired_ttl_seconds: None,
    };
    let (n, result) = allocations(|| beat(LEASED, echoed, at(3)));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(n, 0, "heartbeat with echoed token allocated");
    let stale = HeartbeatRequest {
        precondition: Precondition::LastHeartbeat(token),
        desired_ttl_seconds: None,
    };
    let (n, result) = allocations(|| beat(LEASED, stale, at(4)));
    assert_eq!((n, result), (0, Err(412)), "412 refusal");
    let (n, result) = allocations(|| beat(QUEUED, unconditional, at(5)));
    assert_eq!((n, result), (0, Err(409)), "409 refusal");
    let (n, result) = allocations(|| beat(UNKNOWN, unconditional, at(6)));
    assert_eq!((n, result), (0, Err(404)), "404 refusal");
}

#[test]
fn heartbeats_with_minted_ids_never_allocate() {
    heartbeats_never_allocate(ENV, MINTED, 0);
}

#[test]
fn heartbeats_with_caller_chosen_ids_never_allocate() {
    heartbeats_never_allocate("env_prod", CHOSEN, 0);
}

/// Past eight environments a table looks them up by hash rather than by scanning.
#[test]
fn heartbeats_among_many_environments_never_allocate() {
    heartbeats_never_allocate("env_prod", CHOSEN, 12);
}

/// `work` holds a leased, a queued and an unknown id, as text; `others` environments are
/// registered besides `environment`.
fn heartbeats_never_allocate(environment: &str, work: [&str; 3], others: usize) {
    let env: EnvironmentId = environment.parse().expect("valid");
    let ids: Vec<WorkId> = work.iter().map(|id| id.parse().expect("valid")).collect();

    let mut single = LeaseTable::new(Config::default());
    single
        .register_environment(env.clone(), EnvironmentKind::SelfHosted)
        .expect("new");
    let concurrent = ConcurrentLeaseTable::new(Config::default());
    concurrent
        .register_environment(env.clone(), EnvironmentKind::SelfHosted)
        .expect("new");
    for other in 0..others {
        let other: EnvironmentId = format!("env_team{other}").parse().expect("valid");
        single
            .register_environment(other.clone(), EnvironmentKind::SelfHosted)
            .expect("new");
        concurrent
            .register_environment(other, EnvironmentKind::SelfHosted)
            .expect("new");
    }
    for index in [LEASED, QUEUED] {
        let work = ids[index].clone();
        let session = "sess_01".parse().expect("valid");
        single
            .create_work(environment, work.clone(), session, Metadata::new(), at(0))
            .expect("new");
        let session = "sess_01".parse().expect("valid");
        concurrent
            .create_work(environment, work, session, Metadata::new(), at(0))
            .expect("new");
    }
    single
        .ack(environment, work[LEASED], None, at(0))
        .expect("queued");
    concurrent
        .ack(environment, work[LEASED], None, at(0))
        .expect("queued");

    // Ids as text, then parsed; each pass starts later so tokens keep moving forward.
    let mut offset = 0;
    for parsed in [false, true] {
        offset += 1_000;
        outcomes(|index, request, now| {
            let now = now.saturating_add_micros(offset);
            let result = if parsed {
                single.heartbeat(&env, &ids[index], request, now)
            } else {
                single.heartbeat(environment, work[index], request, now)
            };
            result.map(|b| b.last_heartbeat).map_err(|e| e.status())
        });
    }
    for parsed in [false, true] {
        offset += 1_000;
        outcomes(|index, request, now| {
            let now = now.saturating_add_micros(offset);
            let result = if parsed {
                concurrent.heartbeat(&env, &ids[index], request, now)
            } else {
                concurrent.heartbeat(environment, work[index], request, now)
            };
            result.map(|b| b.last_heartbeat).map_err(|e| e.status())
        });
    }

    // The summary a credential check reads before each heartbeat: leased, queued, past its
    // lease's deadline (shown lapsed) and unknown, ids as text and parsed.
    let late = at(offset + 3_600_000_000);
    for (index, now) in [(LEASED, at(offset)), (QUEUED, at(offset)), (LEASED, late)] {
        let (n, summary) = allocations(|| single.summary(environment, work[index], now));
        assert_eq!(n, 0, "summary of {} allocated", work[index]);
        assert_eq!(
            summary,
            single
                .get(environment, work[index], now)
                .map(|i| (&i).into())
        );
        let (n, summary) = allocations(|| concurrent.summary(&env, &ids[index], now));
        assert_eq!(n, 0, "summary of {} allocated (concurrent)", work[index]);
        assert_eq!(
            summary,
            concurrent.get(&env, &ids[index], now).map(|i| (&i).into())
        );
    }
    let (n, summary) = allocations(|| single.summary(environment, work[UNKNOWN], at(offset)));
    assert_eq!((n, summary.map_err(|e| e.status())), (0, Err(404)));

    // docs/contract.md §3.3: on a stopping item a heartbeat with a stale token answers the lease
    // as held, without allocating either.
    let stale = HeartbeatRequest {
        precondition: Precondition::LastHeartbeat(at(-1)),
        desired_ttl_seconds: None,
    };
    let now = at(offset + 1_000);
    single
        .stop(environment, work[LEASED], StopMode::Graceful, now)
        .expect("leased");
    concurrent
        .stop(environment, work[LEASED], StopMode::Graceful, now)
        .expect("leased");
    let (n, result) = allocations(|| single.heartbeat(&env, &ids[LEASED], stale, now));
    assert_eq!(n, 0, "a stopping item's heartbeat allocated");
    assert!(!result.expect("drain").lease_extended());
    let (n, result) = allocations(|| concurrent.heartbeat(&env, &ids[LEASED], stale, now));
    assert_eq!(n, 0, "a stopping item's heartbeat allocated (concurrent)");
    assert!(!result.expect("drain").lease_extended());
}

#[test]
fn token_format_and_parse_never_allocate() {
    let at = Timestamp::from_unix_micros(T0);
    let (n, parsed) = allocations(|| {
        let text = at.to_rfc3339();
        Timestamp::parse_rfc3339(&text)
    });
    assert_eq!(n, 0);
    assert_eq!(parsed, Ok(worklease::ParsedInstant::Exact(at)));
}
