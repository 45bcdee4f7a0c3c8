//! The table's settings and the values its operations return.

use std::num::NonZeroU32;

use crate::ids::WorkId;
use crate::item::WorkItem;
use crate::request::PollRequest;
use crate::time::Timestamp;
use crate::ttl::Ttl;

/// A table's settings. Every field is valid by construction ([`Ttl`] cannot be out of range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The TTL of a heartbeat that names none (docs/contract.md §4; 60 s).
    pub default_ttl: Ttl,
    /// The TTL of the lease an ack opens (docs/contract.md §4; 60 s).
    pub ack_ttl: Ttl,
    /// After this many lapses an item is stopped instead of queued again; `None`: no limit.
    pub max_attempts: Option<NonZeroU32>,
    /// The reclaim window that [`crate::LeaseTable::stats`] assumes (polls bring their own);
    /// 5000 ms.
    pub reclaim_older_than_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_ttl: Ttl::DEFAULT,
            ack_ttl: Ttl::DEFAULT,
            max_attempts: None,
            reclaim_older_than_ms: PollRequest::DEFAULT_RECLAIM_OLDER_THAN_MS,
        }
    }
}

/// What a poll found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled {
    /// The oldest claimable item, now delivered to the poller.
    Delivered(Box<WorkItem>),
    /// Nothing claimable (HTTP: 200 with body `null`).
    Empty {
        /// No later than this instant something may become claimable (a delivery's reclaim
        /// window ends or a lease lapses); `None` when nothing will without a new item. A
        /// long-polling server sleeps until then or until it creates work.
        next_claimable_at: Option<Timestamp>,
    },
}

/// An item after an operation that may leave it as it was (ack, stop, metadata update).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updated {
    /// The item after the operation.
    pub item: WorkItem,
    /// Whether the operation changed anything (`false`: a retry-safe repeat).
    pub changed: bool,
}

/// How a stop ends the work (docs/contract.md §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StopMode {
    /// Ask the holder to drain: active and starting items go to `stopping`; a stopping item
    /// is confirmed `stopped`.
    #[default]
    Graceful,
    /// Any live item goes to `stopped` at once.
    Force,
}

/// A page of a list (docs/contract.md §3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The items, ascending id.
    pub data: Vec<WorkItem>,
    /// The first item's id.
    pub first_id: Option<WorkId>,
    /// The last item's id.
    pub last_id: Option<WorkId>,
    /// Whether more items lie beyond this page in the direction of travel.
    pub has_more: bool,
    /// The `page` value for the next page (forward listings only).
    pub next_page: Option<WorkId>,
}

/// An environment's queue at a glance (`work_queue_stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueStats {
    /// Queued items claimable now.
    pub depth: usize,
    /// Delivered, unacknowledged items still inside the reclaim window.
    pub pending: usize,
    /// `created_at` of the oldest (lowest-id) queued item.
    pub oldest_queued_at: Option<Timestamp>,
    /// Distinct worker ids that polled in the last 30 s.
    pub workers_polling: usize,
}
