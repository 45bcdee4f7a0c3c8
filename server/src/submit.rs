//! The one write path: every changing request is a typed [`Request`] (`crate::request`)
//! submitted to the [`Log`] (`crate::log`) here, and nowhere else, and answered with its own
//! answer type. Reads go through here too, after the log's read barrier. Nothing here depends
//! on the mode: the log is in memory, durable or replicated, and this code is the same.
//!
//! Reads (`get`, `list`, `stats`) are served from the local table in every mode, once
//! [`Log::read_barrier`] says a read is linearizable (at once for a sole member, where every
//! answered change is applied; a replicated leader first confirms with a majority that it
//! still leads and has applied everything committed). Followers never get here: they forward
//! requests to the leader (`crate::http::forward`).
//!
//! Sweeping is one policy in every mode: only a node that leads sweeps; a purge is a command
//! when one is due, a sweep only when a lapse is due or a request may have applied one before
//! the sweeper woke (an idle sweep changes nothing, so it is no log entry).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use worklease::{
    Config, Cursor, EnvironmentId, EnvironmentKey, EnvironmentKeyId, EnvironmentListRequest,
    EnvironmentPage, EnvironmentPatch, EnvironmentRecord, Heartbeat, HeartbeatRequest,
    ItemSecretKey, KeyDigest, LeaseTable, ListRequest, Metadata, MetadataPatch, NewEnvironment,
    Page, PollRequest, Polled, QueueStats, SessionId, StopMode, Timestamp, Transition, Updated,
    WorkItem, WorkState, WorkerId,
};

use crate::clock::Clock;
pub(crate) use crate::log::Refused;
use crate::log::{AnyLog, Log, MemoryLog, RaftLog};
use crate::metrics::{Metrics, STATES};
use crate::mint::CommandIds;
use crate::origin::RequestOrigin;
use crate::pollers::Pollers;
use crate::raft::{Durable, Leader, Status, Unavailable};
use crate::request::{self, PurgeStopped, Request, Sweep, Wake};

/// A sweep's result, for the sweeper to log.
#[derive(Debug)]
pub(crate) struct Swept {
    /// Every lapse since the previous sweep, in canonical order.
    pub(crate) transitions: Vec<Transition>,
    /// How many stopped items it purged (`None`: no purge asked).
    pub(crate) purged: Option<usize>,
    /// When the table next needs a sweep.
    pub(crate) next_wakeup: Option<Timestamp>,
}

/// The log, the table it applies to, and the signals that follow its changes.
#[derive(Debug)]
pub(crate) struct Submit {
    /// Every change goes through it.
    log: AnyLog,
    /// The log's table, for reads (the log is its only writer).
    table: Arc<Mutex<LeaseTable>>,
    /// The inputs of the ids commands mint.
    ids: CommandIds,
    /// The instant (Unix µs) the sweeper sleeps until at most; `i64::MAX`: until woken (and
    /// before the first sweep). Written under the table lock by each sweep, so a change made
    /// after a sweep compares against that sweep's answer.
    sweeper_sleeps_until: AtomicI64,
    /// Wakes the sweeper when a change moved the table's next wake-up earlier.
    sweeper: Notify,
    /// A request ran after the instant the sweeper sleeps until: the table lapses due leases
    /// before any operation, so it may have applied a lapse that only a sweep logs.
    lapse_applied: AtomicBool,
    /// That instant on the monotonic clock, in nanoseconds after `started` (`u64::MAX`: none),
    /// so a request compares it with the `Instant` it already took, without reading the time.
    sweeper_wakes_at: AtomicU64,
    started: Instant,
    /// A work item may have become claimable: long polls look again.
    work_ready: Notify,
    /// Which workers polled lately: node-local, not in the table (`crate::pollers`).
    pollers: Pollers,
    metrics: std::sync::Arc<Metrics>,
}

/// How long from `now` until `at` (zero when it is past).
pub(crate) fn until(at: Timestamp, now: Timestamp) -> Duration {
    let micros = at.unix_micros().saturating_sub(now.unix_micros()).max(0);
    Duration::from_micros(micros.unsigned_abs())
}

/// A duration in whole microseconds, saturated.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Submit {
    /// In memory: changes are applied to a new table at once.
    pub(crate) fn new(config: Config, metrics: Arc<Metrics>, clock: Arc<Clock>) -> Self {
        Self::over(
            AnyLog::Memory(MemoryLog::new(LeaseTable::new(config), clock)),
            metrics,
        )
    }

    /// Durable and replicated modes: every change goes through `durable`'s log to the table it
    /// applies to.
    pub(crate) fn logged(durable: Durable, metrics: Arc<Metrics>, clock: Arc<Clock>) -> Self {
        Self::over(AnyLog::Raft(RaftLog::new(durable, clock)), metrics)
    }

    fn over(log: AnyLog, metrics: Arc<Metrics>) -> Self {
        let table = log.table().clone();
        // Ids minted after a restart still sort after the ones minted before it.
        let table_clock = table.lock().clock();
        Self {
            log,
            table,
            ids: CommandIds::after(table_clock),
            sweeper_sleeps_until: AtomicI64::new(i64::MAX),
            sweeper: Notify::new(),
            lapse_applied: AtomicBool::new(false),
            sweeper_wakes_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            work_ready: Notify::new(),
            pollers: Pollers::new(),
            metrics,
        }
    }

    /// The time reads are answered at and waits are scheduled by.
    pub(crate) fn now(&self) -> Timestamp {
        self.log.now()
    }

    /// The Raft node, in durable and replicated modes (the internal routes and forwarding
    /// speak to it).
    pub(crate) fn durable(&self) -> Option<&Durable> {
        self.log.raft()
    }

    /// Where requests should be served: here, unless this is a replicated member that does
    /// not lead (then the leader once one is known within `wait`, else `None`).
    pub(crate) async fn leader(&self, wait: Duration) -> Option<Leader> {
        self.log.leader(wait).await
    }

    /// Whether this is a member of a replicated cluster.
    pub(crate) fn is_replicated(&self) -> bool {
        self.log.role() != crate::log::Role::Sole
    }

    /// Whether this node leads: always, but for a replicated member that follows.
    pub(crate) fn leads(&self) -> bool {
        self.log.role().leads()
    }

    /// Resolves when this node's role may have changed (never for a sole member).
    pub(crate) async fn role_changed(&self) {
        self.log.role_changed().await;
    }

    /// Resolves when a work item may have become claimable (register before looking).
    pub(crate) fn work_ready(&self) -> &Notify {
        &self.work_ready
    }

    /// Resolves when the sweeper should look at the table again.
    pub(crate) fn sweeper_signal(&self) -> &Notify {
        &self.sweeper
    }

    /// This node's place in its cluster: in memory, a one-member cluster it leads at term 0.
    pub(crate) fn cluster_status(&self) -> Status {
        self.log.status()
    }

    /// Whether this node is ready to answer (`GET /readyz`); in memory, always.
    ///
    /// # Errors
    ///
    /// Why not, for a human (see [`Durable::readiness`]).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.log.readiness()
    }

    /// Resolves, with why, when the log stops under this node (never in memory).
    pub(crate) async fn stopped(&self) -> String {
        self.log.stopped().await
    }

    /// Resolves, with why, when the cluster has removed this node (never in memory).
    pub(crate) async fn removed(&self) -> String {
        self.log.removed().await
    }

    /// Stops the log.
    pub(crate) async fn shutdown(&self) {
        self.log.shutdown().await;
    }

    /// Registers an environment under a fresh id; returns it and its creation time.
    pub(crate) async fn create_environment(
        &self,
        new: NewEnvironment,
    ) -> Result<EnvironmentRecord, Refused> {
        self.apply(request::CreateEnvironment { new }).await
    }

    pub(crate) async fn update_environment(
        &self,
        environment: &str,
        patch: &EnvironmentPatch,
    ) -> Result<EnvironmentRecord, Refused> {
        self.apply(request::UpdateEnvironment { environment, patch })
            .await
    }

    pub(crate) async fn archive_environment(
        &self,
        environment: &str,
    ) -> Result<EnvironmentRecord, Refused> {
        self.apply(request::ArchiveEnvironment { environment })
            .await
    }

    pub(crate) async fn delete_environment(
        &self,
        environment: &str,
    ) -> Result<EnvironmentId, Refused> {
        self.apply(request::DeleteEnvironment { environment }).await
    }

    /// Adds a key (already minted and hashed) to an environment under a fresh key id.
    pub(crate) async fn create_environment_key(
        &self,
        environment: &str,
        name: Option<String>,
        digest: KeyDigest,
    ) -> Result<EnvironmentKey, Refused> {
        self.apply(request::CreateEnvironmentKey {
            environment,
            name,
            digest,
        })
        .await
    }

    pub(crate) async fn revoke_environment_key(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<EnvironmentKeyId, Refused> {
        self.apply(request::RevokeEnvironmentKey { environment, key })
            .await
    }

    /// The key item secrets are signed with, setting one (32 bytes from the OS random source,
    /// through the write path, so every member holds the same) the first time one is needed.
    /// In replicated mode only the leader needs one (it answers polls); two leaders' racing
    /// proposals end with the first one applied, on every member.
    pub(crate) async fn item_secret_key(&self) -> Result<ItemSecretKey, Refused> {
        if let Some(key) = self.table.lock().item_secret_key() {
            return Ok(*key);
        }
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|error| Unavailable(format!("the OS random source failed: {error}")))?;
        self.apply(request::SetItemSecretKey {
            key: ItemSecretKey::from_bytes(bytes),
        })
        .await?;
        self.table.lock().item_secret_key().copied().ok_or_else(|| {
            Refused::Unavailable(Unavailable(
                "the item-secret key is not applied on this member yet; retry".to_owned(),
            ))
        })
    }

    /// Runs `read` on this member's table as it holds it now, without a read barrier: for
    /// checks that must cost microseconds (credentials), made where the request is served
    /// (the leader, in replicated mode).
    pub(crate) fn peek<T>(&self, read: impl FnOnce(&LeaseTable) -> T) -> T {
        read(&self.table.lock())
    }

    /// Queues a new work item under a fresh id.
    pub(crate) async fn create_work(
        &self,
        environment: &str,
        session: SessionId,
        metadata: Metadata,
    ) -> Result<WorkItem, Refused> {
        self.apply(request::CreateWork {
            environment,
            session,
            metadata,
        })
        .await
    }

    /// One look for claimable work (the long-poll loop is the caller's).
    ///
    /// Polls that find nothing write nothing: after the read barrier the local table says
    /// whether a poll would deliver now ([`LeaseTable::next_claimable_at`]), and only then does
    /// the poll become a command, whose apply decides again (another poll may have taken the
    /// item: then it answers empty too). An idle fleet long-polling costs no log entry and no
    /// fsync. A replayed forward (`crate::origin`) goes straight to the write path, which
    /// answers it from the record if its first attempt was applied.
    pub(crate) async fn poll(
        &self,
        environment: &str,
        request: &PollRequest,
    ) -> Result<Polled, Refused> {
        let replay = RequestOrigin::current().is_some_and(|origin| origin.replay);
        if !replay {
            self.read_barrier().await?;
            let now = self.now();
            let (next_claimable_at, at) = {
                let table = self.table.lock();
                let next =
                    table.next_claimable_at(environment, request.reclaim_older_than_ms, now)?;
                // The instant the table answers as of (its clock, should ours step back).
                (next, table.clock().map_or(now, |clock| clock.max(now)))
            };
            if let Some(worker) = &request.worker {
                self.pollers.record(environment, worker, now);
            }
            if next_claimable_at.is_none_or(|next| next > at) {
                return Ok(Polled::Empty { next_claimable_at });
            }
        }
        let polled = self
            .apply(request::Poll {
                environment,
                request,
            })
            .await?;
        if let (true, Some(worker)) = (replay, &request.worker) {
            self.pollers.record(environment, worker, self.now());
        }
        Ok(polled)
    }

    pub(crate) async fn ack(
        &self,
        environment: &str,
        work: &str,
        worker: Option<&WorkerId>,
    ) -> Result<Updated, Refused> {
        self.apply(request::Ack {
            environment,
            work,
            worker,
        })
        .await
    }

    pub(crate) async fn heartbeat(
        &self,
        environment: &str,
        work: &str,
        request: HeartbeatRequest,
    ) -> Result<Heartbeat, Refused> {
        let result = self
            .apply(request::Beat {
                environment,
                work,
                request,
            })
            .await;
        match &result {
            Ok(_) => self.metrics.heartbeat(None),
            Err(Refused::Table(error)) => self.metrics.heartbeat(Some(error)),
            Err(Refused::Unavailable(_) | Refused::Mismatch(_)) => {}
        }
        result
    }

    pub(crate) async fn stop(
        &self,
        environment: &str,
        work: &str,
        mode: StopMode,
    ) -> Result<Updated, Refused> {
        self.apply(request::Stop {
            environment,
            work,
            mode,
        })
        .await
    }

    pub(crate) async fn update_metadata(
        &self,
        environment: &str,
        work: &str,
        patch: &MetadataPatch,
    ) -> Result<Updated, Refused> {
        self.apply(request::UpdateMetadata {
            environment,
            work,
            patch,
        })
        .await
    }

    /// Applies every lapse due now (and purges, when asked); the sweeper's one call. `None`
    /// when this node cannot change the table now (a replicated member that does not lead).
    pub(crate) async fn sweep(&self, purge_older_than: Option<Duration>) -> Option<Swept> {
        if !self.leads() {
            return None;
        }
        let started = Instant::now();
        let swept = match self.sweep_through_log(purge_older_than).await {
            Ok(swept) => swept,
            Err(Refused::Unavailable(_)) => return None,
            Err(refused) => {
                tracing::error!(?refused, "a sweep was refused");
                return None;
            }
        };
        self.metrics.commit(started.elapsed());
        if swept.transitions.iter().any(|t| t.to == WorkState::Queued) {
            self.work_ready.notify_waiters();
        }
        Some(swept)
    }

    /// A `PurgeStopped` command when asked, a `Sweep` command only when a lapse is due.
    async fn sweep_through_log(
        &self,
        purge_older_than: Option<Duration>,
    ) -> Result<Swept, Refused> {
        let purged = match purge_older_than {
            Some(keep) => {
                let before = self.now().saturating_sub_micros(micros(keep));
                Some(
                    self.log
                        .submit(PurgeStopped { before }, &self.ids)
                        .await??,
                )
            }
            None => None,
        };
        // Due when the table says a lapse is due, or when a request may have applied one
        // first (its transition then waits in the table's journal for a sweep to log).
        let lapse_applied = self.lapse_applied.load(Ordering::Relaxed);
        let due = lapse_applied
            || self
                .table
                .lock()
                .next_wakeup()
                .is_some_and(|at| at <= self.now());
        let transitions = if due {
            let transitions = self.log.submit(Sweep, &self.ids).await??;
            if lapse_applied {
                self.lapse_applied.store(false, Ordering::Relaxed);
            }
            transitions
        } else {
            Vec::new()
        };
        // Under the table lock, so a change applied after this compares against this answer.
        let table = self.table.lock();
        let next_wakeup = table.next_wakeup();
        self.sweeper_sleeps_until.store(
            next_wakeup.map_or(i64::MAX, Timestamp::unix_micros),
            Ordering::Relaxed,
        );
        let wakes_at = next_wakeup.map_or(u64::MAX, |at| {
            let after_start = self.started.elapsed() + until(at, self.now());
            u64::try_from(after_start.as_nanos()).unwrap_or(u64::MAX)
        });
        self.sweeper_wakes_at.store(wakes_at, Ordering::Relaxed);
        Ok(Swept {
            transitions,
            purged,
            next_wakeup,
        })
    }

    /// Submits one request to the log: the only place the table changes, answered with the
    /// request's own answer type; then wakes the sweeper and long polls if it may concern them.
    async fn apply<R: Request + Send>(&self, request: R) -> Result<R::Answer, Refused>
    where
        R::Answer: Send,
    {
        let started = Instant::now();
        let answer = self.log.submit(request, &self.ids).await?;
        let wake = answer.as_ref().map_or(Wake::Nothing, R::wakes);
        // Only a lease opened or shortened, or a delivery, can bring the next wake-up earlier;
        // a renewal usually moves a deadline later, and then the sweeper sleeps on.
        let earliest_change = match wake {
            Wake::Deadline(at) => Some(at),
            Wake::NextWakeup => self.table.lock().next_wakeup(),
            Wake::Nothing | Wake::WorkReady => None,
        };
        self.metrics.commit(started.elapsed());
        if let Some(at) = earliest_change {
            if at.unix_micros() < self.sweeper_sleeps_until.load(Ordering::Relaxed) {
                self.sweeper.notify_one();
            }
        }
        let ran_at = u64::try_from(started.saturating_duration_since(self.started).as_nanos())
            .unwrap_or(u64::MAX);
        if ran_at >= self.sweeper_wakes_at.load(Ordering::Relaxed) {
            self.lapse_applied.store(true, Ordering::Relaxed);
        }
        if wake == Wake::WorkReady {
            self.work_ready.notify_waiters();
        }
        Ok(answer?)
    }

    // ---- reads: they change nothing a snapshot holds ----

    /// Waits until a read of the local table is linearizable (docs/contract.md §8 "Reads").
    async fn read_barrier(&self) -> Result<(), Refused> {
        Ok(self.log.read_barrier().await?)
    }

    pub(crate) async fn get(&self, environment: &str, work: &str) -> Result<WorkItem, Refused> {
        self.read_barrier().await?;
        let table = self.table.lock();
        Ok(table.get(environment, work, self.now())?)
    }

    pub(crate) async fn list(
        &self,
        environment: &str,
        request: &ListRequest,
    ) -> Result<Page, Refused> {
        self.read_barrier().await?;
        let table = self.table.lock();
        Ok(table.list(environment, request, self.now())?)
    }

    /// An environment's queue statistics; `workers_polling` is this node's count
    /// (`crate::pollers`), in every mode, not the table's.
    pub(crate) async fn stats(&self, environment: &str) -> Result<QueueStats, Refused> {
        self.read_barrier().await?;
        let now = self.now();
        let mut stats = self.table.lock().stats(environment, now)?;
        stats.workers_polling = self.pollers.count(environment, now);
        Ok(stats)
    }

    pub(crate) async fn retrieve_environment(
        &self,
        environment: &str,
    ) -> Result<EnvironmentRecord, Refused> {
        self.read_barrier().await?;
        Ok(self.table.lock().retrieve_environment(environment)?)
    }

    pub(crate) async fn list_environments(
        &self,
        request: &EnvironmentListRequest,
    ) -> Result<EnvironmentPage, Refused> {
        self.read_barrier().await?;
        Ok(self.table.lock().list_environments(request))
    }

    /// This node's own table as a canonical snapshot, and the index it has applied (read
    /// without any barrier: what this replica holds, not what the cluster committed).
    pub(crate) fn local_snapshot(&self) -> (Vec<u8>, u64) {
        let table = self.table.lock();
        (table.snapshot(), self.cluster_status().last_applied_index)
    }

    /// How many items each state holds ([`STATES`] order), walked a page at a time so no
    /// lock is held for long. Costs time in proportion to the items held: for scrapes.
    pub(crate) async fn count_by_state(&self) -> [usize; 5] {
        let environments = all_environments(&self.table.lock());
        let mut counts = [0; 5];
        for environment in &environments {
            let mut request = ListRequest {
                limit: ListRequest::MAX_LIMIT,
                cursor: Cursor::First,
            };
            loop {
                let page = {
                    let table = self.table.lock();
                    table.list(environment, &request, self.now())
                };
                let Ok(page) = page else { break };
                for item in &page.data {
                    if let Some(index) = STATES.iter().position(|s| *s == item.state) {
                        counts[index] += 1;
                    }
                }
                match (page.has_more, page.last_id) {
                    (true, Some(last)) => request.cursor = Cursor::After(last),
                    _ => break,
                }
            }
        }
        counts
    }
}

/// Every environment the table holds, archived ones included.
fn all_environments(table: &LeaseTable) -> Vec<EnvironmentId> {
    let mut all = Vec::new();
    let mut request = EnvironmentListRequest {
        limit: ListRequest::MAX_LIMIT,
        after: None,
        include_archived: true,
    };
    loop {
        let page = table.list_environments(&request);
        let last = page.data.last().map(|record| record.id.clone());
        all.extend(page.data.into_iter().map(|record| record.id));
        match (page.has_more, last) {
            (true, Some(last)) => request.after = Some(last),
            _ => return all,
        }
    }
}

#[cfg(test)]
mod tests {
    use worklease::EnvironmentKind;

    use super::*;

    /// One sweep policy and one meaning of "applied" (`crate::log`): in memory as in a log,
    /// a poll that finds nothing and a sweep with nothing due are no entries; each change,
    /// and a sweep that is due, is one.
    #[tokio::test]
    async fn only_changes_and_due_sweeps_are_entries_in_memory() {
        let clock = Arc::new(Clock::new());
        let submit = Submit::new(Config::default(), Arc::new(Metrics::new()), clock.clone());
        let applied = || submit.cluster_status().last_applied_index;
        let environment = submit
            .create_environment(NewEnvironment {
                name: "idle".to_owned(),
                kind: EnvironmentKind::SelfHosted,
                config: None,
                description: None,
                metadata: Metadata::new(),
                scope: None,
            })
            .await
            .expect("created")
            .id
            .to_string();
        assert_eq!(applied(), 1);
        for _ in 0..100 {
            let polled = submit.poll(&environment, &PollRequest::default()).await;
            assert!(matches!(polled, Ok(Polled::Empty { .. })), "{polled:?}");
        }
        let swept = submit.sweep(None).await.expect("a sole member sweeps");
        assert!(swept.transitions.is_empty());
        assert_eq!(applied(), 1, "empty polls and an idle sweep are no entries");

        submit
            .create_work(&environment, SessionId::from_u128(1), Metadata::new())
            .await
            .expect("created");
        let polled = submit.poll(&environment, &PollRequest::default()).await;
        let Ok(Polled::Delivered(item)) = polled else {
            panic!("{polled:?}")
        };
        submit
            .ack(&environment, &item.id.to_string(), None)
            .await
            .expect("acked");
        assert_eq!(applied(), 4);
        // An hour on, the acknowledged item's lease has lapsed: the sweep is due, and one entry.
        clock.set_skew_micros(3_600_000_000);
        let swept = submit.sweep(None).await.expect("a sole member sweeps");
        assert!(!swept.transitions.is_empty(), "{swept:?}");
        assert_eq!(applied(), 5, "a due sweep is one entry");
    }
}
