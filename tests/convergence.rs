//! docs/contract.md §7.3/§7.4: the same `Stamped` log gives the same answers, the same state and
//! byte-identical snapshots, whatever
//! the table: two `LeaseTable`s (each with its own random hash seed) and two
//! `ConcurrentLeaseTable`s of different shard counts. Stamps repeat, jump and go backwards;
//! commands name malformed, unknown and cloud ids. Reads interleaved into one table's history
//! at any times change none of it.

#![cfg(feature = "snapshot")]

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use proptest::prelude::*;
use worklease::{
    Applied, Command, ConcurrentLeaseTable, Config, EnvironmentId, EnvironmentKind,
    EnvironmentListRequest, EnvironmentPatch, HeartbeatRequest, InvariantViolation, LeaseTable,
    ListRequest, Metadata, MetadataPatch, NewEnvironment, PollRequest, Precondition, SessionId,
    Stamped, StopMode, Timestamp, Ttl, WorkId, WorkerId,
};

/// 2026-07-01T08:15:06.120394Z.
const T0: i64 = 1_782_893_706_120_394;
const SECOND: i64 = 1_000_000;

/// Two self-hosted environments, a cloud one, an unknown one and a malformed one.
const ENVIRONMENTS: [&str; 5] = ["env_a", "env_b", "env_c", "env_zz", "env-a"];
const WORKS: [&str; 6] = [
    "work_019f3be4fd2475d9a784bf2c739e1194",
    "work_019f3be4fd2475d9a784bf2c739e11a0",
    "work_1",
    "work_019F",
    "work_unknown",
    "work_a b",
];
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];
const SESSIONS: [&str; 2] = ["sess_019f3be4fd2475d9a784bf2c739e1194", "sess_1"];

/// A command before its precondition is resolved against the history (so that tokens the
/// leader handed out can be echoed, stale or not).
#[derive(Clone, Debug)]
enum Gen {
    Register(usize, bool),
    Create(usize, usize, usize, Option<(String, String)>),
    Poll(usize, Option<usize>, u64),
    Ack(usize, usize, Option<usize>),
    Heartbeat(usize, usize, PreGen, Option<u64>),
    Stop(usize, usize, bool),
    Metadata(usize, usize, String, Option<String>),
    Sweep,
    Purge(i64),
    CreateEnvironment(usize, bool),
    UpdateEnvironment(usize, String, Option<String>),
    ArchiveEnvironment(usize),
    DeleteEnvironment(usize),
}

#[derive(Clone, Copy, Debug)]
enum PreGen {
    Unconditional,
    NoHeartbeat,
    /// The last token any answer gave for the item.
    Last,
    /// The token before it.
    Stale,
}

#[derive(Clone, Debug)]
enum ReadGen {
    Get(usize, usize),
    List(usize, usize),
    Stats(usize),
    Wakeup,
}

fn gen_command() -> impl Strategy<Value = Gen> {
    let env = || prop_oneof![8 => Just(0usize), 3 => Just(1usize), 1 => 2usize..5];
    let work = || prop_oneof![6 => 0usize..4, 1 => 4usize..6];
    let worker = || prop::option::of(0usize..3);
    let precondition = prop_oneof![
        1 => Just(PreGen::Unconditional),
        1 => Just(PreGen::NoHeartbeat),
        3 => Just(PreGen::Last),
        1 => Just(PreGen::Stale),
    ];
    let pair = ("[ab]", prop::option::of("[xy]{0,1}")).prop_map(|(k, v)| (k, v));
    prop_oneof![
        1 => (0usize..5, any::<bool>()).prop_map(|(e, cloud)| Gen::Register(e, cloud)),
        4 => (env(), work(), 0usize..2, prop::option::of(pair.clone().prop_map(|(k, v)| (k, v.unwrap_or_default()))))
            .prop_map(|(e, w, s, m)| Gen::Create(e, w, s, m)),
        4 => (env(), worker(), prop::sample::select(vec![0u64, 1000, 5000]))
            .prop_map(|(e, w, r)| Gen::Poll(e, w, r)),
        4 => (env(), work(), worker()).prop_map(|(e, w, k)| Gen::Ack(e, w, k)),
        8 => (env(), work(), precondition, prop::option::of(prop_oneof![1u64..=9, 10u64..=30, Just(u64::MAX)]))
            .prop_map(|(e, w, p, t)| Gen::Heartbeat(e, w, p, t)),
        2 => (env(), work(), any::<bool>()).prop_map(|(e, w, f)| Gen::Stop(e, w, f)),
        1 => (env(), work(), pair).prop_map(|(e, w, (k, v))| Gen::Metadata(e, w, k, v)),
        2 => Just(Gen::Sweep),
        1 => prop::sample::select(vec![0i64, 1, 60]).prop_map(Gen::Purge),
        1 => (0usize..5, any::<bool>()).prop_map(|(e, cloud)| Gen::CreateEnvironment(e, cloud)),
        1 => (env(), "[a-z]{1,3}", prop::option::of("[xy]{0,2}"))
            .prop_map(|(e, name, value)| Gen::UpdateEnvironment(e, name, value)),
        1 => env().prop_map(Gen::ArchiveEnvironment),
        1 => env().prop_map(Gen::DeleteEnvironment),
    ]
}

/// Clock steps: repeats, µs, ms, seconds, past a TTL, and backwards.
fn gen_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        2 => 1i64..1_000,
        3 => 1_000i64..2 * SECOND,
        2 => 2 * SECOND..40 * SECOND,
        1 => 60 * SECOND..700 * SECOND,
        2 => -5 * SECOND..0,
    ]
}

fn gen_read() -> impl Strategy<Value = (i64, ReadGen)> {
    let read = prop_oneof![
        (0usize..5, 0usize..6).prop_map(|(e, w)| ReadGen::Get(e, w)),
        (0usize..5, 1usize..4).prop_map(|(e, l)| ReadGen::List(e, l)),
        (0usize..5).prop_map(ReadGen::Stats),
        Just(ReadGen::Wakeup),
    ];
    // Reads at any time: the past, now, or far past every deadline.
    (-60 * SECOND..800 * SECOND, read)
}

/// The tokens answers handed out so far, per item, oldest first.
#[derive(Default)]
struct Tokens(BTreeMap<String, Vec<Timestamp>>);

impl Tokens {
    fn record(&mut self, work: &str, answer: &Result<Applied, worklease::Error>) {
        // Only a renewal hands out a new token (a stopping item's answer repeats the held one).
        if let Ok(Applied::Heartbeat(beat)) = answer {
            if let (true, Some(token)) = (beat.lease_extended(), beat.last_heartbeat) {
                self.0.entry(work.to_owned()).or_default().push(token);
            }
        }
    }

    fn precondition(&self, work: &str, pre: PreGen) -> Precondition {
        let seen = self.0.get(work).map(Vec::as_slice).unwrap_or_default();
        match pre {
            PreGen::Unconditional => Precondition::Unconditional,
            PreGen::NoHeartbeat => Precondition::NoHeartbeat,
            PreGen::Last => seen
                .last()
                .copied()
                .map_or(Precondition::NoHeartbeat, Precondition::LastHeartbeat),
            PreGen::Stale => seen
                .len()
                .checked_sub(2)
                .map_or(Precondition::NoHeartbeat, |i| {
                    Precondition::LastHeartbeat(seen[i])
                }),
        }
    }
}

fn command(generated: &Gen, tokens: &Tokens) -> Command {
    let env = |e: usize| -> Box<str> { ENVIRONMENTS[e].into() };
    let work = |w: usize| -> Box<str> { WORKS[w].into() };
    let worker = |k: Option<usize>| k.map(|k| WorkerId::parse(WORKERS[k]).expect("well formed"));
    match generated {
        Gen::Register(e, cloud) => Command::RegisterEnvironment {
            // Malformed names are not commands (ids a command creates are typed).
            id: EnvironmentId::parse(ENVIRONMENTS[*e])
                .unwrap_or_else(|_| EnvironmentId::parse("env_d").expect("well formed")),
            kind: if *cloud {
                EnvironmentKind::Cloud
            } else {
                EnvironmentKind::SelfHosted
            },
        },
        Gen::Create(e, w, s, metadata) => Command::CreateWork {
            environment: env(*e),
            id: WorkId::parse(WORKS[*w])
                .unwrap_or_else(|_| WorkId::parse("work_2").expect("well formed")),
            session: SessionId::parse(SESSIONS[*s]).expect("well formed"),
            metadata: Metadata::from_map(metadata.iter().cloned().collect())
                .expect("within limits"),
        },
        Gen::Poll(e, k, reclaim) => Command::Poll {
            environment: env(*e),
            request: PollRequest {
                worker: worker(*k),
                reclaim_older_than_ms: *reclaim,
                ..PollRequest::default()
            },
        },
        Gen::Ack(e, w, k) => Command::Ack {
            environment: env(*e),
            work: work(*w),
            worker: worker(*k),
        },
        Gen::Heartbeat(e, w, pre, ttl) => Command::Heartbeat {
            environment: env(*e),
            work: work(*w),
            request: HeartbeatRequest {
                precondition: tokens.precondition(WORKS[*w], *pre),
                desired_ttl_seconds: ttl.and_then(NonZeroU64::new),
            },
        },
        Gen::Stop(e, w, force) => Command::Stop {
            environment: env(*e),
            work: work(*w),
            mode: if *force {
                StopMode::Force
            } else {
                StopMode::Graceful
            },
        },
        Gen::Metadata(e, w, key, value) => Command::UpdateMetadata {
            environment: env(*e),
            work: work(*w),
            patch: MetadataPatch::from([(key.clone(), value.clone())]),
        },
        Gen::Sweep => Command::Sweep,
        Gen::CreateEnvironment(e, cloud) => {
            let mut new = NewEnvironment::self_hosted(format!("env {e}"));
            if *cloud {
                new.kind = EnvironmentKind::Cloud;
            }
            new.description = Some("a description".into());
            Command::CreateEnvironment {
                id: EnvironmentId::parse(ENVIRONMENTS[*e])
                    .unwrap_or_else(|_| EnvironmentId::parse("env_d").expect("well formed")),
                new,
            }
        }
        Gen::UpdateEnvironment(e, name, value) => Command::UpdateEnvironment {
            environment: env(*e),
            patch: EnvironmentPatch {
                name: Some(name.clone()),
                metadata: Some(MetadataPatch::from([("k".to_string(), value.clone())])),
                ..EnvironmentPatch::default()
            },
        },
        Gen::ArchiveEnvironment(e) => Command::ArchiveEnvironment {
            environment: env(*e),
        },
        Gen::DeleteEnvironment(e) => Command::DeleteEnvironment {
            environment: env(*e),
        },
        Gen::Purge(age_seconds) => Command::PurgeStopped {
            // Filled in with the stamp by the caller.
            before: Timestamp::from_unix_micros(-age_seconds),
        },
    }
}

/// The tables under test: one log, four representations.
struct Tables {
    single: LeaseTable,
    reseeded: LeaseTable,
    four_shards: ConcurrentLeaseTable,
    one_shard: ConcurrentLeaseTable,
}

impl Tables {
    fn new(config: Config) -> Self {
        Self {
            single: LeaseTable::new(config),
            reseeded: LeaseTable::new(config),
            four_shards: ConcurrentLeaseTable::with_shards(config, 4),
            one_shard: ConcurrentLeaseTable::with_shards(config, 1),
        }
    }

    /// Applies `stamped` to every table; all answers must be equal.
    fn apply(&mut self, stamped: &Stamped) -> Result<Result<Applied, worklease::Error>, String> {
        let answer = self.single.apply(stamped);
        let others = [
            ("reseeded", self.reseeded.apply(stamped)),
            ("four shards", self.four_shards.apply(stamped)),
            ("one shard", self.one_shard.apply(stamped)),
        ];
        for (name, other) in others {
            if other != answer {
                return Err(format!(
                    "{name} answered {other:?}, the single table {answer:?}, to {stamped:?}"
                ));
            }
        }
        Ok(answer)
    }

    /// The whole state each table shows at its clock, which must be one and the same.
    fn check_same_state(&self) -> Result<(), String> {
        let clock = self.single.clock();
        for (name, other) in [
            ("reseeded", self.reseeded.clock()),
            ("four shards", self.four_shards.clock()),
            ("one shard", self.one_shard.clock()),
        ] {
            if other != clock {
                return Err(format!("{name} clock {other:?}, single {clock:?}"));
            }
        }
        let now = clock.unwrap_or(Timestamp::MIN);
        let single = listing(|env, request| self.single.list(env, request, now));
        for (name, other) in [
            (
                "reseeded",
                listing(|env, request| self.reseeded.list(env, request, now)),
            ),
            (
                "four shards",
                listing(|env, request| self.four_shards.list(env, request, now)),
            ),
            (
                "one shard",
                listing(|env, request| self.one_shard.list(env, request, now)),
            ),
        ] {
            if other != single {
                return Err(format!("{name} lists {other:?}, single {single:?}"));
            }
        }
        for (name, wakeup) in [
            ("reseeded", self.reseeded.next_wakeup()),
            ("four shards", self.four_shards.next_wakeup()),
            ("one shard", self.one_shard.next_wakeup()),
        ] {
            // The sharded tables may apply due lapses later (an earlier wake-up, "now").
            let single = self.single.next_wakeup();
            if name == "reseeded" && wakeup != single {
                return Err(format!("{name} wakes at {wakeup:?}, single {single:?}"));
            }
        }
        let all = EnvironmentListRequest {
            limit: 100,
            include_archived: true,
            ..EnvironmentListRequest::default()
        };
        let environments = self.single.list_environments(&all);
        for (name, other) in [
            ("reseeded", self.reseeded.list_environments(&all)),
            ("four shards", self.four_shards.list_environments(&all)),
            ("one shard", self.one_shard.list_environments(&all)),
        ] {
            if other != environments {
                return Err(format!(
                    "{name} has environments {other:?}, single {environments:?}"
                ));
            }
        }
        // docs/contract.md §7.4: byte-identical snapshots, whatever the hash seed or shard count.
        let bytes = self.single.snapshot();
        for (name, other) in [
            ("reseeded", self.reseeded.snapshot()),
            ("four shards", self.four_shards.snapshot()),
            ("one shard", self.one_shard.snapshot()),
        ] {
            if other != bytes {
                return Err(format!("{name}'s snapshot differs from the single table's"));
            }
        }
        let broken = |violation: InvariantViolation| violation.to_string();
        self.single.validate().map_err(broken)?;
        self.reseeded.validate().map_err(broken)?;
        self.four_shards.validate().map_err(broken)?;
        self.one_shard.validate().map_err(broken)
    }
}

/// Every item of every environment, by listing.
fn listing(
    list: impl Fn(&str, &ListRequest) -> Result<worklease::Page, worklease::Error>,
) -> Vec<Result<worklease::Page, worklease::Error>> {
    let request = ListRequest {
        limit: ListRequest::MAX_LIMIT,
        ..ListRequest::default()
    };
    ["env_a", "env_b", "env_c", "env_d"]
        .iter()
        .map(|env| list(env, &request))
        .collect()
}

fn config(short: bool) -> Config {
    let mut config = Config::default();
    if short {
        config.default_ttl = Ttl::from_seconds(10).expect("in range");
        config.ack_ttl = Ttl::from_seconds(10).expect("in range");
        config.max_attempts = std::num::NonZeroU32::new(2);
    }
    config
}

/// Runs `log` (steps of clock movement and command) on fresh tables, checking after every step;
/// reads run against `reseeded` only, so they must leave it as the others are.
fn run(
    short: bool,
    log: &[(i64, Gen)],
    reads: &[Vec<(i64, ReadGen)>],
) -> Result<(), TestCaseError> {
    let mut tables = Tables::new(config(short));
    let mut tokens = Tokens::default();
    let mut now = T0;
    for (index, (step, generated)) in log.iter().enumerate() {
        now += step;
        let mut command = command(generated, &tokens);
        if let Command::PurgeStopped { before } = &mut command {
            *before = Timestamp::from_unix_micros(now + before.unix_micros() * SECOND);
        }
        let stamped = Stamped::new(Timestamp::from_unix_micros(now), command);
        let answer = tables.apply(&stamped).map_err(TestCaseError::fail)?;
        if let Gen::Heartbeat(_, w, ..) = generated {
            tokens.record(WORKS[*w], &answer);
        }
        for (offset, read) in reads.get(index).map(Vec::as_slice).unwrap_or_default() {
            read_from(&tables.reseeded, now + offset, read);
        }
        tables
            .check_same_state()
            .map_err(|e| TestCaseError::fail(format!("after step {index}: {e}")))?;
    }
    Ok(())
}

/// A read whose answer is dropped: only its (absence of) effect matters here.
fn read_from(table: &LeaseTable, at: i64, read: &ReadGen) {
    let at = Timestamp::from_unix_micros(at);
    match read {
        ReadGen::Get(e, w) => drop(table.get(ENVIRONMENTS[*e], WORKS[*w], at)),
        ReadGen::List(e, limit) => {
            let request = ListRequest {
                limit: *limit,
                ..ListRequest::default()
            };
            drop(table.list(ENVIRONMENTS[*e], &request, at));
        }
        ReadGen::Stats(e) => drop(table.stats(ENVIRONMENTS[*e], at)),
        ReadGen::Wakeup => drop(table.next_wakeup()),
    }
}

fn log() -> impl Strategy<Value = Vec<(i64, Gen)>> {
    // Every log starts by registering the two self-hosted environments and the cloud one.
    let setup = vec![
        (0, Gen::Register(0, false)),
        (0, Gen::Register(1, false)),
        (0, Gen::Register(2, true)),
    ];
    prop::collection::vec((gen_step(), gen_command()), 1..80).prop_map(move |rest| {
        let mut log = setup.clone();
        log.extend(rest);
        log
    })
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(2000),
        ..ProptestConfig::default()
    })]

    /// One log, four tables: the same answers and the same state after every step, with reads
    /// at any times interleaved into one of them.
    #[test]
    fn one_log_gives_one_history_whatever_the_table(
        short in any::<bool>(),
        log in log(),
        reads in prop::collection::vec(prop::collection::vec(gen_read(), 0..3), 0..80),
    ) {
        run(short, &log, &reads)?;
    }
}
