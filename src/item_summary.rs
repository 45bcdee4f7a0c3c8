//! [`ItemSummary`]: the few fields of an item a check on the request path reads, without
//! copying the rest.

use crate::ids::WorkerId;
use crate::item::WorkItem;
use crate::state::WorkState;
use crate::time::Timestamp;

/// An item's state and delivery counters, read without copying its ids, metadata or
/// timestamps: what a check made on every request needs, such as whether a credential handed
/// out with one delivery of the item still belongs to the item as it is now.
///
/// [`LeaseTable::summary`](crate::LeaseTable::summary) answers it as
/// [`LeaseTable::get`](crate::LeaseTable::get) would answer the whole item (a lease past due is
/// shown as its lapse would leave the item), and it equals `ItemSummary::from(&item)` of that
/// answer. Reading one allocates nothing; cloning it clones one shared worker id.
///
/// ```
/// use worklease::{
///     EnvironmentKind, ItemSummary, LeaseTable, Metadata, PollRequest, Timestamp, WorkState,
/// };
///
/// let at = Timestamp::from_unix_micros;
/// let mut table = LeaseTable::default();
/// table.register_environment("env_a".parse()?, EnvironmentKind::SelfHosted)?;
/// table.create_work("env_a", "work_1".parse()?, "sess_1".parse()?, Metadata::new(), at(1_000))?;
/// table.poll("env_a", &PollRequest::default(), at(2_000))?;
/// let summary = table.summary("env_a", "work_1", at(3_000))?;
/// assert_eq!(summary.state, WorkState::Queued);
/// assert_eq!(summary, ItemSummary::from(&table.get("env_a", "work_1", at(3_000))?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ItemSummary {
    /// [`WorkItem::state`].
    pub state: WorkState,
    /// [`WorkItem::lapses`].
    pub lapses: u32,
    /// [`WorkItem::lease_epoch`].
    pub lease_epoch: u32,
    /// [`WorkItem::delivered_at`].
    pub delivered_at: Option<Timestamp>,
    /// [`WorkItem::worker`].
    pub worker: Option<WorkerId>,
}

impl From<&WorkItem> for ItemSummary {
    fn from(item: &WorkItem) -> Self {
        Self {
            state: item.state,
            lapses: item.lapses,
            lease_epoch: item.lease_epoch,
            delivered_at: item.delivered_at,
            worker: item.worker.clone(),
        }
    }
}
