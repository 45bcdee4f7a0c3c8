//! `purge_stopped`: stopped items older than a cutoff leave the table; everything else stays
//! exactly as it was.

mod fixture;

use fixture::{Fixture, ENV, SECOND};
use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentKind, ListRequest, Metadata, StopMode, WorkState,
};

#[test]
fn only_items_stopped_before_the_cutoff_are_purged() {
    let mut f = Fixture::new();
    f.item_in("work_old", WorkState::Stopped);
    f.advance(10 * SECOND);
    let cutoff = f.now;
    f.item_in("work_new", WorkState::Stopped);
    f.item_in("work_live", WorkState::Active);
    f.item_in("work_waiting", WorkState::Queued);
    f.item_in("work_ending", WorkState::Stopping);

    let now = f.now;
    assert_eq!(f.table.purge_stopped(cutoff, now), 1);
    f.check();
    assert_eq!(f.table.get(ENV, "work_old", now).unwrap_err().status(), 404);
    let kept = ["work_ending", "work_live", "work_new", "work_waiting"];
    let page = f.table.list(ENV, &ListRequest::default(), now).unwrap();
    let ids: Vec<String> = page.data.iter().map(|item| item.id.to_string()).collect();
    assert_eq!(ids, kept);
    // The survivors still answer: the live lease renews, the queued item is handed out.
    assert!(f.heartbeat("work_live", None, None).is_ok());
    assert_eq!(
        f.poll(None).map(|item| item.id.to_string()).as_deref(),
        Some("work_waiting")
    );
}

#[test]
fn a_purged_id_can_be_created_again_as_a_new_item() {
    let mut f = Fixture::new();
    let first = f.item_in("work_again", WorkState::Active);
    f.stop("work_again", StopMode::Force).unwrap();
    f.advance(SECOND);
    let now = f.now;
    assert_eq!(f.table.purge_stopped(now, now), 1);
    let second = f.create("work_again");
    assert_eq!(second.state, WorkState::Queued);
    assert_eq!(second.lapses, 0);
    assert!(second.created_at > first.created_at);
    f.check();
}

#[test]
fn purging_moves_other_items_without_disturbing_their_leases() {
    // Many items, every third stopped: the purge closes gaps by moving later items, whose
    // leases must stay indexed (validate) and still lapse (the model test checks when).
    let mut f = Fixture::new();
    for i in 0..300 {
        let id = format!("work_{i:04}");
        let state = if i % 3 == 0 {
            WorkState::Stopped
        } else {
            WorkState::Active
        };
        f.item_in(&id, state);
    }
    let now = f.now;
    assert_eq!(
        f.table.purge_stopped(now.saturating_add_micros(1), now),
        100
    );
    f.check();
    assert_eq!(f.table.len(), 200);
    f.advance(601 * SECOND);
    let lapses = f.table.sweep(f.now);
    assert_eq!(lapses.len(), 200);
    assert!(lapses.iter().all(|t| t.to == WorkState::Queued));
    f.check();
}

#[test]
fn the_sharded_table_purges_every_shard() {
    let table = ConcurrentLeaseTable::new(Config::default());
    let t0 = fixture::T0;
    let at = |s: i64| worklease::Timestamp::from_unix_micros(t0 + s * SECOND);
    table
        .register_environment(ENV.parse().unwrap(), EnvironmentKind::SelfHosted)
        .unwrap();
    for i in 0..200 {
        let id = format!("work_{i:04}");
        table
            .create_work(
                ENV,
                id.parse().unwrap(),
                "sess_1".parse().unwrap(),
                Metadata::new(),
                at(0),
            )
            .unwrap();
        if i % 2 == 0 {
            table
                .stop(ENV, id.as_str(), StopMode::Force, at(0))
                .unwrap();
        }
    }
    assert_eq!(table.purge_stopped(at(1), at(1)), 100);
    assert_eq!(table.len(), 100);
    table.validate().unwrap();
}
