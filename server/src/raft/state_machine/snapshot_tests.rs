//! The state machine's snapshots: consistent while applies go on, carrying the replay record,
//! and how long applies pause while one is taken.

use std::num::NonZeroU64;
use std::time::Duration;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use worklease::{
    Applied, Command, EnvironmentId, EnvironmentKind, Error, HeartbeatRequest, Metadata, SessionId,
    Stamped, Timestamp, WorkId, WorkerId,
};

use super::super::payload::PAYLOAD_MAGIC;
use super::super::Origin;
use super::*;

const T0: i64 = 1_782_893_700_000_000;
const ENV: &str = "env_019e64e01a137caf953ac2ac7b42ec5c";

fn directory(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "worklease-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn open(dir: &Path) -> StateMachine {
    StateMachine::open(
        &dir.join("snapshot.wls"),
        Config::default(),
        Arc::new(Clock::new()),
    )
    .expect("opens")
    .0
}

/// An entry of `commands`, the origin ids `origins` given as `(index, id)`.
fn entry(index: u64, commands: Vec<Command>, origins: &[(u32, u128)]) -> Entry<TypeConfig> {
    let batch: Vec<Stamped> = commands
        .into_iter()
        .map(|command| Stamped::new(Timestamp::from_unix_micros(T0 + index as i64), command))
        .collect();
    let origins: Vec<Origin> = origins
        .iter()
        .map(|&(index, id)| Origin { index, id })
        .collect();
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal(Arc::from(batch), Arc::from(origins))),
    }
}

fn register() -> Command {
    Command::RegisterEnvironment {
        id: ENV.parse::<EnvironmentId>().expect("valid"),
        kind: EnvironmentKind::SelfHosted,
    }
}

fn create(n: u64) -> Command {
    let at = Timestamp::from_unix_micros(T0);
    Command::CreateWork {
        environment: ENV.into(),
        id: WorkId::mint(at, n, 0x5eed),
        session: SessionId::mint(at, n, 0xcafe),
        metadata: Metadata::new(),
    }
}

fn ack(n: u64, worker: &WorkerId) -> Command {
    Command::Ack {
        environment: ENV.into(),
        work: WorkId::mint(Timestamp::from_unix_micros(T0), n, 0x5eed)
            .to_string()
            .into(),
        worker: Some(worker.clone()),
    }
}

fn heartbeat(n: u64) -> Command {
    Command::Heartbeat {
        environment: ENV.into(),
        work: WorkId::mint(Timestamp::from_unix_micros(T0), n, 0x5eed)
            .to_string()
            .into(),
        request: HeartbeatRequest {
            desired_ttl_seconds: NonZeroU64::new(600),
            ..HeartbeatRequest::default()
        },
    }
}

async fn build(builder: &mut Builder) -> Vec<u8> {
    builder
        .build_snapshot()
        .await
        .expect("builds")
        .snapshot
        .into_inner()
}

/// The snapshot is the state at the index it was asked at, byte for byte what
/// `LeaseTable::snapshot` gives there, although entries were applied while it was built.
#[tokio::test]
async fn a_snapshot_is_the_state_at_the_index_it_was_asked_at_while_applies_go_on() {
    let dir = directory("consistent");
    let mut machine = open(&dir);
    let worker = WorkerId::parse("w").expect("valid");
    let mut commands = vec![register()];
    commands.extend((0..50).map(create));
    commands.extend((0..50).map(|n| ack(n, &worker)));
    machine
        .apply([entry(1, commands, &[])])
        .await
        .expect("applies");
    machine
        .apply([entry(2, (0..50).map(heartbeat).collect(), &[])])
        .await
        .expect("applies");
    let expected = machine.table.lock().snapshot();
    let mut builder = machine.get_snapshot_builder().await;
    for index in 3..10 {
        machine
            .apply([entry(index, (0..50).map(heartbeat).collect(), &[])])
            .await
            .expect("applies");
    }
    let payload = build(&mut builder).await;
    let now = machine.table.lock().snapshot();
    assert_ne!(now, expected, "the later entries changed the table");
    assert_eq!(
        parse_payload(&payload).expect("reads").table,
        expected.as_slice()
    );
    // The file holds the same payload, as of index 2.
    let file =
        parse_snapshot(&fs::read(dir.join("snapshot.wls")).expect("written")).expect("reads");
    assert_eq!(file.payload, payload);
    assert_eq!(file.meta.last_log_id.map(|id| id.index), Some(2));
    let _ = fs::remove_dir_all(&dir);
}

/// The replay record goes into the snapshot: a member restarted from the file, or given
/// the snapshot by a leader, answers a replayed origin as the first attempt was answered.
/// A file of the previous version (the table alone) still loads, with no record.
#[tokio::test]
async fn the_replay_record_survives_a_snapshot_restart_and_install() {
    let dir = directory("record");
    let mut machine = open(&dir);
    let (first, second) = (0x1111_u128, u128::MAX - 2);
    machine
        .apply([entry(
            1,
            vec![register(), register(), create(1)],
            &[(1, first), (2, second)],
        )])
        .await
        .expect("applies");
    let recorded = machine.handles().recorded;
    let answers = (
        recorded.get(first).expect("recorded"),
        recorded.get(second).expect("recorded"),
    );
    assert!(matches!(answers.0.answer, Err(Error::AlreadyExists { .. })));
    assert!(matches!(answers.1.answer, Ok(Applied::Created(_))));
    let mut builder = machine.get_snapshot_builder().await;
    let payload = build(&mut builder).await;
    let meta = builder.meta.clone();
    drop(machine);

    let restarted = open(&dir).handles().recorded;
    assert_eq!(restarted.get(first).as_ref(), Some(&answers.0));
    assert_eq!(restarted.get(second).as_ref(), Some(&answers.1));

    let other = directory("record-install");
    let mut installed = open(&other);
    installed
        .install_snapshot(&meta, Box::new(Cursor::new(payload)))
        .await
        .expect("installs");
    let record = installed.handles().recorded;
    assert_eq!(record.entries(), restarted.entries());
    // Its own snapshots keep the record too (its replica was reset with it).
    let payload = build(&mut installed.get_snapshot_builder().await).await;
    assert_eq!(
        parse_payload(&payload).expect("reads").record,
        record.entries()
    );

    // Version 1: the header's version 1 and the table's bytes alone.
    let table = LeaseTable::restore(parse_payload(&payload).expect("reads").table)
        .expect("restores")
        .snapshot();
    let path = dir.join("snapshot.wls");
    write_snapshot(&path, &meta, &table).expect("writes");
    let mut raw = fs::read(&path).expect("reads");
    raw[4..6].copy_from_slice(&1u16.to_le_bytes());
    fs::write(&path, raw).expect("writes");
    let old = open(&dir);
    assert_eq!(old.table.lock().snapshot(), table);
    assert!(old.handles().recorded.entries().is_empty());
    // A newer version is refused by name.
    let mut raw = fs::read(&path).expect("reads");
    raw[4..6].copy_from_slice(&3u16.to_le_bytes());
    fs::write(&path, raw).expect("writes");
    let refused =
        StateMachine::open(&path, Config::default(), Arc::new(Clock::new())).expect_err("refused");
    assert_eq!(refused.path, path, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("unsupported snapshot version 3"),
        "{refused}"
    );
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&other);
}

/// A record says what its command asked, and keeps saying it through a snapshot; a payload of
/// version 1 (answers alone) still loads, its records asking nothing; a newer payload is
/// refused by name.
#[tokio::test]
async fn the_replay_record_keeps_what_was_asked_and_reads_payload_version_1() {
    let dir = directory("record-asked");
    let mut machine = open(&dir);
    let origin = 0x2222_u128;
    machine
        .apply([entry(1, vec![register(), create(1)], &[(1, origin)])])
        .await
        .expect("applies");
    let record = machine.handles().recorded.get(origin).expect("recorded");
    let asked = record.asked.expect("a new record says what was asked");
    assert_eq!(asked.kind, crate::request::Kind::CreateWork);
    let payload = build(&mut machine.get_snapshot_builder().await).await;
    let parsed = parse_payload(&payload).expect("reads");
    assert_eq!(parsed.record, vec![(origin, record.clone())]);

    let mut v1 = Vec::new();
    v1.extend_from_slice(PAYLOAD_MAGIC);
    v1.extend_from_slice(&1u16.to_le_bytes());
    v1.extend_from_slice(&(parsed.table.len() as u64).to_le_bytes());
    v1.extend_from_slice(parsed.table);
    v1.extend_from_slice(&codec::encode_record_v1(&[(origin, record.answer.clone())]));
    let old = parse_payload(&v1).expect("a version 1 payload reads");
    assert_eq!(old.table, parsed.table);
    assert_eq!(
        old.record,
        vec![(
            origin,
            Record {
                asked: None,
                answer: record.answer.clone()
            }
        )]
    );
    // Written again, it stays a record that asks nothing.
    assert_eq!(
        codec::decode_record(&codec::encode_record(&old.record), 2).expect("reads"),
        old.record
    );

    let mut v3 = v1.clone();
    v3[4..6].copy_from_slice(&3u16.to_le_bytes());
    let refused = parse_payload(&v3).err().expect("refused");
    assert!(
        refused.contains("unsupported snapshot payload version 3"),
        "{refused}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Docs/contract.md §12 ("snapshots never stall the table"), measured: a million leases,
/// heartbeats applied one small entry after another (as the state machine's worker does)
/// while a snapshot is asked for and built on other threads. Prints the median apply, the
/// longest apply pause while the snapshot was taken, and what the previous design paused
/// for (the table encoded under its lock, measured here on the same table). Run with
/// `cargo test --release -p worklease-server snapshot_pause -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement at a million leases: run it in release mode"]
async fn snapshot_pause_at_a_million_leases() {
    const LEASES: u64 = 1_000_000;
    const BATCH: u64 = 1024;
    const BEATS_PER_ENTRY: u64 = 8;
    let dir = directory("pause");
    let rss_before = resident_mib();
    let mut machine = open(&dir);
    let workers: Vec<WorkerId> = (0..64)
        .map(|w| WorkerId::parse(&format!("worker-{w:02}")).expect("valid"))
        .collect();
    let mut index = 1;
    machine
        .apply([entry(index, vec![register()], &[])])
        .await
        .expect("applies");
    for start in (0..LEASES).step_by(BATCH as usize) {
        index += 1;
        let creates = (start..(start + BATCH).min(LEASES)).map(create).collect();
        machine
            .apply([entry(index, creates, &[])])
            .await
            .expect("applies");
    }
    for start in (0..LEASES).step_by(BATCH as usize) {
        index += 1;
        let acks = (start..(start + BATCH).min(LEASES))
            .map(|n| ack(n, &workers[(n % 64) as usize]))
            .collect();
        machine
            .apply([entry(index, acks, &[])])
            .await
            .expect("applies");
    }
    // The replica has caught up once it answers a snapshot request.
    build(&mut machine.get_snapshot_builder().await).await;
    println!(
        "resident memory: {} MiB more with {LEASES} leases (the applied table and the replica)",
        resident_mib().saturating_sub(rss_before)
    );

    let mut old = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let bytes = machine.table.lock().snapshot();
        old.push(started.elapsed());
        drop(bytes);
    }
    old.sort();

    let mut beat = 0;
    let mut next_entry = |index: u64| {
        let commands = (0..BEATS_PER_ENTRY)
            .map(|_| {
                beat = (beat + 7919) % LEASES;
                heartbeat(beat)
            })
            .collect();
        entry(index, commands, &[])
    };
    let mut all = Vec::new();
    for _ in 0..2_000 {
        index += 1;
        let started = Instant::now();
        machine.apply([next_entry(index)]).await.expect("applies");
        all.push(started.elapsed());
    }
    // The control: as many entries as a snapshot usually spans, with no snapshot taken.
    let mut control = Vec::new();
    for _ in 0..10_000 {
        index += 1;
        let (started, waited) = (Instant::now(), run_queue_wait());
        machine.apply([next_entry(index)]).await.expect("applies");
        control.push((started.elapsed(), run_queue_wait().saturating_sub(waited)));
        tokio::task::yield_now().await;
    }
    let (control_longest, control_working) = longest(&control);
    // The snapshot: asking for it is a pause of its own.
    let (started, waited) = (Instant::now(), run_queue_wait());
    let mut builder = machine.get_snapshot_builder().await;
    let asked = started.elapsed();
    let mut during = vec![(asked, run_queue_wait().saturating_sub(waited))];
    let building = tokio::spawn(async move {
        let started = Instant::now();
        let payload = build(&mut builder).await;
        (started.elapsed(), payload.len())
    });
    while !building.is_finished() {
        index += 1;
        let (started, waited) = (Instant::now(), run_queue_wait());
        machine.apply([next_entry(index)]).await.expect("applies");
        let took = started.elapsed();
        during.push((took, run_queue_wait().saturating_sub(waited)));
        all.push(took);
        tokio::task::yield_now().await;
    }
    let (built, bytes) = building.await.expect("the build task");
    all.sort();
    let ((longest, longest_waited), working) = longest(&during);
    println!(
        "snapshot at {LEASES} leases: longest apply pause while it was taken {:.2} ms, of which \
         {:.2} ms waiting for a CPU; longest pause not spent waiting for a CPU {:.2} ms \
         (control, 10 000 entries without a snapshot: {:.2} ms, of which {:.2} ms waiting; \
         {:.2} ms not waiting) (asking for it {:.3} ms; {} entries of {BEATS_PER_ENTRY} \
         heartbeats applied during the {:.0} ms it took to encode and write {bytes} bytes); \
         median apply {:.1} µs, p99 {:.1} µs; the table encoded under its lock (the previous \
         design's pause): median {:.0} ms of {:?}",
        longest.as_secs_f64() * 1e3,
        longest_waited.as_secs_f64() * 1e3,
        working.as_secs_f64() * 1e3,
        control_longest.0.as_secs_f64() * 1e3,
        control_longest.1.as_secs_f64() * 1e3,
        control_working.as_secs_f64() * 1e3,
        asked.as_secs_f64() * 1e3,
        during.len() - 1,
        built.as_secs_f64() * 1e3,
        all[all.len() / 2].as_secs_f64() * 1e6,
        all[all.len() * 99 / 100].as_secs_f64() * 1e6,
        old[1].as_secs_f64() * 1e3,
        old,
    );
    assert!(
        during.len() > 1,
        "no entry was applied while the snapshot was built"
    );
    // The acceptance number (at most 5 ms) is read off the line above, on a quiet machine: on
    // a shared one, pauses of a few milliseconds come and go with the load (compare the
    // control). What must hold anywhere: no apply waits for the table to be encoded, which
    // is what the previous design's pause was.
    assert!(
        working < old[0] / 4,
        "an apply took {working:?} (besides waiting for a CPU) while a snapshot was taken, \
         against {control_working:?} without one and {:?} to encode the table",
        old[0]
    );
    let _ = fs::remove_dir_all(&dir);
}

/// How long this thread has been ready to run but waiting for a CPU, from
/// `/proc/thread-self/schedstat` (zero where it cannot be read).
fn run_queue_wait() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().nth(1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The longest of `pauses` (wall time, time waiting for a CPU), and the longest wall time less
/// the wait: what applying did itself.
fn longest(pauses: &[(Duration, Duration)]) -> ((Duration, Duration), Duration) {
    let working = pauses
        .iter()
        .map(|(took, waited)| took.saturating_sub(*waited))
        .max()
        .unwrap_or_default();
    (pauses.iter().max().copied().unwrap_or_default(), working)
}

/// This process's resident memory in MiB, from `/proc/self/status` (0 where unreadable).
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024)
}
