//! A failed node whose log is damaged in its durable part: peer recovery
//! stops with a clear error naming the LSN, releases no lock (the failed
//! node's write locks stay retained), and leaves the registration abandoned
//! so another attempt — after an operator repaired the log — can register.

use std::os::unix::fs::FileExt;
use std::time::Duration;

mod common;

use understudy::admin::lock_client;
use understudy::PeerError;
use understudy::{Error, Node, NodeOptions};
use wal::io::fault::{CrashMode, FaultInjector};
use wal::io::Io;

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

#[test]
fn a_damaged_failed_log_abandons_recovery_and_keeps_the_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    n2.create_table("t", 4).unwrap();
    n2.create_table("u", 4).unwrap();

    // Node 1 commits a few transactions, leaves one in flight holding X
    // locks, and its device dies.
    let fi = FaultInjector::new(Io::fallback());
    let n1 = Node::open(
        dir.path(),
        1,
        NodeOptions {
            io: Some(fi.io()),
            ..opts()
        },
    )
    .unwrap();
    for i in 0..20u32 {
        let mut t = n1.begin().unwrap();
        t.put("t", format!("k{i}").as_bytes(), b"committed").unwrap();
        t.commit().unwrap();
    }
    let mut open = n1.begin().unwrap();
    open.put("t", b"k0", b"in flight").unwrap();
    let open_id = open.id();
    n1.checkpoint().unwrap();
    // A later durable flush, so that damage before it is provably damage
    // to acknowledged data and not a torn tail.
    let mut later = n1.begin().unwrap();
    later.put("u", b"later", b"committed").unwrap();
    later.commit().unwrap();
    fi.crash(CrashMode::KeepUnsynced).unwrap();
    drop(open);
    drop(n1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock_client(&n2).retained(1).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 never failed with its locks retained"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let retained = lock_client(&n2).retained(1).unwrap();

    // Damage the in-flight transaction's undo record (later flushes follow).
    let reader = wal::LogReader::open(&cluster.log_dir(1), Io::fallback()).unwrap();
    let victim = reader
        .scan(reader.start_lsn())
        .map(|r| r.unwrap())
        .find(|r| r.meta.txn == open_id && matches!(r.body, wal::RecordBody::Undo(_)))
        .expect("the in-flight undo record")
        .lsn;
    let layout = reader.layout();
    let seg = wal::segment::segment_path(&cluster.log_dir(1), layout.segment_of(victim));
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    let at = layout.file_offset(victim) + 100;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();

    match n2.recover_peer(1) {
        Err(PeerError::Failed {
            failed: 1,
            source: Error::Log(wal::WalError::Corruption { lsn, .. }),
            ..
        }) => assert_eq!(lsn, victim, "names the damaged LSN"),
        other => panic!("expected a corruption failure, got {other:?}"),
    }
    // No lock was released, and the registration is abandoned: inactive.
    assert_eq!(lock_client(&n2).retained(1).unwrap(), retained);
    let st = lock_client(&n2).status().unwrap();
    let m = st.iter().find(|m| m.node == 1).unwrap();
    assert!(!m.live);
    assert_eq!(
        m.recovery, 1,
        "recovery inactive again, so another attempt may register"
    );
    // Its pages are still protected: a reader is refused at once, naming
    // the failed node.
    let mut t = n2.begin().unwrap();
    let got = t.get("t", b"k0");
    assert!(
        matches!(got, Err(Error::Retained { node: 1, .. })),
        "read through a retained lock: {got:?}"
    );
}
