//! The environment-wide pieces of poll, list, stats and sweep, one core's share of each, and
//! how shares merge: a [`crate::LeaseTable`] merges its one core's, a
//! [`crate::ConcurrentLeaseTable`] every shard's, through the same functions.

use super::{deadline_of, millis_to_micros, LeaseCore};
use crate::ids::{WorkId, WorkerId};
use crate::item::{Phase, Transition, WorkItem};
use crate::outcome::{Page, QueueStats};
use crate::request::{Cursor, ListRequest, PollRequest};
use crate::time::Timestamp;

/// One core's share of an environment's [`QueueStats`], for merging across shards.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatsPart {
    pub(crate) depth: usize,
    pub(crate) pending: usize,
    pub(crate) oldest: Option<(WorkId, Timestamp)>,
}

impl StatsPart {
    /// Adds `other`'s counts and keeps the lower-id oldest item.
    pub(crate) fn merge(mut self, other: Self) -> Self {
        self.depth += other.depth;
        self.pending += other.pending;
        if let Some(candidate) = other.oldest {
            if self
                .oldest
                .as_ref()
                .map_or(true, |(id, _)| candidate.0 < *id)
            {
                self.oldest = Some(candidate);
            }
        }
        self
    }

    /// The statistics these merged shares make, with `workers_polling`.
    pub(crate) fn into_stats(self, workers_polling: usize) -> QueueStats {
        QueueStats {
            depth: self.depth,
            pending: self.pending,
            oldest_queued_at: self.oldest.map(|(_, at)| at),
            workers_polling,
        }
    }
}

/// The page that per-core pages of one listing make (each in id order, each with whether more
/// lie beyond it): merged by id and cut to the request's limit.
pub(crate) fn merge_pages(
    parts: impl IntoIterator<Item = (Vec<WorkItem>, bool)>,
    request: &ListRequest,
) -> Page {
    let limit = request.limit.clamp(1, ListRequest::MAX_LIMIT);
    let mut data = Vec::new();
    let mut has_more = false;
    let mut pieces = 0;
    for (items, more) in parts {
        data.extend(items);
        has_more |= more;
        pieces += 1;
    }
    if pieces > 1 {
        data.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    }
    has_more |= data.len() > limit;
    let forward = !matches!(request.cursor, Cursor::Before(_));
    if forward {
        data.truncate(limit);
    } else {
        data.drain(..data.len().saturating_sub(limit));
    }
    Page::of(data, has_more, forward)
}

impl LeaseCore {
    /// Records a named worker's poll of environment `env`.
    pub(crate) fn record_poll(&mut self, env: u32, worker: &WorkerId, now: Timestamp) {
        self.environments[env as usize].record_poll(worker, now);
    }

    /// How many named workers polled `env` in the 30 s before `at`, forgetting none (only
    /// polls forget pollers, docs/contract.md §7.2).
    pub(crate) fn pollers(&self, env: u32, at: Timestamp) -> usize {
        self.environments[env as usize].pollers_at(at)
    }

    /// The lowest claimable id of `env`.
    pub(crate) fn claimable(&self, env: u32, reclaim: i64, now: Timestamp) -> Option<WorkId> {
        self.environments[env as usize]
            .claimable(reclaim, now)
            .cloned()
    }

    /// Delivers item `id` if it is still a claimable item of environment `env`.
    pub(crate) fn deliver(
        &mut self,
        env: u32,
        id: &WorkId,
        hash: u64,
        request: &PollRequest,
        now: Timestamp,
    ) -> Option<WorkItem> {
        let slot = self.find(id.key(), hash)?;
        if self.items[slot as usize].env() != env {
            return None;
        }
        let cutoff = now
            .unix_micros()
            .saturating_sub(millis_to_micros(request.reclaim_older_than_ms));
        let claimable = match self.items[slot as usize].phase {
            Phase::Queued {
                delivered_at: None, ..
            } => true,
            Phase::Queued {
                delivered_at: Some(at),
                ..
            } => at.unix_micros() <= cutoff,
            Phase::Starting { .. }
            | Phase::Active { .. }
            | Phase::Stopping { .. }
            | Phase::Stopped { .. } => false,
        };
        if !claimable {
            return None;
        }
        let worker = request
            .worker
            .as_ref()
            .map(|worker| self.workers.acquire(worker));
        let delivery = Phase::Queued {
            delivered_at: Some(now),
            worker,
        };
        self.set_phase(slot, delivery);
        Some(self.view(slot))
    }

    /// When `env`'s earliest reclaim window ends, and the earliest lease deadline.
    pub(crate) fn next_claimable_parts(
        &mut self,
        env: u32,
        reclaim: i64,
    ) -> (Option<Timestamp>, Option<Timestamp>) {
        let items = &self.items;
        let lapse_at = self.deadlines.earliest(|slot| deadline_of(items, slot));
        (
            self.environments[env as usize].next_reclaim(reclaim),
            lapse_at,
        )
    }

    /// `env`'s depth, pending count and oldest queued item as of `now`, changing nothing.
    pub(crate) fn stats_part(&self, env: u32, now: Timestamp) -> StatsPart {
        let environment = &self.environments[env as usize];
        let reclaim = millis_to_micros(self.config.reclaim_older_than_ms);
        let (mut depth, pending) = environment.depth(reclaim, now);
        let mut oldest = environment.oldest_queued().map(|id| {
            let slot = self
                .find(id.key(), self.hash(id.key()))
                .expect("invariant: queued ids are items");
            (id.clone(), self.items[slot as usize].created_at)
        });
        if !self.deadlines.none_due(now) {
            // Leases past due that no changing operation has lapsed yet count as their lapse
            // would leave them (docs/contract.md §7.2). A scan of the environment: only a read that runs
            // ahead of the last changing operation (and of the sweeper) pays it.
            let max_attempts = self.config.max_attempts;
            for &slot in &environment.items {
                let item = &self.items[slot as usize];
                let Some(lease) = item.phase.lease() else {
                    continue;
                };
                if lease.deadline > now {
                    continue;
                }
                let mut lapsed = item.clone();
                if let Phase::Queued { .. } = lapsed.lapse(lease.deadline, max_attempts) {
                    depth += 1;
                    let id = item.id(&self.texts);
                    if oldest.as_ref().map_or(true, |(lowest, _)| id < *lowest) {
                        oldest = Some((id, item.created_at));
                    }
                }
            }
        }
        StatsPart {
            depth,
            pending,
            oldest,
        }
    }

    /// Applies up to `budget` lapses due at `horizon`; `true` when none is left.
    pub(crate) fn expire_some(&mut self, horizon: Timestamp, budget: usize) -> bool {
        // Items queued again enter their queue together at the end: one sorted batch costs
        // less than a tree insert each. Nothing reads the queues in between.
        let mut requeued = Vec::new();
        let mut left = budget;
        let done = loop {
            let items = &self.items;
            let Some((at, slot)) = self
                .deadlines
                .first_due(horizon, |slot| deadline_of(items, slot))
            else {
                break true;
            };
            if left == 0 {
                break false;
            }
            if left == budget {
                // Room for every passed lease (most are due when a sweep finds any) at once,
                // rather than growing a large journal by doubling.
                let expected = self.deadlines.passed().min(budget);
                self.journal.reserve(expected);
                requeued.reserve(expected);
            }
            left -= 1;
            self.lapse_into(slot, at, Some(&mut requeued));
        };
        self.requeue(requeued);
        done
    }

    /// The lapses applied since the last call, in the order they were applied.
    pub(crate) fn take_journal(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.journal)
    }

    /// A page of environment `env`'s items and whether more lie beyond, no lapses applied.
    pub(crate) fn list_in(
        &self,
        env: u32,
        request: &ListRequest,
        at: Timestamp,
    ) -> (Vec<WorkItem>, bool) {
        let items = &self.items;
        let environment = &self.environments[env as usize];
        let slots = &environment.items;
        let limit = request.limit.clamp(1, ListRequest::MAX_LIMIT);
        let (mut page, forward): (Vec<u32>, bool) = match &request.cursor {
            Cursor::First => (slots.iter().take(limit + 1).copied().collect(), true),
            Cursor::After(id) => {
                let from = environment.position_after(id.body(), items, &self.texts);
                (
                    slots[from..].iter().take(limit + 1).copied().collect(),
                    true,
                )
            }
            Cursor::Before(id) => {
                let to = environment.position_of(id.body(), items, &self.texts);
                let before = slots[..to].iter().rev().take(limit + 1).copied().collect();
                (before, false)
            }
        };
        let has_more = page.len() > limit;
        page.truncate(limit);
        if !forward {
            page.reverse();
        }
        (
            page.iter().map(|&slot| self.view_at(slot, at)).collect(),
            has_more,
        )
    }
}

impl Page {
    /// A page of `data` (ascending id), with `next_page` set for forward listings with more.
    pub(crate) fn of(data: Vec<WorkItem>, has_more: bool, forward: bool) -> Self {
        let first_id = data.first().map(|item| item.id.clone());
        let last_id = data.last().map(|item| item.id.clone());
        let next_page = if forward && has_more {
            last_id.clone()
        } else {
            None
        };
        Self {
            data,
            first_id,
            last_id,
            has_more,
            next_page,
        }
    }
}
