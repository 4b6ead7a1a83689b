//! A real process crash: a child process appends to a log from several
//! threads and is killed with SIGKILL at a random moment; every commit the
//! log acknowledged must be found again, and the log must read back as one
//! clean, correctly chained prefix.
//!
//! The child is this test binary itself, run with `--exact child_appender`
//! and the environment variable [`CHILD_DIR_VAR`]; without that variable the
//! `child_appender` test does nothing, so a plain `cargo test` only runs the
//! parent. Iterations reuse one log directory, so later children append
//! after the tail an earlier kill left behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::ChildGuard;
use rand::Rng;
use wal::io::{BackendChoice, Io};
use wal::record::encoded_len;
use wal::{Kind, Log, LogConfig, LogEnd, LogReader, Lsn, PageUndo, Record, RecordBody, RecordMeta, TxnId};

/// Set on the child only: the log directory it appends to.
const CHILD_DIR_VAR: &str = "WAL_KILL_CHILD_DIR";
/// Set on the child only: its first transaction id (ids never repeat in a log).
const CHILD_TXN_BASE_VAR: &str = "WAL_KILL_CHILD_TXN_BASE";
/// Set on the child only: `fallback` to force the pread/pwrite backend.
const CHILD_BACKEND_VAR: &str = "WAL_KILL_CHILD_BACKEND";

const NODE_ID: u32 = 3;
const CHILD_THREADS: usize = 3;
/// Small segments, so that every iteration crosses segment boundaries.
const SEGMENT_SIZE: u64 = 64 * 1024;
const ITERATIONS: usize = 8;
/// No new iteration starts after this much time; the test has no timing
/// assertion, this only bounds its duration on a slow machine.
const TIME_BUDGET: Duration = Duration::from_secs(60);
/// The child must show it is appending before the kill is timed; starting a
/// process and the first sync can be slow on a loaded machine.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// A child left running by a parent that died without killing it stops on
/// its own after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn config(io: Io) -> LogConfig {
    LogConfig {
        segment_size: SEGMENT_SIZE,
        ..LogConfig::new(NODE_ID, io)
    }
}

/// The child: appends transactions from [`CHILD_THREADS`] threads until it
/// is killed, printing `ACK <txn> <commit lsn>` once `wait_durable` returned
/// for the Commit. Does nothing when run as an ordinary test.
#[test]
fn child_appender() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let base: TxnId = std::env::var(CHILD_TXN_BASE_VAR)
        .expect("the parent sets the txn base")
        .parse()
        .expect("the txn base is a number");
    let choice = match std::env::var(CHILD_BACKEND_VAR).as_deref() {
        Ok("fallback") => BackendChoice::Fallback,
        _ => BackendChoice::Auto,
    };
    let io = Io::new(choice).expect("an I/O backend");
    let log = Log::open(Path::new(&dir), config(io)).expect("the child opens the log");
    let next_txn = AtomicU64::new(base);
    // One lock around stdout so that ack lines never interleave.
    let out = Mutex::new(std::io::stdout());
    let deadline = Instant::now() + CHILD_LIFETIME;
    std::thread::scope(|s| {
        for _ in 0..CHILD_THREADS {
            s.spawn(|| {
                let mut rng = rand::rng();
                while Instant::now() < deadline {
                    let txn = next_txn.fetch_add(1, Ordering::Relaxed);
                    let commit = match run_txn(&log, txn, &mut rng) {
                        Ok(lsn) => lsn,
                        Err(e) => {
                            // Exit so the parent sees a child that was not
                            // killed, with the reason on its stderr.
                            eprintln!("child: txn {txn} failed: {e}");
                            std::process::exit(3);
                        }
                    };
                    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                    if writeln!(out, "ACK {txn} {}", commit.0)
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        // The parent is gone; nobody is listening.
                        std::process::exit(4);
                    }
                }
            });
        }
    });
}

/// Begin, one to four page before-images, Commit; returns the Commit's LSN
/// once it is durable. A short pause before each page change stands for the
/// work a transaction does between changes; without it a transaction is
/// logged within microseconds and a kill almost never leaves one in flight.
fn run_txn(log: &Log, txn: TxnId, rng: &mut impl Rng) -> wal::Result<Lsn> {
    let mut prev = log.append(RecordMeta::txn(txn, None), &RecordBody::Begin)?;
    for _ in 0..rng.random_range(1..=4) {
        std::thread::sleep(Duration::from_micros(rng.random_range(0..=500)));
        let len = rng.random_range(8..=512usize);
        let mut before = vec![0u8; len];
        rng.fill(&mut before[..]);
        let body = RecordBody::Undo(PageUndo {
            file_id: rng.random_range(1..=3),
            page_no: rng.random_range(0..1000),
            offset_in_page: rng.random_range(0..4096),
            before,
            after: None,
        });
        prev = log.append(RecordMeta::txn(txn, Some(prev)), &body)?;
    }
    let commit = log.append(RecordMeta::txn(txn, Some(prev)), &RecordBody::Commit)?;
    log.wait_durable(commit)?;
    Ok(commit)
}

/// Forwards each complete ack line until the child's stdout closes. Other
/// lines (the test harness's own) are skipped; a line cut short by the kill
/// was never a complete acknowledgement.
fn read_acks(stdout: ChildStdout, tx: Sender<(TxnId, Lsn)>) {
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') => return,
            Ok(_) => {}
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("ACK") {
            continue;
        }
        let txn = words.next().and_then(|w| w.parse().ok());
        let lsn = words.next().and_then(|w| w.parse().ok());
        let (Some(txn), Some(lsn)) = (txn, lsn) else {
            panic!("malformed ack line {line:?}");
        };
        if tx.send((txn, Lsn(lsn))).is_err() {
            return;
        }
    }
}

/// One crash: runs a child on `dir`, kills it a random moment after its first
/// ack, and returns every ack it printed.
fn run_and_kill(dir: &Path, base: TxnId, fallback: bool, rng: &mut impl Rng) -> Vec<(TxnId, Lsn)> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_appender", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_TXN_BASE_VAR, base.to_string())
        .env(CHILD_BACKEND_VAR, if fallback { "fallback" } else { "auto" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Killed and reaped when dropped, so a failed assertion never leaves
    // the child running.
    let mut guard = ChildGuard::spawn(&mut cmd).expect("start the child");
    let stdout = guard.take_stdout().expect("piped stdout");
    let mut stderr = guard.child_mut().and_then(|c| c.stderr.take()).expect("piped stderr");

    let (tx, rx) = mpsc::channel();
    let ack_reader = std::thread::spawn(move || read_acks(stdout, tx));
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut acks = Vec::new();
    // A child that dies on its own disconnects the channel; its exit status
    // is checked below.
    if let Ok(first) = rx.recv_timeout(FIRST_ACK_TIMEOUT) {
        acks.push(first);
        std::thread::sleep(Duration::from_millis(rng.random_range(10..=150)));
    }
    // SIGKILL, then reaped.
    let status = guard.kill().expect("kill and reap the child");
    // The child is dead and its pipes closed: both readers finish.
    ack_reader.join().expect("the ack reader");
    let child_stderr = err_reader.join().unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child ended before it was killed ({status}); its stderr:\n{child_stderr}"
    );
    acks.extend(rx.try_iter());
    acks
}

/// Reopens the log the way a restarting node does (which cuts a torn tail),
/// closes it, reads it back, and checks every ack in `acked` (commit LSN →
/// txn) and the log's shape.
fn check_log(dir: &Path, acked: &BTreeMap<Lsn, TxnId>, iteration: usize) -> Survived {
    let io = Io::new(BackendChoice::Auto).expect("an I/O backend");
    Log::open(dir, config(io.clone()))
        .unwrap_or_else(|e| panic!("iteration {iteration}: reopening the log after the kill failed: {e}"))
        .close()
        .expect("close the reopened log");
    let reader = LogReader::open(dir, io).expect("open a reader");
    let layout = reader.layout();

    let mut records: Vec<Record> = Vec::new();
    let mut scan = reader.scan(reader.start_lsn());
    for rec in scan.by_ref() {
        records.push(rec.unwrap_or_else(|e| panic!("iteration {iteration}: the scan failed: {e}")));
    }
    let end: LogEnd = scan.end().cloned().expect("an exhausted scan has an end");

    // A prefix in LSN order: each record starts where the previous one
    // ended, or at the next segment's start after a segment-end filler; the
    // log ends the same way after the last record.
    let follows = |prev: &Record, lsn: Lsn| {
        let ended = Lsn(prev.lsn.0 + encoded_len(&prev.body));
        lsn == ended || lsn == layout.segment_start(layout.segment_of(prev.lsn) + 1)
    };
    assert_eq!(records.first().map(|r| r.lsn).unwrap_or(end.next), reader.start_lsn());
    for pair in records.windows(2) {
        assert!(
            follows(&pair[0], pair[1].lsn),
            "iteration {iteration}: record at {} does not follow the one at {}",
            pair[1].lsn,
            pair[0].lsn
        );
    }
    if let Some(last) = records.last() {
        assert!(
            follows(last, end.next),
            "iteration {iteration}: the log ends at {} after its last record at {}",
            end.next,
            last.lsn
        );
    }

    // Chains: a transaction's first record is a Begin with no predecessor,
    // each later one points at the record before it, none follows a Commit.
    let mut txns: BTreeMap<TxnId, Vec<&Record>> = BTreeMap::new();
    for rec in &records {
        let trail = txns.entry(rec.meta.txn).or_default();
        match trail.last() {
            None => assert!(
                rec.body == RecordBody::Begin && rec.meta.prev_lsn.is_none(),
                "iteration {iteration}: txn {} starts with {rec:?}",
                rec.meta.txn
            ),
            Some(prev) => {
                assert_ne!(
                    rec.body,
                    RecordBody::Begin,
                    "iteration {iteration}: a second Begin: {rec:?}"
                );
                assert_ne!(
                    prev.body.kind(),
                    Kind::Commit,
                    "iteration {iteration}: a record after a Commit: {rec:?}"
                );
                assert_eq!(
                    rec.meta.prev_lsn,
                    Some(prev.lsn),
                    "iteration {iteration}: broken chain at {rec:?}"
                );
            }
        }
        trail.push(rec);
    }
    // The reader's own backward walk agrees with the forward scan.
    for (txn, trail) in &txns {
        let last = trail.last().expect("a trail has a record").lsn;
        let walked: Vec<Lsn> = reader
            .chain(last)
            .take(trail.len() + 1)
            .map(|r| {
                r.unwrap_or_else(|e| panic!("iteration {iteration}: chain of txn {txn}: {e}"))
                    .lsn
            })
            .collect();
        let scanned: Vec<Lsn> = trail.iter().rev().map(|r| r.lsn).collect();
        assert_eq!(walked, scanned, "iteration {iteration}: chain of txn {txn}");
    }

    // Every acknowledged commit is there: a Commit of that txn at that LSN.
    let commits: BTreeMap<Lsn, TxnId> = records
        .iter()
        .filter(|r| r.body == RecordBody::Commit)
        .map(|r| (r.lsn, r.meta.txn))
        .collect();
    for (lsn, txn) in acked {
        assert_eq!(
            commits.get(lsn),
            Some(txn),
            "iteration {iteration}: acknowledged commit of txn {txn} at {lsn} is missing (log ends at {}, torn: {:?})",
            end.next,
            end.torn
        );
    }
    Survived {
        max_txn: txns.keys().next_back().copied().unwrap_or(0),
        records: records.len(),
        committed: commits.len(),
        in_flight: txns.len() - commits.len(),
        end,
    }
}

/// What a reopened log held.
struct Survived {
    max_txn: TxnId,
    records: usize,
    committed: usize,
    /// Transactions that began and have no Commit.
    in_flight: usize,
    end: LogEnd,
}

#[test]
fn killed_appender_keeps_every_acknowledged_record() {
    // The child run of this binary must not start a parent of its own.
    if std::env::var_os(CHILD_DIR_VAR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut acked: BTreeMap<Lsn, TxnId> = BTreeMap::new();
    let mut base: TxnId = 1;
    let mut kills = 0;
    for iteration in 0..ITERATIONS {
        if started.elapsed() > TIME_BUDGET {
            break;
        }
        // Alternate the child's backend; the parent reads with the default.
        let acks = run_and_kill(dir.path(), base, iteration % 2 == 1, &mut rng);
        let new_acks = acks.len();
        for (txn, lsn) in acks {
            let earlier = acked.insert(lsn, txn);
            assert_eq!(earlier, None, "two acks for the commit at {lsn}");
        }
        kills += 1;
        // Every ack of every earlier iteration must survive this crash too.
        let survived = check_log(dir.path(), &acked, iteration);
        println!(
            "iteration {iteration}: {new_acks} new acks; {} records, {} commits, {} in flight; log ends at {} (torn: {:?})",
            survived.records, survived.committed, survived.in_flight, survived.end.next, survived.end.torn
        );
        base = survived.max_txn.max(base) + 1;
    }
    assert!(kills > 0, "no iteration ran");
    assert!(!acked.is_empty(), "no child ever acknowledged a commit");
}
