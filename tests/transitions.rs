//! docs/contract.md §3: one test per cell of the transition table (rows: state; columns: operation).

mod fixture;

use fixture::{Fixture, SECOND};
use worklease::{Error, Operation, StopMode, WorkState};

const A: &str = "work_a";
const B: &str = "work_b";

fn invalid(operation: Operation, state: WorkState) -> Error {
    Error::InvalidState { operation, state }
}

// ---- queued ----

#[test]
fn poll_on_queued_delivers_the_oldest_claimable_item() {
    let mut f = Fixture::new();
    f.create(B);
    f.create(A);
    let item = f.poll(Some("w1")).unwrap();
    assert_eq!(item.id.to_string(), A, "lowest id first");
    assert_eq!(
        (
            item.state,
            item.delivered_at,
            item.worker.map(|w| w.to_string())
        ),
        (WorkState::Queued, Some(f.now), Some("w1".into()))
    );
    assert_eq!(f.poll(Some("w2")).unwrap().id.to_string(), B);
    assert_eq!(
        f.poll(Some("w3")),
        None,
        "both delivered inside the reclaim window"
    );
    f.check();
}

#[test]
fn ack_on_queued_moves_to_starting_with_an_unclaimed_default_lease() {
    let mut f = Fixture::new();
    f.create(A);
    f.poll(Some("w1"));
    let acked = f.ack(A, Some("w1")).unwrap();
    assert!(acked.changed);
    let item = acked.item;
    assert_eq!(item.state, WorkState::Starting);
    assert_eq!(item.acknowledged_at, Some(f.now));
    assert_eq!(item.latest_heartbeat_at, None, "heartbeat slot unclaimed");
    assert_eq!(
        item.lease_deadline,
        Some(f.now.saturating_add_micros(60 * SECOND))
    );
    f.check();
}

#[test]
fn heartbeat_on_queued_is_refused_with_409() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Queued);
    let error = f.heartbeat(A, None, None).unwrap_err();
    assert_eq!(error, invalid(Operation::Heartbeat, WorkState::Queued));
    assert_eq!(error.status(), 409);
}

#[test]
fn graceful_stop_on_queued_stops_it() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Queued);
    let stopped = f.stop(A, StopMode::Graceful).unwrap();
    assert_eq!(
        (stopped.item.state, stopped.item.stopped_at, stopped.changed),
        (WorkState::Stopped, Some(f.now), true)
    );
    assert_eq!(f.poll(None), None, "a stopped item is never delivered");
    f.check();
}

#[test]
fn forced_stop_on_queued_stops_it() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Queued);
    assert_eq!(
        f.stop(A, StopMode::Force).unwrap().item.state,
        WorkState::Stopped
    );
    f.check();
}

// ---- starting ----

#[test]
fn poll_never_delivers_a_starting_item() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Starting);
    f.advance(10 * SECOND);
    assert_eq!(f.poll(Some("w2")), None);
}

#[test]
fn ack_on_starting_is_retry_safe() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Starting);
    f.advance(SECOND);
    for worker in [Some("w1"), None] {
        let again = f.ack(A, worker).unwrap();
        assert!(!again.changed);
        assert_eq!(again.item, before, "unchanged, lease not extended");
    }
}

#[test]
fn heartbeat_on_starting_makes_it_active() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Starting);
    f.advance(SECOND);
    let beat = f.heartbeat(A, Some("NO_HEARTBEAT"), None).unwrap();
    assert_eq!(beat.state, WorkState::Active);
    assert!(beat.lease_extended());
    let item = f.get(A);
    assert_eq!(
        (item.started_at, item.latest_heartbeat_at),
        (beat.last_heartbeat, beat.last_heartbeat)
    );
}

#[test]
fn graceful_stop_on_starting_asks_it_to_stop() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Starting);
    let item = f.stop(A, StopMode::Graceful).unwrap().item;
    assert_eq!(
        (item.state, item.stop_requested_at),
        (WorkState::Stopping, Some(f.now))
    );
    assert_eq!(
        item.lease_deadline, before.lease_deadline,
        "the lease carries on"
    );
}

#[test]
fn forced_stop_on_starting_stops_it_and_ends_the_lease() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Starting);
    let item = f.stop(A, StopMode::Force).unwrap().item;
    assert_eq!(
        (item.state, item.lease_deadline),
        (WorkState::Stopped, None)
    );
    assert_eq!(f.table.next_wakeup(), None);
    f.check();
}

#[test]
fn lapse_on_starting_queues_it_again() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Starting);
    f.advance(60 * SECOND);
    let item = f.get(A);
    assert_eq!(
        (item.state, item.acknowledged_at, item.lapses),
        (WorkState::Queued, None, 1)
    );
    assert_eq!(
        f.poll(Some("w2")).unwrap().id.to_string(),
        A,
        "claimable at once"
    );
}

// ---- active ----

#[test]
fn poll_never_delivers_an_active_item() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    assert_eq!(f.poll(Some("w2")), None);
}

#[test]
fn ack_on_active_is_retry_safe() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Active);
    let again = f.ack(A, Some("w1")).unwrap();
    assert_eq!((again.changed, again.item), (false, before));
}

#[test]
fn heartbeat_on_active_renews_the_lease() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    let first = f.get(A).latest_heartbeat_at.unwrap();
    f.advance(30 * SECOND);
    let beat = f
        .heartbeat(A, Some(&first.to_string()), Some("30"))
        .unwrap();
    assert_eq!(
        (beat.state, beat.last_heartbeat, beat.lease_extended()),
        (WorkState::Active, Some(f.now), true)
    );
    assert_eq!(beat.deadline, f.now.saturating_add_micros(30 * SECOND));
    assert_eq!(f.get(A).lease_deadline, Some(beat.deadline));
}

#[test]
fn graceful_stop_on_active_asks_it_to_stop() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    assert_eq!(
        f.stop(A, StopMode::Graceful).unwrap().item.state,
        WorkState::Stopping
    );
}

#[test]
fn forced_stop_on_active_stops_it() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    let item = f.stop(A, StopMode::Force).unwrap().item;
    assert_eq!(
        (item.state, item.stopped_at),
        (WorkState::Stopped, Some(f.now))
    );
}

#[test]
fn lapse_on_active_queues_it_again_and_clears_the_attempt() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    f.advance(60 * SECOND);
    let item = f.get(A);
    assert_eq!(item.state, WorkState::Queued);
    assert_eq!(
        (
            item.acknowledged_at,
            item.started_at,
            item.latest_heartbeat_at
        ),
        (None, None, None)
    );
    assert_eq!((item.lapses, item.delivered_at), (1, None));
}

// ---- stopping ----

#[test]
fn poll_never_delivers_a_stopping_item() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopping);
    assert_eq!(f.poll(None), None);
}

#[test]
fn ack_on_stopping_is_refused_with_409() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopping);
    assert_eq!(
        f.ack(A, Some("w1")).unwrap_err(),
        invalid(Operation::Ack, WorkState::Stopping)
    );
}

/// docs/contract.md §3.3: a stopping item's heartbeat tells the worker to drain: 200, the lease as
/// held, `lease_extended: false`, and nothing changes.
#[test]
fn heartbeat_on_stopping_renews_nothing_and_says_drain() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Stopping);
    f.advance(5 * SECOND);
    let beat = f.heartbeat(A, None, Some("10")).unwrap();
    assert_eq!(
        (beat.state, beat.lease_extended(), beat.ttl_clamped),
        (WorkState::Stopping, false, false)
    );
    assert_eq!(beat.last_heartbeat, before.latest_heartbeat_at);
    assert_eq!(
        (Some(beat.ttl), Some(beat.deadline)),
        (before.lease_ttl, before.lease_deadline),
        "the stored lease, not the TTL asked for"
    );
    assert_eq!(f.get(A), before, "nothing changes");
    f.check();
}

/// docs/contract.md §3.3: on a stopping item the precondition is not compared, whatever it says: the
/// worker is told to drain, not that its lease is lost, and its lease is not renewed.
#[test]
fn heartbeat_on_stopping_ignores_every_precondition_and_renews_nothing() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    let first = f.renew(A, None, None);
    f.advance(SECOND);
    let held = f.renew(A, Some(&first.to_string()), None);
    f.stop(A, StopMode::Graceful).unwrap();
    let before = f.get(A);
    let stale = first.to_string();
    for precondition in [Some(stale.as_str()), Some("NO_HEARTBEAT"), None] {
        f.advance(SECOND);
        let beat = f.heartbeat(A, precondition, Some("20")).unwrap();
        assert_eq!(beat.state, WorkState::Stopping, "{precondition:?}");
        assert!(!beat.lease_extended(), "{precondition:?}");
        assert_eq!(beat.last_heartbeat, Some(held), "{precondition:?}");
        assert_eq!(beat.ttl.seconds(), 60, "{precondition:?}: the held TTL");
        assert_eq!(f.get(A), before, "{precondition:?} changes nothing");
    }
    f.stop(A, StopMode::Graceful).unwrap();
    assert_eq!(
        f.heartbeat(A, Some(&stale), None).unwrap_err(),
        invalid(Operation::Heartbeat, WorkState::Stopped),
        "a stopped item still answers 409"
    );
    f.check();
}

/// An item stopped before its first heartbeat has no token to report: `last_heartbeat` is null.
#[test]
fn heartbeat_on_an_item_stopped_while_starting_reports_no_token() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Starting);
    f.stop(A, StopMode::Graceful).unwrap();
    let beat = f.heartbeat(A, Some("NO_HEARTBEAT"), None).unwrap();
    assert_eq!(
        (beat.state, beat.last_heartbeat, beat.lease_extended()),
        (WorkState::Stopping, None, false)
    );
    assert_eq!(f.get(A).started_at, None, "a drain does not start it");
}

/// The heartbeats a worker sends while draining do not keep an unconfirmed stop alive: it
/// lapses to stopped at the deadline it had when the stop was asked.
#[test]
fn heartbeats_on_stopping_do_not_postpone_its_lapse() {
    let mut f = Fixture::new();
    let deadline = f.item_in(A, WorkState::Stopping).lease_deadline.unwrap();
    while f.now.saturating_add_micros(10 * SECOND) < deadline {
        f.advance(10 * SECOND);
        assert!(!f.heartbeat(A, None, None).unwrap().lease_extended());
    }
    f.now = deadline;
    assert_eq!(
        f.heartbeat(A, None, None).unwrap_err(),
        invalid(Operation::Heartbeat, WorkState::Stopped),
        "lapsed at its deadline"
    );
    let item = f.get(A);
    assert_eq!(
        (item.state, item.stopped_at),
        (WorkState::Stopped, Some(deadline))
    );
    f.check();
}

#[test]
fn graceful_stop_on_stopping_confirms_it() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopping);
    let item = f.stop(A, StopMode::Graceful).unwrap().item;
    assert_eq!(
        (item.state, item.stopped_at),
        (WorkState::Stopped, Some(f.now))
    );
    f.check();
}

#[test]
fn forced_stop_on_stopping_stops_it() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopping);
    assert_eq!(
        f.stop(A, StopMode::Force).unwrap().item.state,
        WorkState::Stopped
    );
}

#[test]
fn lapse_on_stopping_stops_it_at_the_deadline() {
    let mut f = Fixture::new();
    let deadline = f.item_in(A, WorkState::Stopping).lease_deadline.unwrap();
    f.advance(600 * SECOND);
    let item = f.get(A);
    assert_eq!(
        (item.state, item.stopped_at, item.lapses),
        (WorkState::Stopped, Some(deadline), 0)
    );
}

// ---- stopped ----

#[test]
fn poll_never_delivers_a_stopped_item() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopped);
    assert_eq!(f.poll(None), None);
}

#[test]
fn ack_on_stopped_is_refused_with_409() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopped);
    assert_eq!(
        f.ack(A, None).unwrap_err(),
        invalid(Operation::Ack, WorkState::Stopped)
    );
}

#[test]
fn heartbeat_on_stopped_is_refused_with_409() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopped);
    assert_eq!(
        f.heartbeat(A, None, None).unwrap_err(),
        invalid(Operation::Heartbeat, WorkState::Stopped)
    );
}

#[test]
fn graceful_stop_on_stopped_returns_it_unchanged() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Stopped);
    f.advance(SECOND);
    let again = f.stop(A, StopMode::Graceful).unwrap();
    assert_eq!((again.changed, again.item), (false, before));
}

#[test]
fn forced_stop_on_stopped_returns_it_unchanged() {
    let mut f = Fixture::new();
    let before = f.item_in(A, WorkState::Stopped);
    f.advance(SECOND);
    let again = f.stop(A, StopMode::Force).unwrap();
    assert_eq!((again.changed, again.item), (false, before));
}

#[test]
fn a_stopped_item_never_lapses_or_wakes_anyone() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Stopped);
    f.advance(3600 * SECOND);
    assert_eq!(f.table.sweep(f.now), vec![]);
    assert_eq!(f.state(A), WorkState::Stopped);
    assert_eq!(f.table.next_wakeup(), None);
}
