//! Lease lengths: a [`Ttl`] can only hold 10–600 seconds (docs/contract.md §4).

use std::fmt;

/// A lease time-to-live, always within [`Ttl::MIN`]–[`Ttl::MAX`] seconds.
///
/// A value out of range cannot be built, so a table's configuration and every lease it opens
/// are in range by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u16);

/// Why a configured TTL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ttl must be between 10 and 600 seconds, found {found}")]
#[non_exhaustive]
pub struct TtlOutOfRange {
    /// The refused value, in seconds.
    pub found: u64,
}

impl Ttl {
    /// The shortest lease: 10 seconds.
    pub const MIN: Self = Self(10);
    /// The longest lease: 600 seconds.
    pub const MAX: Self = Self(600);
    /// The default lease when a request names none: 60 seconds.
    pub const DEFAULT: Self = Self(60);

    /// A TTL of exactly `seconds`, for configuration.
    ///
    /// # Errors
    ///
    /// [`TtlOutOfRange`] when `seconds` is outside 10–600.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::Ttl;
    /// assert_eq!(Ttl::from_seconds(30).unwrap().seconds(), 30);
    /// assert!(Ttl::from_seconds(5).is_err());
    /// ```
    pub const fn from_seconds(seconds: u64) -> Result<Self, TtlOutOfRange> {
        if seconds < Self::MIN.0 as u64 || seconds > Self::MAX.0 as u64 {
            return Err(TtlOutOfRange { found: seconds });
        }
        // In range, so it fits in u16.
        Ok(Self(seconds as u16))
    }

    /// The TTL nearest to `seconds` within 10–600, and whether it had to be clamped.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::Ttl;
    /// assert_eq!(Ttl::clamped(5), (Ttl::MIN, true));
    /// assert_eq!(Ttl::clamped(u64::MAX), (Ttl::MAX, true));
    /// assert_eq!(Ttl::clamped(60), (Ttl::DEFAULT, false));
    /// ```
    pub const fn clamped(seconds: u64) -> (Self, bool) {
        match Self::from_seconds(seconds) {
            Ok(ttl) => (ttl, false),
            Err(_) if seconds < Self::MIN.0 as u64 => (Self::MIN, true),
            Err(_) => (Self::MAX, true),
        }
    }

    /// The length in seconds.
    pub const fn seconds(self) -> u64 {
        self.0 as u64
    }

    /// The length in microseconds.
    pub const fn micros(self) -> i64 {
        self.0 as i64 * 1_000_000
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert!(Ttl::from_seconds(9).is_err());
        assert_eq!(Ttl::from_seconds(10), Ok(Ttl::MIN));
        assert_eq!(Ttl::from_seconds(600), Ok(Ttl::MAX));
        assert_eq!(Ttl::from_seconds(601), Err(TtlOutOfRange { found: 601 }));
        assert_eq!(Ttl::clamped(0), (Ttl::MIN, true));
        assert_eq!(Ttl::clamped(10), (Ttl::MIN, false));
        assert_eq!(Ttl::clamped(601), (Ttl::MAX, true));
        assert_eq!(Ttl::MAX.micros(), 600_000_000);
    }
}
