//! One server per data directory: an advisory lock on a file in it, held for as long as the
//! node runs.
//!
//! Two servers writing one log would each acknowledge writes the other then overwrites, so a
//! second server on a held directory refuses to start. The lock is the kernel's (`flock` on
//! Unix, `LockFileEx` on Windows): it is released when the process dies, however it dies, so a
//! `kill -9` never leaves a stale lock behind. The file also holds the holder's process id,
//! which the refusal names; the file itself is left in place (its presence means nothing, only
//! the lock on it does).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::open_error::{Cause, OpenError};

/// The lock file's name in the data directory.
pub(crate) const LOCK_FILE: &str = "worklease.lock";

/// The lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) and writes this process's id into the lock
    /// file.
    ///
    /// # Errors
    ///
    /// [`Cause::Held`] at the directory (with the holder's process id, when the lock file holds
    /// one) when another process holds the lock; the lock file's error when it cannot be
    /// opened or written.
    pub(crate) fn take(dir: &Path) -> Result<Self, OpenError> {
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's pid must stay readable until the lock is ours.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| OpenError::at(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(OpenError::at(
                    dir,
                    Cause::Held {
                        holder,
                        lock_file: path,
                    },
                ));
            }
            Err(TryLockError::Error(error)) => return Err(OpenError::at(&path, error)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| OpenError::at(&path, e))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_until_released() {
        let dir = std::env::temp_dir().join(format!("worklease-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let held = DirLock::take(&dir).expect("the first takes it");
        // A second open file description conflicts, even in the same process.
        let refused = DirLock::take(&dir).expect_err("the second is refused");
        assert_eq!(refused.path, dir, "{refused}");
        assert!(
            matches!(refused.cause, Cause::Held { holder: Some(pid), .. } if pid == std::process::id()),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        drop(held);
        drop(DirLock::take(&dir).expect("free again once released"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
