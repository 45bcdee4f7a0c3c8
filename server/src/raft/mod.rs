//! openraft glue, and nothing else: the type configuration, the log store (redb), the state
//! machine (the table and its snapshots), the network (none yet: a durable server is a
//! one-member cluster) and bootstrap. The write path in `submit.rs` proposes through
//! [`Durable::propose`]; everything about Raft stays behind it.

use std::fmt::Debug;
use std::sync::Arc;

use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use worklease::{Applied, Error, LeaseTable, Stamped};

mod bootstrap;
mod codec;
mod log_store;
mod network;
mod state_machine;

pub(crate) use bootstrap::{open, Options};

/// Member ids (`--node-id`; a durable server is node 1).
pub(crate) type NodeId = u64;

/// A command in the log: a `Stamped`, stored as `Stamped::encode()`'s bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal(pub(crate) Stamped);

/// What applying a log entry answered: the table's answer to a command; `None` for Raft's
/// own entries (blank, membership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer(pub(crate) Option<Result<Applied, Error>>);

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

/// A running durable node: its Raft handle and the table its state machine applies to.
pub(crate) struct Durable {
    raft: openraft::Raft<TypeConfig>,
    node_id: NodeId,
    table: Arc<Mutex<LeaseTable>>,
    /// Held while a command is stamped and handed to Raft, so the log holds commands in the
    /// order they were stamped (stamps and minted ids increase along the log).
    order: tokio::sync::Mutex<()>,
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
        let (answer, extra) = {
            let _order = self.order.lock().await;
            let (stamped, extra) = stamp();
            match self.raft.client_write_ff(Proposal(stamped)).await {
                Ok(answer) => (answer, extra),
                Err(error) => fail(&error),
            }
        };
        match answer.await {
            Ok(Ok(response)) => match response.data {
                Answer(Some(result)) => (result, extra),
                Answer(None) => unreachable!("invariant: a command's entry answers the table's"),
            },
            Ok(Err(error)) => fail(&error),
            Err(error) => fail(&error),
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

    /// Stops Raft; every acknowledged write is already on disk.
    pub(crate) async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        tracing::info!(
            fsyncs = self
                .writer
                .commits
                .load(std::sync::atomic::Ordering::Relaxed),
            entries = self
                .writer
                .entries
                .load(std::sync::atomic::Ordering::Relaxed),
            "log closed"
        );
    }
}

/// The log cannot take writes any more (its storage failed, or Raft stopped).
fn fail(error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "the log failed; stopping so that a restart recovers from disk");
    std::process::exit(70)
}
