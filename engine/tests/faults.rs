//! Faults injected through the I/O layer, corrupt pages, and a node's own
//! crash recovery interrupted and run again.
//!
//! Each test runs a coordinator in the test process and nodes whose I/O may
//! go through the fault injector. A failed write or sync during a
//! transaction must surface as a typed error and stop the node; after the
//! node restarts, every acknowledged commit is there and no transaction is
//! half applied.

use std::path::Path;
use std::time::Duration;

mod common;

use lockmgr::Coordinator;
use understudy::{Error, Node, NodeOptions};
use wal::io::fault::{CrashMode, FaultInjector};
use wal::io::{Io, OpKind};

fn setup(dir: &Path) -> Coordinator {
    common::cluster_with_coordinator(dir, &[1, 2]).1
}

fn opts(io: Option<Io>) -> NodeOptions {
    NodeOptions {
        io,
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(500),
        ..NodeOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Reads every key of `t` through a fresh node 2.
fn read_all(dir: &Path, keys: u32) -> Vec<Option<Vec<u8>>> {
    let node = Node::open(dir, 2, opts(None)).unwrap();
    let mut t = node.begin().unwrap();
    let out = (0..keys).map(|i| t.get("t", &key(i)).unwrap()).collect();
    t.rollback().unwrap();
    node.close().unwrap();
    out
}

/// Each transaction writes the same value `v` into two keys `2i`, `2i+1` of
/// different buckets: both or neither must survive.
fn pair_value(txn_no: u32) -> Vec<u8> {
    format!("value-{txn_no}").into_bytes()
}

/// Runs transactions on node 1 (through `io`) until one fails; returns the
/// numbers of the transactions acknowledged and of the one that failed.
fn run_until_failure(node: &Node, count: u32) -> (Vec<u32>, Option<u32>) {
    let mut acked = Vec::new();
    for n in 0..count {
        let pair = n % 20;
        let step = (|| -> Result<(), Error> {
            let mut t = node.begin()?;
            t.put("t", &key(2 * pair), &pair_value(n))?;
            t.put("t", &key(2 * pair + 1), &pair_value(n))?;
            t.commit()
        })();
        match step {
            Ok(()) => acked.push(n),
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::CommitFailed(_) | Error::Log(_) | Error::Stopped(_) | Error::Io(_)
                    ),
                    "an I/O failure surfaces as a typed error, got {e:?}"
                );
                assert!(node.stopped().is_some(), "the node stops after an I/O failure ({e})");
                assert!(
                    matches!(node.begin(), Err(Error::Stopped(_))),
                    "a stopped node refuses work"
                );
                return (acked, Some(n));
            }
        }
    }
    (acked, None)
}

fn check_pairs(values: &[Option<Vec<u8>>], acked: &[u32], failed: Option<u32>) {
    for pair in 0..20u32 {
        let (a, b) = (&values[2 * pair as usize], &values[2 * pair as usize + 1]);
        assert_eq!(a, b, "pair {pair} half applied");
        // The last acknowledged transaction of this pair, unless the failed
        // one (whose commit is in doubt) came later and made it.
        let last_acked = acked.iter().rev().find(|&&n| n % 20 == pair).map(|&n| pair_value(n));
        let in_doubt = failed.filter(|&n| n % 20 == pair).map(pair_value);
        assert!(
            a.as_ref() == last_acked.as_ref() || (in_doubt.is_some() && a.as_ref() == in_doubt.as_ref()),
            "pair {pair}: found {a:?}, last acknowledged {last_acked:?}"
        );
    }
}

#[test]
fn an_error_at_every_write_and_sync_site_stops_the_node_and_loses_no_commit() {
    for kind in [OpKind::Write, OpKind::Sync] {
        // Each transaction makes a few writes and syncs (log, pages, commit);
        // stepping the failure through 1..=18 hits every site several times.
        for nth in 1..=18u64 {
            let dir = tempfile::tempdir().unwrap();
            let _coord = setup(dir.path());
            let admin = Node::open(dir.path(), 2, opts(None)).unwrap();
            admin.create_table("t", 4).unwrap();
            admin.close().unwrap();

            let fi = FaultInjector::new(Io::fallback());
            let node = Node::open(dir.path(), 1, opts(Some(fi.io()))).unwrap();
            fi.fail_nth(kind, nth, if nth % 2 == 0 { libc::EIO } else { libc::ENOSPC });
            let (acked, failed) = run_until_failure(&node, 30);
            assert!(failed.is_some(), "{kind} #{nth} never failed");
            drop(node);

            // Restart: own recovery backs out whatever was in flight.
            let node = Node::open(dir.path(), 1, opts(None)).unwrap();
            assert!(
                node.start_report().restarted,
                "{kind} #{nth}: the stopped node restarts to recover"
            );
            node.close().unwrap();
            check_pairs(&read_all(dir.path(), 40), &acked, failed);
        }
    }
}

#[test]
fn a_crash_mid_commit_is_backed_out_by_the_nodes_own_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, fi, node) = faulty_node(dir.path());
    let (acked, _) = run_until_failure(&node, 10);
    assert_eq!(acked.len(), 10);
    // The next commit's page batch is torn after the first page: that page
    // is on disk, the other is not, and the commit record never made it.
    let mut t = node.begin().unwrap();
    t.put("t", &key(0), b"torn").unwrap();
    t.put("t", &key(1), b"torn").unwrap();
    let writes_before = fi.count(OpKind::Write);
    // Log write of the undo records, then the first page write is kept whole
    // and the second torn at its start.
    fi.tear_nth_write(3, 0);
    let e = t.commit().unwrap_err();
    assert!(matches!(e, Error::CommitFailed(_)), "{e:?}");
    assert!(fi.count(OpKind::Write) > writes_before);
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);
    let node = Node::open(dir.path(), 1, opts(None)).unwrap();
    assert!(node.start_report().restarted);
    assert_eq!(node.start_report().backed_out, 1, "the torn commit was in flight");
    node.close().unwrap();
    check_pairs(&read_all(dir.path(), 40), &acked, None);
}

#[test]
fn recovery_interrupted_by_a_failure_and_run_again_gives_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let _coord = setup(dir.path());
    let admin = Node::open(dir.path(), 2, opts(None)).unwrap();
    admin.create_table("t", 8).unwrap();
    admin.close().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let node = Node::open(dir.path(), 1, opts(Some(fi.io()))).unwrap();
    let (acked, _) = run_until_failure(&node, 20);
    // An in-flight transaction over many pages, then the device dies with
    // the commit's page writes on disk but no commit record.
    let mut t = node.begin().unwrap();
    for i in 0..40 {
        t.put("t", &key(i), b"in-flight").unwrap();
    }
    // Undo write, then page writes: the crash comes at the sync.
    fi.fail_nth(OpKind::Sync, 2, libc::EIO);
    assert!(t.commit().is_err());
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);

    // The first restart fails while writing the before-images back.
    let fi2 = FaultInjector::new(Io::fallback());
    fi2.fail_nth(OpKind::Write, 3, libc::EIO);
    let first = Node::open(dir.path(), 1, opts(Some(fi2.io())));
    assert!(first.is_err(), "recovery met the injected failure");
    drop(first);
    // The second finishes the job; the data is as if the first never ran.
    let node = Node::open(dir.path(), 1, opts(None)).unwrap();
    assert!(node.start_report().restarted);
    assert_eq!(node.start_report().backed_out, 1);
    node.close().unwrap();
    check_pairs(&read_all(dir.path(), 40), &acked, None);
}

#[test]
fn a_flipped_bit_in_a_page_is_reported_with_file_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let _coord = setup(dir.path());
    let node = Node::open(dir.path(), 1, opts(None)).unwrap();
    node.create_table("t", 1).unwrap();
    let mut t = node.begin().unwrap();
    t.put("t", b"k", b"precious").unwrap();
    t.commit().unwrap();
    // The table's only bucket is page 1 of its file.
    let file = understudy::admin::table_path(&dir.path().join("data"), 1);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 40] ^= 0x04;
    std::fs::write(&file, &bytes).unwrap();
    // Read by a node that has no copy of the page in its buffer pool (node
    // 1's copy is current as far as anyone wrote: the damage came behind
    // every node's back), so the read goes to the device.
    let reader = Node::open(dir.path(), 2, opts(None)).unwrap();
    let mut t = reader.begin().unwrap();
    match t.get("t", b"k") {
        Err(Error::CorruptPage { file: f, page, .. }) => {
            assert_eq!(f, file);
            assert_eq!(page, 1);
        }
        other => panic!("corruption returned as {other:?}"),
    }
}

/// A cluster with table `t`, and node 1 on a fault-injecting device.
fn faulty_node(dir: &Path) -> (Coordinator, std::sync::Arc<FaultInjector>, Node) {
    faulty_node_over(dir, 4, 0)
}

/// [`faulty_node`] with `t` of `buckets` buckets, holding `k0000`.. =
/// `old-0000`.. for the first `rows` keys (written by node 2).
fn faulty_node_over(dir: &Path, buckets: u32, rows: u32) -> (Coordinator, std::sync::Arc<FaultInjector>, Node) {
    let coord = setup(dir);
    let admin = Node::open(dir, 2, opts(None)).unwrap();
    admin.create_table("t", buckets).unwrap();
    if rows > 0 {
        let mut t = admin.begin().unwrap();
        for i in 0..rows {
            t.put("t", &key(i), format!("old-{i:04}").as_bytes()).unwrap();
        }
        t.commit().unwrap();
    }
    admin.close().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let node = Node::open(dir, 1, opts(Some(fi.io()))).unwrap();
    (coord, fi, node)
}

/// Restarts node 1, which must recover itself finding `decided` (committed,
/// backed out) in-flight transactions, then checks the pairs.
fn restart_and_check(dir: &Path, decided: (usize, usize), acked: &[u32]) {
    let node = Node::open(dir, 1, opts(None)).unwrap();
    let report = node.start_report().clone();
    assert!(report.restarted);
    assert_eq!((report.committed, report.backed_out), decided, "{report:?}");
    node.close().unwrap();
    check_pairs(&read_all(dir, 40), acked, None);
}

/// Commits `n`'s pair on `node` and returns what `commit` said.
fn commit_pair(node: &Node, n: u32) -> Result<(), Error> {
    let pair = n % 20;
    let mut t = node.begin()?;
    t.put("t", &key(2 * pair), &pair_value(n))?;
    t.put("t", &key(2 * pair + 1), &pair_value(n))?;
    t.commit()
}

#[test]
fn an_acknowledged_commit_whose_commit_record_was_lost_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, fi, node) = faulty_node(dir.path());
    let (mut acked, _) = run_until_failure(&node, 5);
    node.checkpoint().unwrap(); // earlier commit records are durable
                                // Write 1: the intent (synced). Writes 2 and 3: the pages (synced).
                                // Write 4: the commit record, on the log flush after the acknowledgement.
    fi.fail_nth(OpKind::Write, 4, libc::EIO);
    commit_pair(&node, 5).expect("the pages and the intent are durable: committed");
    acked.push(5);
    common::wait_for("the failed commit-record flush to stop the node", || {
        node.stopped().is_some()
    });
    fi.crash(CrashMode::DropUnsynced).unwrap();
    drop(node);

    // The log holds the intent and no commit record; every page carries
    // the intent's stamp, so the restart keeps the commit.
    restart_and_check(dir.path(), (1, 0), &acked);
}

#[test]
fn a_commit_torn_between_its_pages_with_the_log_gone_is_backed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, fi, node) = faulty_node(dir.path());
    let (acked, _) = run_until_failure(&node, 5);
    node.checkpoint().unwrap();
    // Write 1: the intent. Write 2: the first page, whole. Write 3: the
    // second page, torn before its first sector. Write 4: the abort the
    // failed commit tries to log, which fails too, so only the pages can
    // tell recovery what happened: one carries the intent's stamp, the
    // other does not.
    fi.tear_nth_write(3, 0);
    fi.fail_nth(OpKind::Write, 4, libc::EIO);
    assert!(matches!(commit_pair(&node, 5), Err(Error::CommitFailed(_))));
    assert!(node.stopped().is_some());
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);

    restart_and_check(dir.path(), (0, 1), &acked);
}

/// Node 1 on a fault-injecting device, over a table `t` of one bucket
/// holding `k0000`..`k0039` = `old-0000`..: every item in page 1.
fn one_bucket_node(dir: &Path) -> (Coordinator, std::sync::Arc<FaultInjector>, Node) {
    faulty_node_over(dir, 1, 40)
}

fn all_old(dir: &Path) -> bool {
    read_all(dir, 40)
        .iter()
        .enumerate()
        .all(|(i, v)| v.as_deref() == Some(format!("old-{i:04}").as_bytes()))
}

/// The undo log holds the changed byte ranges, not whole pages; a page
/// torn by the crash, new in its first sector and old after it, is put
/// back byte for byte from them.
#[test]
fn a_page_torn_mid_write_is_put_back_whole_from_its_byte_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, fi, node) = one_bucket_node(dir.path());
    let mut t = node.begin().unwrap();
    // Item 1 lies in the page's first sector, items 30.. past it (items
    // take 17 bytes from offset 48).
    for i in [1, 30, 35, 39] {
        t.put("t", &key(i), format!("new-{i:04}").as_bytes()).unwrap();
    }
    // Write 1: the log (undo, intent). Write 2: the page, torn after its
    // first sector.
    fi.tear_nth_write(2, 1);
    assert!(matches!(t.commit(), Err(Error::CommitFailed(_))));
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);
    // The before-images in node 1's log: the bytes that changed ("old" to
    // "new" in each value), and the page's header once, which item 1's
    // range, close to it, joins; not the page.
    let reader = wal::LogReader::open(&dir.path().join("logs").join("1"), Io::fallback()).unwrap();
    let mut images: Vec<(u32, usize)> = Vec::new();
    for rec in reader.scan(reader.start_lsn()) {
        if let wal::RecordBody::Undo(u) = rec.unwrap().body {
            images.push((u.offset_in_page, u.before.len()));
        }
    }
    images.sort();
    let item_value = |i: u32| 48 + 17 * i + 9;
    assert_eq!(
        images,
        vec![
            (0, item_value(1) as usize + 3),
            (item_value(30), 3),
            (item_value(35), 3),
            (item_value(39), 3)
        ],
        "the changed ranges"
    );
    let page = &std::fs::read(understudy::admin::table_path(&dir.path().join("data"), 1)).unwrap()[4096..8192];
    assert!(
        page.windows(8).any(|w| w == b"new-0001") && page.windows(8).any(|w| w == b"old-0030"),
        "the page on disk is torn: new in its first sector, old after"
    );

    let node = Node::open(dir.path(), 1, opts(None)).unwrap();
    assert_eq!(node.start_report().backed_out, 1);
    node.close().unwrap();
    assert!(all_old(dir.path()), "every value as before the transaction");
}

/// Backing out writes only the changed ranges over the page as it is; a
/// page damaged elsewhere does not come out right, and recovery reports it
/// as corruption of that page instead of writing it.
#[test]
fn a_page_damaged_outside_the_changed_ranges_stops_recovery_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, fi, node) = one_bucket_node(dir.path());
    let mut t = node.begin().unwrap();
    t.put("t", &key(1), b"new-0001").unwrap();
    // Write 1 and sync 1: the log. Write 2: the page. Sync 2 fails.
    fi.fail_nth(OpKind::Sync, 2, libc::EIO);
    assert!(t.commit().is_err());
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(node);
    // Item 35's value: bytes the transaction never changed.
    let file = understudy::admin::table_path(&dir.path().join("data"), 1);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 48 + 17 * 35 + 10] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    match Node::open(dir.path(), 1, opts(None)) {
        Err(Error::CorruptPage { file: f, page, .. }) => assert_eq!((f, page), (file, 1)),
        Err(other) => panic!("reported as {other:?}"),
        Ok(_) => panic!("recovery wrote a damaged page back"),
    }
}
