//! Model-based tests: random put/get/delete/savepoint/rollback_to/commit/
//! rollback sequences on several tables, checked against an in-memory model,
//! first in one node, then with two nodes interleaving their transactions on
//! the same tables (a lock conflict makes the loser roll back, as a caller
//! would).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use understudy::{Cluster, Error, Node, NodeOptions, Transaction};

const TABLES: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Clone, Debug)]
enum Op {
    Put {
        table: usize,
        key: u8,
        len: usize,
        fill: u8,
    },
    Delete {
        table: usize,
        key: u8,
    },
    Get {
        table: usize,
        key: u8,
    },
    Savepoint,
    RollbackTo {
        pick: usize,
    },
    Commit,
    Rollback,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..40u8, 0..700usize, any::<u8>()).prop_map(|(table, key, len, fill)| Op::Put { table, key, len, fill }),
        2 => (0..3usize, 0..40u8).prop_map(|(table, key)| Op::Delete { table, key }),
        4 => (0..3usize, 0..40u8).prop_map(|(table, key)| Op::Get { table, key }),
        1 => Just(Op::Savepoint),
        1 => any::<usize>().prop_map(|pick| Op::RollbackTo { pick }),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
    ]
}

type State = BTreeMap<(usize, Vec<u8>), Vec<u8>>;
/// A transaction's writes: `None` is a delete.
type Delta = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

fn opts(embed: bool) -> NodeOptions {
    NodeOptions {
        embed_coordinator: embed,
        // Dropping one node at the end would set the other recovering it
        // after the test's directory is gone.
        auto_recovery: false,
        lock_wait: Duration::from_millis(1),
        log_segment_size: 1 << 20,
        ..NodeOptions::default()
    }
}

fn cluster(dir: &Path, nodes: &[u32]) -> Node {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, nodes, ep.parse().unwrap(), 4096).unwrap();
    let node = Node::open(dir, nodes[0], opts(true)).unwrap();
    for t in TABLES {
        // Two buckets: chains of overflow pages form quickly.
        node.create_table(t, 2).unwrap();
    }
    node
}

/// One session: a node, its open transaction, and the model of that
/// transaction: its writes (a delta over the committed state, which strict
/// two-phase locking keeps valid for every key it touched), with a stack of
/// copies for its savepoints.
struct Session {
    node: Node,
    txn: Option<Transaction>,
    delta: Delta,
    savepoints: Vec<(understudy::Savepoint, Delta)>,
}

impl Session {
    fn new(node: Node) -> Session {
        Session {
            node,
            txn: None,
            delta: BTreeMap::new(),
            savepoints: Vec::new(),
        }
    }

    fn txn(&mut self) -> &mut Transaction {
        if self.txn.is_none() {
            self.txn = Some(self.node.begin().unwrap());
            self.delta.clear();
            self.savepoints.clear();
        }
        self.txn.as_mut().unwrap()
    }

    fn visible<'a>(&'a self, committed: &'a State, k: &(usize, Vec<u8>)) -> Option<&'a Vec<u8>> {
        match self.delta.get(k) {
            Some(v) => v.as_ref(),
            None => committed.get(k),
        }
    }

    fn abandon(&mut self) {
        if let Some(t) = self.txn.take() {
            t.rollback().unwrap();
        }
        self.delta.clear();
        self.savepoints.clear();
    }

    /// Applies `op`; a retryable error rolls the transaction back.
    fn apply(&mut self, op: &Op, committed: &mut State) {
        let result: Result<(), Error> = match op {
            Op::Put {
                table,
                key: k,
                len,
                fill,
            } => {
                let v = vec![*fill; *len];
                let r = self.txn().put(TABLES[*table], &key(*k), &v);
                if r.is_ok() {
                    self.delta.insert((*table, key(*k)), Some(v));
                }
                r
            }
            Op::Delete { table, key: k } => match self.txn().delete(TABLES[*table], &key(*k)) {
                Ok(found) => {
                    let id = (*table, key(*k));
                    assert_eq!(found, self.visible(committed, &id).is_some(), "delete of {k}");
                    self.delta.insert(id, None);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Op::Get { table, key: k } => match self.txn().get(TABLES[*table], &key(*k)) {
                Ok(got) => {
                    let id = (*table, key(*k));
                    assert_eq!(got.as_ref(), self.visible(committed, &id), "get of {k} in {table}");
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Op::Savepoint => {
                let sp = self.txn().savepoint().unwrap();
                self.savepoints.push((sp, self.delta.clone()));
                Ok(())
            }
            Op::RollbackTo { pick } => {
                if let (Some(txn), false) = (self.txn.as_mut(), self.savepoints.is_empty()) {
                    let i = pick % self.savepoints.len();
                    let (sp, delta) = self.savepoints[i].clone();
                    txn.rollback_to(sp).unwrap();
                    self.savepoints.truncate(i + 1);
                    self.delta = delta;
                }
                Ok(())
            }
            Op::Commit => {
                if let Some(t) = self.txn.take() {
                    t.commit().unwrap();
                    for (k, v) in std::mem::take(&mut self.delta) {
                        match v {
                            Some(v) => committed.insert(k, v),
                            None => committed.remove(&k),
                        };
                    }
                    self.savepoints.clear();
                }
                Ok(())
            }
            Op::Rollback => {
                self.abandon();
                Ok(())
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.is_retryable() => self.abandon(),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// Reads everything back. The last commits' pages stay locked until their
/// commit records are durable (about a millisecond on an idle node), longer
/// than the 1 ms lock wait, so a refused read is tried again, boundedly.
fn check_all(node: &Node, committed: &State) {
    let patient = understudy::RetryPolicy {
        max_retries: 500,
        max_backoff: Duration::from_millis(1),
        step: Duration::from_millis(1),
    };
    let read = understudy::retry(&patient, |_| {
        let mut t = node.begin()?;
        for (ti, name) in TABLES.iter().enumerate() {
            for k in 0..40u8 {
                assert_eq!(
                    t.get(name, &key(k))?.as_ref(),
                    committed.get(&(ti, key(k))),
                    "final read of {name}/{k}"
                );
            }
        }
        t.rollback()
    });
    if let Err(e) = read {
        panic!("final read failed: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn one_node_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let node = cluster(dir.path(), &[1]);
        let mut committed = State::new();
        let mut s = Session::new(node.clone());
        for op in &ops {
            s.apply(op, &mut committed);
        }
        s.abandon();
        check_all(&node, &committed);
    }

    #[test]
    fn two_nodes_interleaving_match_the_model(ops in proptest::collection::vec((any::<bool>(), op()), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let first = cluster(dir.path(), &[1, 2]);
        let second = Node::open(dir.path(), 2, opts(false)).unwrap();
        let mut committed = State::new();
        let mut a = Session::new(first.clone());
        let mut b = Session::new(second.clone());
        for (on_a, op) in &ops {
            if *on_a { a.apply(op, &mut committed) } else { b.apply(op, &mut committed) }
        }
        a.abandon();
        b.abandon();
        check_all(&first, &committed);
        check_all(&second, &committed);
    }
}
