//! openraft's own conformance suite (`openraft::testing::Suite`), run against this server's log
//! store and state machine, each case on a new data directory: the contract openraft drives
//! them by, checked case by case (votes, reads, truncation, purge, applied state, snapshots).
//!
//! The log store runs both ways a server uses it: writing inline (a one-member cluster) and on
//! its writer thread (a replicated member).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use worklease::Config;

use super::bootstrap::SNAPSHOT_FILE;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{NodeId, TypeConfig};
use crate::clock::Clock;

/// The log's segment size: small, so the cases' logs span several segments (and each case
/// does not write a production-size segment of zeros).
const SEGMENT_BYTES: u64 = 4096;

/// Builds a log store and state machine on a new directory under the system's temporary
/// directory.
struct Builder {
    /// Whether the log store writes on the caller's thread (see `log_store::Writer`).
    inline: bool,
}

/// A data directory, removed when the case that used it ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Scratch> for Builder {
    async fn build(&self) -> Result<(Scratch, LogStore, StateMachine), StorageError<NodeId>> {
        static BUILT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "worklease-suite-{}-{}",
            std::process::id(),
            BUILT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let scratch = Scratch(dir);
        let (log, _) =
            LogStore::open(&scratch.0, SEGMENT_BYTES, self.inline).expect("opens the log");
        let (machine, _) = StateMachine::open(
            &scratch.0.join(SNAPSHOT_FILE),
            Config::default(),
            Arc::new(Clock::new()),
        )
        .expect("opens the state machine");
        Ok((scratch, log, machine))
    }
}

/// Every case of the suite passes with the log written on the caller's thread (a one-member
/// cluster).
#[test]
fn openraft_storage_suite_passes_with_the_log_written_inline() {
    Suite::test_all(Builder { inline: true }).expect("the suite passes");
}

/// Every case of the suite passes with the log written on its writer thread (a replicated
/// member).
#[test]
fn openraft_storage_suite_passes_with_the_log_written_on_its_thread() {
    Suite::test_all(Builder { inline: false }).expect("the suite passes");
}
