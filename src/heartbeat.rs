//! The heartbeat's vocabulary (docs/contract.md §3.3): the ownership precondition, the request, the
//! accepted outcome (the documented `work_heartbeat` object) and the lease a refusal reports.

use std::fmt;
use std::num::NonZeroU64;

use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::Ttl;

/// The `expected_last_heartbeat` precondition: who the caller believes holds the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precondition {
    /// Parameter omitted: unconditional, never refused with 412.
    #[default]
    Unconditional,
    /// `NO_HEARTBEAT`: holds only while nobody heartbeated since the last ack.
    NoHeartbeat,
    /// A token the server returned: holds only when it is the lease's last heartbeat.
    LastHeartbeat(Timestamp),
    /// A valid RFC 3339 instant that no token can equal (finer than a microsecond, a leap
    /// second, or outside years 0000–9999): it never holds.
    Unmatchable,
}

impl Precondition {
    /// Whether the precondition holds for a lease whose last heartbeat is `last_heartbeat`
    /// (`None`: unclaimed since the last ack).
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Precondition, Timestamp};
    /// let token = Timestamp::from_unix_micros(1_782_893_706_120_394);
    /// assert!(Precondition::NoHeartbeat.holds(None));
    /// assert!(!Precondition::NoHeartbeat.holds(Some(token)));
    /// assert!(Precondition::LastHeartbeat(token).holds(Some(token)));
    /// assert!(Precondition::Unconditional.holds(Some(token)));
    /// ```
    pub fn holds(self, last_heartbeat: Option<Timestamp>) -> bool {
        match self {
            Self::Unconditional => true,
            Self::NoHeartbeat => last_heartbeat.is_none(),
            Self::LastHeartbeat(expected) => last_heartbeat == Some(expected),
            Self::Unmatchable => false,
        }
    }
}

impl fmt::Display for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unconditional => f.write_str("(none)"),
            Self::NoHeartbeat => f.write_str("NO_HEARTBEAT"),
            Self::LastHeartbeat(token) => write!(f, "{token}"),
            Self::Unmatchable => f.write_str("an instant no heartbeat can have"),
        }
    }
}

/// A parsed heartbeat request: build it with [`HeartbeatRequest::parse`] from the raw query
/// values, or directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HeartbeatRequest {
    /// The ownership precondition.
    pub precondition: Precondition,
    /// The TTL asked for, in seconds, before clamping; `None` means the table's default.
    /// Values too large for `u64` are held as `u64::MAX` (they clamp to 600 all the same).
    pub desired_ttl_seconds: Option<NonZeroU64>,
}

impl HeartbeatRequest {
    /// The TTL this request gets, and whether the asked value had to be clamped.
    pub fn ttl(&self, default: Ttl) -> (Ttl, bool) {
        match self.desired_ttl_seconds {
            Some(seconds) => Ttl::clamped(seconds.get()),
            None => (default, false),
        }
    }
}

/// An accepted heartbeat: the documented `work_heartbeat` object, plus what a server may want
/// to log.
///
/// On a starting or active item the heartbeat renewed the lease: a new token, the TTL asked
/// for, a new deadline. On a stopping item it renewed nothing (docs/contract.md §3.3): every
/// field is the lease as the table holds it, and [`Heartbeat::lease_extended`] is `false`,
/// which is what tells a worker to drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    /// The lease's token: echo it as the next `expected_last_heartbeat`. Always `Some` when
    /// the lease was renewed; on a stopping item, the stored one (`None` when the item was
    /// stopped before its first heartbeat).
    pub last_heartbeat: Option<Timestamp>,
    /// The item's state after the heartbeat (`active` or `stopping`).
    pub state: WorkState,
    /// The lease length: the one granted, or on a stopping item the one it holds.
    pub ttl: Ttl,
    /// Whether the requested TTL was outside 10–600 s and was clamped (`false` on a stopping
    /// item: no TTL was granted).
    pub ttl_clamped: bool,
    /// When the lease lapses unless renewed: `last_heartbeat + ttl` after a renewal; on a
    /// stopping item the deadline it already had.
    pub deadline: Timestamp,
    /// The lease's fencing epoch (docs/contract.md §7.5): the item's ack count.
    pub lease_epoch: u32,
}

impl Heartbeat {
    /// Whether the heartbeat renewed the lease: `true` on a starting or active item, `false`
    /// on a stopping one, whose worker should drain and confirm the stop.
    pub const fn lease_extended(&self) -> bool {
        // A heartbeat answers only from starting (then active), active or stopping.
        match self.state {
            WorkState::Stopping => false,
            WorkState::Queued | WorkState::Starting | WorkState::Active | WorkState::Stopped => {
                true
            }
        }
    }
}

/// A lease as the table holds it, reported with a 412 (`details.current_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseSnapshot {
    /// The lease's last heartbeat; `None` while unclaimed since the last ack.
    pub last_heartbeat: Option<Timestamp>,
    /// The item's state.
    pub state: WorkState,
    /// The lease's current length.
    pub ttl: Ttl,
    /// When the lease lapses.
    pub deadline: Timestamp,
    /// The lease's fencing epoch (docs/contract.md §7.5).
    pub lease_epoch: u32,
}

impl LeaseSnapshot {
    /// Always `false`: a refused heartbeat extends nothing.
    pub const fn lease_extended(&self) -> bool {
        false
    }

    pub(crate) fn describe_last_heartbeat(&self) -> impl fmt::Display + '_ {
        struct Describe<'a>(&'a LeaseSnapshot);
        impl fmt::Display for Describe<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0.last_heartbeat {
                    Some(token) => write!(f, "last heartbeat {token}"),
                    None => f.write_str("no heartbeat"),
                }
            }
        }
        Describe(self)
    }
}
