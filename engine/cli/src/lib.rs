//! The `understudy` program, as a library: every subcommand, the demos and
//! the recovery bench, and the pieces tests reuse (the bank workload and its
//! checks, the child-process harness of the cluster demo).
//!
//! Three families of subcommands:
//! - [`log`]: the write-ahead log alone — `log-demo`, the hidden
//!   `log-child` it kills, `inspect-log`, and the survey both use to check a
//!   log;
//! - [`bank`]: the bank workload whose invariants survive SIGKILL — its
//!   schema, acknowledgements, checks and transfer threads;
//! - [`cluster`]: the engine itself — `cluster-init`, `status`,
//!   `coordinator`, `node`, `recover`, `restart-light`, `request-restart`,
//!   `bank-check`, the cluster `demo` and its `--bench`.
//!
//! Besides them, [`sql`] runs SQL on an embedded database (`understudy sql`).
//!
//! The binary (`src/main.rs`) parses arguments and maps outcomes to exit
//! codes; everything it runs is here.

/// `println!` that fails with a [`CliError`] instead of panicking when stdout
/// is gone (`understudy demo | head`); for functions returning one.
macro_rules! say {
    () => {
        say!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(|e| $crate::error::CliError::os("writing to stdout", e))?
    }};
}

pub mod backend;
pub mod bank;
pub mod cluster;
pub mod error;
pub mod log;
pub mod replication;
pub mod sql;
pub mod threads;

pub use backend::BackendArg;
pub use error::CliError;
