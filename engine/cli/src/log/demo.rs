//! `understudy demo`: the write-ahead log at work, in two parts.
//!
//! 1. In-process: several threads commit transactions through one log and
//!    share its fdatasyncs (group commit); the demo prints the throughput and
//!    reads the log back.
//! 2. Crash rounds: the binary runs itself as `understudy log-child`, which
//!    appends and acknowledges durable commits on stdout; the demo kills it
//!    with SIGKILL at a random moment, reopens the log (cutting any torn
//!    tail), and checks that every acknowledged commit survived and that the
//!    log is a clean prefix. Later rounds append after the previous crash.
//!
//! The demo owns its work directory: a temporary one removed at the end
//! (kept when a check fails, for inspection), or `--dir`, which is kept.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use rand::Rng;
use wal::io::Io;
use wal::{Log, LogEnd, LogReader, Lsn, TxnId};

use crate::backend::BackendArg;
use crate::error::CliError;
use crate::log::ack::parse_ack;
use crate::log::config::{demo_log_config, parse_segment_size, DEFAULT_SEGMENT_SIZE};
use crate::log::survey::{survey, Survey};
use crate::log::workload::run_txn;
use crate::threads::join_all;

/// Transactions one in-process thread runs at most, whatever the duration.
const MAX_TXNS_PER_THREAD: u64 = 1_000_000;
/// How long to wait for the child's first acknowledgement: it has to start,
/// open the log and complete a first sync, possibly on a loaded machine.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The child is killed a random number of milliseconds in this range after
/// its first acknowledgement.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 20..=200;

/// Arguments of `understudy demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Appending threads, both in-process and in each killed child.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Crash rounds: child processes killed with SIGKILL, one after the other,
    /// all appending to the same log.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendArg,
    /// Work in this directory (created if missing, kept at the end) instead
    /// of a temporary one. Logs left there by an earlier run are reused.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How long the in-process part appends, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub duration_ms: u64,
    /// Segment size in bytes of logs the demo creates: a multiple of 4096,
    /// at least 64 KiB. Small segments make the log cross segment boundaries.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE, value_parser = parse_segment_size)]
    pub segment_size: u64,
}

pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    let io = args.backend.open()?;
    say!("understudy log demo");
    say!("I/O backend: {}", io.kind());
    let (tmp, root) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::os(format!("creating {}", dir.display()), e))?;
            (None, dir.clone())
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("understudy-demo-")
                .tempdir()
                .map_err(|e| CliError::os("creating a temporary directory", e))?;
            let path = tmp.path().to_path_buf();
            (Some(tmp), path)
        }
    };
    let fate = if tmp.is_some() {
        "temporary, removed at the end"
    } else {
        "kept"
    };
    say!("work directory: {} ({fate})", root.display());

    let result = in_process(args, &io, &root.join("inproc")).and_then(|()| crash_rounds(args, &root.join("crash")));
    match (result, tmp) {
        (Ok(()), Some(tmp)) => tmp
            .close()
            .map_err(|e| CliError::os(format!("removing {}", root.display()), e)),
        (Err(e), Some(tmp)) if e.concerns_the_log() => {
            // The logs are the evidence of what went wrong: keep them.
            let kept = tmp.keep();
            eprintln!("the logs are kept for inspection in {}", kept.display());
            Err(e)
        }
        // Otherwise a temporary directory is removed as it drops.
        (result, _) => result,
    }
}

/// What one in-process thread did.
#[derive(Default)]
struct ThreadStats {
    acks: Vec<(TxnId, Lsn)>,
    latencies: Vec<Duration>,
    records: u64,
    bytes: u64,
}

fn in_process(args: &DemoArgs, io: &Io, dir: &Path) -> Result<(), CliError> {
    let duration = Duration::from_millis(args.duration_ms);
    say!();
    say!(
        "== part 1: group commit in one process: {} threads for {} ms ==",
        args.threads,
        args.duration_ms
    );
    let log = Log::open(dir, demo_log_config(io.clone(), args.segment_size))?;
    // A kept directory may already hold transactions; never reuse their ids.
    let before = survey(&log.reader()?)?;
    let next_txn = AtomicU64::new(before.max_txn() + 1);
    let started = Instant::now();
    let deadline = started + duration;
    let results: Vec<Result<ThreadStats, CliError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                s.spawn(|| {
                    let mut rng = rand::rng();
                    let mut stats = ThreadStats::default();
                    for _ in 0..MAX_TXNS_PER_THREAD {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let txn = next_txn.fetch_add(1, Ordering::Relaxed);
                        let t0 = Instant::now();
                        let outcome = run_txn(&log, txn, &mut rng, None)?;
                        stats.latencies.push(t0.elapsed());
                        stats.acks.push((txn, outcome.commit));
                        stats.records += outcome.records;
                        stats.bytes += outcome.bytes;
                    }
                    Ok(stats)
                })
            })
            .collect();
        join_all(workers, || CliError::Child("an appender thread panicked".into()))
    });
    let elapsed = started.elapsed();
    let mut total = ThreadStats::default();
    for r in results {
        let s = r?;
        total.acks.extend(s.acks);
        total.latencies.extend(s.latencies);
        total.records += s.records;
        total.bytes += s.bytes;
    }
    let durable = log.durable_lsn();
    log.close()?;

    let secs = elapsed.as_secs_f64().max(1e-9);
    let txns = total.acks.len();
    say!(
        "committed {txns} transactions ({} records, {:.2} MiB) in {:.2} s: {:.0} commits/s, {:.0} records/s, {:.2} MiB/s",
        total.records,
        mib(total.bytes),
        secs,
        txns as f64 / secs,
        total.records as f64 / secs,
        mib(total.bytes) / secs
    );
    total.latencies.sort_unstable();
    if let (Some(p50), Some(p99)) = (percentile(&total.latencies, 50), percentile(&total.latencies, 99)) {
        say!(
            "transaction latency (begin to durable commit): p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    say!("durable LSN: {durable}");

    let reader = LogReader::open(dir, io.clone())?;
    let after = survey(&reader)?;
    after.check_acks(&total.acks)?;
    after.check_chains(&reader)?;
    say!(
        "read back: {} records in {}, {} committed transactions, log ends at LSN {}",
        after.records,
        count(after.segments, "segment"),
        after.committed(),
        after.end.next
    );
    say!("check passed: all {txns} commits at their LSNs, every chain intact");
    Ok(())
}

fn crash_rounds(args: &DemoArgs, dir: &Path) -> Result<(), CliError> {
    say!();
    say!(
        "== part 2: crashes: a child process appends from {} threads and is killed with SIGKILL, {} ==",
        args.threads,
        count(args.rounds, "round")
    );
    let io = args.backend.open()?;
    // Opening first creates the log, or checks one an earlier run left, and
    // tells the first transaction id nobody used.
    let initial = reopen(dir, &io, args.segment_size)?;
    say!(
        "log before round 1: {} records, {} committed transactions, ends at LSN {}",
        initial.records,
        initial.committed(),
        initial.end.next
    );
    let mut base = initial.max_txn() + 1;
    let mut all_acks: Vec<(TxnId, Lsn)> = Vec::new();
    let mut rng = rand::rng();
    for round in 1..=args.rounds {
        say!("round {round}/{}:", args.rounds);
        let killed = crash_round(args, dir, base, &mut rng)?;
        match killed.first_ack_after {
            Some(t) => say!(
                "  child pid {} started; first ack after {} ms; killed with SIGKILL {} ms later",
                killed.pid,
                t.as_millis(),
                killed.kill_delay.as_millis()
            ),
            None => say!(
                "  child pid {} sent no ack within {} s; killed with SIGKILL",
                killed.pid,
                FIRST_ACK_TIMEOUT.as_secs()
            ),
        }
        match (
            killed.acks.iter().map(|a| a.0).min(),
            killed.acks.iter().map(|a| a.0).max(),
        ) {
            (Some(lo), Some(hi)) => say!(
                "  the child acknowledged {} durable commits (txns between {lo} and {hi}) before it died",
                killed.acks.len()
            ),
            _ => say!("  the child acknowledged no commit before it died"),
        }
        all_acks.extend_from_slice(&killed.acks);

        let s = reopen(dir, &io, args.segment_size)?;
        let this_round = s.committed_from(base);
        say!(
            "  survived: {} records in {}; {} committed transactions ({} from this round: {} acknowledged, \
             {} durable but never acknowledged); {} left in flight by the kills so far",
            s.records,
            count(s.segments, "segment"),
            s.committed(),
            this_round,
            killed.acks.len(),
            this_round.saturating_sub(killed.acks.len()),
            s.in_flight()
        );
        say!("  tail: {}", describe_end(&s.end));
        s.check_acks(&all_acks)?;
        say!(
            "  check passed: all {} acknowledged commits of rounds 1..={round} at their LSNs; clean prefix; \
             every chain intact",
            all_acks.len()
        );
        base = s.max_txn().max(base) + 1;
    }
    say!();
    say!(
        "all checks passed: {} acknowledged commits survived {}",
        all_acks.len(),
        count(args.rounds, "kill")
    );
    Ok(())
}

/// What one crash round did.
struct Killed {
    pid: u32,
    first_ack_after: Option<Duration>,
    kill_delay: Duration,
    acks: Vec<(TxnId, Lsn)>,
}

fn crash_round(args: &DemoArgs, dir: &Path, base: TxnId, rng: &mut impl Rng) -> Result<Killed, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::os("finding this program's path", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("log-child")
        .arg("--dir")
        .arg(dir)
        .args(["--threads", &args.threads.to_string()])
        .args(["--backend", args.backend.as_arg()])
        .args(["--txn-base", &base.to_string()])
        .args(["--segment-size", &args.segment_size.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Killed and reaped on every path out, an error or a panic included.
    let mut child = ChildGuard::spawn(&mut cmd).map_err(|e| CliError::os("starting the child process", e))?;
    let pid = child.id().unwrap_or_default();
    let pipes = (child.take_stdout(), child.child_mut().and_then(|c| c.stderr.take()));
    let (Some(stdout), Some(stderr)) = pipes else {
        return Err(CliError::Child("started without the pipes it was given".into()));
    };

    let (tx, rx) = mpsc::channel();
    let ack_reader = std::thread::spawn(move || read_acks(stdout, tx));
    let err_reader = harness::read_all(stderr);

    let started = Instant::now();
    let mut acks = Vec::new();
    let first_ack_after = match rx.recv_timeout(FIRST_ACK_TIMEOUT) {
        Ok(ack) => {
            acks.push(ack);
            Some(started.elapsed())
        }
        // Disconnected: the child died on its own; the exit status says why.
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
    };
    let kill_delay = Duration::from_millis(rng.random_range(KILL_AFTER_MS));
    if first_ack_after.is_some() {
        std::thread::sleep(kill_delay);
    }
    // SIGKILL: no handler runs, nothing is flushed, exactly like a crash.
    let status = child.kill().map_err(|e| CliError::os("killing the child process", e))?;
    // The child is dead, so its pipes are closed and both readers finish.
    let read = ack_reader
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the reader thread panicked")));
    let child_stderr = err_reader.join().unwrap_or_default();
    if status.signal() != Some(libc::SIGKILL) {
        return Err(CliError::Child(format!(
            "pid {pid} ended by itself ({status}) before it was killed; its stderr: {}",
            child_stderr.trim()
        )));
    }
    read.map_err(|e| CliError::os("reading the child's acknowledgements", e))?;
    acks.extend(rx.try_iter());
    Ok(Killed {
        pid,
        first_ack_after,
        kill_delay: if first_ack_after.is_some() {
            kill_delay
        } else {
            Duration::ZERO
        },
        acks,
    })
}

/// Forwards every complete `ACK` line of the child's stdout until it closes.
fn read_acks(stdout: ChildStdout, tx: Sender<(TxnId, Lsn)>) -> std::io::Result<()> {
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    // Ends at end of file, which comes when the child dies.
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            // A line cut short by the kill was never a complete promise.
            return Ok(());
        }
        if let Some(ack) = parse_ack(&line) {
            if tx.send(ack).is_err() {
                return Ok(());
            }
        }
    }
}

/// Opens the log for writing, which cuts a torn tail, closes it, and reads
/// the whole log back with every check of [`survey`] and the chains.
fn reopen(dir: &Path, io: &Io, segment_size: u64) -> Result<Survey, CliError> {
    Log::open(dir, demo_log_config(io.clone(), segment_size))?.close()?;
    let reader = LogReader::open(dir, io.clone())?;
    let s = survey(&reader)?;
    s.check_chains(&reader)?;
    Ok(s)
}

fn describe_end(end: &LogEnd) -> String {
    match &end.torn {
        None => format!("clean, the next record goes at LSN {}", end.next),
        Some(damage) => format!("a torn record was cut off at LSN {} ({damage})", end.next),
    }
}

/// `1 segment`, `2 segments`.
fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `p`th percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last * p / 100).copied()
}
