//! A counterpart publishes the version of every page its recovery read and
//! put back as the failed node's retained locks go (`Msg::UnregisterCounterpart`'s
//! values), so a survivor whose cached copy is still current keeps serving
//! it instead of reading every such page again.

use std::time::Duration;

mod common;

use understudy::{Node, NodeOptions};

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        lock_wait: Duration::from_secs(5),
        ..NodeOptions::default()
    }
}

#[test]
fn a_survivors_cached_pages_stay_current_through_a_peer_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    const BUCKETS: u32 = 8;
    n2.create_table("t", BUCKETS).unwrap();
    let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("key-{i}").into_bytes()).collect();
    let pages: std::collections::HashSet<u64> = keys
        .iter()
        .map(|k| understudy::admin::bucket_page(k, BUCKETS))
        .collect();
    let read_all = |n: &Node, want: &[u8]| {
        let mut r = n.begin().unwrap();
        for k in &keys {
            assert_eq!(r.get("t", k).unwrap().as_deref(), Some(want));
        }
        r.rollback().unwrap();
    };
    n2.run(|t| keys.iter().try_for_each(|k| t.put("t", k, b"committed")))
        .unwrap();
    read_all(&n2, b"committed");

    // Node 1 changes every row; its commit writes every page and fails on
    // their sync: it stops with the transaction in flight, its pages on
    // disk, its locks retained.
    let (n1, device) = common::node_with_faults(dir.path(), 1, opts());
    common::stop_mid_commit(&n1, &device, "t", &keys, b"in flight");
    drop(n1);
    common::wait_declared_failed(&n2, 1);
    let tl = n2.recover_peer(1).unwrap();
    assert_eq!(tl.pages_written, pages.len(), "every page went back");

    // The pages hold again exactly what node 2 cached: every read hits.
    let before = n2.pool_stats();
    read_all(&n2, b"committed");
    let after = n2.pool_stats();
    assert_eq!(after.misses, before.misses, "{before:?} → {after:?}");
    assert_eq!(after.invalidations, before.invalidations, "{before:?} → {after:?}");
    assert!(after.hits >= before.hits + pages.len() as u64, "{before:?} → {after:?}");
}
