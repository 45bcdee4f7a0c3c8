//! The deadline index: every open lease, found by deadline, at a cost that does not grow with
//! the number of leases.
//!
//! A lazy single-level timer wheel. Time is cut into 1-second slots and the wheel has
//! [`SLOTS`] of them (more than the 600 s longest TTL), each an intrusive doubly-linked list
//! threaded through a per-item [`Link`]. An item is *filed* in the slot of a second no later
//! than its deadline's; the common renewal (a heartbeat moving the deadline later) leaves it
//! where it is and touches nothing here. When the wheel's cursor passes a slot, each item in it
//! either moves to `near` (an ordered set of exact deadlines, for the seconds the cursor has
//! passed) or, if its deadline moved on, is filed again at its current second. Lapses are
//! taken from the front of `near`.
//!
//! Invariants, for every scheduled item with deadline `d` and `s = second(d)`:
//! - `s < cursor` ⟺ `(d, slot)` is in `near`;
//! - otherwise the item is in exactly one list, filed at `f` with `cursor ≤ f ≤ s` and
//!   `f < cursor + SLOTS` (so each list holds one second of the window).
//!
//! The location of an item is a function of its deadline and the cursor, so the table never
//! stores it: renewing a lease later than the old deadline is a couple of comparisons.
//! Costs: renewal O(1) and usually free; expiry O(log n) per lapse in `near` plus O(1)
//! amortised per refile; memory 16 bytes per item plus 4 KiB.

use std::collections::BTreeSet;

use crate::time::Timestamp;

/// Slots of one second: the window must exceed the longest TTL (600 s) so that a renewal at
/// the current time never lands beyond it.
pub(crate) const SLOTS: i64 = 1024;

/// The longest TTL (SPEC §4), in seconds.
const MAX_TTL_SECONDS: i64 = 600;

const NIL: u32 = u32::MAX;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// An item's place in a slot list.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    /// The second whose slot holds the item, while it is in a list.
    filed: i64,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    filed: i64::MIN,
};

#[derive(Clone, Debug)]
pub(crate) struct Deadlines {
    heads: Vec<u32>,
    links: Vec<Link>,
    near: BTreeSet<(Timestamp, u32)>,
    /// The first deadline in `near`, kept so the check "is anything due?" that starts every
    /// operation reads two integers instead of walking a tree.
    near_first: Option<Timestamp>,
    /// Every slot of a second before this one has been drained into `near`.
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

    /// How many leases are scheduled.
    pub(crate) fn len(&self) -> usize {
        self.in_slots + self.near.len()
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
            self.near_first = self.near.first().map(|(at, _)| *at);
        } else {
            self.file(slot, s.min(self.cursor + SLOTS - 1));
        }
    }

    /// Removes `slot`'s lease, scheduled at `deadline`.
    pub(crate) fn unschedule(&mut self, slot: u32, deadline: Timestamp) {
        if second(deadline) < self.cursor {
            let removed = self.near.remove(&(deadline, slot));
            debug_assert!(removed, "invariant: a passed second's lease is in near");
            self.near_first = self.near.first().map(|(at, _)| *at);
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
            Some(first) if first <= now => self.near.first().copied(),
            Some(_) | None => None,
        }
    }

    /// The earliest deadline of any lease. Drains slots ahead of time if it must.
    pub(crate) fn earliest(&mut self, deadline_of: impl Fn(u32) -> Timestamp) -> Option<Timestamp> {
        loop {
            if let Some(&(at, _)) = self.near.first() {
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
        let mut best = self.near.first().map(|(at, _)| *at);
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
        let mut leased = 0;
        for (slot, deadline) in leases {
            leased += 1;
            let s = second(deadline);
            let ok = if s < self.cursor {
                self.near.contains(&(deadline, slot))
            } else {
                listed[slot as usize] && self.links[slot as usize].filed <= s
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

    /// Drains the slots of every second up to `last` into `near` (or files their items again
    /// when their deadlines moved on), so that the cursor passes `last`.
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
        for s in start..cursor {
            let mut at = std::mem::replace(&mut self.heads[index(s)], NIL);
            while at != NIL {
                let next = self.links[at as usize].next;
                self.links[at as usize] = UNLINKED;
                self.in_slots -= 1;
                let deadline = deadline_of(at);
                let due = second(deadline);
                if due < cursor {
                    self.near.insert((deadline, at));
                } else {
                    self.file(at, due.min(cursor + SLOTS - 1));
                }
                at = next;
            }
        }
        self.near_first = self.near.first().map(|(at, _)| *at);
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
            link.filed != i64::MIN,
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

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..8u32, 0..2_000_000_000i64).prop_map(|(s, d)| Step::Schedule(s, d)),
            (0..8u32).prop_map(Step::Unschedule),
            (0..8u32, 0..2_000_000_000i64).prop_map(|(s, d)| Step::Reschedule(s, d)),
            (0..2_000_000_000i64).prop_map(Step::Expire),
            Just(Step::Earliest),
        ]
    }

    proptest! {
        /// The wheel agrees with an ordered map of deadlines under any sequence of changes,
        /// including deadlines behind the cursor and beyond the window.
        #[test]
        fn agrees_with_an_ordered_map(steps in prop::collection::vec(step(), 1..60), base in -5_000_000i64..5_000_000) {
            let mut wheel = Deadlines::new();
            wheel.reserve_slots(8);
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
                            let expected = model.iter().map(|(s, d)| (*d, *s)).filter(|(d, _)| *d <= now).min();
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
                wheel.validate(m.iter().map(|(s, d)| (*s, *d))).map_err(TestCaseError::fail)?;
            }
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
