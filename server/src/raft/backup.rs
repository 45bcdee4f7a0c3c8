//! Backups and restores of the table (docs/contract.md §12): a consistent copy of the table as
//! of a committed index, taken from a snapshot (so applies go on while it is made), and a new
//! data directory holding a restored table.

use std::path::Path;
use std::time::Duration;

use openraft::{SnapshotMeta, StoredMembership};
use worklease::LeaseTable;

use super::bootstrap::SNAPSHOT_FILE;
use super::dir_lock::DirLock;
use super::payload::{encode_payload, table_of_payload};
use super::state_machine::write_snapshot;
use super::{Durable, Unavailable};

/// How long a backup waits for its snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// A table as of a log index: what `GET /cluster/snapshot` sends.
#[derive(Debug)]
pub(crate) struct Backup {
    /// The index of the last log entry the table reflects, and its term.
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// The table's canonical bytes (`LeaseTable::snapshot`).
    pub(crate) table: Vec<u8>,
}

impl Durable {
    /// The table as of an index that is committed: once this member has confirmed it leads
    /// and applied everything committed, a snapshot covering at least that is taken (or the
    /// newest one reused when it does) and its table returned.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when this member cannot confirm its leadership, or no snapshot is made
    /// in time.
    pub(crate) async fn backup(&self) -> Result<Backup, Unavailable> {
        self.read_barrier().await?;
        let mut metrics = self.raft.metrics();
        let target = metrics.borrow().last_applied;
        let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
        while metrics.borrow_and_update().snapshot < target {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| Unavailable(format!("the raft core stopped: {e}")))?;
            let pace = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                _ = pace => {}
                _ = metrics.changed() => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Unavailable(format!(
                    "no snapshot was made within {} s; retry",
                    SNAPSHOT_WAIT.as_secs()
                )));
            }
        }
        let snapshot = self
            .raft
            .get_snapshot()
            .await
            .map_err(|e| Unavailable(format!("cannot read the snapshot: {e}")))?
            .ok_or_else(|| Unavailable("no snapshot yet; retry".to_owned()))?;
        let Some(last) = snapshot.meta.last_log_id else {
            return Err(Unavailable("no snapshot yet; retry".to_owned()));
        };
        let payload = snapshot.snapshot.into_inner();
        let table = table_of_payload(&payload)
            .map_err(|e| Unavailable(format!("the snapshot does not read: {e}")))?;
        Ok(Backup {
            index: last.index,
            term: last.leader_id.term,
            table,
        })
    }
}

/// Makes `dir` (new or empty) a data directory whose table is `table` (canonical bytes): a
/// directory as a new server makes, whose first snapshot holds that table instead of an empty
/// one. Started, it initializes a new one-member cluster (`super::bootstrap`). Holds the
/// directory's lock while it writes, so no server opens it meanwhile.
///
/// # Errors
///
/// Why, naming the directory or file: it is not empty, is held by a server, or the table does
/// not read.
pub(crate) fn restore_into(dir: &Path, table: &[u8]) -> Result<(), String> {
    let named = |error: &dyn std::fmt::Display| format!("{}: {error}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| named(&e))?;
    let _lock = DirLock::take(dir).map_err(|error| error.to_string())?;
    let others: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| named(&e))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != super::dir_lock::LOCK_FILE)
        .collect();
    if !others.is_empty() {
        return Err(named(&format!(
            "not empty ({}): restore into a new directory",
            others.join(", ")
        )));
    }
    let restored = LeaseTable::restore(table).map_err(|e| format!("the backup's table: {e}"))?;
    let meta = SnapshotMeta {
        last_log_id: None,
        last_membership: StoredMembership::default(),
        snapshot_id: "restored".to_owned(),
    };
    let payload = encode_payload(restored.snapshot(), &[]);
    write_snapshot(&dir.join(SNAPSHOT_FILE), &meta, &payload).map_err(|e| named(&e))?;
    Ok(())
}
