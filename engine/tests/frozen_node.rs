//! A failed node whose process is frozen (SIGSTOP) cannot be fenced: it
//! still holds its files, and a write of it could land whenever it thaws.
//! Automatic recovery keeps trying without touching anything, and recovers
//! it as soon as the process is gone.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use std::time::Duration;

mod common;

use common::{read, signal, wait_for};
use understudy::admin::lock_client;
use understudy::{Node, NodeOptions};

const CHILD_VAR: &str = "UNDERSTUDY_FROZEN_CHILD_CLUSTER";

/// Node 1 as a child: commits a value, leaves a change of it in flight (its
/// undo record durable), prints `READY` and waits.
#[test]
fn frozen_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let opts = NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let node = Node::open(Path::new(&dir), 1, opts).expect("child joins");
    let mut t = node.begin().unwrap();
    t.put("t", b"k", b"committed").unwrap();
    t.commit().unwrap();
    let mut t = node.begin().unwrap();
    t.put("t", b"k", b"in flight").unwrap();
    node.checkpoint().unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(t);
}

#[test]
fn a_frozen_node_is_recovered_once_its_process_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = common::watching_node(dir.path());

    let mut child = common::child_test("frozen_child", &[(CHILD_VAR, dir.path().as_os_str())]);
    let ready = BufReader::new(child.take_stdout().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("READY"));
    assert!(ready, "the child did not start");

    signal(&child, "-STOP");
    wait_for("node 1 to be declared failed", || {
        lock_client(&n2)
            .status()
            .unwrap()
            .iter()
            .any(|m| m.node == 1 && !m.live)
    });
    // Several rounds of patience go by: nothing may be recovered while the
    // frozen process holds its files.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(n2.recoveries().is_empty(), "recovered a node that could still write");
    assert!(!lock_client(&n2).retained(1).unwrap().is_empty());

    child.kill().unwrap();
    wait_for("node 2 to recover node 1", || !n2.recoveries().is_empty());
    let tl = n2.recoveries().pop().unwrap();
    assert_eq!((tl.failed, tl.in_flight), (1, 1));
    assert_eq!(read(&n2, b"k").as_deref(), Some(&b"committed"[..]));
    assert!(lock_client(&n2).retained(1).unwrap().is_empty());
}
