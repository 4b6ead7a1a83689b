//! Damaged logs: flipped bits, impossible lengths, bad headers, missing
//! segments. Damage to acknowledged data is reported as corruption with its
//! location, never returned as records; damage confined to the last unsynced
//! batch is a torn tail.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use wal::io::Io;
use wal::segment::segment_path;
use wal::{CorruptionKind, Log, LogConfig, LogReader, Lsn, RecordBody, RecordMeta, WalError};

/// A log of 300 records in batches of 3 (each batch waited for durable).
fn build(dir: &Path) -> Vec<wal::Record> {
    let log = Log::open(dir, small_config(1, Io::fallback())).unwrap();
    let mut out = Vec::new();
    for i in 0..300u64 {
        let body = RecordBody::AgentUndo(vec![(i % 251) as u8; 300 + (i % 37) as usize]);
        let meta = RecordMeta {
            agent: 4,
            ..RecordMeta::txn(i, None)
        };
        let lsn = log.append(meta, &body).unwrap();
        if i % 3 == 2 {
            log.wait_durable(lsn).unwrap();
        }
        out.push(wal::Record { lsn, meta, body });
    }
    log.close().unwrap();
    out
}

fn poke(dir: &Path, lsn: Lsn, offset_in_record: u64, f: impl FnOnce(&mut [u8; 8])) {
    let reader = LogReader::open(dir, Io::fallback()).unwrap();
    let layout = reader.layout();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, layout.segment_of(lsn)))
        .unwrap();
    let at = layout.file_offset(lsn) + offset_in_record;
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, at).unwrap();
    f(&mut b);
    file.write_all_at(&b, at).unwrap();
}

fn scan_error(dir: &Path) -> WalError {
    let reader = LogReader::open(dir, Io::fallback()).unwrap();
    let mut scan = reader.scan(reader.start_lsn());
    for r in scan.by_ref() {
        if let Err(e) = r {
            return e;
        }
    }
    panic!("scan ended cleanly at {:?}", scan.end());
}

#[test]
fn a_flipped_bit_in_durable_data_is_corruption_at_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    let victim = recs[100].lsn;
    poke(dir.path(), victim, 60, |b| b[3] ^= 0x10);
    match scan_error(dir.path()) {
        WalError::Corruption {
            lsn,
            kind: CorruptionKind::Checksum { .. },
        } => assert_eq!(lsn, victim),
        other => panic!("expected checksum corruption, got {other:?}"),
    }
    // The writer refuses to open over it rather than cut acknowledged data.
    assert!(matches!(
        Log::open(dir.path(), small_config(1, Io::fallback())),
        Err(WalError::Corruption { lsn, .. }) if lsn == victim
    ));
    // Records before the damage are still readable one by one.
    let reader = LogReader::open(dir.path(), Io::fallback()).unwrap();
    assert_eq!(reader.read(recs[99].lsn).unwrap(), recs[99]);
    assert!(matches!(reader.read(victim), Err(WalError::Corruption { .. })));
}

#[test]
fn damage_in_the_last_batch_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    // Records 297..299 were the last batch; damage the middle one.
    let victim = recs[298].lsn;
    poke(dir.path(), victim, 50, |b| b[0] ^= 1);
    let reader = LogReader::open(dir.path(), Io::fallback()).unwrap();
    let end = reader.find_end().unwrap();
    assert_eq!(end.next, victim);
    assert!(matches!(end.torn, Some(CorruptionKind::Checksum { .. })));
    let got = read_all(dir.path(), Io::fallback());
    assert_eq!(&got[..], &recs[..298]);
    // The writer cuts the tail and continues from it.
    let log = Log::open(dir.path(), small_config(1, Io::fallback())).unwrap();
    assert_eq!(log.next_lsn(), victim);
    log.close().unwrap();
}

#[test]
fn an_impossible_length_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    let victim = recs[298].lsn;
    // The length field is bytes 4..8 of the header.
    poke(dir.path(), victim, 0, |b| {
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    match scan_error(dir.path()) {
        WalError::Corruption {
            lsn,
            kind: CorruptionKind::BadLength { len, .. },
        } => {
            assert_eq!(lsn, victim);
            assert_eq!(len, u32::MAX);
        }
        other => panic!("expected a bad length, got {other:?}"),
    }
}

#[test]
fn a_zeroed_hole_before_later_batches_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    let victim = recs[30].lsn;
    poke(dir.path(), victim, 0, |b| *b = [0; 8]);
    poke(dir.path(), victim, 8, |b| *b = [0; 8]);
    match scan_error(dir.path()) {
        WalError::Corruption {
            lsn,
            kind: CorruptionKind::Hole { next_valid },
        } => {
            assert_eq!(lsn, victim);
            assert!(next_valid > victim);
        }
        other => panic!("expected a hole, got {other:?}"),
    }
}

#[test]
fn a_damaged_segment_header_or_missing_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    let layout = LogReader::open(dir.path(), Io::fallback()).unwrap().layout();
    let seg = layout.segment_of(recs[299].lsn);
    assert!(seg >= 1, "the log spans several segments");
    let path = segment_path(dir.path(), seg);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"garbage!", 0).unwrap();
    match scan_error(dir.path()) {
        WalError::BadSegment { path: p, reason } => {
            assert_eq!(p, path);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected a bad segment, got {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    match scan_error(dir.path()) {
        WalError::Corruption {
            kind: CorruptionKind::MissingSegment { segment },
            ..
        } => assert_eq!(segment, seg),
        other => panic!("expected a missing segment, got {other:?}"),
    }
}

#[test]
fn the_control_file_survives_one_bad_slot_but_not_two() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build(dir.path());
    {
        let log = Log::open(dir.path(), small_config(1, Io::fallback())).unwrap();
        log.checkpoint(&[]).unwrap();
        log.close().unwrap();
    }
    let control = dir.path().join("control");
    let f = std::fs::OpenOptions::new().write(true).open(&control).unwrap();
    // The checkpoint wrote seq 2 into slot 0; damage it: slot 1 (seq 1,
    // no checkpoint) is used instead.
    f.write_all_at(&[0xAA; 8], 16).unwrap();
    let reader = LogReader::open(dir.path(), Io::fallback()).unwrap();
    assert_eq!(reader.checkpoint_lsn(), None);
    assert_eq!(read_all(dir.path(), Io::fallback())[..300], recs[..]);
    f.write_all_at(&[0xAA; 8], 512 + 16).unwrap();
    assert!(matches!(
        LogReader::open(dir.path(), Io::fallback()),
        Err(WalError::BadControl { .. })
    ));
}

/// Regression: leftovers of a crashed write must not come back.
///
/// A crash may persist the pages of one unsynced write in any order: here
/// the first record of the last batch is lost while the later records of the
/// same batch reached the disk. Reopening cuts the tail at the lost record.
/// The leftovers beyond the cut name their own positions, so when the new
/// writer's records happened to end exactly where an old record began, a
/// reader used to continue into the old records: a commit that was never
/// acknowledged came back, chained into another transaction's record. The
/// writer now erases the rest of the tail segment, durably, before
/// appending.
#[test]
fn leftovers_of_a_crashed_write_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    let first = log
        .append_durable(RecordMeta::txn(1, None), &RecordBody::Commit)
        .unwrap();
    let begin = log.append(RecordMeta::txn(2, None), &RecordBody::Begin).unwrap();
    let undo = log
        .append(
            RecordMeta {
                agent: 3,
                ..RecordMeta::txn(2, Some(begin))
            },
            &RecordBody::AgentUndo(vec![9; 100]),
        )
        .unwrap();
    let commit = log.append(RecordMeta::txn(2, Some(undo)), &RecordBody::Commit).unwrap();
    log.wait_durable(commit).unwrap();
    log.close().unwrap();
    poke(dir.path(), begin, 16, |b| b[0] ^= 0xff);

    let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    assert_eq!(log.next_lsn(), begin, "the tail is cut at the lost record");
    // A Begin is as long as the lost one, so the new stream ends exactly
    // where the old undo record begins.
    let new_begin = log
        .append_durable(RecordMeta::txn(9, None), &RecordBody::Begin)
        .unwrap();
    assert_eq!(new_begin, begin);
    log.close().unwrap();

    let got = read_all(dir.path(), io.clone());
    let lsns: Vec<Lsn> = got.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![first, new_begin], "old records resurfaced: {got:?}");
    let end = LogReader::open(dir.path(), io).unwrap().find_end().unwrap();
    assert_eq!(end.next, undo);
    assert!(!end.leftovers);
}

/// The search for leftovers reaches as far as the largest flush the log
/// ever made, which the control file records before such a flush is
/// written: a record of an unfinished flush far past the default bound is
/// erased as well. (Left in place, the same setup as above brings it back:
/// the new stream ends exactly where it begins.)
#[test]
fn leftovers_of_a_large_crashed_flush_are_found_however_far_they_lie() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let cfg = || LogConfig {
        segment_size: 1 << 20,
        max_pending_bytes: 1 << 20,
        flush_threshold_bytes: 1 << 20,
        ..LogConfig::new(1, io.clone())
    };
    // A before-image this large: an agent's work identifier is bounded far
    // below it (`MAX_AGENT_WORK`).
    let big = RecordBody::Undo(wal::PageUndo {
        file_id: 1,
        page_no: 0,
        offset_in_page: 0,
        before: vec![9; 200_000],
        after: None,
    });
    let log = Log::open(dir.path(), cfg()).unwrap();
    let bound_before = log.control().max_batch;
    let first = log
        .append_durable(RecordMeta::txn(1, None), &RecordBody::Commit)
        .unwrap();
    let begin = log.append(RecordMeta::txn(2, None), &RecordBody::Begin).unwrap();
    let undo = log.append(RecordMeta::txn(2, Some(begin)), &big).unwrap();
    let commit = log.append(RecordMeta::txn(2, Some(undo)), &RecordBody::Commit).unwrap();
    log.wait_durable(commit).unwrap();
    let bound = log.control().max_batch;
    assert!(
        u64::from(bound_before) < commit.0 - begin.0 && u64::from(bound) > commit.0 - begin.0,
        "the bound ({bound_before} before) was raised to cover the {}-byte flush: {bound}",
        commit.0 - begin.0
    );
    log.close().unwrap();
    poke(dir.path(), begin, 16, |b| b[0] ^= 0xff);

    let log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.next_lsn(), begin, "the tail is cut at the lost record");
    let new_begin = log.append(RecordMeta::txn(9, None), &RecordBody::Begin).unwrap();
    let new_undo = log.append(RecordMeta::txn(9, Some(new_begin)), &big).unwrap();
    log.wait_durable(new_undo).unwrap();
    assert_eq!(log.next_lsn(), commit, "the new stream ends where the old Commit began");
    log.close().unwrap();

    let lsns: Vec<Lsn> = read_all(dir.path(), io).iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![first, new_begin, new_undo], "the old Commit resurfaced");
}

/// Every segment of a log deleted, its control file left: the log's
/// records are lost, which is corruption at the log's start — not an empty
/// log with nothing to back out.
#[test]
fn a_log_whose_segments_were_all_deleted_is_corrupt_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wal") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let e = scan_error(dir.path());
    assert!(
        matches!(
            e,
            WalError::Corruption {
                kind: CorruptionKind::MissingSegment { segment: 0 },
                ..
            }
        ),
        "{e}"
    );
    let opened = Log::open(dir.path(), small_config(1, Io::fallback()));
    assert!(
        matches!(
            opened,
            Err(WalError::Corruption {
                kind: CorruptionKind::MissingSegment { .. },
                ..
            })
        ),
        "{:?}",
        opened.err()
    );
}

/// A log that must exist (a failed node's, opened to recover it) is not
/// created when missing, and a log keeps the identity it was created with.
#[test]
fn a_log_that_must_exist_is_not_created_and_keeps_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let must_exist = LogConfig {
        create: false,
        ..small_config(1, Io::fallback())
    };
    let missing = Log::open(&dir.path().join("gone"), must_exist.clone());
    assert!(matches!(missing, Err(WalError::NoLog { .. })), "{:?}", missing.err());
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let empty = Log::open(&dir.path().join("empty"), must_exist.clone());
    assert!(matches!(empty, Err(WalError::NoLog { .. })), "{:?}", empty.err());

    build(dir.path());
    let log = Log::open(dir.path(), must_exist.clone()).unwrap();
    let id = log.control().log_id;
    assert_ne!(id, 0);
    assert_eq!(log.end_at_open().next, log.next_lsn());
    log.close().unwrap();
    assert_eq!(LogReader::open(dir.path(), Io::fallback()).unwrap().log_id(), id);

    let other = tempfile::tempdir().unwrap();
    build(other.path());
    assert_ne!(
        LogReader::open(other.path(), Io::fallback()).unwrap().log_id(),
        id,
        "two logs of one node made one after the other differ"
    );
}
