//! The log end to end on real files: round trips across segments on every
//! backend, chains, checkpoints and truncation, ownership, concurrency.

mod common;

use std::sync::Arc;

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use wal::io::Io;
use wal::{ActiveTxn, Log, LogReader, Lsn, OwnerStatus, RecordBody, RecordMeta, WalError};

#[test]
fn records_round_trip_across_segments_and_reopens_on_every_backend() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let bodies: Vec<RecordBody> = (0..2000).map(|_| random_body(&mut rng)).collect();
        let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
        let (first, second) = bodies.split_at(1000);
        let mut expect = append_chained(&log, first);
        log.wait_durable(expect.last().unwrap().lsn).unwrap();
        log.close().unwrap();

        // Reopen and go on: the stream continues exactly where it stopped.
        let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
        let more = append_chained(&log, second);
        assert!(more[0].lsn > expect.last().unwrap().lsn);
        expect.extend(more);
        log.close().unwrap();

        let got = read_all(dir.path(), io.clone());
        assert_eq!(got.len(), expect.len(), "backend {}", io.kind());
        assert_eq!(got, expect, "backend {}", io.kind());
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
            .count();
        assert!(segments > 5, "the test is meant to cross segments, made {segments}");
    }
}

#[test]
fn chains_walk_each_transaction_backward() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let bodies: Vec<RecordBody> = (0..500).map(|_| random_body(&mut rng)).collect();
    let appended = append_chained(&log, &bodies);
    log.close().unwrap();
    let reader = LogReader::open(dir.path(), io).unwrap();
    for txn in 1..=5u64 {
        let mine: Vec<_> = appended.iter().filter(|r| r.meta.txn == txn).rev().cloned().collect();
        let walked: Vec<_> = reader.chain(mine[0].lsn).map(|r| r.unwrap()).collect();
        assert_eq!(walked, mine);
    }
    assert!(matches!(reader.read(Lsn(12)), Err(WalError::NoRecord(_))));
}

#[test]
fn group_commit_serves_many_threads_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::new(Default::default()).unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config(3, io.clone())).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut prev = None;
                let mut mine = Vec::new();
                for i in 0..200u64 {
                    let body = if i % 4 == 3 {
                        RecordBody::Commit
                    } else {
                        RecordBody::AgentUndo(vec![t as u8; (i % 50) as usize])
                    };
                    let meta = RecordMeta {
                        agent: if matches!(body, RecordBody::Commit) { 0 } else { 7 },
                        ..RecordMeta::txn(t + 1, prev)
                    };
                    let lsn = log.append(meta, &body).unwrap();
                    if matches!(body, RecordBody::Commit) {
                        log.wait_durable(lsn).unwrap();
                        assert!(log.durable_lsn() > lsn);
                    }
                    prev = Some(lsn);
                    mine.push(lsn);
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<Lsn> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
    all.sort();
    let got: Vec<Lsn> = read_all(dir.path(), io).iter().map(|r| r.lsn).collect();
    assert_eq!(got, all);
}

#[test]
fn a_second_writer_is_refused_and_a_reader_sees_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    assert_eq!(LogReader::owner_status(dir.path()).unwrap(), OwnerStatus::Gone);
    let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    match Log::open(dir.path(), small_config(1, io.clone())) {
        Err(WalError::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("second writer not refused: {:?}", other.map(|_| ())),
    }
    assert_eq!(LogReader::owner_status(dir.path()).unwrap(), OwnerStatus::Alive);
    log.close().unwrap();
    assert_eq!(LogReader::owner_status(dir.path()).unwrap(), OwnerStatus::Gone);
    assert!(matches!(
        Log::open(dir.path(), small_config(2, io)),
        Err(WalError::WrongNode { expected: 2, found: 1 })
    ));
}

#[test]
fn checkpoint_and_truncation_recycle_segments_and_keep_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let cfg = small_config(1, io.clone());
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert!(matches!(log.truncate_before(Lsn(0)), Err(WalError::InvalidArgument(_))));
    let mut rng = StdRng::seed_from_u64(3);
    let bodies: Vec<RecordBody> = (0..1500).map(|_| random_body(&mut rng)).collect();
    let first = append_chained(&log, &bodies[..1000]);
    let keep_from = first[900].lsn;
    let cp = log
        .checkpoint(&[ActiveTxn {
            txn: 1,
            first_lsn: keep_from,
        }])
        .unwrap();
    assert_eq!(log.control().checkpoint_lsn, Some(cp));
    assert!(matches!(
        log.truncate_before(Lsn(cp.0 + 8)),
        Err(WalError::InvalidArgument(_))
    ));
    let segs_before = std::fs::read_dir(dir.path()).unwrap().count();
    log.truncate_before(keep_from).unwrap();
    let rest = append_chained(&log, &bodies[1000..]);
    log.close().unwrap();
    let segs_after = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(
        segs_after < segs_before + 3,
        "truncated segments are recycled, not piled up ({segs_before} → {segs_after})"
    );

    let reader = LogReader::open(dir.path(), io.clone()).unwrap();
    assert_eq!(reader.start_lsn(), keep_from);
    assert_eq!(reader.checkpoint_lsn(), Some(cp));
    let got: Vec<_> = reader.scan(cp).map(|r| r.unwrap()).collect();
    assert!(matches!(got[0].body, RecordBody::Checkpoint(ref a) if a[0].first_lsn == keep_from));
    assert_eq!(&got[1..], &rest[..]);
    // Records before the cut are gone, the ones after are readable.
    assert!(reader.read(first[0].lsn).is_err());
    assert_eq!(reader.read(first[950].lsn).unwrap(), first[950]);

    // The log reopens over recycled segments whose stale records are ignored.
    let log = Log::open(dir.path(), cfg).unwrap();
    let again = append_chained(&log, &bodies[..600]);
    log.close().unwrap();
    let all = read_all(dir.path(), io);
    assert_eq!(&all[all.len() - 600..], &again[..]);
}

#[test]
fn misuse_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let log = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    let huge = RecordBody::AgentUndo(vec![0; 70_000]);
    let meta = RecordMeta {
        agent: 5,
        ..RecordMeta::txn(1, None)
    };
    assert!(matches!(log.append(meta, &huge), Err(WalError::RecordTooLarge { .. })));
    assert!(matches!(
        log.append(RecordMeta::txn(1, None), &RecordBody::AgentUndo(vec![1])),
        Err(WalError::AgentMismatch { .. })
    ));
    assert!(matches!(
        log.wait_durable(Lsn(1 << 40)),
        Err(WalError::InvalidArgument(_))
    ));
    log.close().unwrap();
    let mut bad = small_config(1, io);
    bad.segment_size = 1000;
    assert!(matches!(Log::open(dir.path(), bad), Err(WalError::InvalidArgument(_))));
    assert!(matches!(
        LogReader::open(&dir.path().join("nope"), Io::fallback()),
        Err(WalError::BadControl { .. })
    ));
}

#[test]
fn a_relinquished_log_writes_nothing_more_and_another_writer_may_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::fallback();
    let log = Arc::new(Log::open(dir.path(), small_config(1, io.clone())).unwrap());
    let kept = log
        .append_durable(RecordMeta::txn(1, None), &RecordBody::Begin)
        .unwrap();
    log.checkpoint(&[]).unwrap();
    // Appended, never made durable: dropped by the relinquish.
    let dropped = log.append(RecordMeta::txn(2, None), &RecordBody::Begin).unwrap();
    log.relinquish();
    assert_eq!(
        LogReader::owner_status(dir.path()).unwrap(),
        OwnerStatus::Gone,
        "the directory lock is released while the log object lives on"
    );
    assert!(
        matches!(log.wait_durable(dropped), Err(WalError::Closed)),
        "a wait for a dropped record ends"
    );
    for refused in [
        log.append(RecordMeta::txn(3, None), &RecordBody::Begin).map(|_| ()),
        log.checkpoint(&[]).map(|_| ()),
        log.truncate_before(kept),
    ] {
        assert!(matches!(refused, Err(WalError::Closed)), "{refused:?}");
    }

    // A peer opens it and appends; the first log object, dropped later,
    // writes nothing over that.
    let peer = Log::open(dir.path(), small_config(1, io.clone())).unwrap();
    let end = peer.append_durable(RecordMeta::txn(4, None), &RecordBody::End).unwrap();
    assert_eq!(end, dropped, "the peer's record takes the dropped record's place");
    drop(log);
    peer.close().unwrap();
    let txns = txns_in(dir.path(), io);
    assert_eq!(txns, vec![1, 0, 4], "begin, checkpoint, the peer's end");
}

/// Records appended behind staged writes are durable on return, with the
/// stages' data in place; when a stage fails, none of the records reaches
/// the log and the log refuses to go on.
#[test]
fn records_appended_after_stages_follow_them_and_share_their_fate() {
    use wal::io::OpKind;
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (log, inj, data) = log_beside_data(dir.path(), &io);
        let page = vec![0x6bu8; 4096];
        let begin = log.append(RecordMeta::txn(7, None), &RecordBody::Begin).unwrap();
        let ends = [
            (RecordMeta::txn(7, Some(begin)), RecordBody::End),
            (RecordMeta::txn(8, None), RecordBody::End),
        ];
        let lsns = with_page_stage(&data, 0, &page, |stage| log.append_durable_after(stage, &ends)).unwrap();
        assert_eq!(lsns.len(), 2);
        assert!(log.durable_lsn() > lsns[1], "backend {}", io.kind());
        let mut back = vec![0u8; 4096];
        io.read_exact_at(&data, &mut back, 0).unwrap();
        assert_eq!(back, page);

        // The stage's write fails: the records it carried never land.
        inj.fail_nth(OpKind::Write, 1, libc::EIO);
        let end = [(RecordMeta::txn(9, None), RecordBody::End)];
        let err = with_page_stage(&data, 4096, &[0x11u8; 4096], |stage| {
            log.append_durable_after(stage, &end)
        })
        .unwrap_err();
        assert!(
            matches!(err, WalError::Poisoned { .. }),
            "backend {}: {err:?}",
            io.kind()
        );
        assert!(log.append(RecordMeta::txn(10, None), &RecordBody::Begin).is_err());
        drop(log);
        assert_eq!(
            txns_in(&dir.path().join("log"), io.clone()),
            vec![7, 7, 8],
            "backend {}",
            io.kind()
        );
    }
}

/// Stages handed to `wait_durable_then` run after the record is durable,
/// in the same flush when the record is the last appended; with a record
/// appended after it they are left to the caller; a failing stage leaves
/// the record durable and the log working.
#[test]
fn stages_after_a_record_run_with_its_flush_when_it_is_last() {
    use wal::io::OpKind;
    use wal::Followed;
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (log, inj, data) = log_beside_data(dir.path(), &io);
        let page = vec![0x3cu8; 4096];
        let then = |lsn| with_page_stage(&data, 0, &page, |stage| log.wait_durable_then(lsn, stage)).unwrap();

        let last = log.append(RecordMeta::txn(1, None), &RecordBody::Begin).unwrap();
        let outcome = then(last);
        assert!(matches!(outcome, Followed::Done), "backend {}: {outcome:?}", io.kind());
        assert!(log.durable_lsn() > last);
        let mut back = vec![0u8; 4096];
        io.read_exact_at(&data, &mut back, 0).unwrap();
        assert_eq!(back, page);

        // Not the last record: the stages are the caller's.
        let mine = log.append(RecordMeta::txn(2, None), &RecordBody::Begin).unwrap();
        log.append(RecordMeta::txn(3, None), &RecordBody::Begin).unwrap();
        let outcome = then(mine);
        assert!(
            matches!(outcome, Followed::NotRun),
            "backend {}: {outcome:?}",
            io.kind()
        );
        assert!(log.durable_lsn() > mine);

        // The stage's sync fails: the record stays durable, the log works.
        let last = log.append(RecordMeta::txn(4, None), &RecordBody::Begin).unwrap();
        let syncs_before = inj.count(OpKind::Sync);
        inj.fail_nth(OpKind::Sync, 2, libc::EIO);
        let outcome = then(last);
        assert!(
            matches!(&outcome, Followed::Failed(e) if e.op == OpKind::Sync),
            "backend {}: {outcome:?}",
            io.kind()
        );
        assert_eq!(
            inj.count(OpKind::Sync),
            syncs_before + 2,
            "the log's sync, then the stage's"
        );
        assert!(log.durable_lsn() > last);
        let more = log.append(RecordMeta::txn(5, None), &RecordBody::End).unwrap();
        log.wait_durable(more).unwrap();
        log.close().unwrap();
        assert_eq!(
            txns_in(&dir.path().join("log"), io.clone()),
            vec![1, 2, 3, 4, 5],
            "backend {}",
            io.kind()
        );
    }
}

/// A scan reads a long log in batches of many reads at once (megabytes at
/// a time, `reader::SCAN_AHEAD`): every record still comes back exactly,
/// in order, across the batches' seams, whether the log is opened or only
/// read.
#[test]
fn a_log_of_many_megabytes_reads_back_exactly_through_batched_reads() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || wal::LogConfig {
            segment_size: 8 << 20,
            ..wal::LogConfig::new(1, io.clone())
        };
        let log = Log::open(dir.path(), cfg()).unwrap();
        // 20 MiB of page-sized and small records, across segments.
        let bodies: Vec<RecordBody> = (0..5000u32)
            .map(|i| {
                RecordBody::Undo(wal::PageUndo {
                    file_id: 1,
                    page_no: u64::from(i),
                    offset_in_page: 0,
                    before: vec![(i % 251) as u8; if i % 3 == 0 { 100 } else { 4096 + (i as usize % 7) }],
                    after: None,
                })
            })
            .collect();
        let expect = append_chained(&log, &bodies);
        log.wait_durable(expect.last().unwrap().lsn).unwrap();
        log.close().unwrap();

        let mut visited = Vec::new();
        let log = Log::open_visiting(dir.path(), cfg(), &mut |r| visited.push(r)).unwrap();
        assert!(log.next_lsn() > expect.last().unwrap().lsn);
        log.close().unwrap();
        assert_eq!(visited.len(), expect.len(), "backend {}", io.kind());
        assert!(visited == expect, "backend {}: the records visited differ", io.kind());
        let read = read_all(dir.path(), io.clone());
        assert!(read == expect, "backend {}: the records read differ", io.kind());
    }
}
