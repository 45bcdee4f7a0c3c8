//! docs/contract.md §3.1 (poll) and §3.2 (ack): delivery, reclaim, worker identity, long-poll hints.

mod fixture;

use fixture::{Fixture, CLOUD, ENV, SECOND};
use worklease::{Error, Metadata, PollRequest, Polled, WorkState};

const A: &str = "work_a";
const B: &str = "work_b";

fn poll_with(f: &mut Fixture, worker: &str, reclaim_ms: u64) -> Polled {
    let request = PollRequest {
        worker: Some(worker.parse().unwrap()),
        reclaim_older_than_ms: reclaim_ms,
        block_ms: None,
    };
    f.table.poll(ENV, &request, f.now).expect("poll")
}

#[test]
fn an_unacknowledged_delivery_is_reclaimable_after_the_window() {
    let mut f = Fixture::new();
    f.create(A);
    assert!(f.poll(Some("w1")).is_some());
    f.advance(5 * SECOND - 1);
    assert_eq!(f.poll(Some("w2")), None, "still inside the 5000 ms window");
    f.advance(1);
    let again = f.poll(Some("w2")).unwrap();
    assert_eq!(
        (again.worker.unwrap().as_str(), again.delivered_at),
        ("w2", Some(f.now)),
        "the later delivery overwrites"
    );
}

#[test]
fn a_zero_reclaim_window_redelivers_at_once() {
    let mut f = Fixture::new();
    f.create(A);
    assert!(matches!(poll_with(&mut f, "w1", 0), Polled::Delivered(_)));
    assert!(matches!(poll_with(&mut f, "w2", 0), Polled::Delivered(_)));
}

#[test]
fn poll_prefers_the_oldest_id_among_fresh_and_reclaimable_items() {
    let mut f = Fixture::new();
    f.create(A);
    f.poll(Some("w1"));
    f.advance(6 * SECOND);
    f.create(B);
    // A was delivered 6 s ago and is reclaimable; it is older than B.
    assert_eq!(f.poll(Some("w2")).unwrap().id.to_string(), A);
    assert_eq!(f.poll(Some("w2")).unwrap().id.to_string(), B);
}

#[test]
fn an_empty_poll_says_when_to_look_again() {
    let mut f = Fixture::new();
    assert_eq!(
        f.table.poll(ENV, &PollRequest::default(), f.now).unwrap(),
        Polled::Empty {
            next_claimable_at: None
        }
    );
    f.create(A);
    f.poll(Some("w1"));
    let delivered = f.now;
    f.advance(SECOND);
    let Polled::Empty { next_claimable_at } = poll_with(&mut f, "w2", 5000) else {
        panic!("delivered twice")
    };
    assert_eq!(
        next_claimable_at,
        Some(delivered.saturating_add_micros(5 * SECOND))
    );
    // Once acknowledged, the item comes back only if its lease lapses.
    f.ack(A, Some("w1")).unwrap();
    let Polled::Empty { next_claimable_at } = poll_with(&mut f, "w2", 5000) else {
        panic!("leased item delivered")
    };
    assert_eq!(next_claimable_at, f.get(A).lease_deadline);
}

#[test]
fn poll_in_a_cloud_or_unknown_environment_is_refused() {
    let mut f = Fixture::new();
    let cloud = f
        .table
        .poll(CLOUD, &PollRequest::default(), f.now)
        .unwrap_err();
    assert_eq!(cloud.status(), 400);
    let unknown = f
        .table
        .poll("env_nope", &PollRequest::default(), f.now)
        .unwrap_err();
    assert_eq!(unknown.status(), 404);
}

#[test]
fn ack_by_a_worker_other_than_the_delivery_is_refused_with_409() {
    let mut f = Fixture::new();
    f.create(A);
    f.poll(Some("w1"));
    let error = f.ack(A, Some("w2")).unwrap_err();
    assert_eq!(
        error,
        Error::WorkerMismatch {
            holder: "w1".parse().unwrap(),
            worker: "w2".parse().unwrap()
        }
    );
    assert_eq!(error.status(), 409);
    assert_eq!(f.state(A), WorkState::Queued);
    // The delivery's own worker, or a worker that does not name itself, may ack.
    let acked = f.ack(A, None).unwrap();
    assert_eq!(
        acked.item.worker.unwrap().as_str(),
        "w1",
        "the holder is the delivery's worker"
    );
}

#[test]
fn a_never_delivered_item_may_be_acked() {
    let mut f = Fixture::new();
    f.create(A);
    assert_eq!(
        f.ack(A, Some("w9")).unwrap().item.state,
        WorkState::Starting
    );
}

#[test]
fn ack_on_a_held_item_by_another_worker_is_refused_with_409() {
    let mut f = Fixture::new();
    f.item_in(A, WorkState::Active);
    assert!(matches!(
        f.ack(A, Some("w2")),
        Err(Error::WorkerMismatch { .. })
    ));
    assert!(!f.ack(A, None).unwrap().changed);
}

#[test]
fn creating_work_validates_environment_and_uniqueness() {
    let mut f = Fixture::new();
    f.create(A);
    let duplicate = f
        .table
        .create_work(
            ENV,
            "work_a".parse().unwrap(),
            "sess_01".parse().unwrap(),
            Metadata::new(),
            f.now,
        )
        .unwrap_err();
    assert_eq!(duplicate.status(), 409);
    let cloud = f
        .table
        .create_work(
            CLOUD,
            "work_c".parse().unwrap(),
            "sess_01".parse().unwrap(),
            Metadata::new(),
            f.now,
        )
        .unwrap_err();
    assert_eq!(cloud.status(), 400);
    assert_eq!(f.table.len(), 1);
}
