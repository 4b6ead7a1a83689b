//! An ordered table's transaction that changes more pages than one
//! commit-intent record can list: a large value written, replaced, and the
//! replacement's commit cut short by a crash.
//!
//! The intent spills over several records and the pages carry the last
//! one's stamp (`understudy::txn`), so a commit torn in the middle of its
//! page writes leaves some pages stamped and others not: the restart must
//! read the run as one intent, find it not committed, and put back every
//! page — those the first record lists as well as the last, the leaf, the
//! free list's trunks and the value's directory and data pages — leaving a
//! whole tree with the old value. A commit that was acknowledged survives
//! a power loss whole.

use std::path::Path;

mod common;

use understudy::{admin, Node, NodeOptions};
use wal::io::fault::CrashMode;

/// The smallest segments make the smallest intent record.
fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: wal::segment::MIN_SEGMENT_SIZE,
        pool_pages: 256,
        ..NodeOptions::default()
    }
}

/// Pages one intent record lists at most, in this test's log.
fn intent_pages() -> usize {
    let segment = wal::segment::MIN_SEGMENT_SIZE;
    wal::record::max_intent_pages(wal::segment::Layout::new(segment).unwrap().max_record())
}

/// A value taking about twice the pages one intent record lists.
fn value(salt: u8) -> Vec<u8> {
    let len = 2 * intent_pages() * 4096;
    (0..len).map(|i| (i % 253) as u8 ^ salt).collect()
}

fn intent_records(dir: &Path) -> usize {
    let reader = wal::LogReader::open(&dir.join("logs").join("1"), wal::io::Io::fallback()).unwrap();
    reader
        .scan(reader.start_lsn())
        .filter(|r| matches!(r.as_ref().unwrap().body, wal::RecordBody::CommitIntent(_)))
        .count()
}

fn read(node: &Node, key: &[u8]) -> Option<Vec<u8>> {
    let mut t = node.begin().unwrap();
    let v = t.get("o", key).unwrap();
    t.rollback().unwrap();
    v
}

#[test]
fn a_torn_commit_of_a_spilled_ordered_transaction_is_backed_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let (old, new) = (value(1), value(2));
    let committed = {
        let node = Node::open(dir.path(), 1, opts()).unwrap();
        node.create_ordered_table("o").unwrap();
        node.run(|t| {
            for i in 0..300u32 {
                t.put("o", format!("row-{i:04}").as_bytes(), &[9; 100])?;
            }
            t.put("o", b"big", &old)
        })
        .unwrap();
        assert!(intent_records(dir.path()) >= 3, "the intent spilled");
        assert!(
            read(&node, b"big") == Some(old.clone()),
            "the committed value reads back"
        );
        let summary = admin::check_ordered_table(&node, "o", true).unwrap();
        node.close().unwrap();
        summary
    };

    let (node, device) = common::node_with_faults(dir.path(), 1, opts());
    let mut t = node.begin().unwrap();
    t.put("o", b"big", &new).unwrap();
    t.put("o", b"row-0150", b"changed").unwrap();
    t.delete("o", b"row-0151").unwrap();
    node.checkpoint().unwrap(); // the undo records are durable now
    let intents_before = intent_records(dir.path());
    // The commit's first writes are the log's (its intent records); the
    // pages follow. Torn well inside the pages: some carry the last
    // intent's stamp, most do not.
    device.tear_nth_write(intent_pages() as u64, 3);
    assert!(t.commit().is_err(), "the device died under the commit");
    assert!(device.is_crashed());
    let pages_written = device
        .unsynced_writes()
        .iter()
        .filter(|w| w.path.extension().is_some_and(|e| e == "tbl"))
        .map(|w| w.new.len() / 4096)
        .sum::<usize>();
    assert!(pages_written > 0, "some of the commit's pages reached the file");
    assert!(pages_written < 2 * intent_pages(), "not all of them: {pages_written}");
    device.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);
    assert!(
        intent_records(dir.path()) - intents_before >= 3,
        "the torn commit's intent spilled over several records"
    );

    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.start_report().backed_out, 1, "{:?}", node.start_report());
    let after = admin::check_ordered_table(&node, "o", true).unwrap();
    assert_eq!(after, committed, "the tree is as the last commit left it");
    assert!(read(&node, b"big") == Some(old.clone()), "the old value is back");
    assert_eq!(read(&node, b"row-0150").as_deref(), Some(&[9u8; 100][..]));
    assert_eq!(read(&node, b"row-0151").as_deref(), Some(&[9u8; 100][..]));

    // The same change, committed and acknowledged, then the power goes.
    node.close().unwrap();
    let (node, device) = common::node_with_faults(dir.path(), 1, opts());
    node.run(|t| {
        t.put("o", b"big", &new)?;
        t.delete("o", b"row-0151").map(drop)
    })
    .unwrap();
    device.crash(CrashMode::DropUnsynced).unwrap();
    drop(node);
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.start_report().backed_out, 0);
    assert!(read(&node, b"big") == Some(new), "the acknowledged value survives");
    assert_eq!(read(&node, b"row-0151"), None);
    let summary = admin::check_ordered_table(&node, "o", true).unwrap();
    assert_eq!(summary.keys, 300);
    node.close().unwrap();
}
