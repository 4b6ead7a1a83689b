//! Audits: read-only transactions that read every balance at once while
//! transfers run, here or on other nodes. Under strict two-phase locking
//! each sees one moment of the bank, so every sum must be the starting
//! total; a node that served a page older than another node's last commit
//! of it (a stale cached copy) makes a sum that is not. The coherence test
//! of the buffer pools runs them beside the transfers.

use std::sync::atomic::{AtomicBool, Ordering};

use understudy::Node;

use crate::bank::schema::total_balance;
use crate::error::CliError;
use crate::threads::join_all;

/// Runs `threads` audit threads until `stop` is set, each summing every
/// balance of `accounts` in one read-only transaction again and again.
/// Returns how many audits were made; the first sum other than `expected`
/// stops every thread and is returned as an error (and sets `stop`, so the
/// transfers stop too).
pub fn run_audits(node: &Node, accounts: u32, expected: u64, threads: u16, stop: &AtomicBool) -> Result<u64, CliError> {
    let results: Vec<Result<u64, CliError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut audits = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let sum = match total_balance(node, accounts) {
                            Ok(sum) => sum,
                            // Retried as long as the policy allows and
                            // still refused (busy pages): no sum, no harm.
                            Err(CliError::Engine(e)) if e.is_retryable() => continue,
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        };
                        if sum != expected {
                            stop.store(true, Ordering::Relaxed);
                            return Err(CliError::Check(format!(
                                "an audit read a total balance of {sum}, not {expected}: one transaction saw the \
                                 bank at two moments (a stale page)"
                            )));
                        }
                        audits += 1;
                    }
                    Ok(audits)
                })
            })
            .collect();
        join_all(workers, || CliError::Invalid("an audit thread panicked".into()))
    });
    results.into_iter().sum()
}
