//! Payloads that pass the checksum and read, but describe no table: each is refused with
//! [`SnapshotError::Invalid`], never restored.

use crate::snapshot::{
    frame, SnapshotError, WireConfig, WireId, WireItem, WireKind, WireLease, WirePhase,
    WireProfile, WireState, WireTransition, SNAPSHOT_MAGIC, SNAPSHOT_VERSION_WITHOUT_KEYS,
};
use crate::table::LeaseTable;
use crate::time::Timestamp;

type Env<'a> = (
    &'a str,
    WireKind,
    WireProfile<'a>,
    Vec<(&'a str, i64)>,
    Vec<WireItem<'a>>,
);

fn profile(name: &'static str) -> WireProfile<'static> {
    WireProfile {
        name,
        config: r#"{"type":"self_hosted"}"#,
        description: None,
        metadata: Vec::new(),
        scope: None,
        created_at: 0,
        updated_at: 0,
        archived_at: None,
    }
}

const T0: i64 = 1_782_893_706_120_394;

fn config() -> WireConfig {
    WireConfig {
        default_ttl: 60,
        ack_ttl: 60,
        max_attempts: None,
        reclaim_older_than_ms: 5000,
    }
}

fn minted(n: u128) -> WireId<'static> {
    WireId::Minted((0x019f_3be4_fd24_75d9_a784_bf2c_739e_0000 + n).to_be_bytes())
}

fn queued(n: u128) -> WireItem<'static> {
    WireItem {
        id: minted(n),
        session: WireId::Text("s"),
        created: if n == 0 { T0 } else { 1 },
        acknowledged: None,
        started: None,
        last_token: None,
        lapses: 0,
        phase: WirePhase::Queued {
            delivered: None,
            worker: None,
        },
        metadata: Vec::new(),
        stop_requested: None,
    }
}

fn active(n: u128, holder: Option<u32>) -> WireItem<'static> {
    WireItem {
        acknowledged: Some(5),
        started: Some(5),
        last_token: Some(0),
        phase: WirePhase::Active(WireLease {
            ttl: 60,
            holder,
            deadline: 0,
        }),
        ..queued(n)
    }
}

struct Parts<'a> {
    config: WireConfig,
    clock: Option<i64>,
    workers: Vec<&'a str>,
    environments: Vec<Env<'a>>,
    journal: Vec<WireTransition<'a>>,
}

fn valid() -> Parts<'static> {
    Parts {
        config: config(),
        clock: Some(T0 + 1_000),
        workers: vec!["w1"],
        environments: vec![
            (
                "env_a",
                WireKind::SelfHosted,
                profile("env_a"),
                vec![("w1", T0)],
                vec![queued(0), active(1, Some(0)), queued(2)],
            ),
            (
                "env_b",
                WireKind::Cloud,
                profile("env_b"),
                Vec::new(),
                Vec::new(),
            ),
        ],
        journal: vec![WireTransition {
            environment: 0,
            work: minted(9),
            from: WireState::Active,
            to: WireState::Queued,
            at: T0,
            lapses: 1,
        }],
    }
}

fn restore(parts: &Parts<'_>) -> Result<LeaseTable, SnapshotError> {
    let value = (
        parts.config,
        parts.clock,
        &parts.workers,
        &parts.environments,
        &parts.journal,
    );
    // Written in the format before keys, which restoring still reads: these payloads are
    // about everything else a snapshot holds.
    LeaseTable::restore(&frame(
        SNAPSHOT_MAGIC,
        SNAPSHOT_VERSION_WITHOUT_KEYS,
        &value,
        64,
    ))
}

fn refused(change: impl FnOnce(&mut Parts<'static>)) -> String {
    let mut parts = valid();
    change(&mut parts);
    match restore(&parts) {
        Err(SnapshotError::Invalid(reason)) => reason,
        Err(other) => panic!("refused otherwise: {other:?}"),
        Ok(table) => panic!("restored: {:?}", table.snapshot()),
    }
}

fn items<'p>(parts: &'p mut Parts<'static>) -> &'p mut Vec<WireItem<'static>> {
    &mut parts.environments[0].4
}

#[test]
fn the_hand_written_payload_restores_and_snapshots_to_itself() {
    let parts = valid();
    let table = restore(&parts).expect("valid");
    assert_eq!(table.len(), 3);
    let bytes = table.snapshot();
    assert_eq!(
        LeaseTable::restore(&bytes).expect("valid").snapshot(),
        bytes
    );
}

#[test]
fn ids_duplicated_out_of_order_or_malformed_are_refused() {
    refused(|p| items(p)[1].id = minted(0));
    refused(|p| items(p).swap(0, 2));
    refused(|p| items(p)[2].id = WireId::Text("not an id"));
    refused(|p| items(p)[2].id = WireId::Text(""));
    refused(|p| items(p)[2].id = WireId::Text("019f3be4fd2475d9a784bf2c739e1194"));
    refused(|p| items(p)[2].session = WireId::Text("a-b"));
    // The same id in two environments.
    refused(|p| p.environments[1].4.push(queued(1)));
    // Environments out of order, twice, or malformed.
    refused(|p| p.environments.swap(0, 1));
    refused(|p| p.environments[1].0 = "env_a");
    refused(|p| p.environments[1].0 = "environment");
}

#[test]
fn leases_without_their_instants_or_with_ttls_out_of_range_are_refused() {
    refused(|p| items(p)[1].acknowledged = None);
    refused(|p| items(p)[1].started = None);
    refused(|p| items(p)[0].acknowledged = Some(1));
    refused(|p| items(p)[1].last_token = None);
    for ttl in [0, 9, 601, u16::MAX] {
        refused(|p| {
            items(p)[1].phase = WirePhase::Active(WireLease {
                ttl,
                holder: None,
                deadline: 0,
            });
        });
    }
    refused(|p| {
        items(p)[1].phase = WirePhase::Stopping {
            lease: WireLease {
                ttl: 60,
                holder: Some(0),
                deadline: 0,
            },
            beaten: true,
        };
    });
    refused(|p| items(p)[1].stop_requested = Some(0));
    refused(|p| items(p)[1].created = i64::MAX);
    refused(|p| items(p)[1].acknowledged = Some(i64::MIN));
    refused(|p| {
        items(p)[0].phase = WirePhase::Queued {
            delivered: None,
            worker: Some(0),
        };
    });
    refused(|p| {
        items(p)[0].phase = WirePhase::Stopped {
            at: 0,
            beaten: true,
            from_lease: false,
        };
    });
    // A lease due at the clock was lapsed before any snapshot.
    refused(|p| {
        items(p)[1].phase = WirePhase::Active(WireLease {
            ttl: 60,
            holder: Some(0),
            deadline: -60_000_000,
        });
    });
    refused(|p| p.config.ack_ttl = 9);
    refused(|p| p.config.max_attempts = Some(0));
    refused(|p| p.clock = None);
    refused(|p| p.clock = Some(T0 - 1));
}

#[test]
fn workers_out_of_range_unused_or_unordered_are_refused() {
    refused(|p| {
        items(p)[1] = active(1, Some(1));
    });
    refused(|p| p.workers.push("w2"));
    refused(|p| p.workers.insert(0, "w2"));
    refused(|p| p.workers[0] = "w 1");
    refused(|p| p.environments[0].3.push(("w0", T0)));
    refused(|p| p.environments[0].3[0].1 = T0 + 2_000);
}

#[test]
fn metadata_over_its_limits_or_unordered_is_refused() {
    refused(|p| items(p)[0].metadata = vec![("b", "1"), ("a", "2")]);
    refused(|p| items(p)[0].metadata = vec![("a", "1"), ("a", "2")]);
    refused(|p| items(p)[0].metadata = vec![("", "1")]);
    let long: &'static str = Box::leak("v".repeat(513).into_boxed_str());
    refused(|p| items(p)[0].metadata = vec![("a", long)]);
    let keys: Vec<&'static str> = (0..17)
        .map(|k| &*Box::leak(format!("k{k:02}").into_boxed_str()))
        .collect();
    refused(|p| items(p)[0].metadata = keys.iter().map(|&k| (k, "v")).collect());
}

#[test]
fn journal_entries_naming_nothing_or_out_of_order_are_refused() {
    let entry = valid().journal[0];
    refused(|p| p.journal[0].environment = 2);
    refused(|p| p.journal[0].from = WireState::Queued);
    refused(|p| p.journal[0].to = WireState::Active);
    refused(|p| {
        p.journal[0].from = WireState::Stopping;
        p.journal[0].to = WireState::Queued;
    });
    refused(|p| p.journal[0].at = T0 + 2_000);
    refused(|p| p.journal.push(WireTransition { at: -1, ..entry }));
    refused(|p| p.journal.push(WireTransition { at: 0, ..entry }));
    refused(|p| p.journal[0].work = WireId::Text("a b"));
}

#[test]
fn environment_profiles_over_their_limits_or_with_times_out_of_order_are_refused() {
    refused(|p| p.environments[0].2.name = "");
    refused(|p| p.environments[0].2.metadata = vec![("b", "1"), ("a", "2")]);
    refused(|p| p.environments[0].2.created_at = 10);
    refused(|p| p.environments[0].2.archived_at = Some(5));
    let table = restore(&{
        let mut parts = valid();
        parts.environments[0].2.description = Some("kept");
        parts.environments[0].2.updated_at = 7;
        parts
    })
    .expect("valid");
    let record = table.retrieve_environment("env_a").expect("restored");
    assert_eq!(record.description.as_deref(), Some("kept"));
    assert_eq!(record.updated_at, Timestamp::from_unix_micros(7));
}
