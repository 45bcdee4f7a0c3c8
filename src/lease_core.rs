//! [`LeaseCore`]: the per-item core both tables are built from: items, their leases, each
//! environment's queues and the deadline index, for one table or one shard.
//!
//! A core answers operations on items at the instant it is given and applies the lapses an
//! operation needs: a single-item operation lapses the touched item when its deadline has
//! passed (so its answer depends on no other item), [`LeaseCore::expire_some`] applies the
//! others in bounded steps. It holds no clock and takes no lock: a [`crate::LeaseTable`] owns
//! one core and ticks its clock; a [`crate::ConcurrentLeaseTable`] keeps one per shard, each
//! behind its own mutex. Environment records are not here but in the shared
//! [`Registry`]; a core keeps, per environment index, only that environment's work
//! ([`Environment`]). Orders that reach callers (poll, list, sweep) are defined by ids and
//! deadlines, never by hash-map iteration, so the per-table random hash seed never shows.
//!
//! Representation, chosen for the heartbeat (see docs/performance.md): 88-byte
//! items ([`crate::item`]) in one vector addressed by a `u32` slot, with ids packed and rare
//! data (metadata, stop requests) in side maps by slot; the work id → slot index stores
//! 4-byte buckets ([`crate::index`]) and is searched by the id's text, never parsing it;
//! times are `i64` microseconds; the deadline index is a lazy timer wheel
//! ([`crate::deadline`]) where renewing a lease is usually free. A purge moves the last item
//! into each freed slot ([`purge`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::deadline::Deadlines;
use crate::environment::Environment;
use crate::environment_keys::ItemSecretKey;
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot};
use crate::ids::{AsId, EnvironmentId, SessionId, WorkId, WorkKey, WorkerId};
use crate::index::SlotIndex;
use crate::item::{Item, ItemContext, Phase, Texts, Transition, WorkItem};
use crate::item_summary::ItemSummary;
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Config, StopMode, Updated};
use crate::registry::Registry;
use crate::state::Operation;
use crate::time::Timestamp;
use crate::workers::Workers;

pub(crate) mod environments;
mod parts;
pub(crate) mod purge;
mod validate;

pub(crate) use parts::{merge_pages, StatsPart};
pub use validate::InvariantViolation;

/// A work id as an operation received it: parsed and hashed, or malformed (answered 404 once
/// the environment checks pass).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Key<'a> {
    /// The id and its hash.
    Id(WorkKey<'a>, u64),
    Malformed(Excerpt),
}

/// A work id argument, read without allocating: text is used as received (a text body is
/// never copied into an `Arc`), a typed id is borrowed.
pub(crate) enum WorkArg<'a> {
    Text(&'a str),
    Id(Result<Cow<'a, WorkId>, Excerpt>),
}

impl<'a> WorkArg<'a> {
    pub(crate) fn of(work: &'a impl AsId<WorkId>) -> Self {
        match work.as_text() {
            Some(text) => Self::Text(text),
            None => Self::Id(work.as_id()),
        }
    }

    /// The lookup key, or the malformed text's excerpt.
    pub(crate) fn key(&self) -> Result<WorkKey<'_>, Excerpt> {
        match self {
            Self::Text(text) => WorkKey::parse(text).ok_or_else(|| Excerpt::new(text)),
            Self::Id(Ok(id)) => Ok(id.key()),
            Self::Id(Err(excerpt)) => Err(*excerpt),
        }
    }
}

/// The hash of a work id under `hasher`: one function for the table and its shard selection.
pub(crate) fn hash_of(hasher: &RandomState, id: WorkKey<'_>) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(id)
}

/// Items, their leases, per-environment queues and deadlines: one table's, or one shard's.
#[derive(Clone, Debug)]
pub(crate) struct LeaseCore {
    pub(crate) config: Config,
    pub(crate) hasher: RandomState,
    /// Every environment's record, shared by all cores of a table.
    pub(crate) registry: Arc<Registry>,
    /// Each environment's work, by environment index (as long as the registry's slots).
    pub(crate) environments: Vec<Environment>,
    pub(crate) work_index: SlotIndex,
    pub(crate) items: Vec<Item>,
    /// The text bodies of ids not of the minted shape ([`Item`] packs ids).
    pub(crate) texts: Texts,
    /// The workers items name.
    pub(crate) workers: Workers,
    /// Items' metadata, for the items that have any.
    pub(crate) metadata: HashMap<u32, Metadata, RandomState>,
    /// `stop_requested_at` of the items stopped gracefully.
    pub(crate) stop_requests: HashMap<u32, Timestamp, RandomState>,
    /// Every lease, by deadline.
    pub(crate) deadlines: Deadlines,
    /// Lapses applied since the last sweep.
    pub(crate) journal: Vec<Transition>,
    /// What item secrets are signed with, once a caller set it ([`crate::ItemSecretKey`]);
    /// every core of a table holds the same.
    pub(crate) item_secret_key: Option<ItemSecretKey>,
}

impl LeaseCore {
    /// An empty core hashing ids with `hasher` (shards of one concurrent table share one, so
    /// an id is hashed once per call) and sharing `registry`.
    pub(crate) fn new(config: Config, hasher: RandomState, registry: Arc<Registry>) -> Self {
        let mut core = Self {
            config,
            hasher,
            registry: Arc::new(Registry::default()),
            environments: Vec::new(),
            work_index: SlotIndex::default(),
            items: Vec::new(),
            texts: Texts::default(),
            workers: Workers::default(),
            metadata: HashMap::default(),
            stop_requests: HashMap::default(),
            deadlines: Deadlines::new(),
            journal: Vec::new(),
            item_secret_key: None,
        };
        core.share_registry(registry);
        core
    }

    /// Takes `registry` (a changed copy of this core's, or the same), sizing the
    /// per-environment work to its slots: a slot the registry emptied holds nothing here
    /// either (its items were removed first).
    pub(crate) fn share_registry(&mut self, registry: Arc<Registry>) {
        let slots = registry.slots();
        self.registry = registry;
        if slots == 0 {
            self.environments = Vec::new();
        } else {
            self.environments.resize_with(slots, Environment::default);
        }
    }

    /// Empties environment `index`'s work in this core (a new environment in that slot, or a
    /// deleted one), giving its memory back.
    pub(crate) fn reset_environment(&mut self, index: u32) {
        if let Some(environment) = self.environments.get_mut(index as usize) {
            *environment = Environment::default();
        }
    }

    /// How many work items the core holds, in every state.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn hash(&self, id: WorkKey<'_>) -> u64 {
        hash_of(&self.hasher, id)
    }

    pub(crate) fn key<'a>(&self, work: &'a WorkArg<'_>) -> Key<'a> {
        match work.key() {
            Ok(id) => Key::Id(id, self.hash(id)),
            Err(excerpt) => Key::Malformed(excerpt),
        }
    }

    /// The environment's index, checked as docs/contract.md §3.3 orders: exists (404),
    /// self_hosted (400).
    #[inline]
    pub(crate) fn environment(&self, environment: &impl AsId<EnvironmentId>) -> Result<u32, Error> {
        self.registry.find_self_hosted(environment)
    }

    /// Applies every lapse with a deadline at or before `now` (a lease is valid while
    /// `now < deadline`).
    #[inline]
    pub(crate) fn expire_due(&mut self, now: Timestamp) {
        if !self.deadlines.none_due(now) {
            self.expire_some(now, usize::MAX);
        }
    }

    /// When the core next needs a sweep: the earliest lease deadline. The end of a delivery's
    /// reclaim window is not one: only a poll acts on it, and a poll learns it from
    /// [`Self::next_claimable_at`].
    pub(crate) fn next_wakeup(&self) -> Option<Timestamp> {
        let items = &self.items;
        self.deadlines
            .peek_earliest(|slot| deadline_of(items, slot))
    }

    /// When a poll of `env` with reclaim window `reclaim` (µs) could next hand out an item
    /// from this core, changing nothing (see [`crate::LeaseTable::next_claimable_at`]).
    pub(crate) fn next_claimable_at(
        &self,
        env: u32,
        reclaim: i64,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let environment = &self.environments[env as usize];
        if environment.claimable(reclaim, now).is_some() {
            return Some(now);
        }
        let items = &self.items;
        let lapse_at = self
            .deadlines
            .peek_earliest(|slot| deadline_of(items, slot));
        if lapse_at.is_some_and(|at| at <= now) {
            return Some(now);
        }
        earliest(environment.next_reclaim(reclaim), lapse_at)
    }

    // ---- the operations on one item ----

    pub(crate) fn create(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        id: WorkId,
        hash: u64,
        session: SessionId,
        metadata: Metadata,
        now: Timestamp,
    ) -> Result<WorkItem, Error> {
        let env = self.environment(environment)?;
        let record = self.registry.record(env);
        if record.archived_at.is_some() {
            return Err(Error::EnvironmentArchived {
                environment: record.id.clone(),
            });
        }
        if self.find(id.key(), hash).is_some() {
            return Err(Error::AlreadyExists {
                id: Excerpt::of(&id),
            });
        }
        let slot = u32::try_from(self.items.len()).expect("invariant: fewer than 2^32 items");
        let (hasher, items, texts) = (&self.hasher, &self.items, &self.texts);
        self.work_index.insert(hash, slot, |slot| {
            hash_of(hasher, items[slot as usize].key(texts))
        });
        self.deadlines.reserve_slots(self.items.len() + 1);
        self.items
            .push(Item::new(&id, session, env, now, &mut self.texts));
        self.environments[env as usize].undelivered.insert(id);
        if !metadata.is_empty() {
            self.metadata.insert(slot, metadata);
        }
        self.environments[env as usize].insert_item(slot, &self.items, &self.texts);
        Ok(self.view(slot))
    }

    pub(crate) fn ack(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        worker: Option<&WorkerId>,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, now)?;
        let item = &self.items[slot as usize];
        let owner = match item.phase {
            Phase::Queued { worker, .. } => worker,
            Phase::Starting { holder, .. } | Phase::Active { holder, .. } => holder,
            Phase::Stopping { .. } | Phase::Stopped { .. } => {
                return Err(Error::InvalidState {
                    operation: Operation::Ack,
                    state: item.phase.state(),
                })
            }
        };
        if let (Some(holder), Some(worker)) = (owner, worker) {
            let holder = self.workers.get(holder);
            if holder != worker {
                return Err(Error::WorkerMismatch {
                    holder: holder.clone(),
                    worker: worker.clone(),
                });
            }
        }
        if !matches!(item.phase, Phase::Queued { .. }) {
            return Ok(Updated {
                item: self.view(slot),
                changed: false,
            });
        }
        let ttl = self.config.ack_ttl;
        let holder = match (worker, owner) {
            (Some(worker), _) => Some(self.workers.acquire(worker)),
            (None, Some(owner)) => {
                self.workers.retain(owner);
                Some(owner)
            }
            (None, None) => None,
        };
        self.items[slot as usize].acknowledged_at = Some(now);
        let lease = Phase::Starting {
            deadline: now.saturating_add_micros(ttl.micros()),
            ttl,
            holder,
        };
        self.set_phase(slot, lease);
        Ok(Updated {
            item: self.view(slot),
            changed: true,
        })
    }

    // Inlined into each table's heartbeat: the hot path, one function deep as before the split.
    #[inline]
    pub(crate) fn heartbeat(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        request: HeartbeatRequest,
        now: Timestamp,
    ) -> Result<Heartbeat, Error> {
        let slot = self.locate(environment, key, now)?;
        let default_ttl = self.config.default_ttl;
        let item = &mut self.items[slot as usize];
        let state = item.phase.state();
        let Some(lease) = item.phase.lease() else {
            return Err(Error::InvalidState {
                operation: Operation::Heartbeat,
                state,
            });
        };
        let latest = item.latest_heartbeat_at();
        // docs/contract.md §3.3: a stopping item's heartbeat tells its worker to drain. Its
        // precondition is not compared, so a worker retrying with an older token (or with
        // `NO_HEARTBEAT`) hears "stop" rather than "your lease is lost"; and it renews nothing:
        // the answer is the lease as held, with `lease_extended: false` (the signal the SDKs'
        // lease loops stop on), and an unconfirmed stop still lapses at its deadline. Like any
        // refused heartbeat it is still a changing command: the caller ticked the clock and
        // applied the lapses due at `now` (a stop whose deadline has passed answers 409, as
        // stopped), so a replayed or sharded table answers it the same way.
        if let Phase::Stopping { .. } = item.phase {
            return Ok(Heartbeat {
                last_heartbeat: latest,
                state,
                ttl: lease.ttl,
                ttl_clamped: false,
                deadline: lease.deadline,
                lease_epoch: item.lease_epoch(),
            });
        }
        if !request.precondition.holds(latest) {
            return Err(Error::PreconditionFailed {
                expected: request.precondition,
                current: LeaseSnapshot {
                    last_heartbeat: latest,
                    state,
                    ttl: lease.ttl,
                    deadline: lease.deadline,
                    lease_epoch: item.lease_epoch(),
                },
            });
        }
        let (ttl, ttl_clamped) = request.ttl(default_ttl);
        let token = match item.last_token {
            Some(previous) if previous >= now => previous.next_micro(),
            Some(_) | None => now,
        };
        let deadline = token.saturating_add_micros(ttl.micros());
        item.last_token = Some(token);
        // Renewed in place: same lease and holder, so no index but the deadlines' changes.
        item.phase = match item.phase {
            Phase::Starting { holder, .. } => {
                item.started_at = Some(token);
                Phase::Active {
                    deadline,
                    ttl,
                    holder,
                }
            }
            Phase::Active { holder, .. } => Phase::Active {
                deadline,
                ttl,
                holder,
            },
            // Answered above: a stopping lease is never renewed.
            phase @ (Phase::Queued { .. } | Phase::Stopping { .. } | Phase::Stopped { .. }) => {
                phase
            }
        };
        let state = item.phase.state();
        let lease_epoch = item.lease_epoch();
        self.deadlines.reschedule(slot, lease.deadline, deadline);
        Ok(Heartbeat {
            last_heartbeat: Some(token),
            state,
            ttl,
            ttl_clamped,
            deadline,
            lease_epoch,
        })
    }

    pub(crate) fn stop(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        mode: StopMode,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, now)?;
        let item = &self.items[slot as usize];
        let beaten = item.phase.beaten();
        let phase = match (item.phase, mode) {
            (Phase::Stopped { .. }, _) => {
                return Ok(Updated {
                    item: self.view(slot),
                    changed: false,
                })
            }
            (
                Phase::Starting {
                    deadline,
                    ttl,
                    holder,
                }
                | Phase::Active {
                    deadline,
                    ttl,
                    holder,
                },
                StopMode::Graceful,
            ) => {
                self.stop_requests.insert(slot, now);
                if let Some(holder) = holder {
                    self.workers.retain(holder);
                }
                Phase::Stopping {
                    deadline,
                    ttl,
                    holder,
                    beaten,
                }
            }
            (Phase::Queued { .. } | Phase::Stopping { .. }, StopMode::Graceful)
            | (
                Phase::Queued { .. }
                | Phase::Starting { .. }
                | Phase::Active { .. }
                | Phase::Stopping { .. },
                StopMode::Force,
            ) => Phase::Stopped {
                at: now,
                beaten,
                from_lease: item.phase.lease().is_some(),
            },
        };
        self.set_phase(slot, phase);
        Ok(Updated {
            item: self.view(slot),
            changed: true,
        })
    }

    /// The item as of `at`, changing nothing.
    pub(crate) fn get(
        &self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        at: Timestamp,
    ) -> Result<WorkItem, Error> {
        let slot = self.find_in(environment, key)?;
        Ok(self.view_at(slot, at))
    }

    pub(crate) fn update_metadata(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        patch: &MetadataPatch,
        now: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, now)?;
        let mut metadata = self.metadata.remove(&slot).unwrap_or_default();
        let result = metadata.apply(patch);
        if !metadata.is_empty() {
            self.metadata.insert(slot, metadata);
        }
        let changed = result?;
        Ok(Updated {
            item: self.view(slot),
            changed,
        })
    }

    // ---- internals ----

    /// The item as of `at`: as its lapse would leave it when its lease is past due then
    /// (docs/contract.md §7.2), changing nothing.
    /// The item's [`ItemSummary`] as of `at`, changing nothing: [`Self::get`]'s answer, cut
    /// down, without rendering the whole item.
    pub(crate) fn summary(
        &self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        at: Timestamp,
    ) -> Result<ItemSummary, Error> {
        let slot = self.find_in(environment, key)?;
        let stored = &self.items[slot as usize];
        let lapsed;
        let item = match stored.phase.lease() {
            Some(lease) if lease.deadline <= at => {
                let mut copy = stored.clone();
                copy.phase = copy.lapse(lease.deadline, self.config.max_attempts);
                lapsed = copy;
                &lapsed
            }
            Some(_) | None => stored,
        };
        Ok(ItemSummary {
            state: item.phase.state(),
            lapses: item.lapses,
            lease_epoch: item.lease_epoch(),
            delivered_at: match item.phase {
                Phase::Queued { delivered_at, .. } => delivered_at,
                _ => None,
            },
            worker: item
                .phase
                .worker()
                .map(|worker| self.workers.get(worker).clone()),
        })
    }

    pub(crate) fn view_at(&self, slot: u32, at: Timestamp) -> WorkItem {
        let item = &self.items[slot as usize];
        match item.phase.lease() {
            Some(lease) if lease.deadline <= at => {
                let mut lapsed = item.clone();
                lapsed.phase = lapsed.lapse(lease.deadline, self.config.max_attempts);
                self.render(&lapsed, slot)
            }
            Some(_) | None => self.view(slot),
        }
    }

    fn view(&self, slot: u32) -> WorkItem {
        self.render(&self.items[slot as usize], slot)
    }

    /// `item` (slot `slot`'s, or a changed copy of it) with the table's side data for it.
    fn render(&self, item: &Item, slot: u32) -> WorkItem {
        let context = ItemContext {
            environment_id: &self.registry.record(item.env()).id,
            texts: &self.texts,
            worker: item.phase.worker().map(|worker| self.workers.get(worker)),
            metadata: self.metadata.get(&slot),
            stop_requested_at: self.stop_requests.get(&slot).copied(),
        };
        WorkItem::of(item, context)
    }

    fn find(&self, id: WorkKey<'_>, hash: u64) -> Option<u32> {
        let (items, texts) = (&self.items, &self.texts);
        self.work_index
            .find(hash, |slot| items[slot as usize].key(texts) == id)
    }

    /// The item's slot, after the environment checks; 404 unless it is in that environment.
    /// Applies the item's own lapse if its deadline is at or before `now`.
    fn locate(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        now: Timestamp,
    ) -> Result<u32, Error> {
        let slot = self.find_in(environment, key)?;
        if let Some(lease) = self.items[slot as usize].phase.lease() {
            if lease.deadline <= now {
                self.lapse(slot, lease.deadline);
            }
        }
        Ok(slot)
    }

    /// The item's slot, after the environment checks; 404 unless it is in that environment.
    #[inline]
    fn find_in(&self, environment: &impl AsId<EnvironmentId>, key: Key<'_>) -> Result<u32, Error> {
        let env = self.environment(environment)?;
        let (id, hash) = match key {
            Key::Id(id, hash) => (id, hash),
            Key::Malformed(id) => return Err(Error::WorkNotFound { id }),
        };
        let slot = match self.find(id, hash) {
            Some(slot) if self.items[slot as usize].env() == env => slot,
            _ => {
                // A key received as text quotes that text back (prefix and body as sent).
                return Err(Error::WorkNotFound { id: id.excerpt() });
            }
        };
        Ok(slot)
    }

    /// Moves an item to `phase`, keeping the queue and deadline indexes in step: every state
    /// change but a heartbeat's renewal goes through here.
    fn set_phase(&mut self, slot: u32, phase: Phase) {
        self.set_phase_queueing(slot, phase, true);
    }

    /// [`Self::set_phase`]; with `enter_queue` false, an item that becomes queued is left out
    /// of its environment's queue index, for a caller that adds a batch of them at once
    /// ([`Self::requeue`]) before anything reads the queue.
    fn set_phase_queueing(&mut self, slot: u32, phase: Phase, enter_queue: bool) {
        let item = &mut self.items[slot as usize];
        let old = std::mem::replace(&mut item.phase, phase);
        let env = &mut self.environments[item.env() as usize];
        let was_queued = matches!(old, Phase::Queued { .. });
        let enters_queue = enter_queue && matches!(phase, Phase::Queued { .. });
        if was_queued || enters_queue {
            let id = item.id(&self.texts);
            match old {
                Phase::Queued {
                    delivered_at: None, ..
                } => {
                    env.undelivered.remove(&id);
                }
                Phase::Queued {
                    delivered_at: Some(at),
                    ..
                } => {
                    env.delivered.remove(&(at, id.clone()));
                }
                _ => {}
            }
            match phase {
                Phase::Queued {
                    delivered_at: None, ..
                } if enter_queue => {
                    env.undelivered.insert(id);
                }
                Phase::Queued {
                    delivered_at: Some(at),
                    ..
                } if enter_queue => {
                    env.delivered.insert((at, id));
                }
                _ => {}
            }
        }
        // The new phase's worker reference was taken by the caller; the old one's ends here.
        if let Some(worker) = old.worker() {
            self.workers.release(worker);
        }
        match (old.lease(), phase.lease()) {
            (Some(old), Some(new)) => self.deadlines.reschedule(slot, old.deadline, new.deadline),
            (Some(old), None) => self.deadlines.unschedule(slot, old.deadline),
            (None, Some(new)) => self.deadlines.schedule(slot, new.deadline),
            (None, None) => {}
        }
    }

    /// docs/contract.md §5: starting/active → queued (or stopped when out of attempts); stopping → stopped.
    fn lapse(&mut self, slot: u32, at: Timestamp) {
        self.lapse_into(slot, at, None);
    }

    /// [`Self::lapse`], where an item queued again may leave its environment and the index of
    /// its transition in the journal in `requeued` instead of entering `undelivered` at once:
    /// the caller adds a batch of them together ([`Self::requeue`]) before anything reads the
    /// queue.
    fn lapse_into(&mut self, slot: u32, at: Timestamp, requeued: Option<&mut Vec<(u32, u32)>>) {
        let max_attempts = self.config.max_attempts;
        let item = &mut self.items[slot as usize];
        let from = item.phase.state();
        let phase = item.lapse(at, max_attempts);
        let transition = Transition {
            environment_id: self.registry.record(item.env()).id.clone(),
            work_id: item.id(&self.texts),
            from,
            to: phase.state(),
            at,
            lapses: item.lapses,
        };
        // An item queued again joins its queue with the caller's batch, by the index of its
        // transition in the journal.
        let batched = match requeued {
            Some(requeued) if phase == Phase::NEW => {
                let index = u32::try_from(self.journal.len())
                    .expect("invariant: fewer than 2^32 lapses between sweeps");
                requeued.push((item.env(), index));
                true
            }
            Some(_) | None => false,
        };
        self.set_phase_queueing(slot, phase, !batched);
        self.journal.push(transition);
    }

    /// Adds the ids of the items [`Self::lapse_into`] left in `requeued` to their
    /// environments' queues.
    fn requeue(&mut self, mut requeued: Vec<(u32, u32)>) {
        // Grouped by environment; lapses of one environment are already one run, which the
        // (stable) sort only checks.
        requeued.sort_by_key(|&(env, _)| env);
        let mut rest = requeued.as_slice();
        while let Some(&(env, _)) = rest.first() {
            let run = rest.partition_point(|&(e, _)| e == env);
            let journal = &self.journal;
            let ids = rest[..run]
                .iter()
                .map(|&(_, index)| journal[index as usize].work_id.clone());
            self.environments[env as usize].requeue(ids, run);
            rest = &rest[run..];
        }
    }
}

/// Sorts lapses into the canonical order: ascending `(at, work_id)`.
pub(crate) fn sort_transitions(lapses: &mut [Transition]) {
    // Minted ids order as their 128-bit values: a key of two integers compares without the
    // general id comparison's call and branches.
    if lapses.iter().all(|t| t.work_id.as_u128().is_some()) {
        lapses.sort_unstable_by_key(|t| (t.at, t.work_id.as_u128()));
    } else {
        lapses.sort_unstable_by(|a, b| (a.at, &a.work_id).cmp(&(b.at, &b.work_id)));
    }
}

fn deadline_of(items: &[Item], slot: u32) -> Timestamp {
    items[slot as usize]
        .phase
        .lease()
        .expect("invariant: only leased items are scheduled")
        .deadline
}

pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn millis_to_micros(millis: u64) -> i64 {
    i64::try_from(millis)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}
