//! A work item: its stored form (state with per-state data) and the owned views the table
//! hands out.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::ids::{BodyRef, EnvironmentId, SessionId, Wide, WorkId, WorkKey};
use crate::metadata::Metadata;
use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::Ttl;
use crate::workers::WorkerRef;

/// The lease of a starting, active or stopping item, as read from its [`Phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The lease is valid while `now < deadline`.
    pub(crate) deadline: Timestamp,
    pub(crate) ttl: Ttl,
    /// The worker that acknowledged (or was delivered) the item, if it named itself.
    pub(crate) holder: Option<WorkerRef>,
}

/// A state with the data only that state has: a deadline exists only where a lease does.
///
/// Variants hold their fields directly (not a shared `Lease` struct) so the tag packs into
/// their padding: 16 bytes. `beaten` records whether the lease had a heartbeat, for states
/// where that varies: an item's `latest_heartbeat_at` is then its last token (see
/// [`Item::latest_heartbeat_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `delivered_at`: when a poll last handed it out (and to which named worker), if one did
    /// since it was created or requeued.
    Queued {
        delivered_at: Option<Timestamp>,
        worker: Option<WorkerRef>,
    },
    Starting {
        deadline: Timestamp,
        ttl: Ttl,
        holder: Option<WorkerRef>,
    },
    Active {
        deadline: Timestamp,
        ttl: Ttl,
        holder: Option<WorkerRef>,
    },
    Stopping {
        deadline: Timestamp,
        ttl: Ttl,
        holder: Option<WorkerRef>,
        beaten: bool,
    },
    /// `at` is `stopped_at`. `from_lease`: the item stopped while leased (a stop, or its
    /// stopping lease lapsing), so its last lease is one [`Item::lease_epoch`] counts beyond
    /// its lapses.
    Stopped {
        at: Timestamp,
        beaten: bool,
        from_lease: bool,
    },
}

impl Phase {
    pub(crate) const NEW: Self = Self::Queued {
        delivered_at: None,
        worker: None,
    };

    pub(crate) fn state(&self) -> WorkState {
        match self {
            Self::Queued { .. } => WorkState::Queued,
            Self::Starting { .. } => WorkState::Starting,
            Self::Active { .. } => WorkState::Active,
            Self::Stopping { .. } => WorkState::Stopping,
            Self::Stopped { .. } => WorkState::Stopped,
        }
    }

    pub(crate) fn lease(&self) -> Option<Lease> {
        match *self {
            Self::Starting {
                deadline,
                ttl,
                holder,
            }
            | Self::Active {
                deadline,
                ttl,
                holder,
            }
            | Self::Stopping {
                deadline,
                ttl,
                holder,
                ..
            } => Some(Lease {
                deadline,
                ttl,
                holder,
            }),
            Self::Queued { .. } | Self::Stopped { .. } => None,
        }
    }

    /// The worker reference this phase owns: the delivery's or the lease holder's.
    pub(crate) fn worker(&self) -> Option<WorkerRef> {
        match *self {
            Self::Queued { worker, .. } => worker,
            Self::Starting { holder, .. }
            | Self::Active { holder, .. }
            | Self::Stopping { holder, .. } => holder,
            Self::Stopped { .. } => None,
        }
    }

    /// Whether the current (or, once stopped, the last) lease had a heartbeat.
    pub(crate) fn beaten(&self) -> bool {
        match *self {
            Self::Active { .. } => true,
            Self::Stopping { beaten, .. } | Self::Stopped { beaten, .. } => beaten,
            Self::Queued { .. } | Self::Starting { .. } => false,
        }
    }
}

/// Bit of [`Item::env_and_kinds`]: the work id's body is text (in the table's arena).
const ID_IS_TEXT: u32 = 1 << 31;
/// Bit of [`Item::env_and_kinds`]: the session id's body is text.
const SESSION_IS_TEXT: u32 = 1 << 30;
/// Environments a table can hold: the rest of [`Item::env_and_kinds`].
pub(crate) const MAX_ENVIRONMENTS: usize = 1 << 30;

/// A work item as the table stores it: 88 bytes.
///
/// The fields every item needs; what few items have lives in the table's side maps (metadata,
/// graceful stop requests), and worker ids are registered once ([`crate::workers`]). Ids are
/// packed: a minted body is its 16-byte value, any other body an index into the table's text
/// arena ([`Texts`]).
///
/// `repr(C)` keeps the fields a heartbeat reads and writes (id, phase, token, environment)
/// in the first 44 bytes, so at a million items a heartbeat usually touches one or two cache
/// lines of its item.
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct Item {
    id: Wide,
    pub(crate) phase: Phase,
    /// The last token ever issued for this item; survives lapses so tokens never repeat.
    pub(crate) last_token: Option<Timestamp>,
    /// The owning environment's index, and the `*_IS_TEXT` bits.
    env_and_kinds: u32,
    pub(crate) lapses: u32,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) created_at: Timestamp,
    pub(crate) acknowledged_at: Option<Timestamp>,
    session: Wide,
}

/// The text bodies of a table's ids that are not of the minted shape, each stored once; the
/// entries of purged items are reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Texts {
    entries: Vec<Arc<str>>,
    free: Vec<usize>,
}

impl Texts {
    fn add(&mut self, text: Arc<str>) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.entries[index] = text;
                index
            }
            None => {
                self.entries.push(text);
                self.entries.len() - 1
            }
        }
    }

    fn release(&mut self, index: usize) {
        self.entries[index] = Arc::from("");
        self.free.push(index);
    }
}

fn pack(packed: Result<Wide, Arc<str>>, texts: &mut Texts) -> (Wide, bool) {
    match packed {
        Ok(value) => (value, false),
        Err(text) => (Wide::of(texts.add(text) as u128), true),
    }
}

fn text_of(texts: &Texts, packed: Wide) -> &Arc<str> {
    // Truncation impossible: the index came from a `usize`.
    &texts.entries[packed.get() as usize]
}

impl Item {
    /// A queued item, its ids packed (text bodies go to `texts`).
    pub(crate) fn new(
        id: &WorkId,
        session: SessionId,
        env: u32,
        created_at: Timestamp,
        texts: &mut Texts,
    ) -> Self {
        debug_assert!((env as usize) < MAX_ENVIRONMENTS);
        let (id, id_is_text) = pack(id.clone().into_packed(), texts);
        let (session, session_is_text) = pack(session.into_packed(), texts);
        let kinds = if id_is_text { ID_IS_TEXT } else { 0 }
            | if session_is_text { SESSION_IS_TEXT } else { 0 };
        Self {
            id,
            session,
            created_at,
            acknowledged_at: None,
            started_at: None,
            last_token: None,
            phase: Phase::NEW,
            env_and_kinds: env | kinds,
            lapses: 0,
        }
    }

    /// Index of the owning environment in the table.
    pub(crate) fn env(&self) -> u32 {
        self.env_and_kinds & !(ID_IS_TEXT | SESSION_IS_TEXT)
    }

    /// The work id's body, borrowed: orders, compares and hashes like the id.
    pub(crate) fn body<'a>(&'a self, texts: &'a Texts) -> BodyRef<'a> {
        if self.env_and_kinds & ID_IS_TEXT == 0 {
            BodyRef::Hex(self.id)
        } else {
            BodyRef::Text(text_of(texts, self.id))
        }
    }

    /// The session id's body, borrowed.
    #[cfg(feature = "snapshot")]
    pub(crate) fn session_body<'a>(&'a self, texts: &'a Texts) -> BodyRef<'a> {
        if self.env_and_kinds & SESSION_IS_TEXT == 0 {
            BodyRef::Hex(self.session)
        } else {
            BodyRef::Text(text_of(texts, self.session))
        }
    }

    /// The work id as a lookup key.
    pub(crate) fn key<'a>(&'a self, texts: &'a Texts) -> WorkKey<'a> {
        WorkKey::Id(self.body(texts))
    }

    pub(crate) fn id(&self, texts: &Texts) -> WorkId {
        if self.env_and_kinds & ID_IS_TEXT == 0 {
            WorkId::from_packed(self.id)
        } else {
            WorkId::from_packed_text(Arc::clone(text_of(texts, self.id)))
        }
    }

    pub(crate) fn session(&self, texts: &Texts) -> SessionId {
        if self.env_and_kinds & SESSION_IS_TEXT == 0 {
            SessionId::from_packed(self.session)
        } else {
            SessionId::from_packed_text(Arc::clone(text_of(texts, self.session)))
        }
    }

    /// Gives back the item's entries in the text arena, when it is purged.
    pub(crate) fn release_texts(&self, texts: &mut Texts) {
        if self.env_and_kinds & ID_IS_TEXT != 0 {
            texts.release(self.id.get() as usize);
        }
        if self.env_and_kinds & SESSION_IS_TEXT != 0 {
            texts.release(self.session.get() as usize);
        }
    }

    /// docs/contract.md §5 on the item's own fields: counts a lapse of a starting or active lease, clears
    /// what a new attempt starts without, and returns the phase the lapse at `at` leads to.
    /// The caller installs it (the table with its indexes, a read on a copy).
    pub(crate) fn lapse(&mut self, at: Timestamp, max_attempts: Option<NonZeroU32>) -> Phase {
        let beaten = self.phase.beaten();
        match self.phase {
            Phase::Starting { .. } | Phase::Active { .. } => {
                self.lapses = self.lapses.saturating_add(1);
                if max_attempts.is_some_and(|max| self.lapses >= max.get()) {
                    // Out of attempts: the last attempt's times stay, for the post-mortem.
                    Phase::Stopped {
                        at,
                        beaten,
                        from_lease: false,
                    }
                } else {
                    // Queued again: the next attempt starts from a clean slate.
                    self.acknowledged_at = None;
                    self.started_at = None;
                    Phase::NEW
                }
            }
            Phase::Stopping { .. } => Phase::Stopped {
                at,
                beaten,
                from_lease: true,
            },
            Phase::Queued { .. } | Phase::Stopped { .. } => {
                unreachable!("invariant: only leased items have deadlines")
            }
        }
    }

    /// docs/contract.md §7.5's fencing epoch: how many leases the item was given, which is how many acks
    /// opened one. Derived, not stored (the item keeps its 88 bytes): every lease ends by a
    /// counted lapse, or is the current one, or the one the item stopped in.
    pub(crate) fn lease_epoch(&self) -> u32 {
        let current = match self.phase {
            Phase::Starting { .. } | Phase::Active { .. } | Phase::Stopping { .. } => true,
            Phase::Stopped { from_lease, .. } => from_lease,
            Phase::Queued { .. } => false,
        };
        self.lapses.saturating_add(u32::from(current))
    }

    /// `latest_heartbeat_at`: the last token, while the lease (or, once stopped, the last
    /// one) had a heartbeat — a heartbeat sets both, and nothing else issues tokens.
    pub(crate) fn latest_heartbeat_at(&self) -> Option<Timestamp> {
        if self.phase.beaten() {
            self.last_token
        } else {
            None
        }
    }
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
    /// How many leases of this item lapsed (docs/contract.md §5's attempt counter).
    pub lapses: u32,
    /// `lease_epoch` (docs/contract.md §7.5): 0 until the first ack, then incremented by every ack. A
    /// store downstream that keeps the highest epoch it saw per item can refuse writes from a
    /// holder whose lease was taken over.
    pub lease_epoch: u32,
    /// When the lease lapses, for starting, active and stopping items.
    pub lease_deadline: Option<Timestamp>,
    /// The lease's length, for starting, active and stopping items.
    pub lease_ttl: Option<Ttl>,
    /// When a poll last handed out this queued item, if one did.
    pub delivered_at: Option<Timestamp>,
    /// The worker the item was delivered to (queued) or that holds the lease (leased), if it
    /// named itself.
    pub worker: Option<crate::WorkerId>,
}

/// What [`WorkItem::of`] needs besides the item: the table's side data for it.
#[derive(Clone, Copy)]
pub(crate) struct ItemContext<'a> {
    pub(crate) environment_id: &'a EnvironmentId,
    pub(crate) texts: &'a Texts,
    pub(crate) worker: Option<&'a crate::WorkerId>,
    pub(crate) metadata: Option<&'a Metadata>,
    pub(crate) stop_requested_at: Option<Timestamp>,
}

impl WorkItem {
    pub(crate) fn of(item: &Item, context: ItemContext<'_>) -> Self {
        let delivered_at = match item.phase {
            Phase::Queued { delivered_at, .. } => delivered_at,
            Phase::Starting { .. }
            | Phase::Active { .. }
            | Phase::Stopping { .. }
            | Phase::Stopped { .. } => None,
        };
        let stopped_at = match item.phase {
            Phase::Stopped { at, .. } => Some(at),
            _ => None,
        };
        let lease = item.phase.lease();
        Self {
            id: item.id(context.texts),
            environment_id: context.environment_id.clone(),
            session_id: item.session(context.texts),
            state: item.phase.state(),
            created_at: item.created_at,
            acknowledged_at: item.acknowledged_at,
            started_at: item.started_at,
            latest_heartbeat_at: item.latest_heartbeat_at(),
            stop_requested_at: context.stop_requested_at,
            stopped_at,
            metadata: context.metadata.cloned().unwrap_or_default(),
            lapses: item.lapses,
            lease_epoch: item.lease_epoch(),
            lease_deadline: lease.map(|l| l.deadline),
            lease_ttl: lease.map(|l| l.ttl),
            delivered_at,
            worker: context.worker.cloned(),
        }
    }
}

/// A state change the table made on its own: a lease lapsed (docs/contract.md §5).
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

    /// The per-lease memory budget (docs/performance.md) starts here: keep it from growing
    /// unnoticed.
    #[test]
    fn stored_items_stay_small() {
        let size = std::mem::size_of::<Item>();
        println!(
            "Item: {size} bytes, Phase: {}",
            std::mem::size_of::<Phase>()
        );
        assert!(size <= 88, "{size}");
        assert_eq!(std::mem::size_of::<Phase>(), 16);
    }
}
