//! A recovering node that lacks the agent a log needs stops, naming the
//! resource, and writes nothing; the failed node's locks stay retained; a
//! node that registers the agent then completes the recovery.
//!
//! Node 1 (this test binary re-run as `missing_agent_child`) changes a row
//! and writes a file through the file outbox, and is killed with SIGKILL
//! before it commits. Node 2, without the outbox, tries to recover it; then
//! node 1's own restart tries without it; then node 3, with the outbox,
//! recovers it.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{child_test, cluster_with_coordinator, outbox_opts, read, wait_for, OUTBOX};
use understudy::admin::lock_client;
use understudy::{Error, Node, NodeOptions, PeerError};

const CHILD_VAR: &str = "UNDERSTUDY_MISSING_AGENT_CHILD_CLUSTER";

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        auto_recovery: false,
        join_timeout: Duration::from_secs(10),
        ..NodeOptions::default()
    }
}

/// The child: node 1 with the outbox; a transaction in flight with a row
/// and a file aside, then it waits (bounded) for the kill.
#[test]
fn missing_agent_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let dir = Path::new(&dir);
    let (o, outbox) = outbox_opts(dir, opts());
    let node = Node::open(dir, 1, o).expect("child joins");
    let mut t = node.begin().unwrap();
    t.put("t", b"k", b"v").unwrap();
    outbox.put(&mut t, "f", b"F").unwrap();
    println!("PREPARED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

#[test]
fn a_node_without_the_agent_stops_recovery_naming_the_resource_and_one_with_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = cluster_with_coordinator(dir.path(), &[1, 2, 3]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    n2.create_table("t", 4).unwrap();

    let mut child = child_test("missing_agent_child", &[(CHILD_VAR, dir.path().as_os_str())]);
    let (lines, _) = harness::read_lines(child.take_stdout().unwrap());
    while !lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the child prepares its transaction")
        .ends_with("PREPARED")
    {}
    child.kill().unwrap();
    let (_, outbox) = outbox_opts(dir.path(), opts());
    assert_eq!(outbox.aside().unwrap().len(), 1);

    // A peer without the agent: refused, naming the resource, before any
    // write; the locks stay retained.
    let mut refused = None;
    wait_for("node 2's recovery attempt of node 1", || match n2.recover_peer(1) {
        Err(PeerError::NotFailed { .. }) => false,
        other => {
            refused = Some(other);
            true
        }
    });
    match refused.unwrap() {
        Err(PeerError::Failed {
            source: Error::MissingAgent { resource, node, .. },
            ..
        }) => assert_eq!((resource, node), (OUTBOX, 1)),
        other => panic!("expected a missing agent, got {other:?}"),
    }
    let message = n2.recover_peer(1).unwrap_err().to_string();
    assert!(message.contains("resource 1"), "{message}");
    assert!(
        !lock_client(&n2).retained(1).unwrap().is_empty(),
        "the locks stay retained"
    );
    assert_eq!(outbox.aside().unwrap().len(), 1, "nothing undone");

    // Its own restart without the agent: the same.
    match Node::open(dir.path(), 1, opts()) {
        Err(Error::MissingAgent { resource, node: 1, .. }) => assert_eq!(resource, OUTBOX),
        Err(e) => panic!("expected a missing agent, got {e}"),
        Ok(_) => panic!("a restart without the agent succeeded"),
    }
    wait_for("node 1's locks retained again", || {
        !lock_client(&n2).retained(1).unwrap().is_empty()
    });
    assert_eq!(outbox.aside().unwrap().len(), 1, "nothing undone");

    // A node that registers the agent completes it.
    let (o, _) = outbox_opts(dir.path(), opts());
    let n3 = Node::open(dir.path(), 3, o).unwrap();
    wait_for("node 3 to recover node 1", || match n3.recover_peer(1) {
        Ok(tl) => {
            assert_eq!(tl.agent_work, 1);
            true
        }
        Err(PeerError::NotFailed { .. }) => false,
        Err(e) => panic!("node 3's recovery failed: {e}"),
    });
    assert!(lock_client(&n2).retained(1).unwrap().is_empty());
    assert!(outbox.aside().unwrap().is_empty());
    assert!(outbox.published().unwrap().is_empty());
    assert_eq!(read(&n2, b"k"), None);
}
