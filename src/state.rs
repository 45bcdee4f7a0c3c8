//! The five work-item states (docs/contract.md §2) and the operations that move between them (docs/contract.md §3).

use std::fmt;

/// A work item's state.
///
/// "Live" is every state but [`WorkState::Stopped`]. A queued item that a poll handed out but
/// nobody acknowledged yet is still `Queued` (it is *delivered*, a sub-condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkState {
    /// Waiting for a worker: claimable by poll.
    Queued,
    /// Acknowledged by a worker; the lease is open but nobody has heartbeated yet.
    Starting,
    /// Running: the holder's heartbeats keep the lease.
    Active,
    /// A stop was requested; the holder drains and confirms, or the lease lapses.
    Stopping,
    /// Done. No lease, no further transitions.
    Stopped,
}

impl WorkState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Starting,
        Self::Active,
        Self::Stopping,
        Self::Stopped,
    ];

    /// The state's name as the API writes it (`"queued"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// Every state but `Stopped`.
    pub const fn is_live(self) -> bool {
        match self {
            Self::Queued | Self::Starting | Self::Active | Self::Stopping => true,
            Self::Stopped => false,
        }
    }

    /// Whether an item in this state holds a lease (and so a deadline).
    pub const fn is_leased(self) -> bool {
        match self {
            Self::Starting | Self::Active | Self::Stopping => true,
            Self::Queued | Self::Stopped => false,
        }
    }
}

impl fmt::Display for WorkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation on a work item, as named in refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `poll`.
    Poll,
    /// `ack`.
    Ack,
    /// `heartbeat`.
    Heartbeat,
    /// `stop`.
    Stop,
}

impl Operation {
    /// The operation's name (`"ack"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Ack => "ack",
            Self::Heartbeat => "heartbeat",
            Self::Stop => "stop",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stopped_is_not_live_and_only_middle_states_hold_leases() {
        let live: Vec<_> = WorkState::ALL.iter().map(|s| s.is_live()).collect();
        assert_eq!(live, [true, true, true, true, false]);
        let leased: Vec<_> = WorkState::ALL.iter().map(|s| s.is_leased()).collect();
        assert_eq!(leased, [false, true, true, true, false]);
        assert_eq!(WorkState::Stopping.to_string(), "stopping");
    }
}
