//! openraft glue, and nothing else: the type configuration, the log store (redb), the state
//! machine (the table and its snapshots), the network (none yet: a durable server is a
//! one-member cluster) and bootstrap. The write path in `submit.rs` proposes through
//! [`Durable::propose`]; everything about Raft stays behind it.

use std::fmt::Debug;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use worklease::{Applied, Error, LeaseTable, Stamped};

mod bootstrap;
mod codec;
mod log_store;
mod network;
mod state_machine;

pub(crate) use bootstrap::{open, Options};

/// Member ids (`--node-id`; a durable server is node 1).
pub(crate) type NodeId = u64;

/// A log entry's commands: every command proposed while the previous entry was being
/// written (group commit), in the order they were stamped. Shared, because openraft clones
/// entries on their way from the log to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal(pub(crate) Arc<[Stamped]>);

/// What applying a log entry answered: the table's answer to each of its commands; `None` for
/// Raft's own entries (blank, membership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer(pub(crate) Option<Vec<Result<Applied, Error>>>);

openraft::declare_raft_types!(
    /// The types this server's Raft group is made of.
    pub(crate) TypeConfig:
        D = Proposal,
        R = Answer,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// `GET /cluster`'s view of this node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    pub(crate) node_id: NodeId,
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) term: u64,
    pub(crate) role: &'static str,
    pub(crate) last_applied_index: u64,
}

/// A command waiting for its batch, and where its answer goes.
type Waiting = (Stamped, oneshot::Sender<Result<Applied, Error>>);

/// The most commands one log entry holds.
const MAX_BATCH: usize = 1024;

/// A running durable node: its Raft handle, the table its state machine applies to, and the
/// queue of commands waiting to be proposed.
pub(crate) struct Durable {
    raft: openraft::Raft<TypeConfig>,
    node_id: NodeId,
    table: Arc<Mutex<LeaseTable>>,
    /// Commands in stamp order, for the proposer task. The lock is held while a command is
    /// stamped and queued, so the log holds commands in the order they were stamped (stamps
    /// and minted ids increase along the log).
    queue: Mutex<mpsc::UnboundedSender<Waiting>>,
    proposer: tokio::task::JoinHandle<()>,
    writer: Arc<log_store::WriterStats>,
}

impl Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Durable {
    fn start(
        raft: openraft::Raft<TypeConfig>,
        node_id: NodeId,
        table: Arc<Mutex<LeaseTable>>,
        writer: Arc<log_store::WriterStats>,
        snapshot_every: u64,
    ) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let proposer = tokio::spawn(propose_batches(raft.clone(), waiting, snapshot_every));
        Self {
            raft,
            node_id,
            table,
            queue: Mutex::new(queue),
            proposer,
            writer,
        }
    }

    /// The table the state machine applies to, for reads.
    pub(crate) fn table(&self) -> &Arc<Mutex<LeaseTable>> {
        &self.table
    }

    /// Stamps a command with `stamp` (in log order) and proposes it; answers once it is
    /// committed (fsynced) and applied, with the table's answer and what `stamp` returned
    /// beside the command.
    ///
    /// A node that cannot write its log any more cannot answer anything truthfully: it logs
    /// why and exits, and a restart recovers from what is on disk.
    pub(crate) async fn propose<T>(
        &self,
        stamp: impl FnOnce() -> (Stamped, T),
    ) -> (Result<Applied, Error>, T) {
        let (answer, wait) = oneshot::channel();
        let extra = {
            let queue = self.queue.lock();
            let (stamped, extra) = stamp();
            if queue.send((stamped, answer)).is_err() {
                fail(&"the proposer stopped");
            }
            extra
        };
        match wait.await {
            Ok(result) => (result, extra),
            Err(_) => fail(&"the proposer stopped before answering"),
        }
    }

    /// The node's Raft state, as `GET /cluster` reports it.
    pub(crate) fn status(&self) -> Status {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        Status {
            node_id: self.node_id,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            role: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner | ServerState::Shutdown => "learner",
            },
            last_applied_index: metrics.last_applied.map_or(0, |id| id.index),
        }
    }

    /// Stops proposing and stops Raft; every acknowledged write is already on disk.
    pub(crate) async fn shutdown(&self) {
        self.proposer.abort();
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        tracing::info!(
            fsyncs = self.writer.commits.load(Ordering::Relaxed),
            entries = self.writer.entries.load(Ordering::Relaxed),
            commands = self.writer.commands.load(Ordering::Relaxed),
            "log closed"
        );
    }
}

/// The proposer: takes every command queued by the time the previous entry is committed,
/// proposes them as one entry (one fsync), and hands each its answer. Asks for a snapshot
/// every `snapshot_every` commands.
///
/// One entry in flight is deliberate: proposing more with `client_write_ff` (2, 3 or 4 entries
/// in flight, or the next entry as soon as the log writer has started on the one before)
/// measured slower on the 2-core bench machine in every alternating round (medians: 2 in
/// flight 14.6k/s, 3 once taken 17.6k and 14.8k/s, against 21.0k and 21.6k/s for one in the
/// same rounds; 4 in flight 4.8k against 9.8k/s under heavier load), with 5–13 commands an
/// entry against 14–18: the disk then syncs more, smaller batches, and every extra entry costs
/// the same Raft round trip on the same two cores.
async fn propose_batches(
    raft: openraft::Raft<TypeConfig>,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
    snapshot_every: u64,
) {
    let mut since_snapshot = 0;
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, answers): (Vec<Stamped>, Vec<_>) = batch.into_iter().unzip();
        let count = commands.len() as u64;
        match raft.client_write(Proposal(commands.into())).await {
            Ok(response) => {
                let Answer(Some(results)) = response.data else {
                    unreachable!("invariant: an entry of commands answers each of them")
                };
                for (answer, result) in answers.into_iter().zip(results) {
                    // A client that went away does not need its answer.
                    let _ = answer.send(result);
                }
            }
            Err(error) => fail(&error),
        }
        since_snapshot += count;
        if since_snapshot >= snapshot_every {
            since_snapshot = 0;
            if let Err(error) = raft.trigger().snapshot().await {
                fail(&error);
            }
        }
    }
}

/// The log cannot take writes any more (its storage failed, or Raft stopped).
fn fail(error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "the log failed; stopping so that a restart recovers from disk");
    std::process::exit(70)
}
