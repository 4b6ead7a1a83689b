//! loom models of group commit: appenders, waiters and the flusher in every
//! interleaving loom explores. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p wal --release --test loom_group_commit`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use wal::group_commit::GroupCommit;
use wal::io::{IoError, OpKind};
use wal::segment::Layout;
use wal::{Lsn, RecordBody, RecordMeta, WalError};

fn queue(max_pending: u64) -> Arc<GroupCommit> {
    let layout = Layout::new(64 * 1024).unwrap();
    Arc::new(GroupCommit::new(layout, Lsn(0), max_pending, max_pending.min(1 << 20)))
}

/// The flusher: completes every batch (or fails the first), returning the
/// batch ends it reported.
fn flusher(gc: Arc<GroupCommit>, fail: bool) -> thread::JoinHandle<Vec<Lsn>> {
    thread::spawn(move || {
        let mut ends = Vec::new();
        while let Some(batch) = gc.take_batch() {
            if fail {
                let cause = IoError::new(OpKind::Sync, "log".as_ref(), None, std::io::Error::from_raw_os_error(5));
                gc.fail(std::sync::Arc::new(cause));
                break;
            }
            gc.complete(&batch);
            ends.push(batch.end);
        }
        ends
    })
}

#[test]
fn every_waiter_wakes_once_its_record_is_durable() {
    loom::model(|| {
        let gc = queue(1 << 20);
        let f = flusher(gc.clone(), false);
        let appenders: Vec<_> = (0..2u64)
            .map(|t| {
                let gc = gc.clone();
                thread::spawn(move || {
                    let lsn = gc.append(&RecordMeta::txn(t, None), &RecordBody::Commit).unwrap();
                    gc.wait_durable(lsn).unwrap();
                    assert!(gc.durable() > lsn, "woken before its record was durable");
                    lsn
                })
            })
            .collect();
        let lsns: Vec<Lsn> = appenders.into_iter().map(|a| a.join().unwrap()).collect();
        assert_ne!(lsns[0], lsns[1]);
        gc.close();
        let ends = f.join().unwrap();
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "batches move forward");
        assert_eq!(gc.durable(), gc.next(), "close drains everything");
    });
}

#[test]
fn a_failed_flush_refuses_everyone_and_wakes_every_waiter() {
    loom::model(|| {
        let gc = queue(1 << 20);
        let f = flusher(gc.clone(), true);
        let appenders: Vec<_> = (0..2u64)
            .map(|t| {
                let gc = gc.clone();
                thread::spawn(
                    move || match gc.append(&RecordMeta::txn(t, None), &RecordBody::Commit) {
                        Ok(lsn) => gc.wait_durable(lsn),
                        Err(e) => Err(e),
                    },
                )
            })
            .collect();
        for a in appenders {
            assert!(matches!(a.join().unwrap(), Err(WalError::Poisoned { .. })));
        }
        assert!(matches!(
            gc.append(&RecordMeta::txn(9, None), &RecordBody::Begin),
            Err(WalError::Poisoned { .. })
        ));
        gc.close();
        f.join().unwrap();
    });
}

#[test]
fn appenders_past_the_pending_bound_wait_without_deadlock() {
    loom::model(|| {
        // Room for one pending record at a time: the second appender must
        // wait for the flusher to make the first durable.
        let gc = queue(90);
        let f = flusher(gc.clone(), false);
        let appenders: Vec<_> = (0..2u64)
            .map(|t| {
                let gc = gc.clone();
                thread::spawn(move || gc.append(&RecordMeta::txn(t, None), &RecordBody::Commit).unwrap())
            })
            .collect();
        for a in appenders {
            a.join().unwrap();
        }
        gc.close();
        f.join().unwrap();
        assert_eq!(gc.durable(), gc.next());
    });
}

#[test]
fn waiters_leading_flushes_never_overlap_the_flusher_or_each_other() {
    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    loom::model(|| {
        let gc = queue(1 << 20);
        let busy = Arc::new(AtomicBool::new(false));
        let last_end = Arc::new(AtomicU64::new(0));
        // Checks one flush at a time, in LSN order.
        let flush = {
            let (busy, last_end) = (busy.clone(), last_end.clone());
            move |b: &mut wal::group_commit::Batch| {
                assert!(!busy.swap(true, Ordering::SeqCst), "two flushes at once");
                assert!(
                    b.end.0 >= last_end.swap(b.end.0, Ordering::SeqCst),
                    "flushes out of order"
                );
                busy.store(false, Ordering::SeqCst);
                Ok(())
            }
        };
        let f = {
            let gc = gc.clone();
            let flush = flush.clone();
            thread::spawn(move || {
                while let Some(mut batch) = gc.take_batch() {
                    flush(&mut batch).unwrap();
                    gc.complete(&batch);
                }
            })
        };
        let waiters: Vec<_> = (0..2u64)
            .map(|t| {
                let gc = gc.clone();
                let flush = flush.clone();
                thread::spawn(move || {
                    let lsn = gc.append(&RecordMeta::txn(t, None), &RecordBody::Commit).unwrap();
                    gc.wait_durable_with(lsn, &flush).unwrap();
                    assert!(gc.durable() > lsn);
                })
            })
            .collect();
        for w in waiters {
            w.join().unwrap();
        }
        gc.close();
        f.join().unwrap();
        assert_eq!(gc.durable(), gc.next());
    });
}

#[test]
fn after_an_abandon_no_flush_is_running_or_starts_and_no_waiter_hangs() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    loom::model(|| {
        let gc = queue(1 << 20);
        let flushing = Arc::new(AtomicBool::new(false));
        let abandoned = Arc::new(AtomicBool::new(false));
        let flush = {
            let (flushing, abandoned) = (flushing.clone(), abandoned.clone());
            move |_: &mut wal::group_commit::Batch| {
                assert!(
                    !abandoned.load(Ordering::SeqCst),
                    "a flush began after the abandon returned"
                );
                flushing.store(true, Ordering::SeqCst);
                flushing.store(false, Ordering::SeqCst);
                Ok(())
            }
        };
        let waiter = {
            let gc = gc.clone();
            thread::spawn(move || {
                let Ok(lsn) = gc.append(&RecordMeta::txn(1, None), &RecordBody::Commit) else {
                    return;
                };
                // Durable, or refused because abandoned: never stuck.
                match gc.wait_durable_with(lsn, &flush) {
                    Ok(()) => assert!(gc.durable() > lsn),
                    Err(e) => assert!(matches!(e, WalError::Closed), "{e:?}"),
                }
            })
        };
        gc.abandon();
        assert!(
            !flushing.load(Ordering::SeqCst),
            "a flush still running after the abandon"
        );
        abandoned.store(true, Ordering::SeqCst);
        assert!(matches!(
            gc.append(&RecordMeta::txn(2, None), &RecordBody::Commit),
            Err(WalError::Closed)
        ));
        waiter.join().unwrap();
    });
}

/// A leader that appends with `append_leading` holds the only flush of its
/// records: nobody — the flusher, another waiter — makes them durable
/// before it completes its batch (what it writes ahead of the batch relies
/// on that), and everyone else's records still get durable.
#[test]
fn records_appended_leading_become_durable_only_through_their_leader() {
    loom::model(|| {
        let gc = queue(1 << 20);
        let f = flusher(gc.clone(), false);
        let other = {
            let gc = gc.clone();
            thread::spawn(move || {
                let lsn = gc.append(&RecordMeta::txn(1, None), &RecordBody::Commit).unwrap();
                gc.wait_durable(lsn).unwrap();
            })
        };
        let records = [(RecordMeta::txn(2, None), RecordBody::End)];
        let led = loop {
            match gc.append_leading(&records).unwrap() {
                Some(led) => break led,
                // A flush is under way: the caller would run its stages on
                // its own and append plainly; here it waits and tries again.
                None => thread::yield_now(),
            }
        };
        let (lsns, batch) = led;
        // Before the leader completes, nothing of its batch is durable.
        assert!(gc.durable() <= lsns[0], "someone else flushed a led record");
        gc.complete(&batch);
        assert!(gc.durable() > lsns[0]);
        other.join().unwrap();
        gc.close();
        f.join().unwrap();
        assert_eq!(gc.durable(), gc.next());
    });
}
