//! The documented limits, and what lies past the old ones.
//!
//! A transaction may change more pages than one commit-intent record can
//! list: the intent spills over several records, its pages carry the last
//! one's stamp, and a crash in the middle of its commit is backed out
//! whole. Keys and values past their limits are refused with typed errors,
//! and the transaction and the node go on.

use std::collections::HashSet;

mod common;

use understudy::{admin::bucket_page, Error, Node, NodeOptions, MAX_KEY, MAX_VALUE};
use wal::io::fault::CrashMode;
use wal::io::OpKind;

const BUCKETS: u32 = 16_384;

/// The smallest segments make the smallest intent record (about 4 000
/// pages), so the tests stay small.
fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: wal::segment::MIN_SEGMENT_SIZE,
        ..NodeOptions::default()
    }
}

fn intent_pages() -> usize {
    let segment = wal::segment::MIN_SEGMENT_SIZE;
    wal::record::max_intent_pages(wal::segment::Layout::new(segment).unwrap().max_record())
}

/// One key per bucket page, `n` of them.
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .filter(|k| seen.insert(bucket_page(k, BUCKETS)))
        .take(n)
        .collect()
}

fn intent_records(dir: &std::path::Path) -> usize {
    let reader = wal::LogReader::open(&dir.join("logs").join("1"), wal::io::Io::fallback()).unwrap();
    reader
        .scan(reader.start_lsn())
        .filter(|r| matches!(r.as_ref().unwrap().body, wal::RecordBody::CommitIntent(_)))
        .count()
}

#[test]
fn a_transaction_changing_more_pages_than_one_intent_lists_commits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    node.create_table("t", BUCKETS).unwrap();
    let keys = keys(intent_pages() + 100);
    let mut t = node.begin().unwrap();
    for k in &keys {
        t.put("t", k, b"v").unwrap();
    }
    t.commit().unwrap();
    assert_eq!(intent_records(dir.path()), 2, "the intent spilled over two records");
    let mut t = node.begin().unwrap();
    for k in &keys {
        assert_eq!(t.get("t", k).unwrap().as_deref(), Some(&b"v"[..]));
    }
    t.rollback().unwrap();
    node.close().unwrap();
}

/// The pages of a spilled intent are written, and the node dies before
/// their sync: its own restart backs the whole transaction out, pages of
/// the first intent record and of the last alike.
#[test]
fn a_crash_in_the_commit_of_a_spilled_intent_is_backed_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let keys = keys(intent_pages() + 100);
    {
        let node = Node::open(dir.path(), 1, opts()).unwrap();
        node.create_table("t", BUCKETS).unwrap();
        let mut t = node.begin().unwrap();
        for k in &keys {
            t.put("t", k, b"old").unwrap();
        }
        t.commit().unwrap();
        node.close().unwrap();
    }
    let (node, device) = common::node_with_faults(dir.path(), 1, opts());
    let mut t = node.begin().unwrap();
    for k in &keys {
        t.put("t", k, b"new").unwrap();
    }
    node.checkpoint().unwrap(); // the undo records are durable now
                                // Sync 1: the intents. Sync 2: the pages, which fails.
    device.fail_nth(OpKind::Sync, 2, libc::EIO);
    assert!(matches!(t.commit(), Err(Error::CommitFailed(_))));
    device.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);

    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.start_report().backed_out, 1, "{:?}", node.start_report());
    let mut t = node.begin().unwrap();
    for k in &keys {
        assert_eq!(t.get("t", k).unwrap().as_deref(), Some(&b"old"[..]));
    }
    t.rollback().unwrap();
    node.close().unwrap();
}

/// A commit acknowledged, then the power goes: whether or not its commit
/// record was durable, every page carries the last intent's stamp, so the
/// restart keeps it.
#[test]
fn an_acknowledged_spilled_commit_survives_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let keys = keys(intent_pages() + 100);
    {
        let node = Node::open(dir.path(), 1, opts()).unwrap();
        node.create_table("t", BUCKETS).unwrap();
        node.close().unwrap();
    }
    let (node, device) = common::node_with_faults(dir.path(), 1, opts());
    let mut t = node.begin().unwrap();
    for k in &keys {
        t.put("t", k, b"acked").unwrap();
    }
    t.commit().unwrap();
    device.crash(CrashMode::DropUnsynced).unwrap();
    drop(node);

    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.start_report().backed_out, 0);
    let mut t = node.begin().unwrap();
    for k in &keys {
        assert_eq!(t.get("t", k).unwrap().as_deref(), Some(&b"acked"[..]));
    }
    t.rollback().unwrap();
    node.close().unwrap();
}

#[test]
fn keys_and_values_past_their_limits_are_refused_and_the_transaction_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, NodeOptions::default()).unwrap();
    node.create_table("h", 4).unwrap();
    node.create_ordered_table("o").unwrap();
    let mut t = node.begin().unwrap();
    t.put("o", b"kept", b"1").unwrap();
    let long = vec![b'k'; MAX_KEY + 1];
    for table in ["h", "o"] {
        match t.put(table, &long, b"v") {
            Err(Error::KeyTooLarge { len, max }) => assert_eq!((len, max), (MAX_KEY + 1, MAX_KEY)),
            other => panic!("{table}: {other:?}"),
        }
    }
    match t.put("h", b"k", &vec![0; 4096]) {
        Err(Error::ValueTooLarge { len: 4096, max }) => assert_eq!(max, 4096 - 52 - 1),
        other => panic!("{other:?}"),
    }
    // Zeroed memory from the allocator: not touched, so not paid for.
    let huge = vec![0u8; MAX_VALUE + 1];
    match t.put("o", b"k", &huge) {
        Err(Error::ValueTooLarge { len, max }) => assert_eq!((len, max), (MAX_VALUE + 1, MAX_VALUE)),
        other => panic!("{other:?}"),
    }
    drop(huge);
    t.put("o", &vec![b'k'; MAX_KEY], b"longest key").unwrap();
    t.commit().unwrap();
    let mut t = node.begin().unwrap();
    assert_eq!(t.get("o", b"kept").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(t.len("o").unwrap(), 2);
    t.rollback().unwrap();
    assert!(node.stopped().is_none());
    node.close().unwrap();
}
