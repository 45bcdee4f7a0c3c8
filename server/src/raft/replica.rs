//! The snapshot replica: a second copy of the table on a thread of its own, fed the same
//! committed commands as the state machine's, from which snapshots are taken, so that applies
//! never wait while the whole table is encoded (docs/contract.md §12: snapshots never stall the
//! table).
//!
//! Why a copy and not a view of the applied table: encoding reads every item, its metadata,
//! the workers and the journal, and even copying those under the lock takes as long as a
//! pause may last many times over at a million leases; a copy that is kept up to date costs
//! the apply path one channel send per log entry instead.
//!
//! The copy is exact because the table is a deterministic function of the commands applied to
//! it (docs/contract.md §7.4): started from the same state and fed the same `Stamped` sequence,
//! it holds the same state at every index, and its snapshot is byte for byte the one the
//! applied table would give. A snapshot request travels the same channel as the commands, so
//! the replica encodes exactly the state as of the index the request was made at, while the
//! state machine goes on applying. The replica also keeps its own replay record (the answers of
//! commands with an origin id), which goes into the snapshot beside the table.
//!
//! Costs: the table's memory twice, and every command applied twice (the second time here,
//! off the apply path). While the replica encodes, later commands queue up in its channel
//! (memory for as many commands as arrive meanwhile); it catches up once the snapshot is
//! encoded. The encoding itself runs at the lowest CPU priority (`super::background`), so on a
//! busy machine it takes the CPU time the apply path leaves over. The file is written on tokio's
//! blocking pool, not here.

use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;
use worklease::{LeaseTable, Stamped};

use super::background::at_lowest_priority;
use super::payload::encode_payload;
use super::{Origin, Record, Recorded};

/// The replica's end of the channel; dropping it stops the replica's thread.
#[derive(Debug)]
pub(crate) struct Replica {
    sender: mpsc::Sender<Message>,
}

enum Message {
    /// A committed batch and the origin ids among it, in log order.
    Apply(Arc<[Stamped]>, Arc<[Origin]>),
    /// Encode the state as of every batch sent before this message.
    Snapshot(oneshot::Sender<Vec<u8>>),
    /// Start over from an installed snapshot.
    Reset(Box<LeaseTable>, Vec<(u128, Record)>),
}

impl Replica {
    /// Starts the replica's thread on `table` (a copy of the state machine's, as of the same
    /// index) and the answers recorded so far, oldest first.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread, as `std::thread::spawn` does.
    pub(crate) fn start(table: LeaseTable, record: Vec<(u128, Record)>) -> Self {
        let (sender, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("worklease-snapshot".to_owned())
            .spawn(move || run(table, record, &received))
            .expect("invariant: the process can start a thread");
        Self { sender }
    }

    /// Applies a committed batch (after the state machine applied it).
    pub(crate) fn apply(&self, batch: &Arc<[Stamped]>, origins: &Arc<[Origin]>) {
        // A replica that stopped is reported by the next snapshot request, which gets no
        // answer; the apply path goes on.
        let _ = self
            .sender
            .send(Message::Apply(batch.clone(), origins.clone()));
    }

    /// The snapshot payload as of every batch applied so far, once the replica has encoded it
    /// (an error: the replica stopped).
    pub(crate) fn snapshot(&self) -> oneshot::Receiver<Vec<u8>> {
        let (answer, answered) = oneshot::channel();
        let _ = self.sender.send(Message::Snapshot(answer));
        answered
    }

    /// Replaces the replica's table and record (a snapshot was installed).
    pub(crate) fn reset(&self, table: LeaseTable, record: Vec<(u128, Record)>) {
        let _ = self.sender.send(Message::Reset(Box::new(table), record));
    }
}

fn run(mut table: LeaseTable, record: Vec<(u128, Record)>, received: &mpsc::Receiver<Message>) {
    let recorded = Recorded::default();
    recorded.replace(record);
    while let Ok(message) = received.recv() {
        match message {
            Message::Apply(batch, origins) => {
                if origins.is_empty() {
                    for stamped in batch.iter() {
                        // The state machine sent the answers; the replica needs only the state.
                        let _ = table.apply(stamped);
                    }
                } else {
                    let answers: Vec<_> =
                        batch.iter().map(|stamped| table.apply(stamped)).collect();
                    for origin in origins.iter() {
                        let index = origin.index as usize;
                        if let (Some(command), Some(answer)) =
                            (batch.get(index), answers.get(index))
                        {
                            recorded.record(origin.id, Record::of(command, answer));
                        }
                    }
                }
            }
            Message::Snapshot(answer) => {
                let entries = recorded.entries();
                let payload = at_lowest_priority(|| encode_payload(table.snapshot(), &entries));
                let _ = answer.send(payload);
            }
            Message::Reset(installed, record) => {
                table = *installed;
                recorded.replace(record);
            }
        }
    }
}
