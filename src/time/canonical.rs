//! The fast path of [`Timestamp::parse_rfc3339`]: the exact form the crate writes.

use super::{days_from_civil, days_in_month, Timestamp, MICROS_PER_SECOND};

/// The form [`Timestamp::to_rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), the one workers
/// echo back, checked and read in one pass. `None` hands the text to the general parser,
/// which also handles every other form and explains refusals.
pub(super) fn parse_canonical(bytes: &[u8]) -> Option<Timestamp> {
    const DIGITS: [usize; 20] = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25,
    ];
    let text: &[u8; 27] = bytes.try_into().ok()?;
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if text[26] != b'Z' || separators.iter().any(|&(at, byte)| text[at] != byte) {
        return None;
    }
    let mut digit = [0u32; 27];
    let mut invalid = false;
    for at in DIGITS {
        let value = text[at].wrapping_sub(b'0');
        invalid |= value > 9;
        digit[at] = u32::from(value);
    }
    if invalid {
        return None;
    }
    let pair = |at: usize| digit[at] * 10 + digit[at + 1];
    let (year, month, day) = (pair(0) * 100 + pair(2), pair(5), pair(8));
    let (hour, minute, second) = (pair(11), pair(14), pair(17));
    let micro = (pair(20) * 100 + pair(22)) * 100 + pair(24);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        // 60 (a leap second) is valid RFC 3339 but inexact: the general parser says so.
        && second < 60;
    if !valid {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
    // Years 0000..=9999 in UTC are exactly Timestamp's range.
    Some(Timestamp::in_range(
        seconds * MICROS_PER_SECOND + i64::from(micro),
    ))
}

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
