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
    /// An open, read, write or sync of the I/O layer failed: which, on which
    /// file, and the OS error.
    #[error(transparent)]
    Io(#[from] IoError),

    /// A write or sync failed earlier; the log refuses all further work,
    /// because a failed fsync may have dropped data that cannot be known.
    #[error("the log failed earlier and accepts no more records: {cause}")]
    Poisoned {
        /// The failure that poisoned the log, shared by every refusal.
        cause: Arc<IoError>,
    },

    /// The log was closed.
    #[error("the log is closed")]
    Closed,

    /// The opener has no right to write this log (see [`crate::access`]):
    /// no proof, a proof the key does not check, a proof for another
    /// node or role, or for an incarnation older than the log's last owner.
    #[error("log directory {} refuses this writer: {reason}", dir.display())]
    AccessDenied {
        /// The log directory.
        dir: PathBuf,
        /// Why, in words.
        reason: String,
    },

    /// Another writer holds the log directory.
    #[error("log directory {} is locked by another writer", dir.display())]
    Locked {
        /// The log directory whose `LOCK` file is held.
        dir: PathBuf,
    },

    /// Bytes at `lsn` are damaged and valid records follow them, so this is
    /// not a torn tail.
    #[error("log corrupt at LSN {lsn}: {kind}")]
    Corruption {
        /// Where the damaged bytes start.
        lsn: Lsn,
        /// What is wrong with them.
        kind: CorruptionKind,
    },

    /// A segment file's header is unreadable or belongs elsewhere.
    #[error("segment file {} is not a valid segment: {reason}", path.display())]
    BadSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong with its header.
        reason: String,
    },

    /// The directory holds no log, and the caller required one
    /// ([`crate::LogConfig::create`] off).
    #[error("no log in {}: the log of a node that wrote must exist to recover it", dir.display())]
    NoLog {
        /// The log directory.
        dir: PathBuf,
    },

    /// The control file is unreadable (both slots damaged).
    #[error("control file {} is damaged: {reason}", path.display())]
    BadControl {
        /// The control file (which may be missing).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The directory holds another node's log.
    #[error("log belongs to node {found}, not node {expected}")]
    WrongNode {
        /// The node id the caller opened the log as.
        expected: u32,
        /// The node id the log's control file records.
        found: u32,
    },

    /// A record too large to append: its payload is over
    /// [`crate::record::MAX_PAYLOAD`], or the whole record over the largest a
    /// segment takes ([`crate::segment::Layout::max_record`]).
    #[error("record payload of {payload} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// The payload's bytes, or the whole record's (padding included)
        /// when the segment is what it does not fit.
        payload: usize,
        /// The limit it exceeds, in the same unit.
        max: usize,
    },

    /// A body that the record's agent cannot undo: a page before-image
    /// ([`crate::RecordBody::Undo`]) for an agent other than the page
    /// agent, or opaque agent bytes for the page agent.
    #[error("agent {agent} cannot carry a {kind:?} record of that shape")]
    AgentMismatch {
        /// The agent the record's meta names.
        agent: AgentId,
        /// The kind of record the body is.
        kind: Kind,
    },

    /// An argument that cannot be right (an LSN never appended, a bad config).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No record starts at this LSN.
    #[error("no record at LSN {0}")]
    NoRecord(Lsn),
}

/// The result of a log operation: [`WalError`] unless said otherwise.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
