//! `--backend`: the I/O backend an operator picks on the command line.

use wal::io::{BackendChoice, Io};

use crate::error::CliError;

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
    /// Sets up the chosen backend.
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
