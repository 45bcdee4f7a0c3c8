//! The state machine: the lease table, fed committed `Stamped` commands, and its snapshots.
//!
//! A snapshot file (`DIR/snapshot.wls`) is a small header (magic `WLRS`, version), the Raft
//! metadata around the table (the last applied log id and membership, checksummed) and then
//! the snapshot's payload, which is also what a leader sends a follower:
//!
//! ```text
//! payload = "WLSP" | version (u16 LE, 2) | table length (u64 LE) | table | replay record
//! ```
//!
//! `table` is `LeaseTable::snapshot()`'s canonical bytes (their own magic, version and
//! checksum); the replay record is, for each recently applied command that carried an origin
//! id (`super::Recorded`), what it asked (`crate::request::Asked`: kind and a fingerprint of its
//! ids) and its answer (`Applied::encode_answer()`'s bytes), checksummed. A payload of version
//! 1 recorded answers alone: it loads, its records saying nothing of what was asked (a replay is
//! then answered from one only when its answer is of the replayed request's kind).
//! A file of version 1 (written before the replay record was kept) holds the table's bytes
//! alone as its payload, and so does a snapshot a leader of that version sends: both load, with
//! an empty replay record, which is all that version kept across a snapshot.
//!
//! The file is written to a temporary file, fsynced and renamed over the previous one, so a
//! crash leaves either the old or the new snapshot, never a mix; openraft purges the log only
//! once the new one is built. Snapshots are encoded by the snapshot replica (`super::replica`),
//! not under the table's lock, so applies go on meanwhile.

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use worklease::{Config, LeaseTable};

use super::background::at_lowest_priority;
use super::open_error::OpenError;
use super::payload::{encode_payload, parse_payload};
use super::replica::Replica;
use super::waiters::Waiters;
use super::{codec, waiters, Answer, NodeId, Proposal, Record, Recorded, TypeConfig};
use crate::clock::Clock;

/// The snapshot file's first bytes.
const MAGIC: &[u8; 4] = b"WLRS";
/// The snapshot file format this build writes (and the newest it reads): 2, whose payload is
/// the table and the replay record; 1 held the table alone.
const VERSION: u16 = 2;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The table and what Raft needs to know about it.
#[derive(Debug)]
pub(crate) struct StateMachine {
    /// Shared with the read path (`get`, `list`, `stats`), which locks it briefly.
    table: Arc<Mutex<LeaseTable>>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// `DIR/snapshot.wls`.
    path: PathBuf,
    /// Snapshots built by this process, to name them uniquely.
    built: u64,
    /// Told every applied stamp, so a new leader stamps on the table's timeline.
    clock: Arc<Clock>,
    /// Where the answers of commands with an origin id go.
    recorded: Arc<Recorded>,
    /// The requests waiting for the entries this node proposed.
    waiters: Arc<Waiters>,
    /// Commands applied since the last snapshot, and how many call for the next one.
    since_snapshot: u64,
    snapshot_every: u64,
    /// The last index the log held at start (`Self::replaying_up_to`).
    replayed_upto: Option<u64>,
    /// Whether a snapshot is due (`Durable` asks Raft for it).
    snapshot_due: Arc<SnapshotDue>,
    /// The copy of the table snapshots are encoded from.
    replica: Replica,
}

/// The state machine's table (for reads) and recorded answers (for replayed forwards).
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) table: Arc<Mutex<LeaseTable>>,
    pub(crate) recorded: Arc<Recorded>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) snapshot_due: Arc<SnapshotDue>,
}

/// Whether the state machine wants a snapshot: set (and told) once `--snapshot-every`
/// commands have been applied since the last one, cleared when one is taken.
#[derive(Debug, Default)]
pub(crate) struct SnapshotDue {
    due: AtomicBool,
    told: Notify,
}

impl SnapshotDue {
    fn set(&self, due: bool) {
        self.due.store(due, Ordering::Relaxed);
        if due {
            self.told.notify_one();
        }
    }

    /// Resolves once a snapshot is due.
    pub(crate) async fn wait(&self) {
        while !self.due.load(Ordering::Relaxed) {
            self.told.notified().await;
        }
    }
}

/// What [`StateMachine::open`] restored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restored {
    /// The log index the snapshot covers (`None`: no entry yet).
    pub(crate) index: Option<u64>,
    /// The snapshot file's size.
    pub(crate) bytes: usize,
}

/// A snapshot file, read and checked.
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The payload: the table and the replay record (version 1: the table alone).
    payload: Vec<u8>,
}

impl StateMachine {
    /// Whether this state machine holds a table no log entry made: a restored backup in a
    /// new data directory (`super::backup`), which must start a one-member cluster.
    pub(crate) fn holds_a_restored_table(&self) -> bool {
        let table = self.table.lock();
        self.last_applied.is_none() && table.clock().is_some()
    }

    /// The state machine of the data directory whose snapshot file is `path`: restored from
    /// it when it exists, else a new table with `config` (and that empty table is written as
    /// the first snapshot, so the directory keeps the configuration it was created with).
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be read or restored.
    pub(crate) fn open(
        path: &Path,
        config: Config,
        clock: Arc<Clock>,
    ) -> Result<(Self, Restored), OpenError> {
        let _ = fs::remove_file(temporary(path));
        if !path.exists() {
            let table = LeaseTable::new(config);
            let payload = encode_payload(table.snapshot(), &[]);
            let machine = Self::at(
                table,
                Vec::new(),
                None,
                StoredMembership::default(),
                path,
                clock,
            );
            let meta = machine.meta();
            let written =
                write_snapshot(path, &meta, &payload).map_err(|e| OpenError::at(path, e))?;
            return Ok((
                machine,
                Restored {
                    index: None,
                    bytes: written,
                },
            ));
        }
        let started = Instant::now();
        let raw = fs::read(path).map_err(|e| OpenError::at(path, e))?;
        let file = parse_snapshot(&raw).map_err(|e| OpenError::at(path, e))?;
        let payload = parse_payload(&file.payload).map_err(|e| OpenError::at(path, e))?;
        let table =
            LeaseTable::restore(payload.table).map_err(|e| OpenError::at(path, e.to_string()))?;
        if *table.config() != config {
            tracing::warn!(
                file = %path.display(),
                "the flags name another table configuration than the data directory's; \
                 the data directory's is kept"
            );
        }
        tracing::info!(
            file = %path.display(),
            bytes = raw.len(),
            index = file.meta.last_log_id.map(|id| id.index),
            replay_record = payload.record.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot restored"
        );
        if let Some(at) = table.clock() {
            clock.recover(at);
        }
        let machine = Self::at(
            table,
            payload.record,
            file.meta.last_log_id,
            file.meta.last_membership,
            path,
            clock,
        );
        let restored = Restored {
            index: machine.last_applied.map(|id| id.index),
            bytes: raw.len(),
        };
        Ok((machine, restored))
    }

    /// A state machine holding `table` and the answers `record`ed as of `last_applied`, with
    /// nobody waiting and no snapshot asked for.
    fn at(
        table: LeaseTable,
        record: Vec<(u128, Record)>,
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
        path: &Path,
        clock: Arc<Clock>,
    ) -> Self {
        let replica = Replica::start(table.clone(), record.clone());
        let recorded = Recorded::default();
        recorded.replace(record);
        Self {
            table: Arc::new(Mutex::new(table)),
            last_applied,
            membership,
            path: path.to_owned(),
            built: 0,
            clock,
            recorded: Arc::new(recorded),
            waiters: Arc::default(),
            since_snapshot: 0,
            snapshot_every: u64::MAX,
            replayed_upto: None,
            snapshot_due: Arc::default(),
            replica,
        }
    }

    /// What the write and read paths share with the state machine.
    pub(crate) fn handles(&self) -> Handles {
        Handles {
            table: self.table.clone(),
            recorded: self.recorded.clone(),
            waiters: self.waiters.clone(),
            snapshot_due: self.snapshot_due.clone(),
        }
    }

    /// Asks for a snapshot (through [`Handles::snapshot_due`]) once `commands` commands have
    /// been applied since the last one (`--snapshot-every`). Counted in commands, not log
    /// entries: an entry holds a whole batch (1 to 1 024 commands), and what a restart replays,
    /// and the log's size, grow with the commands.
    pub(crate) fn snapshot_every(mut self, commands: u64) -> Self {
        self.snapshot_every = commands;
        self
    }

    /// The table's clock: the latest stamp it applied.
    pub(crate) fn table_clock(&self) -> Option<worklease::Timestamp> {
        self.table.lock().clock()
    }

    /// The log held entries up to `index` when the node started: their stamps are replayed,
    /// not seen live.
    pub(crate) fn replaying_up_to(mut self, index: Option<u64>) -> Self {
        self.replayed_upto = index;
        self
    }

    fn meta(&self) -> SnapshotMeta<NodeId, BasicNode> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.built),
            None => format!("0-0-{}", self.built),
        };
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        }
    }
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension("wls.tmp")
}

/// Writes a snapshot file atomically: a temporary file, fsynced, renamed, the directory
/// fsynced. Returns its size.
pub(super) fn write_snapshot(
    path: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    payload: &[u8],
) -> std::io::Result<usize> {
    let meta = codec::encode_snapshot_meta(meta);
    let meta_len = u32::try_from(meta.len()).map_err(std::io::Error::other)?;
    let tmp = temporary(path);
    let mut file = File::create(&tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&VERSION.to_le_bytes())?;
    file.write_all(&meta_len.to_le_bytes())?;
    file.write_all(&meta)?;
    file.write_all(payload)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(MAGIC.len() + 2 + 4 + meta.len() + payload.len())
}

fn parse_snapshot(raw: &[u8]) -> Result<SnapshotFile, String> {
    let header = MAGIC.len() + 2 + 4;
    if raw.len() < header {
        return Err(format!("truncated: {} bytes", raw.len()));
    }
    if &raw[..4] != MAGIC {
        return Err("not a worklease snapshot (bad magic)".to_owned());
    }
    let version = u16::from_le_bytes([raw[4], raw[5]]);
    // Version 1's payload is told apart by its first bytes (`parse_payload`).
    if !(1..=VERSION).contains(&version) {
        return Err(format!(
            "unsupported snapshot version {version} (this build reads 1 to {VERSION})"
        ));
    }
    let meta_len = u32::from_le_bytes([raw[6], raw[7], raw[8], raw[9]]) as usize;
    let meta_end = header
        .checked_add(meta_len)
        .filter(|end| *end <= raw.len())
        .ok_or_else(|| format!("truncated: {} bytes", raw.len()))?;
    let meta = codec::decode_snapshot_meta(&raw[header..meta_end])
        .map_err(|e| format!("snapshot metadata: {e}"))?;
    Ok(SnapshotFile {
        meta,
        payload: raw[meta_end..].to_vec(),
    })
}

/// The log index a snapshot file covers, if it reads (tests wait for a snapshot with it).
#[cfg(test)]
pub(crate) fn snapshot_file_index(path: &Path) -> Option<u64> {
    let raw = fs::read(path).ok()?;
    parse_snapshot(&raw)
        .ok()?
        .meta
        .last_log_id
        .map(|id| id.index)
}

/// Runs blocking file work (a snapshot's file) on tokio's blocking pool: the state machine runs
/// on the Raft thread (`raft::thread`), which must keep moving the log meanwhile.
async fn off_the_raft_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
}

/// Builds one snapshot: waits for the replica to encode the state as of the index the builder
/// was made at, then writes the file, while the state machine goes on applying.
#[derive(Debug)]
pub(crate) struct Builder {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The payload, once the replica has encoded it.
    payload: Option<oneshot::Receiver<Vec<u8>>>,
    path: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let started = Instant::now();
        let failed = |error: &dyn std::fmt::Display| {
            StorageIOError::write_snapshot(
                Some(self.meta.signature()),
                &std::io::Error::other(error.to_string()),
            )
        };
        let payload = match self.payload.take() {
            Some(payload) => payload
                .await
                .map_err(|_| failed(&"the snapshot replica stopped"))?,
            None => return Err(failed(&"this builder already built its snapshot").into()),
        };
        let encoded_ms = started.elapsed().as_millis() as u64;
        let (path, meta) = (self.path.clone(), self.meta.clone());
        // Writing checksums and copies the whole payload: at the lowest CPU priority too, like
        // its encoding (`super::background`).
        let (written, payload) = off_the_raft_thread(move || {
            let written = at_lowest_priority(|| write_snapshot(&path, &meta, &payload));
            (written, payload)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(self.meta.signature()), &e))?;
        let written =
            written.map_err(|e| StorageIOError::write_snapshot(Some(self.meta.signature()), &e))?;
        tracing::info!(
            index = self.meta.last_log_id.map(|id| id.index),
            bytes = written,
            encoded_ms,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(payload)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Answer>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut answers = Vec::with_capacity(entries.size_hint().0);
        // Sent once the table is unlocked: the requests they wake may lock it.
        let mut answered = Vec::new();
        let mut table = self.table.lock();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            answers.push(match entry.payload {
                EntryPayload::Blank => Answer(None),
                EntryPayload::Normal(Proposal(batch, origins)) => {
                    if let Some(last) = batch.last() {
                        // An entry this node's log held when it started is replayed, however
                        // it is applied now: its stamp is old (`crate::clock`).
                        if self
                            .replayed_upto
                            .is_some_and(|upto| entry.log_id.index <= upto)
                        {
                            self.clock.recover(last.now);
                        } else {
                            self.clock.observe(last.now);
                        }
                    }
                    let results: Vec<_> =
                        batch.iter().map(|stamped| table.apply(stamped)).collect();
                    self.replica.apply(&batch, &origins);
                    self.since_snapshot += batch.len() as u64;
                    for origin in origins.iter() {
                        let index = origin.index as usize;
                        if let (Some(command), Some(result)) =
                            (batch.get(index), results.get(index))
                        {
                            self.recorded.record(origin.id, Record::of(command, result));
                        }
                    }
                    match self.waiters.take(&batch) {
                        Some(waiting) => {
                            answered.push((waiting, results));
                            Answer(None)
                        }
                        None => Answer(Some(results)),
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Answer(None)
                }
            });
        }
        drop(table);
        if self.since_snapshot >= self.snapshot_every {
            self.snapshot_due.set(true);
        }
        for (waiting, results) in answered {
            waiters::answer(waiting, results);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        self.since_snapshot = 0;
        self.snapshot_due.set(false);
        // Asked here, between two applies: the replica has been sent every batch up to
        // `last_applied` and no later one, so it encodes exactly the state at that index.
        Builder {
            meta: self.meta(),
            payload: Some(self.replica.snapshot()),
            path: self.path.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let unreadable = |error: &dyn std::fmt::Display| {
            StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(error.to_string()),
            )
        };
        let payload = parse_payload(&bytes).map_err(|e| unreadable(&e))?;
        let table = LeaseTable::restore(payload.table).map_err(|e| unreadable(&e))?;
        let record = payload.record;
        let (path, written_meta) = (self.path.clone(), meta.clone());
        let (written, bytes) =
            off_the_raft_thread(move || (write_snapshot(&path, &written_meta, &bytes), bytes))
                .await
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        written.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        // A snapshot's clock may be old (the leader's latest stamp when it built it): a floor,
        // not the timeline (`crate::clock`).
        if let Some(at) = table.clock() {
            self.clock.recover(at);
        }
        tracing::info!(
            index = meta.last_log_id.map(|id| id.index),
            bytes = bytes.len(),
            replay_record = record.len(),
            "snapshot installed from the leader"
        );
        self.replica.reset(table.clone(), record.clone());
        self.recorded.replace(record);
        *self.table.lock() = table;
        self.since_snapshot = 0;
        self.snapshot_due.set(false);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    /// The snapshot file, unless it covers no log entry: a new data directory's first file
    /// (`Self::open`) keeps the table's configuration, and is no Raft snapshot. openraft's
    /// contract (and its storage suite) has a new state machine hold none; it never needs one
    /// that covers nothing (no log entry is purged before a snapshot covers it).
    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let path = self.path.clone();
        let raw = match off_the_raft_thread(move || fs::read(&path))
            .await
            .and_then(|read| read)
        {
            Ok(raw) => raw,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StorageIOError::read_snapshot(None, &error).into()),
        };
        let file = parse_snapshot(&raw)
            .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)))?;
        if file.meta.last_log_id.is_none() {
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.payload)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use worklease::{Command, Stamped, Timestamp};

    use super::*;

    fn entry(index: u64, commands: usize) -> Entry<TypeConfig> {
        let batch: Vec<Stamped> = (0..commands)
            .map(|n| Stamped::new(Timestamp::from_unix_micros(n as i64 + 1), Command::Sweep))
            .collect();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal(Arc::from(batch), Arc::from([]))),
        }
    }

    /// `--snapshot-every` counts commands, not log entries: one entry of a large batch is
    /// enough, and taking the snapshot starts the count again.
    #[tokio::test]
    async fn a_snapshot_is_due_after_snapshot_every_commands_whatever_the_entries() {
        let dir = std::env::temp_dir().join(format!("worklease-due-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory");
        let (machine, _) = StateMachine::open(
            &dir.join("snapshot.wls"),
            Config::default(),
            Arc::new(Clock::new()),
        )
        .expect("opens");
        let mut machine = machine.snapshot_every(50);
        let due = machine.handles().snapshot_due;
        machine.apply([entry(1, 30)]).await.expect("applies");
        assert!(!due.due.load(Ordering::Relaxed), "30 commands of 50");
        machine.apply([entry(2, 30)]).await.expect("applies");
        assert!(due.due.load(Ordering::Relaxed), "60 commands in 2 entries");
        tokio::time::timeout(std::time::Duration::from_secs(1), due.wait())
            .await
            .expect("a due snapshot is told");
        drop(machine.get_snapshot_builder().await);
        assert!(!due.due.load(Ordering::Relaxed), "taken");
        machine.apply([entry(3, 49)]).await.expect("applies");
        assert!(
            !due.due.load(Ordering::Relaxed),
            "counted again from the snapshot"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod snapshot_tests;
