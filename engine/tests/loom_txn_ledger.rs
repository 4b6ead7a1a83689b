//! loom models of the transaction/commit state machine as a node keeps it
//! (`understudy::ledger`, the very code the node runs): transactions that
//! begin, commit and are confirmed, checkpoints that list and truncate,
//! and a node closing or stopping, in every interleaving loom explores.
//! The log is a model: records appended under a mutex, each at the next
//! LSN. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p understudy --release --test loom_txn_ledger`.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{mpsc, Arc, Mutex};
use loom::thread;
use understudy::ledger::Ledger;
use understudy::{Lsn, TxnId};
use wal::ActiveTxn;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rec {
    Begin(TxnId),
    Commit(TxnId),
    Checkpoint(Vec<ActiveTxn>),
}

/// The log: every record at its LSN (1, 2, …), and where truncation cut.
#[derive(Default)]
struct Log {
    records: Mutex<(Vec<(Lsn, Rec)>, Lsn)>,
}

impl Log {
    fn append(&self, rec: Rec) -> Lsn {
        let mut r = self.records.lock().unwrap();
        let lsn = Lsn(r.0.len() as u64 + 1);
        r.0.push((lsn, rec));
        lsn
    }

    fn truncate_before(&self, keep: Lsn) {
        let mut r = self.records.lock().unwrap();
        r.1 = r.1.max(keep);
    }

    fn snapshot(&self) -> (Vec<(Lsn, Rec)>, Lsn) {
        self.records.lock().unwrap().clone()
    }
}

fn checkpoint(ledger: &Ledger, log: &Log) -> Lsn {
    ledger
        .checkpoint(
            |active| Ok(log.append(Rec::Checkpoint(active.to_vec()))),
            // The model's records are durable once appended.
            |_| Ok(()),
            |keep| {
                log.truncate_before(keep);
                Ok(())
            },
        )
        .unwrap()
}

/// Every transaction whose `Begin` lies before a checkpoint and that had
/// not ended by then (no `Commit` before it) is listed in it, and the log
/// keeps its records: a recovery starting there would find it.
fn check_checkpoints(log: &Log, ended_before: impl Fn(TxnId, Lsn) -> bool) {
    let (records, cut) = log.snapshot();
    for (cp, rec) in &records {
        let Rec::Checkpoint(listed) = rec else { continue };
        for (lsn, r) in &records {
            let Rec::Begin(txn) = r else { continue };
            if lsn < cp && !ended_before(*txn, *cp) {
                assert!(
                    listed.iter().any(|a| a.txn == *txn && a.first_lsn == *lsn),
                    "transaction {txn} began at {lsn:?}, before the checkpoint at {cp:?}, and is not listed in it: {records:?}"
                );
            }
        }
    }
    for (lsn, r) in &records {
        if let Rec::Begin(txn) = r {
            if !ended_before(*txn, Lsn(u64::MAX)) {
                assert!(*lsn >= cut, "transaction {txn}'s Begin was truncated away");
            }
        }
    }
}

#[test]
fn a_checkpoint_lists_every_transaction_that_began_before_it_and_truncation_keeps_them() {
    loom::model(|| {
        let ledger = Arc::new(Ledger::new(Lsn(0)));
        let log = Arc::new(Log::default());
        let begins: Vec<_> = (1..=2u64)
            .map(|txn| {
                let (ledger, log) = (ledger.clone(), log.clone());
                thread::spawn(move || ledger.begin(txn, || Ok(log.append(Rec::Begin(txn)))).unwrap())
            })
            .collect();
        checkpoint(&ledger, &log);
        for b in begins {
            b.join().unwrap();
        }
        // Nothing ended.
        check_checkpoints(&log, |_, _| false);
        assert_eq!(ledger.active().len(), 2);
    });
}

#[test]
fn a_committed_transaction_stays_listed_until_its_commit_is_durable_and_close_finds_it_ended() {
    loom::model(|| {
        let ledger = Arc::new(Ledger::new(Lsn(0)));
        let log = Arc::new(Log::default());
        let (confirms, queue) = mpsc::channel::<(TxnId, Lsn)>();
        // The confirmer: ends what it took (its Commit durable), then
        // counts it confirmed, as `node::confirmer` does. (It takes the one
        // commit there is: loom's channel does not end when its sender
        // goes.)
        let confirmer = {
            let ledger = ledger.clone();
            thread::spawn(move || {
                let (txn, _commit) = queue.recv().unwrap();
                ledger.ended(txn);
                ledger.confirmed(1);
            })
        };
        // The committer: begins, commits (its pages decided), hands its
        // Commit record to the confirmer, as `NodeState::confirm_commit`.
        let committer = {
            let (ledger, log) = (ledger.clone(), log.clone());
            thread::spawn(move || {
                ledger.begin(1, || Ok(log.append(Rec::Begin(1)))).unwrap();
                let commit = log.append(Rec::Commit(1));
                ledger.committing();
                confirms.send((1, commit)).unwrap();
            })
        };
        let checkpointer = {
            let (ledger, log) = (ledger.clone(), log.clone());
            thread::spawn(move || checkpoint(&ledger, &log))
        };
        // Closing: after the embedder's commit returned.
        committer.join().unwrap();
        assert!(ledger.wait_confirmed(Duration::from_secs(3600), || true));
        assert!(ledger.idle(), "close found a confirmed transaction still active");
        checkpointer.join().unwrap();
        confirmer.join().unwrap();
        // A transaction missing from a checkpoint had its Commit before it
        // (and the confirmer saw it durable): nothing of it to recover.
        let records = log.snapshot().0;
        let commit_at = |t: TxnId| records.iter().find(|(_, r)| *r == Rec::Commit(t)).map(|(l, _)| *l);
        check_checkpoints(&log, |txn, cp| commit_at(txn).is_some_and(|c| c < cp));
    });
}

#[test]
fn a_node_that_stops_while_commits_await_confirmation_does_not_hang_its_close() {
    loom::model(|| {
        let ledger = Arc::new(Ledger::new(Lsn(0)));
        let running = Arc::new(AtomicBool::new(true));
        ledger.begin(1, || Ok(Lsn(1))).unwrap();
        ledger.committing();
        // The log fails: the confirmer counts the commit confirmed without
        // ending it (its locks stay retained, recovery decides it).
        let confirmer = {
            let ledger = ledger.clone();
            thread::spawn(move || ledger.confirmed(1))
        };
        let stopper = {
            let running = running.clone();
            thread::spawn(move || running.store(false, Ordering::SeqCst))
        };
        assert!(ledger.wait_confirmed(Duration::from_secs(3600), || running.load(Ordering::SeqCst)));
        confirmer.join().unwrap();
        stopper.join().unwrap();
        assert!(!ledger.idle(), "a commit whose log failed stays active");
    });
}
