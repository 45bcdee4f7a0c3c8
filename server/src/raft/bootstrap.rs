//! Opening a data directory: check and load what it holds, start Raft, initialize a new
//! cluster (a one-member one in durable mode; in replicated mode a new member waits to be let
//! in, `super::admission`, and the lowest id in `--peers` seeds the cluster), and, in a
//! one-member cluster, wait
//! until every logged command is applied before the server answers anything. A replicated
//! member serves at once: until a leader is known its requests wait (docs/contract.md §8).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use worklease::Config;

use super::admission::{self, Gate};
use super::dir_lock::DirLock;
use super::fingerprint;
use super::log_store::LogStore;
use super::network::{Links, Network};
use super::open_error::{Cause, OpenError};
use super::state_machine::StateMachine;
use super::thread::RaftThread;
use super::wal;
use super::{Durable, NodeId};
use crate::clock::Clock;
use crate::cluster_secret::ClusterSecret;

/// The snapshot's file in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.wls";
/// A durable server's node id (the only member).
pub(crate) const SOLE_NODE: NodeId = 1;
/// How often a replicated leader tells the others it is alive (ms), and the election timeout
/// (ms, a random pick in the range). openraft 0.9 makes a follower that heard from a leader
/// wait the leader's lease (the range's top) plus the timeout before it stands for election,
/// so a failover takes 450–600 ms plus one vote round and one commit.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_TIMEOUT_MS: (u64, u64) = (150, 300);
/// Snapshots up to this size go to a follower in one RPC.
const SNAPSHOT_CHUNK: u64 = 64 * 1024 * 1024;
/// How long replay and the first election may take before startup gives up.
const STARTUP_LIMIT: Duration = Duration::from_secs(300);

/// What durable mode needs from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    /// Build a snapshot (and purge the log behind it) every this many log entries.
    pub(crate) snapshot_every: u64,
    /// The size of each log segment file (`--log-segment-kib`).
    pub(crate) segment_bytes: u64,
    /// This member's address, recorded in the membership of a one-member cluster.
    pub(crate) address: SocketAddr,
    /// This member's id.
    pub(crate) node_id: NodeId,
    /// `--peers`: the members of a new replicated cluster and their addresses (`HOST:PORT`),
    /// or a new member and some of the current ones (empty: a durable server).
    pub(crate) peers: BTreeMap<NodeId, String>,
    /// What the members present to each other (`crate::cluster_secret`); `None` for a
    /// one-member cluster, which calls nobody.
    pub(crate) cluster_secret: Option<ClusterSecret>,
    /// With TLS on: what a member trusts when it calls another (over HTTPS).
    pub(crate) tls: Option<rustls::ClientConfig>,
}

/// Opens (or creates) the data directory and returns once the node leads and has applied
/// every command its log held.
///
/// # Errors
///
/// The file at fault when the directory cannot be used (damaged, foreign, or unreadable), or
/// the directory when another server holds it (`dir_lock`) or Raft does not start on it.
/// Nothing is served from a partial table.
pub(crate) async fn open(options: &Options, clock: Arc<Clock>) -> Result<Durable, OpenError> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|e| OpenError::at(dir, e))?;
    let lock = DirLock::take(dir)?;
    let thread = RaftThread::start().map_err(|e| OpenError::at(dir, Cause::Start(e)))?;
    let options = options.clone();
    let mut durable = thread
        .run(async move { open_on_this_thread(&options, clock).await })
        .await
        .map_err(|e| OpenError::at(dir, Cause::Start(e)))??;
    durable.thread = Some(thread);
    durable.dir_lock = Some(lock);
    Ok(durable)
}

/// [`open`], on the Raft thread: openraft spawns its tasks where it starts, and so does
/// [`Durable::start`].
async fn open_on_this_thread(options: &Options, clock: Arc<Clock>) -> Result<Durable, OpenError> {
    let started = Instant::now();
    let dir = &options.dir;
    let old_log = dir.join("raft.redb");
    if old_log.exists() {
        return Err(OpenError::at(
            &old_log,
            "a log in the format of an earlier build (redb); this build keeps its log in \
             raft-*.wal segments and cannot read it",
        ));
    }
    // The log's first segment names the log in messages (`wal`).
    let segments = wal::segments_in(dir).map_err(|e| OpenError::at(dir, e))?;
    let log_exists = !segments.is_empty();
    let log_path = wal::segment_path(dir, segments.first().copied().unwrap_or(1));
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    if log_exists && !snapshot_path.exists() {
        return Err(OpenError::at(
            &snapshot_path,
            format!(
                "missing, but {} exists: the directory is damaged",
                log_path.display()
            ),
        ));
    }
    if !log_exists && snapshot_path.exists() {
        // A directory is made snapshot first, log second: a snapshot alone is either that
        // first empty snapshot (a crash in between) or a directory that lost its log.
        let (_, restored) = StateMachine::open(&snapshot_path, options.config, clock.clone())?;
        if restored.index.is_some() {
            return Err(OpenError::at(
                &log_path,
                format!(
                    "missing, but {} covers a log that existed",
                    snapshot_path.display()
                ),
            ));
        }
    }
    let (machine, restored) = StateMachine::open(&snapshot_path, options.config, clock.clone())?;
    let machine = machine.snapshot_every(options.snapshot_every);
    let replicated = !options.peers.is_empty();
    // A restored table is in no log: members seeded beside it would start from empty tables
    // and replay a log that does not hold it.
    let from_backup = machine.holds_a_restored_table();
    if from_backup && options.peers.len() > 1 {
        return Err(OpenError::at(
            &snapshot_path,
            Cause::Refused(format!(
                "holds a restored backup, which starts a one-member cluster: give --peers only \
                 this member ({}=HOST:PORT), then add the others with POST /cluster/members",
                options.node_id
            )),
        ));
    }
    let (log, opened) = LogStore::open(dir, options.segment_bytes, !replicated)?;
    // What the directory holds says where the table's time had got to when this node stopped
    // (`crate::clock`). A one-member cluster leads alone, and no other clock kept time while it
    // was down: its stamps are only a floor, so the time it was down counts. A replicated
    // member takes them as seen now: the others most likely kept the cluster going meanwhile,
    // and a member restarted a moment ago may win the next election before it applies a live
    // entry; it must not then stamp by its own clock.
    let machine = if replicated {
        let latest = [machine.table_clock(), log.latest_stamp()]
            .into_iter()
            .flatten()
            .max();
        if let Some(latest) = latest {
            clock.observe(latest);
        }
        machine
    } else {
        machine.replaying_up_to(opened.last_index)
    };
    if let (Some(snapshot), last) = (restored.index, opened.last_index) {
        if last.is_none_or(|last| last < snapshot) {
            return Err(OpenError::at(
                &log_path,
                format!(
                    "ends before the snapshot in {} (index {snapshot})",
                    snapshot_path.display()
                ),
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
    let handles = machine.handles();
    let table = handles.table.clone();
    let writer = log.stats();
    let config = openraft::Config {
        cluster_name: "worklease".to_owned(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.0,
        election_timeout_max: ELECTION_TIMEOUT_MS.1,
        // Every member snapshots on its own, so a follower's log stays short too. The state
        // machine asks for one every `snapshot_every` commands (`Durable::start`); this policy
        // in entries (never more than commands) is only a backstop.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| OpenError::at(dir, Cause::Start(format!("raft configuration: {e}"))))?,
    );
    // Members must apply commands under the same table configuration, or their tables drift
    // apart: each RPC carries the sender's fingerprint, and a member refuses RPCs from a
    // different one (`fingerprint`, `crate::http::internal`).
    let config_tag = fingerprint::header(table.lock().config());
    let links = Links::new(options.cluster_secret.clone(), config_tag, clock.clone());
    let links = Arc::new(match &options.tls {
        Some(tls) => links.over_tls(tls.clone()),
        None => links,
    });
    let node_id = options.node_id;
    let not_started = |e: &dyn std::fmt::Display| {
        OpenError::at(dir, Cause::Start(format!("raft did not start: {e}")))
    };
    let raft = openraft::Raft::new(node_id, config, Network(links.clone()), log, machine)
        .await
        .map_err(|e| not_started(&e))?;
    let initialized = raft.is_initialized().await.map_err(|e| not_started(&e))?;
    if !replicated {
        if !initialized {
            let members = BTreeMap::from([(node_id, BasicNode::new(options.address))]);
            raft.initialize(members).await.map_err(|e| {
                OpenError::at(
                    dir,
                    Cause::Start(format!("cannot initialize the cluster: {e}")),
                )
            })?;
        }
    } else {
        // A member whose directory is new takes no part until it is let in (`admission`):
        // the lowest id in `--peers` seeds a new cluster once every other member listed says
        // it belongs to none; any other waits until the cluster adds it.
        let gate = Arc::new(Gate::new(initialized));
        let seeds = options.peers.keys().next() == Some(&node_id);
        if !initialized {
            let (raft, gate, links, peers) = (
                raft.clone(),
                gate.clone(),
                links.clone(),
                options.peers.clone(),
            );
            tokio::spawn(async move {
                if seeds {
                    admission::seed(raft, gate, links, node_id, peers).await;
                } else {
                    admission::join(gate, links, node_id, peers).await;
                }
            });
        }
        tracing::info!(
            node_id,
            initialized,
            took_ms = started.elapsed().as_millis() as u64,
            "member started; requests wait for a leader"
        );
        let changing: Arc<tokio::sync::Mutex<()>> = Arc::default();
        let promoter = tokio::spawn(super::membership::promote_learners(
            raft.clone(),
            changing.clone(),
        ));
        let mut durable = Durable::start(raft, node_id, handles, writer, links, clock, true);
        durable.gate = gate;
        durable.changing = changing;
        durable.promoter = Some(promoter);
        durable.peers = options.peers.clone();
        durable.restored = from_backup;
        return Ok(durable);
    }
    let target = opened.last_index;
    let mut metrics = raft.metrics();
    loop {
        {
            let now = metrics.borrow();
            if let Err(fatal) = &now.running_state {
                return Err(OpenError::at(&log_path, Cause::Start(fatal.to_string())));
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
            Ok(Err(_)) => {
                return Err(OpenError::at(
                    dir,
                    Cause::Start("raft stopped during startup".to_owned()),
                ))
            }
            Err(_) => {
                return Err(OpenError::at(
                    dir,
                    Cause::Start(format!(
                        "not recovered within {} s",
                        STARTUP_LIMIT.as_secs()
                    )),
                ))
            }
        }
    }
    Ok(Durable::start(
        raft, node_id, handles, writer, links, clock, false,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership,
        Vote,
    };
    use worklease::{
        Command, EnvironmentId, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata,
        PollRequest, Precondition, Stamped, Timestamp, Ttl, WorkId,
    };

    use super::*;
    use crate::raft::{log_store, state_machine, Proposal, TypeConfig};

    /// How long a restart takes with a million leases in the snapshot and the longest log tail
    /// the default `--snapshot-every` leaves (100 000 heartbeats) to replay. A measurement, run
    /// by hand (docs/performance.md):
    /// `cargo test --release -p worklease-server -- --ignored --nocapture recovery_of`.
    #[test]
    #[ignore = "a measurement, run by hand in release mode"]
    fn recovery_of_a_million_leases() {
        const LEASES: u64 = 1_000_000;
        const TAIL: u64 = 100_000;
        let dir = std::env::temp_dir().join(format!("worklease-recovery-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");

        let t0 = Timestamp::from(chrono::Utc::now());
        let mut config = Config::default();
        config.default_ttl = Ttl::from_seconds(600).expect("a ttl");
        config.ack_ttl = config.default_ttl;
        let mut table = LeaseTable::new(config);
        let environment = EnvironmentId::mint(t0, 0, 1);
        table
            .register_environment(environment.clone(), EnvironmentKind::SelfHosted)
            .expect("registers");
        let mut ids = Vec::new();
        for n in 0..LEASES {
            let id = WorkId::mint(t0, n + 1, 7);
            let session = format!("sess_{n}").parse().expect("a session id");
            table
                .create_work(&environment, id.clone(), session, Metadata::new(), t0)
                .expect("creates");
            ids.push(id.to_string());
        }
        for id in &ids {
            table
                .poll(&environment, &PollRequest::default(), t0)
                .expect("polls");
            table
                .ack(&environment, id.as_str(), None, t0)
                .expect("acks");
        }
        let leader = CommittedLeaderId::new(1, SOLE_NODE);
        let members = Membership::new(
            vec![BTreeSet::from([SOLE_NODE])],
            BTreeMap::from([(SOLE_NODE, BasicNode::new("127.0.0.1:0"))]),
        );
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(leader, 1)),
            last_membership: StoredMembership::new(Some(LogId::new(leader, 0)), members),
            snapshot_id: "measurement".to_owned(),
        };
        let bytes = table.snapshot();
        state_machine::write_snapshot(&dir.join(SNAPSHOT_FILE), &meta, &bytes)
            .expect("writes the snapshot");
        let tail: Vec<Entry<TypeConfig>> = (0..TAIL)
            .map(|n| Entry {
                log_id: LogId::new(leader, n + 2),
                payload: EntryPayload::Normal(Proposal(
                    Arc::from(vec![Stamped::new(
                        Timestamp::from_unix_micros(t0.unix_micros() + n as i64),
                        Command::Heartbeat {
                            environment: environment.to_string().into(),
                            work: ids[(n * 7919 % LEASES) as usize].as_str().into(),
                            request: HeartbeatRequest {
                                precondition: Precondition::Unconditional,
                                desired_ttl_seconds: None,
                            },
                        },
                    )]),
                    Arc::from([]),
                )),
            })
            .collect();
        log_store::write_for_test(
            &dir,
            &Vote::new_committed(1, SOLE_NODE),
            meta.last_log_id,
            &tail,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let options = Options {
            dir: dir.clone(),
            config,
            snapshot_every: 10_000_000,
            segment_bytes: super::wal::SEGMENT_BYTES,
            address: "127.0.0.1:0".parse().expect("an address"),
            node_id: SOLE_NODE,
            peers: BTreeMap::new(),
            cluster_secret: None,
            tls: None,
        };
        let started = Instant::now();
        let durable = runtime
            .block_on(open(&options, Arc::new(Clock::new())))
            .expect("recovers");
        let took = started.elapsed();
        let stats = durable
            .table()
            .lock()
            .stats(&environment, t0)
            .expect("stats");
        println!(
            "recovered {LEASES} leases (snapshot of {} bytes) and replayed {TAIL} heartbeats \
             in {:.2} s; stats: {stats:?}",
            bytes.len(),
            took.as_secs_f64()
        );
        assert_eq!(durable.status().last_applied_index, TAIL + 1);
        runtime.block_on(durable.shutdown());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
