//! docs/contract.md §4 and §5: TTL configuration, lazy lapses, sweeps, attempts, the lapsed holder.

mod fixture;

use std::num::NonZeroU32;

use fixture::{Fixture, ENV, SECOND};
use worklease::{Config, Error, Transition, Ttl, WorkState};

const A: &str = "work_a";
const B: &str = "work_b";

#[test]
fn ttl_configuration_outside_10_to_600_seconds_is_refused() {
    assert!(Ttl::from_seconds(9).is_err());
    assert!(Ttl::from_seconds(601).is_err());
    let mut config = Config::default();
    config.ack_ttl = Ttl::from_seconds(10).unwrap();
    config.default_ttl = Ttl::from_seconds(600).unwrap();
    let mut f = Fixture::with_config(config);
    f.item_in(A, WorkState::Starting);
    assert_eq!(f.get(A).lease_ttl, Some(Ttl::MIN));
    assert_eq!(f.heartbeat(A, None, None).unwrap().ttl, Ttl::MAX);
}

#[test]
fn an_operation_sees_exactly_what_a_sweep_would_have_left() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    f.advance(60 * SECOND);
    let mut swept = f.table.clone();
    let transitions = swept.sweep(f.now);
    assert_eq!(transitions.len(), 1);
    assert_eq!(f.get(A), swept.get(ENV, A, f.now).unwrap());
}

#[test]
fn sweep_reports_lapses_that_operations_applied_on_the_way() {
    let mut f = Fixture::new();
    let deadline = f.item_in(A, WorkState::Active).lease_deadline.unwrap();
    f.advance(61 * SECOND);
    assert_eq!(f.state(A), WorkState::Queued, "applied lazily by get");
    let transitions = f.table.sweep(f.now);
    assert_eq!(transitions.len(), 1);
    let Transition {
        work_id,
        from,
        to,
        at,
        lapses,
        ..
    } = transitions[0].clone();
    assert_eq!(
        (work_id.to_string(), from, to, at, lapses),
        (
            A.to_string(),
            WorkState::Active,
            WorkState::Queued,
            deadline,
            1
        )
    );
    assert_eq!(f.table.sweep(f.now), vec![], "each lapse is reported once");
}

#[test]
fn sweep_orders_lapses_by_deadline() {
    let mut f = Fixture::new();
    f.item_in(B, WorkState::Starting);
    f.advance(SECOND);
    f.item_in(A, WorkState::Stopping);
    f.advance(600 * SECOND);
    let transitions = f.table.sweep(f.now);
    let order: Vec<_> = transitions
        .iter()
        .map(|t| (t.work_id.to_string(), t.to))
        .collect();
    assert_eq!(
        order,
        [
            (B.to_string(), WorkState::Queued),
            (A.to_string(), WorkState::Stopped)
        ]
    );
}

#[test]
fn next_wakeup_is_the_earliest_deadline_and_never_a_redelivery() {
    let mut f = Fixture::new();
    assert_eq!(f.table.next_wakeup(), None);
    f.create(B);
    f.poll(Some("w1"));
    // B is delivered, not acknowledged: its reclaim window's end is a poll's business (the
    // empty poll's `next_claimable_at`), not a sweep's.
    let redelivery = f.now.saturating_add_micros(5 * SECOND);
    assert_eq!(f.table.next_wakeup(), None);
    let lease = f.item_in(A, WorkState::Starting).lease_deadline.unwrap();
    assert!(lease > redelivery);
    assert_eq!(f.table.next_wakeup(), Some(lease));
    // Past the reclaim window, with no lapse due, a sweep has nothing to do and the wake-up
    // stays the lease's deadline.
    f.advance(6 * SECOND);
    assert!(f.table.sweep(f.now).is_empty());
    assert_eq!(f.table.next_wakeup(), Some(lease));
    f.ack(B, Some("w1")).unwrap();
    let b_lease = f.get(B).lease_deadline.unwrap();
    assert_eq!(f.table.next_wakeup(), Some(lease.min(b_lease)));
}

#[test]
fn an_item_that_lapses_too_often_is_stopped() {
    let mut config = Config::default();
    config.max_attempts = NonZeroU32::new(2);
    let mut f = Fixture::with_config(config);
    f.item_in(A, WorkState::Active);
    f.advance(60 * SECOND);
    assert_eq!(f.state(A), WorkState::Queued);
    let acked = f.ack(A, None).unwrap().item;
    let deadline = acked.lease_deadline.unwrap();
    f.advance(60 * SECOND);
    let item = f.get(A);
    assert_eq!(
        (item.state, item.lapses, item.stopped_at),
        (WorkState::Stopped, 2, Some(deadline))
    );
    // Out of attempts, the last attempt's times stay for the post-mortem.
    assert_eq!(item.acknowledged_at, acked.acknowledged_at);
    assert!(item.acknowledged_at.is_some());
}

#[test]
fn a_lapsed_holder_gets_409_while_the_item_waits_in_the_queue() {
    let mut f = Fixture::new();
    let token = f.item_in(A, WorkState::Active).latest_heartbeat_at.unwrap();
    f.advance(60 * SECOND);
    let error = f.heartbeat(A, Some(&token.to_string()), None).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidState {
                state: WorkState::Queued,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_lapsed_holder_gets_412_once_another_worker_took_over() {
    let mut f = Fixture::new();
    let old = f.item_in(A, WorkState::Active).latest_heartbeat_at.unwrap();
    f.advance(60 * SECOND);
    assert_eq!(f.poll(Some("w2")).unwrap().id.to_string(), A);
    f.ack(A, Some("w2")).unwrap();
    f.heartbeat(A, Some("NO_HEARTBEAT"), None).unwrap();
    let error = f.heartbeat(A, Some(&old.to_string()), None).unwrap_err();
    assert_eq!(error.status(), 412);
    f.check();
}

#[test]
fn heartbeats_keep_a_lease_alive_indefinitely() {
    let mut f = Fixture::new();
    let mut token = f.item_in(A, WorkState::Active).latest_heartbeat_at.unwrap();
    for _ in 0..100 {
        f.advance(9 * SECOND);
        token = f.renew(A, Some(&token.to_string()), Some("10"));
    }
    assert_eq!(f.state(A), WorkState::Active);
    assert_eq!(f.table.sweep(f.now), vec![]);
}
