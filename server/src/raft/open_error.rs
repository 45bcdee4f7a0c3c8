//! Why a data directory could not be opened: always the file or directory at fault, and what
//! went wrong with it, as a type (`worklease-server` prints it and exits non-zero).

use std::io;
use std::path::{Path, PathBuf};

/// A data directory, log segment, snapshot or lock file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub(crate) struct OpenError {
    /// The file or directory at fault.
    pub(crate) path: PathBuf,
    /// What went wrong with it.
    #[source]
    pub(crate) cause: Cause,
}

/// What went wrong with an [`OpenError`]'s path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cause {
    /// It could not be read, created or written.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// It holds what this build cannot use: damaged, foreign, of another format, or not
    /// consistent with the files beside it.
    #[error("{0}")]
    Refused(String),
    /// Another server holds the data directory (the path).
    #[error(
        "another worklease-server{} is using this data directory; one directory serves one \
         server at a time (lock file {})",
        holder.map_or_else(String::new, |pid| format!(" (process {pid})")),
        lock_file.display()
    )]
    Held {
        /// The holder's process id, when the lock file names one.
        holder: Option<u32>,
        lock_file: PathBuf,
    },
    /// Raft could not be started on the directory (the path).
    #[error("{0}")]
    Start(String),
}

impl From<String> for Cause {
    fn from(why: String) -> Self {
        Self::Refused(why)
    }
}

impl From<&str> for Cause {
    fn from(why: &str) -> Self {
        Self::Refused(why.to_owned())
    }
}

impl OpenError {
    /// `path` could not be used, because of `cause`.
    pub(crate) fn at(path: &Path, cause: impl Into<Cause>) -> Self {
        Self {
            path: path.to_owned(),
            cause: cause.into(),
        }
    }
}
