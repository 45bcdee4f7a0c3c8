//! The requests waiting for the entries this node proposed, so the state machine answers each
//! as it applies the entry.
//!
//! Without this, an applied entry's answers went from the state machine's task to openraft's
//! core, then through the entry's responder to a task of the proposer, and only then to the
//! requests: two more task hand-offs on every entry's way back to its clients, which on a
//! loaded 2-core machine cost tens of microseconds each while the clients (and so the next
//! batch) wait. The responder stays for the other outcome: an entry this node could not
//! commit (it lost its leadership) is answered by the proposer's task with 503.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use worklease::{Applied, Error, Stamped};

use super::Answered;

/// Where each command of a proposed entry is answered, in the entry's order.
pub(crate) type Answers = Vec<oneshot::Sender<Answered>>;

/// A registered entry: its commands (kept, so their address stays theirs) and its answers.
type Registered = (Arc<[Stamped]>, Answers);

/// Proposed entries' answers, by the address of the entry's commands.
///
/// An entry's commands are one `Arc` from the proposer to the log and the state machine (the
/// log store keeps the very entries openraft appended), so the address names the entry on
/// this node. Each registration holds a clone of that `Arc`: no other batch can be allocated
/// at the same address while one waits. Entries from another leader, or read back from disk,
/// are other allocations and are found by nobody.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    waiting: Mutex<HashMap<usize, Registered>>,
}

impl Waiters {
    fn key(commands: &Arc<[Stamped]>) -> usize {
        Arc::as_ptr(commands).cast::<()>().addr()
    }

    /// Registers the answers of an entry about to be proposed.
    pub(crate) fn register(&self, commands: &Arc<[Stamped]>, answers: Answers) {
        self.waiting
            .lock()
            .insert(Self::key(commands), (commands.clone(), answers));
    }

    /// The answers waiting for the entry of `commands`, if this node proposed it and nobody
    /// took them yet.
    pub(crate) fn take(&self, commands: &Arc<[Stamped]>) -> Option<Answers> {
        match self.waiting.lock().entry(Self::key(commands)) {
            Entry::Occupied(entry) if Arc::ptr_eq(&entry.get().0, commands) => {
                Some(entry.remove().1)
            }
            Entry::Occupied(_) | Entry::Vacant(_) => None,
        }
    }
}

/// Sends each command its answer (a client that went away does not need its answer).
pub(crate) fn answer(answers: Answers, results: impl IntoIterator<Item = Result<Applied, Error>>) {
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(Ok(result));
    }
}

#[cfg(test)]
mod tests {
    use worklease::{Command, Timestamp};

    use super::*;

    fn batch() -> Arc<[Stamped]> {
        Arc::from(vec![Stamped::new(
            Timestamp::from_unix_micros(1),
            Command::Sweep,
        )])
    }

    #[test]
    fn answers_are_taken_once_and_only_for_the_same_allocation() {
        let waiters = Waiters::default();
        let proposed = batch();
        let (sender, mut receiver) = oneshot::channel();
        waiters.register(&proposed, vec![sender]);
        // An equal batch that is another allocation (decoded, or another leader's) is not it.
        assert!(waiters.take(&batch()).is_none());
        let answers = waiters.take(&proposed).expect("registered");
        assert!(waiters.take(&proposed).is_none(), "taken once");
        answer(answers, [Ok(Applied::Swept(Vec::new()))]);
        assert!(matches!(receiver.try_recv(), Ok(Ok(Ok(Applied::Swept(_))))));
    }
}
