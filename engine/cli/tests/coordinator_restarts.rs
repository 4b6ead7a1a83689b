//! The coordinator is no single point of failure, tried through the
//! program: three node processes run bank transfers while the coordinator
//! process is killed with SIGKILL and started again, again and again.
//!
//! Before riding through existed, every coordinator kill stopped every
//! node ("the node lost its lease and stopped writing"), even when the
//! coordinator was back within 39 ms of a 1 000 ms lease. Now each node's
//! client rejoins the restarted coordinator within its lease and re-asserts
//! its locks, and its transactions carry on: after every kill each node
//! must acknowledge further transfers, no node may stop (each leaves
//! cleanly on SIGTERM at the end, exit 0), the balances must sum to what
//! the bank started with and every acknowledged transfer must be in the
//! journal.
//!
//! The longest pause of the survivors' acknowledgements around each kill is
//! printed (p50 and p99 over the kills; run with `--nocapture` to see it).
//! No assertion is about time: kills are bounded in count and by a budget.

mod support;

use std::time::{Duration, Instant};

use support::{bank_cluster, check_bank, longest_pause, percentile, BankNode, Coordinator};

/// Kills of the coordinator, at most; the budget may end the run earlier
/// (it is printed how many ran), but never before `MIN_KILLS`.
const KILLS: usize = 60;
const MIN_KILLS: usize = 50;
const BUDGET: Duration = Duration::from_secs(240);
/// Transfers each node acknowledges between two kills: it works.
const PROGRESS: usize = 5;

#[test]
fn nodes_ride_through_fifty_coordinator_kills_and_lose_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = bank_cluster(tmp.path());
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    let mut nodes: Vec<BankNode> = (1..=3).map(|id| BankNode::start(&dir, id, &[])).collect();
    let started = Instant::now();
    let mut kills: Vec<Instant> = Vec::new();
    for round in 0..KILLS {
        if round >= MIN_KILLS && started.elapsed() > BUDGET {
            break;
        }
        for n in nodes.iter_mut() {
            let seen = n.acks();
            assert!(
                n.progress(seen, PROGRESS),
                "node {} made no progress after kill {round} (alive: {})",
                n.id,
                n.child.alive()
            );
        }
        coord.child.kill().expect("kill the coordinator");
        kills.push(Instant::now());
        coord = Coordinator::start(&dir, &[]);
        coord.wait_serving();
    }
    // Every node works after the last kill too.
    for n in nodes.iter_mut() {
        let seen = n.acks();
        assert!(
            n.progress(seen, PROGRESS),
            "node {} made no progress after the last kill",
            n.id
        );
    }
    let end = Instant::now();
    let all: Vec<&BankNode> = nodes.iter().collect();
    let pauses: Vec<Duration> = kills
        .iter()
        .enumerate()
        .map(|(i, &k)| longest_pause(&all, k, kills.get(i + 1).copied().unwrap_or(end)))
        .collect();
    println!(
        "coordinator killed {} times: survivors' longest pause p50 {} ms, p99 {} ms, max {} ms",
        kills.len(),
        percentile(&pauses, 50).as_millis(),
        percentile(&pauses, 99).as_millis(),
        percentile(&pauses, 100).as_millis()
    );
    for n in nodes.iter_mut() {
        assert_eq!(n.stop(), Some(0), "node {} stopped instead of riding through", n.id);
        assert!(n.printed("DONE "), "node {} did not finish cleanly", n.id);
    }
    let all: Vec<&BankNode> = nodes.iter().collect();
    check_bank(&dir, &all, &tmp.path().join("acks.txt"));
}
