//! [`ConcurrentLeaseTable`]: the lease table for multi-threaded servers.

use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

use foldhash::fast::RandomState;

use crate::environment_keys::{EnvironmentKey, ItemSecretKey, KeyDigest};
use crate::environment_record::EnvironmentKind;
use crate::environment_record::{
    EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord, NewEnvironment,
};
use crate::error::Error;
use crate::excerpt::Excerpt;
use crate::heartbeat::{Heartbeat, HeartbeatRequest};
use crate::ids::WorkKey;
use crate::ids::{AsId, EnvironmentId, EnvironmentKeyId, SessionId, WorkId, WorkerId};
use crate::item::{Transition, WorkItem};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
use crate::request::{Cursor, ListRequest, PollRequest};
use crate::table::{
    earliest, hash_of, millis_to_micros, sort_transitions, Key, LeaseTable, WorkArg,
};
use crate::time::Timestamp;

/// One shard, alone on its cache lines so two threads on two shards never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    table: Mutex<LeaseTable>,
}

/// [`ConcurrentLeaseTable::clock`] before the first changing operation.
const NO_CLOCK: i64 = i64::MIN;

/// A [`LeaseTable`] for many threads: the same operations on `&self`, sharded by work id.
///
/// Every method locks one shard at a time and returns owned values.
///
/// # Design
///
/// - **Shards.** The table is a fixed number of [`LeaseTable`] shards, each behind its own
///   `parking_lot` mutex on its own cache lines. A work id is hashed once per call; the top
///   bits of that hash pick the shard and the same hash finds the item inside it. Every
///   operation on one item (create, ack, heartbeat, stop, get, metadata) locks exactly that
///   shard, once, and returns owned values: no guard escapes.
/// - **Environments** are registered in every shard (under all shard locks, taken in index
///   order, so registration is atomic and cannot deadlock with anything else, which never holds
///   two locks). Each shard checks the environment itself, so docs/contract.md §3.3's check order holds.
///   Named pollers are recorded in shard 0 only, which answers `workers_polling`.
/// - **Lazy expiry, bounded.** A single-item operation applies only the touched item's own
///   lapse (its deadline against the table clock): the answer about one item depends on no
///   other item, so this is exactly what the single table would answer, in O(1). Polls,
///   purges and sweeps first catch every shard up, at most [`Self::CHUNK`] lapses per lock
///   hold, releasing the lock between chunks so heartbeats interleave. Lapses applied either
///   way are journaled in their shard and returned once by [`Self::sweep`], in the canonical
///   `(at, work_id)` order, identical to [`LeaseTable::sweep`]. Reads (get, list, stats)
///   apply none: they show a past-due lease as its lapse would leave the item (docs/contract.md §7.2).
/// - **Poll** asks each shard for its lowest claimable id of the environment, then locks the
///   shard of the lowest one and delivers it if it is still claimable (another poller may have
///   taken it meanwhile: then it asks again). `next_claimable_at` is the minimum over shards.
/// - **List and stats** merge per-shard answers, each as of the same instant: list pages are merged by id and cut to the
///   limit; stats add depths and take the lowest-id queued item.
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
    /// The table's clock in microseconds, [`NO_CLOCK`] before the first changing operation.
    clock: AtomicI64,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ConcurrentLeaseTable>();
};

/// A copy of the whole table as of one instant: every shard lock is taken, in index order (as
/// registration does), before any shard is copied.
impl Clone for ConcurrentLeaseTable {
    fn clone(&self) -> Self {
        let guards: Vec<_> = self.shards.iter().map(|shard| shard.table.lock()).collect();
        let shards = guards
            .iter()
            .map(|table| Shard {
                table: Mutex::new((*table).clone()),
            })
            .collect();
        Self {
            config: self.config,
            hasher: self.hasher.clone(),
            shards,
            shift: self.shift,
            clock: AtomicI64::new(self.clock.load(Ordering::Acquire)),
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
        let shards = (0..count)
            .map(|_| Shard {
                table: Mutex::new(LeaseTable::with_hasher(config, hasher.clone())),
            })
            .collect();
        Self {
            config,
            hasher,
            shards,
            // count is a power of two ≤ 2^16, so this is 64 - log2(count) ∈ 48..=64.
            shift: 64 - count.trailing_zeros(),
            clock: AtomicI64::new(NO_CLOCK),
        }
    }

    /// The table's clock (see [`LeaseTable::clock`]).
    pub fn clock(&self) -> Option<Timestamp> {
        match self.clock.load(Ordering::Acquire) {
            NO_CLOCK => None,
            micros => Some(Timestamp::from_unix_micros(micros)),
        }
    }

    /// Applies a command (see [`LeaseTable::apply`]).
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
        let micros = now.unix_micros();
        // A load first: a clock already ahead (or equal) needs no write to a shared line.
        let clock = self.clock.load(Ordering::Acquire);
        if clock >= micros {
            return Timestamp::from_unix_micros(clock);
        }
        let previous = self.clock.fetch_max(micros, Ordering::AcqRel);
        Timestamp::from_unix_micros(previous.max(micros))
    }

    /// `max(clock, now)`: the instant a read answers as of.
    fn at(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_micros(self.clock.load(Ordering::Acquire).max(now.unix_micros()))
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
        self.shards.iter().map(|s| s.table.lock().len()).sum()
    }

    /// Whether the table holds no work item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an environment, to every shard at once.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when the id is taken.
    pub fn register_environment(
        &self,
        id: EnvironmentId,
        kind: EnvironmentKind,
    ) -> Result<(), Error> {
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.table.lock()).collect();
        let (first, rest) = guards
            .split_first_mut()
            .expect("invariant: at least one shard");
        if first.environment_kind(&id).is_some() {
            return Err(Error::AlreadyExists {
                id: Excerpt::of(&id),
            });
        }
        let at = self.clock().unwrap_or(Timestamp::from_unix_micros(0));
        for guard in rest {
            guard
                .register_environment_at(id.clone(), kind, at)
                .expect("invariant: shards register the same environments");
        }
        first.register_environment_at(id, kind, at)
    }

    /// Creates an environment in every shard at once (see [`LeaseTable::create_environment`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::create_environment`].
    pub fn create_environment(
        &self,
        id: EnvironmentId,
        new: NewEnvironment,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        new.check()?;
        self.with_every_shard(now, |shards| {
            let (first, rest) = shards
                .split_first_mut()
                .expect("invariant: at least one shard");
            if first.environment_kind(&id).is_some() {
                return Err(Error::AlreadyExists {
                    id: Excerpt::of(&id),
                });
            }
            for shard in rest {
                shard
                    .create_environment_in_shard(id.clone(), new.clone(), now)
                    .expect("invariant: shards hold the same environments");
            }
            first.create_environment_in_shard(id, new, now)
        })
    }

    /// One environment (see [`LeaseTable::retrieve_environment`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::retrieve_environment`].
    pub fn retrieve_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Result<EnvironmentRecord, Error> {
        self.shards[0]
            .table
            .lock()
            .retrieve_environment(environment)
    }

    /// A page of environments (see [`LeaseTable::list_environments`]).
    pub fn list_environments(&self, request: &EnvironmentListRequest) -> EnvironmentPage {
        self.shards[0].table.lock().list_environments(request)
    }

    /// Updates an environment in every shard at once (see [`LeaseTable::update_environment`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::update_environment`].
    pub fn update_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        patch: &EnvironmentPatch,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        patch.check()?;
        self.with_every_shard(now, |shards| {
            let index = shards[0].environment_slot(&environment)?;
            let profile = shards[0].updated_profile(index, patch, now)?;
            for shard in shards.iter_mut() {
                shard.set_profile(index, profile.clone());
            }
            shards[0].retrieve_environment(&environment)
        })
    }

    /// Archives an environment in every shard at once (see [`LeaseTable::archive_environment`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::archive_environment`].
    pub fn archive_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentRecord, Error> {
        let now = self.tick(now.into());
        self.with_every_shard(now, |shards| {
            let index = shards[0].environment_slot(&environment)?;
            for shard in shards.iter_mut() {
                shard.archive_in_shard(index, now);
            }
            shards[0].retrieve_environment(&environment)
        })
    }

    /// Adds a key to an environment in every shard at once (see
    /// [`LeaseTable::create_environment_key`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::create_environment_key`].
    pub fn create_environment_key(
        &self,
        environment: impl AsId<EnvironmentId>,
        id: EnvironmentKeyId,
        name: Option<String>,
        digest: KeyDigest,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKey, Error> {
        let now = self.tick(now.into());
        self.with_every_shard(now, |shards| {
            let index = shards[0].environment_slot(&environment)?;
            let key = EnvironmentKey::new(id, name, digest, now);
            for shard in shards.iter_mut() {
                shard.add_key_in_shard(index, key.clone())?;
            }
            Ok(key)
        })
    }

    /// Revokes an environment's key in every shard at once (see
    /// [`LeaseTable::revoke_environment_key`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::revoke_environment_key`].
    pub fn revoke_environment_key(
        &self,
        environment: impl AsId<EnvironmentId>,
        key: &str,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentKeyId, Error> {
        let now = self.tick(now.into());
        self.with_every_shard(now, |shards| {
            let index = shards[0].environment_slot(&environment)?;
            let mut revoked = Err(Error::EnvironmentKeyNotFound {
                id: crate::excerpt::Excerpt::new(key),
            });
            for shard in shards.iter_mut() {
                revoked = shard.remove_key_in_shard(index, key);
            }
            revoked
        })
    }

    /// Sets the item-secret key in every shard, unless one is set (see
    /// [`LeaseTable::set_item_secret_key`]).
    pub fn set_item_secret_key(&self, key: ItemSecretKey, now: impl Into<Timestamp>) {
        let now = self.tick(now.into());
        let set: Result<(), Error> = self.with_every_shard(now, |shards| {
            for shard in shards.iter_mut() {
                shard.set_item_secret_key_in_shard(key);
            }
            Ok(())
        });
        set.expect("invariant: setting the item-secret key cannot fail");
    }

    /// The item-secret key, once one was set (see [`LeaseTable::item_secret_key`]).
    pub fn item_secret_key(&self) -> Option<ItemSecretKey> {
        self.shards[0].table.lock().item_secret_key().copied()
    }

    /// Deletes an environment and its items from every shard at once (see
    /// [`LeaseTable::delete_environment`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::delete_environment`].
    pub fn delete_environment(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<EnvironmentId, Error> {
        let now = self.tick(now.into());
        self.with_every_shard(now, |shards| {
            let index = shards[0].environment_slot(&environment)?;
            let leased = shards.iter().map(|shard| shard.leased_in(index)).sum();
            if leased > 0 {
                return Err(Error::EnvironmentInUse {
                    environment: shards[0].retrieve_environment(&environment)?.id,
                    leased,
                });
            }
            let mut deleted = None;
            for shard in shards.iter_mut() {
                deleted = Some(shard.delete_in_shard(index));
            }
            Ok(deleted.expect("invariant: at least one shard"))
        })
    }

    /// Runs `f` with every shard locked (in index order, as registration does) and caught up
    /// to `now`: an environment operation sees and changes all shards at one instant.
    fn with_every_shard<R>(
        &self,
        now: Timestamp,
        f: impl FnOnce(&mut [parking_lot::MutexGuard<'_, LeaseTable>]) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.table.lock()).collect();
        for guard in &mut guards {
            guard.expire_some(now, usize::MAX);
        }
        f(&mut guards)
    }

    /// The kind of an environment, if it exists.
    pub fn environment_kind(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Option<EnvironmentKind> {
        self.shards[0].table.lock().environment_kind(environment)
    }

    /// Creates a queued work item (see [`LeaseTable::create_work`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::create_work`].
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
        let mut shard = self.shard(hash).table.lock();
        shard.create_keyed(&environment, id, hash, session, metadata, now)
    }

    /// Hands out the oldest claimable queued item of the environment, across all shards
    /// (see [`LeaseTable::poll`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::poll`].
    pub fn poll(
        &self,
        environment: impl AsId<EnvironmentId>,
        request: &PollRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Polled, Error> {
        let now = self.tick(now.into());
        let env = {
            let mut home = self.shards[0].table.lock();
            let env = home.environment(&environment)?;
            if let Some(worker) = &request.worker {
                home.record_poll(env, worker, now);
            }
            env
        };
        let reclaim = millis_to_micros(request.reclaim_older_than_ms);
        let mut caught_up = false;
        loop {
            let mut best: Option<WorkId> = None;
            let mut consider = |table: &mut LeaseTable| {
                if let Some(id) = table.claimable(env, reclaim, now) {
                    if best.as_ref().map_or(true, |b| id < *b) {
                        best = Some(id);
                    }
                }
            };
            if caught_up {
                self.shards
                    .iter()
                    .for_each(|s| consider(&mut s.table.lock()));
            } else {
                self.for_each_caught_up(now, consider);
                caught_up = true;
            }
            let Some(id) = best else { break };
            let hash = self.hash(id.key());
            let delivered = self
                .shard(hash)
                .table
                .lock()
                .deliver(&id, hash, request, now);
            if let Some(item) = delivered {
                return Ok(Polled::Delivered(Box::new(item)));
            }
            // Another poller took it between the two looks: look again.
        }
        let next_claimable_at = self
            .shards
            .iter()
            .map(|s| {
                let (reclaim_at, lapse_at) = s.table.lock().next_claimable_parts(env, reclaim);
                earliest(reclaim_at, lapse_at)
            })
            .fold(None, earliest);
        Ok(Polled::Empty { next_claimable_at })
    }

    /// Acknowledges an item (see [`LeaseTable::ack`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::ack`].
    pub fn ack(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        worker: Option<&WorkerId>,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |table, key| {
            table.ack_keyed(&environment, key, worker, now, now)
        })
    }

    /// Renews a lease (see [`LeaseTable::heartbeat`]): one shard lock, no allocation.
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::heartbeat`].
    pub fn heartbeat(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        request: HeartbeatRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Heartbeat, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |table, key| {
            table.heartbeat_keyed(&environment, key, request, now, now)
        })
    }

    /// Stops an item (see [`LeaseTable::stop`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::stop`].
    pub fn stop(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        mode: StopMode,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |table, key| {
            table.stop_keyed(&environment, key, mode, now, now)
        })
    }

    /// One item (see [`LeaseTable::get`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::get`].
    pub fn get(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        let at = self.at(now.into());
        self.with_item(&work, |table, key| table.get_keyed(&environment, key, at))
    }

    /// A page of an environment's items in ascending id order, merged across shards (see
    /// [`LeaseTable::list`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::list`].
    pub fn list(
        &self,
        environment: impl AsId<EnvironmentId>,
        request: &ListRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Page, Error> {
        let at = self.at(now.into());
        let env = self.shards[0].table.lock().environment(&environment)?;
        let limit = request.limit.clamp(1, ListRequest::MAX_LIMIT);
        let mut data = Vec::new();
        let mut has_more = false;
        for shard in self.shards.iter() {
            let (items, more) = shard.table.lock().list_in(env, request, at);
            data.extend(items);
            has_more |= more;
        }
        data.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        has_more |= data.len() > limit;
        let forward = !matches!(request.cursor, Cursor::Before(_));
        if forward {
            data.truncate(limit);
        } else {
            data.drain(..data.len().saturating_sub(limit));
        }
        Ok(Page::of(data, has_more, forward))
    }

    /// Merges a metadata patch into an item (see [`LeaseTable::update_metadata`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::update_metadata`].
    pub fn update_metadata(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        patch: &MetadataPatch,
        now: impl Into<Timestamp>,
    ) -> Result<Updated, Error> {
        let now = self.tick(now.into());
        self.with_item(&work, |table, key| {
            table.update_metadata_keyed(&environment, key, patch, now)
        })
    }

    /// An environment's queue statistics, merged across shards (see [`LeaseTable::stats`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::stats`].
    pub fn stats(
        &self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<QueueStats, Error> {
        let now = self.at(now.into());
        let (env, workers_polling) = {
            let home = self.shards[0].table.lock();
            let env = home.environment(&environment)?;
            (env, home.pollers(env, now))
        };
        let mut stats = QueueStats {
            depth: 0,
            pending: 0,
            oldest_queued_at: None,
            workers_polling,
        };
        let mut oldest: Option<(WorkId, Timestamp)> = None;
        for shard in self.shards.iter() {
            let part = shard.table.lock().stats_part(env, now);
            stats.depth += part.depth;
            stats.pending += part.pending;
            if let Some(candidate) = part.oldest {
                if oldest.as_ref().map_or(true, |(id, _)| candidate.0 < *id) {
                    oldest = Some(candidate);
                }
            }
        }
        stats.oldest_queued_at = oldest.map(|(_, at)| at);
        Ok(stats)
    }

    /// Removes every stopped item whose `stopped_at` is before `before` (see
    /// [`LeaseTable::purge_stopped`]); returns how many. Shard by shard: each shard is caught
    /// up to `now` in bounded chunks, then purged under one lock hold.
    pub fn purge_stopped(&self, before: impl Into<Timestamp>, now: impl Into<Timestamp>) -> usize {
        let before = before.into();
        let mut purged = 0;
        let now = self.tick(now.into());
        self.for_each_caught_up(now, |table| purged += table.purge_stopped_in(before));
        purged
    }

    /// Applies every lapse due at `now` and returns all lapses since the previous sweep, in
    /// ascending `(at, work_id)` order (as [`LeaseTable::sweep`]). Works shard by shard, at
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
            let mut table = self.shards[shard].table.lock();
            let done = table.expire_some(now, budget);
            (done, table.take_journal())
        };
        // Outside the lock: growing a large `lapses` may copy it.
        lapses.extend(journal);
        done
    }

    /// When the table next needs attention without any request: the minimum of every shard's
    /// [`LeaseTable::next_wakeup`].
    ///
    /// Shards apply lapses lazily and separately, so this may be an instant already past: a
    /// lapse is due that no call has applied yet, and the sweeper should run at once. It is
    /// never later than the single table's answer for the same calls; after a `sweep(now)` it
    /// equals it.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.shards
            .iter()
            .map(|s| s.table.lock().next_wakeup())
            .fold(None, earliest)
    }

    /// The table's whole state as canonical bytes: exactly the bytes a [`LeaseTable`] fed the
    /// same commands gives (see [`LeaseTable::snapshot`]), whatever the shard count.
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
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.table.lock()).collect();
        let clock = self.clock();
        if let Some(clock) = clock {
            for table in &mut guards {
                table.expire_some(clock, usize::MAX);
            }
        }
        let tables: Vec<&LeaseTable> = guards.iter().map(|table| &**table).collect();
        crate::table::snapshot::encode(&tables, self.config, clock)
    }

    /// The table a snapshot holds (of either table kind), with [`Self::DEFAULT_SHARDS`]
    /// shards and a fresh hash seed (see [`LeaseTable::restore`]).
    ///
    /// # Errors
    ///
    /// As [`LeaseTable::restore`].
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
    /// As [`LeaseTable::restore`].
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
                .tables
                .into_iter()
                .map(|table| Shard {
                    table: Mutex::new(table),
                })
                .collect(),
            // count is a power of two ≤ 2^16, so this is 64 - log2(count) ∈ 48..=64.
            shift: 64 - count.trailing_zeros(),
            clock: AtomicI64::new(restored.clock.map_or(NO_CLOCK, Timestamp::unix_micros)),
        })
    }

    /// Checks every shard's invariants; for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn validate(&self) -> Result<(), String> {
        for (index, shard) in self.shards.iter().enumerate() {
            shard
                .table
                .lock()
                .validate()
                .map_err(|e| format!("shard {index}: {e}"))?;
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
        f: impl FnOnce(&mut LeaseTable, Key<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let work = WorkArg::of(work);
        let (shard, key) = match work.key() {
            Ok(id) => {
                let hash = self.hash(id);
                (self.shard(hash), Key::Id(id, hash))
            }
            Err(excerpt) => (&self.shards[0], Key::Malformed(excerpt)),
        };
        f(&mut shard.table.lock(), key)
    }

    /// Visits every shard once it has no lapse due at `now`, applying due lapses at most
    /// [`Self::CHUNK`] per lock hold first; `f` runs under the same hold as the last chunk.
    fn for_each_caught_up(&self, now: Timestamp, mut f: impl FnMut(&mut LeaseTable)) {
        for shard in self.shards.iter() {
            loop {
                let mut table = shard.table.lock();
                if table.expire_some(now, Self::CHUNK) {
                    f(&mut table);
                    break;
                }
            }
        }
    }
}
