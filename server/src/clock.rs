//! The server's one source of time (docs/contract.md §7.1, §8): the wall clock, and the stamps the leader
//! puts on commands.
//!
//! The table clamps every command to its own clock, so time never runs backwards there. That
//! alone would make a new leader whose clock is *behind* freeze the table's time until its
//! clock catches up: leases would lapse late by the skew. So a leader stamps on the table's
//! timeline instead: when it takes office it compares its wall clock with where the table's
//! time has got to (the latest stamp it saw applied, plus the time that passed here since) and,
//! if it is behind, adds the difference to every stamp of its term. Deadlines, which are
//! absolute, are never recomputed, so a failover neither shortens nor extends a lease.
//!
//! A leader whose clock is *ahead* cannot be corrected without trusting another clock: its
//! stamps jump ahead, leases lapse early by the skew, and the server logs a warning when a
//! stamp jumps ahead of the table's time by more than the smallest TTL.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use parking_lot::Mutex;
use worklease::{Timestamp, Ttl};

/// A stamp further ahead of the table's time than this is worth a warning: the smallest TTL,
/// so a lease renewed just before could lapse on it.
const JUMP_WARNING_MICROS: i64 = Ttl::MIN.micros();

/// Wall clock and stamps; one per server (shared by the write path, the state machine and
/// the sweeper).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// Added to the wall clock: tests give each in-process node its own clock with it.
    skew_micros: AtomicI64,
    /// How far this node's wall clock is behind the table's time, measured when it took
    /// office; added to its stamps and reads for the rest of the term. An atomic, so reads
    /// (and in-memory stamps) take no lock.
    behind_micros: AtomicI64,
    timeline: Mutex<Timeline>,
    /// How many stamps jumped ahead far enough to be warned about.
    jumps: AtomicU64,
}

#[derive(Debug, Default)]
struct Timeline {
    /// The latest stamp proposed or applied here, and when (on this machine) it was seen.
    latest: Option<(i64, Instant)>,
    /// The term `Clock::behind_micros` was measured for (`None`: none stamped yet).
    term: Option<u64>,
}

impl Timeline {
    /// Where the table's time has got to, going by the latest stamp and the time since.
    fn table_now(&self, seen_now: Instant) -> Option<i64> {
        self.latest.map(|(at, seen)| {
            let since = seen_now.saturating_duration_since(seen).as_micros();
            at.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
        })
    }
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Moves this node's wall clock by `micros` (tests only: a node whose clock is off).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_skew_micros(&self, micros: i64) {
        self.skew_micros.store(micros, Ordering::Relaxed);
    }

    /// How many stamps jumped ahead of the table's time by more than the smallest TTL.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn jumps(&self) -> u64 {
        self.jumps.load(Ordering::Relaxed)
    }

    fn wall_micros(&self) -> i64 {
        Timestamp::from(Utc::now())
            .unix_micros()
            .saturating_add(self.skew_micros.load(Ordering::Relaxed))
    }

    /// The time to answer reads and to schedule waits by, and to stamp commands in memory
    /// (where the table's clamp is all the ordering needed): the wall clock on this term's
    /// timeline. Changes nothing, takes no lock.
    pub(crate) fn now(&self) -> Timestamp {
        let behind = self.behind_micros.load(Ordering::Relaxed);
        Timestamp::from_unix_micros(self.wall_micros().saturating_add(behind))
    }

    /// A command was applied with this stamp (the state machine reports every entry's last).
    pub(crate) fn observe(&self, stamp: Timestamp) {
        let mut timeline = self.timeline.lock();
        if timeline
            .latest
            .is_none_or(|(latest, _)| stamp.unix_micros() > latest)
        {
            timeline.latest = Some((stamp.unix_micros(), Instant::now()));
        }
    }

    /// The stamp of the next command this node proposes as the leader of `term`: never before
    /// the latest stamp, on the table's timeline when this node's clock is behind it.
    pub(crate) fn stamp(&self, term: u64) -> Timestamp {
        let wall = self.wall_micros();
        let seen_now = Instant::now();
        let mut timeline = self.timeline.lock();
        let table_now = timeline.table_now(seen_now);
        if timeline.term != Some(term) {
            timeline.term = Some(term);
            let behind = table_now.map_or(0, |table| table.saturating_sub(wall).max(0));
            self.behind_micros.store(behind, Ordering::Relaxed);
            if behind > 0 {
                tracing::info!(
                    term,
                    behind_ms = behind / 1000,
                    "this node's clock is behind the table's time: stamping on the table's timeline this term"
                );
            }
        }
        let latest = timeline.latest.map_or(i64::MIN, |(at, _)| at);
        let behind = self.behind_micros.load(Ordering::Relaxed);
        let stamp = wall.saturating_add(behind).max(latest);
        if let Some(table) = table_now {
            let ahead = stamp.saturating_sub(table);
            if ahead > JUMP_WARNING_MICROS {
                self.jumps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    term,
                    ahead_ms = ahead / 1000,
                    "a stamp jumps ahead of the table's time by more than the smallest TTL: \
                     this node's clock is ahead (or the cluster was down that long); leases \
                     due within the jump lapse early"
                );
            }
        }
        timeline.latest = Some((stamp, seen_now));
        Timestamp::from_unix_micros(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_back() {
        let clock = Clock::new();
        let first = clock.stamp(1);
        clock.set_skew_micros(-5_000_000);
        let second = clock.stamp(1);
        assert!(second >= first, "{second:?} < {first:?}");
    }

    #[test]
    fn a_leader_behind_stamps_on_the_tables_timeline() {
        let old_leader = Clock::new();
        let stamp = old_leader.stamp(1);
        // The new leader saw that stamp applied; its own clock is 60 s behind.
        let new_leader = Clock::new();
        new_leader.observe(stamp);
        new_leader.set_skew_micros(-60_000_000);
        let next = new_leader.stamp(2);
        let gap = next.unix_micros() - stamp.unix_micros();
        assert!((0..1_000_000).contains(&gap), "gap {gap} µs");
        // And time moves on from there, not from its own clock.
        assert!(new_leader.now().unix_micros() >= stamp.unix_micros());
    }

    #[test]
    fn a_leader_ahead_stamps_ahead() {
        let old_leader = Clock::new();
        let stamp = old_leader.stamp(1);
        let new_leader = Clock::new();
        new_leader.observe(stamp);
        new_leader.set_skew_micros(60_000_000);
        assert_eq!(new_leader.jumps(), 0);
        let next = new_leader.stamp(2);
        let gap = next.unix_micros() - stamp.unix_micros();
        assert!(gap >= 59_000_000, "gap {gap} µs");
        assert_eq!(new_leader.jumps(), 1);
    }
}
