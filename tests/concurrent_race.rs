//! Many threads, one table: exactly one `NO_HEARTBEAT` claim wins, and polls across shards
//! still hand out the lowest id first.

use std::sync::atomic::{AtomicUsize, Ordering};

use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentKind, HeartbeatRequest, Metadata, PollRequest, Polled,
    Precondition, SessionId, Timestamp, WorkId,
};

const T0: i64 = 1_782_893_700_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + seconds * 1_000_000)
}

fn table_with_env(shards: usize) -> ConcurrentLeaseTable {
    let table = ConcurrentLeaseTable::with_shards(Config::default(), shards);
    table
        .register_environment(
            "env_01".parse().expect("test input"),
            EnvironmentKind::SelfHosted,
        )
        .expect("test input");
    table
}

fn session() -> SessionId {
    "sess_01".parse().expect("test input")
}

/// Creates a queued item for each id, in the order given.
fn create_all(table: &ConcurrentLeaseTable, ids: impl IntoIterator<Item = u128>) {
    for id in ids {
        table
            .create_work(
                "env_01",
                WorkId::from_u128(id),
                session(),
                Metadata::new(),
                at(0),
            )
            .expect("test input");
    }
}

#[test]
fn exactly_one_no_heartbeat_claim_wins_a_freshly_acked_item() {
    for round in 0..50 {
        let table = table_with_env(8);
        let work = WorkId::from_u128(round);
        table
            .create_work("env_01", work.clone(), session(), Metadata::new(), at(0))
            .expect("test input");
        table.ack("env_01", &work, None, at(0)).expect("test input");
        let (wins, refusals) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let claim = HeartbeatRequest {
            precondition: Precondition::NoHeartbeat,
            desired_ttl_seconds: None,
        };
        std::thread::scope(|s| {
            for thread in 0..8 {
                let (table, work, wins, refusals) = (&table, &work, &wins, &refusals);
                s.spawn(move || {
                    match table.heartbeat(
                        "env_01",
                        work,
                        claim,
                        at(1).saturating_add_micros(thread),
                    ) {
                        Ok(_) => wins.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            assert_eq!(error.status(), 412, "{error}");
                            refusals.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                });
            }
        });
        assert_eq!(wins.into_inner(), 1);
        assert_eq!(refusals.into_inner(), 7);
        table.validate().expect("test input");
    }
}

#[test]
fn polls_hand_out_items_spread_over_shards_in_global_id_order() {
    let table = table_with_env(16);
    // Created out of order, so both shard placement and creation order disagree with id order.
    create_all(&table, (0..200u128).map(|i| (i * 7919) % 200 + 1));
    let mut delivered = Vec::new();
    while let Polled::Delivered(item) = table
        .poll("env_01", &PollRequest::default(), at(1))
        .expect("test input")
    {
        delivered.push(item.id.as_u128().expect("test input"));
    }
    let expected: Vec<u128> = (1..=200).collect();
    assert_eq!(delivered, expected);
    table.validate().expect("test input");
}

#[test]
fn concurrent_pollers_never_receive_the_same_item() {
    let table = table_with_env(4);
    create_all(&table, 1..=400u128);
    let received: Vec<Vec<u128>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Polled::Delivered(item) = table
                        .poll("env_01", &PollRequest::default(), at(1))
                        .expect("test input")
                    {
                        mine.push(item.id.as_u128().expect("test input"));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("test input"))
            .collect()
    });
    let mut all: Vec<u128> = received.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
}
