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
