//! Shared by the snapshot suites: a table with something of everything a snapshot holds, and
//! a command of every kind.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use crate::common::*;
use worklease::{
    Command, Config, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata, MetadataPatch,
    PollRequest, Precondition, SessionId, Stamped, StopMode, Timestamp, WorkId, WorkerId,
};

/// A table with items in every state, a text id, metadata, a poller, a graceful stop
/// request and a journal: something of everything a snapshot holds.
pub(crate) fn varied_table() -> LeaseTable {
    let mut table = new_table(Config::default());
    let t = |s: i64| ts(T0 + s * 1_000_000);
    let minted = |n: u128| WorkId::from_u128(0x019f_3be4_fd24_75d9_a784_bf2c_739e_0000 + n);
    let w1 = worker_id("w1");
    for n in 0..6 {
        let metadata = if n == 2 {
            Metadata::from_map(BTreeMap::from([("k".to_owned(), "v".to_owned())]))
                .expect("within limits")
        } else {
            Metadata::new()
        };
        let session = SessionId::from_u128(n);
        table
            .create_work("env_a", minted(n), session, metadata, t(0))
            .expect("created");
    }
    table
        .create_work(
            "env_b",
            work_id("work_text1"),
            SessionId::parse("sess_x").expect("session"),
            Metadata::new(),
            t(0),
        )
        .expect("created");
    let poll = PollRequest {
        worker: Some(w1.clone()),
        ..PollRequest::default()
    };
    // 0: delivered to w1; 1: starting (held by w1); 2: active; 3: stopping; 4: stopped.
    for _ in 0..5 {
        table.poll("env_a", &poll, t(1)).expect("polled");
    }
    for n in 1..5 {
        table
            .ack("env_a", minted(n), Some(&w1), t(2))
            .expect("acked");
    }
    for n in [2, 3] {
        table
            .heartbeat("env_a", minted(n), HeartbeatRequest::default(), t(3))
            .expect("beat");
    }
    table
        .stop("env_a", minted(3), StopMode::Graceful, t(4))
        .expect("stopping");
    table
        .stop("env_a", minted(4), StopMode::Force, t(4))
        .expect("stopped");
    // The text-id item lapses once and is journaled.
    table.ack("env_b", "work_text1", None, t(5)).expect("acked");
    table
        .stop("env_a", minted(5), StopMode::Force, t(70))
        .expect("stopped");
    table
}

/// Commands of every kind, with malformed ids, patches with deletions and every precondition.
pub(crate) fn stamped_of_every_kind() -> Vec<Stamped> {
    let t = Timestamp::from_unix_micros(T0);
    let patch: MetadataPatch = BTreeMap::from([
        ("a".to_owned(), Some("1".to_owned())),
        ("b".to_owned(), None),
        ("c".to_owned(), Some(String::new())),
    ]);
    let mut commands = vec![
        Command::RegisterEnvironment {
            id: "env_01".parse().unwrap(),
            kind: EnvironmentKind::SelfHosted,
        },
        Command::RegisterEnvironment {
            id: "env_cloud".parse().unwrap(),
            kind: EnvironmentKind::Cloud,
        },
        Command::CreateWork {
            environment: "env_01".into(),
            id: WorkId::from_u128(0x019f_3be4_fd24_75d9_a784_bf2c_739e_1194),
            session: SessionId::from_u128(7),
            metadata: Metadata::from_map(BTreeMap::from([
                ("k".to_owned(), "v".to_owned()),
                ("z".repeat(64), "x".repeat(512)),
            ]))
            .unwrap(),
        },
        Command::CreateWork {
            environment: "env not an id ✓".into(),
            id: "work_Text".parse().unwrap(),
            session: "sess_s".parse().unwrap(),
            metadata: Metadata::new(),
        },
        Command::Poll {
            environment: "env_01".into(),
            request: PollRequest::default(),
        },
        Command::Poll {
            environment: "".into(),
            request: PollRequest {
                worker: Some(WorkerId::parse("w1").unwrap()),
                reclaim_older_than_ms: u64::MAX,
                block_ms: Some(999),
            },
        },
        Command::Ack {
            environment: "env_01".into(),
            work: "work_not an id".into(),
            worker: None,
        },
        Command::Ack {
            environment: "env_01".into(),
            work: "work_1".into(),
            worker: Some(WorkerId::parse("worker-7").unwrap()),
        },
        Command::Stop {
            environment: "env_01".into(),
            work: "work_1".into(),
            mode: StopMode::Graceful,
        },
        Command::Stop {
            environment: "env_01".into(),
            work: "work_1".into(),
            mode: StopMode::Force,
        },
        Command::UpdateMetadata {
            environment: "env_01".into(),
            work: "work_1".into(),
            patch,
        },
        Command::UpdateMetadata {
            environment: "env_01".into(),
            work: "work_1".into(),
            // A patch over the limits is still a command (the table answers it 400).
            patch: BTreeMap::from([(String::new(), Some("v".repeat(600)))]),
        },
        Command::Sweep,
        Command::PurgeStopped {
            before: Timestamp::MIN,
        },
        Command::CreateEnvironment {
            id: "env_02".parse().expect("well formed"),
            new: worklease::NewEnvironment::self_hosted("builds"),
        },
        Command::CreateEnvironment {
            id: "env_019f3be4fd2475d9a784bf2c739e1194"
                .parse()
                .expect("well formed"),
            new: {
                let mut new = worklease::NewEnvironment::self_hosted("é".repeat(256));
                new.kind = worklease::EnvironmentKind::Cloud;
                new.config =
                    Some(r#"{"type":"cloud","networking":{"type":"unrestricted"}}"#.into());
                new.description = Some("d".repeat(2048));
                new.metadata = Metadata::from_map(BTreeMap::from([("k".into(), "v".into())]))
                    .expect("within limits");
                new.scope = Some(worklease::EnvironmentScope::Account);
                new
            },
        },
        Command::UpdateEnvironment {
            environment: "env_02".into(),
            patch: worklease::EnvironmentPatch::default(),
        },
        Command::UpdateEnvironment {
            environment: "env-not an id".into(),
            patch: worklease::EnvironmentPatch {
                name: Some("renamed".into()),
                description: Some(None),
                metadata: Some(BTreeMap::from([
                    ("a".to_string(), None),
                    ("b".to_string(), Some(String::new())),
                ])),
                config: Some((worklease::EnvironmentKind::SelfHosted, "{}".into())),
                scope: Some(worklease::EnvironmentScope::Organization),
            },
        },
        Command::ArchiveEnvironment {
            environment: "env_02".into(),
        },
        Command::DeleteEnvironment {
            environment: "".into(),
        },
    ];
    for precondition in [
        Precondition::Unconditional,
        Precondition::NoHeartbeat,
        Precondition::LastHeartbeat(Timestamp::MAX),
        Precondition::LastHeartbeat(t),
        Precondition::Unmatchable,
    ] {
        for desired_ttl_seconds in [None, NonZeroU64::new(1), NonZeroU64::new(u64::MAX)] {
            commands.push(Command::Heartbeat {
                environment: "env_01".into(),
                work: "work_019f3be4fd2475d9a784bf2c739e1194".into(),
                request: HeartbeatRequest {
                    precondition,
                    desired_ttl_seconds,
                },
            });
        }
    }
    commands.extend([
        Command::CreateEnvironmentKey {
            environment: "env_01".into(),
            id: "ekey_01".parse().unwrap(),
            name: Some("ci".into()),
            digest: worklease::KeyDigest::from_bytes([9; 32]),
        },
        Command::RevokeEnvironmentKey {
            environment: "env_01".into(),
            key: "ekey not an id".into(),
        },
        Command::SetItemSecretKey {
            key: worklease::ItemSecretKey::from_bytes([3; 32]),
        },
    ]);
    commands
        .into_iter()
        .enumerate()
        .map(|(n, command)| {
            let now = match n % 3 {
                0 => Timestamp::MIN,
                1 => t,
                _ => Timestamp::MAX,
            };
            Stamped::new(now, command)
        })
        .collect()
}
