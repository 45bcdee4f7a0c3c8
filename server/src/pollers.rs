//! Which workers are polling: `workers_polling` of `GET …/work/stats` (docs/contract.md §3.5),
//! kept by this node and not by the table.
//!
//! A poll that finds nothing is not a command (`crate::submit`), so the table no longer sees
//! every poll; the server notes each named worker's poll here instead. The same rule holds in
//! every mode, so the three modes answer alike: the count is what *this node* saw, and in a
//! replicated cluster, where every request is served by the leader, a new leader starts from
//! zero and counts again within one polling window (docs/api.md).
//!
//! Memory is bounded: a worker is forgotten 30 s after its last poll here, and at most
//! [`MAX_POLLERS`] are held in all (the least recently seen go first).

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use worklease::{Timestamp, WorkerId};

/// How long a poll counts: docs/contract.md §3.5's window.
const WINDOW_MICROS: i64 = 30_000_000;

/// The most (environment, worker) pairs remembered: a fleet far larger than any one
/// deployment polls, and at most a few tens of MB of ids (worker ids are short).
pub(crate) const MAX_POLLERS: usize = 100_000;

/// The workers that polled each environment in the last 30 s.
#[derive(Debug)]
pub(crate) struct Pollers {
    inner: Mutex<Inner>,
    max: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each (environment, worker)'s latest poll.
    last: HashMap<(Box<str>, WorkerId), Timestamp>,
    /// The same polls, oldest first, to forget them in order.
    order: BTreeSet<(Timestamp, Box<str>, WorkerId)>,
    /// How many workers `last` holds for each environment.
    counts: HashMap<Box<str>, usize>,
}

impl Pollers {
    pub(crate) fn new() -> Self {
        Self::with_max(MAX_POLLERS)
    }

    fn with_max(max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max,
        }
    }

    /// Notes `worker`'s poll of `environment` (an existing, self-hosted one) at `now`.
    pub(crate) fn record(&self, environment: &str, worker: &WorkerId, now: Timestamp) {
        let mut inner = self.inner.lock();
        inner.forget_before(now);
        let key = (Box::<str>::from(environment), worker.clone());
        match inner.last.insert(key.clone(), now) {
            Some(previous) => {
                inner
                    .order
                    .remove(&(previous, key.0.clone(), key.1.clone()));
            }
            None => *inner.counts.entry(key.0.clone()).or_default() += 1,
        }
        inner.order.insert((now, key.0, key.1));
        while inner.last.len() > self.max {
            inner.forget_oldest();
        }
    }

    /// How many distinct workers polled `environment` in the 30 s before `now`.
    pub(crate) fn count(&self, environment: &str, now: Timestamp) -> usize {
        let mut inner = self.inner.lock();
        inner.forget_before(now);
        inner.counts.get(environment).copied().unwrap_or(0)
    }

    /// How many (environment, worker) pairs are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().last.len()
    }
}

impl Inner {
    /// Forgets every poll 30 s or more before `now`.
    fn forget_before(&mut self, now: Timestamp) {
        let horizon = now.saturating_sub_micros(WINDOW_MICROS);
        while self.order.first().is_some_and(|(at, _, _)| *at <= horizon) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((_, environment, worker)) = self.order.pop_first() else {
            return;
        };
        let key = (environment, worker);
        self.last.remove(&key);
        if let Some(count) = self.counts.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&key.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000 * SECOND + seconds * SECOND)
    }

    fn worker(name: &str) -> WorkerId {
        name.parse().expect("a valid worker id")
    }

    #[test]
    fn distinct_workers_count_for_30_seconds_per_environment() {
        let pollers = Pollers::new();
        pollers.record("env_a", &worker("w1"), at(0));
        pollers.record("env_a", &worker("w1"), at(1));
        pollers.record("env_a", &worker("w2"), at(10));
        pollers.record("env_b", &worker("w1"), at(10));
        assert_eq!(pollers.count("env_a", at(10)), 2);
        assert_eq!(pollers.count("env_b", at(10)), 1);
        assert_eq!(
            pollers.count("env_a", at(31).saturating_sub_micros(1)),
            2,
            "w1 polled at 1 s"
        );
        assert_eq!(
            pollers.count("env_a", at(31)),
            1,
            "30 s after w1's last poll"
        );
        assert_eq!(pollers.count("env_a", at(40)), 0);
        assert_eq!(pollers.len(), 0, "forgotten, not just uncounted");
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_least_recent() {
        let pollers = Pollers::with_max(3);
        for n in 0..10 {
            pollers.record("env_a", &worker(&format!("w{n}")), at(n));
        }
        assert_eq!(pollers.len(), 3);
        assert_eq!(pollers.count("env_a", at(10)), 3);
    }
}
