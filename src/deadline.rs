//! The deadline index: every open lease, found by deadline, at a cost that does not grow with
//! the number of leases.
//!
//! A lazy single-level timer wheel. Time is cut into 1-second slots and the wheel has
//! [`SLOTS`] of them (more than the 600 s longest TTL), each an intrusive doubly-linked list
//! threaded through a per-item [`Link`]. An item is *filed* in the slot of a second no later
//! than its deadline's; the common renewal (a heartbeat moving the deadline later) leaves it
//! where it is and touches nothing here. When the wheel's cursor passes a slot, each item in it
//! either becomes *passed* (held by exact deadline, for the seconds the cursor has passed) or,
//! if its deadline moved on, is filed again at its current second. Lapses are taken from the
//! front of the passed leases.
//!
//! A drain reads each listed item's exact deadline, a chunk of the list at a time so the
//! loads (a cache miss each at a million leases) overlap. A dense copy of every deadline's
//! second would spare the drain those reads, but then every renewal would store into it: a
//! random write that measured +40 % on a heartbeat at a million leases, for a sweep that runs
//! rarely. Heartbeats come first.
//!
//! Passed leases live in one of two places:
//! - `passed`, a vector sorted by `(deadline, slot)`, for those a drain moved out of the wheel.
//!   A drain covers seconds at or after the old cursor, every passed lease is before it, so a
//!   drain's leases are sorted once and appended: no per-lease tree insert. An entry is live
//!   while its item's link is tagged [`PASSED`] with the entry's sequence number; unscheduling
//!   only retags the link (O(1)), and dead entries are skipped when they reach the front.
//! - `near`, an ordered set, for leases scheduled one at a time at a second already passed
//!   (after [`Deadlines::earliest`] moved the cursor ahead of the clock).
//!
//! Invariants, for every scheduled item with deadline `d` and `s = second(d)`:
//! - `s < cursor` ⟺ the item is passed: `(d, slot)` is in `near`, or it is the live entry of
//!   `passed` its link names (never both);
//! - otherwise the item is in exactly one list, filed at `f` with `cursor ≤ f ≤ s` and
//!   `f < cursor + SLOTS` (so each list holds one second of the window);
//! - `passed[passed_head..]` is sorted and, unless empty, starts with a live entry.
//!
//! The location of an item is a function of its deadline and the cursor, so the table never
//! stores it: renewing a lease later than the old deadline is a couple of comparisons.
//! Costs: renewal O(1) and usually free; a drain O(1) per item it visits (one read of the
//! item's deadline) plus one sort of the leases it passes; a lapse O(1) from `passed`
//! (O(log n) from `near`); memory 16 bytes per item plus 4 KiB, plus 12 bytes per passed
//! lease.

use std::collections::BTreeSet;

use crate::time::Timestamp;

/// Slots of one second: the window must exceed the longest TTL (600 s) so that a renewal at
/// the current time never lands beyond it.
pub(crate) const SLOTS: i64 = 1024;

/// The longest TTL (docs/contract.md §4), in seconds.
const MAX_TTL_SECONDS: i64 = 600;

const NIL: u32 = u32::MAX;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// `Link::filed` of an item in no list (unscheduled, or passed into `near`).
const UNFILED: i64 = i64::MIN;
/// `Link::filed` of an item that is a live entry of `passed`; `prev` holds the entry's
/// sequence number.
const PASSED: i64 = i64::MIN + 1;

/// Slots a drain collects before reading the deadlines of those that look due: enough
/// independent loads to overlap their cache misses, small enough for the stack.
const DRAIN_CHUNK: usize = 64;

/// An item's place in a slot list, or in `passed`.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    /// The second whose slot holds the item, while it is in a list; else [`UNFILED`] or
    /// [`PASSED`].
    filed: i64,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    filed: UNFILED,
};

#[derive(Clone, Debug)]
pub(crate) struct Deadlines {
    heads: Vec<u32>,
    links: Vec<Link>,
    near: BTreeSet<(Timestamp, u32)>,
    /// Passed leases a drain moved out of the wheel, sorted; consumed from `passed_head`.
    passed: Vec<(Timestamp, u32)>,
    passed_head: usize,
    /// The sequence number of `passed[0]` (wrapping): entry `i` is number `passed_base + i`.
    /// Numbers survive the removal of consumed entries, so links need no renumbering; fewer
    /// than 2^32 entries are ever held, so a number names one entry.
    passed_base: u32,
    /// Live entries of `passed`.
    passed_live: usize,
    /// The first passed deadline (in `near` or `passed`), kept so the check "is anything
    /// due?" that starts every operation reads two integers instead of walking a tree.
    near_first: Option<Timestamp>,
    /// Every slot of a second before this one has been drained.
    cursor: i64,
    /// `cursor` in microseconds (saturated), for the same check.
    cursor_micros: i64,
    in_slots: usize,
}

fn second(at: Timestamp) -> i64 {
    at.unix_micros().div_euclid(MICROS_PER_SECOND)
}

fn index(second: i64) -> usize {
    // rem_euclid of a positive modulus is in 0..SLOTS.
    second.rem_euclid(SLOTS) as usize
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Self {
            heads: vec![NIL; SLOTS as usize],
            links: Vec::new(),
            near: BTreeSet::new(),
            passed: Vec::new(),
            passed_head: 0,
            passed_base: 0,
            passed_live: 0,
            near_first: None,
            // Far below any real time: the first expiry jumps it forward in O(1).
            cursor: i64::MIN / 4,
            cursor_micros: i64::MIN,
            in_slots: 0,
        }
    }

    /// Makes room for items `0..slots`.
    pub(crate) fn reserve_slots(&mut self, slots: usize) {
        if self.links.len() < slots {
            self.links.resize(slots, UNLINKED);
        }
    }

    /// Forgets the links of items `slots..` (purged, so scheduled nowhere).
    pub(crate) fn truncate_slots(&mut self, slots: usize) {
        debug_assert!(self.links[slots.min(self.links.len())..]
            .iter()
            .all(|link| link.filed == UNFILED));
        self.links.truncate(slots);
    }

    /// How many leases are scheduled.
    pub(crate) fn len(&self) -> usize {
        self.in_slots + self.near.len() + self.passed_live
    }

    /// How many leases are passed: those that [`Self::first_due`] may return without a drain.
    pub(crate) fn passed(&self) -> usize {
        self.near.len() + self.passed_live
    }

    /// Adds `slot`'s lease, lapsing at `deadline`.
    pub(crate) fn schedule(&mut self, slot: u32, deadline: Timestamp) {
        let s = second(deadline);
        if self.len() == 0 {
            // An empty wheel may move its cursor anywhere. A deadline is at most the longest
            // TTL past the time it was set, so this keeps the cursor at or before that time.
            self.set_cursor(self.cursor.max(s - MAX_TTL_SECONDS - 1));
        }
        if s < self.cursor {
            self.near.insert((deadline, slot));
            self.refresh_first();
        } else {
            self.file(slot, s.min(self.cursor + SLOTS - 1));
        }
    }

    /// Removes `slot`'s lease, scheduled at `deadline`.
    pub(crate) fn unschedule(&mut self, slot: u32, deadline: Timestamp) {
        if second(deadline) < self.cursor {
            if self.links[slot as usize].filed == PASSED {
                // The entry in `passed` dies with the tag; it is dropped when it reaches the
                // front.
                self.links[slot as usize] = UNLINKED;
                self.passed_live -= 1;
                self.skip_dead();
            } else {
                let removed = self.near.remove(&(deadline, slot));
                debug_assert!(removed, "invariant: a passed second's lease is passed");
            }
            self.refresh_first();
        } else {
            self.unlink(slot);
        }
    }

    /// Whether no lease can be due at `now`: the check that starts every operation, kept to
    /// two comparisons so that it inlines into the heartbeat.
    #[inline]
    pub(crate) fn none_due(&self, now: Timestamp) -> bool {
        now.unix_micros() < self.cursor_micros && self.near_first.map_or(true, |first| now < first)
    }

    /// Moves `slot`'s lease from `old` to `new`. A later deadline in the window costs nothing.
    #[inline]
    pub(crate) fn reschedule(&mut self, slot: u32, old: Timestamp, new: Timestamp) {
        // The common renewal without the divisions `second` costs: an old deadline at or
        // after the cursor's second is in a list, filed no later than its own second, so no
        // later than the new one's.
        if old.unix_micros() >= self.cursor_micros && new >= old {
            return;
        }
        self.reschedule_slow(slot, old, new);
    }

    fn reschedule_slow(&mut self, slot: u32, old: Timestamp, new: Timestamp) {
        let (old_second, new_second) = (second(old), second(new));
        if old_second >= self.cursor && new_second >= old_second {
            // Filed at or before old_second, so still at or before new_second.
            return;
        }
        if old_second >= self.cursor
            && new_second >= self.cursor
            && self.links[slot as usize].filed <= new_second
        {
            return;
        }
        self.unschedule(slot, old);
        self.schedule(slot, new);
    }

    /// The earliest lease with a deadline at or before `now`, left in place.
    pub(crate) fn first_due(
        &mut self,
        now: Timestamp,
        deadline_of: impl Fn(u32) -> Timestamp,
    ) -> Option<(Timestamp, u32)> {
        if now.unix_micros() >= self.cursor_micros {
            self.drain_through(second(now), &deadline_of);
        }
        match self.near_first {
            Some(first) if first <= now => self.first_passed(),
            Some(_) | None => None,
        }
    }

    /// The earliest deadline of any lease. Drains slots ahead of time if it must.
    pub(crate) fn earliest(&mut self, deadline_of: impl Fn(u32) -> Timestamp) -> Option<Timestamp> {
        loop {
            if let Some((at, _)) = self.first_passed() {
                return Some(at);
            }
            if self.in_slots == 0 {
                return None;
            }
            // Every list holds one second; drain up to the earliest of them.
            let first = self
                .heads
                .iter()
                .filter(|&&head| head != NIL)
                .map(|&head| self.links[head as usize].filed)
                .min()
                .expect("invariant: some list is non-empty");
            self.drain_through(first, &deadline_of);
        }
    }

    /// The earliest deadline of any lease, without changing anything (walks the first
    /// non-empty slots).
    pub(crate) fn peek_earliest(
        &self,
        deadline_of: impl Fn(u32) -> Timestamp,
    ) -> Option<Timestamp> {
        let mut best = self.first_passed().map(|(at, _)| at);
        let mut left = self.in_slots;
        for s in self.cursor..self.cursor + SLOTS {
            if left == 0 || best.is_some_and(|b| second(b) < s) {
                break;
            }
            let mut at = self.heads[index(s)];
            while at != NIL {
                let deadline = deadline_of(at);
                best = Some(best.map_or(deadline, |b| b.min(deadline)));
                left -= 1;
                at = self.links[at as usize].next;
            }
        }
        best
    }

    /// Checks the invariants against the leases the table holds.
    pub(crate) fn validate(
        &self,
        leases: impl Iterator<Item = (u32, Timestamp)>,
    ) -> Result<(), String> {
        let mut listed = vec![false; self.links.len()];
        let mut count = 0;
        for s in self.cursor..self.cursor + SLOTS {
            let mut prev = NIL;
            let mut at = self.heads[index(s)];
            while at != NIL {
                let link = self.links[at as usize];
                if link.filed != s || link.prev != prev {
                    return Err(format!("slot {at} badly linked in second {s}"));
                }
                listed[at as usize] = true;
                count += 1;
                prev = at;
                at = link.next;
            }
        }
        if count != self.in_slots {
            return Err(format!("{count} listed, {} counted", self.in_slots));
        }
        let waiting = &self.passed[self.passed_head.min(self.passed.len())..];
        if waiting.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err("passed leases out of order".to_owned());
        }
        let live = (self.passed_head..self.passed.len())
            .filter(|&i| self.is_live(i))
            .count();
        if live != self.passed_live {
            return Err(format!("{live} live passed, {} counted", self.passed_live));
        }
        if !waiting.is_empty() && !self.is_live(self.passed_head) {
            return Err("a dead passed entry at the front".to_owned());
        }
        let first = self.first_passed().map(|(at, _)| at);
        if self.near_first != first {
            return Err(format!(
                "first passed {:?}, cached {:?}",
                first, self.near_first
            ));
        }
        let mut leased = 0;
        for (slot, deadline) in leases {
            leased += 1;
            let s = second(deadline);
            let link = self.links[slot as usize];
            let ok = if s < self.cursor {
                let in_passed = link.filed == PASSED && {
                    let i = link.prev.wrapping_sub(self.passed_base) as usize;
                    i >= self.passed_head && self.passed.get(i) == Some(&(deadline, slot))
                };
                in_passed != self.near.contains(&(deadline, slot))
            } else {
                listed[slot as usize] && link.filed <= s
            };
            if !ok {
                return Err(format!("lease of slot {slot} at {deadline} is not indexed"));
            }
        }
        if leased != self.len() {
            return Err(format!("{} deadlines for {leased} leases", self.len()));
        }
        Ok(())
    }

    /// Drains the slots of every second up to `last` (their due leases become passed, the
    /// others are filed again where their deadlines moved), so that the cursor passes `last`.
    fn drain_through(&mut self, last: i64, deadline_of: &impl Fn(u32) -> Timestamp) {
        if self.cursor > last {
            return;
        }
        let cursor = last.saturating_add(1);
        let start = if self.in_slots == 0 {
            cursor
        } else {
            self.cursor.max(cursor - SLOTS)
        };
        self.set_cursor(cursor);
        let appended = self.passed.len();
        let mut slots = [NIL; DRAIN_CHUNK];
        for s in start..cursor {
            let mut at = std::mem::replace(&mut self.heads[index(s)], NIL);
            while at != NIL {
                let mut n = 0;
                while at != NIL && n < DRAIN_CHUNK {
                    slots[n] = at;
                    n += 1;
                    at = self.links[at as usize].next;
                }
                self.in_slots -= n;
                // The exact deadlines, in a loop of independent loads so that their cache
                // misses (one per item, at a million leases) overlap instead of queueing
                // behind the list walk.
                let mut deadlines = [None; DRAIN_CHUNK];
                for (deadline, &slot) in deadlines[..n].iter_mut().zip(&slots) {
                    *deadline = Some(deadline_of(slot));
                }
                for (&deadline, &slot) in deadlines[..n].iter().zip(&slots) {
                    let deadline = deadline.expect("invariant: read above");
                    let due = second(deadline);
                    if due < cursor {
                        // Tagged below, once its place in `passed` is known.
                        self.links[slot as usize] = UNLINKED;
                        self.passed.push((deadline, slot));
                    } else {
                        self.file(slot, due.min(cursor + SLOTS - 1));
                    }
                }
            }
        }
        // Every lease already passed is in a second before the old cursor, every new one at
        // or after it: sorting the new run keeps the whole vector sorted.
        self.passed[appended..].sort_unstable();
        for (i, &(_, slot)) in self.passed.iter().enumerate().skip(appended) {
            self.links[slot as usize] = Link {
                prev: self.sequence(i),
                next: NIL,
                filed: PASSED,
            };
        }
        self.passed_live += self.passed.len() - appended;
        self.skip_dead();
        self.refresh_first();
    }

    /// The earliest passed lease.
    fn first_passed(&self) -> Option<(Timestamp, u32)> {
        let near = self.near.first().copied();
        let passed = self.passed.get(self.passed_head).copied();
        match (near, passed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn refresh_first(&mut self) {
        self.near_first = self.first_passed().map(|(at, _)| at);
    }

    /// The sequence number of `passed[i]`.
    fn sequence(&self, i: usize) -> u32 {
        // Wrapping by design (see `passed_base`).
        self.passed_base.wrapping_add(i as u32)
    }

    /// Whether `passed[i]` is live: its item's link names it.
    fn is_live(&self, i: usize) -> bool {
        let (_, slot) = self.passed[i];
        // A dead entry may name a slot a purge removed since.
        self.links
            .get(slot as usize)
            .is_some_and(|link| link.filed == PASSED && link.prev == self.sequence(i))
    }

    /// Advances `passed_head` past dead entries, and gives back the consumed prefix once it
    /// is at least half the vector (amortised O(1) per entry).
    fn skip_dead(&mut self) {
        while self.passed_head < self.passed.len() && !self.is_live(self.passed_head) {
            self.passed_head += 1;
        }
        let consumed = self.passed_head;
        if consumed == self.passed.len() || consumed >= 1024 && consumed * 2 >= self.passed.len() {
            self.passed.drain(..consumed);
            self.passed_base = self.sequence(consumed);
            self.passed_head = 0;
        }
    }

    fn set_cursor(&mut self, cursor: i64) {
        self.cursor = cursor;
        self.cursor_micros = cursor.saturating_mul(MICROS_PER_SECOND);
    }

    fn file(&mut self, slot: u32, filed: i64) {
        let head = &mut self.heads[index(filed)];
        let next = std::mem::replace(head, slot);
        if next != NIL {
            self.links[next as usize].prev = slot;
        }
        self.links[slot as usize] = Link {
            prev: NIL,
            next,
            filed,
        };
        self.in_slots += 1;
    }

    fn unlink(&mut self, slot: u32) {
        let link = std::mem::replace(&mut self.links[slot as usize], UNLINKED);
        debug_assert!(
            link.filed > PASSED,
            "invariant: an unpassed lease is listed"
        );
        if link.prev == NIL {
            self.heads[index(link.filed)] = link.next;
        } else {
            self.links[link.prev as usize].next = link.next;
        }
        if link.next != NIL {
            self.links[link.next as usize].prev = link.prev;
        }
        self.in_slots -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn at(seconds: f64) -> Timestamp {
        Timestamp::from_unix_micros((seconds * 1e6) as i64)
    }

    #[derive(Clone, Debug)]
    enum Step {
        Schedule(u32, i64),
        Unschedule(u32),
        Reschedule(u32, i64),
        Expire(i64),
        Earliest,
    }

    /// Steps over `slots` items with deadlines up to `span` µs past a base second.
    fn steps(slots: u32, span: i64) -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0..slots, 0..span).prop_map(|(s, d)| Step::Schedule(s, d)),
            (0..slots).prop_map(Step::Unschedule),
            (0..slots, 0..span).prop_map(|(s, d)| Step::Reschedule(s, d)),
            (0..span).prop_map(Step::Expire),
            Just(Step::Earliest),
        ];
        prop::collection::vec(step, 1..60)
    }

    /// Drives the wheel and an ordered map of deadlines through `steps`, comparing answers.
    fn agree(steps: Vec<Step>, slots: u32, base: i64) -> Result<(), TestCaseError> {
        let mut wheel = Deadlines::new();
        wheel.reserve_slots(slots as usize);
        let mut model: BTreeMap<u32, Timestamp> = BTreeMap::new();
        let t = |micros: i64| Timestamp::from_unix_micros(base * 1_000_000 + micros);
        for step in steps {
            match step {
                Step::Schedule(slot, d) => {
                    if let std::collections::btree_map::Entry::Vacant(e) = model.entry(slot) {
                        e.insert(t(d));
                        wheel.schedule(slot, t(d));
                    }
                }
                Step::Unschedule(slot) => {
                    if let Some(d) = model.remove(&slot) {
                        wheel.unschedule(slot, d);
                    }
                }
                Step::Reschedule(slot, d) => {
                    if let Some(old) = model.insert(slot, t(d)) {
                        wheel.reschedule(slot, old, t(d));
                    } else {
                        model.remove(&slot);
                    }
                }
                Step::Expire(now) => {
                    let now = t(now);
                    loop {
                        let m = model.clone();
                        let due = wheel.first_due(now, |s| m[&s]);
                        let expected = model
                            .iter()
                            .map(|(s, d)| (*d, *s))
                            .filter(|(d, _)| *d <= now)
                            .min();
                        prop_assert_eq!(due, expected);
                        let Some((d, slot)) = due else { break };
                        wheel.unschedule(slot, d);
                        model.remove(&slot);
                    }
                }
                Step::Earliest => {
                    let m = model.clone();
                    let expected = model.values().min().copied();
                    prop_assert_eq!(wheel.peek_earliest(|s| m[&s]), expected);
                    prop_assert_eq!(wheel.earliest(|s| m[&s]), expected);
                }
            }
            let m = model.clone();
            wheel
                .validate(m.iter().map(|(s, d)| (*s, *d)))
                .map_err(TestCaseError::fail)?;
        }
        Ok(())
    }

    /// Every lease in one of a few seconds, so that lists run longer than a drain's chunk.
    fn crowded(slots: u32) -> impl Strategy<Value = Vec<Step>> {
        let second = |k: i64| k * 1_000_000;
        let step = prop_oneof![
            4 => (0..slots, 0..4i64, 0..3i64).prop_map(move |(s, k, d)| Step::Schedule(s, second(k) + d)),
            1 => (0..slots).prop_map(Step::Unschedule),
            3 => (0..slots, 0..8i64, 0..3i64).prop_map(move |(s, k, d)| Step::Reschedule(s, second(k) + d)),
            1 => (0..10i64).prop_map(move |k| Step::Expire(second(k))),
            1 => Just(Step::Earliest),
        ];
        prop::collection::vec(step, 1..600)
    }

    proptest! {
        /// The wheel agrees with an ordered map of deadlines under any sequence of changes,
        /// including deadlines behind the cursor and beyond the window.
        #[test]
        fn agrees_with_an_ordered_map(steps in steps(8, 2_000_000_000), base in -5_000_000i64..5_000_000) {
            agree(steps, 8, base)?;
        }

        /// The same with deadlines days apart: drains that jump the cursor far ahead.
        #[test]
        fn agrees_across_wrapping_seconds(steps in steps(8, 400_000_000_000), base in -5_000_000i64..5_000_000) {
            agree(steps, 8, base)?;
        }

        /// The same with hundreds of leases crowded into a few seconds: drains of lists longer
        /// than a chunk, passed runs with equal deadlines, lapses interleaved with changes.
        #[test]
        fn agrees_when_crowded(steps in crowded(300), base in -5_000_000i64..5_000_000) {
            agree(steps, 300, base)?;
        }
    }

    #[test]
    fn a_later_renewal_touches_nothing() {
        let mut wheel = Deadlines::new();
        wheel.reserve_slots(1);
        assert_eq!(wheel.first_due(at(100.0), |_| at(0.0)), None);
        wheel.schedule(0, at(160.0));
        wheel.reschedule(0, at(160.0), at(170.5));
        assert_eq!(wheel.links[0].filed, 160);
        assert_eq!(wheel.first_due(at(170.4), |_| at(170.5)), None);
        assert_eq!(
            wheel.first_due(at(170.5), |_| at(170.5)),
            Some((at(170.5), 0))
        );
    }
}
