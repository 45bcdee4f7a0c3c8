//! docs/contract.md §7.4: snapshots hold the whole state, restore into a table that answers every later
//! operation as the original does, and are canonical (the same operations give the same
//! bytes, whatever the table kind, shard count or hash seed). Encoded commands round-trip.
#![cfg(feature = "snapshot")]

mod common;
mod snapshot_support;

use std::num::NonZeroU64;

use common::*;
use proptest::prelude::*;
use snapshot_support::{stamped_of_every_kind, varied_table};
use worklease::{
    Applied, Command, ConcurrentLeaseTable, Config, HeartbeatRequest, LeaseTable, Metadata,
    PollRequest, SessionId, Stamped, StopMode, Timestamp, WorkState,
};

/// The command a call makes, for the calls that change the table (reads make none).
fn command_of(call: &Call, now: Timestamp) -> Option<Command> {
    Some(match call {
        Op::Create {
            env,
            work,
            session,
            metadata,
        } => Command::CreateWork {
            environment: (*env).into(),
            id: work_id(work),
            session: SessionId::parse(session).expect("a well-formed session id"),
            metadata: Metadata::from_map(metadata.clone()).expect("generated within limits"),
        },
        Op::Poll {
            env,
            worker,
            reclaim_ms,
        } => Command::Poll {
            environment: (*env).into(),
            request: PollRequest {
                worker: worker.map(worker_id),
                reclaim_older_than_ms: *reclaim_ms,
                ..PollRequest::default()
            },
        },
        Op::Ack { env, work, worker } => Command::Ack {
            environment: (*env).into(),
            work: (*work).into(),
            worker: worker.map(worker_id),
        },
        Op::Heartbeat {
            env,
            work,
            precondition,
            ttl_seconds,
        } => Command::Heartbeat {
            environment: (*env).into(),
            work: (*work).into(),
            request: HeartbeatRequest {
                precondition: *precondition,
                desired_ttl_seconds: ttl_seconds.and_then(NonZeroU64::new),
            },
        },
        Op::Stop { env, work, force } => Command::Stop {
            environment: (*env).into(),
            work: (*work).into(),
            mode: if *force {
                StopMode::Force
            } else {
                StopMode::Graceful
            },
        },
        Op::UpdateMetadata { env, work, patch } => Command::UpdateMetadata {
            environment: (*env).into(),
            work: (*work).into(),
            patch: patch.clone(),
        },
        Op::Sweep => Command::Sweep,
        Op::Purge { age_ms } => Command::PurgeStopped {
            before: now.saturating_sub_micros(i64::try_from(*age_ms).unwrap() * 1000),
        },
        Op::Archive { env } => Command::ArchiveEnvironment {
            environment: (*env).into(),
        },
        Op::Delete { env } => Command::DeleteEnvironment {
            environment: (*env).into(),
        },
        Op::Recreate { env } => {
            let id = worklease::EnvironmentId::parse(env).ok()?;
            let mut new = worklease::NewEnvironment::self_hosted(*env);
            new.kind = original_kind(env);
            Command::CreateEnvironment { id, new }
        }
        Op::Get { .. } | Op::List { .. } | Op::Stats { .. } => return None,
    })
}

/// Runs `steps` against `table` from clock `T0`, returning the time reached.
fn drive<T: Table>(table: &mut T, steps: &[Step], seen: &mut Seen, mut now: i64) -> i64 {
    for step in steps {
        now += step.advance;
        let call = step.op.resolve(seen, now);
        let outcome = call_table(table, &call, ts(now));
        seen.record(&call, &outcome).expect("tokens only grow");
    }
    now
}

#[test]
fn a_varied_table_restores_to_the_same_bytes_and_answers() {
    let table = varied_table();
    table.validate().expect("valid");
    let bytes = table.snapshot();
    let restored = LeaseTable::restore(&bytes).expect("restores");
    restored.validate().expect("valid");
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.clock(), table.clock());
    for env in ["env_a", "env_b"] {
        let request = worklease::ListRequest {
            limit: 100,
            ..Default::default()
        };
        let later = ts(T0 + 3_600_000_000);
        assert_eq!(
            restored.list(env, &request, later).expect("listed"),
            table.list(env, &request, later).expect("listed")
        );
        assert_eq!(
            restored.stats(env, later).expect("stats"),
            table.stats(env, later).expect("stats")
        );
    }
    assert_eq!(restored.next_wakeup(), table.next_wakeup());
    // The journal survives: the next sweep returns the lapse of work_text1.
    let (mut a, mut b) = (table, restored);
    let at = ts(T0 + 71_000_000);
    let swept = a.sweep(at);
    assert!(!swept.is_empty());
    assert_eq!(b.sweep(at), swept);
}

#[test]
fn both_table_kinds_give_the_same_bytes_for_the_same_commands() {
    let table = varied_table();
    let bytes = table.snapshot();
    for shards in [1, 2, 4, 64] {
        let concurrent =
            ConcurrentLeaseTable::restore_with_shards(&bytes, shards).expect("restores");
        concurrent.validate().expect("valid");
        assert_eq!(concurrent.snapshot(), bytes, "{shards} shards");
    }
}

#[test]
fn a_lease_past_due_at_restore_lapses_at_its_own_deadline() {
    let mut table = new_table(Config::default());
    let t0 = ts(T0);
    table
        .create_work(
            "env_a",
            work_id("work_1"),
            SessionId::parse("sess_1").unwrap(),
            Metadata::new(),
            t0,
        )
        .unwrap();
    table.ack("env_a", "work_1", None, t0).unwrap();
    let beat = table
        .heartbeat("env_a", "work_1", HeartbeatRequest::default(), t0)
        .unwrap();
    let bytes = table.snapshot();
    // Restored an hour later: the deadline and the token are what they were.
    let hour_later = t0.saturating_add_micros(3_600_000_000);
    let mut restored = LeaseTable::restore(&bytes).unwrap();
    let item = restored.get("env_a", "work_1", t0).unwrap();
    assert_eq!(item.lease_deadline, Some(beat.deadline));
    assert_eq!(item.latest_heartbeat_at, beat.last_heartbeat);
    let lapses = restored.sweep(hour_later);
    assert_eq!(lapses.len(), 1);
    assert_eq!(lapses[0].at, beat.deadline);
    assert_eq!(lapses[0].to, WorkState::Queued);
    // The same in a sharded table.
    let concurrent = ConcurrentLeaseTable::restore(&bytes).unwrap();
    assert_eq!(concurrent.sweep(hour_later), lapses);
}

#[test]
fn restore_at_any_later_time_keeps_deadlines_and_tokens() {
    let table = varied_table();
    let bytes = table.snapshot();
    let clock = table.clock().unwrap();
    for offset in [0, 1, 59_999_999, 60_000_000, 3_600_000_000, 86_400_000_000] {
        let at = clock.saturating_add_micros(offset);
        let restored = LeaseTable::restore(&bytes).unwrap();
        let request = worklease::ListRequest {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            restored.list("env_a", &request, at).unwrap(),
            table.list("env_a", &request, at).unwrap(),
            "at +{offset} µs"
        );
    }
}

#[test]
fn every_command_kind_round_trips() {
    for stamped in stamped_of_every_kind() {
        let bytes = stamped.encode();
        assert_eq!(
            Stamped::decode(&bytes).as_ref(),
            Ok(&stamped),
            "{stamped:?}"
        );
        assert_eq!(stamped.clone().encode(), bytes);
    }
}

proptest! {
    // PROPTEST_CASES overrides the default for a deeper run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    /// Restore at a random step: the restored table answers every later operation as the
    /// original, and both end with the same bytes; the snapshot re-encodes to itself.
    #[test]
    fn a_restored_table_answers_as_the_original(
        config in config_sel(),
        steps in steps(40, Clock::Mixed),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(steps.len() + 1);
        let mut original = new_table(config.config());
        let mut seen = Seen::default();
        let mut now = drive(&mut original, &steps[..split], &mut seen, T0);
        let bytes = original.snapshot();
        let mut restored = LeaseTable::restore(&bytes).expect("a snapshot restores");
        restored.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        prop_assert_eq!(&restored.snapshot(), &bytes);
        for step in &steps[split..] {
            now += step.advance;
            let call = step.op.resolve(&seen, now);
            let expected = call_table(&mut original, &call, ts(now));
            let got = call_table(&mut restored, &call, ts(now));
            prop_assert_eq!(&got, &expected, "{:?}", call);
            seen.record(&call, &expected)?;
            restored.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        }
        prop_assert_eq!(restored.snapshot(), original.snapshot());
    }

    /// A snapshot plus the encoded commands after it equals the whole log; and a sharded
    /// table fed the same log writes the same bytes at every step.
    #[test]
    fn snapshot_plus_suffix_is_the_whole_log(
        config in config_sel(),
        steps in steps(40, Clock::Forward),
        split in any::<prop::sample::Index>(),
    ) {
        let config = config.config();
        let split = split.index(steps.len() + 1);
        let mut seen = Seen::default();
        let mut now = T0;
        let mut log = Vec::new();
        let mut driver = new_table(config);
        for step in &steps {
            now += step.advance;
            let call = step.op.resolve(&seen, now);
            let outcome = call_table(&mut driver, &call, ts(now));
            seen.record(&call, &outcome)?;
            if let Some(command) = command_of(&call, ts(now)) {
                log.push(Stamped::new(ts(now), command));
            }
        }
        let encoded: Vec<Vec<u8>> = log.iter().map(Stamped::encode).collect();
        let decoded: Vec<Stamped> = encoded
            .iter()
            .map(|bytes| Stamped::decode(bytes).expect("decodes"))
            .collect();
        prop_assert_eq!(&decoded, &log);
        let split = split.min(decoded.len());

        let mut whole = new_table(config);
        let mut sharded = ConcurrentLeaseTable::with_shards(config, 4);
        register_environments(&mut sharded);
        let mut answers = Vec::new();
        for stamped in &decoded {
            let single = whole.apply(stamped);
            let other = sharded.apply(stamped);
            prop_assert_eq!(&single, &other, "{:?}", stamped);
            answers.push(single);
        }
        prop_assert_eq!(sharded.snapshot(), whole.snapshot());

        let mut prefix = new_table(config);
        for stamped in &decoded[..split] {
            let _ = prefix.apply(stamped);
        }
        let mut resumed = LeaseTable::restore(&prefix.snapshot()).expect("restores");
        for (stamped, answer) in decoded[split..].iter().zip(&answers[split..]) {
            let got: Result<Applied, _> = resumed.apply(stamped);
            prop_assert_eq!(&got, answer, "{:?}", stamped);
        }
        prop_assert_eq!(resumed.snapshot(), whole.snapshot());
        let resumed_sharded = ConcurrentLeaseTable::restore_with_shards(&prefix.snapshot(), 8)
            .expect("restores");
        for stamped in &decoded[split..] {
            let _ = resumed_sharded.apply(stamped);
        }
        prop_assert_eq!(resumed_sharded.snapshot(), whole.snapshot());
    }
}
