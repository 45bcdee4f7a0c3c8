//! Linearizable reads share the leader's confirmations (docs/contract.md §8 "Reads").
//!
//! A replicated leader answers a read only after it has confirmed with a majority that it
//! still leads: one round of empty appends to every voter (openraft's `ensure_linearizable`),
//! then the wait until everything committed at the round's start is applied. A round costs
//! an RPC to each follower, so each read paying its own would make concurrent reads (every
//! idle worker's long-poll looks first, `Submit::poll`) cost one RPC per follower each.
//!
//! Here reads wait together: a read joins the next round that has not started, and one task
//! runs rounds back to back while reads wait. A round serves only the reads that joined it
//! before it started, so each read is confirmed by a round that began after it arrived: the
//! round's read index is at least every commit a client saw before that read, which is what
//! makes the read linearizable. While a round runs, the reads that arrive gather for the next
//! one; under load a leader runs one round per round trip instead of one per read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::Unavailable;

/// One confirmation, as the leader runs it: `Ok` once this node is confirmed to lead and has
/// applied everything committed when it started.
pub(crate) type Confirm =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), Unavailable>> + Send>> + Send + Sync>;

/// The rounds of confirmation reads share.
pub(crate) struct ReadRounds {
    state: Arc<Mutex<State>>,
    confirm: Confirm,
    /// The longest a read waits for its round's answer.
    wait: Duration,
}

#[derive(Default)]
struct State {
    /// Rounds run so far (the next round's number is this plus one).
    started: u64,
    /// The round the next reads join: not started yet.
    next: Option<Round>,
    /// A task is running rounds; it takes `next` when its current round ends.
    running: bool,
}

/// A round: the channel its answer is sent on, once, to every read that joined it.
type Round = watch::Sender<Option<Answer>>;

/// The number of the round that served a read, or why none could.
type Answer = Result<u64, Unavailable>;

impl ReadRounds {
    /// Rounds run by `confirm`; a read waits at most `wait` for its own.
    pub(crate) fn new(confirm: Confirm, wait: Duration) -> Self {
        Self {
            state: Arc::default(),
            confirm,
            wait,
        }
    }

    /// How many rounds have started.
    pub(crate) fn started(&self) -> u64 {
        self.state.lock().started
    }

    /// Returns once a round that started after this call was made has confirmed the
    /// leadership: the number of that round (rounds are numbered from 1, in the order they
    /// start).
    ///
    /// # Errors
    ///
    /// The round's [`Unavailable`], or one when no round answered within the wait.
    pub(crate) async fn barrier(&self) -> Result<u64, Unavailable> {
        let mut answer = {
            let mut state = self.state.lock();
            let round = state.next.get_or_insert_with(|| watch::channel(None).0);
            let answer = round.subscribe();
            if !state.running {
                state.running = true;
                tokio::spawn(run(self.state.clone(), self.confirm.clone()));
            }
            answer
        };
        let waited = tokio::time::timeout(self.wait, answer.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(answered)) => answered
                .clone()
                .unwrap_or_else(|| unreachable!("waited for it")),
            // The runner was dropped (the runtime is shutting down).
            Ok(Err(_)) => Err(Unavailable("the server is shutting down".to_owned())),
            Err(_) => Err(Unavailable(format!(
                "cannot confirm leadership within {} s",
                self.wait.as_secs()
            ))),
        }
    }
}

/// Runs the waiting rounds one after another until none waits.
async fn run(state: Arc<Mutex<State>>, confirm: Confirm) {
    // Should this task end early (a panic, the runtime's shutdown), the next read starts
    // another; the reads waiting meanwhile get their timeout.
    let _running = Running(state.clone());
    loop {
        let (number, round) = {
            let mut state = state.lock();
            let Some(round) = state.next.take() else {
                return;
            };
            state.started += 1;
            (state.started, round)
        };
        // The round starts here, after every read that joined it: those that come now join
        // the next one.
        let answer = confirm().await.map(|()| number);
        round.send_replace(Some(answer));
    }
}

/// Marks the runner gone when its task ends, however it ends.
struct Running(Arc<Mutex<State>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A fake confirmation's record: a clock reads also tick, and when (on it) each round
    /// began.
    #[derive(Clone, Default)]
    struct Fake {
        clock: Arc<AtomicU64>,
        begun: Arc<Mutex<Vec<u64>>>,
    }

    /// Rounds whose confirmation takes `pause` and fails when `fail`; a read waits `wait`.
    fn rounds(pause: Duration, fail: bool, wait: Duration) -> (ReadRounds, Fake) {
        let fake = Fake::default();
        let record = fake.clone();
        let confirm: Confirm = Arc::new(move || {
            let record = record.clone();
            Box::pin(async move {
                let now = record.clock.fetch_add(1, Ordering::SeqCst);
                record.begun.lock().push(now);
                tokio::time::sleep(pause).await;
                if fail {
                    Err(Unavailable("not the leader".to_owned()))
                } else {
                    Ok(())
                }
            })
        });
        (ReadRounds::new(confirm, wait), fake)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_rounds_that_began_after_each_arrived() {
        let (rounds, fake) = rounds(Duration::from_millis(5), false, Duration::from_secs(5));
        let rounds = Arc::new(rounds);
        let reads: u64 = 200;
        let mut tasks = Vec::new();
        for read in 0..reads {
            let rounds = rounds.clone();
            let clock = fake.clock.clone();
            tasks.push(tokio::spawn(async move {
                // Spread the arrivals over several rounds.
                tokio::time::sleep(Duration::from_micros(100 * (read % 150))).await;
                let arrived = clock.fetch_add(1, Ordering::SeqCst);
                let round = rounds.barrier().await.expect("confirmed");
                (arrived, round)
            }));
        }
        let mut served = Vec::new();
        for task in tasks {
            served.push(task.await.expect("the read ran"));
        }
        let begun = fake.begun.lock().clone();
        let run = begun.len();
        assert!(run >= 2, "the arrivals spanned one round only: {run}");
        assert!(run as u64 <= reads / 4, "{run} rounds for {reads} reads");
        let by_number: HashMap<u64, u64> = (1..).zip(begun.iter().copied()).collect();
        for (arrived, round) in served {
            let started = by_number[&round];
            assert!(
                started > arrived,
                "a read that arrived at {arrived} was served by round {round}, begun at {started}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_round_fails_its_reads_and_the_next_read_starts_another() {
        let (failing, fake) = rounds(Duration::ZERO, true, Duration::from_secs(5));
        for _ in 0..3 {
            let refused = failing.barrier().await.expect_err("refused");
            assert_eq!(refused.0, "not the leader");
        }
        assert_eq!(
            fake.begun.lock().len(),
            3,
            "each read after a failure runs a round"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_whose_round_does_not_answer_in_time_is_refused() {
        let (slow, _) = rounds(Duration::from_secs(60), false, Duration::from_millis(50));
        let refused = slow.barrier().await.expect_err("timed out");
        assert!(
            refused.0.contains("cannot confirm leadership"),
            "{}",
            refused.0
        );
    }
}
