//! Model-based test of ordered tables: random puts (small, large and in
//! bulk runs that split nodes), deletes (that merge them), point reads,
//! range scans both ways, counts, savepoints, commits and rollbacks, with
//! crashes in between — the device losing or keeping what was not synced,
//! a write torn in the middle of a commit — and clean reopens, checked
//! against a `BTreeMap`. After each crash the node's own restart must give
//! back exactly the acknowledged commits, and the tree must pass the
//! whole-tree check (`admin::check_ordered_table`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

mod common;

use understudy::{admin, Error, Node, NodeOptions, Savepoint, Transaction};
use wal::io::fault::{CrashMode, FaultInjector};
use wal::io::Io;

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u16,
        len: usize,
    },
    Bulk {
        from: u16,
        count: u16,
    },
    Delete {
        key: u16,
    },
    DeleteRun {
        from: u16,
        count: u16,
    },
    Get {
        key: u16,
    },
    Range {
        from: Option<u16>,
        to: Option<u16>,
        reverse: bool,
    },
    Len,
    Savepoint,
    RollbackTo,
    Commit,
    Rollback,
    Crash {
        keep_unsynced: bool,
    },
    TornCommit {
        nth_write: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![6 => 0..300usize, 2 => 300..3000usize, 1 => 3000..200_000usize];
    prop_oneof![
        8 => (0..2000u16, len).prop_map(|(key, len)| Op::Put { key, len }),
        2 => (0..2000u16, 1..400u16).prop_map(|(from, count)| Op::Bulk { from, count }),
        3 => (0..2000u16).prop_map(|key| Op::Delete { key }),
        1 => (0..2000u16, 1..600u16).prop_map(|(from, count)| Op::DeleteRun { from, count }),
        3 => (0..2000u16).prop_map(|key| Op::Get { key }),
        2 => (proptest::option::of(0..2000u16), proptest::option::of(0..2000u16), any::<bool>())
            .prop_map(|(from, to, reverse)| Op::Range { from, to, reverse }),
        1 => Just(Op::Len),
        1 => Just(Op::Savepoint),
        1 => Just(Op::RollbackTo),
        4 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => any::<bool>().prop_map(|keep_unsynced| Op::Crash { keep_unsynced }),
        1 => (1..40u64).prop_map(|nth_write| Op::TornCommit { nth_write }),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u16) -> Vec<u8> {
    // Runs of 250 keys share a long prefix, so separators are long and
    // branches hold few: a few hundred rows make a tree of three levels.
    let prefix = char::from(b'a' + (k / 250) as u8).to_string().repeat(150);
    format!("{prefix}{k:05}").into_bytes()
}

fn value(k: u16, len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8) ^ (k as u8) ^ (salt as u8)).collect()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// A transaction's writes over the committed rows: `None` deletes.
type Delta = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn opts(io: Io) -> NodeOptions {
    NodeOptions {
        io: Some(io),
        log_segment_size: 1 << 20,
        pool_pages: 64,
        ..NodeOptions::default()
    }
}

/// The node, its device, its open transaction and that transaction's
/// model (with copies for its savepoints).
struct Session<'d> {
    dir: &'d Path,
    node: Option<Node>,
    device: Arc<FaultInjector>,
    txn: Option<Transaction>,
    delta: Delta,
    savepoints: Vec<(Savepoint, Delta)>,
    salt: usize,
}

impl Session<'_> {
    fn open(&mut self) {
        self.device = FaultInjector::new(Io::fallback());
        self.node = Some(Node::open(self.dir, 1, opts(self.device.io())).unwrap());
    }

    fn txn(&mut self) -> &mut Transaction {
        if self.txn.is_none() {
            self.txn = Some(self.node.as_ref().unwrap().begin().unwrap());
            self.delta.clear();
            self.savepoints.clear();
        }
        self.txn.as_mut().unwrap()
    }

    fn visible(&self, committed: &Model) -> Model {
        let mut view = committed.clone();
        for (k, v) in &self.delta {
            match v {
                Some(v) => view.insert(k.clone(), v.clone()),
                None => view.remove(k),
            };
        }
        view
    }

    fn forget_txn(&mut self) {
        self.delta.clear();
        self.savepoints.clear();
    }

    /// The process dies (the device as `mode` leaves it); the node's own
    /// restart must leave exactly the committed rows.
    fn crash(&mut self, mode: CrashMode, committed: &Model) {
        self.device.crash(mode).unwrap();
        drop(self.txn.take());
        drop(self.node.take());
        self.forget_txn();
        self.open();
        check(self.node.as_ref().unwrap(), committed);
    }

    fn put(&mut self, k: u16, v: Vec<u8>) {
        self.txn().put("t", &key(k), &v).unwrap();
        self.delta.insert(key(k), Some(v));
    }

    fn apply(&mut self, op: &Op, committed: &mut Model) {
        self.salt += 1;
        match *op {
            Op::Put { key: k, len } => self.put(k, value(k, len, self.salt)),
            Op::Bulk { from, count } => {
                for k in from..from.saturating_add(count).min(2000) {
                    self.put(k, value(k, 20, self.salt));
                }
            }
            Op::Delete { key: k } => {
                let was = self.visible(committed).contains_key(&key(k));
                assert_eq!(self.txn().delete("t", &key(k)).unwrap(), was, "delete {k}");
                self.delta.insert(key(k), None);
            }
            Op::DeleteRun { from, count } => {
                let view = self.visible(committed);
                for k in from..from.saturating_add(count).min(2000) {
                    let was = view.contains_key(&key(k));
                    assert_eq!(self.txn().delete("t", &key(k)).unwrap(), was, "delete {k}");
                    self.delta.insert(key(k), None);
                }
            }
            Op::Get { key: k } => {
                let want = self.visible(committed).get(&key(k)).cloned();
                assert_eq!(self.txn().get("t", &key(k)).unwrap(), want, "get {k}");
            }
            Op::Range { from, to, reverse } => {
                let (lo, hi) = (from.map(key), to.map(key));
                if let (Some(lo), Some(hi)) = (&lo, &hi) {
                    if lo > hi {
                        let r = self.txn().range("t", lo.as_slice()..hi.as_slice()).map(drop);
                        assert!(matches!(r, Err(Error::InvalidRange(_))), "{r:?}");
                        return;
                    }
                }
                let start = lo.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let end = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = self
                    .visible(committed)
                    .range::<[u8], _>((start, end))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let rows = self.txn().range::<&[u8]>("t", (start, end)).unwrap();
                let got: Vec<_> = if reverse {
                    want.reverse();
                    rows.rev().collect::<Result<_, _>>().unwrap()
                } else {
                    rows.collect::<Result<_, _>>().unwrap()
                };
                assert_eq!(got, want, "range {from:?}..{to:?}, reverse {reverse}");
            }
            Op::Len => {
                let want = self.visible(committed).len() as u64;
                assert_eq!(self.txn().len("t").unwrap(), want);
            }
            Op::Savepoint => {
                let sp = self.txn().savepoint().unwrap();
                self.savepoints.push((sp, self.delta.clone()));
            }
            Op::RollbackTo => {
                if let Some((sp, delta)) = self.savepoints.last().cloned() {
                    self.txn().rollback_to(sp).unwrap();
                    self.delta = delta;
                }
            }
            Op::Commit => {
                if let Some(t) = self.txn.take() {
                    t.commit().unwrap();
                    *committed = self.visible(committed);
                    self.forget_txn();
                }
            }
            Op::Rollback => {
                if let Some(t) = self.txn.take() {
                    t.rollback().unwrap();
                    self.forget_txn();
                }
            }
            Op::Crash { keep_unsynced } => {
                let mode = if keep_unsynced {
                    CrashMode::KeepUnsynced
                } else {
                    CrashMode::DropUnsynced
                };
                self.crash(mode, committed);
            }
            Op::TornCommit { nth_write } => {
                // A write of the commit (the log's, or a page's) is torn
                // halfway and the process dies there. Acknowledged, the
                // commit counts. Failed, it failed with the device gone:
                // its `Abort` never reached the log, so recovery decides by
                // what reached the disk (`Error::CommitFailed`) — the rows
                // as they were, or the commit's, whole (a write torn where
                // the old and new bytes agree wrote the page all the same).
                let Some(t) = self.txn.take() else { return };
                let after = self.visible(committed);
                self.device.tear_nth_write(nth_write, 3);
                if t.commit().is_ok() {
                    *committed = after;
                    self.crash(CrashMode::KeepUnsynced, committed);
                } else {
                    self.device.crash(CrashMode::KeepUnsynced).unwrap();
                    drop(self.node.take());
                    self.forget_txn();
                    self.open();
                    let node = self.node.as_ref().unwrap();
                    if rows(node) == after {
                        *committed = after;
                    }
                    check(node, committed);
                }
            }
            Op::Reopen => {
                if let Some(t) = self.txn.take() {
                    t.rollback().unwrap();
                }
                self.forget_txn();
                self.node.take().unwrap().close().unwrap();
                self.open();
                check(self.node.as_ref().unwrap(), committed);
            }
        }
    }
}

/// Every row of the table, in one transaction.
fn rows(node: &Node) -> Model {
    let mut t = node.begin().unwrap();
    let rows: Model = t.iter("t").unwrap().collect::<Result<_, _>>().unwrap();
    t.rollback().unwrap();
    rows
}

/// Every row as the model has it, and a whole tree.
fn check(node: &Node, committed: &Model) {
    let summary = admin::check_ordered_table(node, "t", true).unwrap();
    assert_eq!(summary.keys, committed.len() as u64, "{summary:?}");
    let rows = rows(node);
    assert!(
        rows == *committed,
        "{} rows, the model has {}",
        rows.len(),
        committed.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn an_ordered_table_matches_the_model_through_crashes(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
        let mut s = Session {
            dir: dir.path(),
            node: None,
            device: FaultInjector::new(Io::fallback()),
            txn: None,
            delta: Delta::new(),
            savepoints: Vec::new(),
            salt: 0,
        };
        s.open();
        s.node.as_ref().unwrap().create_ordered_table("t").unwrap();
        let mut committed = Model::new();
        for op in &ops {
            s.apply(op, &mut committed);
        }
        if let Some(t) = s.txn.take() {
            t.rollback().unwrap();
        }
        check(s.node.as_ref().unwrap(), &committed);
        s.node.take().unwrap().close().unwrap();
    }
}
