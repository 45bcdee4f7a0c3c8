//! openraft glue, and nothing else: the type configuration, the log store (over its own
//! write-ahead log, `wal`), the state machine (the table and its snapshots), the network (HTTP
//! to the other members' internal routes; a durable server is a one-member cluster and sends
//! nothing), bootstrap, the admission of members whose directory is new (`admission`),
//! membership changes (`membership`) and backups (`backup`). The write
//! path in `submit.rs` proposes through [`Durable::propose`] and reads through
//! [`Durable::read_barrier`]; everything about Raft stays behind them.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use worklease::{Applied, Error, LeaseTable, Stamped, Timestamp};

use crate::clock::Clock;
use crate::request::Asked;

mod admission;
mod background;
mod backup;
mod bootstrap;
mod codec;
mod dir_lock;
mod fingerprint;
mod log_store;
mod membership;
mod network;
mod open_error;
mod payload;
mod read_rounds;
mod removal;
mod replica;
mod rpc;
mod state_machine;
#[cfg(test)]
mod suite_tests;
mod thread;
mod waiters;
mod wal;

pub(crate) use admission::{ADMISSION_ROUTE, SEED_ROUTE};
pub(crate) use backup::{restore_into, Backup};
pub(crate) use bootstrap::{open, Options, SOLE_NODE};
pub(crate) use codec::CodecError;
pub(crate) use membership::{Members, Refusal};
pub(crate) use network::{
    Links, APPEND_ROUTE, CONFIG_HEADER, SNAPSHOT_ROUTE, TABLE_TIME_HEADER, VOTE_ROUTE,
};
pub(crate) use rpc::{
    decode_append, decode_install, decode_vote_request, encode_append_response, encode_fatal,
    encode_install_response, encode_vote_response, RAFT_ERROR_HEADER,
};
#[cfg(test)]
pub(crate) use {
    bootstrap::SNAPSHOT_FILE,
    fingerprint::header as config_fingerprint,
    rpc::{encode_append, encode_install},
    state_machine::snapshot_file_index,
};

/// Member ids (`--node-id`; a durable server is node 1).
pub(crate) type NodeId = u64;

/// A log entry's commands: every command proposed while the previous entry was being
/// written (group commit), in the order they were stamped, and the origin ids of those a
/// follower forwarded (`crate::origin`). Shared, because openraft clones entries on their way
/// from the log to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal(pub(crate) Arc<[Stamped]>, pub(crate) Arc<[Origin]>);

/// The origin id of the command at `index` in its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) index: u32,
    pub(crate) id: u128,
}

/// The answers of the latest applied commands that carried an origin id, and what each
/// asked, so a replayed forward is answered as the first attempt was (`crate::origin`) when it
/// repeats that request, and refused when it does not. Every replica keeps its own (it applies
/// the same log), and snapshots carry it beside the table, so a member restored from one
/// answers a replay of a change the snapshot covers as it was first answered.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// The records by origin id, and the ids in the order they were recorded.
    records: Mutex<(HashMap<u128, Record>, VecDeque<u128>)>,
}

/// One command's answer.
pub(crate) type CommandAnswer = Result<Applied, Error>;

/// What a command with an origin id asked, and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// `None` for a record restored from a snapshot written before records kept it.
    pub(crate) asked: Option<Asked>,
    pub(crate) answer: CommandAnswer,
}

impl Record {
    /// `command`'s record, answered `answer`.
    pub(crate) fn of(command: &Stamped, answer: &CommandAnswer) -> Self {
        Self {
            asked: Some(Asked::of(&command.command)),
            answer: answer.clone(),
        }
    }
}

impl Recorded {
    /// How many answers are kept: far more than the requests in flight during an election.
    const KEEP: usize = 65_536;

    pub(crate) fn record(&self, id: u128, record: Record) {
        let mut guard = self.records.lock();
        let (records, order) = &mut *guard;
        if records.insert(id, record).is_none() {
            order.push_back(id);
        }
        while order.len() > Self::KEEP {
            if let Some(oldest) = order.pop_front() {
                records.remove(&oldest);
            }
        }
    }

    pub(crate) fn get(&self, id: u128) -> Option<Record> {
        self.records.lock().0.get(&id).cloned()
    }

    /// Every record kept, oldest first (what a snapshot holds).
    pub(crate) fn entries(&self) -> Vec<(u128, Record)> {
        let guard = self.records.lock();
        let (records, order) = &*guard;
        order
            .iter()
            .filter_map(|id| Some((*id, records.get(id)?.clone())))
            .collect()
    }

    /// Forgets every record and keeps `entries` instead, oldest first (a restored snapshot's).
    pub(crate) fn replace(&self, entries: Vec<(u128, Record)>) {
        *self.records.lock() = Default::default();
        for (id, record) in entries {
            self.record(id, record);
        }
    }
}

/// What applying a log entry answered: the table's answer to each of its commands; `None` for
/// Raft's own entries (blank, membership), and for entries whose answers the state machine
/// already sent to the requests waiting for them (`waiters`).
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
    /// `fdatasync` calls this node made on its write-ahead log since it started: one per frame
    /// written (a batch of entries, a vote, a truncation or a purge). Not counted: syncs of
    /// snapshot files, of new log segments and of the data directory. 0 in memory.
    pub(crate) log_syncs: u64,
    /// Rounds of leadership confirmation this node ran for reads since it started
    /// (`read_rounds`: concurrent reads share one). 0 in memory and in a one-member cluster.
    pub(crate) read_rounds: u64,
}

/// Why a request cannot be answered now: no leader, or this node lost its leadership, or the
/// command was not committed in time (its outcome is then unknown). Answered with 503 and
/// `Retry-After`, which the official SDK retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable(pub(crate) String);

/// A command's answer once its entry is applied, or why there is none.
pub(crate) type Answered = Result<Result<Applied, Error>, Unavailable>;

/// A command waiting for its batch, its origin id, and where its answer goes.
type Waiting = (Stamped, Option<u128>, oneshot::Sender<Answered>);

/// How long a proposer waits for its command to commit before answering 503: long enough for
/// an election and a slow disk, short enough that a client cut off with a deposed leader hears
/// back (and retries elsewhere).
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// The pause between a leader's attempts to confirm its leadership for reads
/// ([`confirm_leadership`]): an attempt a member did not answer in time (openraft gives it
/// one heartbeat interval) is tried again after it, until [`COMMIT_WAIT`].
const READ_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One confirmation round of a leader ([`read_rounds`]): `Ok` once a majority confirmed that
/// this node leads and it has applied everything committed when the round began.
///
/// openraft's confirmation sends one empty append to each voter, each given one heartbeat
/// interval (50 ms): a majority slow to answer (a busy machine, a member catching up) fails it
/// although this node still leads. Such an attempt is tried again after [`READ_RETRY_PAUSE`],
/// as a write waits for its commit, up to [`COMMIT_WAIT`]; a node that learns of a newer
/// leader stops at once. Each attempt starts after the round did, so any of them confirms
/// the round's reads.
async fn confirm_leadership(raft: openraft::Raft<TypeConfig>) -> Result<(), Unavailable> {
    let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
    let unconfirmed = || {
        Unavailable(format!(
            "cannot confirm leadership within {} s",
            COMMIT_WAIT.as_secs()
        ))
    };
    loop {
        match tokio::time::timeout_at(deadline, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                if tokio::time::Instant::now() + READ_RETRY_PAUSE >= deadline {
                    return Err(unconfirmed());
                }
                tokio::time::sleep(READ_RETRY_PAUSE).await;
            }
            Ok(Err(error)) => {
                return Err(Unavailable(format!("cannot confirm leadership: {error}")))
            }
            Err(_) => return Err(unconfirmed()),
        }
    }
}

/// Where requests should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leader {
    /// This node leads.
    Me,
    /// Another member leads, at this address.
    At(NodeId, String),
}

/// The most commands one log entry holds.
const MAX_BATCH: usize = 1024;

/// The most commands waiting for the proposer: four full entries behind those in flight. The
/// durable server commits 20–40k commands a second (docs/performance.md), so a full queue is
/// 0.1–0.2 s of work, far inside [`COMMIT_WAIT`]; a longer one would only hold commands whose
/// callers are likely to give up before they commit (and which would still commit later).
/// Past it a request is answered 503 with `Retry-After` at once, and memory stays bounded.
const QUEUE_BOUND: usize = 4 * MAX_BATCH;

/// The commands waiting for the proposer task, in stamp order, at most a bound of them.
#[derive(Debug)]
struct Proposals(Mutex<mpsc::Sender<Waiting>>);

impl Proposals {
    fn new(bound: usize) -> (Self, mpsc::Receiver<Waiting>) {
        let (queue, waiting) = mpsc::channel(bound);
        (Self(Mutex::new(queue)), waiting)
    }

    /// Builds a command and queues it, or refuses at once when the queue is full. The lock is
    /// held while the command is built (stamped, ids minted) and queued, so the log holds
    /// commands in the order they were stamped; nothing is built for a refused one.
    fn push<T>(
        &self,
        origin: Option<u128>,
        answer: oneshot::Sender<Answered>,
        build: impl FnOnce() -> (Stamped, T),
    ) -> Result<T, Unavailable> {
        let queue = self.0.lock();
        let slot = match queue.try_reserve() {
            Ok(slot) => slot,
            Err(mpsc::error::TrySendError::Full(())) => {
                return Err(Unavailable(
                    "too many commands are waiting to be committed; retry shortly".to_owned(),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(Unavailable("the server is shutting down".to_owned()))
            }
        };
        let (stamped, extra) = build();
        slot.send((stamped, origin, answer));
        Ok(extra)
    }
}

/// A running durable node: its Raft handle, the table its state machine applies to, and the
/// queue of commands waiting to be proposed.
pub(crate) struct Durable {
    raft: openraft::Raft<TypeConfig>,
    node_id: NodeId,
    table: Arc<Mutex<LeaseTable>>,
    /// Commands in stamp order, for the proposer task (stamps and minted ids increase along
    /// the log), at most [`QUEUE_BOUND`].
    queue: Proposals,
    proposer: tokio::task::JoinHandle<()>,
    /// Asks Raft for a snapshot when the state machine says one is due.
    snapshots: tokio::task::JoinHandle<()>,
    writer: Arc<log_store::WriterStats>,
    links: Arc<Links>,
    clock: Arc<Clock>,
    /// More than one member: reads confirm leadership first, in rounds they share.
    replicated: bool,
    reads: read_rounds::ReadRounds,
    /// Answers of applied commands that carried an origin id.
    recorded: Arc<Recorded>,
    /// Where Raft's tasks and the proposer run (`None` only while [`open`] starts them there);
    /// stopped when this is dropped.
    thread: Option<thread::RaftThread>,
    /// Shut while this member's data directory is new and it was not let in yet
    /// (`admission`): Raft's messages to it are refused meanwhile.
    gate: Arc<admission::Gate>,
    /// `--peers`, as given (a new cluster's seed).
    peers: std::collections::BTreeMap<NodeId, String>,
    /// Held through a membership change: one at a time (`membership`).
    changing: Arc<tokio::sync::Mutex<()>>,
    /// A replicated member's task that promotes learners once they caught up (`membership`).
    promoter: Option<tokio::task::JoinHandle<()>>,
    /// The table was restored from a backup (`backup`) and no snapshot holds it yet: a new
    /// member must get it from a snapshot, not from the log.
    restored: bool,
    /// The data directory's lock (`None` only while [`open`] starts the node), released
    /// last.
    dir_lock: Option<dir_lock::DirLock>,
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
        machine: state_machine::Handles,
        writer: Arc<log_store::WriterStats>,
        links: Arc<Links>,
        clock: Arc<Clock>,
        replicated: bool,
    ) -> Self {
        let state_machine::Handles {
            table,
            recorded,
            waiters,
            snapshot_due,
        } = machine;
        let snapshots = tokio::spawn(ask_for_snapshots(raft.clone(), snapshot_due));
        let (queue, waiting) = Proposals::new(QUEUE_BOUND);
        let in_flight = if replicated {
            IN_FLIGHT_REPLICATED
        } else {
            IN_FLIGHT_SOLE
        };
        // One member: an entry on disk is committed, so the next can go to the log while this
        // one is applied and answered.
        let flushed = (!replicated).then(|| writer.flushed_proposals.subscribe());
        let proposer = tokio::spawn(propose_batches(
            raft.clone(),
            waiting,
            in_flight,
            flushed,
            waiters,
        ));
        Self {
            reads: read_rounds::ReadRounds::new(
                {
                    let raft = raft.clone();
                    Arc::new(move || Box::pin(confirm_leadership(raft.clone())))
                },
                COMMIT_WAIT,
            ),
            raft,
            node_id,
            table,
            queue,
            proposer,
            snapshots,
            writer,
            links,
            clock,
            replicated,
            recorded,
            thread: None,
            gate: Arc::new(admission::Gate::new(true)),
            peers: std::collections::BTreeMap::new(),
            changing: Arc::default(),
            promoter: None,
            restored: false,
            dir_lock: None,
        }
    }

    /// What a command with origin id `id` asked and was answered, if this replica applied one.
    pub(crate) fn recorded(&self, id: u128) -> Option<Record> {
        self.recorded.get(id)
    }

    /// The Raft handle, for the internal RPC routes.
    pub(crate) fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
    }

    /// This node's connections to the others.
    pub(crate) fn links(&self) -> &Arc<Links> {
        &self.links
    }

    /// This member's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// More than one member.
    pub(crate) fn is_replicated(&self) -> bool {
        self.replicated
    }

    /// The table the state machine applies to, for reads.
    pub(crate) fn table(&self) -> &Arc<Mutex<LeaseTable>> {
        &self.table
    }

    /// Stamps a command (in log order: `build` gets the leader's stamp, docs/contract.md §8 "Time", and
    /// returns the command and anything it wants back) and proposes it; answers once it is
    /// committed (fsynced on a majority) and applied, with the table's answer.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when this node does not lead, loses its leadership before the command
    /// commits, or the command does not commit within [`COMMIT_WAIT`] (then it may still
    /// commit: the client's rule for an ambiguous outcome is in docs/api.md); at once, with
    /// nothing proposed, when [`QUEUE_BOUND`] commands are already waiting.
    ///
    /// A node that cannot write its log any more cannot answer anything truthfully: it logs
    /// why and exits, and a restart recovers from what is on disk.
    pub(crate) async fn propose<T>(
        &self,
        origin: Option<u128>,
        build: impl FnOnce(Timestamp) -> (Stamped, T),
    ) -> Result<(Result<Applied, Error>, T), Unavailable> {
        let (answer, wait) = oneshot::channel();
        let extra = self.queue.push(origin, answer, || {
            let term = self.raft.metrics().borrow().current_term;
            build(self.clock.stamp(term))
        })?;
        match tokio::time::timeout(COMMIT_WAIT, wait).await {
            Ok(Ok(answered)) => answered.map(|result| (result, extra)),
            // The proposer stops only at shutdown: the command may still be committed.
            Ok(Err(_)) => Err(Unavailable(
                "the server is shutting down (the command's outcome is unknown; retry it)"
                    .to_owned(),
            )),
            Err(_) => Err(Unavailable(format!(
                "the command was not committed within {} s (its outcome is unknown; retry it)",
                COMMIT_WAIT.as_secs()
            ))),
        }
    }

    /// Returns once a read of the local table is linearizable (docs/contract.md §8 "Reads"): at once in
    /// a one-member cluster, where every answered write is applied; else once a confirmation
    /// round that began after this call ([`read_rounds`], shared by the reads that wait
    /// together) has confirmed with a majority that this node still leads, and this node has
    /// applied everything committed when the round began.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when this node does not lead, or cannot confirm it within
    /// [`COMMIT_WAIT`].
    pub(crate) async fn read_barrier(&self) -> Result<(), Unavailable> {
        if !self.replicated {
            return Ok(());
        }
        self.reads.barrier().await.map(|_round| ())
    }

    /// The term this node leads, if it leads (as far as it knows).
    pub(crate) fn leading_term(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.state == ServerState::Leader).then_some(metrics.current_term)
    }

    /// Whether this node leads now (as far as it knows).
    pub(crate) fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader
    }

    /// The leader, waiting up to `wait` for one to be known.
    pub(crate) async fn leader(&self, wait: Duration) -> Option<Leader> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let now = metrics.borrow_and_update();
                if now.state == ServerState::Leader {
                    return Some(Leader::Me);
                }
                if let Some(leader) = now.current_leader.filter(|id| *id != self.node_id) {
                    let address = now
                        .membership_config
                        .nodes()
                        .find(|(id, _)| **id == leader)
                        .map(|(_, node)| node.addr.clone());
                    if let Some(address) = address {
                        return Some(Leader::At(leader, address));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Resolves when this node's role or term may have changed.
    pub(crate) async fn role_changed(&self) {
        let mut metrics = self.raft.metrics();
        let (state, term) = {
            let now = metrics.borrow_and_update();
            (now.state, now.current_term)
        };
        loop {
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
            let now = metrics.borrow_and_update();
            if now.state != state || now.current_term != term {
                return;
            }
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
            log_syncs: self.writer.commits.load(Ordering::Relaxed),
            read_rounds: self.reads.started(),
        }
    }

    /// Records the commit index a leader's append carried (`GET /readyz` waits until this
    /// member has applied up to it).
    pub(crate) fn heard_commit(&self, committed: Option<openraft::LogId<NodeId>>) {
        if let Some(committed) = committed {
            self.writer.heard_commit(committed.index);
        }
    }

    /// Records the table's time that the leader's append carried: this member's live view of
    /// the table's timeline (`crate::clock`), kept fresh by the leader's heartbeats without a
    /// log entry.
    pub(crate) fn heard_table_time(&self, at: Timestamp) {
        self.clock.observe(at);
    }

    /// Whether this member is ready to answer (`GET /readyz`): it knows a leader and has
    /// applied up to the commit index it last heard of. A one-member cluster is ready while
    /// it runs: it is its own leader and applied its log before serving.
    ///
    /// # Errors
    ///
    /// Why not, for a human.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if let Err(fatal) = &metrics.running_state {
            return Err(format!("the raft core stopped: {fatal}"));
        }
        if !self.replicated {
            return Ok(());
        }
        if metrics.current_leader.is_none() {
            return Err("no leader is known (an election is under way)".to_owned());
        }
        let applied = metrics.last_applied.map_or(0, |id| id.index + 1);
        let committed = self.writer.committed.load(Ordering::Relaxed);
        if applied < committed {
            return Err(format!(
                "catching up: applied {} of {} committed entries",
                applied, committed
            ));
        }
        Ok(())
    }

    /// Resolves, with why, when the Raft core or the log writer stops: this node cannot
    /// answer anything truthfully after that.
    pub(crate) async fn stopped(&self) -> String {
        let core = async {
            let mut metrics = self.raft.metrics();
            loop {
                if let Err(fatal) = &metrics.borrow_and_update().running_state {
                    return format!("the raft core stopped: {fatal}");
                }
                if metrics.changed().await.is_err() {
                    return "the raft core stopped".to_owned();
                }
            }
        };
        tokio::pin!(core);
        tokio::select! {
            why = &mut core => why,
            why = self.writer.writer_stopped() => {
                // The writer thread also ends when the core stops and drops the log store:
                // name the core then, the cause.
                tokio::time::timeout(Duration::from_millis(200), core)
                    .await
                    .unwrap_or_else(|_| why.to_owned())
            }
        }
    }

    /// Resolves, with why, once this member learns that the cluster removed it
    /// ([`removal`]); never in a one-member cluster.
    pub(crate) async fn removed(&self) -> String {
        if !self.replicated {
            return std::future::pending().await;
        }
        removal::watch(
            self.raft.clone(),
            &self.links,
            &self.gate,
            self.node_id,
            &self.peers,
        )
        .await
    }

    /// Stops proposing and stops Raft; every acknowledged write is already on disk.
    pub(crate) async fn shutdown(&self) {
        self.proposer.abort();
        self.snapshots.abort();
        if let Some(promoter) = &self.promoter {
            promoter.abort();
        }
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

/// How many log entries the proposer keeps in flight. One in a one-member cluster: more
/// (with `client_write_ff`: 2, 3 or 4 entries in flight, or the next entry as soon as the log
/// writer has started on the one before) measured slower on the 2-core bench machine in every
/// alternating round (medians: 2 in flight 14.6k/s, 3 once taken 17.6k and 14.8k/s, against
/// 21.0k and 21.6k/s for one in the same rounds; 4 in flight 4.8k against 9.8k/s under heavier
/// load), with 5–13 commands an entry against 14–18: the disk then syncs more, smaller
/// batches. Two in a replicated cluster, where an entry also waits for a follower's round trip
/// and fsync, which the second entry overlaps: heartbeats through a three-member cluster's
/// leader on loopback, 8 alternating pairs of 6 s wrk runs, median 16.6k/s against 15.3k/s
/// with one (2 won 6 pairs of 8).
///
/// A one-member cluster's slot is freed once its entry is on disk rather than once it is
/// applied (see [`propose_batches`]): 8 alternating 6 s rounds of the durable server, medians
/// 40.4k/s against 35.5k/s (it won all 8).
const IN_FLIGHT_SOLE: usize = 1;
const IN_FLIGHT_REPLICATED: usize = 2;

/// An entry's place among those in flight: freed when the entry is applied or, in a
/// one-member cluster, as soon as the log writer has it on disk, whichever comes first.
struct Slot(Mutex<Option<tokio::sync::OwnedSemaphorePermit>>);

impl Slot {
    fn free(&self) {
        drop(self.0.lock().take());
    }
}

/// The proposer: takes every command queued while it waits for a free slot, proposes them as
/// one entry (one fsync), and registers their answers with `waiters`, where the state machine
/// finds them when it applies the entry. An entry this node cannot commit is answered here.
///
/// With `flushed` (the count of command entries the log writer has on disk, one member only),
/// a slot is freed as soon as its entry is on disk: the next entry then overlaps openraft
/// committing, applying and answering this one, instead of the disk idling through those
/// hand-offs. Entries are counted from this start in proposal order, and every entry proposed
/// here is a command entry; should the counts ever disagree (an entry refused before it was
/// written), slots are still freed when their entries are applied.
async fn propose_batches(
    raft: openraft::Raft<TypeConfig>,
    mut waiting: mpsc::Receiver<Waiting>,
    in_flight: usize,
    mut flushed: Option<tokio::sync::watch::Receiver<u64>>,
    waiters: Arc<waiters::Waiters>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut proposed: u64 = 0;
    let mut not_on_disk: VecDeque<(u64, Arc<Slot>)> = VecDeque::new();
    loop {
        // A slot first, so commands keep gathering into the next batch while entries are out.
        let permit = loop {
            let Some(on_disk) = flushed.as_mut() else {
                match slots.clone().acquire_owned().await {
                    Ok(permit) => break permit,
                    Err(_) => return,
                }
            };
            let count = *on_disk.borrow_and_update();
            while not_on_disk
                .front()
                .is_some_and(|(number, _)| *number <= count)
            {
                if let Some((_, slot)) = not_on_disk.pop_front() {
                    slot.free();
                }
            }
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return,
                },
                changed = on_disk.changed() => if changed.is_err() {
                    // The log writer stopped: slots are freed when entries are applied.
                    flushed = None;
                },
            }
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut commands = Vec::with_capacity(batch.len());
        let mut origins = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for (index, (command, origin, answer)) in batch.into_iter().enumerate() {
            if let Some(id) = origin {
                let index = u32::try_from(index).expect("invariant: a batch is small");
                origins.push(Origin { index, id });
            }
            commands.push(command);
            answers.push(answer);
        }
        // Registered first: the entry may be applied before `client_write_ff` returns.
        let commands: Arc<[Stamped]> = commands.into();
        waiters.register(&commands, answers);
        // Entries enter the log in the order they are sent here; each entry's outcome comes
        // back on its own task, which frees its slot.
        let written = match raft
            .client_write_ff(Proposal(commands.clone(), origins.into()))
            .await
        {
            Ok(written) => written,
            Err(error) => fail(&error),
        };
        proposed += 1;
        let slot = Arc::new(Slot(Mutex::new(Some(permit))));
        if flushed.is_some() {
            not_on_disk.push_back((proposed, slot.clone()));
        }
        let waiters = waiters.clone();
        tokio::spawn(async move {
            match written.await {
                // The state machine answered (`Answer(None)`), or found no answers waiting
                // and returned the results: then they are answered here.
                Ok(Ok(response)) => {
                    if let (Answer(Some(results)), Some(answers)) =
                        (response.data, waiters.take(&commands))
                    {
                        waiters::answer(answers, results);
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    let why = Unavailable(format!(
                        "this node does not lead (the leader is {})",
                        forward
                            .leader_id
                            .map_or_else(|| "not known yet".to_owned(), |id| format!("node {id}"))
                    ));
                    for answer in waiters.take(&commands).unwrap_or_default() {
                        let _ = answer.send(Err(why.clone()));
                    }
                }
                Ok(Err(error)) => fail(&error),
                // Raft stopped (shutdown): dropped, the answers tell their requests so.
                Err(_) => drop(waiters.take(&commands)),
            }
            slot.free();
        });
    }
}

/// Asks Raft for a snapshot whenever the state machine says one is due (`--snapshot-every`
/// commands), at most every [`SNAPSHOT_PACE`]: one is due until it is taken, and asking while
/// one is being built does nothing.
async fn ask_for_snapshots(raft: openraft::Raft<TypeConfig>, due: Arc<state_machine::SnapshotDue>) {
    loop {
        due.wait().await;
        if let Err(error) = raft.trigger().snapshot().await {
            tracing::debug!(%error, "no snapshot: raft stopped");
            return;
        }
        tokio::time::sleep(SNAPSHOT_PACE).await;
    }
}

/// How often a snapshot that is due is asked for, at most.
const SNAPSHOT_PACE: Duration = Duration::from_millis(100);

/// The log cannot take writes any more (its storage failed, or Raft stopped).
fn fail(error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "the log failed; stopping so that a restart recovers from disk");
    std::process::exit(70)
}

#[cfg(test)]
mod tests {
    use worklease::Command;

    use super::*;

    fn push(queue: &Proposals) -> Result<(), Unavailable> {
        let (answer, _wait) = oneshot::channel();
        queue.push(None, answer, || {
            let at = Timestamp::from_unix_micros(1_800_000_000_000_000);
            (Stamped::new(at, Command::Sweep), ())
        })
    }

    #[test]
    fn a_full_proposal_queue_refuses_at_once_and_holds_no_more() {
        let (queue, mut waiting) = Proposals::new(3);
        for _ in 0..3 {
            push(&queue).expect("room in the queue");
        }
        let mut built = false;
        let (answer, _wait) = oneshot::channel();
        let refused = queue.push(None, answer, || {
            built = true;
            (
                Stamped::new(Timestamp::from_unix_micros(0), Command::Sweep),
                (),
            )
        });
        assert!(refused.is_err_and(|Unavailable(why)| why.contains("too many commands")));
        assert!(
            !built,
            "a refused command is not stamped (no ids minted for it)"
        );
        for _ in 0..1000 {
            assert!(push(&queue).is_err());
        }
        assert_eq!(waiting.len(), 3, "the flood is not held");
        // The proposer takes one: room for one more.
        assert!(waiting.try_recv().is_ok());
        push(&queue).expect("room again");
        assert!(push(&queue).is_err());
        drop(waiting);
        let (answer, _wait) = oneshot::channel();
        let closed = queue.push(None, answer, || {
            (
                Stamped::new(Timestamp::from_unix_micros(0), Command::Sweep),
                (),
            )
        });
        assert!(closed.is_err_and(|Unavailable(why)| why.contains("shutting down")));
    }
}
