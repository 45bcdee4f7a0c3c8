//! The one write path: every changing request becomes an [`Op`] and is applied to the table
//! here, and nowhere else. Reads go through here too, so a mode that must confirm its
//! leadership before answering has one place to do it.
//!
//! Every mode turns the [`Op`] into the same `worklease::Stamped` command
//! ([`Submit::command`]: stamped once, here, with this server's clock, its new ids minted here
//! too). In memory it is applied to the table at once, under the lock; in durable mode it is
//! proposed to the Raft log and answered once it is fsynced and applied by the state machine
//! (`crate::raft`). Only [`Submit::apply`] knows the difference (and sweeps, which durable
//! mode logs only when something is due). The handlers and the sweeper call the typed methods below and never see the
//! table.
//!
//! Reads (`get`, `list`, `stats`) are served from the local table in every mode: in a
//! one-member cluster every committed command is applied before its writer is answered, so a
//! read sees every write that was answered before it; a replicated leader first confirms with a
//! majority that it still leads and has applied everything committed
//! ([`Durable::read_barrier`]). Followers never get here: they forward requests to the leader
//! (`crate::http::forward`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use worklease::{
    Applied, Command, Config, Cursor, EnvironmentId, EnvironmentListRequest, EnvironmentPage,
    EnvironmentPatch, EnvironmentRecord, Error, Heartbeat, HeartbeatRequest, LeaseTable,
    ListRequest, Metadata, MetadataPatch, NewEnvironment, Page, PollRequest, Polled, QueueStats,
    SessionId, Stamped, StopMode, Timestamp, Transition, Updated, WorkId, WorkItem, WorkState,
    WorkerId,
};

use crate::clock::Clock;
use crate::metrics::{Metrics, STATES};
use crate::mint::Mint;
use crate::origin::RequestOrigin;
use crate::raft::{Durable, Leader, Status, Unavailable};

/// Why a request got no answer from the table.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The table (or the crate's parsers) refused it: docs/contract.md §6.
    Table(Error),
    /// It cannot be answered now (no leader, lost leadership, not committed in time): 503.
    Unavailable(Unavailable),
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self::Table(error)
    }
}

impl From<Unavailable> for Refused {
    fn from(unavailable: Unavailable) -> Self {
        Self::Unavailable(unavailable)
    }
}

/// A changing request, with everything the table needs but the time.
#[derive(Debug)]
enum Op<'a> {
    CreateEnvironment {
        new: NewEnvironment,
    },
    UpdateEnvironment {
        environment: &'a str,
        patch: &'a EnvironmentPatch,
    },
    ArchiveEnvironment {
        environment: &'a str,
    },
    DeleteEnvironment {
        environment: &'a str,
    },
    CreateWork {
        environment: &'a str,
        session: SessionId,
        metadata: Metadata,
    },
    Poll {
        environment: &'a str,
        request: &'a PollRequest,
    },
    Ack {
        environment: &'a str,
        work: &'a str,
        worker: Option<&'a WorkerId>,
    },
    Heartbeat {
        environment: &'a str,
        work: &'a str,
        request: HeartbeatRequest,
    },
    Stop {
        environment: &'a str,
        work: &'a str,
        mode: StopMode,
    },
    UpdateMetadata {
        environment: &'a str,
        work: &'a str,
        patch: &'a MetadataPatch,
    },
    Sweep {
        /// Also forget the items stopped longer ago than this.
        purge_older_than: Option<Duration>,
    },
}

/// What applying an [`Op`] answered, one variant per kind of outcome.
#[derive(Debug)]
enum Done {
    Environment(EnvironmentRecord),
    EnvironmentDeleted(EnvironmentId),
    Created(WorkItem),
    Polled(Polled),
    Updated(Updated),
    Heartbeat(Heartbeat),
    Swept(Swept),
}

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

/// The table and the signals that follow its changes.
#[derive(Debug)]
pub(crate) struct Submit {
    /// In durable mode, shared with the Raft state machine, which is the only writer.
    table: Arc<Mutex<LeaseTable>>,
    /// Durable mode: the Raft node every change is proposed to.
    durable: Option<Durable>,
    /// Commands applied so far (refused ones included, as a log records them; sweeps only when
    /// they changed something): `last_applied_index` of `GET /cluster`.
    applied: AtomicU64,
    /// The latest instant an id was minted at (Unix µs), so ids keep sorting in creation order
    /// even if the wall clock steps back.
    minted_at: AtomicI64,
    mint: Mint,
    /// The instant (Unix µs) the sweeper sleeps until at most; `i64::MAX`: until woken.
    /// Written under the table lock by each sweep, so a change made after a sweep compares
    /// against that sweep's answer.
    sweeper_sleeps_until: AtomicI64,
    /// Wakes the sweeper when a change moved the table's next wake-up earlier.
    sweeper: Notify,
    /// A work item may have become claimable: long polls look again.
    work_ready: Notify,
    metrics: std::sync::Arc<Metrics>,
    /// Stamps commands; the time reads are answered at.
    clock: Arc<Clock>,
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
    pub(crate) fn new(config: Config, metrics: Arc<Metrics>, clock: Arc<Clock>) -> Self {
        Self::with_table(
            Arc::new(Mutex::new(LeaseTable::new(config))),
            None,
            metrics,
            clock,
        )
    }

    /// Durable and replicated modes: every change goes through `durable`'s log to the table it
    /// applies to.
    pub(crate) fn logged(durable: Durable, metrics: Arc<Metrics>, clock: Arc<Clock>) -> Self {
        let table = durable.table().clone();
        Self::with_table(table, Some(durable), metrics, clock)
    }

    fn with_table(
        table: Arc<Mutex<LeaseTable>>,
        durable: Option<Durable>,
        metrics: Arc<Metrics>,
        clock: Arc<Clock>,
    ) -> Self {
        let table_clock = table.lock().clock();
        Self {
            table,
            durable,
            applied: AtomicU64::new(0),
            // Ids minted after a restart still sort after the ones minted before it.
            minted_at: AtomicI64::new(table_clock.map_or(i64::MIN, Timestamp::unix_micros)),
            mint: Mint::new(),
            sweeper_sleeps_until: AtomicI64::new(i64::MIN),
            sweeper: Notify::new(),
            work_ready: Notify::new(),
            metrics,
            clock,
        }
    }

    /// The time reads are answered at and waits are scheduled by.
    pub(crate) fn now(&self) -> Timestamp {
        match self.durable.as_ref().and_then(Durable::leading_term) {
            // A new leader's reads and sweeps go by its term's corrected time from the start,
            // not only once it has stamped something (`crate::clock`).
            Some(term) => self.clock.now_in_term(term),
            None => self.clock.now(),
        }
    }

    /// The Raft node, in durable and replicated modes.
    pub(crate) fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// Where requests should be served: here, unless this is a replicated member that does
    /// not lead (then the leader once one is known within `wait`, else `None`).
    pub(crate) async fn leader(&self, wait: Duration) -> Option<Leader> {
        match &self.durable {
            Some(durable) if durable.is_replicated() => {
                if durable.leads() {
                    Some(Leader::Me)
                } else {
                    durable.leader(wait).await
                }
            }
            _ => Some(Leader::Me),
        }
    }

    /// Whether this is a member of a replicated cluster.
    pub(crate) fn is_replicated(&self) -> bool {
        self.durable.as_ref().is_some_and(Durable::is_replicated)
    }

    /// Whether this node leads: always, but for a replicated member that follows.
    pub(crate) fn leads(&self) -> bool {
        match &self.durable {
            Some(durable) if durable.is_replicated() => durable.leads(),
            _ => true,
        }
    }

    /// Resolves when this node's role may have changed (never in a one-member cluster).
    pub(crate) async fn role_changed(&self) {
        match &self.durable {
            Some(durable) if durable.is_replicated() => durable.role_changed().await,
            _ => std::future::pending().await,
        }
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
        match &self.durable {
            Some(durable) => durable.status(),
            None => Status {
                node_id: 1,
                leader_id: Some(1),
                term: 0,
                role: "leader",
                last_applied_index: self.applied.load(Ordering::Relaxed),
            },
        }
    }

    /// Whether this node is ready to answer (`GET /readyz`); in memory, always.
    ///
    /// # Errors
    ///
    /// Why not, for a human (see [`Durable::readiness`]).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.durable.as_ref().map_or(Ok(()), Durable::readiness)
    }

    /// Resolves, with why, when the log stops under this node (never in memory).
    pub(crate) async fn stopped(&self) -> String {
        match &self.durable {
            Some(durable) => durable.stopped().await,
            None => std::future::pending().await,
        }
    }

    /// Stops the log, if there is one.
    pub(crate) async fn shutdown(&self) {
        if let Some(durable) = &self.durable {
            durable.shutdown().await;
        }
    }

    /// Registers an environment under a fresh id; returns it and its creation time.
    pub(crate) async fn create_environment(
        &self,
        new: NewEnvironment,
    ) -> Result<EnvironmentRecord, Refused> {
        self.environment_op(Op::CreateEnvironment { new }).await
    }

    pub(crate) async fn update_environment(
        &self,
        environment: &str,
        patch: &EnvironmentPatch,
    ) -> Result<EnvironmentRecord, Refused> {
        self.environment_op(Op::UpdateEnvironment { environment, patch })
            .await
    }

    pub(crate) async fn archive_environment(
        &self,
        environment: &str,
    ) -> Result<EnvironmentRecord, Refused> {
        self.environment_op(Op::ArchiveEnvironment { environment })
            .await
    }

    pub(crate) async fn delete_environment(
        &self,
        environment: &str,
    ) -> Result<EnvironmentId, Refused> {
        match self.apply(Op::DeleteEnvironment { environment }).await? {
            Done::EnvironmentDeleted(id) => Ok(id),
            other => unreachable!("invariant: a delete answers EnvironmentDeleted, got {other:?}"),
        }
    }

    async fn environment_op(&self, op: Op<'_>) -> Result<EnvironmentRecord, Refused> {
        match self.apply(op).await? {
            Done::Environment(record) => Ok(record),
            other => unreachable!("invariant: this operation answers Environment, got {other:?}"),
        }
    }

    /// Queues a new work item under a fresh id.
    pub(crate) async fn create_work(
        &self,
        environment: &str,
        session: SessionId,
        metadata: Metadata,
    ) -> Result<WorkItem, Refused> {
        let op = Op::CreateWork {
            environment,
            session,
            metadata,
        };
        match self.apply(op).await? {
            Done::Created(item) => Ok(item),
            other => unreachable!("invariant: a create answers Created, got {other:?}"),
        }
    }

    /// One look for claimable work (the long-poll loop is the caller's).
    pub(crate) async fn poll(
        &self,
        environment: &str,
        request: &PollRequest,
    ) -> Result<Polled, Refused> {
        match self
            .apply(Op::Poll {
                environment,
                request,
            })
            .await?
        {
            Done::Polled(polled) => Ok(polled),
            other => unreachable!("invariant: a poll answers Polled, got {other:?}"),
        }
    }

    pub(crate) async fn ack(
        &self,
        environment: &str,
        work: &str,
        worker: Option<&WorkerId>,
    ) -> Result<Updated, Refused> {
        self.updated(Op::Ack {
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
            .apply(Op::Heartbeat {
                environment,
                work,
                request,
            })
            .await;
        match &result {
            Ok(_) => self.metrics.heartbeat(None),
            Err(Refused::Table(error)) => self.metrics.heartbeat(Some(error)),
            Err(Refused::Unavailable(_)) => {}
        }
        match result? {
            Done::Heartbeat(beat) => Ok(beat),
            other => unreachable!("invariant: a heartbeat answers Heartbeat, got {other:?}"),
        }
    }

    pub(crate) async fn stop(
        &self,
        environment: &str,
        work: &str,
        mode: StopMode,
    ) -> Result<Updated, Refused> {
        self.updated(Op::Stop {
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
        self.updated(Op::UpdateMetadata {
            environment,
            work,
            patch,
        })
        .await
    }

    /// Applies every lapse due now (and purges, when asked); the sweeper's one call. `None`
    /// when this node cannot change the table now (a replicated member that does not lead).
    pub(crate) async fn sweep(&self, purge_older_than: Option<Duration>) -> Option<Swept> {
        match self.apply(Op::Sweep { purge_older_than }).await {
            Ok(Done::Swept(swept)) => Some(swept),
            Err(Refused::Unavailable(_)) => None,
            other => unreachable!("invariant: a sweep answers Swept, got {other:?}"),
        }
    }

    async fn updated(&self, op: Op<'_>) -> Result<Updated, Refused> {
        match self.apply(op).await? {
            Done::Updated(updated) => Ok(updated),
            other => unreachable!("invariant: this operation answers Updated, got {other:?}"),
        }
    }

    /// Applies one command: the only place the table changes (in durable mode, the only
    /// place a change is proposed).
    async fn apply(&self, op: Op<'_>) -> Result<Done, Refused> {
        if let Some(durable) = &self.durable {
            // Boxed: an async fn's future is as large as its largest branch, and the caller's
            // future holds it whole. Inline, the durable branch made an in-memory heartbeat's
            // future 2 416 bytes (208 boxed), allocated and moved on every request: 16 861 ->
            // 16 246 instructions a heartbeat, the bare route 18 170
            // (`scripts/request-instructions.sh 10 1000`).
            return Box::pin(self.apply_durable(durable, op)).await;
        }
        let started = Instant::now();
        let mut table = self.table.lock();
        // Stamped under the lock, so stamps follow the order commands apply (the table clamps
        // one that steps back). No leader changes here, so no timeline to keep.
        let now = self.clock.now();
        let done = match op {
            Op::Sweep { purge_older_than } => {
                let purged = purge_older_than
                    .map(|keep| table.purge_stopped(now.saturating_sub_micros(micros(keep)), now));
                let transitions = table.sweep(now);
                let next_wakeup = table.next_wakeup();
                self.sweeper_sleeps_until.store(
                    next_wakeup.map_or(i64::MAX, Timestamp::unix_micros),
                    Ordering::Relaxed,
                );
                Ok(Done::Swept(Swept {
                    transitions,
                    purged,
                    next_wakeup,
                }))
            }
            // What `table.apply` does with the heartbeat command (its arm is this call), without
            // copying the ids into the command's two boxed strings: heartbeats are the hot
            // path, and those copies cost ~450 instructions a request (callgrind,
            // scripts/request-instructions.sh).
            Op::Heartbeat {
                environment,
                work,
                request,
            } => table
                .heartbeat(environment, work, request, now)
                .map(Done::Heartbeat),
            // The same command durable mode logs, applied at once.
            op => table
                .apply(&Stamped::new(now, self.command(op, now)))
                .map(done_of),
        };
        // Only a lease opened or shortened, or a delivery, can bring the next wake-up earlier;
        // a renewal usually moves a deadline later, and then the sweeper sleeps on.
        let earliest_change = match &done {
            Ok(Done::Heartbeat(beat)) if beat.lease_extended() => Some(beat.deadline),
            Ok(Done::Updated(updated)) if updated.changed => table.next_wakeup(),
            Ok(Done::Polled(Polled::Delivered(_))) => table.next_wakeup(),
            Ok(_) | Err(_) => None,
        };
        drop(table);
        self.settle(started, &done, earliest_change);
        Ok(done?)
    }

    /// What follows an applied command in every mode: counters, metrics, and waking the
    /// sweeper and long polls.
    fn settle(
        &self,
        started: Instant,
        done: &Result<Done, Error>,
        earliest_change: Option<Timestamp>,
    ) {
        // A sweep that found nothing due is not a change: a log would not have recorded it.
        let idle_sweep = matches!(&done, Ok(Done::Swept(swept))
            if swept.transitions.is_empty() && swept.purged.unwrap_or(0) == 0);
        if !idle_sweep {
            self.applied.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.commit(started.elapsed());
        if let Some(at) = earliest_change {
            if at.unix_micros() < self.sweeper_sleeps_until.load(Ordering::Relaxed) {
                self.sweeper.notify_one();
            }
        }
        match done {
            Ok(Done::Created(_)) => self.work_ready.notify_waiters(),
            Ok(Done::Swept(swept))
                if swept.transitions.iter().any(|t| t.to == WorkState::Queued) =>
            {
                self.work_ready.notify_waiters();
            }
            _ => {}
        }
    }

    /// Durable mode: the command is stamped and its ids minted in log order, proposed, and
    /// answered once fsynced and applied.
    async fn apply_durable(&self, durable: &Durable, op: Op<'_>) -> Result<Done, Refused> {
        let started = Instant::now();
        if let Op::Sweep { purge_older_than } = op {
            let done: Result<Done, Error> = Ok(Done::Swept(
                self.sweep_durable(durable, purge_older_than).await?,
            ));
            self.settle(started, &done, None);
            return Ok(done?);
        }
        let origin = RequestOrigin::current();
        let recorded = match origin {
            // A second attempt of a forwarded change: once everything committed is applied
            // here, a recorded answer is the first attempt's (`crate::origin`).
            Some(origin) if origin.replay => {
                durable.read_barrier().await?;
                durable.recorded(origin.id)
            }
            _ => None,
        };
        let applied = match recorded {
            Some(answer) => answer,
            None => {
                durable
                    .propose(origin.map(|o| o.id), |now| {
                        (Stamped::new(now, self.command(op, now)), ())
                    })
                    .await?
                    .0
            }
        };
        let done = applied.map(done_of);
        let earliest_change = match &done {
            Ok(Done::Heartbeat(beat)) if beat.lease_extended() => Some(beat.deadline),
            Ok(Done::Updated(updated)) if updated.changed => self.table.lock().next_wakeup(),
            Ok(Done::Polled(Polled::Delivered(_))) => self.table.lock().next_wakeup(),
            Ok(_) | Err(_) => None,
        };
        self.settle(started, &done, earliest_change);
        Ok(done?)
    }

    /// Durable mode's sweep: a `PurgeStopped` command when asked, a `Sweep` command only when
    /// a lapse is due (an idle sweep changes nothing, so the log does not record it).
    async fn sweep_durable(
        &self,
        durable: &Durable,
        purge_older_than: Option<Duration>,
    ) -> Result<Swept, Unavailable> {
        if !durable.leads() {
            return Err(Unavailable("only the leader sweeps".to_owned()));
        }
        let purged = match purge_older_than {
            Some(keep) => {
                let (applied, ()) = durable
                    .propose(None, |now| {
                        let before = now.saturating_sub_micros(micros(keep));
                        (Stamped::new(now, Command::PurgeStopped { before }), ())
                    })
                    .await?;
                match applied {
                    Ok(Applied::Purged(purged)) => Some(purged),
                    other => unreachable!("invariant: a purge answers Purged, got {other:?}"),
                }
            }
            None => None,
        };
        let due = self
            .table
            .lock()
            .next_wakeup()
            .is_some_and(|at| at <= self.now())
            // A replicated leader stamps at least every tick, so every member's latest stamp
            // is recent: the timeline a new leader measures from (`crate::clock`).
            || (durable.is_replicated()
                && self
                    .clock
                    .since_live()
                    .is_none_or(|since| since >= crate::sweeper::REPLICATED_TICK / 2));
        let transitions = if due {
            let (applied, ()) = durable
                .propose(None, |now| (Stamped::new(now, Command::Sweep), ()))
                .await?;
            match applied {
                Ok(Applied::Swept(transitions)) => transitions,
                other => unreachable!("invariant: a sweep answers Swept, got {other:?}"),
            }
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
        Ok(Swept {
            transitions,
            purged,
            next_wakeup,
        })
    }

    /// The command a changing request becomes at `now`, new ids minted: what in-memory mode
    /// applies and durable mode logs, built in one place. Sweeps are not built here: each
    /// mode runs its own (durable mode logs only the ones with something due).
    fn command(&self, op: Op<'_>, now: Timestamp) -> Command {
        match op {
            Op::CreateEnvironment { new } => Command::CreateEnvironment {
                id: EnvironmentId::mint_with(self.mint_inputs(now)),
                new,
            },
            Op::UpdateEnvironment { environment, patch } => Command::UpdateEnvironment {
                environment: environment.into(),
                patch: patch.clone(),
            },
            Op::ArchiveEnvironment { environment } => Command::ArchiveEnvironment {
                environment: environment.into(),
            },
            Op::DeleteEnvironment { environment } => Command::DeleteEnvironment {
                environment: environment.into(),
            },
            Op::CreateWork {
                environment,
                session,
                metadata,
            } => Command::CreateWork {
                environment: environment.into(),
                id: WorkId::mint_with(self.mint_inputs(now)),
                session,
                metadata,
            },
            Op::Poll {
                environment,
                request,
            } => Command::Poll {
                environment: environment.into(),
                request: request.clone(),
            },
            Op::Ack {
                environment,
                work,
                worker,
            } => Command::Ack {
                environment: environment.into(),
                work: work.into(),
                worker: worker.cloned(),
            },
            Op::Heartbeat {
                environment,
                work,
                request,
            } => Command::Heartbeat {
                environment: environment.into(),
                work: work.into(),
                request,
            },
            Op::Stop {
                environment,
                work,
                mode,
            } => Command::Stop {
                environment: environment.into(),
                work: work.into(),
                mode,
            },
            Op::UpdateMetadata {
                environment,
                work,
                patch,
            } => Command::UpdateMetadata {
                environment: environment.into(),
                work: work.into(),
                patch: patch.clone(),
            },
            Op::Sweep { .. } => unreachable!("invariant: sweeps are applied on their own"),
        }
    }

    /// A new id's time, sequence and entropy. Called under the table lock, so ids sort in the
    /// order the table receives them: the time never goes back and the sequence breaks ties.
    fn mint_inputs(&self, now: Timestamp) -> (Timestamp, u64, u64) {
        let previous = self
            .minted_at
            .fetch_max(now.unix_micros(), Ordering::Relaxed);
        let at = Timestamp::from_unix_micros(previous.max(now.unix_micros()));
        let sequence = self.mint.sequence();
        (at, sequence, self.mint.entropy(sequence, 1))
    }

    // ---- reads: they change nothing a snapshot holds ----

    /// Waits until a read of the local table is linearizable (docs/contract.md §8 "Reads").
    async fn read_barrier(&self) -> Result<(), Unavailable> {
        match &self.durable {
            Some(durable) => durable.read_barrier().await,
            None => Ok(()),
        }
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

    pub(crate) async fn stats(&self, environment: &str) -> Result<QueueStats, Refused> {
        self.read_barrier().await?;
        let table = self.table.lock();
        Ok(table.stats(environment, self.now())?)
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

/// The answer of an applied command as the handlers take it.
fn done_of(applied: Applied) -> Done {
    match applied {
        Applied::EnvironmentCreated(record)
        | Applied::EnvironmentUpdated(record)
        | Applied::EnvironmentArchived(record) => Done::Environment(record),
        Applied::EnvironmentDeleted(id) => Done::EnvironmentDeleted(id),
        Applied::Created(item) => Done::Created(item),
        Applied::Polled(polled) => Done::Polled(polled),
        Applied::Acked(updated) | Applied::Stopped(updated) | Applied::MetadataUpdated(updated) => {
            Done::Updated(updated)
        }
        Applied::Heartbeat(beat) => Done::Heartbeat(beat),
        other => {
            unreachable!("invariant: a request's command answers its own outcome, got {other:?}")
        }
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

/// Ids minted from `(time, sequence, entropy)`.
trait MintWith {
    fn mint_with(inputs: (Timestamp, u64, u64)) -> Self;
}

impl MintWith for EnvironmentId {
    fn mint_with((at, sequence, entropy): (Timestamp, u64, u64)) -> Self {
        Self::mint(at, sequence, entropy)
    }
}

impl MintWith for WorkId {
    fn mint_with((at, sequence, entropy): (Timestamp, u64, u64)) -> Self {
        Self::mint(at, sequence, entropy)
    }
}
