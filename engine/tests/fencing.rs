//! Fencing of a node that is cut off but still running.
//!
//! Node 1 reaches the coordinator through a proxy that this test can cut
//! without closing anything, and writes its pages through a device that sits
//! on them: its commit is stuck inside a page write when the cut comes. Its
//! lease lapses, it stops, the coordinator declares it failed after the
//! silence, and node 2 sets out to recover it — while node 1's write is
//! still pending. A counterpart that trusted the lease alone would write the
//! before-image now and have it overwritten by node 1's late write; the
//! fence must hold it back until that write has landed, and node 1 must
//! write nothing after. The same holds for a counterpart cut off in the
//! middle of its write-back: the next one waits for its write to land.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{read, wait_for};

use understudy::admin::lock_client;
use understudy::Fencing;
use understudy::{Error, Node, NodeOptions};
use wal::io::fault::FaultInjector;
use wal::io::{Io, OpKind};

/// How long anything in this test may take before it counts as stuck.
const PATIENCE: Duration = Duration::from_secs(30);

/// Copies bytes from `from` to `to` until either side closes; while `cut`
/// is set it copies nothing and closes nothing, like a dead network.
fn pipe(mut from: UnixStream, mut to: UnixStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let deadline = Instant::now() + 2 * PATIENCE;
        let mut buf = [0u8; 64 << 10];
        while Instant::now() < deadline {
            if cut.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    });
}

/// A proxy from `listen` to `target`; set the flag to cut every connection.
fn proxy(listen: &Path, target: &Path) -> Arc<AtomicBool> {
    let cut = Arc::new(AtomicBool::new(false));
    let listener = UnixListener::bind(listen).unwrap();
    let target = target.to_path_buf();
    let flag = cut.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(down) = conn else { return };
            let Ok(up) = UnixStream::connect(&target) else { return };
            pipe(down.try_clone().unwrap(), up.try_clone().unwrap(), flag.clone());
            pipe(up, down, flag.clone());
        }
    });
    cut
}

#[test]
fn a_cut_off_node_stops_writing_before_its_counterpart_writes_a_before_image() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let cut = proxy(&dir.path().join("p.sock"), &dir.path().join("c.sock"));
    let device = FaultInjector::new(Io::fallback());
    let n1 = Node::open(
        dir.path(),
        1,
        NodeOptions {
            io: Some(device.io()),
            coordinator: Some(format!("unix:{}", dir.path().join("p.sock").display()).parse().unwrap()),
            auto_recovery: false,
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let n2 = Node::open(dir.path(), 2, NodeOptions::default()).unwrap();
    n2.create_table("t", 4).unwrap();
    let mut t = n1.begin().unwrap();
    t.put("t", b"k", b"committed").unwrap();
    t.commit().unwrap();

    // Node 1's next commit gets stuck in the device, undo records durable.
    let mut t = n1.begin().unwrap();
    t.put("t", b"k", b"never committed").unwrap();
    device.stall_writes(".tbl");
    let commit = std::thread::spawn(move || t.commit());
    wait_for("the commit to reach the page write", || device.stalled() == 1);
    let writes_when_stuck = device.count(OpKind::Write);

    cut.store(true, Ordering::Release);
    wait_for("node 1 to stop on its lapsed lease", || n1.stopped().is_some());
    wait_for("the coordinator to declare node 1 failed", || {
        lock_client(&n2)
            .status()
            .unwrap()
            .iter()
            .any(|m| m.node == 1 && !m.live)
    });
    // Several leases go by; with the write still pending, no recovery may
    // get past fencing, however long ago the lease ran out.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        n2.recoveries().is_empty(),
        "node 2 recovered node 1 while its write was still in flight"
    );
    assert!(
        !lock_client(&n2).retained(1).unwrap().is_empty(),
        "its page stays retained"
    );

    // The device finishes the write. Only now may the counterpart go on.
    device.release_stalled();
    let result = commit.join().unwrap();
    let writes_at_the_end = device.count(OpKind::Write);
    assert!(writes_at_the_end > writes_when_stuck, "the stuck page write did land");
    // The write was under way when the node stopped, so it lands and is
    // synced: the commit may well succeed (its intent was durable and every
    // page is now stamped). Whatever it says, recovery must agree, which it
    // can only do by reading the pages after the late write.
    assert!(
        matches!(
            result,
            Ok(()) | Err(Error::CommitFailed(_) | Error::LeaseLost | Error::Stopped(_))
        ),
        "{result:?}"
    );
    wait_for("node 2 to recover node 1", || !n2.recoveries().is_empty());
    let tl = n2.recoveries().pop().unwrap();
    assert_eq!((tl.failed, tl.fencing, tl.in_flight), (1, Fencing::Kernel, 1));
    let (decided, value): (usize, &[u8]) = if result.is_ok() {
        (1, b"never committed")
    } else {
        (0, b"committed")
    };
    assert_eq!(
        (tl.committed, read(&n2, b"k").as_deref()),
        (decided, Some(value)),
        "recovery decided after node 1's late write, not under it, and agrees with what its commit said"
    );
    assert!(lock_client(&n2).retained(1).unwrap().is_empty());
    // Node 1, stopped, wrote nothing more: not to its log (a peer appended
    // end records there), not to the data files.
    assert_eq!(device.count(OpKind::Write), writes_at_the_end);
    drop(n1);
}

#[test]
fn a_cut_off_counterpart_is_fenced_before_the_next_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2, 3]);
    let manual = || NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let n3 = Node::open(dir.path(), 3, manual()).unwrap();
    n3.create_table("t", 4).unwrap();

    // Node 1 fails with a page on disk and its commit aborted.
    let _disk1 = common::node_1_fails_mid_commit(dir.path(), manual(), b"never committed");

    // Node 2, behind a proxy, registers and gets stuck writing back.
    let cut = proxy(&dir.path().join("p.sock"), &dir.path().join("c.sock"));
    let (n2, disk2) = common::node_with_faults(
        dir.path(),
        2,
        NodeOptions {
            coordinator: Some(format!("unix:{}", dir.path().join("p.sock").display()).parse().unwrap()),
            ..manual()
        },
    );
    wait_for("node 1 to be declared failed", || {
        lock_client(&n3)
            .status()
            .unwrap()
            .iter()
            .any(|m| m.node == 1 && !m.live)
    });
    disk2.stall_writes(".tbl");
    let first = {
        let n2 = n2.clone();
        std::thread::spawn(move || n2.recover_peer(1))
    };
    wait_for("node 2's write-back to get stuck", || disk2.stalled() == 1);

    // Cut off, it stops; the coordinator fails it and node 1 is inactive.
    cut.store(true, Ordering::Release);
    wait_for("node 2 to stop", || n2.stopped().is_some());
    wait_for("node 2 to be declared failed and node 1 free again", || {
        let st = lock_client(&n3).status().unwrap();
        st.iter().any(|m| m.node == 2 && !m.live) && st.iter().any(|m| m.node == 1 && m.recovery == 1)
    });
    let second = {
        let n3 = n3.clone();
        std::thread::spawn(move || n3.recover_peer(1))
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !second.is_finished(),
        "node 3 recovered node 1 while node 2's write-back was still in flight"
    );

    // Node 2's write lands; only then does node 3 go on.
    disk2.release_stalled();
    let _ = first.join().unwrap();
    drop(n2);
    let tl = second.join().unwrap().expect("node 3 recovers node 1");
    // Node 2 may have finished the backout (end records included) once its
    // write landed; node 3 then finds nothing left, which is as right.
    assert_eq!((tl.failed, tl.counterpart), (1, 3));
    assert_eq!(read(&n3, b"k").as_deref(), Some(&b"committed"[..]));
    assert!(lock_client(&n3).retained(1).unwrap().is_empty());
}
