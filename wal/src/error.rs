//! Errors of the log. Corruption (the bytes are wrong) is kept apart from I/O
//! failures (the device said no) and from misuse (the caller asked for
//! something impossible).

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::corruption::CorruptionKind;
use crate::io::IoError;
use crate::lsn::Lsn;
use crate::record::{AgentId, Kind};

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error(transparent)]
    Io(#[from] IoError),

    /// A write or sync failed earlier; the log refuses all further work,
    /// because a failed fsync may have dropped data that cannot be known.
    #[error("the log failed earlier and accepts no more records: {cause}")]
    Poisoned { cause: Arc<IoError> },

    /// The log was closed.
    #[error("the log is closed")]
    Closed,

    /// Another writer holds the log directory.
    #[error("log directory {} is locked by another writer", dir.display())]
    Locked { dir: PathBuf },

    /// Bytes at `lsn` are damaged and valid records follow them, so this is
    /// not a torn tail.
    #[error("log corrupt at LSN {lsn}: {kind}")]
    Corruption { lsn: Lsn, kind: CorruptionKind },

    /// A segment file's header is unreadable or belongs elsewhere.
    #[error("segment file {} is not a valid segment: {reason}", path.display())]
    BadSegment { path: PathBuf, reason: String },

    /// The control file is unreadable (both slots damaged).
    #[error("control file {} is damaged: {reason}", path.display())]
    BadControl { path: PathBuf, reason: String },

    /// The directory holds another node's log.
    #[error("log belongs to node {found}, not node {expected}")]
    WrongNode { expected: u32, found: u32 },

    #[error("record payload of {payload} bytes exceeds the limit of {max}")]
    RecordTooLarge { payload: usize, max: usize },

    #[error("agent {agent} cannot carry a {kind:?} record of that shape")]
    AgentMismatch { agent: AgentId, kind: Kind },

    /// An argument that cannot be right (an LSN never appended, a bad config).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No record starts at this LSN.
    #[error("no record at LSN {0}")]
    NoRecord(Lsn),
}

pub type Result<T, E = WalError> = std::result::Result<T, E>;
