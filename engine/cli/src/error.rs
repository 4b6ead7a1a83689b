//! The error every subcommand returns, and what the program prints of it.
//!
//! Engine, log and coordinator errors pass through unchanged, so their
//! typed variants (corruption naming a file and LSN, a refused lock naming
//! the failed node) reach the operator as they were; what is the program's
//! own — a check that failed, a child process that misbehaved, arguments
//! that make no sense together — has a variant here.

use wal::io::IoError;
use wal::{Lsn, WalError};

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error(transparent)]
    Wal(#[from] WalError),

    #[error("cannot set up the I/O backend: {0}")]
    Backend(#[from] IoError),

    /// A scan stopped on an error that does not name its own LSN.
    #[error("reading the log stopped at LSN {lsn}: {source}")]
    ScanAt {
        lsn: Lsn,
        #[source]
        source: WalError,
    },

    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The log does not hold what it must (an acknowledged commit is
    /// missing, a chain is broken, ...).
    #[error("check failed: {0}")]
    Check(String),

    /// The child process of the crash demo misbehaved.
    #[error("child process: {0}")]
    Child(String),

    /// A SQL statement (`understudy sql`) failed.
    #[error("sql: {0}")]
    Sql(String),

    /// The engine refused or failed (a node, a transaction, the cluster
    /// directory).
    #[error(transparent)]
    Engine(#[from] understudy::Error),

    /// The coordinator could not start.
    #[error("coordinator: {0}")]
    Coordinator(#[from] lockmgr::CoordinatorError),

    /// A request to a running coordinator failed.
    #[error(transparent)]
    Client(#[from] lockmgr::ClientError),

    /// Replication refused or failed.
    #[error(transparent)]
    Replication(#[from] replication::ReplicationError),

    /// Arguments that parse but make no sense together, or an input file
    /// that is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

impl CliError {
    pub fn os(context: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Os {
            context: context.into(),
            source,
        }
    }

    /// Whether the error says something about a log's contents or about
    /// the process writing it, so that the log is worth keeping to look at.
    pub fn concerns_the_log(&self) -> bool {
        matches!(
            self,
            CliError::Wal(_) | CliError::ScanAt { .. } | CliError::Check(_) | CliError::Child(_)
        )
    }

    /// What an operator can do about the error, when the error itself does
    /// not say: printed after it, on the same line.
    pub fn next_step(&self) -> Option<&'static str> {
        match self {
            CliError::Engine(understudy::Error::NoCoordinator { .. })
            | CliError::Client(lockmgr::ClientError::Connect { .. }) => {
                Some("start it with `understudy coordinator --cluster DIR`, or run one node with --embed-coordinator")
            }
            CliError::Engine(understudy::Error::UnknownNode { .. }) => {
                Some("use one of the ids in cluster.conf (`understudy status` lists them)")
            }
            CliError::Coordinator(lockmgr::CoordinatorError::Election(lockmgr::ElectionError::Held { .. })) => {
                Some("run this one with --standby to take over when the active coordinator dies")
            }
            _ => None,
        }
    }

    /// Wraps an error a scan returned at `pos`, keeping errors that already
    /// name their LSN as they are.
    pub fn scan(pos: Lsn, e: WalError) -> CliError {
        match e {
            WalError::Corruption { .. } | WalError::NoRecord(_) => CliError::Wal(e),
            source => CliError::ScanAt { lsn: pos, source },
        }
    }
}

impl understudy::Retryable for CliError {
    /// An engine error that a retry of the whole transaction may cure.
    fn is_retryable(&self) -> bool {
        matches!(self, CliError::Engine(e) if e.is_retryable())
    }
}
