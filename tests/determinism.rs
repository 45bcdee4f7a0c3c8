//! The table is a deterministic function of its operations: two tables (each with its own hash
//! seeds) fed the same sequence agree on everything observable, and replaying a recorded
//! sequence into a fresh table, or into a copy taken halfway, reproduces every result.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use worklease::{Error, LeaseTable, QueueStats, Timestamp};

/// Everything a caller can observe of a table at `now`, read from copies so the table itself
/// is left as it was.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    next_wakeup: Option<Timestamp>,
    /// The lapses a sweep at `now` returns (those found lazily since the last sweep included).
    swept: Vec<TransitionSnap>,
    /// Every item, full snapshot, including lease deadlines and last heartbeat tokens.
    items: Vec<Snap>,
    stats: Vec<Result<QueueStats, Error>>,
    /// An unconditional heartbeat at `now` on each item: exposes the hidden last token (the
    /// next one must exceed it) and the deadline it yields.
    heartbeats: Vec<Outcome>,
    /// What a sweep long after every deadline returns.
    swept_later: Vec<TransitionSnap>,
}

fn observe(table: &LeaseTable, now: i64) -> Result<Observed, TestCaseError> {
    let mut copy = table.clone();
    let swept = copy.sweep(ts(now)).iter().map(TransitionSnap::of).collect();
    let items = list_all(&mut copy, 3, ts(now))?;
    ids_of(&items)?;
    let stats = ENVIRONMENTS
        .iter()
        .map(|(env, _)| copy.stats(*env, ts(now)))
        .collect();
    let heartbeats = items
        .iter()
        .map(|item| {
            let work = WORKS
                .iter()
                .copied()
                .find(|work| *work == item.id)
                .expect("only generated ids are created");
            let env = ENVIRONMENTS
                .iter()
                .find(|(env, _)| *env == item.environment_id)
                .expect("only registered environments hold items")
                .0;
            let call = Op::Heartbeat {
                env,
                work,
                precondition: worklease::Precondition::Unconditional,
                ttl_seconds: None,
            };
            call_table(&mut copy.clone(), &call, ts(now))
        })
        .collect();
    let swept_later = copy
        .sweep(ts(now + 700_000_000))
        .iter()
        .map(TransitionSnap::of)
        .collect();
    Ok(Observed {
        next_wakeup: table.next_wakeup(),
        swept,
        items,
        stats,
        heartbeats,
        swept_later,
    })
}

/// One step as it was run: the instant, the resolved call and what the table returned.
struct Recorded {
    now: i64,
    call: Call,
    outcome: Outcome,
}

/// Runs steps on a table, resolving each against what the table returned so far; carries
/// the clock and that memory from one batch of steps to the next.
struct Recorder {
    seen: Seen,
    now: i64,
}

impl Recorder {
    fn new() -> Self {
        Self {
            seen: Seen::default(),
            now: T0,
        }
    }

    fn run(
        &mut self,
        table: &mut LeaseTable,
        steps: &[Step],
    ) -> Result<Vec<Recorded>, TestCaseError> {
        let mut recorded = Vec::with_capacity(steps.len());
        for step in steps {
            self.now += step.advance;
            let call = step.op.resolve(&self.seen, self.now);
            let outcome = call_table(table, &call, ts(self.now));
            self.seen.record(&call, &outcome)?;
            recorded.push(Recorded {
                now: self.now,
                call,
                outcome,
            });
        }
        Ok(recorded)
    }
}

fn replay(table: &mut LeaseTable, recorded: &[Recorded]) -> Result<(), TestCaseError> {
    for (index, step) in recorded.iter().enumerate() {
        let outcome = call_table(table, &step.call, ts(step.now));
        prop_assert_eq!(
            &outcome,
            &step.outcome,
            "step {}: {:?} at {}",
            index,
            step.call,
            step.now
        );
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(500),
        ..ProptestConfig::default()
    })]

    /// Two tables built apart (different hash seeds) and fed the same sequence.
    #[test]
    fn two_tables_fed_the_same_operations_agree_on_everything(
        config in config_sel(),
        steps in steps(60, Clock::Mixed),
    ) {
        let mut first = new_table(config.config());
        let mut second = new_table(config.config());
        let mut seen = Seen::default();
        let mut now = T0;
        for (index, step) in steps.iter().enumerate() {
            now += step.advance;
            let call = step.op.resolve(&seen, now);
            let a = call_table(&mut first, &call, ts(now));
            let b = call_table(&mut second, &call, ts(now));
            prop_assert_eq!(&a, &b, "step {}: {:?} at {}", index, call, now);
            prop_assert_eq!(first.next_wakeup(), second.next_wakeup());
            seen.record(&call, &a)?;
        }
        for probe in [0, 1, 10_000_000, 700_000_000] {
            prop_assert_eq!(observe(&first, now + probe)?, observe(&second, now + probe)?);
        }
    }

    /// A recorded sequence replayed into a fresh table, and its second half into a copy of
    /// the original taken halfway, gives the same result at every step and the same end state.
    #[test]
    fn replaying_a_recorded_sequence_reproduces_every_result(
        config in config_sel(),
        steps in steps(60, Clock::Mixed),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(steps.len() + 1);
        let mut original = new_table(config.config());
        let mut recorder = Recorder::new();
        let head = recorder.run(&mut original, &steps[..split])?;
        let mut halfway = original.clone();
        let tail = recorder.run(&mut original, &steps[split..])?;

        let mut fresh = new_table(config.config());
        replay(&mut fresh, &head)?;
        replay(&mut fresh, &tail)?;
        replay(&mut halfway, &tail)?;

        let expected = observe(&original, recorder.now)?;
        prop_assert_eq!(&observe(&fresh, recorder.now)?, &expected);
        prop_assert_eq!(&observe(&halfway, recorder.now)?, &expected);
        fresh.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        halfway.validate().map_err(|violation| TestCaseError::fail(violation.to_string()))?;
    }
}
