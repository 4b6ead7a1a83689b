//! A bank node frozen past its lease (SIGSTOP) is declared failed; thawed,
//! it finds its lease lost, joins again as a new incarnation by itself and
//! goes on acknowledging transfers, while the other node never stops. The
//! transfers it had in flight are lost with the old incarnation (never
//! acknowledged, backed out); at the end the bank adds up and every
//! acknowledged transfer — before and after the freeze — is in the
//! journal. Every wait is bounded; the processes are killed and reaped on
//! every path out.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{bank_cluster, check_bank, member, BankNode, Coordinator, PATIENCE};

/// Acknowledgements each node gives before the freeze, and node 1 after it.
const PROGRESS: usize = 20;

fn signal(node: &BankNode, sig: &str) {
    let pid = node.child.id().expect("not reaped");
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_bank_node_frozen_past_its_lease_joins_again_and_keeps_transferring() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(root.path());
    let d = dir.to_str().expect("UTF-8");
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    let mut n1 = BankNode::start(&dir, 1, &[]);
    let mut n2 = BankNode::start(&dir, 2, &[]);
    assert!(n1.progress(0, PROGRESS) && n2.progress(0, PROGRESS), "no transfers");
    let first = member(d, 1)["incarnation"].as_u64().expect("an incarnation");

    signal(&n1, "-STOP");
    let failed = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        member(d, 1)["state"] == "failed"
    });
    signal(&n1, "-CONT");
    assert!(failed, "node 1 was never declared failed: {}", member(d, 1));

    let rejoined = harness::wait_for(PATIENCE, Duration::from_millis(10), || n1.printed("REJOINED"));
    assert!(rejoined, "node 1 did not join again: {:?}", n1.stdout());
    let seen = n1.acks();
    assert!(
        n1.progress(seen, PROGRESS),
        "node 1 acknowledged nothing after joining again"
    );
    let m = member(d, 1);
    assert_eq!(m["state"], "live", "{m}");
    assert!(m["incarnation"].as_u64().expect("an incarnation") > first, "{m}");
    let seen2 = n2.acks();
    assert!(n2.progress(seen2, PROGRESS), "node 2 stopped");

    assert_eq!(n1.stop(), Some(0), "node 1: {:?}", n1.stdout());
    assert_eq!(n2.stop(), Some(0), "node 2");
    check_bank(&dir, &[&n1, &n2], &root.path().join("acks"));
}
