//! The lease table against a small reference model written from the behaviour contract (docs/contract.md): random operation
//! sequences over random clocks (repeated instants, µs steps, minutes, and backwards steps),
//! every result compared, invariants checked after every step.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use worklease::{
    EnvironmentId, EnvironmentKind, Error, Excerpt, Heartbeat, LeaseSnapshot, LeaseTable,
    MetadataPatch, Operation, Param, Precondition, QueueStats, Timestamp, Ttl, WorkState,
};

/// docs/contract.md §3.5: a worker counts as polling for 30 s after its last poll.
const POLLING_WINDOW: i64 = 30_000_000;
const SECOND: i64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// The reference model: a Vec of plain items, linear scans, times as i64 µs.

#[derive(Clone, Debug)]
struct ModelItem {
    id: String,
    env: String,
    session: String,
    metadata: BTreeMap<String, String>,
    state: WorkState,
    created_at: i64,
    acknowledged_at: Option<i64>,
    started_at: Option<i64>,
    latest_heartbeat_at: Option<i64>,
    stop_requested_at: Option<i64>,
    stopped_at: Option<i64>,
    lapses: u32,
    /// Every token ever issued for the item, so the next one can be made strictly larger.
    last_token: Option<i64>,
    /// Lease (starting, active, stopping only).
    deadline: Option<i64>,
    ttl_seconds: Option<u64>,
    /// Delivery (queued only).
    delivered_at: Option<i64>,
    /// Delivery worker while queued, lease holder while leased.
    worker: Option<String>,
    /// Acks that opened a lease: docs/contract.md §7.5's `lease_epoch`.
    acks: u32,
}

impl ModelItem {
    fn snap(&self) -> Snap {
        Snap {
            id: self.id.clone(),
            environment_id: self.env.clone(),
            session_id: self.session.clone(),
            state: self.state,
            created_at: ts(self.created_at),
            acknowledged_at: self.acknowledged_at.map(ts),
            started_at: self.started_at.map(ts),
            latest_heartbeat_at: self.latest_heartbeat_at.map(ts),
            stop_requested_at: self.stop_requested_at.map(ts),
            stopped_at: self.stopped_at.map(ts),
            metadata: self.metadata.clone(),
            lapses: self.lapses,
            lease_deadline: self.deadline.map(ts),
            lease_ttl: self.ttl_seconds.map(ttl),
            delivered_at: self.delivered_at.map(ts),
            worker: self.worker.clone(),
            lease_epoch: self.acks,
        }
    }

    fn is_leased(&self) -> bool {
        matches!(
            self.state,
            WorkState::Starting | WorkState::Active | WorkState::Stopping
        )
    }

    fn end_lease(&mut self) {
        self.deadline = None;
        self.ttl_seconds = None;
        self.worker = None;
    }

    fn enter_stopped(&mut self, at: i64) {
        self.state = WorkState::Stopped;
        self.stopped_at = Some(at);
        self.end_lease();
        self.delivered_at = None;
    }
}

#[derive(Clone, Debug)]
struct Model {
    config: ConfigSel,
    /// In creation order (the tie-break between equal deadlines).
    items: Vec<ModelItem>,
    /// Per environment: worker → the `now` of its last poll.
    pollers: HashMap<String, BTreeMap<String, i64>>,
    /// Lapses not yet returned by a sweep.
    journal: Vec<TransitionSnap>,
    /// docs/contract.md §7.1: the latest `now` a changing operation ran at.
    clock: Option<i64>,
    /// docs/contract.md §9: the environments that exist.
    envs: BTreeMap<&'static str, ModelEnv>,
}

/// An environment record, as far as the model's operations change it.
#[derive(Clone, Debug)]
struct ModelEnv {
    kind: EnvironmentKind,
    created_at: i64,
    updated_at: i64,
    archived_at: Option<i64>,
}

impl ModelEnv {
    fn snap(&self, id: &str) -> EnvSnap {
        EnvSnap {
            id: id.to_string(),
            kind: self.kind,
            // Registered and recreated environments are named after their id.
            name: id.to_string(),
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
            archived_at: self.archived_at.map(ts),
        }
    }
}

fn ttl(seconds: u64) -> Ttl {
    Ttl::from_seconds(seconds).expect("model TTLs are in range")
}

fn env_id(id: &str) -> EnvironmentId {
    EnvironmentId::parse(id).expect("the model's environment ids are well formed")
}

fn env_not_found(raw: &str) -> Error {
    Error::EnvironmentNotFound {
        id: Excerpt::new(raw),
    }
}

fn work_not_found(raw: &str) -> Error {
    Error::WorkNotFound {
        id: Excerpt::new(raw),
    }
}

fn bad_metadata(expected: &'static str, found: &str) -> Error {
    Error::InvalidParameter {
        param: Param::Metadata,
        expected,
        found: Excerpt::new(found),
    }
}

impl Model {
    fn new(config: ConfigSel) -> Self {
        Self {
            config,
            items: Vec::new(),
            pollers: HashMap::new(),
            journal: Vec::new(),
            clock: None,
            // Registered before any operation: created at the Unix epoch.
            envs: ENVIRONMENTS
                .iter()
                .map(|&(id, kind)| {
                    let env = ModelEnv {
                        kind,
                        created_at: 0,
                        updated_at: 0,
                        archived_at: None,
                    };
                    (id, env)
                })
                .collect(),
        }
    }

    /// docs/contract.md §7.1: operations run at `max(clock, now)`.
    fn at(&self, now: i64) -> i64 {
        self.clock.map_or(now, |clock| clock.max(now))
    }

    /// docs/contract.md §5, applied before every operation: each lease with deadline ≤ now lapses, earliest
    /// deadline first (creation order between equal deadlines), at its deadline.
    fn expire(&mut self, now: i64) {
        loop {
            let due = self
                .items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| item.deadline.map(|d| (d, index)))
                .filter(|&(deadline, _)| deadline <= now)
                .min();
            let Some((deadline, index)) = due else { return };
            let max_attempts = self.config.max_attempts;
            let item = &mut self.items[index];
            let from = item.state;
            match from {
                WorkState::Starting | WorkState::Active => {
                    item.lapses += 1;
                    if max_attempts.is_some_and(|max| item.lapses >= max) {
                        // The last attempt's times stay on a stopped item.
                        item.enter_stopped(deadline);
                    } else {
                        item.acknowledged_at = None;
                        item.started_at = None;
                        item.latest_heartbeat_at = None;
                        item.state = WorkState::Queued;
                        item.end_lease();
                        item.delivered_at = None;
                    }
                }
                WorkState::Stopping => item.enter_stopped(deadline),
                WorkState::Queued | WorkState::Stopped => unreachable!("no lease, no deadline"),
            }
            self.journal.push(TransitionSnap {
                environment_id: item.env.clone(),
                work_id: item.id.clone(),
                from,
                to: item.state,
                at: ts(deadline),
                lapses: item.lapses,
            });
        }
    }

    /// docs/contract.md §3.3's first checks: environment exists (404), is self_hosted (400).
    fn environment(&self, raw: &str) -> Result<&'static str, Error> {
        match self.existing(raw)? {
            (id, EnvironmentKind::Cloud) => Err(Error::NotSelfHosted {
                environment: env_id(id),
            }),
            (id, EnvironmentKind::SelfHosted) => Ok(id),
        }
    }

    /// The environment if it exists (404 otherwise), whatever its kind.
    fn existing(&self, raw: &str) -> Result<(&'static str, EnvironmentKind), Error> {
        self.envs
            .iter()
            .find(|(id, _)| **id == raw)
            .map(|(id, env)| (*id, env.kind))
            .ok_or_else(|| env_not_found(raw))
    }

    /// docs/contract.md §9 archive: sets `archived_at` once.
    fn archive(&mut self, raw: &str, now: i64) -> Result<EnvSnap, Error> {
        let (id, _) = self.existing(raw)?;
        let env = self.envs.get_mut(id).expect("exists");
        if env.archived_at.is_none() {
            env.archived_at = Some(now);
            env.updated_at = now;
        }
        Ok(env.snap(id))
    }

    /// docs/contract.md §9 delete: refused while an item holds a lease, else the environment and its
    /// items are gone.
    fn delete(&mut self, raw: &str) -> Result<String, Error> {
        let (id, _) = self.existing(raw)?;
        let leased = self
            .items
            .iter()
            .filter(|item| item.env == id && item.is_leased())
            .count();
        if leased > 0 {
            return Err(Error::EnvironmentInUse {
                environment: env_id(id),
                leased,
            });
        }
        self.items.retain(|item| item.env != id);
        self.journal.retain(|lapse| lapse.environment_id != id);
        self.pollers.remove(id);
        self.envs.remove(id);
        Ok(id.to_string())
    }

    /// docs/contract.md §9 create, of an environment the case started with.
    fn recreate(&mut self, raw: &'static str, now: i64) -> Result<EnvSnap, Error> {
        if self.envs.contains_key(raw) {
            return Err(Error::AlreadyExists {
                id: Excerpt::new(raw),
            });
        }
        let env = ModelEnv {
            kind: original_kind(raw),
            created_at: now,
            updated_at: now,
            archived_at: None,
        };
        let snap = env.snap(raw);
        self.envs.insert(raw, env);
        Ok(snap)
    }

    /// Then the item, which must belong to that environment (404).
    fn locate(&self, env: &str, work: &str) -> Result<usize, Error> {
        let env = self.environment(env)?;
        self.items
            .iter()
            .position(|item| item.id == work && item.env == env)
            .ok_or_else(|| work_not_found(work))
    }

    /// Every lapse since the last sweep, in the tables' canonical order: ascending
    /// `(at, work_id)`, whichever operation applied it.
    fn drain_journal(&mut self) -> Vec<TransitionSnap> {
        let mut journal = std::mem::take(&mut self.journal);
        journal.sort_by(|a, b| (a.at, &a.work_id).cmp(&(b.at, &b.work_id)));
        journal
    }

    fn apply(&mut self, call: &Call, requested: i64) -> Outcome {
        let now = self.at(requested);
        if let Op::Get { .. } | Op::List { .. } | Op::Stats { .. } = call {
            // docs/contract.md §7.2: a read answers as of `now` with every due lapse applied, and changes
            // nothing: the obvious way is to answer from a copy.
            let mut view = self.clone();
            view.expire(now);
            return view.answer(call, now, requested);
        }
        self.clock = Some(now);
        self.expire(now);
        self.answer(call, now, requested)
    }

    /// `call`'s answer at `now`, every lapse due at `now` already applied; `requested` is the
    /// caller's `now`, from which a purge's cutoff is counted.
    fn answer(&mut self, call: &Call, now: i64, requested: i64) -> Outcome {
        match call {
            Op::Create {
                env,
                work,
                session,
                metadata,
            } => Outcome::Item(self.create(env, work, session, metadata, now)),
            Op::Poll {
                env,
                worker,
                reclaim_ms,
            } => Outcome::Polled(self.poll(env, *worker, *reclaim_ms, now)),
            Op::Ack { env, work, worker } => Outcome::Updated(self.ack(env, work, *worker, now)),
            Op::Heartbeat {
                env,
                work,
                precondition,
                ttl_seconds,
            } => Outcome::Heartbeat(self.heartbeat(env, work, *precondition, *ttl_seconds, now)),
            Op::Stop { env, work, force } => Outcome::Updated(self.stop(env, work, *force, now)),
            Op::Get { env, work } => {
                Outcome::Item(self.locate(env, work).map(|index| self.items[index].snap()))
            }
            Op::List { env, limit, cursor } => Outcome::Page(self.list(env, *limit, *cursor)),
            Op::UpdateMetadata { env, work, patch } => {
                Outcome::Updated(self.update_metadata(env, work, patch))
            }
            Op::Stats { env } => Outcome::Stats(self.stats(env, now)),
            Op::Sweep => Outcome::Swept(self.drain_journal()),
            Op::Purge { age_ms } => {
                // Ages are small: no clamping at the ends of time.
                let before = requested - i64::try_from(*age_ms).expect("small") * 1000;
                let count = self.items.len();
                self.items.retain(|item| {
                    !(item.state == WorkState::Stopped
                        && item.stopped_at.is_some_and(|at| at < before))
                });
                Outcome::Purged(count - self.items.len())
            }
            Op::Archive { env } => Outcome::Environment(self.archive(env, now)),
            Op::Delete { env } => Outcome::Deleted(self.delete(env)),
            Op::Recreate { env } => Outcome::Environment(self.recreate(env, now)),
        }
    }

    fn create(
        &mut self,
        env: &str,
        work: &str,
        session: &str,
        metadata: &BTreeMap<String, String>,
        now: i64,
    ) -> Result<Snap, Error> {
        let env = self.environment(env)?;
        if self.envs[env].archived_at.is_some() {
            return Err(Error::EnvironmentArchived {
                environment: env_id(env),
            });
        }
        if self.items.iter().any(|item| item.id == work) {
            return Err(Error::AlreadyExists {
                id: Excerpt::new(work),
            });
        }
        self.items.push(ModelItem {
            id: work.to_string(),
            env: env.to_string(),
            session: session.to_string(),
            metadata: metadata.clone(),
            state: WorkState::Queued,
            created_at: now,
            acknowledged_at: None,
            started_at: None,
            latest_heartbeat_at: None,
            stop_requested_at: None,
            stopped_at: None,
            lapses: 0,
            last_token: None,
            deadline: None,
            ttl_seconds: None,
            delivered_at: None,
            worker: None,
            acks: 0,
        });
        Ok(self.items.last().expect("just pushed").snap())
    }

    fn forget_pollers(&mut self, env: &str, now: i64) {
        if let Some(pollers) = self.pollers.get_mut(env) {
            pollers.retain(|_, last| *last > now - POLLING_WINDOW);
        }
    }

    fn is_reclaimable(delivered_at: i64, reclaim_ms: u64, now: i64) -> bool {
        delivered_at + i64::try_from(reclaim_ms).expect("small") * 1000 <= now
    }

    fn poll(
        &mut self,
        env: &str,
        worker: Option<&str>,
        reclaim_ms: u64,
        now: i64,
    ) -> Result<PolledSnap, Error> {
        let env = self.environment(env)?;
        // Only a poll that names a worker touches the poller list (and then drops the stale
        // ones). With a clock that goes backwards, forgetting on anonymous polls too would
        // lose workers that a later stats call at an earlier `now` still counts.
        if let Some(worker) = worker {
            self.pollers
                .entry(env.to_string())
                .or_default()
                .insert(worker.to_string(), now);
            self.forget_pollers(env, now);
        }
        let chosen = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.env == env && item.state == WorkState::Queued)
            .filter(|(_, item)| {
                item.delivered_at
                    .map_or(true, |at| Self::is_reclaimable(at, reclaim_ms, now))
            })
            .min_by(|(_, a), (_, b)| a.id.cmp(&b.id))
            .map(|(index, _)| index);
        match chosen {
            Some(index) => {
                let item = &mut self.items[index];
                item.delivered_at = Some(now);
                item.worker = worker.map(str::to_string);
                Ok(PolledSnap::Delivered(Box::new(item.snap())))
            }
            None => {
                let reclaim_at = self
                    .items
                    .iter()
                    .filter(|item| item.env == env && item.state == WorkState::Queued)
                    .filter_map(|item| item.delivered_at)
                    .map(|at| at + i64::try_from(reclaim_ms).expect("small") * 1000);
                let lapse_at = self.items.iter().filter_map(|item| item.deadline);
                Ok(PolledSnap::Empty {
                    next_claimable_at: reclaim_at.chain(lapse_at).min().map(ts),
                })
            }
        }
    }

    fn ack(
        &mut self,
        env: &str,
        work: &str,
        worker: Option<&str>,
        now: i64,
    ) -> Result<(Snap, bool), Error> {
        let index = self.locate(env, work)?;
        let ack_ttl = self.config.ack_ttl;
        let item = &mut self.items[index];
        match item.state {
            WorkState::Stopping | WorkState::Stopped => {
                return Err(Error::InvalidState {
                    operation: Operation::Ack,
                    state: item.state,
                })
            }
            WorkState::Queued | WorkState::Starting | WorkState::Active => {}
        }
        if let (Some(holder), Some(asker)) = (&item.worker, worker) {
            if holder != asker {
                return Err(Error::WorkerMismatch {
                    holder: worker_id(holder),
                    worker: worker_id(asker),
                });
            }
        }
        if item.state != WorkState::Queued {
            return Ok((item.snap(), false));
        }
        item.state = WorkState::Starting;
        item.acks += 1;
        item.acknowledged_at = Some(now);
        item.deadline = Some(now + i64::try_from(ack_ttl).expect("small") * SECOND);
        item.ttl_seconds = Some(ack_ttl);
        item.delivered_at = None;
        item.worker = worker.map(str::to_string).or(item.worker.take());
        Ok((item.snap(), true))
    }

    fn heartbeat(
        &mut self,
        env: &str,
        work: &str,
        precondition: Precondition,
        ttl_seconds: Option<u64>,
        now: i64,
    ) -> Result<Heartbeat, Error> {
        let index = self.locate(env, work)?;
        let default_ttl = self.config.default_ttl;
        let item = &mut self.items[index];
        if !item.is_leased() {
            return Err(Error::InvalidState {
                operation: Operation::Heartbeat,
                state: item.state,
            });
        }
        // docs/contract.md §3.3: on a stopping item the precondition is not compared and nothing
        // changes: the answer is the lease as held, not extended.
        if item.state == WorkState::Stopping {
            return Ok(Heartbeat {
                last_heartbeat: item.latest_heartbeat_at.map(ts),
                state: item.state,
                ttl: ttl(item.ttl_seconds.expect("leased")),
                ttl_clamped: false,
                deadline: ts(item.deadline.expect("leased")),
                lease_epoch: item.acks,
            });
        }
        let holds = match precondition {
            Precondition::Unconditional => true,
            Precondition::NoHeartbeat => item.latest_heartbeat_at.is_none(),
            Precondition::LastHeartbeat(token) => {
                item.latest_heartbeat_at == Some(token.unix_micros())
            }
            Precondition::Unmatchable => false,
        };
        if !holds {
            return Err(Error::PreconditionFailed {
                expected: precondition,
                current: LeaseSnapshot {
                    last_heartbeat: item.latest_heartbeat_at.map(ts),
                    state: item.state,
                    ttl: ttl(item.ttl_seconds.expect("leased")),
                    deadline: ts(item.deadline.expect("leased")),
                    lease_epoch: item.acks,
                },
            });
        }
        let (seconds, clamped) = match ttl_seconds {
            None => (default_ttl, false),
            Some(asked) => (asked.clamp(10, 600), !(10..=600).contains(&asked)),
        };
        let token = match item.last_token {
            Some(previous) if previous >= now => previous + 1,
            _ => now,
        };
        let deadline = token + i64::try_from(seconds).expect("small") * SECOND;
        if item.state == WorkState::Starting {
            item.state = WorkState::Active;
            item.started_at = Some(token);
        }
        item.latest_heartbeat_at = Some(token);
        item.last_token = Some(token);
        item.deadline = Some(deadline);
        item.ttl_seconds = Some(seconds);
        Ok(Heartbeat {
            last_heartbeat: Some(ts(token)),
            state: item.state,
            ttl: ttl(seconds),
            ttl_clamped: clamped,
            deadline: ts(deadline),
            lease_epoch: item.acks,
        })
    }

    fn stop(
        &mut self,
        env: &str,
        work: &str,
        force: bool,
        now: i64,
    ) -> Result<(Snap, bool), Error> {
        let index = self.locate(env, work)?;
        let item = &mut self.items[index];
        match (item.state, force) {
            (WorkState::Stopped, _) => return Ok((item.snap(), false)),
            (WorkState::Starting | WorkState::Active, false) => {
                item.state = WorkState::Stopping;
                item.stop_requested_at = Some(now);
            }
            (WorkState::Queued | WorkState::Stopping, false)
            | (
                WorkState::Queued | WorkState::Starting | WorkState::Active | WorkState::Stopping,
                true,
            ) => item.enter_stopped(now),
        }
        Ok((item.snap(), true))
    }

    /// The environment's items in ascending id order.
    fn sorted(&self, env: &str) -> Vec<&ModelItem> {
        let mut items: Vec<&ModelItem> = self.items.iter().filter(|i| i.env == env).collect();
        items.sort_by(|a, b| a.id.cmp(&b.id));
        items
    }

    fn list(&self, env: &str, limit: usize, cursor: CursorSel) -> Result<PageSnap, Error> {
        let env = self.environment(env)?;
        let limit = limit.clamp(1, 100);
        let items = self.sorted(env);
        let (data, has_more, forward): (Vec<&ModelItem>, bool, bool) = match cursor {
            CursorSel::First | CursorSel::After(_) => {
                let rest: Vec<&ModelItem> = match cursor {
                    CursorSel::After(after) => items
                        .into_iter()
                        .filter(|i| i.id.as_str() > after)
                        .collect(),
                    _ => items,
                };
                let has_more = rest.len() > limit;
                (rest.into_iter().take(limit).collect(), has_more, true)
            }
            CursorSel::Before(before) => {
                let rest: Vec<&ModelItem> = items
                    .into_iter()
                    .filter(|i| i.id.as_str() < before)
                    .collect();
                let skip = rest.len().saturating_sub(limit);
                (rest[skip..].to_vec(), skip > 0, false)
            }
        };
        let data: Vec<Snap> = data.iter().map(|item| item.snap()).collect();
        let first_id = data.first().map(|item| item.id.clone());
        let last_id = data.last().map(|item| item.id.clone());
        Ok(PageSnap {
            next_page: if forward && has_more {
                last_id.clone()
            } else {
                None
            },
            data,
            first_id,
            last_id,
            has_more,
        })
    }

    fn update_metadata(
        &mut self,
        env: &str,
        work: &str,
        patch: &MetadataPatch,
    ) -> Result<(Snap, bool), Error> {
        let index = self.locate(env, work)?;
        let item = &mut self.items[index];
        let mut next = item.metadata.clone();
        for (key, value) in patch {
            match value {
                Some(value) => {
                    if key.is_empty() || key.len() > 64 {
                        return Err(bad_metadata("keys of 1 to 64 bytes", key));
                    }
                    if value.len() > 512 {
                        return Err(bad_metadata("values of at most 512 bytes", value));
                    }
                    next.insert(key.clone(), value.clone());
                }
                None => {
                    next.remove(key);
                }
            }
        }
        if next.len() > 16 {
            return Err(bad_metadata("at most 16 keys", "more keys"));
        }
        let changed = next != item.metadata;
        item.metadata = next;
        Ok((item.snap(), changed))
    }

    fn stats(&mut self, env: &str, now: i64) -> Result<QueueStats, Error> {
        let env = self.environment(env)?;
        self.forget_pollers(env, now);
        let reclaim_ms = self.config.reclaim_older_than_ms;
        let queued: Vec<&ModelItem> = self
            .sorted(env)
            .into_iter()
            .filter(|item| item.state == WorkState::Queued)
            .collect();
        let claimable = |item: &ModelItem| {
            item.delivered_at
                .map_or(true, |at| Self::is_reclaimable(at, reclaim_ms, now))
        };
        Ok(QueueStats {
            depth: queued.iter().filter(|item| claimable(item)).count(),
            pending: queued.iter().filter(|item| !claimable(item)).count(),
            oldest_queued_at: queued.first().map(|item| ts(item.created_at)),
            workers_polling: self.pollers.get(env).map_or(0, BTreeMap::len),
        })
    }

    /// The earliest lease deadline: the only instant a sweep has work (a reclaim window's end
    /// is a poll's business).
    fn next_wakeup(&self) -> Option<Timestamp> {
        self.items
            .iter()
            .filter_map(|item| item.deadline)
            .min()
            .map(ts)
    }

    /// Every item, as [`list_all`] orders them (environment by environment, ascending id).
    fn listing(&mut self, now: i64) -> Vec<Snap> {
        let now = self.at(now);
        self.expire(now);
        ENVIRONMENTS
            .iter()
            .filter(|(_, kind)| *kind == EnvironmentKind::SelfHosted)
            .flat_map(|(env, _)| self.sorted(env))
            .map(ModelItem::snap)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants

/// What the test remembers between steps.
#[derive(Default)]
struct Memory {
    seen: Seen,
    /// Ids the table said it created.
    created: BTreeSet<String>,
    /// For each item holding a lease: which lease, and its holder.
    holders: HashMap<String, (LeaseKey, Option<String>)>,
}

/// Tells one lease of an item from the next: its ack instant and the lapses before it.
type LeaseKey = (Option<Timestamp>, u32);

fn check_item(item: &Snap, now: Timestamp) -> Result<(), TestCaseError> {
    let leased = matches!(
        item.state,
        WorkState::Starting | WorkState::Active | WorkState::Stopping
    );
    prop_assert_eq!(leased, item.lease_deadline.is_some(), "{:?}", item);
    prop_assert_eq!(leased, item.lease_ttl.is_some(), "{:?}", item);
    if let (Some(deadline), Some(lease_ttl)) = (item.lease_deadline, item.lease_ttl) {
        prop_assert!((10..=600).contains(&lease_ttl.seconds()), "{:?}", item);
        // A lease is valid while now < deadline; every lapse due was applied.
        prop_assert!(now < deadline, "lapsed lease still held: {:?}", item);
        // The deadline is the last renewal (heartbeat, else ack) plus the lease's TTL.
        let renewed = item.latest_heartbeat_at.or(item.acknowledged_at);
        prop_assert_eq!(
            renewed.map(|at| at.saturating_add_micros(lease_ttl.micros())),
            Some(deadline),
            "{:?}",
            item
        );
    }
    match item.state {
        WorkState::Queued => {
            prop_assert!(item.acknowledged_at.is_none() && item.started_at.is_none());
            prop_assert!(item.latest_heartbeat_at.is_none() && item.stopped_at.is_none());
            prop_assert!(item.worker.is_none() || item.delivered_at.is_some());
        }
        WorkState::Starting => {
            prop_assert!(item.latest_heartbeat_at.is_none() && item.started_at.is_none());
        }
        WorkState::Active => {
            prop_assert!(item.started_at.is_some() && item.latest_heartbeat_at.is_some());
        }
        WorkState::Stopping => prop_assert!(item.stop_requested_at.is_some()),
        WorkState::Stopped => {
            prop_assert!(
                item.stopped_at.is_some() && item.worker.is_none(),
                "{:?}",
                item
            );
        }
    }
    prop_assert!(item.delivered_at.is_none() || item.state == WorkState::Queued);
    Ok(())
}

fn check_step<T: Table>(
    table: &T,
    model: &Model,
    memory: &mut Memory,
    now: i64,
    step: &Step,
) -> Result<(), TestCaseError> {
    table.validate().map_err(TestCaseError::fail)?;
    // Once every lapse due at `now` is applied, the next wake-up is exactly the model's; before
    // that (the sharded table applies lapses shard by shard, and a read applies none) it may
    // only be earlier, never later.
    let mut settled = table.clone();
    settled.sweep(ts(now));
    let mut settled_model = model.clone();
    settled_model.expire(model.at(now));
    prop_assert_eq!(
        settled.next_wakeup(),
        settled_model.next_wakeup(),
        "next_wakeup"
    );
    if let Some(settled) = settled.next_wakeup() {
        prop_assert!(
            table.next_wakeup().is_some_and(|raw| raw <= settled),
            "next_wakeup later than due"
        );
    }

    // Every item, full snapshot, as of this step's `now`, on a copy so the table is untouched.
    let listing = list_all(&mut table.clone(), step.page_limit, ts(now))?;
    prop_assert_eq!(&listing, &model.clone().listing(now), "listing at now");
    prop_assert_eq!(
        &ids_of(&listing)?,
        &memory.created,
        "lost or duplicated ids"
    );
    for item in &listing {
        check_item(item, ts(now))?;
        // One holder per lease: a lease keeps the worker it was opened with.
        let lease = (item.acknowledged_at, item.lapses);
        if item.lease_deadline.is_some() {
            if let Some((held, holder)) = memory.holders.get(&item.id) {
                if *held == lease {
                    prop_assert_eq!(holder, &item.worker, "holder changed: {:?}", item);
                }
            }
            memory
                .holders
                .insert(item.id.clone(), (lease, item.worker.clone()));
        } else {
            memory.holders.remove(&item.id);
        }
        // The item's token never runs ahead of the tokens the table handed out.
        if let Some(latest) = item.latest_heartbeat_at {
            let last_seen = memory.seen.last(&item.id);
            prop_assert!(last_seen.is_some_and(|seen| latest <= seen), "{:?}", item);
        }
    }

    // Lazy view = swept view, at a probe time in the future.
    let probe = ts(now + step.probe);
    let mut lazy = table.clone();
    let mut swept = table.clone();
    let transitions = swept.sweep(probe);
    let lazy_listing = list_all(&mut lazy, step.page_limit, probe)?;
    let swept_listing = list_all(&mut swept, step.page_limit, probe)?;
    prop_assert_eq!(
        &lazy_listing,
        &swept_listing,
        "lazy view differs from swept view"
    );
    let mut future = model.clone();
    prop_assert_eq!(
        &lazy_listing,
        &future.listing(now + step.probe),
        "listing at probe"
    );
    prop_assert_eq!(&ids_of(&lazy_listing)?, &memory.created);
    // The lazy copy found the same lapses on its way; its sweep returns them, in order.
    let lazy_transitions: Vec<TransitionSnap> =
        lazy.sweep(probe).iter().map(TransitionSnap::of).collect();
    let swept_transitions: Vec<TransitionSnap> =
        transitions.iter().map(TransitionSnap::of).collect();
    prop_assert_eq!(&lazy_transitions, &swept_transitions);
    prop_assert_eq!(
        &swept_transitions,
        &future.drain_journal(),
        "journal at probe"
    );
    for item in &lazy_listing {
        check_item(item, probe)?;
    }
    Ok(())
}

fn run(config: ConfigSel, steps: &[Step]) -> Result<(), TestCaseError> {
    run_on::<LeaseTable>(config, steps)
}

/// Drives a table of kind `T` and the model through `steps`, comparing every result.
fn run_on<T: Table>(config: ConfigSel, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut table: T = new_table_of(config.config());
    let mut model = Model::new(config);
    let mut memory = Memory::default();
    let mut now = T0;
    for (index, step) in steps.iter().enumerate() {
        now += step.advance;
        let call = step.op.resolve(&memory.seen, now);
        let got = call_table(&mut table, &call, ts(now));
        let want = model.apply(&call, now);
        prop_assert_eq!(&got, &want, "step {}: {:?} at {}", index, call, now);
        memory.seen.record(&call, &got)?;
        if let Outcome::Heartbeat(Ok(beat)) = &got {
            prop_assert!((10..=600).contains(&beat.ttl.seconds()));
            if beat.lease_extended() {
                let token = beat.last_heartbeat.expect("a renewal has a token");
                prop_assert_eq!(
                    beat.deadline,
                    token.saturating_add_micros(beat.ttl.micros())
                );
            } else {
                // docs/contract.md §3.3: a stopping item's heartbeat changes nothing.
                prop_assert_eq!(beat.state, WorkState::Stopping);
                prop_assert!(!beat.ttl_clamped);
            }
        }
        if let (Op::Create { work, .. }, Outcome::Item(Ok(_))) = (&call, &got) {
            memory.created.insert((*work).to_string());
        }
        if let (Op::Purge { .. }, _) | (Op::Delete { .. }, Outcome::Deleted(Ok(_))) = (&call, &got)
        {
            let kept: BTreeSet<&str> = model.items.iter().map(|item| item.id.as_str()).collect();
            memory.created.retain(|id| kept.contains(id.as_str()));
            memory.holders.retain(|id, _| kept.contains(id.as_str()));
        }
        check_step(&table, &model, &mut memory, now, step)?;
    }
    // Past every deadline: a final sweep returns everything still pending, in order.
    let end = now + 700 * SECOND;
    let got: Vec<TransitionSnap> = table
        .sweep(ts(end))
        .iter()
        .map(TransitionSnap::of)
        .collect();
    model.expire(end);
    prop_assert_eq!(&got, &model.drain_journal(), "final sweep");
    prop_assert_eq!(table.next_wakeup(), model.next_wakeup());
    table.validate().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(2000),
        ..ProptestConfig::default()
    })]

    /// Sequences over every operation and every kind of clock step.
    #[test]
    fn table_matches_the_reference_model(config in config_sel(), steps in steps(60, Clock::Mixed)) {
        run(config, &steps)?;
    }
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(1000),
        ..ProptestConfig::default()
    })]

    /// The same on a clock that moves by whole seconds or not at all: equal deadlines and
    /// repeated instants are the rule rather than the exception.
    #[test]
    fn table_matches_the_reference_model_on_a_coarse_clock(
        config in config_sel(),
        steps in steps(60, Clock::Coarse),
    ) {
        run(config, &steps)?;
    }
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(1000),
        ..ProptestConfig::default()
    })]

    /// The sharded table against the same model, on the same mixed clock: its one table
    /// clock (docs/contract.md §7.1) makes every operation run at the instant the single table would.
    #[test]
    fn concurrent_table_matches_the_reference_model(
        config in config_sel(),
        steps in steps(60, Clock::Mixed),
    ) {
        run_on::<worklease::ConcurrentLeaseTable>(config, &steps)?;
    }
}

proptest! {
    // PROPTEST_CASES can raise the case count for a deep run, never lower it.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(500),
        ..ProptestConfig::default()
    })]

    /// docs/contract.md §7.3: every call goes to one table through the direct methods and to another
    /// through `apply`; both answer alike at every step (else the driver panics), and like
    /// the model.
    #[test]
    fn apply_answers_as_the_direct_methods_and_the_model(
        config in config_sel(),
        steps in steps(60, Clock::Mixed),
    ) {
        run_on::<DirectAndApplied>(config, &steps)?;
    }
}

/// The ids items are created with parse and print back unchanged: a typo in a constant would
/// otherwise quietly turn most cases into 404 tests.
#[test]
fn generated_ids_round_trip() {
    for work in WORKS {
        assert_eq!(work_id(work).to_string(), work);
    }
}

/// The case that first split table and model: w1 polls, 30 s later an anonymous poll, then
/// the caller's clock steps back 3 µs and stats asks who polled in the last 30 s. The table's
/// clock does not step back (docs/contract.md §7.1): stats answers as of the anonymous poll, exactly 30 s
/// after w1's, so w1 no longer counts, whoever forgot what on the way.
#[test]
fn stats_counts_pollers_as_of_the_table_clock() {
    let config = ConfigSel {
        default_ttl: 10,
        ack_ttl: 10,
        max_attempts: None,
        reclaim_older_than_ms: 0,
    };
    let step = |advance: i64, op: Gen| Step {
        advance,
        op,
        probe: 0,
        page_limit: 1,
    };
    let poll = |worker| Op::Poll {
        env: EnvSel::Is("env_a"),
        worker,
        reclaim_ms: 0,
    };
    let steps = [
        step(
            0,
            Op::Create {
                env: EnvSel::Is("env_a"),
                work: WORKS[0],
                session: "sess_1",
                metadata: BTreeMap::new(),
            },
        ),
        step(0, poll(Some("w1"))),
        step(30 * SECOND, poll(None)),
        step(
            -3,
            Op::Stats {
                env: EnvSel::Is("env_a"),
            },
        ),
    ];
    run(config, &steps).expect("table and model agree");

    let mut table = new_table(config.config());
    let mut seen = Seen::default();
    let mut now = T0;
    let mut last = None;
    for step in &steps {
        now += step.advance;
        let call = step.op.resolve(&seen, now);
        let outcome = call_table(&mut table, &call, ts(now));
        seen.record(&call, &outcome).expect("tokens grow");
        last = Some(outcome);
    }
    let Some(Outcome::Stats(Ok(stats))) = last else {
        panic!("the last step is stats: {last:?}");
    };
    assert_eq!(stats.workers_polling, 0);
    assert_eq!(table.clock(), Some(ts(T0 + 30 * SECOND)));
}
