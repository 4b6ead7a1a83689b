//! The write-back of a recovery that spans many rounds: a failed node's
//! in-flight transaction wrote more pages than one round of the write-back
//! holds to the data file (its commit failed on the log write of its commit
//! record); after peer recovery every page holds its last committed state.
//! Beside it, another in-flight transaction of the node never reached its
//! commit intent: its pages never left memory, so the recovery reads them
//! and writes none of them.

use std::time::Duration;

mod common;

use understudy::{Node, NodeOptions};

/// Many times `recovery::WRITE_BACK_CHUNK` (256) pages.
const BUCKETS: u32 = 2500;
/// The buckets of the table the transaction short of its intent changes.
const SHORT_PAGES: u32 = 16;

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        lock_wait: Duration::from_secs(5),
        ..NodeOptions::default()
    }
}

/// A key of each bucket: keys are tried in order until every bucket has one.
fn one_key_per_bucket() -> Vec<Vec<u8>> {
    let mut keys: Vec<Option<Vec<u8>>> = vec![None; BUCKETS as usize];
    let mut missing = BUCKETS as usize;
    for i in 0u64.. {
        let k = format!("key-{i}").into_bytes();
        let b = understudy::admin::bucket_page(&k, BUCKETS) as usize - 1;
        if keys[b].is_none() {
            keys[b] = Some(k);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    keys.into_iter().map(|k| k.expect("every bucket got a key")).collect()
}

#[test]
fn every_page_of_a_large_in_flight_transaction_gets_its_oldest_image_back_and_one_short_of_its_intent_costs_reads_only()
{
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    n2.create_table("t", BUCKETS).unwrap();
    let keys = one_key_per_bucket();

    n2.create_table("u", SHORT_PAGES).unwrap();
    let short_keys: Vec<Vec<u8>> = (0..40).map(|i| format!("short-{i}").into_bytes()).collect();
    let short_pages: std::collections::HashSet<u64> = short_keys
        .iter()
        .map(|k| understudy::admin::bucket_page(k, SHORT_PAGES))
        .collect();

    let (n1, device) = common::node_with_faults(dir.path(), 1, opts());
    let mut t = n1.begin().unwrap();
    for k in keys.iter().step_by(2) {
        t.put("t", k, b"committed").unwrap();
    }
    for k in &short_keys {
        t.put("u", k, b"committed").unwrap();
    }
    t.commit().unwrap();
    // In flight short of its intent: rows changed in memory, undo logged.
    let mut short = n1.begin().unwrap();
    for k in &short_keys {
        short.put("u", k, b"never committed").unwrap();
    }
    // In flight: every bucket changed and written to the data file, the
    // sync failing after them (the undo records were made durable by a
    // checkpoint first). The commit is aborted and the node stops.
    let pages = u64::from(BUCKETS);
    let writes = common::stop_mid_commit(&n1, &device, "t", &keys, b"in flight");
    assert!(writes > pages, "the intent and every page were written");
    // Left in flight, as a process killed would leave it.
    std::mem::forget(short);
    drop(n1);
    common::wait_declared_failed(&n2, 1);

    let tl = n2.recover_peer(1).unwrap();
    assert_eq!(tl.in_flight, 2);
    assert_eq!(tl.pages, BUCKETS as usize + short_pages.len(), "each page once");
    assert_eq!(
        tl.pages_written, BUCKETS as usize,
        "the pages of the transaction short of its intent are read, not written"
    );
    // On a file system that takes direct I/O with io_uring available (ext4
    // here), every page went back through the ring, and the reads too:
    // counted as the I/O layer routed them, on the recovering thread.
    if n2.io_backend() == understudy::BackendKind::Uring && n2.direct_io() == Some(true) {
        assert!(tl.io.ring_writes >= pages, "{}", tl.io);
        assert!(
            tl.io.ring_writes < pages + short_pages.len() as u64,
            "no write for a page that held its before-image: {}",
            tl.io
        );
        assert!(tl.io.ring_reads >= pages + short_pages.len() as u64, "{}", tl.io);
        assert!(tl.io.ring_syncs >= 1, "{}", tl.io);
        assert!(
            tl.io.call_writes <= 1,
            "at most the end record's log write as a pwrite: {}",
            tl.io
        );
    } else {
        eprintln!(
            "backend {} with direct I/O {:?}: the ring path is not checked here",
            n2.io_backend(),
            n2.direct_io()
        );
    }
    let mut r = n2.begin().unwrap();
    for (i, k) in keys.iter().enumerate() {
        let want = (i % 2 == 0).then_some(&b"committed"[..]);
        assert_eq!(r.get("t", k).unwrap().as_deref(), want, "key {i}");
    }
    for k in &short_keys {
        assert_eq!(r.get("u", k).unwrap().as_deref(), Some(&b"committed"[..]));
    }
    r.rollback().unwrap();
}
