//! The start of a caller-supplied text, kept inline: what errors and malformed ids quote of
//! what a caller sent, without allocating.

use std::fmt;

/// Capacity of an [`Excerpt`]: any well-formed id fits whole.
const EXCERPT_CAPACITY: usize = 72;

/// The start of a caller-supplied text, kept inline so that building an error never allocates.
///
/// Texts longer than 72 bytes are cut at a character boundary and shown with a trailing `…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Excerpt {
    len: u8,
    truncated: bool,
    buf: [u8; EXCERPT_CAPACITY],
}

impl Excerpt {
    /// Keeps the start of `text`.
    pub fn new(text: &str) -> Self {
        let mut len = text.len().min(EXCERPT_CAPACITY);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut buf = [0; EXCERPT_CAPACITY];
        buf[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self {
            // len <= EXCERPT_CAPACITY < 256.
            len: len as u8,
            truncated: len < text.len(),
            buf,
        }
    }

    /// An excerpt as [`Self::as_str`] and [`Self::is_truncated`] described it; `None` when
    /// the text is longer than an excerpt keeps.
    #[cfg(feature = "snapshot")]
    pub(crate) fn restored(text: &str, truncated: bool) -> Option<Self> {
        if text.len() > EXCERPT_CAPACITY {
            return None;
        }
        let mut excerpt = Self::new(text);
        excerpt.truncated = truncated;
        Some(excerpt)
    }

    /// Keeps the start of a value's `Display` text.
    pub fn of(value: &impl fmt::Display) -> Self {
        let mut writer = ExcerptWriter(Self::new(""));
        // The writer never fails; it drops what does not fit.
        let _ = fmt::write(&mut writer, format_args!("{value}"));
        writer.0
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)])
            .expect("invariant: an excerpt is cut at a char boundary")
    }

    /// Whether the original text was longer than what is kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

struct ExcerptWriter(Excerpt);

impl fmt::Write for ExcerptWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let excerpt = &mut self.0;
        let start = usize::from(excerpt.len);
        let room = EXCERPT_CAPACITY - start;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        excerpt.buf[start..start + take].copy_from_slice(&s.as_bytes()[..take]);
        excerpt.len += take as u8;
        excerpt.truncated |= take < s.len();
        Ok(())
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_long_text_at_a_char_boundary() {
        let long = "é".repeat(100);
        let excerpt = Excerpt::new(&long);
        assert!(excerpt.is_truncated());
        assert_eq!(excerpt.as_str(), "é".repeat(36));
        assert_eq!(Excerpt::new("abc").to_string(), "abc");
        assert_eq!(
            Excerpt::of(&format_args!("x{}", "é".repeat(40)))
                .as_str()
                .len(),
            71
        );
    }
}
