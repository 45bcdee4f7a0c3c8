//! [`LeaseTable`]: the whole work-item state machine, single-threaded and deterministic.
//!
//! Every operation takes `now` and first applies every lease lapse due at `now` (SPEC §5), so
//! an operation sees exactly what a sweep at `now` would have left. Lapses found that way are
//! kept in a journal that the next [`LeaseTable::sweep`] returns, so a server that logs
//! transitions misses none. Orders that reach callers (poll, list, sweep) are defined by ids
//! and deadlines, never by hash-map iteration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::ops::Bound;

use crate::error::{Error, Excerpt};
use crate::heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot};
use crate::ids::{AsId, EnvironmentId, SessionId, WorkId, WorkerId};
use crate::item::{Delivery, Item, Lease, Phase, Transition, WorkItem};
use crate::metadata::{Metadata, MetadataPatch};
use crate::request::{Cursor, ListRequest, PollRequest};
use crate::state::Operation;
use crate::time::Timestamp;
use crate::ttl::Ttl;

/// How long a worker counts as polling after its last poll (SPEC §3.5 `workers_polling`).
const POLLING_WINDOW_MICROS: i64 = 30_000_000;

/// Whether an environment runs its own workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvironmentKind {
    /// `self_hosted`: workers poll this table.
    SelfHosted,
    /// `cloud`: every work operation is refused with 400.
    Cloud,
}

impl EnvironmentKind {
    /// The kind as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SelfHosted => "self_hosted",
            Self::Cloud => "cloud",
        }
    }
}

/// A table's settings. Every field is valid by construction ([`Ttl`] cannot be out of range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The TTL of a heartbeat that names none (SPEC §4; 60 s).
    pub default_ttl: Ttl,
    /// The TTL of the lease an ack opens (SPEC §4; 60 s).
    pub ack_ttl: Ttl,
    /// After this many lapses an item is stopped instead of queued again; `None`: no limit.
    pub max_attempts: Option<NonZeroU32>,
    /// The reclaim window that [`LeaseTable::stats`] and [`LeaseTable::next_wakeup`] assume
    /// (polls bring their own); 5000 ms.
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

/// How a stop ends the work (SPEC §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StopMode {
    /// Ask the holder to drain: active and starting items go to `stopping`; a stopping item
    /// is confirmed `stopped`.
    #[default]
    Graceful,
    /// Any live item goes to `stopped` at once.
    Force,
}

/// A page of a list (SPEC §3.5).
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

#[derive(Clone, Debug)]
struct Environment {
    id: EnvironmentId,
    kind: EnvironmentKind,
    /// Every item, by id: list order.
    items: BTreeMap<WorkId, u32>,
    /// Queued items no poll has handed out (since creation or the last lapse).
    undelivered: BTreeSet<WorkId>,
    /// Queued items a poll handed out, by delivery time.
    delivered: BTreeSet<(Timestamp, WorkId)>,
    /// Each named worker's last poll, both ways round so old entries can be dropped in order.
    pollers: HashMap<WorkerId, Timestamp>,
    polls: BTreeSet<(Timestamp, WorkerId)>,
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
    environment_index: HashMap<EnvironmentId, u32>,
    environments: Vec<Environment>,
    work_index: HashMap<WorkId, u32>,
    items: Vec<Item>,
    /// Every lease, by deadline: lapses are taken from the front.
    deadlines: BTreeSet<(Timestamp, u32)>,
    /// Lapses applied since the last sweep, oldest first.
    journal: Vec<Transition>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl LeaseTable {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            environment_index: HashMap::new(),
            environments: Vec::new(),
            work_index: HashMap::new(),
            items: Vec::new(),
            deadlines: BTreeSet::new(),
            journal: Vec::new(),
        }
    }

    /// The table's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many work items the table holds, in every state.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the table holds no work item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an environment.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when the id is taken.
    pub fn register_environment(
        &mut self,
        id: EnvironmentId,
        kind: EnvironmentKind,
    ) -> Result<(), Error> {
        if self.environment_index.contains_key(&id) {
            return Err(Error::AlreadyExists {
                id: Excerpt::of(&id),
            });
        }
        let index = u32::try_from(self.environments.len())
            .expect("invariant: fewer than 2^32 environments");
        self.environment_index.insert(id.clone(), index);
        self.environments.push(Environment {
            id,
            kind,
            items: BTreeMap::new(),
            undelivered: BTreeSet::new(),
            delivered: BTreeSet::new(),
            pollers: HashMap::new(),
            polls: BTreeSet::new(),
        });
        Ok(())
    }

    /// The kind of an environment, if it exists.
    pub fn environment_kind(
        &self,
        environment: impl AsId<EnvironmentId>,
    ) -> Option<EnvironmentKind> {
        let id = environment.as_id().ok()?;
        let index = *self.environment_index.get(&*id)?;
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
        let now = now.into();
        self.expire_due(now);
        let env = self.environment(&environment)?;
        if self.work_index.contains_key(&id) {
            return Err(Error::AlreadyExists {
                id: Excerpt::of(&id),
            });
        }
        let slot = u32::try_from(self.items.len()).expect("invariant: fewer than 2^32 items");
        self.work_index.insert(id.clone(), slot);
        let environment = &mut self.environments[env as usize];
        environment.items.insert(id.clone(), slot);
        environment.undelivered.insert(id.clone());
        self.items.push(Item {
            id,
            env,
            session,
            metadata,
            created_at: now,
            acknowledged_at: None,
            started_at: None,
            latest_heartbeat_at: None,
            stop_requested_at: None,
            stopped_at: None,
            lapses: 0,
            last_token: None,
            phase: Phase::Queued(None),
        });
        Ok(self.view(slot))
    }

    /// Hands out the oldest claimable queued item (SPEC §3.1).
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
        let now = now.into();
        self.expire_due(now);
        let env = self.environment(&environment)?;
        let reclaim = millis_to_micros(request.reclaim_older_than_ms);
        let environment = &mut self.environments[env as usize];
        if let Some(worker) = &request.worker {
            environment.record_poll(worker, now);
        }
        let cutoff = now.unix_micros().saturating_sub(reclaim);
        let reclaimable = environment
            .delivered
            .iter()
            .take_while(|(at, _)| at.unix_micros() <= cutoff)
            .map(|(_, id)| id)
            .min();
        let chosen = match (environment.undelivered.first(), reclaimable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(chosen) = chosen else {
            let reclaim_at = environment
                .delivered
                .first()
                .map(|(at, _)| at.saturating_add_micros(reclaim));
            let lapse_at = self.deadlines.first().map(|(deadline, _)| *deadline);
            let next_claimable_at = match (reclaim_at, lapse_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Ok(Polled::Empty { next_claimable_at });
        };
        let slot = environment.items[chosen];
        let delivery = Delivery {
            at: now,
            worker: request.worker.clone(),
        };
        self.set_phase(slot, Phase::Queued(Some(delivery)));
        Ok(Polled::Delivered(Box::new(self.view(slot))))
    }

    /// Acknowledges an item: queued → starting, opening a lease with the ack TTL (SPEC §3.2).
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
        let now = now.into();
        self.expire_due(now);
        let slot = self.locate(&environment, &work)?;
        let item = &self.items[slot as usize];
        let owner = match &item.phase {
            Phase::Queued(delivery) => delivery.as_ref().and_then(|d| d.worker.as_ref()),
            Phase::Starting(lease) | Phase::Active(lease) => lease.holder.as_ref(),
            Phase::Stopping(_) | Phase::Stopped => {
                return Err(Error::InvalidState {
                    operation: Operation::Ack,
                    state: item.phase.state(),
                })
            }
        };
        if let (Some(holder), Some(worker)) = (owner, worker) {
            if holder != worker {
                return Err(Error::WorkerMismatch {
                    holder: holder.clone(),
                    worker: worker.clone(),
                });
            }
        }
        if !matches!(item.phase, Phase::Queued(_)) {
            return Ok(Updated {
                item: self.view(slot),
                changed: false,
            });
        }
        let ttl = self.config.ack_ttl;
        let lease = Lease {
            deadline: now.saturating_add_micros(ttl.micros()),
            ttl,
            holder: worker.or(owner).cloned(),
        };
        self.items[slot as usize].acknowledged_at = Some(now);
        self.set_phase(slot, Phase::Starting(lease));
        Ok(Updated {
            item: self.view(slot),
            changed: true,
        })
    }

    /// Renews the lease of a starting, active or stopping item (SPEC §3.3).
    ///
    /// The new token is `now` to the microsecond, or one microsecond past the item's previous
    /// token when `now` did not advance, so tokens never repeat.
    ///
    /// # Errors
    ///
    /// In SPEC order: 404 (environment), 400 (cloud), 404 (item), [`Error::InvalidState`] for
    /// a queued or stopped item, [`Error::PreconditionFailed`] when the precondition does not
    /// hold (the error carries the lease as held). Parameter errors (400) come from
    /// [`HeartbeatRequest::parse`], before this call. Never allocates.
    pub fn heartbeat(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        request: HeartbeatRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Heartbeat, Error> {
        let now = now.into();
        self.expire_due(now);
        let slot = self.locate(&environment, &work)?;
        let item = &self.items[slot as usize];
        let lease = match &item.phase {
            Phase::Starting(lease) | Phase::Active(lease) | Phase::Stopping(lease) => lease,
            Phase::Queued(_) | Phase::Stopped => {
                return Err(Error::InvalidState {
                    operation: Operation::Heartbeat,
                    state: item.phase.state(),
                })
            }
        };
        if !request.precondition.holds(item.latest_heartbeat_at) {
            return Err(Error::PreconditionFailed {
                expected: request.precondition,
                current: LeaseSnapshot {
                    last_heartbeat: item.latest_heartbeat_at,
                    state: item.phase.state(),
                    ttl: lease.ttl,
                    deadline: lease.deadline,
                },
            });
        }
        let (ttl, ttl_clamped) = request.ttl(self.config.default_ttl);
        let token = match item.last_token {
            Some(previous) if previous >= now => previous.next_micro(),
            Some(_) | None => now,
        };
        let deadline = token.saturating_add_micros(ttl.micros());
        let renewed = Lease {
            deadline,
            ttl,
            holder: lease.holder.clone(),
        };
        let phase = match item.phase {
            Phase::Starting(_) | Phase::Active(_) => Phase::Active(renewed),
            Phase::Stopping(_) => Phase::Stopping(renewed),
            Phase::Queued(_) | Phase::Stopped => unreachable!("invariant: matched as leased above"),
        };
        let item = &mut self.items[slot as usize];
        if matches!(item.phase, Phase::Starting(_)) {
            item.started_at = Some(token);
        }
        item.latest_heartbeat_at = Some(token);
        item.last_token = Some(token);
        self.set_phase(slot, phase);
        Ok(Heartbeat {
            last_heartbeat: token,
            state: self.items[slot as usize].phase.state(),
            ttl,
            ttl_clamped,
            deadline,
        })
    }

    /// Stops an item, gracefully or by force (SPEC §3.4). Stopping a stopped item returns it
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
        let now = now.into();
        self.expire_due(now);
        let slot = self.locate(&environment, &work)?;
        let item = &mut self.items[slot as usize];
        let phase = match (&item.phase, mode) {
            (Phase::Stopped, _) => {
                return Ok(Updated {
                    item: self.view(slot),
                    changed: false,
                })
            }
            (Phase::Starting(lease) | Phase::Active(lease), StopMode::Graceful) => {
                item.stop_requested_at = Some(now);
                Phase::Stopping(lease.clone())
            }
            (Phase::Queued(_) | Phase::Stopping(_), StopMode::Graceful)
            | (
                Phase::Queued(_) | Phase::Starting(_) | Phase::Active(_) | Phase::Stopping(_),
                StopMode::Force,
            ) => {
                item.stopped_at = Some(now);
                Phase::Stopped
            }
        };
        self.set_phase(slot, phase);
        Ok(Updated {
            item: self.view(slot),
            changed: true,
        })
    }

    /// One item.
    ///
    /// # Errors
    ///
    /// 404/400 for the environment, 404 for the item.
    pub fn get(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        work: impl AsId<WorkId>,
        now: impl Into<Timestamp>,
    ) -> Result<WorkItem, Error> {
        self.expire_due(now.into());
        let slot = self.locate(&environment, &work)?;
        Ok(self.view(slot))
    }

    /// A page of an environment's items in ascending id order, every state (SPEC §3.5).
    ///
    /// # Errors
    ///
    /// 404/400 for the environment.
    pub fn list(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        request: &ListRequest,
        now: impl Into<Timestamp>,
    ) -> Result<Page, Error> {
        self.expire_due(now.into());
        let env = self.environment(&environment)?;
        let items = &self.environments[env as usize].items;
        let limit = request.limit.clamp(1, ListRequest::MAX_LIMIT);
        let (mut slots, forward): (Vec<u32>, bool) = match &request.cursor {
            Cursor::First => (items.values().take(limit + 1).copied().collect(), true),
            Cursor::After(id) => (
                items
                    .range((Bound::Excluded(id), Bound::Unbounded))
                    .map(|(_, slot)| *slot)
                    .take(limit + 1)
                    .collect(),
                true,
            ),
            Cursor::Before(id) => (
                items
                    .range(..id)
                    .rev()
                    .map(|(_, slot)| *slot)
                    .take(limit + 1)
                    .collect(),
                false,
            ),
        };
        let has_more = slots.len() > limit;
        slots.truncate(limit);
        if !forward {
            slots.reverse();
        }
        let data: Vec<WorkItem> = slots.iter().map(|&slot| self.view(slot)).collect();
        let first_id = data.first().map(|item| item.id.clone());
        let last_id = data.last().map(|item| item.id.clone());
        let next_page = if forward && has_more {
            last_id.clone()
        } else {
            None
        };
        Ok(Page {
            data,
            first_id,
            last_id,
            has_more,
            next_page,
        })
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
        self.expire_due(now.into());
        let slot = self.locate(&environment, &work)?;
        let changed = self.items[slot as usize].metadata.apply(patch)?;
        Ok(Updated {
            item: self.view(slot),
            changed,
        })
    }

    /// An environment's queue statistics, with the configured reclaim window.
    ///
    /// # Errors
    ///
    /// 404/400 for the environment.
    pub fn stats(
        &mut self,
        environment: impl AsId<EnvironmentId>,
        now: impl Into<Timestamp>,
    ) -> Result<QueueStats, Error> {
        let now = now.into();
        self.expire_due(now);
        let env = self.environment(&environment)?;
        let environment = &mut self.environments[env as usize];
        environment.forget_pollers_before(now);
        let cutoff = now
            .unix_micros()
            .saturating_sub(millis_to_micros(self.config.reclaim_older_than_ms));
        let reclaimable = environment
            .delivered
            .iter()
            .take_while(|(at, _)| at.unix_micros() <= cutoff)
            .count();
        let oldest = environment
            .delivered
            .iter()
            .map(|(_, id)| id)
            .chain(environment.undelivered.first())
            .min();
        Ok(QueueStats {
            depth: environment.undelivered.len() + reclaimable,
            pending: environment.delivered.len() - reclaimable,
            oldest_queued_at: oldest
                .map(|id| self.items[environment.items[id] as usize].created_at),
            workers_polling: environment.pollers.len(),
        })
    }

    /// Applies every lapse due at `now` and returns all lapses since the previous sweep
    /// (including those operations applied on the way), in the order they happened.
    pub fn sweep(&mut self, now: impl Into<Timestamp>) -> Vec<Transition> {
        self.expire_due(now.into());
        std::mem::take(&mut self.journal)
    }

    /// When the table next needs attention without any request: the earliest lease deadline
    /// or end of a delivery's reclaim window (with the configured window). A server's sweeper
    /// sleeps until then (or until an operation changes it).
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let reclaim = millis_to_micros(self.config.reclaim_older_than_ms);
        let lapse = self.deadlines.first().map(|(deadline, _)| *deadline);
        let redelivery = self
            .environments
            .iter()
            .filter_map(|env| env.delivered.first())
            .map(|(at, _)| at.saturating_add_micros(reclaim))
            .min();
        match (lapse, redelivery) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Checks every internal invariant; for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn validate(&self) -> Result<(), String> {
        let mut leased = 0;
        for (slot, item) in self.items.iter().enumerate() {
            let slot = slot as u32;
            let env = &self.environments[item.env as usize];
            if self.work_index.get(&item.id) != Some(&slot)
                || env.items.get(&item.id) != Some(&slot)
            {
                return Err(format!("{:?} is not indexed at its slot", item.id));
            }
            let in_undelivered = env.undelivered.contains(&item.id);
            let delivered_at = match &item.phase {
                Phase::Queued(Some(delivery)) => Some(delivery.at),
                _ => None,
            };
            let in_delivered =
                delivered_at.is_some_and(|at| env.delivered.contains(&(at, item.id.clone())));
            let ok = match &item.phase {
                Phase::Queued(None) => in_undelivered,
                Phase::Queued(Some(_)) => in_delivered && !in_undelivered,
                Phase::Starting(_) | Phase::Active(_) | Phase::Stopping(_) | Phase::Stopped => {
                    !in_undelivered
                }
            };
            if !ok {
                return Err(format!(
                    "{:?} queue index disagrees with {:?}",
                    item.id, item.phase
                ));
            }
            if let Some(lease) = item.phase.lease() {
                leased += 1;
                if !self.deadlines.contains(&(lease.deadline, slot)) {
                    return Err(format!(
                        "{:?} lease missing from the deadline index",
                        item.id
                    ));
                }
            }
            match (&item.phase, item.latest_heartbeat_at) {
                (Phase::Active(_), None) => {
                    return Err(format!("{:?} active without heartbeat", item.id))
                }
                (Phase::Starting(_), Some(_)) => {
                    return Err(format!("{:?} starting with a heartbeat", item.id))
                }
                (Phase::Queued(_), Some(_)) => {
                    return Err(format!("{:?} queued with a heartbeat", item.id))
                }
                _ => {}
            }
            if item.latest_heartbeat_at.is_some() && item.latest_heartbeat_at > item.last_token {
                return Err(format!("{:?} heartbeat newer than its last token", item.id));
            }
        }
        if self.deadlines.len() != leased {
            return Err(format!(
                "{} deadlines for {leased} leases",
                self.deadlines.len()
            ));
        }
        let queued: usize = self
            .environments
            .iter()
            .map(|e| e.undelivered.len() + e.delivered.len())
            .sum();
        let expected = self
            .items
            .iter()
            .filter(|i| matches!(i.phase, Phase::Queued(_)))
            .count();
        if queued != expected {
            return Err(format!(
                "{queued} queue entries for {expected} queued items"
            ));
        }
        Ok(())
    }

    fn view(&self, slot: u32) -> WorkItem {
        let item = &self.items[slot as usize];
        WorkItem::of(item, &self.environments[item.env as usize].id)
    }

    /// The environment's index, checked as SPEC §3.3 orders: exists (404), self_hosted (400).
    fn environment(&self, environment: &impl AsId<EnvironmentId>) -> Result<u32, Error> {
        let id = environment
            .as_id()
            .map_err(|id| Error::EnvironmentNotFound { id })?;
        let Some(&index) = self.environment_index.get(&*id) else {
            return Err(Error::EnvironmentNotFound {
                id: Excerpt::of(&*id),
            });
        };
        match self.environments[index as usize].kind {
            EnvironmentKind::SelfHosted => Ok(index),
            EnvironmentKind::Cloud => Err(Error::NotSelfHosted {
                environment: id.into_owned(),
            }),
        }
    }

    /// The item's slot, after the environment checks; 404 unless it is in that environment.
    fn locate(
        &self,
        environment: &impl AsId<EnvironmentId>,
        work: &impl AsId<WorkId>,
    ) -> Result<u32, Error> {
        let env = self.environment(environment)?;
        let id = work.as_id().map_err(|id| Error::WorkNotFound { id })?;
        match self.work_index.get(&*id) {
            Some(&slot) if self.items[slot as usize].env == env => Ok(slot),
            _ => Err(Error::WorkNotFound {
                id: Excerpt::of(&*id),
            }),
        }
    }

    /// Moves an item to `phase`, keeping the queue and deadline indexes in step: every state
    /// change goes through here, so the indexes cannot drift from the items.
    fn set_phase(&mut self, slot: u32, phase: Phase) {
        let item = &mut self.items[slot as usize];
        let env = &mut self.environments[item.env as usize];
        match &item.phase {
            Phase::Queued(None) => {
                env.undelivered.remove(&item.id);
            }
            Phase::Queued(Some(delivery)) => {
                env.delivered.remove(&(delivery.at, item.id.clone()));
            }
            Phase::Starting(lease) | Phase::Active(lease) | Phase::Stopping(lease) => {
                self.deadlines.remove(&(lease.deadline, slot));
            }
            Phase::Stopped => {}
        }
        match &phase {
            Phase::Queued(None) => {
                env.undelivered.insert(item.id.clone());
            }
            Phase::Queued(Some(delivery)) => {
                env.delivered.insert((delivery.at, item.id.clone()));
            }
            Phase::Starting(lease) | Phase::Active(lease) | Phase::Stopping(lease) => {
                self.deadlines.insert((lease.deadline, slot));
            }
            Phase::Stopped => {}
        }
        item.phase = phase;
    }

    /// Applies every lapse with a deadline at or before `now` (a lease is valid while
    /// `now < deadline`), oldest deadline first.
    fn expire_due(&mut self, now: Timestamp) {
        while let Some(&(deadline, slot)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.lapse(slot, deadline);
        }
    }

    /// SPEC §5: starting/active → queued (or stopped when out of attempts); stopping → stopped.
    fn lapse(&mut self, slot: u32, at: Timestamp) {
        let max_attempts = self.config.max_attempts;
        let item = &mut self.items[slot as usize];
        let from = item.phase.state();
        let phase = match item.phase {
            Phase::Starting(_) | Phase::Active(_) => {
                item.lapses = item.lapses.saturating_add(1);
                item.acknowledged_at = None;
                item.started_at = None;
                item.latest_heartbeat_at = None;
                if max_attempts.is_some_and(|max| item.lapses >= max.get()) {
                    item.stopped_at = Some(at);
                    Phase::Stopped
                } else {
                    Phase::Queued(None)
                }
            }
            Phase::Stopping(_) => {
                item.stopped_at = Some(at);
                Phase::Stopped
            }
            Phase::Queued(_) | Phase::Stopped => {
                unreachable!("invariant: only leased items have deadlines")
            }
        };
        let transition = Transition {
            environment_id: self.environments[item.env as usize].id.clone(),
            work_id: item.id.clone(),
            from,
            to: phase.state(),
            at,
            lapses: item.lapses,
        };
        self.set_phase(slot, phase);
        self.journal.push(transition);
    }
}

impl Environment {
    fn record_poll(&mut self, worker: &WorkerId, now: Timestamp) {
        if let Some(previous) = self.pollers.insert(worker.clone(), now) {
            self.polls.remove(&(previous, worker.clone()));
        }
        self.polls.insert((now, worker.clone()));
        self.forget_pollers_before(now);
    }

    /// Drops workers whose last poll is 30 s or more before `now`.
    fn forget_pollers_before(&mut self, now: Timestamp) {
        let horizon = now.saturating_sub_micros(POLLING_WINDOW_MICROS);
        while let Some((at, worker)) = self.polls.first() {
            if *at > horizon {
                break;
            }
            self.pollers.remove(worker);
            self.polls.pop_first();
        }
    }
}

fn millis_to_micros(millis: u64) -> i64 {
    i64::try_from(millis)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}
