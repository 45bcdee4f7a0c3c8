//! A work item: its stored form (state with per-state data) and the owned views the table
//! hands out.

use crate::ids::{EnvironmentId, SessionId, WorkId, WorkerId};
use crate::metadata::Metadata;
use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::Ttl;

/// A poll's hand-out of a queued item that nobody acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) at: Timestamp,
    pub(crate) worker: Option<WorkerId>,
}

/// The lease of a starting, active or stopping item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The lease is valid while `now < deadline`.
    pub(crate) deadline: Timestamp,
    pub(crate) ttl: Ttl,
    /// The worker that acknowledged (or was delivered) the item, if it named itself.
    pub(crate) holder: Option<WorkerId>,
}

/// A state with the data only that state has: a deadline exists only where a lease does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued(Option<Delivery>),
    Starting(Lease),
    Active(Lease),
    Stopping(Lease),
    Stopped,
}

impl Phase {
    pub(crate) fn state(&self) -> WorkState {
        match self {
            Self::Queued(_) => WorkState::Queued,
            Self::Starting(_) => WorkState::Starting,
            Self::Active(_) => WorkState::Active,
            Self::Stopping(_) => WorkState::Stopping,
            Self::Stopped => WorkState::Stopped,
        }
    }

    pub(crate) fn lease(&self) -> Option<&Lease> {
        match self {
            Self::Starting(lease) | Self::Active(lease) | Self::Stopping(lease) => Some(lease),
            Self::Queued(_) | Self::Stopped => None,
        }
    }
}

/// A work item as the table stores it.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) id: WorkId,
    /// Index of the owning environment in the table.
    pub(crate) env: u32,
    pub(crate) session: SessionId,
    /// `None` while empty (the common case): 8 bytes instead of a map's 24.
    pub(crate) metadata: Option<Box<Metadata>>,
    pub(crate) created_at: Timestamp,
    pub(crate) acknowledged_at: Option<Timestamp>,
    pub(crate) started_at: Option<Timestamp>,
    /// The lease's last heartbeat while leased (`None`: unclaimed since the ack).
    pub(crate) latest_heartbeat_at: Option<Timestamp>,
    pub(crate) stop_requested_at: Option<Timestamp>,
    pub(crate) stopped_at: Option<Timestamp>,
    pub(crate) lapses: u32,
    /// The last token ever issued for this item; survives lapses so tokens never repeat.
    pub(crate) last_token: Option<Timestamp>,
    pub(crate) phase: Phase,
}

/// An owned snapshot of a work item: every documented field, plus the lease and delivery a
/// server may want to log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkItem {
    /// `id`.
    pub id: WorkId,
    /// `environment_id`.
    pub environment_id: EnvironmentId,
    /// `data.id` (`data.type` is always `"session"`).
    pub session_id: SessionId,
    /// `state`.
    pub state: WorkState,
    /// `created_at`.
    pub created_at: Timestamp,
    /// `acknowledged_at`.
    pub acknowledged_at: Option<Timestamp>,
    /// `started_at`.
    pub started_at: Option<Timestamp>,
    /// `latest_heartbeat_at`.
    pub latest_heartbeat_at: Option<Timestamp>,
    /// `stop_requested_at`.
    pub stop_requested_at: Option<Timestamp>,
    /// `stopped_at`.
    pub stopped_at: Option<Timestamp>,
    /// `metadata`.
    pub metadata: Metadata,
    /// How many leases of this item lapsed (SPEC §5's attempt counter).
    pub lapses: u32,
    /// When the lease lapses, for starting, active and stopping items.
    pub lease_deadline: Option<Timestamp>,
    /// The lease's length, for starting, active and stopping items.
    pub lease_ttl: Option<Ttl>,
    /// When a poll last handed out this queued item, if one did.
    pub delivered_at: Option<Timestamp>,
    /// The worker the item was delivered to (queued) or that holds the lease (leased), if it
    /// named itself.
    pub worker: Option<WorkerId>,
}

impl WorkItem {
    pub(crate) fn of(item: &Item, environment_id: &EnvironmentId) -> Self {
        let (delivered_at, worker) = match &item.phase {
            Phase::Queued(Some(delivery)) => (Some(delivery.at), delivery.worker.clone()),
            Phase::Queued(None) | Phase::Stopped => (None, None),
            Phase::Starting(lease) | Phase::Active(lease) | Phase::Stopping(lease) => {
                (None, lease.holder.clone())
            }
        };
        let lease = item.phase.lease();
        Self {
            id: item.id.clone(),
            environment_id: environment_id.clone(),
            session_id: item.session.clone(),
            state: item.phase.state(),
            created_at: item.created_at,
            acknowledged_at: item.acknowledged_at,
            started_at: item.started_at,
            latest_heartbeat_at: item.latest_heartbeat_at,
            stop_requested_at: item.stop_requested_at,
            stopped_at: item.stopped_at,
            metadata: item.metadata.as_deref().cloned().unwrap_or_default(),
            lapses: item.lapses,
            lease_deadline: lease.map(|l| l.deadline),
            lease_ttl: lease.map(|l| l.ttl),
            delivered_at,
            worker,
        }
    }
}

/// A state change the table made on its own: a lease lapsed (SPEC §5).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The item's environment.
    pub environment_id: EnvironmentId,
    /// The item.
    pub work_id: WorkId,
    /// The state before (`starting`, `active` or `stopping`).
    pub from: WorkState,
    /// The state after (`queued`, or `stopped` for a stopping item or one out of attempts).
    pub to: WorkState,
    /// When it happened: the lease deadline, whenever the table noticed.
    pub at: Timestamp,
    /// The item's lapse count after this one.
    pub lapses: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-lease memory budget (README, Performance) starts here: keep it from growing
    /// unnoticed.
    #[test]
    fn stored_items_stay_small() {
        let size = std::mem::size_of::<Item>();
        println!(
            "Item: {size} bytes, Phase: {}",
            std::mem::size_of::<Phase>()
        );
        assert!(size <= 160, "{size}");
    }
}
