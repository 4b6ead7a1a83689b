//! Which path the table pages take, from the I/O layer's counters: where
//! io_uring is available and the file system takes direct I/O (ext4 here),
//! a commit's page writes and an own restart's write-back both go through
//! the ring, not through `pwrite`. On tmpfs (no direct I/O) or without
//! io_uring the tests say so and check the data only.

use std::time::Duration;

mod common;

use understudy::{BackendKind, Node, NodeOptions};
use wal::io::count_on_this_thread;

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        lock_wait: Duration::from_secs(5),
        ..NodeOptions::default()
    }
}

/// The file system `dir` lies on, from `/proc/self/mounts` (the mount
/// point that is the longest prefix of its path): learnt apart from the
/// engine, so a silent fallback to buffered I/O cannot hide.
fn file_system(dir: &std::path::Path) -> String {
    let dir = dir.canonicalize().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(at).then(|| (at.len(), kind.to_string()))
        })
        .max()
        .map(|(_, kind)| kind)
        .unwrap_or_default()
}

/// The ring path is checked where it must be taken; says so otherwise.
fn ring_expected(node: &Node, dir: &std::path::Path) -> bool {
    let fs = file_system(dir);
    if ["ext4", "xfs", "btrfs"].contains(&fs.as_str()) {
        assert_eq!(node.direct_io(), Some(true), "{fs} takes direct I/O");
    }
    let expected = node.io_backend() == BackendKind::Uring && node.direct_io() == Some(true);
    if !expected {
        eprintln!(
            "backend {} with direct I/O {:?}: the ring path is not checked here",
            node.io_backend(),
            node.direct_io()
        );
    }
    expected
}

#[test]
fn a_commit_writes_its_pages_through_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1]);
    let n = Node::open(dir.path(), 1, opts()).unwrap();
    n.create_table("t", 64).unwrap();
    for i in 0..20u32 {
        let (a, b) = (format!("a{i}").into_bytes(), format!("b{i}").into_bytes());
        let pages = 1 + u64::from(understudy::admin::bucket_page(&a, 64) != understudy::admin::bucket_page(&b, 64));
        let mut t = n.begin().unwrap();
        t.put("t", &a, b"one").unwrap();
        t.put("t", &b, b"two").unwrap();
        let (done, io) = count_on_this_thread(|| t.commit());
        done.unwrap();
        if ring_expected(&n, dir.path()) {
            // Alone, the committer leads its own round: its pages (one per
            // bucket changed) and their sync went to the ring; at most the
            // log's write and sync (a buffered file) were system calls, when
            // this thread made the flush and not the log's flusher.
            assert_eq!(io.ring_writes, pages, "commit {i}: {io}");
            assert_eq!(io.ring_syncs, 1, "commit {i}: {io}");
            assert!(
                io.call_writes <= 1,
                "commit {i}: only the log's write as a pwrite: {io}"
            );
        }
    }
    let mut r = n.begin().unwrap();
    assert_eq!(r.get("t", b"a7").unwrap().as_deref(), Some(&b"one"[..]));
    r.rollback().unwrap();
}

#[test]
fn an_own_restart_writes_back_through_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    const BUCKETS: u32 = 64;
    n2.create_table("t", BUCKETS).unwrap();
    drop(n2);
    let keys: Vec<Vec<u8>> = (0..400).map(|i| format!("key-{i}").into_bytes()).collect();
    let pages: std::collections::HashSet<u64> = keys
        .iter()
        .map(|k| understudy::admin::bucket_page(k, BUCKETS))
        .collect();

    let (n1, device) = common::node_with_faults(dir.path(), 1, opts());
    let mut t = n1.begin().unwrap();
    for k in &keys {
        t.put("t", k, b"committed").unwrap();
    }
    t.commit().unwrap();
    common::stop_mid_commit(&n1, &device, "t", &keys, b"in flight");
    drop(n1);

    let n1 = Node::open(dir.path(), 1, opts()).unwrap();
    let report = n1.start_report().clone();
    assert!(report.restarted);
    assert_eq!(report.backed_out, 1);
    assert_eq!(report.pages_written, pages.len(), "{report:?}");
    if ring_expected(&n1, dir.path()) {
        let io = report.io;
        assert!(io.ring_writes >= pages.len() as u64, "{io}");
        assert!(io.ring_syncs >= 1, "{io}");
        assert!(
            io.call_writes <= 1,
            "at most the end record's log write as a pwrite: {io}"
        );
    }
    let mut r = n1.begin().unwrap();
    for k in &keys {
        assert_eq!(r.get("t", k).unwrap().as_deref(), Some(&b"committed"[..]));
    }
    r.rollback().unwrap();
}
