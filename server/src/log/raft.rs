//! The Raft log (`crate::raft`): durable mode is a cluster of one member, replicated mode one
//! of several. A command is stamped and its ids minted in log order, proposed, and answered
//! once it is committed (fsynced on a majority) and applied by the state machine, which is
//! the table's only writer.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use worklease::{LeaseTable, Stamped, Timestamp};

use super::{Log, Role, Submitted};
use crate::clock::Clock;
use crate::mint::CommandIds;
use crate::origin::RequestOrigin;
use crate::raft::{Durable, Leader, Status, Unavailable};
use crate::request::{Kind, Mismatch, Request};

/// A running Raft node and the clock its leader stamps by.
#[derive(Debug)]
pub(crate) struct RaftLog {
    durable: Durable,
    clock: Arc<Clock>,
}

impl RaftLog {
    pub(crate) fn new(durable: Durable, clock: Arc<Clock>) -> Self {
        Self { durable, clock }
    }

    /// The Raft node, for the internal RPC routes and forwarding.
    pub(crate) fn durable(&self) -> &Durable {
        &self.durable
    }
}

impl Log for RaftLog {
    fn table(&self) -> &Arc<Mutex<LeaseTable>> {
        self.durable.table()
    }

    fn now(&self) -> Timestamp {
        match self.durable.leading_term() {
            // A new leader's reads and sweeps go by its term's corrected time from the start,
            // not only once it has stamped something (`crate::clock`).
            Some(term) => self.clock.now_in_term(term),
            None => self.clock.now(),
        }
    }

    async fn submit<R: Request + Send>(&self, request: R, ids: &CommandIds) -> Submitted<R::Answer>
    where
        R::Answer: Send,
    {
        let durable = &self.durable;
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
        let Some((origin, record)) = recorded else {
            let (applied, ()) = durable
                .propose(origin.map(|o| o.id), |now| {
                    let command = request.command(|| ids.inputs(now));
                    (Stamped::new(now, command), ())
                })
                .await?;
            return Ok(match applied {
                Ok(applied) => Ok(R::answer(applied)?),
                Err(error) => Err(error),
            });
        };
        let asked = request.asked();
        let refused = |recorded: Option<Kind>| Mismatch::Replay {
            origin,
            recorded,
            asked: asked.kind,
        };
        if let Some(recorded) = record.asked.filter(|recorded| *recorded != asked) {
            return Err(refused(Some(recorded.kind)).into());
        }
        Ok(match record.answer {
            // A record without what was asked (restored from an older snapshot) still answers
            // only a request of the kind its answer belongs to.
            Ok(applied) => Ok(R::answer(applied).map_err(|_| refused(None))?),
            Err(error) => Err(error),
        })
    }

    async fn read_barrier(&self) -> Result<(), Unavailable> {
        self.durable.read_barrier().await
    }

    fn role(&self) -> Role {
        if !self.durable.is_replicated() {
            Role::Sole
        } else if self.durable.leads() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    async fn leader(&self, wait: Duration) -> Option<Leader> {
        match self.role() {
            Role::Sole | Role::Leader => Some(Leader::Me),
            Role::Follower => self.durable.leader(wait).await,
        }
    }

    async fn role_changed(&self) {
        if self.durable.is_replicated() {
            self.durable.role_changed().await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    fn status(&self) -> Status {
        self.durable.status()
    }

    fn readiness(&self) -> Result<(), String> {
        self.durable.readiness()
    }

    async fn stopped(&self) -> String {
        self.durable.stopped().await
    }

    async fn removed(&self) -> String {
        self.durable.removed().await
    }

    async fn shutdown(&self) {
        self.durable.shutdown().await;
    }
}
