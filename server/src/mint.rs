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
        let n = self.sequence();
        format!("{:016x}{:016x}", self.entropy(n, 0), self.entropy(n, 1))
    }
}
