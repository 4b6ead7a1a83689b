//! An I/O error at every write and sync the log makes — flushes, segment
//! creation, the control file, recycling — surfaces as a typed error and
//! poisons the log; nothing acknowledged durable is lost.

mod common;

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use wal::io::fault::FaultInjector;
use wal::io::{Io, OpKind};
use wal::{ActiveTxn, Log, Record, RecordBody, RecordMeta, WalError};

struct Outcome {
    appended: Vec<Record>,
    acked: usize,
    failed: bool,
}

/// Appends across several segments, waiting every fifth record, with a
/// checkpoint and a truncation halfway; stops at the first error and checks
/// that the log then refuses everything.
fn workload(log: &Log) -> Outcome {
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Outcome {
        appended: Vec::new(),
        acked: 0,
        failed: false,
    };
    let fail = |e: WalError, out: &mut Outcome| {
        assert!(
            matches!(e, WalError::Poisoned { .. }),
            "an I/O failure must poison the log, got {e:?}"
        );
        out.failed = true;
    };
    for i in 0..800 {
        if i == 400 {
            let first = out.appended[300].lsn;
            let step = log
                .checkpoint(&[ActiveTxn {
                    txn: 1,
                    first_lsn: first,
                }])
                .and_then(|_| log.truncate_before(first));
            if let Err(e) = step {
                fail(e, &mut out);
                break;
            }
        }
        let body = random_body(&mut rng);
        let meta = RecordMeta::txn(1, None);
        match log.append(meta, &body) {
            Ok(lsn) => out.appended.push(Record { lsn, meta, body }),
            Err(e) => {
                fail(e, &mut out);
                break;
            }
        }
        if i % 5 == 4 {
            match log.wait_durable(out.appended.last().unwrap().lsn) {
                Ok(()) => out.acked = out.appended.len(),
                Err(e) => {
                    fail(e, &mut out);
                    break;
                }
            }
        }
    }
    if out.failed {
        let refused = log.append(RecordMeta::txn(2, None), &RecordBody::Begin);
        assert!(
            matches!(refused, Err(WalError::Poisoned { .. })),
            "a poisoned log refuses appends"
        );
        assert!(log.failure().is_some());
    }
    out
}

/// Runs the workload with the `nth` operation of `kind` failing; returns
/// whether the failure was reached.
fn run_with_failure(kind: OpKind, nth: u64, errno: i32) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let log = Log::open(dir.path(), small_config(1, fi.io())).unwrap();
    fi.fail_nth(kind, nth, errno);
    let out = workload(&log);
    let close = log.close();
    assert_eq!(close.is_err(), out.failed, "close reports the failure");
    // What survives is a prefix of what was appended (from the log's start,
    // which a truncation may have moved) and holds everything acknowledged.
    let reader = wal::LogReader::open(dir.path(), Io::fallback()).unwrap();
    let start = reader.start_lsn();
    let got: Vec<Record> = reader
        .scan(start)
        .map(|r| r.unwrap())
        .filter(|r| !matches!(r.body, RecordBody::Checkpoint(_)))
        .collect();
    let expected: Vec<&Record> = out.appended.iter().filter(|r| r.lsn >= start).collect();
    let acked = out.appended[..out.acked].iter().filter(|r| r.lsn >= start).count();
    assert!(got.len() >= acked, "{kind} #{nth}: lost acknowledged records");
    assert!(got.len() <= expected.len(), "{kind} #{nth}: records never appended");
    assert!(
        got.iter().zip(&expected).all(|(g, e)| g == *e),
        "{kind} #{nth}: not a prefix"
    );
    out.failed
}

fn clean_counts() -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let log = Log::open(dir.path(), small_config(1, fi.io())).unwrap();
    let (w0, s0) = (fi.count(OpKind::Write), fi.count(OpKind::Sync));
    let out = workload(&log);
    log.close().unwrap();
    assert!(!out.failed);
    (fi.count(OpKind::Write) - w0, fi.count(OpKind::Sync) - s0)
}

#[test]
fn every_write_and_sync_site_poisons_and_keeps_acknowledged_records() {
    let (writes, syncs) = clean_counts();
    assert!(
        writes > 100 && syncs > 100,
        "workload too small: {writes} writes, {syncs} syncs"
    );
    let mut hit = 0;
    for nth in 1..=writes {
        let errno = if nth % 2 == 0 { libc::ENOSPC } else { libc::EIO };
        hit += run_with_failure(OpKind::Write, nth, errno) as u64;
    }
    for nth in 1..=syncs {
        hit += run_with_failure(OpKind::Sync, nth, libc::EIO) as u64;
    }
    // Batching may vary a little from run to run, but nearly every injected
    // failure must be reached.
    assert!(
        hit * 10 >= (writes + syncs) * 9,
        "only {hit} of {} failures reached",
        writes + syncs
    );
}

#[test]
fn failures_while_creating_a_log_are_typed_and_leave_it_creatable() {
    for kind in [OpKind::Write, OpKind::Sync] {
        for nth in 1..=8 {
            let dir = tempfile::tempdir().unwrap();
            let fi = FaultInjector::new(Io::fallback());
            fi.fail_nth(kind, nth, libc::EIO);
            match Log::open(dir.path(), small_config(1, fi.io())) {
                Ok(log) => drop(log),
                Err(WalError::Io(e)) => assert_eq!(e.errno(), Some(libc::EIO)),
                Err(WalError::Poisoned { cause }) => assert_eq!(cause.errno(), Some(libc::EIO)),
                Err(other) => panic!("{kind} #{nth}: unexpected error {other:?}"),
            }
            // A clean retry opens (or creates) the log.
            let log = Log::open(dir.path(), small_config(1, Io::fallback())).unwrap();
            log.append_durable(RecordMeta::txn(1, None), &RecordBody::Commit)
                .unwrap();
            log.close().unwrap();
        }
    }
}
