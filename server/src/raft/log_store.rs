//! The Raft log and vote, in one redb file (`DIR/raft.redb`).
//!
//! Group commit: [`LogStore::append`] only queues its entries for the writer thread and
//! returns; the writer takes every job queued by the time it is free, writes them in one redb
//! transaction and commits it durably (one fsync), then tells openraft each batch is flushed.
//! openraft 0.9 hands the store one entry per client write, so this queue is what lets many
//! concurrent requests share an fsync. Votes, truncations and purges go through the same queue,
//! so every change reaches the disk in the order openraft made it. A purge commits only its
//! purge point; the purged rows are deleted a few per later commit (see `Leftover`).
//!
//! Every entry that was not purged is also kept decoded in memory: the state machine and (later)
//! replication read from there, and startup reads and checks the whole file once.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::codec;
use super::{NodeId, Proposal, TypeConfig};

/// Log entries by index.
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
/// The vote, the last purged log id and the format marker.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// What `META["format"]` holds in a worklease data file.
const FORMAT: &[u8] = b"worklease raft log v1";

/// The log store openraft drives; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    /// Every entry not purged, by index.
    entries: Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
    last_purged: Mutex<Option<LogId<NodeId>>>,
    vote: Mutex<Option<Vote<NodeId>>>,
    writer: Mutex<mpsc::Sender<Job>>,
    stats: Arc<WriterStats>,
}

/// What the writer thread has done so far.
#[derive(Debug)]
pub(crate) struct WriterStats {
    /// Durable commits (one fsync each).
    pub(crate) commits: AtomicU64,
    /// Log entries written.
    pub(crate) entries: AtomicU64,
    /// Commands in those entries.
    pub(crate) commands: AtomicU64,
    /// Entries of commands (`EntryPayload::Normal`) on disk so far, counted from this start:
    /// the proposer of a one-member cluster sends its next entry once the one before is on
    /// disk, rather than once it is applied (see `raft::propose_batches`).
    pub(crate) flushed_proposals: tokio::sync::watch::Sender<u64>,
}

impl WriterStats {
    /// Counts what a durable commit wrote, before openraft hears of the flush: the proposer's
    /// next entry then overlaps openraft committing and applying these.
    fn count(&self, batch: &[Job]) {
        let (mut entries, mut commands, mut proposals) = (0, 0, 0);
        for job in batch {
            if let Job::Append {
                entries: written, ..
            } = job
            {
                entries += written.len() as u64;
                for entry in written {
                    if let openraft::EntryPayload::Normal(Proposal(batch, _)) = &entry.payload {
                        commands += batch.len() as u64;
                        proposals += 1;
                    }
                }
            }
        }
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.commands.fetch_add(commands, Ordering::Relaxed);
        if proposals > 0 {
            self.flushed_proposals
                .send_modify(|flushed| *flushed += proposals);
        }
    }
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            flushed_proposals: tokio::sync::watch::channel(0).0,
        }
    }
}

/// One change for the writer thread.
enum Job {
    Append {
        entries: Vec<Entry<TypeConfig>>,
        flushed: LogFlushed<TypeConfig>,
    },
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Remove every entry from `since` on.
    Truncate {
        since: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Remove every entry up to `upto` included.
    Purge {
        upto: LogId<NodeId>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// What a store opened on an existing file found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    /// The file did not exist: a new data directory.
    pub(crate) created: bool,
    /// The index of the last entry (or of the last purged one), if any.
    pub(crate) last_index: Option<u64>,
    /// How many entries it holds.
    pub(crate) entries: usize,
}

impl LogStore {
    /// Opens (or creates) the log at `path`, checks the whole file and reads every entry.
    ///
    /// # Errors
    ///
    /// A message naming the file when it is not a readable worklease log.
    pub(crate) fn open(path: &Path) -> Result<(Self, Opened), String> {
        // redb asserts on some damage (a file shorter than its header says) instead of
        // returning an error: that is a damaged file too, not a crash of the server.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_checked(path)))
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(format!("{}: damaged ({why})", path.display()))
            })
    }

    fn open_checked(path: &Path) -> Result<(Self, Opened), String> {
        let named = |error: &dyn std::fmt::Display| format!("{}: {error}", path.display());
        let created = !path.exists();
        let mut db = if created {
            Database::create(path).map_err(|e| named(&e))?
        } else {
            Database::open(path).map_err(|e| named(&e))?
        };
        if !created {
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => tracing::warn!(file = %path.display(), "the log file was repaired"),
                Err(error) => return Err(named(&format!("damaged: {error}"))),
            }
        }
        if created {
            let txn = db.begin_write().map_err(|e| named(&e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| named(&e))?;
                meta.insert("format", FORMAT).map_err(|e| named(&e))?;
                txn.open_table(LOG).map_err(|e| named(&e))?;
            }
            txn.commit().map_err(|e| named(&e))?;
        }
        let (entries, last_purged, vote, leftover) = read_all(&db).map_err(|e| named(&e))?;
        let last_index = entries
            .keys()
            .next_back()
            .copied()
            .or(last_purged.map(|id| id.index));
        let opened = Opened {
            created,
            last_index,
            entries: entries.len(),
        };
        let stats = Arc::new(WriterStats::default());
        let (tx, rx) = mpsc::channel();
        let writer_stats = stats.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".to_owned())
            .spawn(move || write_loop(&db, &rx, &writer_stats, leftover))
            .map_err(|e| named(&e))?;
        let store = Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                entries: Mutex::new(entries),
                last_purged: Mutex::new(last_purged),
                vote: Mutex::new(vote),
                writer: Mutex::new(tx),
                stats,
            }),
        };
        Ok((store, opened))
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> Arc<WriterStats> {
        self.inner.stats.clone()
    }

    fn send(&self, job: Job) -> Result<(), io::Error> {
        self.inner
            .writer
            .lock()
            .send(job)
            .map_err(|_| io::Error::other("the log writer thread stopped"))
    }

    async fn run(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Job,
    ) -> Result<(), io::Error> {
        let (done, wait) = oneshot::channel();
        self.send(make(done))?;
        wait.await
            .map_err(|_| io::Error::other("the log writer thread stopped"))?
    }
}

/// Reads and checks every record: the format marker, the vote, the purge point, the entries.
#[allow(clippy::type_complexity)]
fn read_all(
    db: &Database,
) -> Result<
    (
        BTreeMap<u64, Entry<TypeConfig>>,
        Option<LogId<NodeId>>,
        Option<Vote<NodeId>>,
        Option<Leftover>,
    ),
    String,
> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let meta = txn
        .open_table(META)
        .map_err(|e| format!("not a worklease data file ({e})"))?;
    match meta.get("format").map_err(|e| e.to_string())? {
        Some(format) if format.value() == FORMAT => {}
        _ => return Err("not a worklease data file (no format marker)".to_owned()),
    }
    let vote = match meta.get("vote").map_err(|e| e.to_string())? {
        Some(bytes) => {
            Some(codec::decode_vote(bytes.value()).map_err(|e| format!("the vote: {e}"))?)
        }
        None => None,
    };
    let last_purged = match meta.get("last_purged").map_err(|e| e.to_string())? {
        Some(bytes) => {
            Some(codec::decode_log_id(bytes.value()).map_err(|e| format!("the purge point: {e}"))?)
        }
        None => None,
    };
    let log = txn
        .open_table(LOG)
        .map_err(|e| format!("not a worklease data file ({e})"))?;
    let mut entries = BTreeMap::new();
    let mut expected = last_purged.map(|id| id.index + 1);
    // Rows at or before the purge point are ones the writer had not deleted yet (see
    // `Leftover`): covered by the snapshot, never read again.
    let first = expected.unwrap_or(0);
    let leftover = match log.first().map_err(|e| e.to_string())? {
        Some((key, _)) if key.value() < first => Some(Leftover {
            from: key.value(),
            upto: first - 1,
        }),
        _ => None,
    };
    for row in log.range(first..).map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let index = key.value();
        let entry =
            codec::decode_entry(value.value()).map_err(|e| format!("log entry {index}: {e}"))?;
        if entry.log_id.index != index || expected.is_some_and(|next| next != index) {
            return Err(format!("log entry {index}: out of sequence"));
        }
        expected = Some(index + 1);
        entries.insert(index, entry);
    }
    Ok((entries, last_purged, vote, leftover))
}

/// The writer thread: one durable commit per batch of queued jobs, until the store is dropped.
fn write_loop(
    db: &Database,
    jobs: &mpsc::Receiver<Job>,
    stats: &WriterStats,
    mut leftover: Option<Leftover>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let written = write_batch(db, &batch, &mut leftover);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        if written.is_ok() {
            stats.count(&batch);
        }
        for job in batch {
            let result = written
                .as_ref()
                .map(|_| ())
                .map_err(|error| io::Error::other(error.clone()));
            match job {
                Job::Append { flushed, .. } => flushed.log_io_completed(result),
                Job::Vote { done, .. } | Job::Truncate { done, .. } | Job::Purge { done, .. } => {
                    let _ = done.send(result);
                }
            }
        }
    }
}

/// Rows `from..=upto` of the log table: purged (the purge point is on disk) but not deleted
/// yet.
///
/// Deleting a whole purge in one transaction rewrote most of the table's pages in one commit
/// (~150 ms for the ~7 000 entries 100 000 commands make, during which nothing is
/// acknowledged), so a purge only writes the purge point and every later commit deletes the
/// next [`PURGE_STEP`] rows. What is left after a crash is skipped on open and deleted then.
#[derive(Debug, Clone, Copy)]
struct Leftover {
    from: u64,
    upto: u64,
}

/// Purged rows one commit deletes. A commit appends about one entry (one per proposed batch),
/// so four a commit delete what one snapshot interval appended within a quarter of the next.
const PURGE_STEP: u64 = 4;

/// Writes `batch` in one redb transaction and commits it durably.
///
/// redb's default commit (`Durability::Immediate`, one-phase with checksums) is one
/// `fdatasync` of the data and the new header together (`strace -f -e fdatasync` under load:
/// one per commit, ~0.3 ms each on the bench machine). Everything is checksummed, and on open
/// after a crash redb uses the most recent of its two commit slots whose checksums are valid,
/// so a commit cut short before its fsync returned (and so before anything was acknowledged)
/// is simply not there. There is no second fsync to save: two-phase commit
/// (`set_two_phase_commit(true)`) would add one.
fn write_batch(
    db: &Database,
    batch: &[Job],
    leftover: &mut Option<Leftover>,
) -> Result<(), String> {
    let mut left = *leftover;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        for job in batch {
            match job {
                Job::Append { entries, .. } => {
                    for entry in entries {
                        let bytes = codec::encode_entry(entry);
                        log.insert(entry.log_id.index, bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                }
                Job::Vote { bytes, .. } => {
                    meta.insert("vote", bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Job::Truncate { since, .. } => {
                    log.retain_in(*since.., |_, _| false)
                        .map_err(|e| e.to_string())?;
                }
                Job::Purge { upto, .. } => {
                    meta.insert("last_purged", codec::encode_log_id(upto).as_slice())
                        .map_err(|e| e.to_string())?;
                    let from = match left {
                        Some(left) => Some(left.from),
                        None => log
                            .first()
                            .map_err(|e| e.to_string())?
                            .map(|(k, _)| k.value()),
                    };
                    left = from
                        .filter(|from| *from <= upto.index)
                        .map(|from| Leftover {
                            from,
                            upto: upto.index,
                        });
                }
            }
        }
        if let Some(Leftover { from, upto }) = left {
            let end = upto.min(from + PURGE_STEP - 1);
            log.retain_in(from..=end, |_, _| false)
                .map_err(|e| e.to_string())?;
            left = (end < upto).then_some(Leftover {
                from: end + 1,
                upto,
            });
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    *leftover = left;
    Ok(())
}

type StorageResult<T> = Result<T, StorageError<NodeId>>;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let entries = self.inner.entries.lock();
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if let (Bound::Included(start), Bound::Included(end)) = range {
            if start > end {
                return Ok(Vec::new());
            }
        }
        Ok(entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = *self.inner.last_purged.lock();
        let last = self
            .inner
            .entries
            .lock()
            .values()
            .next_back()
            .map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let bytes = codec::encode_vote(vote);
        self.run(|done| Job::Vote { bytes, done })
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        *self.inner.vote.lock() = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(*self.inner.vote.lock())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        {
            let mut kept = self.inner.entries.lock();
            for entry in &entries {
                kept.insert(entry.log_id.index, entry.clone());
            }
        }
        self.send(Job::Append {
            entries,
            flushed: callback,
        })
        .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let since = log_id.index;
        self.inner.entries.lock().retain(|index, _| *index < since);
        self.run(|done| Job::Truncate { since, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.run(|done| Job::Purge { upto: log_id, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        *self.inner.last_purged.lock() = Some(log_id);
        self.inner
            .entries
            .lock()
            .retain(|index, _| *index > log_id.index);
        Ok(())
    }
}

/// Writes a log file as a store that ran would have left it (for the recovery measurement).
#[cfg(test)]
pub(super) fn write_for_test(
    path: &Path,
    vote: &Vote<NodeId>,
    purged: Option<LogId<NodeId>>,
    entries: &[Entry<TypeConfig>],
) {
    let db = Database::create(path).expect("creates");
    let txn = db.begin_write().expect("writes");
    {
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert("format", FORMAT).expect("format");
        meta.insert("vote", codec::encode_vote(vote).as_slice())
            .expect("vote");
        if let Some(purged) = purged {
            meta.insert("last_purged", codec::encode_log_id(&purged).as_slice())
                .expect("purge point");
        }
        let mut log = txn.open_table(LOG).expect("log");
        for entry in entries {
            log.insert(entry.log_id.index, codec::encode_entry(entry).as_slice())
                .expect("entry");
        }
    }
    txn.commit().expect("commits");
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn stored_keys(path: &Path) -> Vec<u64> {
        let db = Database::open(path).expect("opens");
        let txn = db.begin_read().expect("reads");
        let log = txn.open_table(LOG).expect("log");
        log.iter()
            .expect("iterates")
            .map(|row| row.expect("a row").0.value())
            .collect()
    }

    /// A purge writes only its purge point; later commits delete the purged rows a few at a
    /// time, and rows a crash left behind are skipped on open and deleted then.
    #[tokio::test]
    async fn purged_rows_are_deleted_by_later_commits_and_skipped_on_open() {
        let dir = std::env::temp_dir().join(format!("worklease-purge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("raft.redb");
        let entries: Vec<_> = (1..=20).map(blank).collect();
        // As a crash right after a purge up to 13 leaves it: the purge point, every row.
        write_for_test(
            &path,
            &Vote::new_committed(1, 1),
            Some(blank(13).log_id),
            &entries,
        );
        {
            let (mut store, opened) = LogStore::open(&path).expect("opens");
            assert_eq!(opened.entries, 7);
            assert_eq!(opened.last_index, Some(20));
            let state = store.get_log_state().await.expect("a state");
            assert_eq!(state.last_purged_log_id, Some(blank(13).log_id));
            // Each commit (here, of a vote) deletes the next PURGE_STEP purged rows.
            store
                .save_vote(&Vote::new_committed(1, 1))
                .await
                .expect("saved");
            store.purge(blank(16).log_id).await.expect("purged");
            for _ in 0..8 {
                store
                    .save_vote(&Vote::new_committed(1, 1))
                    .await
                    .expect("saved");
            }
            let read = store.try_get_log_entries(0..100).await.expect("entries");
            assert_eq!(read.first().map(|e| e.log_id.index), Some(17));
        }
        // The writer thread ends once the store is dropped; wait for it to close the file.
        let mut keys = Vec::new();
        for _ in 0..100 {
            if let Ok(db) = std::panic::catch_unwind(|| stored_keys(&path)) {
                keys = db;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(keys, (17..=20).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
