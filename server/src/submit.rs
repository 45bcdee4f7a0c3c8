//! The one write path: every changing request is a typed [`Request`] (`crate::request`) that
//! is applied to the table here, and nowhere else, and answered with its own answer type. Reads go through here too, so a mode that must confirm its
//! leadership before answering has one place to do it.
//!
//! Every mode turns the request into the same `worklease::Stamped` command
//! ([`Request::command`]: stamped once, here, with this server's clock, its new ids minted here
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
    Config, Cursor, EnvironmentId, EnvironmentKey, EnvironmentKeyId, EnvironmentListRequest,
    EnvironmentPage, EnvironmentPatch, EnvironmentRecord, Error, Heartbeat, HeartbeatRequest,
    ItemSecretKey, KeyDigest, LeaseTable, ListRequest, Metadata, MetadataPatch, NewEnvironment,
    Page, PollRequest, Polled, QueueStats, SessionId, Stamped, StopMode, Timestamp, Transition,
    Updated, WorkItem, WorkState, WorkerId,
};

use crate::clock::Clock;
use crate::metrics::{Metrics, STATES};
use crate::mint::Mint;
use crate::origin::RequestOrigin;
use crate::pollers::Pollers;
use crate::raft::{Durable, Leader, Status, Unavailable};
use crate::request::{self, Kind, Mismatch, PurgeStopped, Request, Sweep, Wake};

/// Why a request got no answer from the table.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The table (or the crate's parsers) refused it: docs/contract.md §6.
    Table(Error),
    /// It cannot be answered now (no leader, lost leadership, not committed in time): 503.
    Unavailable(Unavailable),
    /// A replay that does not repeat its origin's request (409), or an answer of another
    /// kind (500): `crate::request`.
    Mismatch(Mismatch),
}

impl From<Mismatch> for Refused {
    fn from(mismatch: Mismatch) -> Self {
        Self::Mismatch(mismatch)
    }
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
    /// Which workers polled lately: node-local, not in the table (`crate::pollers`).
    pollers: Pollers,
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
            pollers: Pollers::new(),
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
        let started = Instant::now();
        let swept = match &self.durable {
            Some(durable) => match self.sweep_durable(durable, purge_older_than).await {
                Ok(swept) => swept,
                Err(Refused::Unavailable(_)) => return None,
                Err(refused) => {
                    tracing::error!(?refused, "a sweep was refused");
                    return None;
                }
            },
            None => self.sweep_in_memory(purge_older_than),
        };
        // A sweep that found nothing due is not a change: a log would not have recorded it.
        if !swept.transitions.is_empty() || swept.purged.unwrap_or(0) > 0 {
            self.applied.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.commit(started.elapsed());
        if swept.transitions.iter().any(|t| t.to == WorkState::Queued) {
            self.work_ready.notify_waiters();
        }
        Some(swept)
    }

    /// In memory: the lapses due and the purge, applied at once.
    fn sweep_in_memory(&self, purge_older_than: Option<Duration>) -> Swept {
        let mut table = self.table.lock();
        let now = self.clock.now();
        let purged = purge_older_than
            .map(|keep| table.purge_stopped(now.saturating_sub_micros(micros(keep)), now));
        let transitions = table.sweep(now);
        let next_wakeup = table.next_wakeup();
        self.sweeper_sleeps_until.store(
            next_wakeup.map_or(i64::MAX, Timestamp::unix_micros),
            Ordering::Relaxed,
        );
        Swept {
            transitions,
            purged,
            next_wakeup,
        }
    }

    /// Applies one request: the only place the table changes (in durable mode, the only
    /// place a change is proposed), answered with the request's own answer type.
    async fn apply<R: Request>(&self, request: R) -> Result<R::Answer, Refused> {
        if let Some(durable) = &self.durable {
            // Boxed: an async fn's future is as large as its largest branch, and the caller's
            // future holds it whole. Inline, the durable branch made an in-memory heartbeat's
            // future 2 416 bytes (208 boxed), allocated and moved on every request: 16 861 ->
            // 16 246 instructions a heartbeat, the bare route 18 170
            // (`scripts/request-instructions.sh 10 1000`).
            return Box::pin(self.apply_durable(durable, request)).await;
        }
        let started = Instant::now();
        let mut table = self.table.lock();
        // Stamped under the lock, so stamps follow the order commands apply (the table clamps
        // one that steps back). No leader changes here, so no timeline to keep.
        let now = self.clock.now();
        // The same command durable mode logs, applied at once (a heartbeat skips building it).
        let answer = request.apply_to(&mut table, now, || self.mint_inputs(now));
        let wake = match &answer {
            Ok(Ok(answer)) => R::wakes(answer),
            Ok(Err(_)) | Err(_) => Wake::Nothing,
        };
        // Only a lease opened or shortened, or a delivery, can bring the next wake-up earlier;
        // a renewal usually moves a deadline later, and then the sweeper sleeps on.
        let earliest_change = match wake {
            Wake::Deadline(at) => Some(at),
            Wake::NextWakeup => table.next_wakeup(),
            Wake::Nothing | Wake::WorkReady => None,
        };
        drop(table);
        self.settle(started, wake, earliest_change);
        Ok(answer??)
    }

    /// What follows an applied command in every mode: counters, metrics, and waking the
    /// sweeper and long polls.
    fn settle(&self, started: Instant, wake: Wake, earliest_change: Option<Timestamp>) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.metrics.commit(started.elapsed());
        if let Some(at) = earliest_change {
            if at.unix_micros() < self.sweeper_sleeps_until.load(Ordering::Relaxed) {
                self.sweeper.notify_one();
            }
        }
        if wake == Wake::WorkReady {
            self.work_ready.notify_waiters();
        }
    }

    /// Durable mode: the command is stamped and its ids minted in log order, proposed, and
    /// answered once fsynced and applied; a replayed forward whose first attempt was applied
    /// is answered from the record, if it asks what its first attempt asked.
    async fn apply_durable<R: Request>(
        &self,
        durable: &Durable,
        request: R,
    ) -> Result<R::Answer, Refused> {
        let started = Instant::now();
        let origin = RequestOrigin::current();
        let recorded = match origin {
            // A second attempt of a forwarded change: once everything committed is applied
            // here, a recorded answer is the first attempt's (`crate::origin`).
            Some(origin) if origin.replay => {
                durable.read_barrier().await?;
                durable
                    .recorded(origin.id)
                    .map(|record| (origin.id, record))
            }
            _ => None,
        };
        let answer = match recorded {
            Some((origin, record)) => {
                let asked = request.asked();
                let refused = |recorded: Option<Kind>| Mismatch::Replay {
                    origin,
                    recorded,
                    asked: asked.kind,
                };
                if let Some(recorded) = record.asked.filter(|recorded| *recorded != asked) {
                    return Err(refused(Some(recorded.kind)).into());
                }
                match record.answer {
                    // A record without what was asked (restored from an older snapshot) still
                    // answers only a request of the kind its answer belongs to.
                    Ok(applied) => Ok(R::answer(applied).map_err(|_| refused(None))?),
                    Err(error) => Err(error),
                }
            }
            None => {
                let (applied, ()) = durable
                    .propose(origin.map(|o| o.id), |now| {
                        let command = request.command(|| self.mint_inputs(now));
                        (Stamped::new(now, command), ())
                    })
                    .await?;
                match applied {
                    Ok(applied) => Ok(R::answer(applied)?),
                    Err(error) => Err(error),
                }
            }
        };
        let wake = answer.as_ref().map_or(Wake::Nothing, R::wakes);
        let earliest_change = match wake {
            Wake::Deadline(at) => Some(at),
            Wake::NextWakeup => self.table.lock().next_wakeup(),
            Wake::Nothing | Wake::WorkReady => None,
        };
        self.settle(started, wake, earliest_change);
        Ok(answer?)
    }

    /// Durable mode's sweep: a `PurgeStopped` command when asked, a `Sweep` command only when
    /// a lapse is due (an idle sweep changes nothing, so the log does not record it).
    async fn sweep_durable(
        &self,
        durable: &Durable,
        purge_older_than: Option<Duration>,
    ) -> Result<Swept, Refused> {
        if !durable.leads() {
            return Err(Unavailable("only the leader sweeps".to_owned()).into());
        }
        let purged = match purge_older_than {
            Some(keep) => {
                let (applied, ()) = durable
                    .propose(None, |now| {
                        let before = now.saturating_sub_micros(micros(keep));
                        let purge = PurgeStopped { before }.command(|| self.mint_inputs(now));
                        (Stamped::new(now, purge), ())
                    })
                    .await?;
                Some(PurgeStopped::answer(applied?)?)
            }
            None => None,
        };
        let due = self
            .table
            .lock()
            .next_wakeup()
            .is_some_and(|at| at <= self.now());
        let transitions = if due {
            let (applied, ()) = durable
                .propose(None, |now| {
                    (
                        Stamped::new(now, Sweep.command(|| self.mint_inputs(now))),
                        (),
                    )
                })
                .await?;
            Sweep::answer(applied?)?
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
