//! The sharded table answers every call exactly as the single-threaded one does, whatever the
//! sequence and the shard count, and both keep their invariants after every step. It drives
//! both with the model test's operation vocabulary (`tests/common`), on a clock that never runs
//! backwards: the condition under which the two are defined to agree.

mod common;

use common::*;
use proptest::prelude::*;
use worklease::{ConcurrentLeaseTable, EnvironmentKind, HeartbeatRequest, LeaseTable, Timestamp};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sharded_and_single_tables_agree(
        config in config_sel(),
        steps in steps(60, Clock::Forward),
        shards in 1..9usize,
    ) {
        let mut single: LeaseTable = new_table_of(config.config());
        let mut sharded = ConcurrentLeaseTable::with_shards(config.config(), shards);
        register_environments(&mut sharded);
        let mut seen = Seen::default();
        let mut now = T0;
        for (index, step) in steps.iter().enumerate() {
            now += step.advance;
            let call = step.op.resolve(&seen, now);
            let a = call_table(&mut single, &call, ts(now));
            let b = call_table(&mut sharded, &call, ts(now));
            prop_assert_eq!(&a, &b, "step {}: {:?} at {}", index, call, now);
            seen.record(&call, &a)?;
            single.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
            sharded.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        }
        prop_assert_eq!(single.sweep(ts(now)), sharded.sweep(ts(now)));
        prop_assert_eq!(single.next_wakeup(), sharded.next_wakeup());
    }
}

#[test]
fn malformed_and_unknown_ids_are_answered_after_the_environment_checks() {
    let single = ConcurrentLeaseTable::with_shards(worklease::Config::default(), 4);
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
