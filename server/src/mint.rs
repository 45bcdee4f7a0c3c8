//! Request ids, tokens and the inputs of minted ids: unique, and not guessable from one another.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use worklease::Timestamp;

/// A counter mixed with per-process random keys (std's `RandomState`).
#[derive(Debug)]
pub(crate) struct Mint {
    counter: AtomicU64,
    keys: [RandomState; 2],
}

impl Mint {
    pub(crate) fn new() -> Self {
        Self {
            counter: AtomicU64::new(0),
            keys: [RandomState::new(), RandomState::new()],
        }
    }

    /// The next value of the counter.
    pub(crate) fn sequence(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// 64 bits that depend on `seed` and the process's random keys.
    pub(crate) fn entropy(&self, seed: u64, key: usize) -> u64 {
        let mut hasher = self.keys[key % 2].build_hasher();
        hasher.write_u64(seed);
        hasher.finish()
    }

    /// 32 hex digits no other call of this process returns.
    pub(crate) fn hex128(&self) -> String {
        let mut digits = [0u8; 32];
        self.hex128_into(&mut digits);
        digits.iter().map(|&b| char::from(b)).collect()
    }

    /// 128 bits no other call of this process returns.
    pub(crate) fn value128(&self) -> u128 {
        let n = self.sequence();
        (u128::from(self.entropy(n, 0)) << 64) | u128::from(self.entropy(n, 1))
    }

    /// Writes 32 hex digits no other call of this process returns into `out` (its first 32
    /// bytes), without allocating.
    pub(crate) fn hex128_into(&self, out: &mut [u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let value = self.value128();
        for (i, digit) in out[..32].iter_mut().enumerate() {
            *digit = HEX[((value >> (124 - 4 * i)) & 0xf) as usize];
        }
    }
}

/// The inputs of the ids minted into commands (new environments and work items): a time that
/// never goes back, a sequence that breaks ties, and entropy.
#[derive(Debug)]
pub(crate) struct CommandIds {
    /// The latest instant an id was minted at (Unix µs), so ids keep sorting in creation order
    /// even if the wall clock steps back.
    minted_at: AtomicI64,
    mint: Mint,
}

impl CommandIds {
    /// Ids that sort after every id minted up to `after` (the table's clock, across restarts).
    pub(crate) fn after(after: Option<Timestamp>) -> Self {
        Self {
            minted_at: AtomicI64::new(after.map_or(i64::MIN, Timestamp::unix_micros)),
            mint: Mint::new(),
        }
    }

    /// A new id's time, sequence and entropy, for a command stamped `now`. Called where
    /// commands are ordered (under the table lock, or the proposal queue's), so ids sort in the
    /// order the table receives them.
    pub(crate) fn inputs(&self, now: Timestamp) -> (Timestamp, u64, u64) {
        let previous = self
            .minted_at
            .fetch_max(now.unix_micros(), Ordering::Relaxed);
        let at = Timestamp::from_unix_micros(previous.max(now.unix_micros()));
        let sequence = self.mint.sequence();
        (at, sequence, self.mint.entropy(sequence, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_32_lowercase_digits_and_differ() {
        let mint = Mint::new();
        let (a, b) = (mint.hex128(), mint.hex128());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
