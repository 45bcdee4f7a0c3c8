//! [`ConcurrentLeaseTable`]: the lease table for multi-threaded servers.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use foldhash::fast::RandomState;

use crate::clock::Clock;
use crate::environment_keys::{EnvironmentKey, ItemSecretKey, KeyDigest};
use crate::environment_record::EnvironmentKind;
use crate::environment_record::{
    EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord, NewEnvironment,
};
use crate::error::Error;
use crate::heartbeat::{Heartbeat, HeartbeatRequest};
use crate::ids::WorkKey;
use crate::ids::{AsId, EnvironmentId, EnvironmentKeyId, SessionId, WorkId, WorkerId};
use crate::item::{Transition, WorkItem};
use crate::item_summary::ItemSummary;
use crate::lease_core::{
    earliest, environments, hash_of, merge_pages, millis_to_micros, sort_transitions,
    InvariantViolation, Key, LeaseCore, StatsPart, WorkArg,
};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
use crate::registry::Registry;
use crate::request::{ListRequest, PollRequest};
use crate::time::Timestamp;

/// One shard, alone on its cache lines so two threads on two shards never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    core: Mutex<LeaseCore>,
}

/// A [`crate::LeaseTable`] for many threads: the same operations on `&self`, sharded by work id.
///
/// Every method locks one shard at a time and returns owned values.
///
/// # Design
///
/// - **Shards.** The table is a fixed number of shards, each the same per-item core a
///   [`crate::LeaseTable`] is built on (items, queues, deadlines), behind its own
///   `parking_lot` mutex on its own cache lines. A work id is hashed once per call; the top
///   bits of that hash pick the shard and the same hash finds the item inside it. Every
///   operation on one item (create, ack, heartbeat, stop, get, metadata) locks exactly that
///   shard, once, and returns owned values: no guard escapes.
/// - **Environments** live in one registry all shards share (one `Arc`: each record is held
///   once, whatever the shard count). An environment operation takes all shard locks, in
///   index order (so it is atomic and cannot deadlock with anything else, which never holds
///   two locks), and hands every shard the changed registry; it is the same code a
///   [`crate::LeaseTable`] runs on its one core. Each shard checks the environment itself, so
///   docs/contract.md §3.3's check order holds. Named pollers are recorded in shard 0 only,
///   which answers `workers_polling`.
/// - **Lazy expiry, bounded.** A single-item operation applies only the touched item's own
///   lapse (its deadline against the table clock): the answer about one item depends on no
///   other item, so this is exactly what the single table would answer, in O(1). Polls,
///   purges and sweeps first catch every shard up, at most [`Self::CHUNK`] lapses per lock
///   hold, releasing the lock between chunks so heartbeats interleave. Lapses applied either
///   way are journaled in their shard and returned once by [`Self::sweep`], in the canonical
///   `(at, work_id)` order, identical to [`crate::LeaseTable::sweep`]. Reads (get, list, stats)
///   apply none: they show a past-due lease as its lapse would leave the item (docs/contract.md §7.2).
/// - **Poll** asks each shard for its lowest claimable id of the environment, then locks the
///   shard of the lowest one and delivers it if it is still claimable (another poller may have
///   taken it meanwhile: then it asks again). `next_claimable_at` is the minimum over shards.
/// - **List and stats** merge per-shard answers, each as of the same instant, with the
///   functions a [`crate::LeaseTable`] merges its one answer with: list pages are merged by
///   id and cut to the limit; stats add depths and take the lowest-id queued item.
/// - Operations that visit several shards (poll, list, stats) start again when an
///   environment operation changed the registry between two of their lock holds, so they
///   never mix two registries' environment indexes.
///
/// The table has one clock (docs/contract.md §7.1), an atomic maximum every changing operation moves
/// before it locks a shard, so every operation runs at the same `max(clock, now)` the single
/// table would: applied one at a time, the two answer alike, whatever the caller's clock does.
/// Reads lock shards but change nothing a snapshot holds (docs/contract.md §7.2).
///
/// One bound is looser than [`Self::CHUNK`]: when a chunk reaches a second of the deadline
/// wheel that was not yet drained, that whole second's leases move into the exact-deadline
/// set under the same lock hold (see docs/performance.md for measured holds).
///
/// # Threads
///
/// `ConcurrentLeaseTable` is `Send` and `Sync` (checked at compile time): share it between
/// threads behind an `Arc` or by reference; every method takes `&self`.
///
/// # Examples
///
/// ```
/// use worklease::*;
///
/// let table = ConcurrentLeaseTable::new(Config::default());
/// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
/// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
/// let work: WorkId = "work_01".parse()?;
/// table.create_work("env_01", work.clone(), "sess_01".parse()?, Metadata::new(), t0)?;
/// table.ack("env_01", &work, None, t0)?;
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| table.heartbeat("env_01", &work, HeartbeatRequest::default(), t0));
///     }
/// });
/// assert_eq!(table.get("env_01", &work, t0)?.state, WorkState::Active);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ConcurrentLeaseTable {
    config: Config,
    hasher: RandomState,
    shards: Box<[Shard]>,
    /// `hash >> shift` is the shard index.
    shift: u32,
    /// The table's clock.
    clock: Clock,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ConcurrentLeaseTable>();
};

/// A copy of the whole table as of one instant: every shard lock is taken, in index order (as
/// registration does), before any shard is copied.
impl Clone for ConcurrentLeaseTable {
    fn clone(&self) -> Self {
        let guards = self.lock_all();
        let shards = guards
            .iter()
            .map(|core| Shard {
                core: Mutex::new((*core).clone()),
            })
            .collect();
        Self {
            config: self.config,
            hasher: self.hasher.clone(),
            shards,
            shift: self.shift,
            clock: self.clock.clone(),
        }
    }
}

impl Default for ConcurrentLeaseTable {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl ConcurrentLeaseTable {
    /// Shards of a table built with [`ConcurrentLeaseTable::new`].
    pub const DEFAULT_SHARDS: usize = 64;
    /// Most lapses applied under one lock hold by catch-up and sweeps.
    pub const CHUNK: usize = 1024;

    /// An empty table with [`Self::DEFAULT_SHARDS`] shards.
    pub fn new(config: Config) -> Self {
        Self::with_shards(config, Self::DEFAULT_SHARDS)
    }

    /// An empty table with `shards` shards, rounded up to a power of two (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Config, ConcurrentLeaseTable};
    /// let table = ConcurrentLeaseTable::with_shards(Config::default(), 3);
    /// assert_eq!(table.shard_count(), 4);
    /// ```
    pub fn with_shards(config: Config, shards: usize) -> Self {
        let count = shards.clamp(1, 1 << 16).next_power_of_two();
        let hasher = RandomState::default();
        let registry = Arc::new(Registry::default());
        let shards = (0..count)
            .map(|_| Shard {
                core: Mutex::new(LeaseCore::new(
                    config,
                    hasher.clone(),
                    Arc::clone(&registry),
                )),
            })
            .collect();
        Self {
            config,
            hasher,
            shards,
            // count is a power of two ≤ 2^16, so this is 64 - log2(count) ∈ 48..=64.
            shift: 64 - count.trailing_zeros(),
            clock: Clock::new(None),
        }
    }

    /// The table's clock (see [`crate::LeaseTable::clock`]).
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock.read()
    }

    /// Applies a command (see [`crate::LeaseTable::apply`]).
    ///
    /// # Errors
    ///
    /// The direct method's errors.
    pub fn apply(&self, stamped: &crate::Stamped) -> Result<crate::Applied, Error> {
        crate::command::apply_command!(self, stamped)
    }

    /// Moves the clock to `max(clock, now)` and returns it: the instant a changing operation
    /// runs at.
    #[inline]
    fn tick(&self, now: Timestamp) -> Timestamp {
        self.clock.tick(now)
    }

    /// `max(clock, now)`: the instant a read answers as of.
    fn at(&self, now: Timestamp) -> Timestamp {
        self.clock.at(now)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The table's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many work items the table holds, in every state.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.core.lock().len()).sum()
    }

    /// Whether the table holds no work item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an environment (see [`crate::LeaseTable::register_environment`]).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when the id is taken.
    pub fn register_environment(
        &self,
        id: EnvironmentId,
        kind: EnvironmentKind,
    ) -> Result<(), Error> {
        let at = self.clock.or_epoch();
        environments::register(&mut self.lock_all_cores(None).cores(), id, kind, at)
    }

    /// Creates an environment (see [`crate::LeaseTable::create_environment`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::create_environment`].
    pub fn create_environment(
        &self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        environments::create(&mut self.lock_all_cores(Some(now)).cores(), id, new, now)
    }

    /// One environment (see [`crate::LeaseTable::retrieve_environment`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::retrieve_environment`].
    pub fn retrieve_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Result<EnvironmentRecord, Error> {
        let registry = self.registry();
        let index = registry.find(&environment)?;
        Ok(registry.record(index).clone())
    }

    /// A page of environments (see [`crate::LeaseTable::list_environments`]).
    pub fn list_environments(&self, request: &EnvironmentListRequest) -> EnvironmentPage {
        self.registry().list(request)
    }

    /// Updates an environment (see [`crate::LeaseTable::update_environment`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::update_environment`].
    pub fn update_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        patch: &EnvironmentPatch,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        let mut cores = self.lock_all_cores(Some(now));
        environments::update(&mut cores.cores(), &environment, patch, now)
    }

    /// Archives an environment (see [`crate::LeaseTable::archive_environment`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::archive_environment`].
    pub fn archive_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        environments::archive(
            &mut self.lock_all_cores(Some(now)).cores(),
            &environment,
            now,
        )
    }

    /// Adds a key to an environment (see [`crate::LeaseTable::create_environment_key`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::create_environment_key`].
    pub fn create_environment_key(
        &self,
        environment: impl AsId<EnvironmentId>,
        id: EnvironmentKeyId,
        name: Option<String>,
        digest: KeyDigest,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKey, Error> {
        let now = self.tick(now.into());
        let key = EnvironmentKey::new(id, name, digest, now);
        environments::create_key(
            &mut self.lock_all_cores(Some(now)).cores(),
            &environment,
            key,
        )
    }

    /// Revokes an environment's key (see [`crate::LeaseTable::revoke_environment_key`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::revoke_environment_key`].
    pub fn revoke_environment_key(
        &self,
        environment: impl AsId<EnvironmentId>,
        key: &str,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKeyId, Error> {
        let now = self.tick(now.into());
        environments::revoke_key(
            &mut self.lock_all_cores(Some(now)).cores(),
            &environment,
            key,
        )
    }

    /// Sets the item-secret key in every shard, unless one is set (see
    /// [`crate::LeaseTable::set_item_secret_key`]).
    pub fn set_item_secret_key(&self, key: ItemSecretKey, now: impl Into<Timestamp>) {
        let now = self.tick(now.into());
        for mut core in self.lock_all_cores(Some(now)).0 {
            core.item_secret_key.get_or_insert(key);
        }
    }

    /// The item-secret key, once one was set (see [`crate::LeaseTable::item_secret_key`]).
    pub fn item_secret_key(&self) -> Option<ItemSecretKey> {
        self.shards[0].core.lock().item_secret_key
    }

    /// Deletes an environment and its items from every shard at once (see
    /// [`crate::LeaseTable::delete_environment`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::delete_environment`].
    pub fn delete_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentId, Error> {
        let now = self.tick(now.into());
        environments::delete(&mut self.lock_all_cores(Some(now)).cores(), &environment)
    }

    /// Every shard's lock, taken in index order (as every operation that takes more than one
    /// does, so none can deadlock).
    fn lock_all(&self) -> Vec<MutexGuard<'_, LeaseCore>> {
        self.shards.iter().map(|s| s.core.lock()).collect()
    }

    /// [`Self::lock_all`], each shard caught up to `now` when given: an environment operation
    /// sees and changes all shards at one instant.
    fn lock_all_cores(&self, now: Option<Timestamp>) -> AllCores<'_> {
        let mut guards = self.lock_all();
        if let Some(now) = now {
            for guard in &mut guards {
                guard.expire_some(now, usize::MAX);
            }
        }
        AllCores(guards)
    }

    /// The table's environment registry (shard 0's, which every shard shares).
    fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.shards[0].core.lock().registry)
    }

    /// The kind of an environment, if it exists.
    pub fn environment_kind(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Option<EnvironmentKind> {
        let registry = self.registry();
        let index = registry.find(&environment).ok()?;
        Some(registry.record(index).kind)
    }

    /// Creates a queued work item (see [`crate::LeaseTable::create_work`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::create_work`].
    pub fn create_work(
        &self,
        environment: impl AsId<EnvironmentId>,
        id: WorkId,
        session: SessionId,
        metadata: Metadata,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        let now = self.tick(now.into());
        let hash = self.hash(id.key());
        let mut core = self.shard(hash).core.lock();
        core.create(&environment, id, hash, session, metadata, now)
    }

    /// Hands out the oldest claimable queued item of the environment, across all shards
    /// (see [`crate::LeaseTable::poll`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::poll`].
    pub fn poll(
        &self,
        environment: impl AsId<EnvironmentId>,
        request: &PollRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Polled, Error> {
        let now = self.tick(now.into());
        let reclaim = millis_to_micros(request.reclaim_older_than_ms);
        let mut caught_up = false;
        // Each pass resolves the environment; a pass that meets a changed registry starts
        // again (environment operations are rare, so this almost never loops).
        'resolve: loop {
            let (env, registry) = {
                let mut home = self.shards[0].core.lock();
                let env = home.environment(&environment)?;
                if let Some(worker) = &request.worker {
                    home.record_poll(env, worker, now);
                }
                (env, Arc::clone(&home.registry))
            };
            loop {
                let mut best: Option<WorkId> = None;
                let mut moved = false;
                let mut consider = |core: &mut LeaseCore| {
                    if !Arc::ptr_eq(&core.registry, &registry) {
                        moved = true;
                    } else if let Some(id) = core.claimable(env, reclaim, now) {
                        if best.as_ref().map_or(true, |b| id < *b) {
                            best = Some(id);
                        }
                    }
                };
                if caught_up {
                    self.shards
                        .iter()
                        .for_each(|s| consider(&mut s.core.lock()));
                } else {
                    self.for_each_caught_up(now, consider);
                    caught_up = true;
                }
                if moved {
                    continue 'resolve;
                }
                let Some(id) = best else { break };
                let hash = self.hash(id.key());
                let delivered = {
                    let mut core = self.shard(hash).core.lock();
                    if !Arc::ptr_eq(&core.registry, &registry) {
                        continue 'resolve;
                    }
                    core.deliver(env, &id, hash, request, now)
                };
                if let Some(item) = delivered {
                    return Ok(Polled::Delivered(Box::new(item)));
                }
                // Another poller took it between the two looks: look again.
            }
            let mut next_claimable_at = None;
            for shard in self.shards.iter() {
                let mut core = shard.core.lock();
                if !Arc::ptr_eq(&core.registry, &registry) {
                    continue 'resolve;
                }
                let (reclaim_at, lapse_at) = core.next_claimable_parts(env, reclaim);
                next_claimable_at = earliest(next_claimable_at, earliest(reclaim_at, lapse_at));
            }
            return Ok(Polled::Empty { next_claimable_at });
        }
    }

    /// When a poll of `environment` could next hand out an item, the earliest over shards,
    /// changing nothing (see [`crate::LeaseTable::next_claimable_at`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::next_claimable_at`].
    pub fn next_claimable_at(
        &self,
        environment: impl AsId<EnvironmentId>,
        reclaim_older_than_ms: u64,
        now: impl Into<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        let now = self.at(now.into());
        let reclaim = millis_to_micros(reclaim_older_than_ms);
        let parts = self.each_shard_of(
            &environment,
            |_, _| {},
            |core, env| core.next_claimable_at(env, reclaim, now),
        )?;
        Ok(parts.into_iter().fold(None, earliest))
    }

    /// Acknowledges an item (see [`crate::LeaseTable::ack`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::ack`].
    pub fn ack(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        worker: Option<&WorkerId>,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |core, key| core.ack(&environment, key, worker, now))
    }

    /// Renews a lease (see [`crate::LeaseTable::heartbeat`]): one shard lock, no allocation.
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::heartbeat`].
    pub fn heartbeat(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        request: HeartbeatRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Heartbeat, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |core, key| {
            core.heartbeat(&environment, key, request, now)
        })
    }

    /// Stops an item (see [`crate::LeaseTable::stop`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::stop`].
    pub fn stop(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        mode: StopMode,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |core, key| core.stop(&environment, key, mode, now))
    }

    /// One item (see [`crate::LeaseTable::get`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::get`].
    pub fn get(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        let at = self.at(now.into());
        self.with_item(&work, |core, key| core.get(&environment, key, at))
    }

    /// One item's [`ItemSummary`] (see [`crate::LeaseTable::summary`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::get`].
    pub fn summary(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<ItemSummary, Error> {
        let at = self.at(now.into());
        self.with_item(&work, |core, key| core.summary(&environment, key, at))
    }

    /// A page of an environment's items in ascending id order, merged across shards (see
    /// [`crate::LeaseTable::list`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::list`].
    pub fn list(
        &self,
        environment: impl AsId<EnvironmentId>,
        request: &ListRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Page, Error> {
        let at = self.at(now.into());
        let parts = self.each_shard_of(
            &environment,
            |_, _| {},
            |core, env| core.list_in(env, request, at),
        )?;
        Ok(merge_pages(parts, request))
    }

    /// Merges a metadata patch into an item (see [`crate::LeaseTable::update_metadata`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::update_metadata`].
    pub fn update_metadata(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        patch: &MetadataPatch,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |core, key| {
            core.update_metadata(&environment, key, patch, now)
        })
    }

    /// An environment's queue statistics, merged across shards (see
    /// [`crate::LeaseTable::stats`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::stats`].
    pub fn stats(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<QueueStats, Error> {
        let now = self.at(now.into());
        let mut workers_polling = 0;
        let parts = self.each_shard_of(
            &environment,
            |home, env| workers_polling = home.pollers(env, now),
            |core, env| core.stats_part(env, now),
        )?;
        let merged = parts
            .into_iter()
            .fold(StatsPart::default(), StatsPart::merge);
        Ok(merged.into_stats(workers_polling))
    }

    /// Removes every stopped item whose `stopped_at` is before `before` (see
    /// [`crate::LeaseTable::purge_stopped`]); returns how many. Shard by shard: each shard is
    /// caught up to `now` in bounded chunks, then purged under one lock hold.
    pub fn purge_stopped(&self, before: impl Into<Timestamp>, now: impl Into<Timestamp>) -> usize {
        let before = before.into();
        let mut purged = 0;
        let now = self.tick(now.into());
        self.for_each_caught_up(now, |core| purged += core.purge_stopped(before));
        purged
    }

    /// Applies every lapse due at `now` and returns all lapses since the previous sweep, in
    /// ascending `(at, work_id)` order (as [`crate::LeaseTable::sweep`]). Works shard by shard, at
    /// most [`Self::CHUNK`] lapses per lock hold.
    pub fn sweep(&self, now: impl Into<Timestamp>) -> Vec<Transition> {
        let now = self.tick(now.into());
        let mut lapses = Vec::new();
        for shard in 0..self.shards.len() {
            while !self.sweep_chunk(shard, now, Self::CHUNK, &mut lapses) {}
        }
        sort_transitions(&mut lapses);
        lapses
    }

    /// One bounded step of a sweep, under one lock hold: applies up to `budget` lapses due at
    /// `now` in shard `shard`, appends them and every lapse the shard applied earlier (in no
    /// particular order) to `lapses`, and says whether the shard has none left. A server may
    /// drive its own sweeper with this instead of [`Self::sweep`].
    ///
    /// # Panics
    ///
    /// When `shard` is not below [`Self::shard_count`].
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Config, ConcurrentLeaseTable, Timestamp};
    /// let table = ConcurrentLeaseTable::new(Config::default());
    /// let mut lapses = Vec::new();
    /// for shard in 0..table.shard_count() {
    ///     while !table.sweep_chunk(shard, Timestamp::MAX, 64, &mut lapses) {}
    /// }
    /// assert!(lapses.is_empty());
    /// ```
    pub fn sweep_chunk(
        &self,
        shard: usize,
        now: impl Into<Timestamp>,
        budget: usize,
        lapses: &mut Vec<Transition>,
    ) -> bool {
        let (done, journal) = {
            let now = self.tick(now.into());
            let mut core = self.shards[shard].core.lock();
            let done = core.expire_some(now, budget);
            (done, core.take_journal())
        };
        // Outside the lock: growing a large `lapses` may copy it.
        lapses.extend(journal);
        done
    }

    /// When the table next needs a sweep: the minimum over shards of what
    /// [`crate::LeaseTable::next_wakeup`] answers for one (the earliest lease deadline).
    ///
    /// Shards apply lapses lazily and separately, so this may be an instant already past: a
    /// lapse is due that no call has applied yet, and the sweeper should run at once. It is
    /// never later than the single table's answer for the same calls; after a `sweep(now)` it
    /// equals it.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.shards
            .iter()
            .map(|s| s.core.lock().next_wakeup())
            .fold(None, earliest)
    }

    /// The table's whole state as canonical bytes: exactly the bytes a [`crate::LeaseTable`]
    /// fed the same commands gives (see [`crate::LeaseTable::snapshot`]), whatever the shard
    /// count.
    ///
    /// Takes every shard lock, in index order (as registration does), applies in each shard
    /// the lapses due at the table's clock that no call has applied yet (what the single
    /// table would already have applied), and writes the shards as one table. Operations wait
    /// meanwhile; one that moved the clock before the snapshot took its shard's lock is
    /// reflected in the clock but not yet in its item (as if it had run just after).
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let table = ConcurrentLeaseTable::new(Config::default());
    /// let single = LeaseTable::new(Config::default());
    /// assert_eq!(table.snapshot(), single.snapshot());
    /// let restored = ConcurrentLeaseTable::restore_with_shards(&table.snapshot(), 4)?;
    /// assert_eq!(restored.shard_count(), 4);
    /// # Ok::<(), SnapshotError>(())
    /// ```
    #[cfg(feature = "snapshot")]
    #[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
    pub fn snapshot(&self) -> Vec<u8> {
        let clock = self.clock();
        let guards = self.lock_all_cores(clock).0;
        let cores: Vec<&LeaseCore> = guards.iter().map(|core| &**core).collect();
        crate::table::snapshot::encode(&cores, self.config, clock)
    }

    /// The table a snapshot holds (of either table kind), with [`Self::DEFAULT_SHARDS`]
    /// shards and a fresh hash seed (see [`crate::LeaseTable::restore`]).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::restore`].
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    /// let bytes = LeaseTable::new(Config::default()).snapshot();
    /// let table = ConcurrentLeaseTable::restore(&bytes)?;
    /// assert_eq!(table.shard_count(), ConcurrentLeaseTable::DEFAULT_SHARDS);
    /// # Ok::<(), SnapshotError>(())
    /// ```
    #[cfg(feature = "snapshot")]
    #[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
    pub fn restore(bytes: &[u8]) -> Result<Self, crate::SnapshotError> {
        Self::restore_with_shards(bytes, Self::DEFAULT_SHARDS)
    }

    /// [`Self::restore`] into `shards` shards, rounded up to a power of two (at least 1).
    ///
    /// # Errors
    ///
    /// As [`crate::LeaseTable::restore`].
    ///
    /// # Examples
    ///
    /// See [`Self::snapshot`].
    #[cfg(feature = "snapshot")]
    #[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
    pub fn restore_with_shards(bytes: &[u8], shards: usize) -> Result<Self, crate::SnapshotError> {
        let count = shards.clamp(1, 1 << 16).next_power_of_two();
        let hasher = RandomState::default();
        let restored = crate::table::snapshot::decode(bytes, hasher.clone(), count)?;
        Ok(Self {
            config: restored.config,
            hasher,
            shards: restored
                .cores
                .into_iter()
                .map(|core| Shard {
                    core: Mutex::new(core),
                })
                .collect(),
            // count is a power of two ≤ 2^16, so this is 64 - log2(count) ∈ 48..=64.
            shift: 64 - count.trailing_zeros(),
            clock: Clock::new(restored.clock),
        })
    }

    /// Checks every shard's invariants, and that all share one registry: a testing aid (see
    /// [`crate::LeaseTable::validate`]).
    ///
    /// # Errors
    ///
    /// The first broken invariant found: a bug in this crate.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        let guards = self.lock_all();
        for (shard, core) in guards.iter().enumerate() {
            let shared = Arc::ptr_eq(&core.registry, &guards[0].registry);
            let checked = if shared {
                core.validate()
            } else {
                Err(InvariantViolation::RegistryNotShared)
            };
            checked.map_err(|violation| InvariantViolation::Shard {
                shard,
                violation: Box::new(violation),
            })?;
        }
        Ok(())
    }

    fn hash(&self, id: WorkKey<'_>) -> u64 {
        hash_of(&self.hasher, id)
    }

    fn shard(&self, hash: u64) -> &Shard {
        // A shift of 64 (one shard) would overflow: checked_shr gives shard 0.
        let index = hash.checked_shr(self.shift).unwrap_or(0) as usize;
        &self.shards[index]
    }

    /// Runs `f` on the shard of `work`, with the item's key. A malformed id goes to shard 0,
    /// which checks the environment and answers 404.
    fn with_item<R>(
        &self,
        work: &impl AsId<WorkId>,
        f: impl FnOnce(&mut LeaseCore, Key<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let work = WorkArg::of(work);
        let (shard, key) = match work.key() {
            Ok(id) => {
                let hash = self.hash(id);
                (self.shard(hash), Key::Id(id, hash))
            }
            Err(excerpt) => (&self.shards[0], Key::Malformed(excerpt)),
        };
        f(&mut shard.core.lock(), key)
    }

    /// Runs `f` on every shard (in index order, one lock hold each) with the index of
    /// `environment`, checked in shard 0 (404, 400), where `home` runs first under the same
    /// hold. Starts again when an environment operation changes the registry in between, so
    /// every answer is about the same environment.
    fn each_shard_of<R>(
        &self,
        environment: &impl AsId<EnvironmentId>,
        mut home: impl FnMut(&mut LeaseCore, u32),
        mut f: impl FnMut(&mut LeaseCore, u32) -> R,
    ) -> Result<Vec<R>, Error> {
        'resolve: loop {
            let mut parts = Vec::with_capacity(self.shards.len());
            let (env, registry) = {
                let mut core = self.shards[0].core.lock();
                let env = core.environment(environment)?;
                home(&mut core, env);
                parts.push(f(&mut core, env));
                (env, Arc::clone(&core.registry))
            };
            for shard in &self.shards[1..] {
                let mut core = shard.core.lock();
                if !Arc::ptr_eq(&core.registry, &registry) {
                    continue 'resolve;
                }
                parts.push(f(&mut core, env));
            }
            return Ok(parts);
        }
    }

    /// Visits every shard once it has no lapse due at `now`, applying due lapses at most
    /// [`Self::CHUNK`] per lock hold first; `f` runs under the same hold as the last chunk.
    fn for_each_caught_up(&self, now: Timestamp, mut f: impl FnMut(&mut LeaseCore)) {
        for shard in self.shards.iter() {
            loop {
                let mut core = shard.core.lock();
                if core.expire_some(now, Self::CHUNK) {
                    f(&mut core);
                    break;
                }
            }
        }
    }
}

/// Every shard's core, locked: what an environment operation runs on.
struct AllCores<'t>(Vec<MutexGuard<'t, LeaseCore>>);

impl AllCores<'_> {
    /// The cores, as the environment operations take them.
    fn cores(&mut self) -> Vec<&mut LeaseCore> {
        self.0.iter_mut().map(|guard| &mut **guard).collect()
    }
}
