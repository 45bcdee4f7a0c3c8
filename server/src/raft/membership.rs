//! Membership changes, in the log (docs/contract.md §12): the members and their roles, adding
//! one (as a learner, promoted to voter once it has caught up) and removing one. A leader
//! makes one change at a time, and refuses one after which the members it can reach would
//! not be a majority of the new membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::Serialize;

use super::admission::{self, Role, Standing};
use super::{Durable, NodeId};

/// How long `POST /cluster/members` waits for the new member to catch up and become a voter.
pub(crate) const ADD_WAIT: Duration = Duration::from_secs(30);

/// One member, as `GET /cluster/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Member {
    pub(crate) node_id: NodeId,
    pub(crate) address: String,
    pub(crate) role: Role,
}

/// The membership, as the membership routes answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Members {
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) data: Vec<Member>,
}

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such member (404).
    Unknown(String),
    /// Not now, or not this change (409): another change is in progress, it would lose the
    /// majority, the id is taken at another address, this is no cluster.
    Conflict(String),
    /// Not made yet (503 with `Retry-After`): this node does not lead, or the new member has
    /// not caught up in time (the change stays in progress; the same request continues it).
    Unavailable(String),
}

impl Durable {
    /// The latest membership this member holds, and the leader it knows.
    pub(crate) fn members(&self) -> Members {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let data = membership
            .nodes()
            .map(|(id, node)| Member {
                node_id: *id,
                address: node.addr.clone(),
                role: if voters.contains(id) {
                    Role::Voter
                } else {
                    Role::Learner
                },
            })
            .collect();
        Members {
            leader_id: metrics.current_leader,
            data,
        }
    }

    /// What this member knows of `node` (a new member asks before it takes part:
    /// `super::admission`).
    pub(crate) fn standing_of(&self, node: NodeId) -> Standing {
        admission::standing(&self.raft, self.node_id, node)
    }

    /// The lowest id in `--peers` is about to initialize a new cluster with this member.
    ///
    /// # Errors
    ///
    /// Why this member does not join it.
    pub(crate) fn seeded_by(&self, from: NodeId) -> Result<(), String> {
        admission::seeded(&self.gate, &self.raft, &self.peers, from)
    }

    /// Whether this member takes part in the cluster (its data directory is not new, or it
    /// was let in: `super::admission`).
    pub(crate) fn admitted(&self) -> bool {
        self.gate.is_open()
    }

    /// Adds `node` at `address`: as a learner, then, once it has caught up with the log, as a
    /// voter. Answers the new membership once it is a voter; a member that is a voter at that
    /// address already is answered at once.
    ///
    /// # Errors
    ///
    /// [`Refusal`]: `Unavailable` when it has not caught up within [`ADD_WAIT`] (it stays a
    /// learner; the same request continues from there).
    pub(crate) async fn add_member(&self, node: NodeId, address: &str) -> Result<Members, Refusal> {
        let deadline = tokio::time::Instant::now() + ADD_WAIT;
        let _one_at_a_time = self.changing.lock().await;
        self.check_leads()?;
        let members = self.members();
        match members.data.iter().find(|m| m.node_id == node) {
            Some(member) if member.address != address => {
                return Err(Refusal::Conflict(format!(
                    "node {node} is a member at {}: remove it first to add it at another \
                     address",
                    member.address
                )))
            }
            Some(member) if member.role == Role::Voter => return Ok(members),
            Some(_) => {}
            None => {
                let voters: BTreeSet<NodeId> = voters(&members).collect();
                // The new member counts once it has caught up, which is waited for.
                self.check_majority(&voters, &voters, 1).await?;
                self.snapshot_a_restored_table(deadline).await?;
                self.raft
                    .add_learner(node, BasicNode::new(address), false)
                    .await
                    .map_err(refused)?;
                tracing::info!(
                    node,
                    address,
                    "added a learner; it catches up before it votes"
                );
            }
        }
        self.wait_caught_up(node, deadline).await?;
        let promoted = tokio::time::timeout_at(
            deadline,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false),
        )
        .await
        .map_err(|_| not_yet(node))?;
        promoted.map_err(refused)?;
        tracing::info!(node, address, "promoted to voter");
        Ok(self.members())
    }

    /// Removes `node` from the membership. A leader that removes itself leads until the
    /// change is committed, then steps down, and the others elect a leader among them.
    ///
    /// # Errors
    ///
    /// [`Refusal`]: `Unknown` when it is no member, `Conflict` when the members left that
    /// this leader can reach would not be a majority of them, or when none would be left.
    pub(crate) async fn remove_member(&self, node: NodeId) -> Result<Members, Refusal> {
        let _one_at_a_time = self.changing.lock().await;
        self.check_leads()?;
        let members = self.members();
        let Some(member) = members.data.iter().find(|m| m.node_id == node) else {
            return Err(Refusal::Unknown(format!("node {node} is not a member")));
        };
        let change = if member.role == Role::Voter {
            let now: BTreeSet<NodeId> = voters(&members).collect();
            let left: BTreeSet<NodeId> = now.iter().copied().filter(|id| *id != node).collect();
            if left.is_empty() {
                return Err(Refusal::Conflict(format!(
                    "node {node} is the only voter: a cluster keeps at least one"
                )));
            }
            self.check_majority(&now, &left, 0).await?;
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        tokio::time::timeout(ADD_WAIT, self.raft.change_membership(change, false))
            .await
            .map_err(|_| {
                Refusal::Unavailable(format!(
                    "removing node {node} was not committed within {} s; retry",
                    ADD_WAIT.as_secs()
                ))
            })?
            .map_err(refused)?;
        tracing::info!(node, "removed from the membership");
        Ok(self.members())
    }

    /// A table restored from a backup is in no log entry: before the first member is added,
    /// a snapshot holds it and the log behind it is purged, so the new member starts from
    /// that snapshot rather than replaying a log onto an empty table.
    async fn snapshot_a_restored_table(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(), Refusal> {
        if !self.restored {
            return Ok(());
        }
        let mut metrics = self.raft.metrics();
        while metrics.borrow_and_update().purged.is_none() {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| Refusal::Unavailable(format!("the raft core stopped: {e}")))?;
            let pace = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                _ = pace => {}
                _ = metrics.changed() => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::Unavailable(
                    "the restored table's first snapshot is not written yet; retry".to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn check_leads(&self) -> Result<(), Refusal> {
        if !self.replicated {
            return Err(Refusal::Conflict(
                "this server is not a cluster member: start it with --node-id and --peers to \
                 change its membership"
                    .to_owned(),
            ));
        }
        if self.leads() {
            Ok(())
        } else {
            Err(Refusal::Unavailable(
                "this node does not lead (a leader change is under way); retry".to_owned(),
            ))
        }
    }

    /// Refuses a change that could not commit or would leave no majority: the voters this
    /// leader can reach now (itself included) must be a majority of the voters `now`, as a
    /// change is committed by both the old and the new voters (openraft's joint consensus),
    /// and of those `after` it with `joining` members (counted as reachable).
    async fn check_majority(
        &self,
        now: &BTreeSet<NodeId>,
        after: &BTreeSet<NodeId>,
        joining: usize,
    ) -> Result<(), Refusal> {
        let nodes: BTreeMap<NodeId, String> = self
            .members()
            .data
            .into_iter()
            .map(|m| (m.node_id, m.address))
            .collect();
        let mut asked = tokio::task::JoinSet::new();
        for id in now.union(after).filter(|id| **id != self.node_id) {
            if let Some(address) = nodes.get(id).cloned() {
                let links = self.links.clone();
                let id = *id;
                asked.spawn(async move { (id, admission::answers(&links, &address, id).await) });
            }
        }
        let mut answering = BTreeSet::from([self.node_id]);
        while let Some(answered) = asked.join_next().await {
            if let Ok((id, true)) = answered {
                answering.insert(id);
            }
        }
        let reachable_now = now.intersection(&answering).count();
        let majority_now = now.len() / 2 + 1;
        if reachable_now < majority_now {
            return Err(Refusal::Conflict(format!(
                "refused: a change is committed by a majority of the current voters too, and \
                 of the cluster's {} voters this leader reaches {reachable_now}, fewer than a \
                 majority ({majority_now}); bring the missing members back first",
                now.len()
            )));
        }
        let reachable = after.intersection(&answering).count() + joining;
        let size = after.len() + joining;
        let majority = size / 2 + 1;
        if reachable < majority {
            return Err(Refusal::Conflict(format!(
                "refused: after this change the cluster would have {size} voters of which this \
                 leader reaches {reachable}, fewer than a majority ({majority}); bring the \
                 missing members back (or remove the dead ones) first"
            )));
        }
        Ok(())
    }

    /// Waits until the leader has replicated to `node` every entry it held when the wait
    /// began.
    async fn wait_caught_up(
        &self,
        node: NodeId,
        deadline: tokio::time::Instant,
    ) -> Result<(), Refusal> {
        let mut metrics = self.raft.metrics();
        let target = metrics.borrow().last_log_index;
        loop {
            {
                let now = metrics.borrow_and_update();
                let matched = now
                    .replication
                    .as_ref()
                    .and_then(|progress| progress.get(&node).copied().flatten())
                    .map(|id| id.index);
                if matched.is_some() && matched >= target {
                    return Ok(());
                }
                if now.replication.is_none() {
                    return Err(Refusal::Unavailable(
                        "this node lost its leadership; retry".to_owned(),
                    ));
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Refusal::Unavailable("the server is stopping".to_owned()))
                }
                Err(_) => return Err(not_yet(node)),
            }
        }
    }
}

/// How often the leader looks for learners that caught up.
const PROMOTE_EVERY: Duration = Duration::from_millis(500);
/// How far behind the leader's log a learner may be and still be promoted (entries in
/// flight).
const PROMOTE_SLACK: u64 = 8;

/// While this member leads, makes a voter of every learner that has caught up, one at a
/// time: a seed member that started late, or one whose `POST /cluster/members` answered 503
/// (the change stays in progress and completes here). A learner qualifies only once it
/// acknowledged an entry since the previous look, so a learner that stopped answering (a
/// member whose directory was wiped, refusing Raft's messages) is never promoted.
pub(crate) async fn promote_learners(
    raft: openraft::Raft<super::TypeConfig>,
    changing: std::sync::Arc<tokio::sync::Mutex<()>>,
) {
    let mut seen: BTreeMap<NodeId, u64> = BTreeMap::new();
    loop {
        tokio::time::sleep(PROMOTE_EVERY).await;
        let ready = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let Some(progress) = metrics.replication.as_ref() else {
                seen.clear();
                continue;
            };
            let last = metrics.last_log_index.unwrap_or(0);
            let mut ready = None;
            for learner in metrics.membership_config.membership().learner_ids() {
                let Some(matched) = progress.get(&learner).copied().flatten() else {
                    continue;
                };
                let advanced = seen.insert(learner, matched.index) != Some(matched.index);
                if advanced && matched.index + PROMOTE_SLACK >= last {
                    ready = Some(learner);
                }
            }
            ready
        };
        let Some(learner) = ready else { continue };
        let Ok(_one_at_a_time) = changing.try_lock() else {
            continue;
        };
        let promoted = tokio::time::timeout(
            ADD_WAIT,
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([learner])), false),
        )
        .await;
        match promoted {
            Ok(Ok(_)) => tracing::info!(node = learner, "promoted a learner that caught up"),
            Ok(Err(error)) => tracing::debug!(node = learner, %error, "not promoted"),
            Err(_) => tracing::warn!(node = learner, "promoting a learner did not commit in time"),
        }
    }
}

fn voters(members: &Members) -> impl Iterator<Item = NodeId> + '_ {
    members
        .data
        .iter()
        .filter(|m| m.role == Role::Voter)
        .map(|m| m.node_id)
}

fn not_yet(node: NodeId) -> Refusal {
    Refusal::Unavailable(format!(
        "node {node} has not caught up within {} s; it stays a learner and the change stays \
         in progress: send the same request again",
        ADD_WAIT.as_secs()
    ))
}

fn refused(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Refusal {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Refusal::Unavailable(
            "this node does not lead (a leader change is under way); retry".to_owned(),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            Refusal::Conflict(format!("the membership cannot change now: {error}"))
        }
        RaftError::Fatal(error) => Refusal::Unavailable(format!("the raft core stopped: {error}")),
    }
}
