//! Microsecond timestamps and strict, allocation-free RFC 3339 text.
//!
//! [`Timestamp`] is the only notion of time in this crate: microseconds since
//! the Unix epoch (UTC), clamped to the years RFC 3339 can write
//! (`0000`–`9999`). Formatting ([`Timestamp::to_rfc3339`]) and parsing
//! ([`Timestamp::parse_rfc3339`]) use integer arithmetic only, never allocate
//! and never panic; chrono is used only for the `DateTime` conversions.

use std::fmt;
use std::num::NonZeroU64;
use std::ops::Deref;

use chrono::{DateTime, Utc};

mod canonical;
use canonical::{format_canonical, parse_canonical};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: u32 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const DAYS_0000_03_01_TO_EPOCH: u32 = 719_468;
/// Days from 0000-01-01 to 0000-03-01 (year 0000 is a leap year).
const DAYS_0000_01_01_TO_03_01: u32 = 60;

/// An instant with microsecond precision: microseconds since the Unix epoch (UTC),
/// always within the range RFC 3339 can write with a four-digit year.
///
/// Stored as the (non-zero) distance from one microsecond before [`Timestamp::MIN`], so
/// `Option<Timestamp>` is 8 bytes like `Timestamp` itself: a work item holds seven of them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(NonZeroU64);

/// Unix microseconds of [`Timestamp::MIN`].
const MIN_MICROS: i64 = -62_167_219_200 * MICROS_PER_SECOND;
/// Unix microseconds of [`Timestamp::MAX`].
const MAX_MICROS: i64 = 253_402_300_800 * MICROS_PER_SECOND - 1;

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.unix_micros())
    }
}

impl Timestamp {
    /// `0000-01-01T00:00:00.000000Z`, the earliest instant RFC 3339 can write.
    pub const MIN: Self = Self::in_range(MIN_MICROS);
    /// `9999-12-31T23:59:59.999999Z`, the latest instant RFC 3339 can write
    /// at microsecond precision.
    pub const MAX: Self = Self::in_range(MAX_MICROS);

    /// `micros`, already known to be within `MIN_MICROS..=MAX_MICROS`.
    const fn in_range(micros: i64) -> Self {
        // In range, so the distance is in 1..=MAX_MICROS - MIN_MICROS + 1.
        match NonZeroU64::new(micros.abs_diff(MIN_MICROS) + 1) {
            Some(distance) => Self(distance),
            None => panic!("invariant: a distance plus one is never zero"),
        }
    }

    /// The instant `micros` microseconds after the Unix epoch, clamped into
    /// [`MIN`](Self::MIN)`..=`[`MAX`](Self::MAX) (time outside RFC 3339's
    /// years is clamped, not an error).
    #[must_use]
    pub const fn from_unix_micros(micros: i64) -> Self {
        if micros < MIN_MICROS {
            Self::MIN
        } else if micros > MAX_MICROS {
            Self::MAX
        } else {
            Self::in_range(micros)
        }
    }

    /// Microseconds since the Unix epoch (negative before 1970).
    #[must_use]
    pub const fn unix_micros(self) -> i64 {
        // The distance is at most MAX_MICROS - MIN_MICROS + 1 < 2^63.
        MIN_MICROS + (self.0.get() - 1) as i64
    }

    /// The microsecond containing `at`: sub-microsecond digits are truncated
    /// toward the past (floor), then the result is clamped into
    /// [`MIN`](Self::MIN)`..=`[`MAX`](Self::MAX). A chrono leap second
    /// (nanoseconds ≥ 1e9) counts on into the next second, as chrono's own
    /// `timestamp_micros` does.
    #[must_use]
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        // Floor seconds plus non-negative nanoseconds: a floor to the microsecond.
        let micros = at
            .timestamp()
            .saturating_mul(MICROS_PER_SECOND)
            .saturating_add(i64::from(at.timestamp_subsec_nanos() / 1_000));
        Self::from_unix_micros(micros)
    }

    /// The same instant as a chrono `DateTime<Utc>`.
    #[must_use]
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.unix_micros())
            .expect("invariant: years 0000..=9999 are within chrono's range")
    }

    /// `self` plus `micros` microseconds, clamped into
    /// [`MIN`](Self::MIN)`..=`[`MAX`](Self::MAX); never panics.
    #[must_use]
    pub const fn saturating_add_micros(self, micros: i64) -> Self {
        Self::from_unix_micros(self.unix_micros().saturating_add(micros))
    }

    /// `self` minus `micros` microseconds, clamped into
    /// [`MIN`](Self::MIN)`..=`[`MAX`](Self::MAX); never panics.
    #[must_use]
    pub const fn saturating_sub_micros(self, micros: i64) -> Self {
        Self::from_unix_micros(self.unix_micros().saturating_sub(micros))
    }

    /// The next microsecond (clamped at [`MAX`](Self::MAX)).
    #[must_use]
    pub const fn next_micro(self) -> Self {
        self.saturating_add_micros(1)
    }

    /// RFC 3339 in UTC with `Z` and exactly six fractional digits, e.g.
    /// `2026-07-01T08:15:06.120394Z`, written into a stack buffer (no heap
    /// allocation).
    #[must_use]
    #[inline]
    pub fn to_rfc3339(self) -> Rfc3339 {
        // The stored distance minus one is exactly the microseconds since MIN.
        Rfc3339(format_canonical(self.0.get() - 1))
    }

    /// Parses any RFC 3339 date-time into the instant it denotes.
    ///
    /// Accepted: `YYYY-MM-DD`, `T` or `t`, `HH:MM:SS`, an optional `.` with
    /// one or more digits, then `Z`, `z`, `+HH:MM` or `-HH:MM`, and nothing
    /// else. The result is [`ParsedInstant::Exact`] when the text names a
    /// whole microsecond within [`MIN`](Self::MIN)`..=`[`MAX`](Self::MAX),
    /// and [`ParsedInstant::Inexact`] for valid texts no `Timestamp` can
    /// equal (nonzero digits below the microsecond, a leap second, or an
    /// instant outside the range after applying the offset). Nothing is
    /// rounded.
    ///
    /// # Errors
    ///
    /// [`TimestampError`] when `text` is not an RFC 3339 date-time.
    #[inline]
    pub fn parse_rfc3339(text: &str) -> Result<ParsedInstant, TimestampError> {
        let bytes = text.as_bytes();
        match parse_canonical(bytes) {
            Some(at) => Ok(ParsedInstant::Exact(at)),
            None => parse_general(bytes),
        }
    }
}

/// Every form [`Timestamp::parse_rfc3339`] accepts, with the reason for a refusal: what the
/// canonical fast path hands on (and the reference it is tested against). Never inlined, so
/// that callers of the fast path do not pay for this function's registers and stack frame.
#[inline(never)]
fn parse_general(bytes: &[u8]) -> Result<ParsedInstant, TimestampError> {
    let Some(head) = bytes.first_chunk::<19>() else {
        return Err(TimestampError::new("too short for YYYY-MM-DDTHH:MM:SS"));
    };
    let Some([year, month, day, hour, minute, second]) = date_time_fast(head) else {
        // The fallback reason only shows if the two checks ever disagreed.
        return Err(check_date_time(head).err().unwrap_or(INVALID));
    };

    let mut pos = 19;
    let mut micro: u32 = 0;
    let mut sub_micro_nonzero = false;
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(&byte) = bytes.get(pos) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if pos - start < 6 {
                micro = micro * 10 + u32::from(digit);
            } else if digit != 0 {
                sub_micro_nonzero = true;
            }
            pos += 1;
        }
        let count = pos - start;
        if count == 0 {
            return Err(TimestampError::new("expected digits after '.'"));
        }
        for _ in count..6 {
            micro *= 10;
        }
    }

    let offset_minutes = match bytes.get(pos) {
        Some(b'Z' | b'z') => {
            if bytes.len() != pos + 1 {
                return Err(TimestampError::new("unexpected text after the time zone"));
            }
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let rest = bytes.get(pos + 1..).unwrap_or_default();
            let Some(&[h1, h2, colon, m1, m2]) = rest.first_chunk::<5>() else {
                return Err(TimestampError::new("expected an offset +HH:MM or -HH:MM"));
            };
            let hours = field(h1, h2, 0, 23, "offset hours must be 00-23")?;
            expect_byte(colon, b':', "expected ':' in the offset")?;
            let minutes = field(m1, m2, 0, 59, "offset minutes must be 00-59")?;
            if rest.len() != 5 {
                return Err(TimestampError::new("unexpected text after the time zone"));
            }
            let sign = if sign == b'-' { -1 } else { 1 };
            sign * i64::from(hours * 60 + minutes)
        }
        None => return Err(TimestampError::new("missing time zone")),
        Some(_) => return Err(TimestampError::new("expected 'Z' or an offset")),
    };

    if second == 60 || sub_micro_nonzero {
        return Ok(ParsedInstant::Inexact);
    }
    // Years 0000..=9999 and offsets under a day: far from i64 overflow.
    let days = days_from_civil(year, month, day);
    let local_seconds =
        days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second);
    let utc_seconds = local_seconds - offset_minutes * 60;
    let micros = utc_seconds * MICROS_PER_SECOND + i64::from(micro);
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(ParsedInstant::Exact(Timestamp::in_range(micros)))
    } else {
        Ok(ParsedInstant::Inexact)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.to_rfc3339().as_str())
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::from_datetime(at)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(at: Timestamp) -> Self {
        at.to_datetime()
    }
}

/// A formatted timestamp: exactly 27 ASCII bytes
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) in a stack buffer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Rfc3339([u8; 27]);

impl Rfc3339 {
    /// The text's bytes, e.g. to copy into an output buffer. Unlike going through
    /// [`as_str`](Self::as_str) (or `Deref`), this skips the UTF-8 check, which safe code
    /// cannot avoid when making a `str` and which costs as much as formatting itself.
    ///
    /// ```
    /// use worklease::Timestamp;
    /// let text = Timestamp::from_unix_micros(1_782_893_706_120_394).to_rfc3339();
    /// assert_eq!(text.as_bytes(), b"2026-07-01T08:15:06.120394Z");
    /// ```
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 27] {
        &self.0
    }

    /// The text, e.g. `2026-07-01T08:15:06.120394Z`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("invariant: Rfc3339 holds only ASCII")
    }
}

impl Deref for Rfc3339 {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a parsed RFC 3339 text denotes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParsedInstant {
    /// A whole-microsecond instant within
    /// [`Timestamp::MIN`]`..=`[`Timestamp::MAX`].
    Exact(Timestamp),
    /// A valid RFC 3339 date-time that no `Timestamp` can equal: nonzero
    /// digits below the microsecond, a leap second (`:60`), or (after
    /// applying the offset) outside [`Timestamp::MIN`]`..=`[`Timestamp::MAX`].
    Inexact,
}

/// Why a text is not an RFC 3339 date-time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("not an RFC 3339 date-time: {reason}")]
pub struct TimestampError {
    reason: &'static str,
}

impl TimestampError {
    const fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    /// A short, static description of the first problem found.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// `[year, month, day, hour, minute, second]` of a valid
/// `YYYY-MM-DDTHH:MM:SS`, or `None`: one branch on the hot path, with the
/// precise diagnosis left to [`check_date_time`].
fn date_time_fast(head: &[u8; 19]) -> Option<[u32; 6]> {
    let mut bad = false;
    let mut pair = |at: usize| {
        let (tens, ones) = (head[at].wrapping_sub(b'0'), head[at + 1].wrapping_sub(b'0'));
        bad |= (tens > 9) | (ones > 9);
        u32::from(tens) * 10 + u32::from(ones)
    };
    let year = pair(0) * 100 + pair(2);
    let [month, day, hour, minute, second] = [5, 8, 11, 14, 17].map(&mut pair);
    bad |= (head[4] != b'-') | (head[7] != b'-') | (head[10] | 0x20 != b't');
    bad |= (head[13] != b':') | (head[16] != b':');
    bad |= (month.wrapping_sub(1) > 11) | (day == 0) | (day > days_in_month(year, month));
    bad |= (hour > 23) | (minute > 59) | (second > 60);
    (!bad).then_some([year, month, day, hour, minute, second])
}

const INVALID: TimestampError = TimestampError::new("invalid date-time");

/// The first problem, left to right, in a `head` that [`date_time_fast`]
/// rejected (`Ok` would mean the two disagree).
#[cold]
fn check_date_time(head: &[u8; 19]) -> Result<(), TimestampError> {
    let year_hi = field(head[0], head[1], 0, 99, "expected a four-digit year")?;
    let year = year_hi * 100 + field(head[2], head[3], 0, 99, "expected a four-digit year")?;
    expect_byte(head[4], b'-', "expected '-' after the year")?;
    let month = field(head[5], head[6], 1, 12, "month must be 01-12")?;
    expect_byte(head[7], b'-', "expected '-' after the month")?;
    if field(head[8], head[9], 1, 31, "day must be 01-31")? > days_in_month(year, month) {
        return Err(TimestampError::new("day does not exist in that month"));
    }
    expect_byte(head[10] & !0x20, b'T', "expected 'T' between date and time")?;
    field(head[11], head[12], 0, 23, "hour must be 00-23")?;
    expect_byte(head[13], b':', "expected ':' after the hour")?;
    field(head[14], head[15], 0, 59, "minute must be 00-59")?;
    expect_byte(head[16], b':', "expected ':' after the minute")?;
    field(head[17], head[18], 0, 60, "second must be 00-60").map(drop)
}

/// Two ASCII digits as a number within `min..=max`, or `reason` as the error.
fn field(
    tens: u8,
    ones: u8,
    min: u32,
    max: u32,
    reason: &'static str,
) -> Result<u32, TimestampError> {
    let (tens, ones) = (tens.wrapping_sub(b'0'), ones.wrapping_sub(b'0'));
    let value = u32::from(tens) * 10 + u32::from(ones);
    if tens <= 9 && ones <= 9 && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(TimestampError::new(reason))
    }
}

fn expect_byte(found: u8, wanted: u8, reason: &'static str) -> Result<(), TimestampError> {
    if found == wanted {
        Ok(())
    } else {
        Err(TimestampError::new(reason))
    }
}

const fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day` (Howard Hinnant's
/// `days_from_civil`), for `year` in `0..=9999`. The year is shifted by one
/// 400-year era so that unsigned arithmetic suffices.
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let year = year + 400 - u32::from(month <= 2);
    let (era, year_of_era) = (year / 400, year % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1; // from March 1
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    i64::from(era * DAYS_PER_ERA + day_of_era) - i64::from(DAYS_PER_ERA + DAYS_0000_03_01_TO_EPOCH)
}

/// `(year, month, day)` of the day `days` after 0000-01-01, by Neri and Schneider's
/// "Euclidean affine functions" (2022): the same computational calendar as Hinnant's
/// `civil_from_days` (years start on March 1, so the leap day comes last), with half the
/// divisions (all by constants, which the compiler turns into multiplications). Shifted by
/// one 400-year era so that unsigned arithmetic suffices.
fn civil_from_days_since_0000(days: u32) -> (u32, u32, u32) {
    // Days since -0400-03-01: `days + 400 years - (Jan + Feb of year 0000)`; at most
    // 3_798_462, so `4 * n + 3` fits.
    let n = days + DAYS_PER_ERA - DAYS_0000_01_01_TO_03_01;
    let n1 = 4 * n + 3;
    let (century, day_of_century) = (n1 / DAYS_PER_ERA, n1 % DAYS_PER_ERA / 4);
    // Years of 365.25 days within the century: the high half is the year, the low half the
    // fraction of it gone, from which the day of the year follows.
    let p2 = 2_939_745 * u64::from(4 * day_of_century + 3);
    let (year_of_century, fraction) = ((p2 >> 32) as u32, p2 as u32);
    let day_of_year = fraction / 2_939_745 / 4; // from March 1
    let n3 = 2_141 * day_of_year + 197_913;
    let (shifted_month, day) = (n3 >> 16, (n3 & 0xffff) / 2_141); // March = 3
    let january_or_february = day_of_year >= 306;
    let month = if january_or_february {
        shifted_month - 12
    } else {
        shifted_month
    };
    let year = 100 * century + year_of_century + u32::from(january_or_february) - 400;
    (year, month, day + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const EXAMPLE: &str = "2026-07-01T08:15:06.120394Z";

    fn exact(text: &str) -> Timestamp {
        match Timestamp::parse_rfc3339(text) {
            Ok(ParsedInstant::Exact(at)) => at,
            other => panic!("{text:?} should be exact, got {other:?}"),
        }
    }

    fn assert_inexact(text: &str) {
        let result = Timestamp::parse_rfc3339(text);
        assert_eq!(result, Ok(ParsedInstant::Inexact), "{text:?}");
    }

    fn assert_error(text: &str) {
        let result = Timestamp::parse_rfc3339(text);
        assert!(result.is_err(), "{text:?} was accepted: {result:?}");
    }

    fn micros(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros)
    }

    fn utc(year: i32, month: u32, day: u32, hms: (u32, u32, u32)) -> DateTime<Utc> {
        let (hour, minute, second) = hms;
        let at = Utc.with_ymd_and_hms(year, month, day, hour, minute, second);
        at.single().expect("valid date-time")
    }

    fn oracle_format(at: Timestamp) -> String {
        let pattern = "%Y-%m-%dT%H:%M:%S%.6fZ";
        at.to_datetime().format(pattern).to_string()
    }

    #[test]
    fn example_round_trips() {
        let at = exact(EXAMPLE);
        assert_eq!(at.to_rfc3339().as_str(), EXAMPLE);
        assert_eq!(&*at.to_rfc3339(), EXAMPLE);
        assert_eq!(at.to_string(), EXAMPLE);
        assert_eq!(at.to_rfc3339().to_string(), EXAMPLE);
        assert_eq!(at.to_rfc3339().as_bytes(), EXAMPLE.as_bytes());
        assert_eq!(at.unix_micros(), 1_782_893_706_120_394);
    }

    #[test]
    fn equal_forms_parse_to_the_same_instant() {
        let at = exact(EXAMPLE);
        assert_eq!(exact("2026-07-01T08:15:06.120394000Z"), at);
        assert_eq!(exact("2026-07-01T14:15:06.120394+06:00"), at);
        assert_eq!(exact("2026-07-01T02:45:06.120394-05:30"), at);
        assert_eq!(exact("2026-07-01t08:15:06.120394z"), at);
        assert_eq!(exact("2026-07-01T08:15:06.120394-00:00"), at);
        for (text, unix_micros) in [
            ("2026-07-01T08:15:06Z", 1_782_893_706_000_000),
            ("2026-07-01T08:15:06.1Z", 1_782_893_706_100_000),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999999Z", -1),
        ] {
            assert_eq!(exact(text), micros(unix_micros), "{text}");
            assert_eq!(
                exact(&exact(text).to_string()),
                micros(unix_micros),
                "{text}"
            );
        }
    }

    #[test]
    fn inexact_texts() {
        assert_inexact("2026-07-01T08:15:06.1203941Z");
        assert_inexact("2026-07-01T08:15:06.1203940000000000001Z");
        assert_inexact("2016-12-31T23:59:60Z");
        assert_inexact("2016-12-31T23:59:60.000000Z");
        assert_inexact("9999-12-31T23:59:59-01:00");
        assert_inexact("9999-12-31T23:59:59.999999-00:01");
        assert_inexact("0000-01-01T00:00:00+00:01");
        assert_eq!(exact("9999-12-31T23:59:59.999999+00:00"), Timestamp::MAX);
        assert_eq!(exact("0000-01-01T00:00:00-00:00"), Timestamp::MIN);
        assert_eq!(exact("0000-01-01T01:00:00+01:00"), Timestamp::MIN);
    }

    #[test]
    fn rejected_texts() {
        #[rustfmt::skip]
        let rejected = [
            "", "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
            "2026-07-00T00:00:00Z", "2026-07-01T24:00:00Z", "2026-07-01T08:60:00Z",
            "2026-07-01T08:15:61Z", "2026-07-01T08:15:06", "2026-07-01T08:15:06.120394",
            "2026-07-01T08:15:06+24:00", "2026-07-01T08:15:06+05:60", "2026-07-01T08:15:06+0500",
            "2026-07-01T08:15:06+05:0", "2026-07-01T08:15:06+05:00 ", "2026-07-01T08:15:06Z ",
            " 2026-07-01T08:15:06Z", "2026-07-01T08:15:06.Z", "2026-07-01T08:15:06.",
            "2026-07-01T08:15:06ZZ", "2026-07-01T08:15:06UTC", "12026-07-01T08:15:06Z",
            "+2026-07-01T08:15:06Z", "-2026-07-01T08:15:06Z", "026-07-01T08:15:06Z",
            "2026-7-01T08:15:06Z", "2026-07-01 08:15:06Z", "2026-07-01X08:15:06Z",
            "2026/07/01T08:15:06Z", "2026-07-01T08-15-06Z", "2026-07-01T08:15Z",
            "2026-07-01T08:15:06,5Z", "2026-07-01", "２026-07-01T08:15:06Z",
            "2026-07-01T08:15:06.1é", "2026-07-01T08:15:06.1éZ", "2026-07-01T08:15:0é",
            "é026-07-01T08:15:06Z", "2026-07-01T08:15:06+0é:00", "2026-07-01T08:15:06Zé",
            "2026-07-01T08:15:06.120394Z\0", "2026-07-01U08:15:06Z", "2026-07-01u08:15:06Z",
            "2026-07-01T08:15:06.1:Z", "2026-07-01T08:15:06.1/Z", "2026-02-30T23:59:60Z",
            "2026-07-01T08:15:06.1203941", "9999-12-31T23:59:59-01:0",
            "2026-07-01T08:15:06.120394Z\0",
            // The canonical shape, with a bad field (the fast path must hand these on).
            "2026-02-30T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z",
            "2026-07-01T24:00:00.000000Z", "2026-07-01T08:60:00.000000Z",
            "2026-07-01T08:15:06.12039aZ", "2026-07-01T08:15:06,120394Z",
            "2026-07-01 08:15:06.120394Z", "2026-07-00T08:15:06.120394Z",
        ];
        for text in rejected {
            assert_error(text);
        }
        let error = Timestamp::parse_rfc3339("2026-02-30T00:00:00Z").expect_err("invalid");
        assert_eq!(error.reason(), "day does not exist in that month");
        assert_eq!(
            error.to_string(),
            "not an RFC 3339 date-time: day does not exist in that month"
        );
    }

    #[test]
    fn leap_years() {
        assert!(Timestamp::parse_rfc3339("0000-02-29T00:00:00Z").is_ok());
        assert!(Timestamp::parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert_error("2100-02-29T00:00:00Z");
        let leap_day_end = exact("2000-02-29T23:59:59.999999Z");
        assert_eq!(leap_day_end.next_micro(), exact("2000-03-01T00:00:00Z"));
    }

    #[test]
    fn bounds_format_and_clamp() {
        let (min, max) = (Timestamp::MIN, Timestamp::MAX);
        assert_eq!(min.to_rfc3339().as_str(), "0000-01-01T00:00:00.000000Z");
        assert_eq!(max.to_rfc3339().as_str(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(oracle_format(min), min.to_string());
        assert_eq!(oracle_format(max), max.to_string());
        assert_eq!(micros(i64::MIN), min);
        assert_eq!(micros(i64::MAX), max);
        assert_eq!(micros(min.unix_micros() - 1), min);
        assert_eq!(micros(max.unix_micros() + 1), max);
        assert_eq!(micros(max.unix_micros() - 1).next_micro(), max);
    }

    #[test]
    fn saturating_arithmetic() {
        let (min, max, epoch) = (Timestamp::MIN, Timestamp::MAX, micros(0));
        assert_eq!(epoch.saturating_add_micros(5), micros(5));
        assert_eq!(epoch.saturating_sub_micros(5), micros(-5));
        assert_eq!(epoch.saturating_add_micros(-5), micros(-5));
        assert_eq!(epoch.next_micro(), micros(1));
        assert_eq!(max.next_micro(), max);
        assert_eq!(max.saturating_sub_micros(1).next_micro(), max);
        assert_eq!(max.saturating_add_micros(i64::MAX), max);
        assert_eq!(min.saturating_sub_micros(i64::MAX), min);
        assert_eq!(min.saturating_sub_micros(i64::MIN), max);
        assert_eq!(max.saturating_add_micros(i64::MIN), min);
        assert_eq!(min.saturating_add_micros(-1), min);
    }

    #[test]
    fn from_datetime_floors_and_round_trips() {
        let nanos = chrono::Duration::nanoseconds;
        let base = utc(2026, 7, 1, (8, 15, 6));
        let at = base + nanos(120_394_999);
        assert_eq!(Timestamp::from_datetime(at), exact(EXAMPLE));
        assert_eq!(Timestamp::from(at), exact(EXAMPLE));
        let before_epoch = utc(1969, 12, 31, (23, 59, 59)) + nanos(999_999_999);
        assert_eq!(Timestamp::from_datetime(before_epoch), micros(-1));
        let round = exact(EXAMPLE).to_datetime();
        assert_eq!(round, base + nanos(120_394_000));
        assert_eq!(Timestamp::from_datetime(round), exact(EXAMPLE));
        assert_eq!(DateTime::<Utc>::from(exact(EXAMPLE)), round);
        let (min, max) = (Timestamp::MIN, Timestamp::MAX);
        assert_eq!(Timestamp::from_datetime(utc(10_000, 1, 1, (0, 0, 0))), max);
        assert_eq!(Timestamp::from_datetime(utc(-1, 12, 31, (23, 59, 59))), min);
        assert_eq!(Timestamp::from_datetime(DateTime::<Utc>::MIN_UTC), min);
        assert_eq!(Timestamp::from_datetime(DateTime::<Utc>::MAX_UTC), max);
    }

    /// Walks every day from 0000-01-01 to 9999-12-31: both conversions
    /// must agree with each other and with a naive day-by-day calendar.
    #[test]
    fn every_day_round_trips_through_the_calendar() {
        let days_before_epoch = Timestamp::MIN.unix_micros() / MICROS_PER_DAY;
        let (mut year, mut month, mut day) = (0, 1, 1);
        for days in 0..3_652_425_u32 {
            let civil = civil_from_days_since_0000(days);
            assert_eq!(civil, (year, month, day), "day {days}");
            let since_epoch = i64::from(days) + days_before_epoch;
            assert_eq!(days_from_civil(year, month, day), since_epoch, "day {days}");
            day += 1;
            if day > days_in_month(year, month) {
                (month, day) = (month + 1, 1);
            }
            if month > 12 {
                (year, month) = (year + 1, 1);
            }
        }
        assert_eq!((year, month, day), (10_000, 1, 1));
    }

    fn valid_date() -> impl Strategy<Value = (u32, u32, u32)> {
        (0..=9999_u32, 1..=12_u32, 1..=31_u32)
            .prop_map(|(year, month, day)| (year, month, day.min(days_in_month(year, month))))
    }

    /// What chrono says `text` denotes, in `parse_rfc3339`'s terms
    /// (`None` if chrono rejects it).
    fn chrono_reading(text: &str) -> Option<ParsedInstant> {
        let at = DateTime::parse_from_rfc3339(text).ok()?;
        let nanos = at.timestamp_subsec_nanos(); // ≥ 1e9 within a leap second
        let micros = at.timestamp() * MICROS_PER_SECOND + i64::from(nanos / 1_000);
        let exact = nanos % 1_000 == 0 && nanos < 1_000_000_000 && ALL.contains(&micros);
        Some(if exact {
            ParsedInstant::Exact(Timestamp::from_unix_micros(micros))
        } else {
            ParsedInstant::Inexact
        })
    }

    const ALL: std::ops::RangeInclusive<i64> =
        Timestamp::MIN.unix_micros()..=Timestamp::MAX.unix_micros();

    /// `"00"` to `"99"` back to back: the digits of `n` are at `2 * n..2 * n + 2`.
    const DIGIT_PAIRS: [u8; 200] = {
        let mut pairs = [0; 200];
        let mut n = 0;
        while n < 100 {
            pairs[2 * n] = b'0' + (n / 10) as u8;
            pairs[2 * n + 1] = b'0' + (n % 10) as u8;
            n += 1;
        }
        pairs
    };

    /// `Timestamp::to_rfc3339` as it was before the rewrite (a division chain per field,
    /// Hinnant's `civil_from_days`), kept verbatim as the reference the new one must match
    /// byte for byte.
    fn reference_format(at: Timestamp) -> [u8; 27] {
        const DAY: u64 = MICROS_PER_DAY.unsigned_abs();
        let since_min = at.0.get() - 1;
        let in_day = since_min % DAY;
        let days = (since_min / DAY) as u32;
        let secs = (in_day / 1_000_000) as u32;
        let micro = (in_day % 1_000_000) as u32;
        let (year, month, day) = reference_civil_from_days_since_0000(days);

        let mut buf = *b"0000-00-00T00:00:00.000000Z";
        for (at, value) in [
            (0, year / 100),
            (2, year % 100),
            (5, month),
            (8, day),
            (11, secs / 3_600),
            (14, secs / 60 % 60),
            (17, secs % 60),
            (20, micro / 10_000),
            (22, micro / 100 % 100),
            (24, micro % 100),
        ] {
            let pair = (value % 100) as usize * 2;
            buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        buf
    }

    /// `civil_from_days_since_0000` as it was before the rewrite, for [`reference_format`].
    fn reference_civil_from_days_since_0000(days: u32) -> (u32, u32, u32) {
        let z = days + DAYS_PER_ERA - DAYS_0000_01_01_TO_03_01;
        let (era, day_of_era) = (z / DAYS_PER_ERA, z % DAYS_PER_ERA);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = (shifted_month + 2) % 12 + 1;
        let year = era * 400 + year_of_era + u32::from(month <= 2) - 400;
        (year, month, day)
    }

    /// Every day from 0000-01-01 to 9999-12-31, at its first, a middle or its last
    /// microsecond in turn (the time of day is independent of the date; the property tests
    /// cover it).
    #[test]
    fn every_day_formats_like_the_reference() {
        let first = Timestamp::MIN.unix_micros();
        let times = [0, 45_296_789_012, MICROS_PER_DAY - 1];
        for (days, micros) in (0..3_652_425).zip(times.into_iter().cycle()) {
            let at = Timestamp::from_unix_micros(first + days * MICROS_PER_DAY + micros);
            let text = at.to_rfc3339();
            assert_eq!(text.as_bytes(), &reference_format(at)[..], "{text}");
        }
    }

    proptest! {
        #[test]
        fn format_parses_back_and_agrees_with_chrono(micros in ALL) {
            let at = Timestamp::from_unix_micros(micros);
            prop_assert_eq!(at.unix_micros(), micros);
            let text = at.to_rfc3339();
            prop_assert_eq!(Timestamp::parse_rfc3339(&text), Ok(ParsedInstant::Exact(at)));
            prop_assert_eq!(text.to_string(), oracle_format(at));
            prop_assert_eq!(text.as_bytes(), &reference_format(at)[..]);
            prop_assert_eq!(parse_canonical(text.as_bytes()), Some(at));
            prop_assert_eq!(Timestamp::from_datetime(at.to_datetime()), at);
        }

        #[test]
        fn arbitrary_strings_never_panic(text in ".*") {
            let _ = Timestamp::parse_rfc3339(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Timestamp::parse_rfc3339(&String::from_utf8_lossy(&bytes));
        }

        /// Near-valid texts (a cut, plus one ASCII or arbitrary char spliced
        /// in) never panic, and whatever is accepted, chrono reads alike.
        #[test]
        fn mutated_texts_never_panic_and_agree_with_chrono(
            micros in ALL,
            (cut, skip) in (0..=27_usize, prop_oneof![Just(1_usize), 0..=3_usize]),
            splice in prop_oneof![
                prop::char::range('0', '9'),
                prop::char::range(' ', '~'),
                any::<char>(),
            ],
        ) {
            let text = Timestamp::from_unix_micros(micros).to_string();
            let resume = (cut + skip).min(27);
            let mutated = format!("{}{splice}{}", &text[..cut], &text[resume..]);
            for candidate in [&text[..cut], mutated.as_str()] {
                if let Ok(ours) = Timestamp::parse_rfc3339(candidate) {
                    prop_assert_eq!(Some(ours), chrono_reading(candidate), "{}", candidate);
                }
            }
        }

        #[test]
        fn fast_and_precise_date_time_checks_agree(
            micros in ALL,
            edits in prop::collection::vec(
                (0..19_usize, prop_oneof![b'-'..=b':', b'S'..=b'U', b's'..=b'u', any::<u8>()]),
                0..3,
            ),
        ) {
            let text = Timestamp::from_unix_micros(micros).to_rfc3339();
            let mut head = *text.as_bytes().first_chunk::<19>().expect("27 bytes");
            for (at, byte) in edits {
                head[at] = byte;
            }
            let precise = check_date_time(&head);
            prop_assert_eq!(date_time_fast(&head).is_some(), precise.is_ok(), "{:?}", precise);
        }

        /// Valid texts with every optional form: `t`/`z`, offsets, extra
        /// zeros, and nonzero digits down to the nanosecond.
        #[test]
        fn parse_agrees_with_chrono(
            (year, month, day) in valid_date(),
            (hour, minute, second) in (0..24_u32, 0..60_u32, 0..60_u32),
            fraction in prop::option::of(("[0-9]{1,6}", 0..5_usize)),
            sub_micro in prop::option::of((0..3_usize, 1..=9_u32)),
            offset in prop::option::of((any::<bool>(), 0..24_u32, 0..60_u32)),
            (lower_t, lower_z) in (any::<bool>(), any::<bool>()),
        ) {
            let t = if lower_t { 't' } else { 'T' };
            let mut text =
                format!("{year:04}-{month:02}-{day:02}{t}{hour:02}:{minute:02}:{second:02}");
            if let Some((digits, zeros)) = &fraction {
                text.push('.');
                text.push_str(digits);
                match sub_micro {
                    // Pad to the microsecond, then a nonzero digit no further
                    // out than the nanosecond (chrono ignores deeper digits).
                    Some((pad, digit)) => {
                        text.extend(std::iter::repeat('0').take(6 - digits.len() + pad));
                        text.push(char::from_digit(digit, 10).expect("digit"));
                    }
                    None => text.extend(std::iter::repeat('0').take(*zeros)),
                }
            }
            match offset {
                None => text.push(if lower_z { 'z' } else { 'Z' }),
                Some((negative, hours, minutes)) => {
                    let sign = if negative { '-' } else { '+' };
                    text.push_str(&format!("{sign}{hours:02}:{minutes:02}"));
                }
            }
            let ours = Timestamp::parse_rfc3339(&text);
            prop_assert!(ours.is_ok(), "{} rejected: {:?}", text, ours);
            // Every generated text is valid RFC 3339: chrono must accept it too.
            prop_assert_eq!(ours.ok(), chrono_reading(&text), "{}", text);
            if fraction.is_some() && sub_micro.is_some() {
                prop_assert_eq!(ours, Ok(ParsedInstant::Inexact), "{}", text);
            }
        }
    }
}
