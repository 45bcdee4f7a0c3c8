//! Shared by the proptest suites: the operation vocabulary, its generators, the driver that
//! runs an operation against a [`LeaseTable`], and plain snapshot types that a reference model
//! can build without the crate's `#[non_exhaustive]` structs.

// Each test binary compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::{NonZeroU32, NonZeroU64};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use worklease::{
    Applied, Command, Config, Cursor, EnvironmentId, EnvironmentKind, EnvironmentRecord, Error,
    Heartbeat, HeartbeatRequest, ItemSummary, LeaseTable, ListRequest, Metadata, MetadataPatch,
    NewEnvironment, Page, PollRequest, Polled, Precondition, QueueStats, SessionId, Stamped,
    StopMode, Timestamp, Transition, Ttl, Updated, WorkId, WorkItem, WorkState, WorkerId,
};

/// 2026-07-01T08:15:06.120394Z: where every generated clock starts.
pub(crate) const T0: i64 = 1_782_893_706_120_394;

/// Environments the table knows, with their kinds.
pub(crate) const ENVIRONMENTS: [(&str, EnvironmentKind); 3] = [
    ("env_a", EnvironmentKind::SelfHosted),
    ("env_b", EnvironmentKind::SelfHosted),
    ("env_c", EnvironmentKind::Cloud),
];
/// Well-formed but never registered.
const UNKNOWN_ENVIRONMENTS: [&str; 1] = ["env_zz"];
/// Not environment ids at all.
const MALFORMED_ENVIRONMENTS: [&str; 3] = ["env-a", "env_", "work_1"];

/// The ids items may be created with. Two are 32 lowercase hex digits (held as numbers by the
/// crate), two are other text; their text order is "019F" < the hex ones < "1".
pub(crate) const WORKS: [&str; 4] = [
    "work_019f3be4fd2475d9a784bf2c739e1194",
    "work_019f3be4fd2475d9a784bf2c739e11a0",
    "work_1",
    "work_019F",
];
/// Well-formed but never created; "work_0" sorts before every created id, "work_zzz" after.
const UNKNOWN_WORKS: [&str; 3] = [
    "work_0",
    "work_zzz",
    "work_019f3be4fd2475d9a784bf2c739e119a",
];
/// Not work ids at all.
const MALFORMED_WORKS: [&str; 4] = ["work_", "work-1", "work_a b", "env_a"];

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];
const SESSIONS: [&str; 2] = ["sess_1", "sess_2"];
const METADATA_KEYS: [&str; 20] = [
    "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12",
    "k13", "k14", "k15", "k16", "k17", "k18", "k19",
];

/// Which `expected_last_heartbeat` a heartbeat sends; resolved against the tokens the test has
/// seen just before the call (see [`Op::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreSel {
    Unconditional,
    NoHeartbeat,
    /// The last token the test saw for the item (`NO_HEARTBEAT` when it saw none).
    LastSeen,
    /// A token the test saw for the item before the last one, or one µs before the last.
    Stale,
    /// `now` plus this offset: almost never a token.
    Random(i64),
    Unmatchable,
}

/// Which environment an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnvSel {
    /// The environment the test saw the item created in (for item operations) or the one of
    /// the item it touched last (otherwise); `env_a` when it knows none. Keeps most operations
    /// on items that exist, so sequences reach the deep states.
    Home,
    Is(&'static str),
}

/// Which work item an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkSel {
    /// The item the last successful create, poll, ack, heartbeat or stop returned: chains
    /// poll → ack → heartbeat → … on one item.
    Recent,
    Is(&'static str),
}

/// One operation, over environment (`E`), work (`W`) and precondition (`P`) selections:
/// [`Gen`] as generated, [`Call`] once resolved against what the test saw ([`Gen::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op<E, W, P> {
    Create {
        env: E,
        work: &'static str,
        session: &'static str,
        metadata: BTreeMap<String, String>,
    },
    Poll {
        env: E,
        worker: Option<&'static str>,
        reclaim_ms: u64,
    },
    Ack {
        env: E,
        work: W,
        worker: Option<&'static str>,
    },
    Heartbeat {
        env: E,
        work: W,
        precondition: P,
        ttl_seconds: Option<u64>,
    },
    Stop {
        env: E,
        work: W,
        force: bool,
    },
    Get {
        env: E,
        work: W,
    },
    List {
        env: E,
        limit: usize,
        cursor: CursorSel,
    },
    UpdateMetadata {
        env: E,
        work: W,
        patch: MetadataPatch,
    },
    Stats {
        env: E,
    },
    Sweep,
    /// Purge the items stopped more than `age_ms` before now.
    Purge {
        age_ms: u64,
    },
    /// docs/contract.md §9: archive the environment (it takes no new work).
    Archive {
        env: E,
    },
    /// docs/contract.md §9: delete the environment and its items (refused while one holds a lease).
    Delete {
        env: E,
    },
    /// docs/contract.md §9: create the environment again with its original kind (409 while it exists).
    Recreate {
        env: E,
    },
}

/// A generated operation.
pub(crate) type Gen = Op<EnvSel, WorkSel, PreSel>;
/// A resolved operation, ready to run.
pub(crate) type Call = Op<&'static str, &'static str, Precondition>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CursorSel {
    First,
    After(&'static str),
    Before(&'static str),
}

impl CursorSel {
    pub(crate) fn cursor(self) -> Cursor {
        match self {
            Self::First => Cursor::First,
            Self::After(id) => Cursor::After(work_id(id)),
            Self::Before(id) => Cursor::Before(work_id(id)),
        }
    }
}

/// One generated step: move the clock, run an operation, then check invariants at a probe
/// time `probe` µs after the step's `now`.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) advance: i64,
    pub(crate) op: Gen,
    pub(crate) probe: i64,
    pub(crate) page_limit: usize,
}

/// The configuration a case runs with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfigSel {
    pub(crate) default_ttl: u64,
    pub(crate) ack_ttl: u64,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) reclaim_older_than_ms: u64,
}

impl ConfigSel {
    pub(crate) fn config(self) -> Config {
        let mut config = Config::default();
        config.default_ttl = Ttl::from_seconds(self.default_ttl).expect("generated in range");
        config.ack_ttl = Ttl::from_seconds(self.ack_ttl).expect("generated in range");
        config.max_attempts = self
            .max_attempts
            .map(|m| NonZeroU32::new(m).expect("1..=3"));
        config.reclaim_older_than_ms = self.reclaim_older_than_ms;
        config
    }
}

pub(crate) fn work_id(text: &str) -> WorkId {
    WorkId::parse(text).expect("a well-formed work id")
}

pub(crate) fn worker_id(text: &str) -> WorkerId {
    WorkerId::parse(text).expect("a well-formed worker id")
}

pub(crate) fn ts(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(micros)
}

/// A table with [`ENVIRONMENTS`] registered.
pub(crate) fn new_table(config: Config) -> LeaseTable {
    new_table_of::<LeaseTable>(config)
}

/// A table of any kind with [`ENVIRONMENTS`] registered.
pub(crate) fn new_table_of<T: Table>(config: Config) -> T {
    let mut table = T::build(config);
    register_environments(&mut table);
    table
}

/// Registers [`ENVIRONMENTS`] in a fresh table.
pub(crate) fn register_environments<T: Table>(table: &mut T) {
    for (env, kind) in ENVIRONMENTS {
        let id = EnvironmentId::parse(env).expect("a well-formed environment id");
        table.register(id, kind).expect("fresh table");
    }
}

/// The operations the suites drive, so the same model test runs against the single-threaded
/// table and the sharded one. Methods mirror the tables' own, names and all.
pub(crate) trait Table: Clone {
    fn build(config: Config) -> Self;
    fn register(&mut self, id: EnvironmentId, kind: EnvironmentKind) -> Result<(), Error>;
    fn create_work(
        &mut self,
        env: &str,
        work: WorkId,
        session: SessionId,
        metadata: Metadata,
        now: Timestamp,
    ) -> Result<WorkItem, Error>;
    fn poll(&mut self, env: &str, request: &PollRequest, now: Timestamp) -> Result<Polled, Error>;
    fn ack(
        &mut self,
        env: &str,
        work: &str,
        worker: Option<&WorkerId>,
        now: Timestamp,
    ) -> Result<Updated, Error>;
    fn heartbeat(
        &mut self,
        env: &str,
        work: &str,
        request: HeartbeatRequest,
        now: Timestamp,
    ) -> Result<Heartbeat, Error>;
    fn stop(
        &mut self,
        env: &str,
        work: &str,
        mode: StopMode,
        now: Timestamp,
    ) -> Result<Updated, Error>;
    fn get(&mut self, env: &str, work: &str, now: Timestamp) -> Result<WorkItem, Error>;
    fn summary(&mut self, env: &str, work: &str, now: Timestamp) -> Result<ItemSummary, Error>;
    fn list(&mut self, env: &str, request: &ListRequest, now: Timestamp) -> Result<Page, Error>;
    fn update_metadata(
        &mut self,
        env: &str,
        work: &str,
        patch: &MetadataPatch,
        now: Timestamp,
    ) -> Result<Updated, Error>;
    fn stats(&mut self, env: &str, now: Timestamp) -> Result<QueueStats, Error>;
    fn sweep(&mut self, now: Timestamp) -> Vec<Transition>;
    fn purge_stopped(&mut self, before: Timestamp, now: Timestamp) -> usize;
    fn create_environment(
        &mut self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error>;
    fn archive_environment(
        &mut self,
        env: &str,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error>;
    fn delete_environment(&mut self, env: &str, now: Timestamp) -> Result<EnvironmentId, Error>;
    fn next_wakeup(&self) -> Option<Timestamp>;
    fn validate(&self) -> Result<(), String>;
    /// `LeaseTable::next_claimable_at`, for the tables that have it.
    fn next_claimable_at(
        &self,
        _env: &str,
        _reclaim_ms: u64,
        _now: Timestamp,
    ) -> Option<Result<Option<Timestamp>, Error>> {
        None
    }
    /// The table's clock, for the tables that have one.
    fn clock(&self) -> Option<Timestamp> {
        None
    }
}

/// Forwards every [`Table`] method to the table's inherent method of the same name.
macro_rules! forward_table {
    ($table:ty, $build:expr $(, $extra:item)*) => {
        impl Table for $table {
            $($extra)*
            fn build(config: Config) -> Self {
                $build(config)
            }
            fn register(&mut self, id: EnvironmentId, kind: EnvironmentKind) -> Result<(), Error> {
                <$table>::register_environment(self, id, kind)
            }
            fn create_work(
                &mut self,
                env: &str,
                work: WorkId,
                session: SessionId,
                metadata: Metadata,
                now: Timestamp,
            ) -> Result<WorkItem, Error> {
                <$table>::create_work(self, env, work, session, metadata, now)
            }
            fn poll(
                &mut self,
                env: &str,
                request: &PollRequest,
                now: Timestamp,
            ) -> Result<Polled, Error> {
                <$table>::poll(self, env, request, now)
            }
            fn ack(
                &mut self,
                env: &str,
                work: &str,
                worker: Option<&WorkerId>,
                now: Timestamp,
            ) -> Result<Updated, Error> {
                <$table>::ack(self, env, work, worker, now)
            }
            fn heartbeat(
                &mut self,
                env: &str,
                work: &str,
                request: HeartbeatRequest,
                now: Timestamp,
            ) -> Result<Heartbeat, Error> {
                <$table>::heartbeat(self, env, work, request, now)
            }
            fn stop(
                &mut self,
                env: &str,
                work: &str,
                mode: StopMode,
                now: Timestamp,
            ) -> Result<Updated, Error> {
                <$table>::stop(self, env, work, mode, now)
            }
            fn get(&mut self, env: &str, work: &str, now: Timestamp) -> Result<WorkItem, Error> {
                <$table>::get(self, env, work, now)
            }
            fn summary(
                &mut self,
                env: &str,
                work: &str,
                now: Timestamp,
            ) -> Result<ItemSummary, Error> {
                <$table>::summary(self, env, work, now)
            }
            fn list(
                &mut self,
                env: &str,
                request: &ListRequest,
                now: Timestamp,
            ) -> Result<Page, Error> {
                <$table>::list(self, env, request, now)
            }
            fn update_metadata(
                &mut self,
                env: &str,
                work: &str,
                patch: &MetadataPatch,
                now: Timestamp,
            ) -> Result<Updated, Error> {
                <$table>::update_metadata(self, env, work, patch, now)
            }
            fn stats(&mut self, env: &str, now: Timestamp) -> Result<QueueStats, Error> {
                <$table>::stats(self, env, now)
            }
            fn sweep(&mut self, now: Timestamp) -> Vec<Transition> {
                <$table>::sweep(self, now)
            }
            fn purge_stopped(&mut self, before: Timestamp, now: Timestamp) -> usize {
                <$table>::purge_stopped(self, before, now)
            }
            fn create_environment(
                &mut self,
                id: EnvironmentId,
                new: NewEnvironment,
                now: Timestamp,
            ) -> Result<EnvironmentRecord, Error> {
                <$table>::create_environment(self, id, new, now)
            }
            fn archive_environment(
                &mut self,
                env: &str,
                now: Timestamp,
            ) -> Result<EnvironmentRecord, Error> {
                <$table>::archive_environment(self, env, now)
            }
            fn delete_environment(
                &mut self,
                env: &str,
                now: Timestamp,
            ) -> Result<EnvironmentId, Error> {
                <$table>::delete_environment(self, env, now)
            }
            fn next_wakeup(&self) -> Option<Timestamp> {
                <$table>::next_wakeup(self)
            }
            fn validate(&self) -> Result<(), String> {
                <$table>::validate(self).map_err(|violation| violation.to_string())
            }
        }
    };
}

forward_table!(
    LeaseTable,
    LeaseTable::new,
    fn next_claimable_at(
        &self,
        env: &str,
        reclaim_ms: u64,
        now: Timestamp,
    ) -> Option<Result<Option<Timestamp>, Error>> {
        Some(LeaseTable::next_claimable_at(self, env, reclaim_ms, now))
    },
    fn clock(&self) -> Option<Timestamp> {
        LeaseTable::clock(self)
    }
);
// Four shards: enough for one environment's items to span shards, cheap enough to copy at
// every step of the model test.
forward_table!(
    worklease::ConcurrentLeaseTable,
    |config| { worklease::ConcurrentLeaseTable::with_shards(config, 4) },
    fn next_claimable_at(
        &self,
        env: &str,
        reclaim_ms: u64,
        now: Timestamp,
    ) -> Option<Result<Option<Timestamp>, Error>> {
        Some(worklease::ConcurrentLeaseTable::next_claimable_at(
            self, env, reclaim_ms, now,
        ))
    },
    fn clock(&self) -> Option<Timestamp> {
        worklease::ConcurrentLeaseTable::clock(self)
    }
);

/// Two tables fed the same calls, one through the direct methods and one through
/// [`LeaseTable::apply`] (docs/contract.md §7.3): every answer must be equal, else the call panics (a
/// proptest failure). Answers are the direct table's.
#[derive(Clone, Debug)]
pub(crate) struct DirectAndApplied {
    direct: LeaseTable,
    applied: LeaseTable,
}

impl DirectAndApplied {
    /// Applies `command` at `now` to the second table and checks its answer against the
    /// direct one's, seen through `unwrap` (the [`Applied`] variant that command answers).
    fn check<R: PartialEq + std::fmt::Debug>(
        &mut self,
        direct: Result<R, Error>,
        command: Command,
        now: Timestamp,
        unwrap: impl FnOnce(Applied) -> R,
    ) -> Result<R, Error> {
        let applied = self.applied.apply(&Stamped::new(now, command));
        // Every answer the model sees also survives its encoding (a server's replay record).
        #[cfg(feature = "snapshot")]
        assert_eq!(
            Applied::decode_answer(&Applied::encode_answer(&applied)).as_ref(),
            Ok(&applied),
            "an answer changed through Applied::encode_answer and decode_answer"
        );
        let applied = applied.map(unwrap);
        assert_eq!(applied, direct, "apply and the direct method disagree");
        direct
    }
}

fn text(raw: &str) -> Box<str> {
    raw.into()
}

impl Table for DirectAndApplied {
    fn build(config: Config) -> Self {
        Self {
            direct: LeaseTable::new(config),
            applied: LeaseTable::new(config),
        }
    }
    fn register(&mut self, id: EnvironmentId, kind: EnvironmentKind) -> Result<(), Error> {
        let direct = self.direct.register_environment(id.clone(), kind);
        // No time: registration does not move the clock, so any stamp will do.
        let command = Command::RegisterEnvironment { id, kind };
        self.check(direct, command, Timestamp::MIN, |applied| {
            assert_eq!(applied, Applied::EnvironmentRegistered);
        })
    }
    fn create_work(
        &mut self,
        env: &str,
        work: WorkId,
        session: SessionId,
        metadata: Metadata,
        now: Timestamp,
    ) -> Result<WorkItem, Error> {
        let direct =
            self.direct
                .create_work(env, work.clone(), session.clone(), metadata.clone(), now);
        let command = Command::CreateWork {
            environment: text(env),
            id: work,
            session,
            metadata,
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::Created(item) => item,
            other => panic!("create answered {other:?}"),
        })
    }
    fn poll(&mut self, env: &str, request: &PollRequest, now: Timestamp) -> Result<Polled, Error> {
        let direct = self.direct.poll(env, request, now);
        let command = Command::Poll {
            environment: text(env),
            request: request.clone(),
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::Polled(polled) => polled,
            other => panic!("poll answered {other:?}"),
        })
    }
    fn ack(
        &mut self,
        env: &str,
        work: &str,
        worker: Option<&WorkerId>,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let direct = self.direct.ack(env, work, worker, now);
        let command = Command::Ack {
            environment: text(env),
            work: text(work),
            worker: worker.cloned(),
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::Acked(updated) => updated,
            other => panic!("ack answered {other:?}"),
        })
    }
    fn heartbeat(
        &mut self,
        env: &str,
        work: &str,
        request: HeartbeatRequest,
        now: Timestamp,
    ) -> Result<Heartbeat, Error> {
        let direct = self.direct.heartbeat(env, work, request, now);
        let command = Command::Heartbeat {
            environment: text(env),
            work: text(work),
            request,
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::Heartbeat(beat) => beat,
            other => panic!("heartbeat answered {other:?}"),
        })
    }
    fn stop(
        &mut self,
        env: &str,
        work: &str,
        mode: StopMode,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let direct = self.direct.stop(env, work, mode, now);
        let command = Command::Stop {
            environment: text(env),
            work: text(work),
            mode,
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::Stopped(updated) => updated,
            other => panic!("stop answered {other:?}"),
        })
    }
    fn get(&mut self, env: &str, work: &str, now: Timestamp) -> Result<WorkItem, Error> {
        let direct = self.direct.get(env, work, now);
        assert_eq!(self.applied.get(env, work, now), direct, "get");
        direct
    }
    fn summary(&mut self, env: &str, work: &str, now: Timestamp) -> Result<ItemSummary, Error> {
        let direct = self.direct.summary(env, work, now);
        assert_eq!(self.applied.summary(env, work, now), direct, "summary");
        direct
    }
    fn list(&mut self, env: &str, request: &ListRequest, now: Timestamp) -> Result<Page, Error> {
        let direct = self.direct.list(env, request, now);
        assert_eq!(self.applied.list(env, request, now), direct, "list");
        direct
    }
    fn update_metadata(
        &mut self,
        env: &str,
        work: &str,
        patch: &MetadataPatch,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let direct = self.direct.update_metadata(env, work, patch, now);
        let command = Command::UpdateMetadata {
            environment: text(env),
            work: text(work),
            patch: patch.clone(),
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::MetadataUpdated(updated) => updated,
            other => panic!("metadata update answered {other:?}"),
        })
    }
    fn stats(&mut self, env: &str, now: Timestamp) -> Result<QueueStats, Error> {
        let direct = self.direct.stats(env, now);
        assert_eq!(self.applied.stats(env, now), direct, "stats");
        direct
    }
    fn sweep(&mut self, now: Timestamp) -> Vec<Transition> {
        let direct = self.direct.sweep(now);
        self.check(Ok(direct), Command::Sweep, now, |applied| match applied {
            Applied::Swept(lapses) => lapses,
            other => panic!("sweep answered {other:?}"),
        })
        .expect("a sweep never fails")
    }
    fn purge_stopped(&mut self, before: Timestamp, now: Timestamp) -> usize {
        let direct = self.direct.purge_stopped(before, now);
        let command = Command::PurgeStopped { before };
        self.check(Ok(direct), command, now, |applied| match applied {
            Applied::Purged(count) => count,
            other => panic!("purge answered {other:?}"),
        })
        .expect("a purge never fails")
    }
    fn create_environment(
        &mut self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error> {
        let direct = self.direct.create_environment(id.clone(), new.clone(), now);
        let command = Command::CreateEnvironment { id, new };
        self.check(direct, command, now, |applied| match applied {
            Applied::EnvironmentCreated(record) => record,
            other => panic!("create environment answered {other:?}"),
        })
    }
    fn archive_environment(
        &mut self,
        env: &str,
        now: Timestamp,
    ) -> Result<EnvironmentRecord, Error> {
        let direct = self.direct.archive_environment(env, now);
        let command = Command::ArchiveEnvironment {
            environment: text(env),
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::EnvironmentArchived(record) => record,
            other => panic!("archive answered {other:?}"),
        })
    }
    fn delete_environment(&mut self, env: &str, now: Timestamp) -> Result<EnvironmentId, Error> {
        let direct = self.direct.delete_environment(env, now);
        let command = Command::DeleteEnvironment {
            environment: text(env),
        };
        self.check(direct, command, now, |applied| match applied {
            Applied::EnvironmentDeleted(id) => id,
            other => panic!("delete answered {other:?}"),
        })
    }
    fn next_wakeup(&self) -> Option<Timestamp> {
        let direct = self.direct.next_wakeup();
        assert_eq!(self.applied.next_wakeup(), direct, "next_wakeup");
        direct
    }
    fn validate(&self) -> Result<(), String> {
        assert_eq!(self.applied.clock(), self.direct.clock(), "clock");
        self.direct
            .validate()
            .map_err(|violation| violation.to_string())?;
        self.applied
            .validate()
            .map_err(|violation| violation.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

fn ttl_seconds() -> impl Strategy<Value = u64> {
    // Short leases lapse often; long ones rarely.
    prop_oneof![3 => 10u64..=30, 1 => 10u64..=600]
}

pub(crate) fn config_sel() -> impl Strategy<Value = ConfigSel> {
    (
        ttl_seconds(),
        ttl_seconds(),
        prop_oneof![2 => Just(None), 1 => (1u32..=3).prop_map(Some)],
        prop::sample::select(vec![0u64, 1000, 5000]),
    )
        .prop_map(
            |(default_ttl, ack_ttl, max_attempts, reclaim_older_than_ms)| ConfigSel {
                default_ttl,
                ack_ttl,
                max_attempts,
                reclaim_older_than_ms,
            },
        )
}

fn any_env() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        10 => Just(ENVIRONMENTS[0].0),
        4 => Just(ENVIRONMENTS[1].0),
        1 => Just(ENVIRONMENTS[2].0),
        1 => prop::sample::select(&UNKNOWN_ENVIRONMENTS[..]),
        1 => prop::sample::select(&MALFORMED_ENVIRONMENTS[..]),
    ]
}

fn env() -> impl Strategy<Value = EnvSel> {
    prop_oneof![4 => Just(EnvSel::Home), 1 => any_env().prop_map(EnvSel::Is)]
}

fn created_work() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&WORKS[..])
}

fn work() -> impl Strategy<Value = WorkSel> {
    prop_oneof![
        12 => Just(WorkSel::Recent),
        4 => created_work().prop_map(WorkSel::Is),
        1 => prop::sample::select(&UNKNOWN_WORKS[..]).prop_map(WorkSel::Is),
        1 => prop::sample::select(&MALFORMED_WORKS[..]).prop_map(WorkSel::Is),
    ]
}

fn worker() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        3 => prop::sample::select(&WORKERS[..]).prop_map(Some),
        1 => Just(None),
    ]
}

fn precondition() -> impl Strategy<Value = PreSel> {
    prop_oneof![
        3 => Just(PreSel::Unconditional),
        2 => Just(PreSel::NoHeartbeat),
        6 => Just(PreSel::LastSeen),
        2 => Just(PreSel::Stale),
        1 => (-2_000_000i64..2_000_000).prop_map(PreSel::Random),
        1 => Just(PreSel::Unmatchable),
    ]
}

fn cursor() -> impl Strategy<Value = CursorSel> {
    let ids = || {
        prop_oneof![
            3 => prop::sample::select(&WORKS[..]),
            1 => prop::sample::select(&UNKNOWN_WORKS[..]),
        ]
    };
    prop_oneof![
        2 => Just(CursorSel::First),
        2 => ids().prop_map(CursorSel::After),
        2 => ids().prop_map(CursorSel::Before),
    ]
}

fn metadata_key() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => prop::sample::select(&METADATA_KEYS[..]).prop_map(str::to_string),
        1 => Just(String::new()),
        1 => Just("k".repeat(65)),
    ]
}

fn metadata_value() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => prop::sample::select(vec!["a", "b", ""]).prop_map(str::to_string),
        1 => Just("v".repeat(513)),
    ]
}

fn patch() -> impl Strategy<Value = MetadataPatch> {
    prop::collection::btree_map(
        metadata_key(),
        prop_oneof![3 => metadata_value().prop_map(Some), 1 => Just(None)],
        0..8,
    )
}

fn initial_metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(&METADATA_KEYS[..]).prop_map(str::to_string),
        prop::sample::select(vec!["a", "b"]).prop_map(str::to_string),
        0..3,
    )
}

pub(crate) fn op() -> impl Strategy<Value = Gen> {
    prop_oneof![
        2 => (env(), created_work(), prop::sample::select(&SESSIONS[..]), initial_metadata())
            .prop_map(|(env, work, session, metadata)| Op::Create { env, work, session, metadata }),
        4 => (env(), worker(), prop::sample::select(vec![0u64, 1000, 5000]))
            .prop_map(|(env, worker, reclaim_ms)| Op::Poll { env, worker, reclaim_ms }),
        5 => (env(), work(), worker()).prop_map(|(env, work, worker)| Op::Ack { env, work, worker }),
        8 => (
            env(),
            work(),
            precondition(),
            prop_oneof![
                2 => Just(None),
                3 => prop::sample::select(vec![1u64, 10, 30, 600, 10_000]).prop_map(Some),
            ],
        )
            .prop_map(|(env, work, precondition, ttl_seconds)| Op::Heartbeat {
                env,
                work,
                precondition,
                ttl_seconds,
            }),
        2 => (env(), work(), prop::bool::weighted(0.3))
            .prop_map(|(env, work, force)| Op::Stop { env, work, force }),
        1 => (env(), work()).prop_map(|(env, work)| Op::Get { env, work }),
        1 => (env(), prop_oneof![8 => 1usize..=5, 1 => Just(0usize), 1 => Just(150usize)], cursor())
            .prop_map(|(env, limit, cursor)| Op::List { env, limit, cursor }),
        1 => (env(), work(), patch())
            .prop_map(|(env, work, patch)| Op::UpdateMetadata { env, work, patch }),
        1 => env().prop_map(|env| Op::Stats { env }),
        1 => Just(Op::Sweep),
        1 => prop::sample::select(vec![0u64, 1000, 60_000]).prop_map(|age_ms| Op::Purge { age_ms }),
        // The environment lifecycle interleaves with every work operation.
        1 => env().prop_map(|env| Op::Archive { env }),
        1 => env().prop_map(|env| Op::Delete { env }),
        // Only the case's own environments come back (their items are what the listings read).
        1 => prop::sample::select(ENVIRONMENTS.map(|(id, _)| id).to_vec())
            .prop_map(|env| Op::Recreate { env: EnvSel::Is(env) }),
    ]
}

/// How a case's clock moves between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Not at all, µs, ms, seconds, minutes (past any TTL), exactly whole seconds (so
    /// deadlines and reclaim windows are hit exactly), or backwards.
    Mixed,
    /// Whole seconds only, mostly not at all: many leases share a deadline (lapse order falls
    /// back to creation order) and many heartbeats share an instant (tokens must still grow).
    Coarse,
    /// Like `Mixed`, but never backwards: the sharded table equals the single one only on a
    /// clock that does not run back across calls (see `ConcurrentLeaseTable`'s docs).
    Forward,
}

/// How far the clock moves before a step, in µs.
fn advance(clock: Clock) -> BoxedStrategy<i64> {
    let seconds =
        |s: &[i64]| prop::sample::select(s.iter().map(|s| s * 1_000_000).collect::<Vec<_>>());
    match clock {
        Clock::Mixed => prop_oneof![
            6 => Just(0i64),
            4 => 1i64..1_000,
            6 => 1_000i64..1_000_000,
            5 => 1_000_000i64..10_000_000,
            2 => 30_000_000i64..700_000_000,
            4 => seconds(&[1, 5, 10, 30, 60]),
            2 => -5_000_000i64..-1,
        ]
        .boxed(),
        Clock::Forward => prop_oneof![
            6 => Just(0i64),
            4 => 1i64..1_000,
            6 => 1_000i64..1_000_000,
            5 => 1_000_000i64..10_000_000,
            2 => 30_000_000i64..700_000_000,
            4 => seconds(&[1, 5, 10, 30, 60]),
        ]
        .boxed(),
        Clock::Coarse => prop_oneof![
            8 => Just(0i64),
            4 => seconds(&[1, 5, 10, 30]),
            1 => seconds(&[-1, -5]),
        ]
        .boxed(),
    }
}

fn probe() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        1 => 1i64..5_000_000,
        2 => 5_000_000i64..700_000_000,
    ]
}

pub(crate) fn step(clock: Clock) -> impl Strategy<Value = Step> {
    (advance(clock), op(), probe(), 1usize..=4).prop_map(|(advance, op, probe, page_limit)| Step {
        advance,
        op,
        probe,
        page_limit,
    })
}

/// One to four creates, then up to `max` random steps: every case starts with items to work on.
pub(crate) fn steps(max: usize, clock: Clock) -> impl Strategy<Value = Vec<Step>> {
    let create = (
        prop_oneof![3 => Just(ENVIRONMENTS[0].0), 1 => Just(ENVIRONMENTS[1].0)],
        created_work(),
        0i64..1_000,
    )
        .prop_map(|(env, work, advance)| Step {
            advance,
            op: Op::Create {
                env: EnvSel::Is(env),
                work,
                session: SESSIONS[0],
                metadata: BTreeMap::new(),
            },
            probe: 0,
            page_limit: 2,
        });
    (
        prop::collection::vec(create, 1..=4),
        prop::collection::vec(step(clock), 0..=max),
    )
        .prop_map(|(mut creates, steps)| {
            creates.extend(steps);
            creates
        })
}

// ---------------------------------------------------------------------------------------------
// What the test has seen: for resolving selections, and the "tokens only grow" invariant

/// What the table's results told the test so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    /// Every heartbeat token the table returned, per item, in order.
    tokens: HashMap<&'static str, Vec<Timestamp>>,
    /// The environment each item was created in.
    homes: HashMap<&'static str, &'static str>,
    /// The item the last successful item operation returned.
    recent: Option<&'static str>,
}

impl Seen {
    /// Records what an outcome tells; fails when a token is not strictly greater than every
    /// earlier token of the same item (docs/contract.md §3.3: tokens are unique per item, across lapses).
    pub(crate) fn record(&mut self, call: &Call, outcome: &Outcome) -> Result<(), TestCaseError> {
        match (call, outcome) {
            (Op::Heartbeat { work, .. }, Outcome::Heartbeat(Ok(beat))) => {
                let tokens = self.tokens.entry(*work).or_default();
                // docs/contract.md §3.3: a stopping item's heartbeat issues no token; it
                // reports the lease's last one, if the lease had a heartbeat.
                if !beat.lease_extended() {
                    if let Some(held) = beat.last_heartbeat {
                        prop_assert_eq!(Some(held), tokens.last().copied(), "{}", work);
                    }
                    self.recent = Some(*work);
                    return Ok(());
                }
                let Some(token) = beat.last_heartbeat else {
                    return Err(TestCaseError::fail(format!(
                        "a renewal of {work} without a token"
                    )));
                };
                if let Some(&last) = tokens.last() {
                    prop_assert!(
                        token > last,
                        "token {:?} for {} not after {:?}",
                        token,
                        work,
                        last
                    );
                }
                tokens.push(token);
                self.recent = Some(*work);
            }
            (Op::Create { env, work, .. }, Outcome::Item(Ok(_))) => {
                // A new item (the first of its id, or one created again after a purge):
                // its tokens start afresh.
                self.tokens.remove(*work);
                self.homes.insert(*work, *env);
                self.recent = Some(*work);
            }
            (Op::Poll { .. }, Outcome::Polled(Ok(PolledSnap::Delivered(item)))) => {
                self.recent = WORKS.iter().copied().find(|work| *work == item.id);
                prop_assert!(self.recent.is_some(), "delivered an unknown id {}", item.id);
            }
            (Op::Ack { work, .. } | Op::Stop { work, .. }, Outcome::Updated(Ok((_, true)))) => {
                self.recent = Some(*work);
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn last(&self, work: &str) -> Option<Timestamp> {
        self.tokens.get(work).and_then(|t| t.last().copied())
    }

    fn before_last(&self, work: &str) -> Option<Timestamp> {
        let tokens = self.tokens.get(work)?;
        match tokens.len() {
            0 => None,
            1 => Some(tokens[0].saturating_sub_micros(1)),
            n => Some(tokens[n - 2]),
        }
    }

    fn work(&self, work: WorkSel) -> &'static str {
        match work {
            WorkSel::Recent => self.recent.unwrap_or(WORKS[0]),
            WorkSel::Is(work) => work,
        }
    }

    fn env(&self, env: EnvSel, work: Option<&'static str>) -> &'static str {
        match env {
            EnvSel::Home => work
                .or(self.recent)
                .and_then(|work| self.homes.get(work).copied())
                .unwrap_or(ENVIRONMENTS[0].0),
            EnvSel::Is(env) => env,
        }
    }

    fn precondition(&self, precondition: PreSel, work: &str, now: i64) -> Precondition {
        match precondition {
            PreSel::Unconditional => Precondition::Unconditional,
            PreSel::NoHeartbeat => Precondition::NoHeartbeat,
            PreSel::LastSeen => self
                .last(work)
                .map_or(Precondition::NoHeartbeat, Precondition::LastHeartbeat),
            PreSel::Stale => {
                Precondition::LastHeartbeat(self.before_last(work).unwrap_or(ts(now - 1)))
            }
            PreSel::Random(offset) => Precondition::LastHeartbeat(ts(now + offset)),
            PreSel::Unmatchable => Precondition::Unmatchable,
        }
    }
}

impl Gen {
    /// Resolves the generated selections against what the test has seen so far.
    pub(crate) fn resolve(&self, seen: &Seen, now: i64) -> Call {
        match self {
            Self::Create {
                env,
                work,
                session,
                metadata,
            } => Op::Create {
                env: seen.env(*env, None),
                work,
                session,
                metadata: metadata.clone(),
            },
            Self::Poll {
                env,
                worker,
                reclaim_ms,
            } => Op::Poll {
                env: seen.env(*env, None),
                worker: *worker,
                reclaim_ms: *reclaim_ms,
            },
            Self::Ack { env, work, worker } => {
                let work = seen.work(*work);
                Op::Ack {
                    env: seen.env(*env, Some(work)),
                    work,
                    worker: *worker,
                }
            }
            Self::Heartbeat {
                env,
                work,
                precondition,
                ttl_seconds,
            } => {
                let work = seen.work(*work);
                Op::Heartbeat {
                    env: seen.env(*env, Some(work)),
                    work,
                    precondition: seen.precondition(*precondition, work, now),
                    ttl_seconds: *ttl_seconds,
                }
            }
            Self::Stop { env, work, force } => {
                let work = seen.work(*work);
                Op::Stop {
                    env: seen.env(*env, Some(work)),
                    work,
                    force: *force,
                }
            }
            Self::Get { env, work } => {
                let work = seen.work(*work);
                Op::Get {
                    env: seen.env(*env, Some(work)),
                    work,
                }
            }
            Self::List { env, limit, cursor } => Op::List {
                env: seen.env(*env, None),
                limit: *limit,
                cursor: *cursor,
            },
            Self::UpdateMetadata { env, work, patch } => {
                let work = seen.work(*work);
                Op::UpdateMetadata {
                    env: seen.env(*env, Some(work)),
                    work,
                    patch: patch.clone(),
                }
            }
            Self::Stats { env } => Op::Stats {
                env: seen.env(*env, None),
            },
            Self::Sweep => Op::Sweep,
            Self::Purge { age_ms } => Op::Purge { age_ms: *age_ms },
            Self::Archive { env } => Op::Archive {
                env: seen.env(*env, None),
            },
            Self::Delete { env } => Op::Delete {
                env: seen.env(*env, None),
            },
            Self::Recreate { env } => Op::Recreate {
                env: seen.env(*env, None),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plain snapshots

/// Every field of a [`WorkItem`], ids as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snap {
    pub(crate) id: String,
    pub(crate) environment_id: String,
    pub(crate) session_id: String,
    pub(crate) state: WorkState,
    pub(crate) created_at: Timestamp,
    pub(crate) acknowledged_at: Option<Timestamp>,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) latest_heartbeat_at: Option<Timestamp>,
    pub(crate) stop_requested_at: Option<Timestamp>,
    pub(crate) stopped_at: Option<Timestamp>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) lapses: u32,
    pub(crate) lease_deadline: Option<Timestamp>,
    pub(crate) lease_ttl: Option<Ttl>,
    pub(crate) delivered_at: Option<Timestamp>,
    pub(crate) worker: Option<String>,
    pub(crate) lease_epoch: u32,
}

impl Snap {
    pub(crate) fn of(item: &WorkItem) -> Self {
        Self {
            id: item.id.to_string(),
            environment_id: item.environment_id.to_string(),
            session_id: item.session_id.to_string(),
            state: item.state,
            created_at: item.created_at,
            acknowledged_at: item.acknowledged_at,
            started_at: item.started_at,
            latest_heartbeat_at: item.latest_heartbeat_at,
            stop_requested_at: item.stop_requested_at,
            stopped_at: item.stopped_at,
            metadata: item
                .metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lapses: item.lapses,
            lease_deadline: item.lease_deadline,
            lease_ttl: item.lease_ttl,
            delivered_at: item.delivered_at,
            worker: item.worker.as_ref().map(ToString::to_string),
            lease_epoch: item.lease_epoch,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PolledSnap {
    Delivered(Box<Snap>),
    Empty {
        next_claimable_at: Option<Timestamp>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageSnap {
    pub(crate) data: Vec<Snap>,
    pub(crate) first_id: Option<String>,
    pub(crate) last_id: Option<String>,
    pub(crate) has_more: bool,
    pub(crate) next_page: Option<String>,
}

impl PageSnap {
    pub(crate) fn of(page: &Page) -> Self {
        Self {
            data: page.data.iter().map(Snap::of).collect(),
            first_id: page.first_id.as_ref().map(ToString::to_string),
            last_id: page.last_id.as_ref().map(ToString::to_string),
            has_more: page.has_more,
            next_page: page.next_page.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TransitionSnap {
    pub(crate) environment_id: String,
    pub(crate) work_id: String,
    pub(crate) from: WorkState,
    pub(crate) to: WorkState,
    pub(crate) at: Timestamp,
    pub(crate) lapses: u32,
}

impl TransitionSnap {
    pub(crate) fn of(transition: &Transition) -> Self {
        Self {
            environment_id: transition.environment_id.to_string(),
            work_id: transition.work_id.to_string(),
            from: transition.from,
            to: transition.to,
            at: transition.at,
            lapses: transition.lapses,
        }
    }
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Item(Result<Snap, Error>),
    Polled(Result<PolledSnap, Error>),
    Updated(Result<(Snap, bool), Error>),
    Heartbeat(Result<Heartbeat, Error>),
    Page(Result<PageSnap, Error>),
    Stats(Result<QueueStats, Error>),
    Swept(Vec<TransitionSnap>),
    Purged(usize),
    Environment(Result<EnvSnap, Error>),
    Deleted(Result<String, Error>),
}

/// What the model tracks of an environment record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvSnap {
    pub(crate) id: String,
    pub(crate) kind: EnvironmentKind,
    pub(crate) name: String,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) archived_at: Option<Timestamp>,
}

impl EnvSnap {
    pub(crate) fn of(record: &EnvironmentRecord) -> Self {
        Self {
            id: record.id.to_string(),
            kind: record.kind,
            name: record.name.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            archived_at: record.archived_at,
        }
    }
}

/// The kind `env` was first registered with.
pub(crate) fn original_kind(env: &str) -> EnvironmentKind {
    ENVIRONMENTS
        .iter()
        .find(|(id, _)| *id == env)
        .map_or(EnvironmentKind::SelfHosted, |(_, kind)| *kind)
}

// ---------------------------------------------------------------------------------------------
// Driving the table

/// `next_claimable_at` read just before a poll at `at` agrees with what the poll answered:
/// the same error; an instant at or before `at` exactly when the poll delivers (or, with a
/// lease past due that the poll lapses first, may deliver); otherwise the empty poll's own
/// `next_claimable_at`.
fn check_peek(
    peeked: &Result<Option<Timestamp>, Error>,
    polled: &Result<Polled, Error>,
    at: Timestamp,
    lapse_due: bool,
) {
    match (peeked, polled) {
        (Err(peeked), Err(polled)) => assert_eq!(peeked, polled, "the same refusal"),
        (Ok(Some(when)), Ok(Polled::Delivered(_))) => {
            assert!(
                *when <= at,
                "a poll delivered, but the peek said {when:?} > {at:?}"
            );
        }
        (Ok(Some(when)), Ok(Polled::Empty { .. })) if *when <= at => {
            assert!(
                lapse_due,
                "the peek said claimable at {at:?}, the poll found nothing"
            );
        }
        (Ok(peeked), Ok(Polled::Empty { next_claimable_at })) => {
            assert_eq!(
                peeked, next_claimable_at,
                "an empty poll's next_claimable_at"
            );
        }
        (peeked, polled) => panic!("the peek answered {peeked:?}, the poll {polled:?}"),
    }
}

/// Runs one operation against the table.
pub(crate) fn call_table<T: Table>(table: &mut T, call: &Call, now: Timestamp) -> Outcome {
    match call {
        Op::Create {
            env,
            work,
            session,
            metadata,
        } => Outcome::Item(
            table
                .create_work(
                    env,
                    work_id(work),
                    SessionId::parse(session).expect("a well-formed session id"),
                    Metadata::from_map(metadata.clone()).expect("generated within limits"),
                    now,
                )
                .map(|item| Snap::of(&item)),
        ),
        Op::Poll {
            env,
            worker,
            reclaim_ms,
        } => {
            let request = PollRequest {
                worker: worker.map(worker_id),
                reclaim_older_than_ms: *reclaim_ms,
                ..PollRequest::default()
            };
            let peeked = table.next_claimable_at(env, *reclaim_ms, now);
            let at = table.clock().map_or(now, |clock| clock.max(now));
            let lapse_due = table.next_wakeup().is_some_and(|wakeup| wakeup <= at);
            let polled = table.poll(env, &request, now);
            if let Some(peeked) = peeked {
                check_peek(&peeked, &polled, at, lapse_due);
            }
            Outcome::Polled(polled.map(|polled| match polled {
                Polled::Delivered(item) => PolledSnap::Delivered(Box::new(Snap::of(&item))),
                Polled::Empty { next_claimable_at } => PolledSnap::Empty { next_claimable_at },
            }))
        }
        Op::Ack { env, work, worker } => {
            let worker = worker.map(worker_id);
            Outcome::Updated(
                table
                    .ack(env, work, worker.as_ref(), now)
                    .map(|updated| (Snap::of(&updated.item), updated.changed)),
            )
        }
        Op::Heartbeat {
            env,
            work,
            precondition,
            ttl_seconds,
        } => {
            let request = HeartbeatRequest {
                precondition: *precondition,
                desired_ttl_seconds: ttl_seconds.and_then(NonZeroU64::new),
            };
            Outcome::Heartbeat(table.heartbeat(env, work, request, now))
        }
        Op::Stop { env, work, force } => {
            let mode = if *force {
                StopMode::Force
            } else {
                StopMode::Graceful
            };
            Outcome::Updated(
                table
                    .stop(env, work, mode, now)
                    .map(|updated| (Snap::of(&updated.item), updated.changed)),
            )
        }
        Op::Get { env, work } => {
            let item = table.get(env, work, now);
            // The summary is the same read, cut down: every run of the model checks it too.
            let summary = table.summary(env, work, now);
            assert_eq!(
                summary,
                item.as_ref().map(ItemSummary::from).map_err(Clone::clone),
                "summary of {env}/{work} at {now:?}"
            );
            Outcome::Item(item.map(|i| Snap::of(&i)))
        }
        Op::List { env, limit, cursor } => {
            let request = ListRequest {
                limit: *limit,
                cursor: cursor.cursor(),
            };
            Outcome::Page(
                table
                    .list(env, &request, now)
                    .map(|page| PageSnap::of(&page)),
            )
        }
        Op::UpdateMetadata { env, work, patch } => Outcome::Updated(
            table
                .update_metadata(env, work, patch, now)
                .map(|updated| (Snap::of(&updated.item), updated.changed)),
        ),
        Op::Stats { env } => Outcome::Stats(table.stats(env, now)),
        Op::Sweep => Outcome::Swept(table.sweep(now).iter().map(TransitionSnap::of).collect()),
        Op::Purge { age_ms } => {
            let age = i64::try_from(*age_ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let before = now.saturating_sub_micros(age);
            Outcome::Purged(table.purge_stopped(before, now))
        }
        Op::Archive { env } => Outcome::Environment(
            table
                .archive_environment(env, now)
                .map(|record| EnvSnap::of(&record)),
        ),
        Op::Delete { env } => {
            Outcome::Deleted(table.delete_environment(env, now).map(|id| id.to_string()))
        }
        Op::Recreate { env } => {
            // Only the case's own (well-formed) environments are created again.
            let id = EnvironmentId::parse(env).expect("a well-formed environment id");
            let mut new = NewEnvironment::self_hosted(*env);
            new.kind = original_kind(env);
            Outcome::Environment(
                table
                    .create_environment(id, new, now)
                    .map(|record| EnvSnap::of(&record)),
            )
        }
    }
}

/// Every item of every self-hosted environment, paging forward `limit` at a time; fails when
/// the pages repeat or skip an id, or disagree with their own `first_id`/`last_id`/`has_more`.
pub(crate) fn list_all<T: Table>(
    table: &mut T,
    limit: usize,
    now: Timestamp,
) -> Result<Vec<Snap>, TestCaseError> {
    let mut all = Vec::new();
    for (env, kind) in ENVIRONMENTS {
        if kind != EnvironmentKind::SelfHosted {
            continue;
        }
        let mut cursor = Cursor::First;
        let mut pages = 0;
        loop {
            let request = ListRequest { limit, cursor };
            let page = match table.list(env, &request, now) {
                Ok(page) => page,
                // Deleted, and not created again.
                Err(Error::EnvironmentNotFound { .. }) => break,
                Err(e) => return Err(TestCaseError::fail(format!("list {env}: {e}"))),
            };
            let page = PageSnap::of(&page);
            prop_assert!(page.data.len() <= limit, "page longer than its limit");
            prop_assert_eq!(
                page.first_id.as_ref(),
                page.data.first().map(|item| &item.id)
            );
            prop_assert_eq!(page.last_id.as_ref(), page.data.last().map(|item| &item.id));
            for item in &page.data {
                prop_assert_eq!(&item.environment_id, env);
            }
            all.extend(page.data);
            pages += 1;
            prop_assert!(pages <= 100, "paging does not end");
            match page.next_page {
                Some(next) => {
                    prop_assert!(page.has_more);
                    cursor = Cursor::After(work_id(&next));
                }
                None => {
                    prop_assert!(!page.has_more);
                    break;
                }
            }
        }
    }
    Ok(all)
}

/// The ids of a listing, checked to be unique and ascending within each environment.
pub(crate) fn ids_of(listing: &[Snap]) -> Result<BTreeSet<String>, TestCaseError> {
    let mut ids = BTreeSet::new();
    for pair in listing.windows(2) {
        if pair[0].environment_id == pair[1].environment_id {
            prop_assert!(
                pair[0].id < pair[1].id,
                "list not ascending: {} then {}",
                pair[0].id,
                pair[1].id
            );
        }
    }
    for item in listing {
        prop_assert!(ids.insert(item.id.clone()), "{} listed twice", item.id);
    }
    Ok(ids)
}
