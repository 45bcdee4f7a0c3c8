//! The in-memory log: no disk and one member. Each command is applied under the table lock
//! as it arrives, stamped there, so stamps follow the order commands apply; each is its own
//! entry. A restart starts from an empty table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use worklease::{LeaseTable, Timestamp};

use super::{Log, Role, Submitted};
use crate::clock::Clock;
use crate::mint::CommandIds;
use crate::raft::{Leader, Status, Unavailable, SOLE_NODE};
use crate::request::Request;

/// The table, applied to in place.
#[derive(Debug)]
pub(crate) struct MemoryLog {
    table: Arc<Mutex<LeaseTable>>,
    /// Stamps commands: the wall clock (one member keeps one timeline).
    clock: Arc<Clock>,
    /// Entries applied so far: the index of the last one.
    applied: AtomicU64,
}

impl MemoryLog {
    pub(crate) fn new(table: LeaseTable, clock: Arc<Clock>) -> Self {
        Self {
            table: Arc::new(Mutex::new(table)),
            clock,
            applied: AtomicU64::new(0),
        }
    }
}

impl Log for MemoryLog {
    fn table(&self) -> &Arc<Mutex<LeaseTable>> {
        &self.table
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn submit<R: Request + Send>(&self, request: R, ids: &CommandIds) -> Submitted<R::Answer>
    where
        R::Answer: Send,
    {
        let mut table = self.table.lock();
        // Stamped under the lock, so stamps follow the order commands apply (the table clamps
        // one that steps back). No leader changes here, so no timeline to keep.
        let now = self.clock.now();
        // The command a Raft log would record, applied at once (a heartbeat skips building it).
        let answer = request.apply_to(&mut table, now, || ids.inputs(now));
        drop(table);
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(answer?)
    }

    async fn read_barrier(&self) -> Result<(), Unavailable> {
        Ok(())
    }

    fn role(&self) -> Role {
        Role::Sole
    }

    async fn leader(&self, _wait: Duration) -> Option<Leader> {
        Some(Leader::Me)
    }

    async fn role_changed(&self) {
        std::future::pending::<()>().await;
    }

    /// A one-member cluster it leads at term 0.
    fn status(&self) -> Status {
        Status {
            node_id: SOLE_NODE,
            leader_id: Some(SOLE_NODE),
            term: 0,
            role: "leader",
            last_applied_index: self.applied.load(Ordering::Relaxed),
            log_syncs: 0,
            read_rounds: 0,
        }
    }

    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }

    async fn stopped(&self) -> String {
        std::future::pending().await
    }

    async fn removed(&self) -> String {
        std::future::pending().await
    }

    async fn shutdown(&self) {}
}
