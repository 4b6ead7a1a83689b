//! A standby coordinator takes over, tried through the program.
//!
//! Before, a coordinator that died stopped every node, and a coordinator
//! embedded in a node died with it for good. Now a second `understudy
//! coordinator --standby` process waits on the cluster's coordinator lock
//! and takes over the moment the active one is gone: it restores the
//! durable record and listens on the same endpoint, and the nodes ride
//! through the change.
//!
//! Checked, as for restarts: every node keeps acknowledging after each
//! failover, none stops (each leaves cleanly on SIGTERM, exit 0), the bank
//! adds up and every acknowledged transfer is in the journal. When the
//! coordinator died with the node embedding it, that node is recovered
//! from its log by a survivor. The pauses are printed, never asserted.

mod support;

use std::time::{Duration, Instant};

use support::{bank_cluster, check_bank, longest_pause, percentile, run_ok, BankNode, Coordinator, PATIENCE};

/// Failovers, at most, within the budget (never fewer than `MIN_FAILOVERS`).
const FAILOVERS: usize = 20;
const MIN_FAILOVERS: usize = 10;
const BUDGET: Duration = Duration::from_secs(120);
/// Transfers each node acknowledges between two failovers.
const PROGRESS: usize = 5;

/// A standby coordinator, once it says it stands by.
fn standby(dir: &std::path::Path) -> Coordinator {
    let mut c = Coordinator::start(dir, &["--standby"]);
    c.wait_line("standing by for ");
    c
}

#[test]
fn nodes_ride_through_failovers_to_a_standby_coordinator() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(tmp.path());
    let mut active = Coordinator::start(&dir, &[]);
    active.wait_serving();
    // A second coordinator without --standby is refused, saying what to do.
    let refused = support::run(&["coordinator", "--cluster", dir.to_str().expect("UTF-8")]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--standby"));
    let mut next = standby(&dir);
    let mut nodes: Vec<BankNode> = (1..=3).map(|id| BankNode::start(&dir, id, &[])).collect();
    let started = Instant::now();
    let mut failovers: Vec<Instant> = Vec::new();
    for round in 0..FAILOVERS {
        if round >= MIN_FAILOVERS && started.elapsed() > BUDGET {
            break;
        }
        for n in nodes.iter_mut() {
            let seen = n.acks();
            assert!(
                n.progress(seen, PROGRESS),
                "node {} made no progress after failover {round}",
                n.id
            );
        }
        active.child.kill().expect("kill the active coordinator");
        failovers.push(Instant::now());
        next.wait_serving();
        active = std::mem::replace(&mut next, standby(&dir));
    }
    for n in nodes.iter_mut() {
        let seen = n.acks();
        assert!(
            n.progress(seen, PROGRESS),
            "node {} made no progress after the last failover",
            n.id
        );
    }
    let end = Instant::now();
    let all: Vec<&BankNode> = nodes.iter().collect();
    let pauses: Vec<Duration> = failovers
        .iter()
        .enumerate()
        .map(|(i, &k)| longest_pause(&all, k, failovers.get(i + 1).copied().unwrap_or(end)))
        .collect();
    println!(
        "failed over to a standby {} times: survivors' longest pause p50 {} ms, p99 {} ms, max {} ms",
        failovers.len(),
        percentile(&pauses, 50).as_millis(),
        percentile(&pauses, 99).as_millis(),
        percentile(&pauses, 100).as_millis()
    );
    for n in nodes.iter_mut() {
        assert_eq!(n.stop(), Some(0), "node {} stopped instead of riding through", n.id);
    }
    let all: Vec<&BankNode> = nodes.iter().collect();
    check_bank(&dir, &all, &tmp.path().join("acks.txt"));
}

#[test]
fn a_standby_takes_over_from_a_coordinator_that_died_with_its_node() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(tmp.path());
    // Node 1 runs the coordinator in its own process.
    let mut host = BankNode::start(&dir, 1, &["--embed-coordinator", "--think-ms", "5"]);
    assert!(host.progress(0, PROGRESS), "node 1 made no progress");
    let mut others: Vec<BankNode> = (2..=3).map(|id| BankNode::start(&dir, id, &[])).collect();
    let mut backup = standby(&dir);
    for n in others.iter_mut() {
        assert!(n.progress(0, PROGRESS), "node {} made no progress", n.id);
    }
    host.child.kill().expect("kill node 1 and its coordinator");
    let killed = Instant::now();
    backup.wait_serving();
    let d = dir.to_str().expect("UTF-8");
    let recovered = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        let out = support::run(&["status", "--cluster", d, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["node"] == 1 && m["recovery"] == "recovered"))
    });
    assert!(
        recovered,
        "node 1 was not recovered after its coordinator's standby took over"
    );
    for n in others.iter_mut() {
        let seen = n.acks();
        assert!(
            n.progress(seen, PROGRESS),
            "node {} made no progress after the takeover",
            n.id
        );
    }
    let watched: Vec<&BankNode> = others.iter().collect();
    println!(
        "the node embedding the coordinator was killed: the survivors' longest pause {} ms",
        longest_pause(&watched, killed, Instant::now()).as_millis()
    );
    for n in others.iter_mut() {
        assert_eq!(n.stop(), Some(0), "node {} stopped", n.id);
    }
    let out = run_ok(&["status", "--cluster", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["members"]
        .as_array()
        .expect("members")
        .iter()
        .all(|m| m["retained_locks"] == 0 || m["state"] == "absent"));
    check_bank(&dir, &[&host, &others[0], &others[1]], &tmp.path().join("acks.txt"));
}
