//! The worker threads of the program's workloads (log appenders, transfer
//! threads): joined with a panic turned into an error, so one thread's
//! panic is reported like any other failure instead of taking the process
//! down before the others have stopped.

use std::thread::ScopedJoinHandle;

use crate::error::CliError;

/// Joins every thread of `workers`, in order, and returns their results; a
/// thread that panicked gives `panicked()` instead.
pub fn join_all<T>(
    workers: Vec<ScopedJoinHandle<'_, Result<T, CliError>>>,
    panicked: impl Fn() -> CliError,
) -> Vec<Result<T, CliError>> {
    workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|_| Err(panicked())))
        .collect()
}
