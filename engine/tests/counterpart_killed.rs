//! A counterpart killed in the middle of a recovery is replaced, and the
//! data ends the same.
//!
//! Node 1 fails with a transaction whose page reached the data file but
//! whose commit did not complete (the page's sync fails, and the node logs
//! the commit's abort before it stops). Node 2, a
//! child process (this test binary re-run as `counterpart_child`), registers
//! as its counterpart and gets as far as writing the before-image, where its
//! device sits on the write; it is killed there with SIGKILL. Node 3 then
//! registers, recovers node 1 from the start, and the page holds its
//! before-image: the committed value.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{member, read, wait_for};

use understudy::admin::lock_client;
use understudy::{Node, NodeOptions};
use wal::io::fault::FaultInjector;
use wal::io::Io;

const CHILD_VAR: &str = "UNDERSTUDY_COUNTERPART_CHILD_CLUSTER";
const PATIENCE: Duration = Duration::from_secs(30);

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

/// Node 2 as a child: starts recovering node 1, and once its write-back is
/// stuck in the device prints `STUCK`, then waits to be killed.
#[test]
fn counterpart_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let device = FaultInjector::new(Io::fallback());
    let node = Node::open(
        Path::new(&dir),
        2,
        NodeOptions {
            io: Some(device.io()),
            ..opts()
        },
    )
    .expect("child joins");
    device.stall_writes(".tbl");
    let recovering = node.clone();
    std::thread::spawn(move || recovering.recover_peer(1));
    let deadline = Instant::now() + PATIENCE;
    while device.stalled() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("STUCK {}", device.stalled());
    std::thread::sleep(PATIENCE);
}

#[test]
fn a_counterpart_killed_mid_recovery_is_replaced_and_the_data_ends_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2, 3]);
    let n3 = Node::open(dir.path(), 3, opts()).unwrap();
    n3.create_table("t", 4).unwrap();

    // Node 1: one committed value, then a commit that writes its page and
    // fails on the page's sync.
    let _device = common::node_1_fails_mid_commit(dir.path(), opts(), b"torn");
    wait_for("node 1 to be declared failed", || !member(&n3, 1).live);

    // Node 2 registers and gets stuck writing the before-image; kill it.
    let mut child = common::child_test("counterpart_child", &[(CHILD_VAR, dir.path().as_os_str())]);
    let lines = BufReader::new(child.take_stdout().unwrap()).lines();
    let stuck = lines
        .map_while(Result::ok)
        .find(|l| l.contains("STUCK "))
        .expect("child output");
    assert!(
        stuck.ends_with("STUCK 1"),
        "the child's write-back never started: {stuck}"
    );
    let m1 = member(&n3, 1);
    assert_eq!(
        (m1.recovery, m1.counterpart),
        (2, 2),
        "node 2 is the active counterpart"
    );
    child.kill().unwrap();
    wait_for("node 2's registration to be dropped", || member(&n3, 1).recovery == 1);
    assert!(
        !lock_client(&n3).retained(1).unwrap().is_empty(),
        "nothing released yet"
    );

    // Node 3 takes over and finishes.
    let tl = n3.recover_peer(1).expect("node 3 recovers node 1");
    assert_eq!((tl.failed, tl.counterpart, tl.in_flight), (1, 3, 1));
    assert_eq!(read(&n3, b"k").as_deref(), Some(&b"committed"[..]));
    assert!(lock_client(&n3).retained(1).unwrap().is_empty());
    assert_eq!(member(&n3, 1).recovery, 3, "recovered");
    // Node 1's own restart finds nothing left to back out.
    let n1 = Node::open(dir.path(), 1, opts()).unwrap();
    assert_eq!(n1.start_report().backed_out, 0);
    assert_eq!(read(&n1, b"k").as_deref(), Some(&b"committed"[..]));
}
