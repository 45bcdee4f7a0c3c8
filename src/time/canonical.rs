//! The crate's own RFC 3339 form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`: written by
//! [`Timestamp::to_rfc3339`] and read back by the fast path of [`Timestamp::parse_rfc3339`].
//!
//! Every heartbeat returns a token and the next one echoes it, so both directions run once
//! per request. Reading checks and decodes the 27 bytes as four overlapping little-endian
//! words, eight bytes at a time (SWAR), instead of byte by byte; writing looks each
//! two-digit field up in a table instead of dividing digit by digit.

use std::num::NonZeroU64;

use super::{civil_from_days_since_0000, Timestamp, MICROS_PER_DAY, MICROS_PER_SECOND};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = ONES * 0x80;

/// One word of the canonical form: `pattern` is what the text must hold, with `0` standing
/// for any digit.
struct Word {
    /// The pattern as a little-endian word.
    pattern: u64,
    /// Added to `text ^ pattern`, sets a byte's high bit exactly when that byte is wrong:
    /// above 9 where the pattern has a digit (`'0'..='9'` XOR `'0'` is `0..=9`), nonzero
    /// where it has a separator.
    limits: u64,
}

impl Word {
    const fn new(pattern: &[u8; 8]) -> Self {
        let mut limits = [0; 8];
        let mut at = 0;
        while at < 8 {
            limits[at] = if pattern[at] == b'0' {
                0x80 - 10
            } else {
                0x80 - 1
            };
            at += 1;
        }
        Self {
            pattern: u64::from_le_bytes(*pattern),
            limits: u64::from_le_bytes(limits),
        }
    }
}

/// The words at byte offsets 0, 8, 16 and 19: together all 27 bytes (19..24 twice).
const WORDS: [(usize, Word); 4] = [
    (0, Word::new(b"0000-00-")),
    (8, Word::new(b"00T00:00")),
    (16, Word::new(b":00.0000")),
    (19, Word::new(b".000000Z")),
];

/// Days in each month of a common year, by month number; 0 for the numbers that are no
/// month, which a 4-bit index can reach.
const MONTH_DAYS: [u32; 16] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0, 0, 0];

/// Days from January 1 to the first of each month in a common year, by month number.
const DAYS_BEFORE_MONTH: [u32; 16] = [
    0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0,
];

/// The form [`Timestamp::to_rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), the one workers
/// echo back, checked and read in one pass. `None` hands the text to the general parser,
/// which also handles every other form and explains refusals.
#[inline]
pub(super) fn parse_canonical(bytes: &[u8]) -> Option<Timestamp> {
    let text: &[u8; 27] = bytes.try_into().ok()?;
    // Each byte of `digits[i]` is its digit's value (separators 0) once the check passes.
    let mut digits = [0; 4];
    let mut bad = 0;
    for (slot, (at, word)) in digits.iter_mut().zip(&WORDS) {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(&text[*at..*at + 8]);
        let x = u64::from_le_bytes(chunk) ^ word.pattern;
        // A byte at 0x80 or above is wrong whatever the pattern; below that, adding the
        // limit cannot carry into the next byte. (A wrong byte's carry may corrupt its
        // neighbour's verdict, but the word is refused all the same.)
        bad |= (x | x.wrapping_add(word.limits)) & HIGH;
        *slot = x;
    }
    if bad != 0 {
        return None;
    }
    // Byte `i` of `pairs(x)` is the two-digit number starting at byte `i` (at most 99, so
    // no byte carries), wherever the pair falls in the word.
    let pairs = |x: u64| x * 10 + (x >> 8);
    let pair = |x: u64, at: u32| (x >> (8 * at)) as u8 as u32;
    let [date, day_time, second, fraction] = digits.map(pairs);
    let (century, year_of_century, month) = (pair(date, 0), pair(date, 2), pair(date, 5));
    let (day, hour, minute) = (pair(day_time, 0), pair(day_time, 3), pair(day_time, 6));
    let second = pair(second, 1);
    let micro = (pair(fraction, 1) * 100 + pair(fraction, 3)) * 100 + pair(fraction, 5);

    let year = century * 100 + year_of_century;
    // Divisible by 4, and not by 100 unless by 400: the last two digits carry the first
    // two conditions, the century the third.
    let leap_digits = if year_of_century == 0 {
        century
    } else {
        year_of_century
    };
    let leap = u32::from(leap_digits % 4 == 0);
    let month_index = (month & 15) as usize;
    let month_days = MONTH_DAYS[month_index] + (leap & u32::from(month == 2));
    let valid = (month.wrapping_sub(1) < 12)
        & (day.wrapping_sub(1) < month_days)
        & (hour < 24)
        & (minute < 60)
        // 60 (a leap second) is valid RFC 3339 but inexact: the general parser says so.
        & (second < 60);
    if !valid {
        return None;
    }
    // Leap years in 0..year: multiples of 4, less those of 100, plus those of 400
    // (ceilings, as year 0000 itself is one).
    let centuries = century + u32::from(year_of_century != 0);
    let leap_years = year.div_ceil(4) - centuries + centuries.div_ceil(4);
    let days = year * 365
        + leap_years
        + DAYS_BEFORE_MONTH[month_index]
        + (leap & u32::from(month > 2))
        + day
        - 1;
    let seconds = hour * 3_600 + minute * 60 + second;
    // Microseconds since 0000-01-01T00:00:00Z, i.e. since Timestamp::MIN: the stored
    // distance minus one. Years 0000..=9999 in UTC are exactly Timestamp's range.
    let since_min = u64::from(days) * MICROS_PER_DAY.unsigned_abs()
        + u64::from(seconds) * MICROS_PER_SECOND.unsigned_abs()
        + u64::from(micro);
    NonZeroU64::new(since_min + 1).map(Timestamp)
}

/// The canonical text of the instant `since_min` microseconds after [`Timestamp::MIN`].
#[inline]
pub(super) fn format_canonical(since_min: u64) -> [u8; 27] {
    const DAY: u64 = MICROS_PER_DAY.unsigned_abs();
    const SECOND: u64 = MICROS_PER_SECOND.unsigned_abs();
    // Lossless: fewer than 3_652_425 days, 86_400 seconds and 1_000_000 microseconds.
    let days = (since_min / DAY) as u32;
    let in_day = since_min % DAY;
    let (seconds, micro) = ((in_day / SECOND) as u32, (in_day % SECOND) as u32);
    let (year, month, day) = civil_from_days_since_0000(days);
    let (minutes, micro_low) = (seconds / 60, micro % 10_000);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    for (at, value) in [
        (0, year / 100),
        (2, year % 100),
        (5, month),
        (8, day),
        (11, minutes / 60),
        (14, minutes % 60),
        (17, seconds % 60),
        (20, micro / 10_000),
        (22, micro_low / 100),
        (24, micro_low % 100),
    ] {
        // Every value is below 100; the mask only spares a bounds check.
        text[at..at + 2].copy_from_slice(&TWO_DIGITS[value as usize & 127]);
    }
    text
}

/// The two ASCII digits of every number below 100, so that writing one is a single load
/// instead of a division; padded to 128 entries so that a mask, not a bounds check, keeps
/// the index in range.
const TWO_DIGITS: [[u8; 2]; 128] = {
    let mut pairs = [[b'0'; 2]; 128];
    let mut n = 0;
    while n < 100 {
        pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    pairs
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{parse_general, ParsedInstant};
    use proptest::prelude::*;

    /// What the fast path must return for `bytes`: the general parser's exact instant, but
    /// only for the form the crate writes (27 bytes, upper-case `T` and `Z`); anything else
    /// is handed on.
    fn expected(bytes: &[u8]) -> Option<Timestamp> {
        let canonical_shape = bytes.len() == 27 && bytes[10] == b'T' && bytes[26] == b'Z';
        match parse_general(bytes) {
            Ok(ParsedInstant::Exact(at)) if canonical_shape => Some(at),
            _ => None,
        }
    }

    fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(bytes);
        prop_assert_eq!(parse_canonical(bytes), expected(bytes), "{:?}", text);
        Ok(())
    }

    fn token(micros: i64) -> [u8; 27] {
        let text = Timestamp::from_unix_micros(micros).to_rfc3339();
        *text.as_bytes().first_chunk().expect("27 bytes")
    }

    const ALL: std::ops::RangeInclusive<i64> =
        Timestamp::MIN.unix_micros()..=Timestamp::MAX.unix_micros();

    /// Bytes a mutation most likely gets wrong: digits and their ASCII neighbours, every
    /// separator in either case, and bytes with the high bit set (which could carry between
    /// the bytes of a word).
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            b'/'..=b':',
            prop::sample::select(b"-.:TtZz \x00\x7f\x80\xb0\xb9\xff".to_vec()),
            any::<u8>(),
        ]
    }

    #[test]
    fn every_single_byte_substitution_agrees() {
        for text in [
            *b"2026-07-01T08:15:06.120394Z",
            *b"0000-01-01T00:00:00.000000Z",
            *b"9999-12-31T23:59:59.999999Z",
            *b"2000-02-29T23:59:59.999999Z",
            *b"2100-02-28T00:00:00.000000Z",
            *b"1999-11-30T19:49:50.909090Z",
        ] {
            assert_eq!(parse_canonical(&text), expected(&text));
            assert!(parse_canonical(&text).is_some());
            for at in 0..27 {
                for byte in 0..=u8::MAX {
                    let mut mutated = text;
                    mutated[at] = byte;
                    let text = String::from_utf8_lossy(&mutated);
                    assert_eq!(parse_canonical(&mutated), expected(&mutated), "{text:?}");
                }
            }
        }
    }

    /// Every year with the month and day values around each limit: month and day ranges,
    /// month lengths and leap years, as the general parser sees them.
    #[test]
    fn every_year_month_and_day_limit_agrees() {
        let mut text = *b"0000-00-00T12:34:56.789012Z";
        for year in 0..=9999_u32 {
            for month in 0..=13 {
                for day in [0, 1, 27, 28, 29, 30, 31, 32, 99] {
                    let digits = [year / 100, year % 100, month, day];
                    for (at, value) in [0, 2, 5, 8].into_iter().zip(digits) {
                        text[at] = b'0' + (value / 10) as u8;
                        text[at + 1] = b'0' + (value % 10) as u8;
                    }
                    let shown = String::from_utf8_lossy(&text);
                    assert_eq!(parse_canonical(&text), expected(&text), "{shown}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn mutated_tokens_agree(
            micros in ALL,
            edits in prop::collection::vec((0..27_usize, interesting_byte()), 1..4),
        ) {
            let mut text = token(micros);
            check(&text)?;
            for (at, byte) in edits {
                text[at] = byte;
            }
            check(&text)?;
        }

        /// Any digits in every digit position: every field over 00–99 (and the year over
        /// 0000–9999), with the separators right.
        #[test]
        fn all_digit_fields_agree(digits in prop::collection::vec(b'0'..=b'9', 27)) {
            let mut text = *b"0000-00-00T00:00:00.000000Z";
            for (at, digit) in digits.into_iter().enumerate() {
                if text[at] == b'0' {
                    text[at] = digit;
                }
            }
            check(&text)?;
        }

        /// Valid date-times written independently of the crate's formatter, a leap second
        /// included.
        #[test]
        fn written_date_times_agree(
            (year, month, day) in (0..=9999_u32, 1..=12_u32, 1..=31_u32),
            (hour, minute, second, micro) in (0..24_u32, 0..60_u32, 0..=60_u32, 0..1_000_000_u32),
        ) {
            let day = day.min(crate::time::days_in_month(year, month));
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micro:06}Z"
            );
            check(text.as_bytes())?;
            prop_assert_eq!(parse_canonical(text.as_bytes()).is_some(), second < 60);
        }

        #[test]
        fn arbitrary_bytes_agree(bytes in prop::collection::vec(any::<u8>(), 25..=29)) {
            check(&bytes)?;
        }
    }
}
