//! A member the cluster removed stops (docs/clustering.md, "Changing the membership").
//!
//! A member removed while it was down never saw its removal: restarted on its data directory
//! it still counts itself a voter, stands for election after election with an ever higher
//! term (every member refuses it: its log is behind, and the leader's lease holds), and
//! answers its own clients 503. A member removed while it ran is no longer sent the log and
//! stays a bystander that knows a leader it will never hear from. Either way it serves
//! nothing and says nothing, so it asks: while it does not lead and either knows no leader or
//! is not in its own latest membership, it asks the members it knows what they know of it
//! (`admission`'s question), and once the leader answers that it is in the membership
//! neither as voter nor as learner, it stops with an error saying so, as an etcd member does.
//! Only a leader's answer counts: a follower may not have applied an addition yet.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;

use super::admission::{self, Gate};
use super::network::Links;
use super::{NodeId, TypeConfig};

/// How often a member that may have been removed asks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Resolves, with why, once the leader says this member (`me`) is not in the membership.
/// Never while `gate` is shut (a new member waiting to be let in asks its own questions).
pub(crate) async fn watch(
    raft: openraft::Raft<TypeConfig>,
    links: &Links,
    gate: &Gate,
    me: NodeId,
    peers: &BTreeMap<NodeId, String>,
) -> String {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !gate.is_open() {
            continue;
        }
        let Some(others) = others_if_unsure(&raft, me, peers) else {
            continue;
        };
        for (peer, address) in others {
            let Some(standing) = admission::ask(links, &address, Some(peer), me).await else {
                continue;
            };
            if standing.leads && standing.role.is_none() {
                return format!(
                    "this member, node {me}, was removed from the cluster: its leader, node \
                     {peer}, no longer lists it. Stop it for good, or wipe its data directory \
                     and add it again (POST /cluster/members; docs/clustering.md)"
                );
            }
        }
    }
}

/// The other members this one knows (its latest membership's, then `--peers`), when it may
/// have been removed: it does not lead, and it knows no leader or is not in its own latest
/// membership. `None` otherwise.
fn others_if_unsure(
    raft: &openraft::Raft<TypeConfig>,
    me: NodeId,
    peers: &BTreeMap<NodeId, String>,
) -> Option<Vec<(NodeId, String)>> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    if metrics.state == ServerState::Leader {
        return None;
    }
    let membership = metrics.membership_config.membership();
    let listed = membership
        .voter_ids()
        .chain(membership.learner_ids())
        .any(|id| id == me);
    if listed && metrics.current_leader.is_some() {
        return None;
    }
    let mut others: BTreeMap<NodeId, String> = peers.clone();
    others.extend(
        membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone())),
    );
    others.remove(&me);
    Some(others.into_iter().collect())
}
