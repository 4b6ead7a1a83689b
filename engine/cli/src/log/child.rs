//! `understudy log-child`: the process the demo's crash rounds kill.
//!
//! It appends transactions from several threads and prints one line per
//! commit the log acknowledged as durable, `ACK <txn> <commit_lsn>`, flushed
//! at once, so the parent knows exactly which promises the log made before
//! the process died. Nothing else goes to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wal::{Log, TxnId};

use crate::backend::BackendArg;
use crate::error::CliError;
use crate::log::ack::format_ack;
use crate::log::config::{demo_log_config, parse_segment_size, DEFAULT_SEGMENT_SIZE};
use crate::log::workload::run_txn;
use crate::threads::join_all;

/// Longest pause before each page change, so that the kill finds
/// transactions in flight (see [`run_txn`]).
const THINK_TIME: std::time::Duration = std::time::Duration::from_millis(1);

/// Arguments of the hidden `log-child` subcommand.
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    /// The log directory (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Appending threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendArg,
    /// First transaction id to use; ids must not repeat within a log.
    #[arg(long)]
    pub txn_base: TxnId,
    /// Segment size if the log has to be created.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE, value_parser = parse_segment_size)]
    pub segment_size: u64,
    /// Stop on its own after this many seconds, so that a child whose parent
    /// died without killing it does not fill the disk.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_seconds: u64,
}

pub fn run(args: &ChildArgs) -> Result<(), CliError> {
    let io = args.backend.open()?;
    let log = Log::open(&args.dir, demo_log_config(io, args.segment_size))?;
    let next_txn = AtomicU64::new(args.txn_base);
    let stop = AtomicBool::new(false);
    // One lock around stdout so that each line is written whole.
    let out = Mutex::new(std::io::stdout());
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let results: Vec<Result<(), CliError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| s.spawn(|| appender(&log, &next_txn, &stop, &out, deadline)))
            .collect();
        join_all(workers, || CliError::Child("an appender thread panicked".into()))
    });
    results.into_iter().collect::<Result<(), CliError>>()?;
    log.close()?;
    Ok(())
}

/// Appends transactions until the deadline, an error in any thread, or a
/// closed stdout (the parent is gone).
fn appender(
    log: &Log,
    next_txn: &AtomicU64,
    stop: &AtomicBool,
    out: &Mutex<std::io::Stdout>,
    deadline: Instant,
) -> Result<(), CliError> {
    let mut rng = rand::rng();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let txn = next_txn.fetch_add(1, Ordering::Relaxed);
        let outcome =
            run_txn(log, txn, &mut rng, Some(THINK_TIME)).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(out, "{}", format_ack(txn, outcome.commit)).and_then(|()| out.flush()) {
            stop.store(true, Ordering::Relaxed);
            return Err(CliError::os("writing an acknowledgement to stdout", e));
        }
    }
    Ok(())
}
