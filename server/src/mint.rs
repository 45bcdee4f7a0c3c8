//! Request ids, tokens and the inputs of minted ids: unique, and not guessable from one another.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

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
