//! Damage to a node's log that the log alone would take for a torn tail.
//!
//! A node runs transactions, one after the other, and fails (its coordinator
//! connection dropped; its log closed). Its log is then cut at a record
//! boundary — what a crash right after that record became durable leaves —
//! and, in some cases, one byte of a record is flipped. The node restarts
//! and backs out its own in-flight work. Whatever the damage, the restart
//! must end in a typed error, or in a table that holds exactly the effect
//! of every acknowledged commit: never in a successful start with an
//! acknowledged commit gone.
//!
//! The bug this guards: a damaged commit intent at the end of the log was
//! cut as a torn tail, its transaction then looked unfinished, and the
//! restart backed out a commit that had been acknowledged — though its
//! pages carried the stamp of that very intent.

mod common;

use common::is_damage_error;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use understudy::{Error, Node, NodeOptions};
use wal::io::Io;
use wal::{Kind, LogReader, Lsn};

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        lock_wait: Duration::from_millis(200),
        ..NodeOptions::default()
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// One transaction of a workload: the keys it writes (with a value of its
/// own) and whether it commits.
#[derive(Clone, Debug)]
struct Txn {
    keys: Vec<u8>,
    commit: bool,
}

/// Node 1 of a fresh cluster in `dir` runs `txns` (a rollback on the table
/// leaves nothing) and fails. Returns the coordinator (to keep) and the
/// table as every acknowledged commit left it.
fn run_and_fail(dir: &Path, txns: &[Txn]) -> (lockmgr::Coordinator, BTreeMap<u8, Vec<u8>>) {
    let (_, coordinator) = common::cluster_with_coordinator(dir, &[1]);
    let node = Node::open(dir, 1, opts()).unwrap();
    node.create_table("t", 2).unwrap();
    let mut acked = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        let value = format!("value-{i}").into_bytes();
        let mut txn = node.begin().unwrap();
        for &k in &t.keys {
            txn.put("t", &key(k), &value).unwrap();
        }
        if t.commit {
            txn.commit().unwrap();
            for &k in &t.keys {
                acked.insert(k, value.clone());
            }
        } else {
            txn.rollback().unwrap();
        }
    }
    // Failed, not left: the connection drops and the log closes (once the
    // node's threads let go of it).
    drop(node);
    let log_dir = dir.join("logs/1");
    common::wait_for("node 1's log to be let go", || {
        LogReader::owner_status(&log_dir).unwrap() == wal::OwnerStatus::Gone
    });
    (coordinator, acked)
}

/// Every record of the log in `log_dir` (LSN and kind), and where it ends.
fn records(log_dir: &Path) -> (Vec<(Lsn, Kind)>, Lsn) {
    let reader = LogReader::open(log_dir, Io::fallback()).unwrap();
    let mut scan = reader.scan(reader.start_lsn());
    let mut out = Vec::new();
    for r in scan.by_ref() {
        let r = r.unwrap();
        out.push((r.lsn, r.body.kind()));
    }
    (out, scan.end().unwrap().next)
}

/// Leaves the log in `log_dir` as a crash right before `at` would have:
/// every byte of the stream from `at` on is zero.
fn cut(log_dir: &Path, at: Lsn) {
    let layout = LogReader::open(log_dir, Io::fallback()).unwrap().layout();
    wal::damage::zero_from(log_dir, layout, at).unwrap();
}

/// Flips one byte of the record at `lsn`, `offset` bytes into it.
fn flip(log_dir: &Path, lsn: Lsn, offset: u64) {
    let layout = LogReader::open(log_dir, Io::fallback()).unwrap().layout();
    assert!(wal::damage::flip(log_dir, layout, Lsn(lsn.0 + offset), 0x5a).unwrap());
}

/// The table as node 1 sees it, or the error its restart ended in.
fn restart_and_read(dir: &Path, accept: bool) -> Result<BTreeMap<u8, Vec<u8>>, Error> {
    let node = Node::open(
        dir,
        1,
        NodeOptions {
            accept_log_damage: accept,
            ..opts()
        },
    )?;
    let mut out = BTreeMap::new();
    let mut t = node.begin()?;
    for k in 0..8u8 {
        if let Some(v) = t.get("t", &key(k))? {
            out.insert(k, v);
        }
    }
    t.rollback()?;
    node.close()?;
    Ok(out)
}

/// The motivating case: an acknowledged commit's intent is the log's last
/// record (its commit record was not durable yet) and is damaged. The
/// restart stops with `LogDamaged` naming the page whose stamp proves the
/// intent was durable, and stops again each time; accepting the damage lets
/// the pages decide, and the commit is kept.
#[test]
fn a_damaged_intent_at_the_tail_stops_the_restart_and_accepting_keeps_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let txns = [
        Txn {
            keys: vec![1, 2],
            commit: true,
        },
        Txn {
            keys: vec![2, 3],
            commit: true,
        },
    ];
    let (_coordinator, acked) = run_and_fail(dir.path(), &txns);
    let log_dir = dir.path().join("logs/1");
    let (recs, _) = records(&log_dir);
    // The last intent, and the record after it (its commit): cut there.
    let (i, &(intent, _)) = recs
        .iter()
        .enumerate()
        .rev()
        .find(|(_, (_, k))| *k == Kind::CommitIntent)
        .expect("an intent");
    cut(&log_dir, recs[i + 1].0);
    // Undamaged, that is a crash between the two flushes of a commit: the
    // intent and the pages decide, and the commit stands.
    flip(&log_dir, intent, 20);
    for _ in 0..2 {
        match restart_and_read(dir.path(), false) {
            Err(Error::LogDamaged { node, detail, .. }) => {
                assert_eq!(node, 1);
                assert!(detail.contains("t-1.tbl"), "{detail}");
            }
            other => panic!("expected LogDamaged, got {other:?}"),
        }
    }
    assert_eq!(restart_and_read(dir.path(), true).unwrap(), acked);
    // Accepted once, the damage is past: the log now ends the transaction.
    assert_eq!(restart_and_read(dir.path(), false).unwrap(), acked);
}

/// A log cut right after each kind of record a transaction or a
/// checkpoint writes, that record's bytes then damaged: every restart ends
/// in a typed error or a table holding every acknowledged commit.
#[test]
fn a_damaged_last_record_of_every_kind_never_loses_an_acknowledged_commit() {
    for last in [
        Kind::Begin,
        Kind::Undo,
        Kind::CommitIntent,
        Kind::Commit,
        Kind::Compensation,
        Kind::End,
        Kind::Checkpoint,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_, coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
        let node = Node::open(dir.path(), 1, opts()).unwrap();
        node.create_table("t", 2).unwrap();
        // Every kind of record: commits, a checkpoint, a rollback to a
        // savepoint, a rollback.
        let mut t = node.begin().unwrap();
        t.put("t", &key(1), b"one").unwrap();
        t.commit().unwrap();
        node.checkpoint().unwrap();
        let mut t = node.begin().unwrap();
        t.put("t", &key(2), b"two").unwrap();
        let sp = t.savepoint().unwrap();
        t.put("t", &key(3), b"three").unwrap();
        t.rollback_to(sp).unwrap();
        t.rollback().unwrap();
        let mut t = node.begin().unwrap();
        t.put("t", &key(4), b"four").unwrap();
        t.commit().unwrap();
        let acked = BTreeMap::from([(1u8, b"one".to_vec()), (4u8, b"four".to_vec())]);
        drop(node);
        let log_dir = dir.path().join("logs/1");
        common::wait_for("node 1's log to be let go", || {
            LogReader::owner_status(&log_dir).unwrap() == wal::OwnerStatus::Gone
        });

        let (recs, end) = records(&log_dir);
        let i = recs
            .iter()
            .rposition(|(_, k)| *k == last)
            .unwrap_or_else(|| panic!("no {last:?} record in {recs:?}"));
        cut(&log_dir, recs.get(i + 1).map_or(end, |r| r.0));
        flip(&log_dir, recs[i].0, 20);
        let outcome = restart_and_read(dir.path(), false);
        eprintln!("{last:?} damaged: {outcome:?}");
        match outcome {
            Ok(table) => assert_eq!(table, acked, "{last:?} damaged: acknowledged commits lost or changed"),
            Err(e) => assert!(is_damage_error(&e), "{last:?} damaged: unexpected error {e}"),
        }
        drop(coordinator);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any cut point, and a byte flipped anywhere in what is left or in the
    /// last record: a typed error, or exactly the acknowledged commits.
    #[test]
    fn any_cut_and_flip_ends_in_an_error_or_every_acknowledged_commit(
        txns in prop::collection::vec(
            (prop::collection::vec(0u8..8, 1..4), prop::bool::weighted(0.7))
                .prop_map(|(keys, commit)| Txn { keys, commit }),
            1..8,
        ),
        cut_at in any::<prop::sample::Index>(),
        flip_at in prop::option::of((any::<prop::sample::Index>(), 0u64..64)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_coordinator, acked) = run_and_fail(dir.path(), &txns);
        let log_dir = dir.path().join("logs/1");
        let (recs, end) = records(&log_dir);
        let mut bounds: Vec<Lsn> = recs.iter().map(|r| r.0).collect();
        bounds.push(end);
        let at = *cut_at.get(&bounds);
        cut(&log_dir, at);
        let left: Vec<Lsn> = recs.iter().map(|r| r.0).filter(|&l| l < at).collect();
        if let (Some((which, offset)), false) = (flip_at, left.is_empty()) {
            flip(&log_dir, *which.get(&left), offset);
        }
        match restart_and_read(dir.path(), false) {
            Ok(table) => prop_assert_eq!(table, acked, "a restart that succeeded lost or changed acknowledged commits"),
            Err(e) => prop_assert!(is_damage_error(&e), "unexpected error {e}"),
        }
    }
}

/// A commit that failed after its intent (its page written, the page's
/// sync refused) is aborted, and a checkpoint follows the durable `Abort`.
/// That `Abort` damaged afterwards — in place, and with the log cut right
/// after it as a torn tail would be — the restart must never keep the
/// commit reported failed over the acknowledged value: it stops with a
/// damage error, or reads the acknowledged value.
#[test]
fn a_damaged_abort_of_a_failed_commit_never_replaces_the_acknowledged_value() {
    for cut_after in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
        let n2 = Node::open(dir.path(), 2, opts()).unwrap();
        n2.create_table("t", 4).unwrap();
        drop(n2);
        let _device = common::node_1_fails_mid_commit(dir.path(), opts(), b"reported failed");
        let log_dir = dir.path().join("logs").join("1");
        let (recs, _) = records(&log_dir);
        let i = recs
            .iter()
            .rposition(|&(_, k)| k == Kind::Abort)
            .expect("the failed commit's Abort");
        assert!(
            recs[i + 1..].iter().any(|&(_, k)| k == Kind::Checkpoint),
            "a checkpoint follows the Abort: {recs:?}"
        );
        if cut_after {
            cut(&log_dir, recs[i + 1].0);
        }
        flip(&log_dir, recs[i].0, 20);
        let restarted = Node::open(dir.path(), 1, opts()).and_then(|n| {
            let mut t = n.begin()?;
            let v = t.get("t", b"k")?;
            t.rollback()?;
            Ok(v)
        });
        match restarted {
            Err(e) => assert!(is_damage_error(&e), "cut after: {cut_after}: {e}"),
            Ok(v) => assert_eq!(v.as_deref(), Some(&b"committed"[..]), "cut after: {cut_after}"),
        }
    }
}
