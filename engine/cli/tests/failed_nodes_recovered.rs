//! Every failed node is recovered by a live node as soon as one exists,
//! tried through the program.
//!
//! Before, a node killed together with the coordinator was never
//! recovered: the restarted coordinator knew it as live, declared it failed
//! with its locks unknown when it did not come back, and refused every lock
//! request in its name ("… is retained by failed node 1; retry later") until
//! an operator recovered it — while the surviving nodes, which had stopped
//! with the coordinator, were no longer there to do it. And a node that died
//! while no other node was live stayed failed when one joined later.
//!
//! Now the survivors ride through the coordinator's restart; when the grace
//! period ends they hear of the node's failure and one recovers it. Its
//! counterpart rebuilds its retained locks from its log (the in-flight
//! transactions' undo records name every page it wrote), which ends the
//! pause for everyone else, then backs its work out. And a node admitted
//! later hears of every failed node still without a counterpart.
//!
//! Checked: the node is recovered (its timeline has the `locks rebuilt`
//! step), no lock stays retained, the survivors keep acknowledging, the
//! bank adds up and every acknowledged transfer — the killed node's too —
//! is in the journal. The survivors' longest pause is printed, never
//! asserted.

mod support;

use std::time::{Duration, Instant};

use support::{bank_cluster, check_bank, longest_pause, run_ok, BankNode, Coordinator, PATIENCE};

/// Transfers each node acknowledges before the kill, and after.
const PROGRESS: usize = 20;

/// `status --json`'s entry for `node`.
fn status_of(dir: &std::path::Path, node: u32) -> serde_json::Value {
    let out = run_ok(&["status", "--cluster", dir.to_str().expect("UTF-8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["node"] == node)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `node` is recovered with no lock retained.
fn wait_recovered(dir: &std::path::Path, node: u32) {
    let recovered = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        let s = status_of(dir, node);
        s["recovery"] == "recovered" && s["retained_locks"] == 0
    });
    assert!(recovered, "node {node} was not recovered: {}", status_of(dir, node));
}

/// The timeline JSON of the recovery of `failed` that one of `nodes`
/// printed (`RECOVERED <json>`).
fn recovery_of(nodes: &[&BankNode], failed: u32) -> Option<serde_json::Value> {
    nodes
        .iter()
        .flat_map(|n| n.stdout())
        .filter_map(|l| l.strip_prefix("RECOVERED ").map(str::to_string))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .find(|tl| tl["failed"] == failed)
}

#[test]
fn a_node_killed_with_the_coordinator_is_recovered_from_its_log() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(tmp.path());
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    // A pause inside each transfer leaves some in flight when node 1 dies.
    let mut nodes: Vec<BankNode> = (1..=3)
        .map(|id| BankNode::start(&dir, id, &["--think-ms", "5"]))
        .collect();
    for n in nodes.iter_mut() {
        let seen = n.acks();
        assert!(n.progress(seen, PROGRESS), "node {} made no progress", n.id);
    }
    // The coordinator first, so it never learns that node 1 died.
    coord.child.kill().expect("kill the coordinator");
    nodes[0].child.kill().expect("kill node 1");
    let killed = Instant::now();
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    wait_recovered(&dir, 1);
    let (victim, survivors) = nodes.split_first_mut().expect("three nodes");
    for n in survivors.iter_mut() {
        let seen = n.acks();
        assert!(
            n.progress(seen, PROGRESS),
            "node {} made no progress after the recovery",
            n.id
        );
    }
    let watched: Vec<&BankNode> = survivors.iter().collect();
    let tl = recovery_of(&watched, 1).expect("a survivor printed node 1's recovery");
    let steps: Vec<&str> = tl["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(
        steps.contains(&"locks rebuilt"),
        "the locks were not rebuilt from the log: {tl}"
    );
    println!(
        "node 1 killed with the coordinator: {} in-flight transfers backed out; the survivors' longest pause {} ms",
        tl["in_flight"],
        longest_pause(&watched, killed, Instant::now()).as_millis()
    );
    for n in survivors.iter_mut() {
        assert_eq!(n.stop(), Some(0), "node {} stopped", n.id);
    }
    let all = [&*victim, &survivors[0], &survivors[1]];
    check_bank(&dir, &all, &tmp.path().join("acks.txt"));
}

#[test]
fn a_node_that_died_alone_is_recovered_by_the_next_node_to_join() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(tmp.path());
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    let mut alone = BankNode::start(&dir, 1, &["--think-ms", "5"]);
    assert!(alone.progress(0, PROGRESS), "node 1 made no progress");
    alone.child.kill().expect("kill node 1");
    let failed = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        status_of(&dir, 1)["state"] == "failed"
    });
    assert!(failed, "node 1 was not declared failed");
    // Nobody was live to hear of it; the next node to join is told.
    let mut next = BankNode::start(&dir, 2, &[]);
    wait_recovered(&dir, 1);
    assert!(next.progress(0, PROGRESS), "node 2 made no progress");
    assert!(recovery_of(&[&next], 1).is_some(), "node 2 did not recover node 1");
    assert_eq!(next.stop(), Some(0));
    check_bank(&dir, &[&alone, &next], &tmp.path().join("acks.txt"));
}
