//! Who may take part in the cluster with a new data directory (docs/contract.md §12).
//!
//! A member that forgot its log also forgot the votes it gave: were it let back under its
//! id, it could vote twice in one term and let two leaders be elected, and a leader that had
//! seen its log would find the log gone back. So a member whose data directory is new (no
//! log, no vote) keeps a [`Gate`] shut: Raft's messages to it are refused, it stands for no
//! election and votes in none, until one of two things lets it in:
//!
//! - **Seeding**: the member with the lowest id in `--peers`, itself new, asks every other
//!   member listed whether it belongs to an initialized cluster ([`ADMISSION_ROUTE`]). When
//!   none does and every one answered (or a majority did within [`SEED_GRACE`]), it tells
//!   each that answered to open its gate ([`SEED_ROUTE`]) and then initializes the cluster
//!   with them as voters; those that did not answer are added as learners once it leads
//!   (they are let in as added members when they start, and vote once caught up). When one
//!   does, it initializes nothing and waits like any other new member.
//! - **Being added**: every other new member asks the members it knows whether its id is in
//!   the cluster's membership. It opens its gate once the leader answers that the id is a
//!   learner that has acknowledged nothing yet: `POST /cluster/members` added it. An id the
//!   cluster knows as a voter (or as a learner the leader already replicated to) is a member
//!   whose directory was wiped: it is refused, with a message saying how to remove and add it
//!   again, and keeps asking, so it is let in once that is done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, Vote};
use serde::{Deserialize, Serialize};

use super::network::Links;
use super::{NodeId, TypeConfig};

/// `GET ?node_id=N`: what this member knows of node N ([`Standing`]).
pub(crate) const ADMISSION_ROUTE: &str = "/internal/raft/admission";
/// `POST ?from=N`: the lowest id in `--peers` is about to initialize a new cluster.
pub(crate) const SEED_ROUTE: &str = "/internal/raft/seed";

/// How long a member waits for another's answer to an admission question.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a new member asks again.
const ASK_EVERY: Duration = Duration::from_millis(300);
/// How long the seeding member waits for every member listed to answer before a majority of
/// them is enough.
const SEED_GRACE: Duration = Duration::from_secs(5);
/// How long the seeding member waits to lead before it adds the members that did not answer.
const SEED_LEARNERS_WAIT: Duration = Duration::from_secs(30);
/// How often the same reason for waiting is logged again.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether this member takes part in the cluster: open unless its data directory is new and
/// it has not been let in yet.
#[derive(Debug)]
pub(crate) struct Gate {
    open: AtomicBool,
}

impl Gate {
    pub(crate) fn new(open: bool) -> Self {
        Self {
            open: AtomicBool::new(open),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn open(&self) {
        self.open.store(true, Ordering::Release);
    }
}

/// A node's place in a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Voter,
    Learner,
}

/// What a member knows of a node, as [`ADMISSION_ROUTE`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Standing {
    /// The answering member holds a log or a vote: it belongs to an initialized cluster.
    pub(crate) initialized: bool,
    /// The answering member leads.
    pub(crate) leads: bool,
    /// The leader the answering member knows, and its address.
    pub(crate) leader: Option<(NodeId, String)>,
    /// The node's place in the latest membership the answering member holds.
    pub(crate) role: Option<Role>,
    /// From a leader: whether the node acknowledged anything this leader replicated.
    pub(crate) replicated: Option<bool>,
}

/// What this member's Raft state says of `node` ([`ADMISSION_ROUTE`]'s answer).
pub(crate) fn standing(raft: &openraft::Raft<TypeConfig>, me: NodeId, node: NodeId) -> Standing {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let role = if membership.voter_ids().any(|id| id == node) {
        Some(Role::Voter)
    } else if membership.learner_ids().any(|id| id == node) {
        Some(Role::Learner)
    } else {
        None
    };
    let leader = metrics.current_leader.and_then(|leader| {
        let address = membership.get_node(&leader)?.addr.clone();
        Some((leader, address))
    });
    Standing {
        initialized: metrics.last_log_index.is_some() || metrics.vote != Vote::default(),
        leads: metrics.current_leader == Some(me) && metrics.replication.is_some(),
        leader,
        role,
        replicated: metrics
            .replication
            .as_ref()
            .map(|progress| progress.get(&node).is_some_and(Option::is_some)),
    }
}

/// Whether a seeding member may open `gate` ([`SEED_ROUTE`]): it is the lowest id in this
/// member's `--peers`, and this member is still new.
pub(crate) fn seeded(
    gate: &Gate,
    raft: &openraft::Raft<TypeConfig>,
    peers: &BTreeMap<NodeId, String>,
    from: NodeId,
) -> Result<(), String> {
    if gate.is_open() {
        return Ok(());
    }
    if peers.keys().next() != Some(&from) {
        return Err(format!(
            "node {from} is not the lowest id in this member's --peers; it seeds nothing here"
        ));
    }
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    if metrics.last_log_index.is_some() || metrics.vote != Vote::default() {
        return Err("this member already belongs to a cluster".to_owned());
    }
    drop(metrics);
    gate.open();
    tracing::info!(
        seeder = from,
        "joining the new cluster node {from} initializes"
    );
    Ok(())
}

/// Asks the member at `address` (member `peer`, when known) what it knows of `node`; a
/// refusal of our cluster secret is logged, naming the peer.
pub(super) async fn ask(
    links: &Links,
    address: &str,
    peer: Option<NodeId>,
    node: NodeId,
) -> Option<Standing> {
    let route = format!("{ADMISSION_ROUTE}?node_id={node}");
    let response = links
        .member_call(reqwest::Method::GET, address, &route)
        .timeout(ASK_TIMEOUT)
        .send()
        .await
        .map_err(|error| links.log_tls_failure_at(address, &error))
        .ok()?;
    let status = response.status();
    if !status.is_success() {
        if let (Some(peer), reqwest::StatusCode::UNAUTHORIZED) = (peer, status) {
            links.log_refused_secret(peer, status);
        }
        return None;
    }
    serde_json::from_slice(&response.bytes().await.ok()?).ok()
}

/// Whether the member at `address` answers at all (the leader counts the members it can
/// reach before a membership change).
pub(crate) async fn answers(links: &Links, address: &str, node: NodeId) -> bool {
    ask(links, address, Some(node), node).await.is_some()
}

/// Paces a repeated log line.
struct Paced(Option<(Instant, String)>);

impl Paced {
    fn due(&mut self, why: &str) -> bool {
        let due = self
            .0
            .as_ref()
            .is_none_or(|(at, said)| said != why || at.elapsed() >= LOG_EVERY);
        if due {
            self.0 = Some((Instant::now(), why.to_owned()));
        }
        due
    }
}

/// The lowest id in `--peers`, new: seeds a cluster of every member listed once each answers
/// that it belongs to none, then initializes it; or, when one already belongs to a cluster,
/// initializes nothing and waits to be added like any new member ([`join`]).
pub(crate) async fn seed(
    raft: openraft::Raft<TypeConfig>,
    gate: Arc<Gate>,
    links: Arc<Links>,
    me: NodeId,
    peers: BTreeMap<NodeId, String>,
) {
    let others: Vec<(NodeId, &String)> = peers
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, address)| (*id, address))
        .collect();
    let mut paced = Paced(None);
    let started = Instant::now();
    let silent = loop {
        let mut silent = Vec::new();
        let mut initialized = None;
        for (id, address) in &others {
            match ask(&links, address, Some(*id), me).await {
                Some(standing) if standing.initialized => initialized = Some(*id),
                Some(_) => {}
                None => silent.push(*id),
            }
        }
        if let Some(member) = initialized {
            tracing::warn!(
                member,
                "node {member} already belongs to an initialized cluster: initializing \
                 nothing; this member waits to be added"
            );
            return join(gate, links, me, peers).await;
        }
        // Every member listed, or after a grace period a majority of them (this one
        // included): a member that never answered is refused when it starts later, like any
        // member the cluster holds as a voter whose directory is new, and is removed and
        // added again.
        let waited = started.elapsed() >= SEED_GRACE;
        let answered = peers.len() - silent.len();
        if silent.is_empty() || (waited && answered > peers.len() / 2) {
            if !silent.is_empty() {
                tracing::warn!(
                    silent = ?silent,
                    "initializing a new cluster without the members that did not answer within \
                     {} s: each is added as a learner, and votes once it has started and caught up",
                    SEED_GRACE.as_secs()
                );
            }
            let mut told = true;
            for (id, address) in others.iter().filter(|(id, _)| !silent.contains(id)) {
                let route = format!("{SEED_ROUTE}?from={me}");
                let sent = links
                    .member_call(reqwest::Method::POST, address, &route)
                    .timeout(ASK_TIMEOUT)
                    .send()
                    .await;
                if !sent.is_ok_and(|response| response.status().is_success()) {
                    tracing::warn!(member = id, "node {id} did not agree to seed a new cluster");
                    told = false;
                }
            }
            if told {
                break silent;
            }
        } else if paced.due(&format!("{silent:?}")) {
            tracing::info!(
                silent = ?silent,
                "waiting for every member in --peers to answer before initializing a new cluster"
            );
        }
        tokio::time::sleep(ASK_EVERY).await;
    };
    let voters: BTreeMap<NodeId, BasicNode> = peers
        .iter()
        .filter(|(id, _)| !silent.contains(id))
        .map(|(id, address)| (*id, BasicNode::new(address)))
        .collect();
    gate.open();
    tracing::info!(node_id = me, members = ?voters.keys().collect::<Vec<_>>(), "initializing a new cluster");
    if let Err(error) = raft.initialize(voters).await {
        tracing::error!(%error, "cannot initialize the cluster");
        return;
    }
    if silent.is_empty() {
        return;
    }
    // The members that did not answer join as learners, once this member leads: a learner
    // takes no part in elections, and `super::membership::promote_learners` makes each a
    // voter once it has caught up.
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + SEED_LEARNERS_WAIT;
    while metrics.borrow_and_update().state != openraft::ServerState::Leader {
        if tokio::time::timeout_at(deadline, metrics.changed())
            .await
            .is_err()
        {
            tracing::warn!(
                silent = ?silent,
                "this member did not lead in time to add the members that did not answer: \
                 add each with POST /cluster/members"
            );
            return;
        }
    }
    for id in silent {
        let Some(address) = peers.get(&id) else {
            continue;
        };
        // Refused while the initial membership is not committed yet: tried again.
        loop {
            match raft.add_learner(id, BasicNode::new(address), false).await {
                Ok(_) => {
                    tracing::info!(
                        node = id,
                        "added a seed member that did not answer, as a learner"
                    );
                    break;
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(node = id, %error, "not added yet");
                    tokio::time::sleep(ASK_EVERY).await;
                }
                Err(error) => {
                    tracing::warn!(node = id, %error, "cannot add a seed member as a learner: add it with POST /cluster/members");
                    break;
                }
            }
        }
    }
}

/// A new member that seeds nothing: asks the members it knows, until the leader answers that
/// this id is a learner it has replicated nothing to, then opens the gate.
pub(crate) async fn join(
    gate: Arc<Gate>,
    links: Arc<Links>,
    me: NodeId,
    peers: BTreeMap<NodeId, String>,
) {
    let mut paced = Paced(None);
    let mut leader: Option<String> = None;
    while !gate.is_open() {
        let mut addresses: Vec<(Option<NodeId>, String)> = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, address)| (Some(*id), address.clone()))
            .collect();
        addresses.extend(leader.clone().map(|address| (None, address)));
        let mut verdict = None;
        for (peer, address) in &addresses {
            let Some(standing) = ask(&links, address, *peer, me).await else {
                continue;
            };
            if let Some((_, address)) = &standing.leader {
                leader = Some(address.clone());
            }
            if !standing.initialized {
                continue;
            }
            let found = match (standing.role, standing.leads, standing.replicated) {
                (Some(Role::Voter), _, _) => Verdict::WipedVoter,
                (Some(Role::Learner), true, Some(true)) => Verdict::WipedLearner,
                (Some(Role::Learner), true, _) => Verdict::Added,
                // Only the leader knows whether it replicated to a learner.
                (Some(Role::Learner), false, _) => continue,
                (None, _, _) => Verdict::NotAdded,
            };
            verdict = Some(verdict.map_or(found, |known: Verdict| known.min(found)));
        }
        if gate.is_open() {
            return;
        }
        let why = match verdict {
            Some(Verdict::Added) => {
                gate.open();
                tracing::info!(
                    node_id = me,
                    "the cluster added this member as a learner: catching up from the leader"
                );
                return;
            }
            Some(Verdict::WipedVoter) => format!(
                "node {me} is a voter of the cluster, but this data directory is new: a member \
                 that voted never comes back with an empty directory (it forgot its votes). \
                 Remove it and add it again, on any member: `DELETE /cluster/members/{me}`, \
                 then `POST /cluster/members` with {{\"node_id\": {me}, \"address\": \"…\"}} \
                 (docs/clustering.md, \"Replacing a dead member\"); this member waits meanwhile"
            ),
            Some(Verdict::WipedLearner) => format!(
                "node {me} is a learner the leader already replicated to, but this data \
                 directory is new: remove it (`DELETE /cluster/members/{me}`) and add it \
                 again (`POST /cluster/members`); this member waits meanwhile"
            ),
            Some(Verdict::NotAdded) => format!(
                "waiting to be added: node {me} is not a member of the cluster; add it with \
                 `POST /cluster/members` {{\"node_id\": {me}, \"address\": \"…\"}} on any member"
            ),
            None => "waiting to be added: no member in --peers answers yet".to_owned(),
        };
        if paced.due(&why) {
            match verdict {
                Some(Verdict::WipedVoter | Verdict::WipedLearner) => {
                    tracing::error!("refused: {why}");
                }
                _ => tracing::info!("{why}"),
            }
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}

/// What the answers say of a new member, the gravest first: a refusal wins over the leader's
/// word that it was added, which wins over a member that has not heard of the addition yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    WipedVoter,
    WipedLearner,
    Added,
    NotAdded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_wins_over_an_answer_that_lets_a_member_in() {
        assert!(Verdict::WipedVoter < Verdict::Added);
        assert!(Verdict::WipedLearner < Verdict::Added);
        assert!(
            Verdict::Added < Verdict::NotAdded,
            "a lagging member does not hold it back"
        );
        let standing = Standing {
            initialized: true,
            leads: true,
            leader: Some((1, "localhost:7001".to_owned())),
            role: Some(Role::Learner),
            replicated: Some(false),
        };
        let text = serde_json::to_string(&standing).expect("encodes");
        assert!(text.contains("\"learner\""), "{text}");
        assert_eq!(
            serde_json::from_str::<Standing>(&text).expect("decodes"),
            standing
        );
    }
}
