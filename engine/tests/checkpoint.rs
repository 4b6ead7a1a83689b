//! Checkpoints bound the log: with a small checkpoint interval the log is
//! truncated behind each checkpoint and stays small however many
//! transactions run, and a transaction that began before a checkpoint is
//! still backed out whole by the node's own restart.

use std::time::Duration;

mod common;

use understudy::{Node, NodeOptions};
use wal::io::Io;

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 256 * 1024,
        checkpoint_bytes: 128 * 1024,
        lock_wait: Duration::from_millis(500),
        ..NodeOptions::default()
    }
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

#[test]
fn checkpoints_truncate_the_log_and_recovery_still_sees_older_work() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let fi = wal::io::fault::FaultInjector::new(Io::fallback());
    let node = Node::open(
        dir.path(),
        1,
        NodeOptions {
            io: Some(fi.io()),
            ..opts()
        },
    )
    .unwrap();
    node.create_table("t", 16).unwrap();
    node.create_table("pin", 1).unwrap();

    // A long-running transaction begins first and stays open throughout.
    let mut old = node.begin().unwrap();
    old.put("pin", b"old", b"uncommitted").unwrap();

    // Each commit logs two full-page before-images (8 KiB): 400 of them are
    // 3.2 MiB of log, many times the checkpoint interval and the segment.
    for i in 0..400u32 {
        let mut t = node.begin().unwrap();
        t.put("t", format!("k{}", i % 50).as_bytes(), &i.to_le_bytes()).unwrap();
        t.put("t", format!("j{}", i % 50).as_bytes(), &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let log_dir = cluster.log_dir(1);
    let reader = wal::LogReader::open(&log_dir, Io::fallback()).unwrap();
    assert!(reader.checkpoint_lsn().is_some(), "checkpoints were taken");
    assert!(
        reader.start_lsn() > wal::Lsn(0) || segments(&log_dir) <= 16,
        "the log is truncated behind checkpoints"
    );
    // The open transaction pins the log from its first record: truncation
    // never passes it.
    // (The last commits may still await their durable Commit record: their
    // intents show them committing, and their pages decide.)
    let found = understudy::admin::find_in_flight(&reader).unwrap();
    let undecided: Vec<u64> = found
        .txns
        .iter()
        .map(|t| t.txn)
        .filter(|t| !found.intents.iter().any(|i| i.txn == *t))
        .collect();
    assert_eq!(
        undecided,
        vec![old.id()],
        "only the long-running transaction is in flight"
    );

    // Crash with it open: the device goes, so its rollback cannot be
    // logged and the node stops; the restart backs it out and keeps every
    // commit.
    fi.crash(wal::io::fault::CrashMode::KeepUnsynced).unwrap();
    drop(old);
    assert!(node.stopped().is_some());
    drop(node);
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert!(node.start_report().restarted);
    assert_eq!(node.start_report().backed_out, 1);
    let mut t = node.begin().unwrap();
    assert_eq!(t.get("pin", b"old").unwrap(), None);
    for k in 0..50u32 {
        let last = 350 + k;
        assert_eq!(
            t.get("t", format!("k{k}").as_bytes()).unwrap(),
            Some(last.to_le_bytes().to_vec())
        );
        assert_eq!(
            t.get("t", format!("j{k}").as_bytes()).unwrap(),
            Some(last.to_le_bytes().to_vec())
        );
    }
    t.rollback().unwrap();

    // Once nothing is open, the next checkpoint lets the log shrink.
    for i in 0..100u32 {
        let mut t = node.begin().unwrap();
        t.put("t", b"tail", &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    node.checkpoint().unwrap();
    let reader = wal::LogReader::open(&log_dir, Io::fallback()).unwrap();
    assert!(
        reader.start_lsn() > wal::Lsn(0),
        "truncated once the old transaction is gone"
    );
    assert!(
        segments(&log_dir) <= 6,
        "recycled, not piled up: {}",
        segments(&log_dir)
    );
}
