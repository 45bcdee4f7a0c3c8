//! [`LeaseTable`]: the whole work-item state machine, single-threaded and deterministic.
//!
//! Every changing operation takes `now`, moves the table's clock ([`Clock`]) and first applies
//! every lease lapse due then (docs/contract.md §5), so an operation sees exactly what a sweep
//! at `now` would have left. Lapses found that way are kept in a journal that the next
//! [`LeaseTable::sweep`] returns, so a server that logs transitions misses none. The table is
//! one [`LeaseCore`] (items, queues, deadlines) and a clock; the environment operations and
//! the merging of poll, list and stats answers are the core's, shared with
//! [`crate::ConcurrentLeaseTable`].

use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::clock::Clock;
use crate::environment_record::EnvironmentKind;
use crate::error::Error;
use crate::heartbeat::{Heartbeat, HeartbeatRequest};
use crate::ids::{AsId, EnvironmentId, SessionId, WorkId, WorkerId};
use crate::item::{Transition, WorkItem};
use crate::item_summary::ItemSummary;
use crate::lease_core::{
    earliest, environments as shared, merge_pages, millis_to_micros, sort_transitions,
    InvariantViolation, LeaseCore, WorkArg,
};
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
use crate::request::{ListRequest, PollRequest};
use crate::time::Timestamp;

mod environment_keys;
mod environments;
#[cfg(feature = "snapshot")]
pub(crate) mod snapshot;

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
///
/// # Threads
///
/// `LeaseTable` is `Send` and `Sync` (checked at compile time): it may move to another thread
/// or sit behind a lock, and its reads (`&self`) may run from many threads at once. Changing
/// operations take `&mut self`; for many threads changing one table, see
/// [`crate::ConcurrentLeaseTable`].
#[derive(Clone, Debug)]
pub struct LeaseTable {
    core: LeaseCore,
    /// The latest `now` a changing operation ran at (docs/contract.md §7.1).
    clock: Clock,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LeaseTable>();
};
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

    /// An empty table hashing ids with `hasher`.
    pub(crate) fn with_hasher(config: Config, hasher: RandomState) -> Self {
        Self {
            core: LeaseCore::new(config, hasher, Arc::default()),
            clock: Clock::new(None),
        }
    }

    /// The table made of `core` with its clock at `clock` (a restored snapshot's).
    #[cfg(feature = "snapshot")]
    pub(crate) fn of_core(core: LeaseCore, clock: Option<Timestamp>) -> Self {
        Self {
            core,
            clock: Clock::new(clock),
        }
    }

    /// The table's core.
    #[cfg(feature = "snapshot")]
    pub(crate) fn core(&self) -> &LeaseCore {
        &self.core
    }

    /// The table's settings.
    pub fn config(&self) -> &Config {
        &self.core.config
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
        self.clock.read()
    }

    /// Moves the clock to `max(clock, now)`, applies the lapses due then and returns it: the
    /// instant a changing operation runs at, with the table as a sweep then would leave it.
    #[inline]
    fn tick(&mut self, now: Timestamp) -> Timestamp {
        let now = self.clock.tick_mut(now);
        self.core.expire_due(now);
        now
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
        self.core.len()
    }

    /// Whether the table holds no work item.
    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
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
        let at = self.clock.or_epoch();
        shared::register(&mut [&mut self.core], id, kind, at)
    }

    /// The kind of an environment, if it exists.
    pub fn environment_kind(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Option<EnvironmentKind> {
        let index = self.core.registry.find(&environment).ok()?;
        Some(self.core.registry.record(index).kind)
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
        let hash = self.core.hash(id.key());
        self.core
            .create(&environment, id, hash, session, metadata, now)
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
        let core = &mut self.core;
        let env = core.environment(&environment)?;
        if let Some(worker) = &request.worker {
            core.record_poll(env, worker, now);
        }
        let reclaim = millis_to_micros(request.reclaim_older_than_ms);
        if let Some(id) = core.claimable(env, reclaim, now) {
            let hash = core.hash(id.key());
            let item = core
                .deliver(env, &id, hash, request, now)
                .expect("invariant: the claimable id is a claimable item");
            return Ok(Polled::Delivered(Box::new(item)));
        }
        let (reclaim_at, lapse_at) = core.next_claimable_parts(env, reclaim);
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
        let now = self.clock.at(now.into());
        let env = self.core.environment(&environment)?;
        let reclaim = millis_to_micros(reclaim_older_than_ms);
        Ok(self.core.next_claimable_at(env, reclaim, now))
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
        let work = WorkArg::of(&work);
        let key = self.core.key(&work);
        self.core.ack(&environment, key, worker, now)
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
        let work = WorkArg::of(&work);
        let key = self.core.key(&work);
        self.core.heartbeat(&environment, key, request, now)
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
        let work = WorkArg::of(&work);
        let key = self.core.key(&work);
        self.core.stop(&environment, key, mode, now)
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
        let at = self.clock.at(now.into());
        self.core.get(&environment, self.core.key(&work), at)
    }

    /// What [`Self::get`] would answer, cut down to the [`ItemSummary`]: state, lapses,
    /// `lease_epoch`, delivery and worker. Allocates nothing (ids given as text as for
    /// [`Self::heartbeat`]), so a check on every request can afford it.
    ///
    /// # Errors
    ///
    /// As [`Self::get`].
    pub fn summary(
        &self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<ItemSummary, Error> {
        let work = WorkArg::of(&work);
        let at = self.clock.at(now.into());
        self.core.summary(&environment, self.core.key(&work), at)
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
        let env = self.core.environment(&environment)?;
        let at = self.clock.at(now.into());
        Ok(merge_pages([self.core.list_in(env, request, at)], request))
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
        let work = WorkArg::of(&work);
        let key = self.core.key(&work);
        self.core.update_metadata(&environment, key, patch, now)
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
        let now = self.clock.at(now.into());
        let env = self.core.environment(&environment)?;
        let workers_polling = self.core.pollers(env, now);
        Ok(self.core.stats_part(env, now).into_stats(workers_polling))
    }

    /// Applies every lapse due at `now` and returns all lapses since the previous sweep
    /// (including those operations applied on the way), in canonical order: ascending
    /// `(at, work_id)`. The order does not depend on when each lapse was noticed, so a
    /// [`crate::ConcurrentLeaseTable`] returns the same list.
    pub fn sweep(&mut self, now: impl Into<Timestamp>) -> Vec<Transition> {
        self.tick(now.into());
        let mut lapses = self.core.take_journal();
        sort_transitions(&mut lapses);
        lapses
    }

    /// When the table next needs a sweep: the earliest lease deadline. A server's sweeper
    /// sleeps until then (or until an operation moves it earlier).
    ///
    /// The end of a delivery's reclaim window is not a wake-up: a sweep does nothing there
    /// (only a poll hands the item out again), so a sweeper woken for it would find the same
    /// instant still past and spin. A long poll waits for it instead, from the
    /// `next_claimable_at` its empty answer carries ([`Self::next_claimable_at`]).
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.core.next_wakeup()
    }

    /// Removes every stopped item whose `stopped_at` is before `before`, after applying the
    /// lapses due at `now`; returns how many it removed.
    ///
    /// A purged item is gone: `get` answers 404 and its id may be created again. Lapses
    /// already journaled for it are still returned by the next [`LeaseTable::sweep`]. Costs
    /// one pass over the table's items plus, per purged item, a few index updates; a server
    /// runs it now and then (say, hourly, keeping a day of history).
    ///
    /// # Examples
    ///
    /// ```
    /// use chrono::{Duration, TimeZone, Utc};
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::new(Config::default());
    /// let t0 = Utc.with_ymd_and_hms(2026, 7, 1, 8, 15, 0).unwrap();
    /// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
    /// table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), t0)?;
    /// table.stop("env_01", "work_01", StopMode::Force, t0)?;
    ///
    /// let day_later = t0 + Duration::days(1);
    /// assert_eq!(table.purge_stopped(day_later - Duration::hours(1), day_later), 1);
    /// assert_eq!(table.get("env_01", "work_01", day_later).unwrap_err().status(), 404);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge_stopped(
        &mut self,
        before: impl Into<Timestamp>,
        now: impl Into<Timestamp>,
    ) -> usize {
        // A changing operation: it runs at `max(clock, now)` and moves the clock (docs/contract.md §7.1),
        // as the sharded table's does, so both snapshot the same clock.
        self.tick(now.into());
        self.core.purge_stopped(before.into())
    }

    /// Checks every internal invariant: a testing aid for embedders' own tests and fuzzers
    /// (see the crate's front page, "Testing"); a table the public API built always passes.
    ///
    /// # Errors
    ///
    /// The first broken invariant found: a bug in this crate.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        self.core.validate()
    }
}
