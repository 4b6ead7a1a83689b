//! The subcommands of the `understudy` binary and what they share: the error
//! type every subcommand returns, the I/O backend option, and the log
//! configuration the demo's logs are created with.
//!
//! Two families of subcommands live here. The log demo (`demo`,
//! `inspect-log`, the hidden `log-child`) works on a bare log. The cluster
//! commands (`cluster-init`, `coordinator`, `status`, `node`, `bank-check`)
//! run the engine itself: a cluster directory, a coordinator process, nodes,
//! and the bank workload whose invariants survive SIGKILL.

/// `println!` that fails with a [`CliError`] instead of panicking when stdout
/// is gone (`understudy demo | head`); for functions returning one.
macro_rules! say {
    () => {
        say!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(|e| $crate::cli::CliError::os("writing to stdout", e))?
    }};
}

pub mod bank;
pub mod bank_check;
pub mod check;
pub mod child;
pub mod cluster;
pub mod cluster_demo;
pub mod coordinator;
pub mod demo;
pub mod inspect;
pub mod node;
pub mod recover;
pub mod recovery_bench;
pub mod workload;

use wal::io::{BackendChoice, Io, IoError};
use wal::{LogConfig, Lsn, WalError};

/// The node id of the demo's logs. A log refuses to open under another id, so
/// the parent and the child it kills must agree on it.
pub const DEMO_NODE_ID: u32 = 1;

/// Segment size of newly created demo logs: small, so that even a short run
/// crosses several segment boundaries.
pub const DEFAULT_SEGMENT_SIZE: u64 = 256 * 1024;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
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

    /// Wraps an error a scan returned at `pos`, keeping errors that already
    /// name their LSN as they are.
    pub fn scan(pos: Lsn, e: WalError) -> CliError {
        match e {
            WalError::Corruption { .. } | WalError::NoRecord(_) => CliError::Wal(e),
            source => CliError::ScanAt { lsn: pos, source },
        }
    }
}

/// `--backend`: which I/O backend to use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendArg {
    /// io_uring when the kernel allows it, pread/pwrite otherwise; buffered
    /// writes the kernel would block on (ext4) run as pwrite/fdatasync.
    #[default]
    Auto,
    /// io_uring for every operation, or fail.
    Uring,
    /// pread/pwrite/fdatasync.
    Fallback,
}

impl BackendArg {
    pub fn open(self) -> Result<Io, CliError> {
        let choice = match self {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Uring => BackendChoice::Uring,
            BackendArg::Fallback => BackendChoice::Fallback,
        };
        Ok(Io::new(choice)?)
    }

    /// The spelling clap accepts, to pass the choice on to a child process.
    pub fn as_arg(self) -> &'static str {
        match self {
            BackendArg::Auto => "auto",
            BackendArg::Uring => "uring",
            BackendArg::Fallback => "fallback",
        }
    }
}

/// The configuration a demo log is opened with; `segment_size` only matters
/// when the log is created.
pub fn demo_log_config(io: Io, segment_size: u64) -> LogConfig {
    LogConfig {
        segment_size,
        ..LogConfig::new(DEMO_NODE_ID, io)
    }
}
