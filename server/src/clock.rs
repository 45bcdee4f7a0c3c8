//! The server's one source of time (docs/contract.md §7.1, §8 "Time"): the wall clock, and the
//! stamps the leader puts on commands.
//!
//! The table clamps every command to its own clock, so time never runs backwards there; but a
//! leader whose clock is off would still move every deadline: one behind freezes the table's
//! time until its clock catches up (leases lapse late by the skew), one ahead jumps it forward
//! (they lapse early). So a leader stamps on the table's *timeline*: when it takes office it
//! compares its wall clock with where the table's time has got to (the latest stamp it saw
//! applied live, plus the monotonic time that passed here since) and, when the two disagree by
//! more than [`SKEW_TOLERANCE_MICROS`] either way, adds the difference to every stamp and
//! every read of its term, and logs the skew. Deadlines, which are absolute, are never
//! recomputed, so a failover neither shortens nor extends a lease.
//!
//! What counts as seen: every stamp applied while the node runs, and, in a replicated member,
//! the latest stamp its data directory held when it started (seen at start: a member restarted
//! a moment ago can win the next election before it applies anything live, and must not then
//! stamp by its own clock). In a one-member cluster the stamps read back at start are only a
//! floor ([`Clock::recover`]): no other clock kept time while it was down, and that time must
//! count. A node that has seen no stamp since it started (a new cluster, a one-member cluster
//! restarted) stamps by its wall clock, never earlier than the latest stamp. A replicated
//! leader's appends, its heartbeats included, carry its time on the timeline
//! (`raft::TABLE_TIME_HEADER`), and a member that accepts them counts that time as seen: every
//! follower's view of the timeline stays live, even on an idle cluster, without a log entry.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use worklease::Timestamp;

/// How far a new leader's wall clock may be from the table's timeline before it stamps on the
/// timeline instead (docs/contract.md §8 "Time").
pub(crate) const SKEW_TOLERANCE_MICROS: i64 = 1_000_000;

/// Wall clock and stamps; one per server (shared by the write path, the state machine and
/// the sweeper).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// Added to the wall clock: tests give each in-process node its own clock with it.
    #[cfg(any(test, feature = "testing"))]
    skew_micros: AtomicI64,
    /// The table's timeline minus this node's wall clock, measured when it took office (0 when
    /// they agree within the tolerance, or when there was no timeline to measure); added to its
    /// stamps and reads for the rest of the term. An atomic, so reads (and in-memory stamps)
    /// take no lock.
    offset_micros: AtomicI64,
    /// The term `offset_micros` was measured for, plus one (0: none yet): lets reads check
    /// without the lock.
    office: AtomicU64,
    timeline: Mutex<Timeline>,
}

#[derive(Debug, Default)]
struct Timeline {
    /// The latest stamp known here, from any source: no stamp goes before it.
    floor: Option<i64>,
    /// The latest stamp proposed or applied live here, and when (on this machine) it was
    /// seen: the table's timeline.
    live: Option<(i64, Instant)>,
}

impl Timeline {
    /// Where the table's time has got to, going by the latest live stamp and the time since.
    fn table_now(&self, seen_now: Instant) -> Option<i64> {
        self.live.map(|(at, seen)| {
            let since = seen_now.saturating_duration_since(seen).as_micros();
            at.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
        })
    }

    fn raise_floor(&mut self, stamp: i64) {
        self.floor = Some(self.floor.map_or(stamp, |floor| floor.max(stamp)));
    }
}

/// The wall clock in µs since the Unix epoch, read straight from the system: every request
/// reads it at least once, and `chrono::Utc::now` would build a calendar date on the way and
/// take it apart again (`perf`: about 50 ns a read, a tenth of an item secret's check).
fn system_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(before) => {
            i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |micros| -micros)
        }
    }
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Moves this node's wall clock by `micros` (tests only: a node whose clock is off).
    #[cfg(any(test, feature = "testing"))]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_skew_micros(&self, micros: i64) {
        self.skew_micros.store(micros, Ordering::Relaxed);
    }

    /// What this term adds to the wall clock (tests: whether a skew was corrected).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "testing"))]
    fn wall_micros(&self) -> i64 {
        system_micros().saturating_add(self.skew_micros.load(Ordering::Relaxed))
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn wall_micros(&self) -> i64 {
        system_micros()
    }

    /// The time to answer reads and to schedule waits by, and to stamp commands in memory
    /// (where the table's clamp is all the ordering needed): the wall clock on this term's
    /// timeline. Changes nothing, takes no lock.
    pub(crate) fn now(&self) -> Timestamp {
        let offset = self.offset_micros.load(Ordering::Relaxed);
        Timestamp::from_unix_micros(self.wall_micros().saturating_add(offset))
    }

    /// [`Self::now`] for the leader of `term`: measures the term's offset first if it has not
    /// been yet, so a new leader's reads and sweeps go by the corrected time before its first
    /// stamp.
    pub(crate) fn now_in_term(&self, term: u64) -> Timestamp {
        if self.office.load(Ordering::Acquire) != term.saturating_add(1) {
            let timeline = self.timeline.lock();
            self.take_office(term, &timeline, self.wall_micros(), Instant::now());
        }
        self.now()
    }

    /// Measures `term`'s offset, unless it was measured already: the table's timeline minus
    /// the wall clock when they disagree by more than the tolerance, else 0. Callers hold the
    /// timeline's lock, so a term is measured once.
    fn take_office(&self, term: u64, timeline: &Timeline, wall: i64, seen_now: Instant) {
        if self.office.load(Ordering::Acquire) == term.saturating_add(1) {
            return;
        }
        let offset = match timeline.table_now(seen_now) {
            Some(table) => {
                let skew = wall.saturating_sub(table);
                if skew.saturating_abs() > SKEW_TOLERANCE_MICROS {
                    tracing::warn!(
                        term,
                        skew_ms = skew / 1000,
                        "this node's wall clock disagrees with the table's timeline (positive: \
                         ahead): stamping on the table's timeline this term"
                    );
                    -skew
                } else {
                    0
                }
            }
            None => 0,
        };
        self.offset_micros.store(offset, Ordering::Relaxed);
        self.office.store(term.saturating_add(1), Ordering::Release);
    }

    /// A command was applied live with this stamp (the state machine reports every entry's
    /// last): it measures the table's timeline.
    pub(crate) fn observe(&self, stamp: Timestamp) {
        let stamp = stamp.unix_micros();
        let mut timeline = self.timeline.lock();
        timeline.raise_floor(stamp);
        if timeline.live.is_none_or(|(latest, _)| stamp > latest) {
            timeline.live = Some((stamp, Instant::now()));
        }
    }

    /// A stamp read back from storage (a snapshot, the log replayed at start): no stamp goes
    /// before it, but it says nothing of when it was made.
    pub(crate) fn recover(&self, stamp: Timestamp) {
        self.timeline.lock().raise_floor(stamp.unix_micros());
    }

    /// The stamp of the next command this node proposes as the leader of `term`: on the
    /// table's timeline (see the module docs), never before the latest stamp.
    pub(crate) fn stamp(&self, term: u64) -> Timestamp {
        let wall = self.wall_micros();
        let seen_now = Instant::now();
        let mut timeline = self.timeline.lock();
        self.take_office(term, &timeline, wall, seen_now);
        let offset = self.offset_micros.load(Ordering::Relaxed);
        let stamp = wall
            .saturating_add(offset)
            .max(timeline.floor.unwrap_or(i64::MIN));
        timeline.raise_floor(stamp);
        timeline.live = Some((stamp, seen_now));
        Timestamp::from_unix_micros(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_as_chrono_does() {
        let before = Timestamp::from(chrono::Utc::now()).unix_micros();
        let read = system_micros();
        let after = Timestamp::from(chrono::Utc::now()).unix_micros();
        assert!((before..=after).contains(&read), "{before} {read} {after}");
    }

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
    fn a_leader_ahead_stamps_on_the_tables_timeline() {
        let old_leader = Clock::new();
        let stamp = old_leader.stamp(1);
        let new_leader = Clock::new();
        new_leader.observe(stamp);
        new_leader.set_skew_micros(60_000_000);
        let next = new_leader.stamp(2);
        let gap = next.unix_micros() - stamp.unix_micros();
        assert!((0..1_000_000).contains(&gap), "gap {gap} µs");
        assert!(new_leader.offset_micros() < -59_000_000);
        assert!((new_leader.now().unix_micros() - stamp.unix_micros()) < 1_000_000);
    }

    #[test]
    fn a_skew_within_a_second_is_not_corrected() {
        let old_leader = Clock::new();
        let stamp = old_leader.stamp(1);
        let new_leader = Clock::new();
        new_leader.observe(stamp);
        new_leader.set_skew_micros(-500_000);
        let next = new_leader.stamp(2);
        assert_eq!(new_leader.offset_micros(), 0);
        assert!(next >= stamp);
    }

    #[test]
    fn a_new_leader_reads_by_the_corrected_time_before_it_stamps() {
        let old_leader = Clock::new();
        let stamp = old_leader.stamp(1);
        let new_leader = Clock::new();
        new_leader.observe(stamp);
        new_leader.set_skew_micros(-90_000_000);
        let read = new_leader.now_in_term(2);
        assert!((read.unix_micros() - stamp.unix_micros()).abs() < 1_000_000);
    }

    #[test]
    fn stamps_read_back_from_storage_set_a_floor_not_a_timeline() {
        // A node restarted after an hour down: its data directory's latest stamp is an hour
        // old. It stamps by its wall clock (the hour counts), not an hour back.
        let restarted = Clock::new();
        let an_hour_ago = Clock::new().stamp(1).unix_micros() - 3_600_000_000;
        restarted.recover(Timestamp::from_unix_micros(an_hour_ago));
        let next = restarted.stamp(2);
        assert_eq!(restarted.offset_micros(), 0);
        assert!(next.unix_micros() - an_hour_ago >= 3_599_000_000);
        // Never before the latest stamp, though: one from a clock ahead is the floor.
        let ahead = Clock::new();
        let later = next.unix_micros() + 30_000_000;
        ahead.recover(Timestamp::from_unix_micros(later));
        assert!(ahead.stamp(1).unix_micros() >= later);
    }
}
