//! Opening a data directory: check and load what it holds, start Raft, initialize a new
//! directory as a one-member cluster, and wait until every logged command is applied before
//! the server answers anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use worklease::Config;

use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::StateMachine;
use super::{Durable, NodeId};

/// The log's file in the data directory.
pub(crate) const LOG_FILE: &str = "raft.redb";
/// The snapshot's file in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.wls";
/// This node (the only member).
const NODE_ID: NodeId = 1;
/// How long replay and the first election may take before startup gives up.
const STARTUP_LIMIT: Duration = Duration::from_secs(300);

/// What durable mode needs from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    /// Build a snapshot (and purge the log behind it) every this many applied entries.
    pub(crate) snapshot_every: u64,
    /// This member's address, recorded in the membership.
    pub(crate) address: SocketAddr,
}

/// Opens (or creates) the data directory and returns once the node leads and has applied
/// every command its log held.
///
/// # Errors
///
/// A message naming the file at fault when the directory cannot be used: damaged, foreign, or
/// unreadable. Nothing is served from a partial table.
pub(crate) async fn open(options: &Options) -> Result<Durable, String> {
    let started = Instant::now();
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log_path = dir.join(LOG_FILE);
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    if log_path.exists() && !snapshot_path.exists() {
        return Err(format!(
            "{}: missing, but {} exists: the directory is damaged",
            snapshot_path.display(),
            log_path.display()
        ));
    }
    if !log_path.exists() && snapshot_path.exists() {
        // A directory is made snapshot first, log second: a snapshot alone is either that
        // first empty snapshot (a crash in between) or a directory that lost its log.
        let (_, restored) = StateMachine::open(&snapshot_path, options.config)?;
        if restored.index.is_some() {
            return Err(format!(
                "{}: missing, but {} covers a log that existed",
                log_path.display(),
                snapshot_path.display()
            ));
        }
    }
    let (machine, restored) = StateMachine::open(&snapshot_path, options.config)?;
    let (log, opened) = tokio::task::block_in_place(|| LogStore::open(&log_path))?;
    if let (Some(snapshot), last) = (restored.index, opened.last_index) {
        if last.is_none_or(|last| last < snapshot) {
            return Err(format!(
                "{}: ends before the snapshot in {} (index {snapshot})",
                log_path.display(),
                snapshot_path.display()
            ));
        }
    }
    tracing::info!(
        dir = %dir.display(),
        new = opened.created,
        snapshot_index = restored.index,
        snapshot_bytes = restored.bytes,
        log_entries = opened.entries,
        "data directory opened; replaying the log"
    );
    let table = machine.table();
    let writer = log.stats();
    let config = openraft::Config {
        cluster_name: "worklease".to_owned(),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| format!("raft configuration: {e}"))?,
    );
    let raft = openraft::Raft::new(NODE_ID, config, Network, log, machine)
        .await
        .map_err(|e| format!("raft did not start: {e}"))?;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| format!("raft did not start: {e}"))?;
    if !initialized {
        let members = BTreeMap::from([(NODE_ID, BasicNode::new(options.address))]);
        raft.initialize(members)
            .await
            .map_err(|e| format!("cannot initialize the cluster: {e}"))?;
    }
    let target = opened.last_index;
    let mut metrics = raft.metrics();
    loop {
        {
            let now = metrics.borrow();
            if let Err(fatal) = &now.running_state {
                return Err(format!("{}: {fatal}", log_path.display()));
            }
            let applied = now.last_applied.map(|id| id.index);
            if now.state == ServerState::Leader && applied >= target {
                tracing::info!(
                    replayed = applied.unwrap_or(0) - restored.index.unwrap_or(0),
                    last_applied_index = applied,
                    term = now.current_term,
                    took_ms = started.elapsed().as_millis() as u64,
                    "recovered"
                );
                break;
            }
        }
        let left = STARTUP_LIMIT.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(format!("{}: raft stopped during startup", dir.display())),
            Err(_) => {
                return Err(format!(
                    "{}: not recovered within {} s",
                    dir.display(),
                    STARTUP_LIMIT.as_secs()
                ))
            }
        }
    }
    Ok(Durable {
        raft,
        node_id: NODE_ID,
        table,
        order: tokio::sync::Mutex::new(()),
        writer,
    })
}
