//! [`Clock`]: a table's clock (docs/contract.md §7.1), one type for both tables.
//!
//! The latest `now` a changing operation was given; changing operations run at
//! `max(clock, now)`, so a table's time never goes backwards however the caller's clock
//! wanders, and reads answer as of `max(clock, now)` without moving it. A [`crate::LeaseTable`]
//! moves it through `&mut` (plain loads and stores); a [`crate::ConcurrentLeaseTable`] through
//! `&self`, as an atomic maximum every changing operation moves before it locks a shard.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::time::Timestamp;

/// The clock's value before the first changing operation.
const NO_CLOCK: i64 = i64::MIN;

/// A table's clock: `None` before the first changing operation.
#[derive(Debug)]
pub(crate) struct Clock(AtomicI64);

impl Clock {
    /// A clock at `at` (`None`: before the first changing operation).
    pub(crate) fn new(at: Option<Timestamp>) -> Self {
        Self(AtomicI64::new(at.map_or(NO_CLOCK, Timestamp::unix_micros)))
    }

    /// The latest `now` a changing operation was given.
    pub(crate) fn read(&self) -> Option<Timestamp> {
        match self.0.load(Ordering::Acquire) {
            NO_CLOCK => None,
            micros => Some(Timestamp::from_unix_micros(micros)),
        }
    }

    /// `max(clock, now)`: the instant a read answers as of.
    #[inline]
    pub(crate) fn at(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::Acquire).max(now.unix_micros()))
    }

    /// Moves the clock to `max(clock, now)` and returns it, through `&self`.
    #[inline]
    pub(crate) fn tick(&self, now: Timestamp) -> Timestamp {
        let micros = now.unix_micros();
        // A load first: a clock already ahead (or equal) needs no write to a shared line.
        let clock = self.0.load(Ordering::Acquire);
        if clock >= micros {
            return Timestamp::from_unix_micros(clock);
        }
        let previous = self.0.fetch_max(micros, Ordering::AcqRel);
        Timestamp::from_unix_micros(previous.max(micros))
    }

    /// [`Self::tick`] through `&mut self`: no atomic read-modify-write.
    #[inline]
    pub(crate) fn tick_mut(&mut self, now: Timestamp) -> Timestamp {
        let clock = self.0.get_mut();
        let micros = now.unix_micros();
        if *clock > micros {
            return Timestamp::from_unix_micros(*clock);
        }
        *clock = micros;
        now
    }

    /// The clock's value as a changing operation with no `now` of its own sees it: the Unix
    /// epoch before the first changing operation.
    pub(crate) fn or_epoch(&self) -> Timestamp {
        self.read().unwrap_or(Timestamp::from_unix_micros(0))
    }
}

impl Clone for Clock {
    fn clone(&self) -> Self {
        Self::new(self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_backwards() {
        let (early, late) = (
            Timestamp::from_unix_micros(1_000),
            Timestamp::from_unix_micros(2_000),
        );
        let mut clock = Clock::new(None);
        assert_eq!(clock.read(), None);
        assert_eq!(clock.at(early), early);
        assert_eq!(clock.tick_mut(late), late);
        assert_eq!(clock.tick_mut(early), late);
        assert_eq!(clock.tick(early), late);
        assert_eq!(clock.at(early), late);
        assert_eq!(clock.clone().read(), Some(late));
    }
}
