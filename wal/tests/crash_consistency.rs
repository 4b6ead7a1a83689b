//! Crash consistency: whatever a crash leaves on disk, reopening the log
//! yields exactly a prefix of the appended records, and that prefix holds
//! every record acknowledged durable.
//!
//! The crash points: every byte offset of the write that was in flight when
//! its sync failed (which covers every torn-sector image and the loss of all
//! unsynced data), and writes torn at a sector boundary by the fault
//! injector on the writer's real path.

mod common;

use common::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use wal::io::fault::{undo_write, CrashMode, FaultInjector};
use wal::io::{Io, OpKind};
use wal::{Log, LogReader, Record, RecordMeta, WalError};

/// Appends random records, waiting for durability now and then, until the
/// log fails or `count` are appended. Returns what was appended and how
/// many of them were acknowledged durable.
fn run_until_failure(log: &Log, rng: &mut StdRng, count: usize) -> (Vec<Record>, usize) {
    let mut appended = Vec::new();
    let mut acked = 0;
    for _ in 0..count {
        let body = random_body(rng);
        let meta = RecordMeta::txn(rng.random_range(1..4), None);
        let lsn = match log.append(meta, &body) {
            Ok(lsn) => lsn,
            Err(WalError::Poisoned { .. }) => break,
            Err(e) => panic!("unexpected append error {e}"),
        };
        appended.push(Record { lsn, meta, body });
        if rng.random_ratio(1, 4) {
            match log.wait_durable(lsn) {
                Ok(()) => acked = appended.len(),
                Err(WalError::Poisoned { .. }) => break,
                Err(e) => panic!("unexpected wait error {e}"),
            }
        }
    }
    (appended, acked)
}

/// The records a reader finds, which must be a clean prefix.
fn check_prefix(dir: &std::path::Path, appended: &[Record], acked: usize, what: &str) -> usize {
    let reader = LogReader::open(dir, Io::fallback()).unwrap();
    let mut scan = reader.scan(reader.start_lsn());
    let got: Vec<Record> = scan
        .by_ref()
        .map(|r| r.unwrap_or_else(|e| panic!("{what}: reader error {e}")))
        .collect();
    assert!(scan.end().is_some(), "{what}: the scan ended without an end");
    assert!(
        got.len() >= acked,
        "{what}: {} records survived but {acked} were acknowledged",
        got.len()
    );
    assert!(got.len() <= appended.len(), "{what}: more records than appended");
    assert_eq!(&got[..], &appended[..got.len()], "{what}: not a prefix");
    got.len()
}

/// Reopening for writing cuts the torn tail and continues the stream.
fn check_writer_resumes(dir: &std::path::Path, appended: &[Record], acked: usize) {
    let survived = check_prefix(dir, appended, acked, "before resume");
    let log = Log::open(dir, small_config(1, Io::fallback())).unwrap();
    let lsn = log
        .append_durable(RecordMeta::txn(99, None), &wal::RecordBody::Commit)
        .unwrap();
    log.close().unwrap();
    let all = read_all(dir, Io::fallback());
    assert_eq!(&all[..survived], &appended[..survived]);
    assert_eq!(all.len(), survived + 1);
    assert_eq!(all[survived].lsn, lsn);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A sync fails; its write reached the file unsynced; the crash then
    /// keeps any prefix of that write's bytes.
    #[test]
    fn every_byte_offset_of_the_unsynced_tail_reopens_as_a_prefix(seed in any::<u64>(), fail_at in 1u64..10) {
        let dir = tempfile::tempdir().unwrap();
        let fi = FaultInjector::new(Io::fallback());
        let log = Log::open(dir.path(), small_config(1, fi.io())).unwrap();
        fi.fail_nth(OpKind::Sync, fail_at, libc::EIO);
        let mut rng = StdRng::seed_from_u64(seed);
        let (appended, acked) = run_until_failure(&log, &mut rng, 400);
        let unsynced = fi.unsynced_writes();
        fi.crash(CrashMode::KeepUnsynced).unwrap();
        drop(log);

        // Put the disk back to its durable state, then replay the unsynced
        // writes one byte at a time, checking every image on the way.
        for w in unsynced.iter().rev() {
            undo_write(w).unwrap();
        }
        check_prefix(dir.path(), &appended, acked, "nothing unsynced kept");
        for w in &unsynced {
            let f = std::fs::OpenOptions::new().write(true).open(&w.path).unwrap();
            for k in 1..=w.new.len() {
                f.write_all_at(&w.new[k - 1..k], w.offset + k as u64 - 1).unwrap();
                check_prefix(dir.path(), &appended, acked, &format!("kept {k} of {} bytes", w.new.len()));
            }
        }
        check_writer_resumes(dir.path(), &appended, acked);
    }

    /// The writer's own write is torn at a sector boundary mid-flush.
    #[test]
    fn a_torn_flush_reopens_as_a_prefix(seed in any::<u64>(), tear_at in 1u64..12, keep in 0u64..8) {
        let dir = tempfile::tempdir().unwrap();
        let fi = FaultInjector::new(Io::fallback());
        let log = Log::open(dir.path(), small_config(1, fi.io())).unwrap();
        fi.tear_nth_write(tear_at, keep);
        let mut rng = StdRng::seed_from_u64(seed);
        let (appended, acked) = run_until_failure(&log, &mut rng, 400);
        drop(log);
        check_writer_resumes(dir.path(), &appended, acked);
    }

    /// Power fails with writes unsynced: all of them are lost.
    #[test]
    fn losing_all_unsynced_data_reopens_as_a_prefix(seed in any::<u64>(), fail_at in 1u64..10) {
        let dir = tempfile::tempdir().unwrap();
        let fi = FaultInjector::new(Io::fallback());
        let log = Log::open(dir.path(), small_config(1, fi.io())).unwrap();
        fi.fail_nth(OpKind::Sync, fail_at, libc::EIO);
        let mut rng = StdRng::seed_from_u64(seed);
        let (appended, acked) = run_until_failure(&log, &mut rng, 400);
        fi.crash(CrashMode::DropUnsynced).unwrap();
        drop(log);
        check_writer_resumes(dir.path(), &appended, acked);
    }
}
