//! Redo for shipping (`understudy::redo`): a node with redo on numbers its
//! commits without gaps, writes each one's after-images, and reports them
//! committed; reopened, it goes on numbering where it stopped, and cuts
//! off the last round's records whose pages do not carry their stamp (a
//! round a crash interrupted between its redo and its pages). Off, it
//! writes nothing; a cluster of several nodes refuses it.

mod common;

use std::path::Path;

use understudy::redo::{redo_path, RedoReader, RedoRecord};
use understudy::{BackendChoice, Error, Node, NodeOptions};

fn opts() -> NodeOptions {
    NodeOptions {
        redo: true,
        backend: BackendChoice::Fallback,
        ..NodeOptions::default()
    }
}

fn put(node: &Node, key: &str, value: &str) {
    let mut t = node.begin().unwrap();
    t.put("t", key.as_bytes(), value.as_bytes()).unwrap();
    t.commit().unwrap();
}

fn records(dir: &Path) -> Vec<(RedoRecord, Vec<u8>)> {
    let mut r = RedoReader::open(wal::io::Io::fallback(), &redo_path(dir, 1), 0).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_raw().unwrap() {
        out.push(rec);
    }
    out
}

#[test]
fn commits_are_numbered_without_gaps_and_carry_their_pages_after_images() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    node.create_table("t", 4).unwrap();
    for i in 0..20 {
        put(&node, &format!("k{i}"), &format!("v{i}"));
    }
    assert_eq!(node.redo_watermark().unwrap().committed(), 20);
    node.close().unwrap();

    let recs = records(dir.path());
    assert_eq!(recs.len(), 20);
    for (i, (rec, _)) in recs.iter().enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(rec.node, 1);
        assert_eq!(rec.pages.len(), 1, "one bucket page per put");
    }
    // The last record's page is the page as the data file holds it.
    let (last, _) = recs.last().unwrap();
    let (file_id, page_no, image) = &last.pages[0];
    let on_disk = std::fs::read(dir.path().join("data").join(format!("t-{file_id}.tbl"))).unwrap();
    let at = *page_no as usize * 4096;
    assert_eq!(&on_disk[at..at + 4096], image.as_slice());

    // Reopened, the node numbers on from 21.
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.redo_watermark().unwrap().committed(), 20);
    put(&node, "more", "x");
    assert_eq!(node.redo_watermark().unwrap().committed(), 21);
    node.close().unwrap();
    assert_eq!(records(dir.path()).last().unwrap().0.seq, 21);
}

#[test]
fn a_last_round_whose_pages_do_not_carry_its_stamp_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, opts()).unwrap();
    node.create_table("t", 4).unwrap();
    for i in 0..3 {
        put(&node, &format!("k{i}"), "v");
    }
    node.close().unwrap();
    // A round whose redo reached the disk and whose pages did not: the
    // last record again, as the next round under an intent nobody stamped.
    let (mut rec, _) = records(dir.path()).pop().unwrap();
    rec.seq += 1;
    rec.round += 1;
    rec.intent_lsn += 1_000_000;
    let path = redo_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let good_len = bytes.len();
    rec.encode_into(&mut bytes);
    // And a torn record after it.
    bytes.extend_from_slice(&rec.encode()[..100]);
    std::fs::write(&path, &bytes).unwrap();

    let node = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(node.redo_watermark().unwrap().committed(), 3);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len as u64);
    put(&node, "k9", "v");
    node.close().unwrap();
    let recs = records(dir.path());
    assert_eq!(recs.iter().map(|r| r.0.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
}

#[test]
fn off_it_writes_nothing_and_a_cluster_of_two_nodes_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, NodeOptions::default()).unwrap();
    node.create_table("t", 4).unwrap();
    put(&node, "k", "v");
    assert!(node.redo_watermark().is_none());
    node.close().unwrap();
    assert!(!dir.path().join("redo").exists());

    let two = tempfile::tempdir().unwrap();
    let (_cluster, _coordinator) = common::cluster_with_coordinator(two.path(), &[1, 2]);
    match Node::open(two.path(), 1, opts()) {
        Err(Error::RedoNeedsOneNode { nodes: 2 }) => {}
        other => panic!("expected RedoNeedsOneNode, got {:?}", other.map(|_| ())),
    }
}
