//! A backup file (`GET /cluster/snapshot`) and `worklease-server restore`, which makes a data
//! directory from one (docs/clustering.md, "Backing up and restoring").
//!
//! The file is the table's canonical bytes (`LeaseTable::snapshot`, docs/contract.md §7.4) with
//! the log index they are as of, framed and checksummed:
//!
//! ```text
//! "WLBK" | version (u16 LE, 1) | index (u64 LE) | term (u64 LE)
//!        | table length (u64 LE) | table | SHA-256 of every byte before it (32 bytes)
//! ```

use std::path::Path;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

use crate::cli::RestoreArgs;
use crate::raft::{self, Backup};

const MAGIC: &[u8; 4] = b"WLBK";
const VERSION: u16 = 1;
const HEADER: usize = 4 + 2 + 8 + 8 + 8;
const DIGEST: usize = 32;

/// The backup file's bytes.
pub(crate) fn encode(backup: &Backup) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + backup.table.len() + DIGEST);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&backup.index.to_le_bytes());
    bytes.extend_from_slice(&backup.term.to_le_bytes());
    bytes.extend_from_slice(&(backup.table.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&backup.table);
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    bytes
}

/// Reads a backup file's bytes.
///
/// # Errors
///
/// Why they are no backup this build reads: another magic or version, a length that does not
/// add up, a checksum that does not match.
pub(crate) fn decode(bytes: &[u8]) -> Result<Backup, String> {
    if bytes.len() < HEADER + DIGEST || &bytes[..4] != MAGIC {
        return Err("not a worklease backup (bad magic or too short)".to_owned());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!(
            "backup version {version}; this build reads version {VERSION}"
        ));
    }
    let word = |at: usize| {
        u64::from_le_bytes(
            bytes[at..at + 8]
                .try_into()
                .expect("invariant: eight bytes"),
        )
    };
    let (index, term, length) = (word(6), word(14), word(22));
    let end = usize::try_from(length)
        .ok()
        .and_then(|length| HEADER.checked_add(length))
        .filter(|end| end.checked_add(DIGEST) == Some(bytes.len()))
        .ok_or_else(|| format!("truncated or padded: {} bytes", bytes.len()))?;
    if Sha256::digest(&bytes[..end]).as_slice() != &bytes[end..] {
        return Err("checksum mismatch: the file is damaged".to_owned());
    }
    Ok(Backup {
        index,
        term,
        table: bytes[HEADER..end].to_vec(),
    })
}

/// `worklease-server restore --from FILE --data-dir DIR`.
pub(crate) fn restore(args: &RestoreArgs) -> ExitCode {
    match restore_file(&args.from, &args.data_dir) {
        Ok(index) => {
            println!(
                "restored the table as of index {index} into {}; start it as a one-member \
                 cluster (`--data-dir {} --node-id 1 --peers 1=HOST:PORT`, or in durable \
                 mode), then add members with POST /cluster/members",
                args.data_dir.display(),
                args.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("worklease-server restore: {message}");
            ExitCode::FAILURE
        }
    }
}

fn restore_file(from: &Path, dir: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let backup = decode(&bytes).map_err(|e| format!("{}: {e}", from.display()))?;
    raft::restore_into(dir, &backup.table)?;
    Ok(backup.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_reads_back_and_any_damage_is_refused() {
        let backup = Backup {
            index: 42,
            term: 3,
            table: b"the table's bytes".to_vec(),
        };
        let bytes = encode(&backup);
        let read = decode(&bytes).expect("reads back");
        assert_eq!((read.index, read.term, read.table), (42, 3, backup.table));
        for at in [0, 5, 7, 15, 23, HEADER + 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(decode(&damaged).is_err(), "a flipped byte at {at} was read");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
