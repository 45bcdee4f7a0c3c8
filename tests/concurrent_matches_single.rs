//! The sharded table answers every call exactly as the single-threaded one does, whatever the
//! sequence, and both keep their invariants after every step.

use proptest::prelude::*;
use worklease::{
    ConcurrentLeaseTable, Config, Cursor, EnvironmentKind, HeartbeatRequest, LeaseTable,
    ListRequest, Metadata, PollRequest, Precondition, StopMode, Timestamp, WorkId, WorkerId,
};

const T0: i64 = 1_782_893_700_000_000;

#[derive(Clone, Debug)]
enum Op {
    Create(u8, u128),
    Poll(u8, Option<u8>, u64),
    Ack(u128, Option<u8>),
    Heartbeat(u128, u8, Option<u64>),
    Stop(u128, bool),
    Get(u128),
    List(u8, u8, usize),
    Stats(u8),
    Sweep,
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 0..24u128).prop_map(|(e, i)| Op::Create(e, i)),
        3 => (0..3u8, prop::option::of(0..3u8), prop_oneof![Just(0u64), Just(5000), 0..20_000u64])
            .prop_map(|(e, w, r)| Op::Poll(e, w, r)),
        3 => (0..24u128, prop::option::of(0..3u8)).prop_map(|(i, w)| Op::Ack(i, w)),
        5 => (0..24u128, 0..4u8, prop::option::of(1..700u64)).prop_map(|(i, p, t)| Op::Heartbeat(i, p, t)),
        1 => (0..24u128, any::<bool>()).prop_map(|(i, f)| Op::Stop(i, f)),
        1 => (0..24u128).prop_map(Op::Get),
        1 => (0..3u8, 0..3u8, 1..6usize).prop_map(|(e, c, l)| Op::List(e, c, l)),
        1 => (0..3u8).prop_map(Op::Stats),
        1 => Just(Op::Sweep),
        4 => prop_oneof![0..2_000_000i64, 0..90_000_000i64, Just(0i64)].prop_map(Op::Advance),
    ]
}

fn env(e: u8) -> String {
    // env 2 is a cloud environment.
    format!("env_{e}")
}

fn worker(w: u8) -> WorkerId {
    WorkerId::parse(&format!("w{w}")).expect("test input")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sharded_and_single_tables_agree(ops in prop::collection::vec(op(), 1..120), shards in 1..9usize) {
        let config = Config::default();
        let mut single = LeaseTable::new(config);
        let sharded = ConcurrentLeaseTable::with_shards(config, shards);
        for (e, kind) in [(0, EnvironmentKind::SelfHosted), (1, EnvironmentKind::SelfHosted), (2, EnvironmentKind::Cloud)] {
            single.register_environment(env(e).parse().expect("test input"), kind).expect("test input");
            sharded.register_environment(env(e).parse().expect("test input"), kind).expect("test input");
        }
        let mut now = Timestamp::from_unix_micros(T0);
        let mut tokens: Vec<Timestamp> = Vec::new();
        // The environment each id was created in, so most calls name the right one.
        let mut home = std::collections::HashMap::new();
        for op in ops {
            match op {
                Op::Create(e, i) => {
                    home.entry(i).or_insert(e);
                    let id = WorkId::from_u128(i);
                    let a = single.create_work(env(e).as_str(), id.clone(), "sess_1".parse().expect("test input"), Metadata::new(), now);
                    let b = sharded.create_work(env(e).as_str(), id, "sess_1".parse().expect("test input"), Metadata::new(), now);
                    prop_assert_eq!(a, b);
                }
                Op::Poll(e, w, reclaim) => {
                    let request = PollRequest { worker: w.map(worker), reclaim_older_than_ms: reclaim, block_ms: None };
                    prop_assert_eq!(single.poll(env(e).as_str(), &request, now), sharded.poll(env(e).as_str(), &request, now));
                }
                Op::Ack(i, w) => {
                    let e = env(*home.get(&i).unwrap_or(&0));
                    let w = w.map(worker);
                    let id = WorkId::from_u128(i);
                    prop_assert_eq!(single.ack(e.as_str(), &id, w.as_ref(), now), sharded.ack(e.as_str(), &id, w.as_ref(), now));
                }
                Op::Heartbeat(i, p, ttl) => {
                    let e = env(*home.get(&i).unwrap_or(&0));
                    let precondition = match p {
                        0 => Precondition::Unconditional,
                        1 => Precondition::NoHeartbeat,
                        _ => tokens.last().copied().map_or(Precondition::Unmatchable, Precondition::LastHeartbeat),
                    };
                    let request = HeartbeatRequest { precondition, desired_ttl_seconds: ttl.and_then(std::num::NonZeroU64::new) };
                    let id = WorkId::from_u128(i);
                    let a = single.heartbeat(e.as_str(), &id, request, now);
                    let b = sharded.heartbeat(e.as_str(), id.to_string().as_str(), request, now);
                    if let Ok(beat) = &a {
                        tokens.push(beat.last_heartbeat);
                    }
                    prop_assert_eq!(a, b);
                }
                Op::Stop(i, force) => {
                    let e = env(*home.get(&i).unwrap_or(&0));
                    let mode = if force { StopMode::Force } else { StopMode::Graceful };
                    let id = WorkId::from_u128(i);
                    prop_assert_eq!(single.stop(e.as_str(), &id, mode, now), sharded.stop(e.as_str(), &id, mode, now));
                }
                Op::Get(i) => {
                    let e = env(*home.get(&i).unwrap_or(&0));
                    let id = WorkId::from_u128(i);
                    prop_assert_eq!(single.get(e.as_str(), &id, now), sharded.get(e.as_str(), &id, now));
                }
                Op::List(e, c, limit) => {
                    let cursor = match c {
                        0 => Cursor::First,
                        1 => Cursor::After(WorkId::from_u128(u128::from(e) * 5 + 3)),
                        _ => Cursor::Before(WorkId::from_u128(u128::from(e) * 5 + 12)),
                    };
                    let request = ListRequest { limit, cursor };
                    prop_assert_eq!(single.list(env(e).as_str(), &request, now), sharded.list(env(e).as_str(), &request, now));
                }
                Op::Stats(e) => {
                    prop_assert_eq!(single.stats(env(e).as_str(), now), sharded.stats(env(e).as_str(), now));
                }
                Op::Sweep => {
                    prop_assert_eq!(single.sweep(now), sharded.sweep(now));
                }
                Op::Advance(micros) => now = now.saturating_add_micros(micros),
            }
            single.validate().map_err(TestCaseError::fail)?;
            sharded.validate().map_err(TestCaseError::fail)?;
        }
        prop_assert_eq!(single.sweep(now), sharded.sweep(now));
        prop_assert_eq!(single.next_wakeup(), sharded.next_wakeup());
    }
}

#[test]
fn malformed_and_unknown_ids_are_answered_after_the_environment_checks() {
    let single = ConcurrentLeaseTable::with_shards(Config::default(), 4);
    single
        .register_environment("env_1".parse().expect("test input"), EnvironmentKind::Cloud)
        .expect("test input");
    let t = Timestamp::from_unix_micros(T0);
    let request = HeartbeatRequest::default();
    assert_eq!(
        single
            .heartbeat("env_x", "nope", request, t)
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        single
            .heartbeat("env_1", "nope", request, t)
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        single
            .heartbeat("env_1", "work_1", request, t)
            .unwrap_err()
            .status(),
        400
    );
}
