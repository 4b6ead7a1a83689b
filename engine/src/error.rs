//! The engine's errors. Corruption (bytes on disk are wrong) is kept apart
//! from I/O failures and from conditions a caller handles by retrying the
//! transaction (`Retained`, `Deadlock`, `LockTimeout`, `Conflict`).

use std::path::PathBuf;

use lockmgr::{ClientError, ResourceId};

/// Errors of the engine's API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A page failed its checksum or does not belong where it was read.
    #[error("corrupt page {page} of {}: {detail}", file.display())]
    CorruptPage { file: PathBuf, page: u64, detail: String },

    /// A file other than a page (catalog, config) is malformed.
    #[error("corrupt {}: {detail}", file.display())]
    CorruptFile { file: PathBuf, detail: String },

    #[error(transparent)]
    Io(#[from] wal::io::IoError),

    /// The node's log failed or is corrupt.
    #[error("log: {0}")]
    Log(#[from] wal::WalError),

    /// The resource is held by a failed node whose recovery has not finished;
    /// retry the transaction later.
    #[error("{resource:?} is retained by failed node {node}; retry later")]
    Retained { node: u32, resource: ResourceId },

    /// This transaction was chosen as a deadlock victim; it was rolled back.
    #[error("deadlock: the transaction was chosen as the victim; retry it")]
    Deadlock,

    /// A lock could not be had within the wait limit.
    #[error("lock wait on {resource:?} timed out")]
    LockTimeout { resource: ResourceId },

    /// A lock requested without waiting is held in a conflicting mode.
    #[error("{resource:?} is locked in a conflicting mode")]
    Conflict { resource: ResourceId },

    /// The node's lease lapsed or its coordinator connection is gone: it
    /// must not write, and stops.
    #[error("the node lost its lease and stopped writing")]
    LeaseLost,

    /// Any other coordinator refusal or failure.
    #[error("coordinator: {0}")]
    Coordinator(ClientError),

    #[error("no table named {0:?}")]
    NoSuchTable(String),

    #[error("a table named {0:?} exists already")]
    TableExists(String),

    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge { len: usize, max: usize },

    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },

    /// The transaction changed as many pages as one commit can force; it
    /// is still open, and can be rolled back. (Rolling back to a savepoint
    /// frees no room: the pages it changed stay listed.)
    #[error("a transaction may change at most {max} pages")]
    TransactionTooLarge { max: usize },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A commit's page write or sync failed. The transaction is not
    /// committed; the node stopped and leaves itself to recovery.
    #[error("commit failed and the node stopped: {0}")]
    CommitFailed(String),

    /// The node stopped after an unrecoverable I/O failure.
    #[error("the node stopped after an earlier failure: {0}")]
    Stopped(String),
}

impl Error {
    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Retained { .. } | Error::Deadlock | Error::LockTimeout { .. } | Error::Conflict { .. }
        )
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::Retained { node, resource } => Error::Retained { node, resource },
            ClientError::Deadlock { .. } => Error::Deadlock,
            ClientError::Timeout { resource } => Error::LockTimeout { resource },
            ClientError::Conflict { resource } => Error::Conflict { resource },
            ClientError::LeaseLost | ClientError::Disconnected => Error::LeaseLost,
            other => Error::Coordinator(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
