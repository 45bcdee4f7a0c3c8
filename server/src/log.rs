//! The log every change goes through, whatever the mode: a [`Log`] takes a typed request,
//! stamps it, applies it to the table in log order and answers with the request's own answer;
//! it also says whether a read of the table is linearizable ([`Log::read_barrier`]), what this
//! node's role is, and where it stands ([`Log::status`]). `crate::submit` is written against
//! it alone.
//!
//! Two implementations: [`MemoryLog`] (`memory.rs`: no disk, every command applied under the
//! table lock as it arrives) and [`RaftLog`] (`raft.rs`: openraft, with one member in durable
//! mode and several in replicated mode). [`AnyLog`] is the one a server runs.
//!
//! **Applied** means the same in every mode: `last_applied_index` is the index of the last
//! entry of this node's log applied to its table (0 before the first). An entry holds one or
//! more commands: in memory each command is its own entry; Raft groups the commands proposed
//! while the previous entry was being written into one entry (one fsync), and adds its own
//! entries (a new leader's blank entry, membership). A request that changes nothing — a read,
//! a poll that finds nothing, a sweep with nothing due — is no entry in either.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use worklease::{Error, LeaseTable, Timestamp};

use crate::mint::CommandIds;
use crate::raft::{Durable, Leader, Status, Unavailable};
use crate::request::{Mismatch, Request};

mod memory;
mod raft;

pub(crate) use memory::MemoryLog;
pub(crate) use raft::RaftLog;

/// Why a request got no answer from the table.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The table (or the crate's parsers) refused it: docs/contract.md §6.
    Table(Error),
    /// It cannot be answered now (no leader, lost leadership, not committed in time): 503.
    Unavailable(Unavailable),
    /// A replay that does not repeat its origin's request (409), or an answer of another
    /// kind (500): `crate::request`.
    Mismatch(Mismatch),
}

impl From<Mismatch> for Refused {
    fn from(mismatch: Mismatch) -> Self {
        Self::Mismatch(mismatch)
    }
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self::Table(error)
    }
}

impl From<Unavailable> for Refused {
    fn from(unavailable: Unavailable) -> Self {
        Self::Unavailable(unavailable)
    }
}

/// A submitted request's outcome: the table's answer (or its refusal) once applied, or why it
/// was not applied.
pub(crate) type Submitted<A> = Result<Result<A, Error>, Refused>;

/// This node's part in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The only member (in memory, or durable): it always leads.
    Sole,
    /// A replicated member that leads (as far as it knows).
    Leader,
    /// A replicated member that does not lead: requests go to the leader.
    Follower,
}

impl Role {
    /// Whether this node may change the table.
    pub(crate) fn leads(self) -> bool {
        self != Self::Follower
    }
}

/// The ordered, applied record of every change to the table.
pub(crate) trait Log {
    /// The table this log applies to; reads lock it after [`Self::read_barrier`].
    fn table(&self) -> &Arc<Mutex<LeaseTable>>;

    /// The time reads are answered at and waits are scheduled by.
    fn now(&self) -> Timestamp;

    /// Stamps `request`'s command (its new ids from `ids`), applies it in log order, and
    /// answers once it is applied (durable: fsynced; replicated: on a majority). A replayed
    /// forward (`crate::origin`) whose first attempt was applied is answered from the record.
    async fn submit<R: Request + Send>(&self, request: R, ids: &CommandIds) -> Submitted<R::Answer>
    where
        R::Answer: Send;

    /// Returns once a read of the local table is linearizable (docs/contract.md §8 "Reads").
    async fn read_barrier(&self) -> Result<(), Unavailable>;

    /// This node's role now.
    fn role(&self) -> Role;

    /// Where requests should be served: here while this node leads, else the leader once one
    /// is known within `wait`.
    async fn leader(&self, wait: Duration) -> Option<Leader>;

    /// Resolves when this node's role or term may have changed (never for a sole member).
    async fn role_changed(&self);

    /// This node's place in its cluster, as `GET /cluster` reports it.
    fn status(&self) -> Status;

    /// Whether this node can answer now (`GET /readyz`); why not, for a human.
    fn readiness(&self) -> Result<(), String>;

    /// Resolves, with why, when the log stops under this node.
    async fn stopped(&self) -> String;

    /// Resolves, with why, when the cluster has removed this node (never in memory or for a
    /// single member).
    async fn removed(&self) -> String;

    /// Stops the log; every answered change is already applied (and, on disk, fsynced).
    async fn shutdown(&self);
}

/// The log a server runs: in memory, or Raft.
#[derive(Debug)]
pub(crate) enum AnyLog {
    Memory(MemoryLog),
    Raft(RaftLog),
}

impl AnyLog {
    /// The Raft node, for the internal RPC routes and forwarding (`None` in memory).
    pub(crate) fn raft(&self) -> Option<&Durable> {
        match self {
            Self::Memory(_) => None,
            Self::Raft(log) => Some(log.durable()),
        }
    }
}

impl Log for AnyLog {
    fn table(&self) -> &Arc<Mutex<LeaseTable>> {
        match self {
            Self::Memory(log) => log.table(),
            Self::Raft(log) => log.table(),
        }
    }

    fn now(&self) -> Timestamp {
        match self {
            Self::Memory(log) => log.now(),
            Self::Raft(log) => log.now(),
        }
    }

    async fn submit<R: Request + Send>(&self, request: R, ids: &CommandIds) -> Submitted<R::Answer>
    where
        R::Answer: Send,
    {
        match self {
            Self::Memory(log) => log.submit(request, ids).await,
            // Boxed: an async fn's future is as large as its largest branch, and the caller's
            // future holds it whole. Inline, the Raft branch made an in-memory heartbeat's
            // future 2 416 bytes (208 boxed), allocated and moved on every request: 16 861 ->
            // 16 246 instructions a heartbeat, the bare route 18 170
            // (`scripts/request-instructions.sh 10 1000`).
            Self::Raft(log) => Box::pin(log.submit(request, ids)).await,
        }
    }

    async fn read_barrier(&self) -> Result<(), Unavailable> {
        match self {
            Self::Memory(log) => log.read_barrier().await,
            Self::Raft(log) => log.read_barrier().await,
        }
    }

    fn role(&self) -> Role {
        match self {
            Self::Memory(log) => log.role(),
            Self::Raft(log) => log.role(),
        }
    }

    async fn leader(&self, wait: Duration) -> Option<Leader> {
        match self {
            Self::Memory(log) => log.leader(wait).await,
            Self::Raft(log) => log.leader(wait).await,
        }
    }

    async fn role_changed(&self) {
        match self {
            Self::Memory(log) => log.role_changed().await,
            Self::Raft(log) => log.role_changed().await,
        }
    }

    fn status(&self) -> Status {
        match self {
            Self::Memory(log) => log.status(),
            Self::Raft(log) => log.status(),
        }
    }

    fn readiness(&self) -> Result<(), String> {
        match self {
            Self::Memory(log) => log.readiness(),
            Self::Raft(log) => log.readiness(),
        }
    }

    async fn stopped(&self) -> String {
        match self {
            Self::Memory(log) => log.stopped().await,
            Self::Raft(log) => log.stopped().await,
        }
    }

    async fn removed(&self) -> String {
        match self {
            Self::Memory(log) => log.removed().await,
            Self::Raft(log) => log.removed().await,
        }
    }

    async fn shutdown(&self) {
        match self {
            Self::Memory(log) => log.shutdown().await,
            Self::Raft(log) => log.shutdown().await,
        }
    }
}
