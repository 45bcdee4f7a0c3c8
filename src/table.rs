//! [`LeaseTable`]: the whole work-item state machine, single-threaded and deterministic.
//!
//! Every operation takes `now` and first applies every lease lapse due at `now` (docs/contract.md §5), so
//! an operation sees exactly what a sweep at `now` would have left. Lapses found that way are
//! kept in a journal that the next [`LeaseTable::sweep`] returns, so a server that logs
//! transitions misses none. Orders that reach callers (poll, list, sweep) are defined by ids
//! and deadlines, never by hash-map iteration, so the per-table random hash seed never shows.
//!
//! Representation, chosen for the heartbeat (see docs/performance.md): 88-byte
//! items ([`crate::item`]) in one vector addressed by a `u32` slot, with ids packed and rare
//! data (metadata, stop requests) in side maps by slot; the work id → slot index stores
//! 4-byte buckets ([`crate::index`]) and is searched by the id's text, never parsing it;
//! times are `i64` microseconds; the deadline index is a lazy timer wheel
//! ([`crate::deadline`]) where renewing a lease is usually free. A purge
//! ([`LeaseTable::purge_stopped`]) moves the last item into each freed slot. The `*_keyed` operations are the same operations for [`crate::ConcurrentLeaseTable`]'s
//! shards: they take an already hashed id and a `horizon` through which the touched item's own
//! lapse is applied, and leave other items' lapses to bounded catch-up.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::deadline::Deadlines;
use crate::environment::{Environment, Profile};
use crate::environment_keys::ItemSecretKey;
use crate::environment_record::EnvironmentKind;
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot};
use crate::ids::{AsId, EnvironmentId, SessionId, WorkId, WorkKey, WorkerId};
use crate::index::SlotIndex;
use crate::item::{Item, ItemContext, Phase, Texts, Transition, WorkItem, MAX_ENVIRONMENTS};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
use crate::request::{Cursor, ListRequest, PollRequest};
use crate::state::Operation;
use crate::time::Timestamp;
use crate::workers::Workers;

mod environment_keys;
mod environments;
mod parts;
mod purge;
#[cfg(feature = "snapshot")]
pub(crate) mod snapshot;
mod validate;

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

/// One environment's share of a [`QueueStats`], for merging across shards.
#[derive(Clone, Debug)]
pub(crate) struct StatsPart {
    pub(crate) depth: usize,
    pub(crate) pending: usize,
    pub(crate) oldest: Option<(WorkId, Timestamp)>,
}

/// The lease table: environments, work items and their leases, driven by the caller's clock.
///
/// # Examples
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use worklease::*;
///
/// let mut table = LeaseTable::new(Config::default());
/// let t0 = Utc.with_ymd_and_hms(2026, 7, 1, 8, 15, 0).unwrap();
/// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
/// table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), t0)?;
///
/// let Polled::Delivered(item) = table.poll("env_01", &PollRequest::default(), t0)? else {
///     panic!("one item is queued");
/// };
/// table.ack("env_01", &item.id, None, t0)?;
/// let beat = table.heartbeat("env_01", &item.id, HeartbeatRequest::parse(Some("NO_HEARTBEAT"), None)?, t0)?;
/// assert_eq!(beat.state, WorkState::Active);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct LeaseTable {
    config: Config,
    hasher: RandomState,
    /// Environments by their id's canonical text: ids given as text are found without parsing
    /// or allocating, typed ids through their inline text ([`EnvironmentId::excerpt`]).
    environment_index: HashMap<Box<str>, u32, RandomState>,
    environments: Vec<Environment>,
    work_index: SlotIndex,
    items: Vec<Item>,
    /// The text bodies of ids not of the minted shape ([`Item`] packs ids).
    texts: Texts,
    /// The workers items name.
    workers: Workers,
    /// Items' metadata, for the items that have any.
    metadata: HashMap<u32, Metadata, RandomState>,
    /// `stop_requested_at` of the items stopped gracefully.
    stop_requests: HashMap<u32, Timestamp, RandomState>,
    /// Every lease, by deadline.
    deadlines: Deadlines,
    /// Lapses applied since the last sweep.
    journal: Vec<Transition>,
    /// The latest `now` a changing operation ran at (docs/contract.md §7.1).
    clock: Option<Timestamp>,
    /// What item secrets are signed with, once a caller set it ([`crate::ItemSecretKey`]).
    item_secret_key: Option<ItemSecretKey>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl LeaseTable {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Self::with_hasher(config, RandomState::default())
    }

    /// An empty table hashing ids with `hasher` (shards of one concurrent table share one, so
    /// an id is hashed once per call).
    pub(crate) fn with_hasher(config: Config, hasher: RandomState) -> Self {
        Self {
            config,
            hasher,
            environment_index: HashMap::default(),
            environments: Vec::new(),
            work_index: SlotIndex::default(),
            items: Vec::new(),
            texts: Texts::default(),
            workers: Workers::default(),
            metadata: HashMap::default(),
            stop_requests: HashMap::default(),
            deadlines: Deadlines::new(),
            journal: Vec::new(),
            clock: None,
            item_secret_key: None,
        }
    }

    /// The table's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The table's clock: the latest `now` a changing operation was given, `None` before the
    /// first (docs/contract.md §7.1). Changing operations run at `max(clock, now)`, so the table's time
    /// never goes backwards however the caller's clock wanders; reads never move it.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::new(Config::default());
    /// let (t0, t1) = (Timestamp::from_unix_micros(2_000_000), Timestamp::from_unix_micros(1_000_000));
    /// assert_eq!(table.clock(), None);
    /// table.sweep(t0);
    /// table.sweep(t1); // earlier: runs at t0
    /// assert_eq!(table.clock(), Some(t0));
    /// ```
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    /// Moves the clock to `max(clock, now)` and returns it: the instant a changing operation
    /// runs at.
    #[inline]
    pub(crate) fn tick(&mut self, now: Timestamp) -> Timestamp {
        let at = self.at(now);
        self.clock = Some(at);
        at
    }

    /// `max(clock, now)`: the instant a read answers as of.
    #[inline]
    pub(crate) fn at(&self, now: Timestamp) -> Timestamp {
        match self.clock {
            Some(clock) if clock > now => clock,
            Some(_) | None => now,
        }
    }

    /// Applies a command: exactly what the direct method it names answers (docs/contract.md §7.3).
    ///
    /// # Errors
    ///
    /// The direct method's errors.
    ///
    /// # Examples
    ///
    /// See [`Command`](crate::Command).
    pub fn apply(&mut self, stamped: &crate::Stamped) -> Result<crate::Applied, Error> {
        crate::command::apply_command!(self, stamped)
    }

    /// How many work items the table holds, in every state.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the table holds no work item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an environment, named after its id and created at the table's clock (the Unix
    /// epoch before the first changing operation): the shorthand of
    /// [`Self::create_environment`] for embedders that need no record.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when the id is taken.
    pub fn register_environment(
        &mut self,
        id: EnvironmentId,
        kind: EnvironmentKind,
    ) -> Result<(), Error> {
        // No `now` here: a registered environment was created at the table's clock.
        let at = self.clock.unwrap_or(Timestamp::from_unix_micros(0));
        self.register_environment_at(id, kind, at)
    }

    /// [`Self::register_environment`], creating the environment at `at` (a sharded table's
    /// clock).
    pub(crate) fn register_environment_at(
        &mut self,
        id: EnvironmentId,
        kind: EnvironmentKind,
        at: Timestamp,
    ) -> Result<(), Error> {
        let profile = Profile::registered(&id, kind, at);
        self.insert_environment(id, kind, profile).map(drop)
    }

    /// Adds an environment; returns its index, or 409 when the id is taken.
    pub(crate) fn insert_environment(
        &mut self,
        id: EnvironmentId,
        kind: EnvironmentKind,
        profile: Profile,
    ) -> Result<u32, Error> {
        let text = id.excerpt();
        if self.environment_index.contains_key(text.as_str()) {
            return Err(Error::AlreadyExists { id: text });
        }
        assert!(
            self.environments.len() < MAX_ENVIRONMENTS,
            "invariant: fewer than 2^30 environments"
        );
        // Below 2^30, checked just above.
        let index = self.environments.len() as u32;
        self.environment_index.insert(text.as_str().into(), index);
        self.environments.push(Environment::new(id, kind, profile));
        Ok(index)
    }

    /// The kind of an environment, if it exists.
    pub fn environment_kind(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Option<EnvironmentKind> {
        let index = self.environment_slot(&environment).ok()?;
        Some(self.environments[index as usize].kind)
    }

    /// Creates a queued work item. The caller chooses the id (see [`WorkId::mint`]); ids that
    /// sort in creation order make "oldest first" mean what it says.
    ///
    /// # Errors
    ///
    /// 404 for an unknown environment, 400 for a cloud one, [`Error::AlreadyExists`] when the
    /// work id is taken in any environment.
    pub fn create_work(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        id: WorkId,
        session: SessionId,
        metadata: Metadata,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let hash = self.hash(id.key());
        self.create_keyed(&environment, id, hash, session, metadata, now)
    }

    /// Hands out the oldest claimable queued item (docs/contract.md §3.1).
    ///
    /// # Errors
    ///
    /// 404 for an unknown environment, 400 for a cloud one.
    pub fn poll(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        request: &PollRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Polled, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let env = self.environment(&environment)?;
        if let Some(worker) = &request.worker {
            self.environments[env as usize].record_poll(worker, now);
        }
        let reclaim = millis_to_micros(request.reclaim_older_than_ms);
        let chosen = self.environments[env as usize]
            .claimable(reclaim, now)
            .cloned();
        if let Some(id) = chosen {
            let hash = self.hash(id.key());
            let item = self
                .deliver(&id, hash, request, now)
                .expect("invariant: the claimable id is a claimable item");
            return Ok(Polled::Delivered(Box::new(item)));
        }
        let (reclaim_at, lapse_at) = self.next_claimable_parts(env, reclaim);
        Ok(Polled::Empty {
            next_claimable_at: earliest(reclaim_at, lapse_at),
        })
    }

    /// When a [`Self::poll`] of `environment` with this reclaim window could next hand out an
    /// item, changing nothing: at or before `now` when a poll now would (or might: see below),
    /// else the `next_claimable_at` an empty poll now answers. A server checks this after its
    /// read barrier so that only a poll that will deliver becomes a logged command; the
    /// command's own apply still decides (another poll may have taken the item meanwhile).
    ///
    /// A lease past its deadline that no changing operation has lapsed yet makes this answer
    /// `now` (a poll would lapse it first, which is a change worth applying, and may find the
    /// item it requeues); otherwise the answer is exact: `Some(at)` with `at <= now` exactly
    /// when a poll now delivers, and an empty poll's `next_claimable_at` otherwise. A poll
    /// also records its named worker; this does not.
    ///
    /// # Errors
    ///
    /// 404 for an unknown environment, 400 for a cloud one: the errors of [`Self::poll`], in
    /// the same order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use worklease::{Config, LeaseTable, EnvironmentKind, PollRequest, Timestamp};
    /// let mut table = LeaseTable::new(Config::default());
    /// let now = Timestamp::from_unix_micros(1_000_000);
    /// let env = "env_a";
    /// table.register_environment(env.parse().unwrap(), EnvironmentKind::SelfHosted).unwrap();
    /// let window = PollRequest::DEFAULT_RECLAIM_OLDER_THAN_MS;
    /// assert_eq!(table.next_claimable_at(env, window, now).unwrap(), None);
    /// ```
    pub fn next_claimable_at(
        &self,
        environment: impl AsId<EnvironmentId>,
        reclaim_older_than_ms: u64,
        now: impl Into<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        let now = self.at(now.into());
        let env = self.environment(&environment)?;
        let reclaim = millis_to_micros(reclaim_older_than_ms);
        let environment = &self.environments[env as usize];
        if environment.claimable(reclaim, now).is_some() {
            return Ok(Some(now));
        }
        let items = &self.items;
        let lapse_at = self
            .deadlines
            .peek_earliest(|slot| deadline_of(items, slot));
        if lapse_at.is_some_and(|at| at <= now) {
            return Ok(Some(now));
        }
        Ok(earliest(environment.next_reclaim(reclaim), lapse_at))
    }

    /// Acknowledges an item: queued → starting, opening a lease with the ack TTL (docs/contract.md §3.2).
    ///
    /// # Errors
    ///
    /// 404/400 for the environment, 404 for the item, [`Error::WorkerMismatch`] when the item
    /// was delivered to or is held by another named worker, [`Error::InvalidState`] for a
    /// stopping or stopped item.
    pub fn ack(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        worker: Option<&WorkerId>,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let work = WorkArg::of(&work);
        self.ack_keyed(&environment, self.key(&work), worker, now, now)
    }

    /// Renews the lease of a starting or active item; tells a stopping item's worker to drain
    /// (docs/contract.md §3.3).
    ///
    /// The new token is `now` to the microsecond, or one microsecond past the item's previous
    /// token when `now` did not advance, so tokens never repeat. On a stopping item the
    /// precondition is not compared and nothing changes: the answer is the lease as held, with
    /// [`Heartbeat::lease_extended`] `false`, and the stop lapses to stopped at its deadline
    /// unless the worker confirms it first.
    ///
    /// # Errors
    ///
    /// In the contract's order (docs/contract.md): 404 (environment), 400 (cloud), 404 (item), [`Error::InvalidState`] for
    /// a queued or stopped item, [`Error::PreconditionFailed`] when the precondition does not
    /// hold on a starting or active item (the error carries the lease as held). Parameter errors (400) come from
    /// [`HeartbeatRequest::parse`], before this call. Never allocates (ids given as text must
    /// then be of the minted, 32-hex-digit shape, or they are parsed into shared text), unless
    /// leases lapse on the way.
    pub fn heartbeat(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        request: HeartbeatRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Heartbeat, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let work = WorkArg::of(&work);
        self.heartbeat_keyed(&environment, self.key(&work), request, now, now)
    }

    /// Stops an item, gracefully or by force (docs/contract.md §3.4). Stopping a stopped item returns it
    /// unchanged.
    ///
    /// # Errors
    ///
    /// 404/400 for the environment, 404 for the item.
    pub fn stop(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        mode: StopMode,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let work = WorkArg::of(&work);
        self.stop_keyed(&environment, self.key(&work), mode, now, now)
    }

    /// One item, as of `max(clock, now)`: a lease past due then is shown as its lapse would
    /// leave the item, though only changing operations apply lapses (docs/contract.md §7.2).
    ///
    /// # Errors
    ///
    /// 404/400 for the environment, 404 for the item.
    pub fn get(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        let work = WorkArg::of(&work);
        self.get_keyed(&environment, self.key(&work), self.at(now.into()))
    }

    /// A page of an environment's items in ascending id order, every state (docs/contract.md §3.5), as
    /// of `max(clock, now)` (see [`Self::get`]).
    ///
    /// # Errors
    ///
    /// 404/400 for the environment.
    pub fn list(
        &self,
        environment: impl AsId<EnvironmentId>,
        request: &ListRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Page, Error> {
        let env = self.environment(&environment)?;
        let (data, has_more) = self.list_in(env, request, self.at(now.into()));
        let forward = !matches!(request.cursor, Cursor::Before(_));
        Ok(Page::of(data, has_more, forward))
    }

    /// Merges a metadata patch into an item, in any state; never changes the state.
    ///
    /// # Errors
    ///
    /// 404/400 for the environment, 404 for the item, 400 (`metadata`) when the result would
    /// break a [`Metadata`] limit (the item is then unchanged).
    pub fn update_metadata(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        patch: &MetadataPatch,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let work = WorkArg::of(&work);
        self.update_metadata_keyed(&environment, self.key(&work), patch, now)
    }

    /// An environment's queue statistics, with the configured reclaim window, as of
    /// `max(clock, now)` (see [`Self::get`]).
    ///
    /// # Errors
    ///
    /// 404/400 for the environment.
    pub fn stats(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<QueueStats, Error> {
        let now = self.at(now.into());
        let env = self.environment(&environment)?;
        let workers_polling = self.pollers(env, now);
        let part = self.stats_part(env, now);
        Ok(QueueStats {
            depth: part.depth,
            pending: part.pending,
            oldest_queued_at: part.oldest.map(|(_, at)| at),
            workers_polling,
        })
    }

    /// Applies every lapse due at `now` and returns all lapses since the previous sweep
    /// (including those operations applied on the way), in canonical order: ascending
    /// `(at, work_id)`. The order does not depend on when each lapse was noticed, so a
    /// [`crate::ConcurrentLeaseTable`] returns the same list.
    pub fn sweep(&mut self, now: impl Into<Timestamp>) -> Vec<Transition> {
        let now = self.tick(now.into());
        self.expire_due(now);
        let mut lapses = self.take_journal();
        sort_transitions(&mut lapses);
        lapses
    }

    /// When the table next needs attention without any request: the earliest lease deadline
    /// or end of a delivery's reclaim window (with the configured window). A server's sweeper
    /// sleeps until then (or until an operation changes it).
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let reclaim = millis_to_micros(self.config.reclaim_older_than_ms);
        let items = &self.items;
        let lapse = self
            .deadlines
            .peek_earliest(|slot| deadline_of(items, slot));
        let redelivery = self
            .environments
            .iter()
            .filter_map(|env| env.next_reclaim(reclaim))
            .min();
        earliest(lapse, redelivery)
    }

    // ---- the operations on one item, shared with the concurrent table's shards ----

    pub(crate) fn hash(&self, id: WorkKey<'_>) -> u64 {
        hash_of(&self.hasher, id)
    }

    fn key<'a>(&self, work: &'a WorkArg<'_>) -> Key<'a> {
        match work.key() {
            Ok(id) => Key::Id(id, self.hash(id)),
            Err(excerpt) => Key::Malformed(excerpt),
        }
    }

    pub(crate) fn create_keyed(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        id: WorkId,
        hash: u64,
        session: SessionId,
        metadata: Metadata,
        now: Timestamp,
    ) -> Result<WorkItem, Error> {
        let env = self.environment(environment)?;
        let profile = &self.environments[env as usize].profile;
        if profile.archived_at.is_some() {
            return Err(Error::EnvironmentArchived {
                environment: self.environments[env as usize].id.clone(),
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

    pub(crate) fn ack_keyed(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        worker: Option<&WorkerId>,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, horizon)?;
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

    pub(crate) fn heartbeat_keyed(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        request: HeartbeatRequest,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<Heartbeat, Error> {
        let slot = self.locate(environment, key, horizon)?;
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

    pub(crate) fn stop_keyed(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        mode: StopMode,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, horizon)?;
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
    pub(crate) fn get_keyed(
        &self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        at: Timestamp,
    ) -> Result<WorkItem, Error> {
        let slot = self.find_in(environment, key)?;
        Ok(self.view_at(slot, at))
    }

    pub(crate) fn update_metadata_keyed(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        patch: &MetadataPatch,
        horizon: Timestamp,
    ) -> Result<Updated, Error> {
        let slot = self.locate(environment, key, horizon)?;
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
            environment_id: &self.environments[item.env() as usize].id,
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
    /// Applies the item's own lapse if its deadline is at or before `horizon`.
    fn locate(
        &mut self,
        environment: &impl AsId<EnvironmentId>,
        key: Key<'_>,
        horizon: Timestamp,
    ) -> Result<u32, Error> {
        let slot = self.find_in(environment, key)?;
        if let Some(lease) = self.items[slot as usize].phase.lease() {
            if lease.deadline <= horizon {
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

    /// Applies every lapse with a deadline at or before `now` (a lease is valid while
    /// `now < deadline`).
    #[inline]
    fn expire_due(&mut self, now: Timestamp) {
        if !self.deadlines.none_due(now) {
            self.expire_some(now, usize::MAX);
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
            environment_id: self.environments[item.env() as usize].id.clone(),
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
