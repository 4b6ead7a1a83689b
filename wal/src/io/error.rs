//! The errors of the I/O layer: which operation failed ([`OpKind`]), on which
//! file and where ([`IoError`]), and which stage of staged work
//! ([`StageError`]).
//!
//! This file owns the error types only. It must never decide what a caller
//! does about a failure: in particular nothing here retries, and a failed
//! sync is reported once (the log poisons itself, see [`crate::Log`]).

use std::fmt;
use std::path::{Path, PathBuf};

/// Which operation an [`IoError`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Opening a file or directory, taking a lock, or setting up what moves
    /// bytes later (a ring, a thread).
    Open,
    /// Reading a file's bytes or metadata (its length).
    Read,
    /// Writing a file's bytes, or renaming or removing a file.
    Write,
    /// Making a file or directory durable (`fdatasync`).
    Sync,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Open => "open",
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Sync => "sync",
        })
    }
}

/// A failed I/O operation: which one, on which file, where, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} of {} failed{}: {source}", path.display(), offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
pub struct IoError {
    /// The operation that failed.
    pub op: OpKind,
    /// The file (or directory) it was on.
    pub path: PathBuf,
    /// The byte offset in the file it started at, for reads and writes.
    pub offset: Option<u64>,
    /// What the OS (or the fault injector) said.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// The failure of `op` on `path` at byte `offset`, with the OS error.
    pub fn new(op: OpKind, path: &Path, offset: Option<u64>, source: std::io::Error) -> Self {
        IoError {
            op,
            path: path.to_path_buf(),
            offset,
            source,
        }
    }

    /// The OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A failed [`Io::write_stages`]: which stage failed (every stage before it
/// is durable, nothing after it was issued) and why.
///
/// [`Io::write_stages`]: super::Io::write_stages
#[derive(Debug, thiserror::Error)]
#[error("stage {stage}: {error}")]
pub struct StageError {
    /// The index of the failed stage in the slice given.
    pub stage: usize,
    /// How it failed.
    #[source]
    pub error: IoError,
}

impl From<StageError> for IoError {
    fn from(e: StageError) -> IoError {
        e.error
    }
}
