//! A node that loses its lease joins again by itself.
//!
//! Node 1 runs in a child process with a commit made and a change in
//! flight; the process is frozen (SIGSTOP) past its lease, so the
//! coordinator declares it failed, then thawed. It finds its lease lost and
//! stops — its transaction of the old incarnation can no longer commit —
//! and joins again as a new incarnation through the same handle: its
//! in-flight change is backed out (by its own restart or by node 2,
//! whichever the coordinator lets), and a transaction on the handle
//! commits. Node 2 sees the committed value, not the in-flight one, and the
//! new write; node 1 is live again with a higher incarnation and closes
//! cleanly.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{member, read, said_until, signal, wait_declared_failed};
use understudy::{Node, NodeOptions};

const CHILD_VAR: &str = "UNDERSTUDY_REJOIN_CHILD_CLUSTER";

/// Says `line` on stdout at once.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).expect("stdout");
}

/// Node 1 as a child; see the module docs.
#[test]
fn rejoining_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let opts = NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let node = Node::open(Path::new(&dir), 1, opts).expect("child joins");
    node.run(|t| t.put("t", b"k", b"committed")).unwrap();
    let mut in_flight = node.begin().unwrap();
    in_flight.put("t", b"k", b"in flight").unwrap();
    let first = node.incarnation();
    say(&format!("incarnation={first} READY"));

    // Frozen here by the test, then thawed: wait for the new incarnation.
    let rejoined = harness::wait_for(Duration::from_secs(60), Duration::from_millis(10), || {
        node.incarnation() != first && node.stopped().is_none()
    });
    assert!(rejoined, "never joined again: {:?}", node.stopped());
    match in_flight.commit() {
        Ok(()) => say("OLD COMMITTED"),
        Err(e) => say(&format!("OLD FAILED {e}")),
    }
    node.run(|t| t.put("t", b"after", b"rejoined")).unwrap();
    say(&format!(
        "REJOINED incarnation={} rejoins={}",
        node.incarnation(),
        node.rejoins()
    ));
    node.close().unwrap();
    say("CLOSED");
}

#[test]
fn a_node_frozen_past_its_lease_joins_again_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let n2 = common::watching_node(dir.path());

    let mut child = common::child_test("rejoining_child", &[(CHILD_VAR, dir.path().as_os_str())]);
    let (lines, _) = harness::read_lines(child.take_stdout().unwrap());
    said_until(&lines, "READY", Duration::from_secs(30));
    let first = member(&n2, 1).incarnation;

    signal(&child, "-STOP");
    wait_declared_failed(&n2, 1);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-CONT");

    let said = said_until(&lines, "CLOSED", Duration::from_secs(60));
    let said = said.join("\n");
    eprintln!(
        "node 1 said:\n{said}\nnode 2 recovered it: {}",
        !n2.recoveries().is_empty()
    );
    assert!(
        said.contains("OLD FAILED"),
        "the old incarnation's transaction committed: {said}"
    );
    assert!(said.contains("rejoins=1"), "{said}");
    let exited = child.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the child failed: {exited:?}\n{said}"
    );

    // The in-flight change is gone, the committed value and the new
    // incarnation's write are there.
    assert_eq!(read(&n2, b"k").as_deref(), Some(&b"committed"[..]));
    assert_eq!(read(&n2, b"after").as_deref(), Some(&b"rejoined"[..]));
    let m = member(&n2, 1);
    assert!(m.incarnation > first, "incarnation {} after {first}", m.incarnation);
    assert!(understudy::admin::lock_client(&n2).retained(1).unwrap().is_empty());
}
