//! A transaction can change only as many pages as one commit intent can
//! list. The page past that limit is refused with a typed error while the
//! transaction stays usable; the node keeps running.

use std::collections::HashSet;

mod common;

use understudy::{admin::bucket_page, Error, Node, NodeOptions};

#[test]
fn a_transaction_past_the_intent_limit_is_refused_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    // The smallest segments make the smallest intent limit (about 4 000
    // pages), so the test stays small.
    let segment = wal::segment::MIN_SEGMENT_SIZE;
    let node = Node::open(
        dir.path(),
        1,
        NodeOptions {
            log_segment_size: segment,
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let max = wal::record::max_intent_pages(wal::segment::Layout::new(segment).unwrap().max_record());
    const BUCKETS: u32 = 16_384;
    node.create_table("t", BUCKETS).unwrap();
    // One key per bucket page, one more page than the limit.
    let mut seen = HashSet::new();
    let keys: Vec<Vec<u8>> = (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .filter(|k| seen.insert(bucket_page(k, BUCKETS)))
        .take(max + 1)
        .collect();

    let mut t = node.begin().unwrap();
    for k in &keys[..max] {
        t.put("t", k, b"v").unwrap();
    }
    match t.put("t", &keys[max], b"v") {
        Err(Error::TransactionTooLarge { max: m }) => assert_eq!(m, max),
        other => panic!("page {} of a transaction: {other:?}", max + 1),
    }
    // Still usable: a page it already changed can change again.
    t.put("t", &keys[0], b"again").unwrap();
    t.rollback().unwrap();

    assert!(node.stopped().is_none(), "a refused page does not stop the node");
    let mut t = node.begin().unwrap();
    t.put("t", &keys[max], b"small").unwrap();
    t.commit().unwrap();
    assert_eq!(common::read(&node, &keys[max]).as_deref(), Some(&b"small"[..]));
    assert_eq!(
        common::read(&node, &keys[0]),
        None,
        "the large transaction was rolled back"
    );
}
