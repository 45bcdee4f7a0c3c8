//! The Raft log and vote, in the write-ahead log's segment files (`wal`, `DIR/raft-*.wal`).
//!
//! Group commit: requests gather while an entry is being written and go to the log together as
//! the next entry (`raft::propose_batches`). Where the writes happen depends on the cluster
//! ([`Writer`]): a one-member cluster writes on openraft's core, in [`LogStore::append`]
//! itself; a replicated member queues each change for a writer thread, which takes every job
//! queued by the time it is free, writes them as one frame and syncs it (one `fdatasync`),
//! then tells openraft each is flushed. Either way votes, truncations and purges go the same
//! way as entries, so every change reaches the disk in the order openraft made it.
//!
//! Every entry that was not purged is also kept decoded in memory: the state machine and
//! replication read from there, and startup reads and checks the whole log once.

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
use tokio::sync::oneshot;

use super::open_error::OpenError;
use super::wal::{self, Wal};
use super::{NodeId, Proposal, TypeConfig};

/// The log store openraft drives; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    /// Every entry not purged, by index.
    entries: Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
    last_purged: Mutex<Option<LogId<NodeId>>>,
    vote: Mutex<Option<Vote<NodeId>>>,
    writer: Writer,
    stats: Arc<WriterStats>,
}

/// Where the log's writes are made.
enum Writer {
    /// On a thread of their own (a replicated member): openraft's core goes on replicating and
    /// answering the other members while the disk syncs.
    Thread(Mutex<mpsc::Sender<Job>>),
    /// On the caller's thread (a one-member cluster), which is openraft's core on the Raft
    /// thread: it blocks for the sync. One entry is in flight at a time there anyway, so
    /// nothing waits behind the sync but the next batch, which gathers meanwhile; and the
    /// round trip to a writer thread and back (two wake-ups of sleeping threads a batch, each
    /// waiting for a core the HTTP side keeps busy) is gone.
    Inline(Box<Mutex<(Wal, wal::Frame)>>),
}

/// What the log's writes have done so far (on the writer thread, or inline: [`Writer`]).
#[derive(Debug)]
pub(crate) struct WriterStats {
    /// Frames written to the log, one `fdatasync` each (a failed write counted too: it may
    /// have reached the sync): `GET /cluster`'s `log_syncs`.
    pub(crate) commits: AtomicU64,
    /// Log entries written.
    pub(crate) entries: AtomicU64,
    /// Commands in those entries.
    pub(crate) commands: AtomicU64,
    /// Entries of commands (`EntryPayload::Normal`) on disk so far, counted from this start:
    /// the proposer of a one-member cluster sends its next entry once the one before is on
    /// disk, rather than once it is applied (see `raft::propose_batches`).
    pub(crate) flushed_proposals: tokio::sync::watch::Sender<u64>,
    /// The highest commit index this member has heard of, plus one (0: none): from openraft
    /// committing entries here, and from the leader's appends (`Durable::heard_commit`).
    pub(crate) committed: AtomicU64,
    /// Why the writer thread ended (`None` while it runs; always `None` in a one-member
    /// cluster, whose writes are made on openraft's core, which is watched itself).
    writer_stopped: tokio::sync::watch::Sender<Option<&'static str>>,
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
            committed: AtomicU64::new(0),
            writer_stopped: tokio::sync::watch::channel(None).0,
        }
    }
}

impl WriterStats {
    /// Records that entries up to `index` are committed.
    pub(crate) fn heard_commit(&self, index: u64) {
        self.committed
            .fetch_max(index.saturating_add(1), Ordering::Relaxed);
    }

    /// Resolves, with why, when the writer thread ends: then no write can reach the disk.
    pub(crate) async fn writer_stopped(&self) -> &'static str {
        let mut stopped = self.writer_stopped.subscribe();
        loop {
            if let Some(why) = *stopped.borrow_and_update() {
                return why;
            }
            if stopped.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Tells [`WriterStats::writer_stopped`] when the writer thread ends, by returning or by a
/// panic.
struct WriterExit<'a>(&'a WriterStats);

impl Drop for WriterExit<'_> {
    fn drop(&mut self) {
        self.0
            .writer_stopped
            .send_replace(Some(if std::thread::panicking() {
                "the log writer thread panicked"
            } else {
                "the log writer thread stopped"
            }));
    }
}

/// One change to the log.
enum Job {
    Append {
        entries: Vec<Entry<TypeConfig>>,
        flushed: LogFlushed<TypeConfig>,
    },
    Vote {
        vote: Vote<NodeId>,
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
    /// Opens (or creates) the log in `dir`, checks it whole and reads every entry; new
    /// segments are `segment_bytes` long. `inline`: writes are made on the caller's thread
    /// (see [`Writer`]).
    ///
    /// # Errors
    ///
    /// The file at fault when the log is damaged, foreign or unreadable.
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
        inline: bool,
    ) -> Result<(Self, Opened), OpenError> {
        let (wal, replayed) = Wal::open(dir, segment_bytes)?;
        let entries = replayed.entries;
        let last_purged = replayed.last_purged;
        let last_index = entries
            .keys()
            .next_back()
            .copied()
            .or(last_purged.map(|id| id.index));
        let opened = Opened {
            created: replayed.created,
            last_index,
            entries: entries.len(),
        };
        let stats = Arc::new(WriterStats::default());
        let writer = if inline {
            Writer::Inline(Box::new(Mutex::new((wal, wal::Frame::default()))))
        } else {
            let (tx, rx) = mpsc::channel();
            let writer_stats = stats.clone();
            std::thread::Builder::new()
                .name("raft-log-writer".to_owned())
                .spawn(move || write_loop(wal, &rx, &writer_stats))
                .map_err(|e| OpenError::at(dir, e))?;
            Writer::Thread(Mutex::new(tx))
        };
        let store = Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                entries: Mutex::new(entries),
                last_purged: Mutex::new(last_purged),
                vote: Mutex::new(replayed.vote),
                writer,
                stats,
            }),
        };
        Ok((store, opened))
    }

    /// The latest stamp among the commands the log holds.
    pub(crate) fn latest_stamp(&self) -> Option<worklease::Timestamp> {
        self.inner
            .entries
            .lock()
            .values()
            .rev()
            .find_map(|entry| match &entry.payload {
                openraft::EntryPayload::Normal(Proposal(batch, _)) => {
                    batch.iter().map(|stamped| stamped.now).max()
                }
                _ => None,
            })
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> Arc<WriterStats> {
        self.inner.stats.clone()
    }

    fn send(&self, job: Job) -> Result<(), io::Error> {
        match &self.inner.writer {
            Writer::Thread(queue) => queue
                .lock()
                .send(job)
                .map_err(|_| io::Error::other("the log writer thread stopped")),
            Writer::Inline(wal) => {
                let mut guard = wal.lock();
                let (wal, frame) = &mut *guard;
                finish(wal, frame, vec![job], &self.inner.stats);
                Ok(())
            }
        }
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

/// The writer thread: one frame (one `fdatasync`) per batch of queued jobs, until the store
/// is dropped.
fn write_loop(mut wal: Wal, jobs: &mpsc::Receiver<Job>, stats: &WriterStats) {
    let _exit = WriterExit(stats);
    let mut frame = wal::Frame::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        finish(&mut wal, &mut frame, batch, stats);
    }
}

/// Writes `batch` as one frame and tells each job's sender how it went.
fn finish(wal: &mut Wal, frame: &mut wal::Frame, batch: Vec<Job>, stats: &WriterStats) {
    frame.clear();
    for job in &batch {
        match job {
            Job::Append { entries, .. } => entries.iter().for_each(|entry| frame.entry(entry)),
            Job::Vote { vote, .. } => frame.vote(vote),
            Job::Truncate { since, .. } => frame.truncate(*since),
            Job::Purge { upto, .. } => frame.purge(upto),
        }
    }
    let written = wal.write(frame);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    if written.is_ok() {
        stats.count(&batch);
    }
    for job in batch {
        let result = written
            .as_ref()
            .map(|_| ())
            .map_err(|error| io::Error::new(error.kind(), error.to_string()));
        match job {
            Job::Append { flushed, .. } => flushed.log_io_completed(result),
            Job::Vote { done, .. } | Job::Truncate { done, .. } | Job::Purge { done, .. } => {
                let _ = done.send(result);
            }
        }
    }
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

    /// Not stored, only remembered for readiness (`Durable::readiness`).
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        if let Some(committed) = committed {
            self.inner.stats.heard_commit(committed.index);
        }
        Ok(())
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.run(|done| Job::Vote { vote, done })
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        *self.inner.vote.lock() = Some(vote);
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

/// Writes a log as a store that ran would have left it (for the recovery measurement).
#[cfg(test)]
pub(super) fn write_for_test(
    dir: &Path,
    vote: &Vote<NodeId>,
    purged: Option<LogId<NodeId>>,
    entries: &[Entry<TypeConfig>],
) {
    let (mut wal, _) = Wal::open(dir, wal::SEGMENT_BYTES).expect("opens");
    let mut frame = wal::Frame::default();
    frame.vote(vote);
    if let Some(purged) = &purged {
        frame.purge(purged);
    }
    entries.iter().for_each(|entry| frame.entry(entry));
    wal.write(&frame).expect("writes");
}

#[cfg(test)]
mod tests {
    use super::wal::blank;
    use super::*;

    /// Votes, truncations and purges go through the writer and are there after a restart.
    #[tokio::test]
    async fn votes_truncations_and_purges_survive_a_restart() {
        for inline in [false, true] {
            survive_a_restart(inline).await;
        }
    }

    async fn survive_a_restart(inline: bool) {
        let dir =
            std::env::temp_dir().join(format!("worklease-store-{inline}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let entries: Vec<_> = (1..=20).map(blank).collect();
        write_for_test(&dir, &Vote::new(1, 1), None, &entries);
        {
            let (mut store, opened) = LogStore::open(&dir, 4096, inline).expect("opens");
            assert_eq!((opened.entries, opened.last_index), (20, Some(20)));
            store
                .save_vote(&Vote::new_committed(2, 1))
                .await
                .expect("saved");
            store.truncate(blank(18).log_id).await.expect("truncated");
            store.purge(blank(5).log_id).await.expect("purged");
        }
        // The writer thread ends once the store is dropped; its writes were synced before
        // each call above returned.
        let (mut store, opened) = LogStore::open(&dir, 4096, inline).expect("reopens");
        assert_eq!((opened.entries, opened.last_index), (12, Some(17)));
        let state = store.get_log_state().await.expect("a state");
        assert_eq!(state.last_purged_log_id, Some(blank(5).log_id));
        assert_eq!(state.last_log_id, Some(blank(17).log_id));
        assert_eq!(
            store.read_vote().await.expect("a vote"),
            Some(Vote::new_committed(2, 1))
        );
        let read = store.try_get_log_entries(0..100).await.expect("entries");
        assert_eq!(
            read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            (6..=17).collect::<Vec<_>>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
