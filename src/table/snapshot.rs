//! [`LeaseTable::snapshot`] and [`LeaseTable::restore`] (docs/contract.md §7.4), and the two halves both
//! tables share: [`encode`] writes one or many shards as one canonical snapshot, [`decode`]
//! builds any number of shards from one. The format is [`crate::snapshot`]'s.
//!
//! Restore builds rather than replays: items arrive in id order per environment, so each
//! goes to the end of its environment's list, queues are built from sorted runs and leases
//! are scheduled once. Every check that keeps a restored table from breaking an invariant (or
//! panicking later) is made while reading; [`LeaseTable::validate`] runs last, as a backstop.

use foldhash::fast::RandomState;

use super::LeaseTable;
use crate::outcome::Config;
use crate::snapshot::SnapshotError;
use crate::time::Timestamp;

mod read;
mod write;

pub(crate) use read::decode;
pub(crate) use write::encode;

#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
impl LeaseTable {
    /// The table's whole state as canonical bytes (docs/contract.md §7.4): items, queues, leases,
    /// workers, metadata, pollers, the sweep journal, the clock and the configuration, every
    /// instant absolute.
    ///
    /// The bytes depend only on the changing operations applied (not on hash seeds, slot
    /// order, capacities or reads served): two tables fed the same [`crate::Stamped`]
    /// sequence, a [`LeaseTable`] or a [`crate::ConcurrentLeaseTable`] of any shard count,
    /// give the same bytes. The format (magic, version, CRC-32, canonical order) is described
    /// on the crate's front page, "Replay, snapshots and fencing".
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::new(Config::default());
    /// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
    /// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
    /// table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), t0)?;
    /// table.ack("env_01", "work_01", None, t0)?;
    ///
    /// let bytes = table.snapshot();
    /// let restored = LeaseTable::restore(&bytes)?;
    /// assert_eq!(restored.snapshot(), bytes);
    /// let later = Timestamp::from_unix_micros(1_782_893_730_000_000);
    /// assert_eq!(restored.get("env_01", "work_01", later)?, table.get("env_01", "work_01", later)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Vec<u8> {
        encode(&[self.core()], *self.config(), self.clock())
    }

    /// The table a [`Self::snapshot`] holds, hashing with a fresh seed. It answers every later
    /// operation exactly as the table snapshotted would have, at any later time: instants are
    /// absolute, so a lease past due when restored lapses at its own deadline.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Decode`] for bytes that are not a snapshot this build reads
    /// (truncated, changed, another magic, a newer version); [`SnapshotError::Invalid`] for
    /// one that describes no table the crate could have built. Never panics, whatever the
    /// bytes, and never returns a table that fails [`Self::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let bytes = LeaseTable::new(Config::default()).snapshot();
    /// assert!(LeaseTable::restore(&bytes)?.is_empty());
    /// let mut flipped = bytes.clone();
    /// flipped[8] ^= 0x10;
    /// assert_eq!(
    ///     LeaseTable::restore(&flipped).unwrap_err(),
    ///     SnapshotError::Decode(DecodeError::Checksum)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let restored = decode(bytes, RandomState::default(), 1)?;
        let mut cores = restored.cores;
        let core = cores
            .pop()
            .expect("invariant: decode builds the shard count asked for");
        Ok(Self::of_core(core, restored.clock))
    }
}

/// What [`decode`] built: the cores (one per shard), the clock and the configuration.
pub(crate) struct Restored {
    pub(crate) cores: Vec<crate::lease_core::LeaseCore>,
    pub(crate) clock: Option<Timestamp>,
    pub(crate) config: Config,
}

/// The shard of an item whose id hashes to `hash`, among `2^(64 - shift)`.
pub(crate) fn shard_of(hash: u64, shift: u32) -> usize {
    // A shift of 64 (one shard) would overflow: checked_shr gives shard 0.
    hash.checked_shr(shift).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests;
