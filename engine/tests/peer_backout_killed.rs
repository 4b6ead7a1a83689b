//! A peer's recovery killed in the middle of its backout is finished by
//! another node, or by the failed node's own restart, exactly once.
//!
//! Node A (node 1, this test binary re-run as `bank_child`) keeps a small
//! bank in two tables and sends a receipt through the file outbox with
//! each transfer. It commits one transfer, then is SIGKILLed with two more
//! in flight: X, which moved money and wrote two receipts but never
//! committed, and Y, which forced its pages (committed) and stopped before
//! publishing its two receipts. Node B (node 2, re-run as `peer_child`)
//! registers as A's counterpart and starts the backout; its agent stops
//! it between two removals, or between two publishes, and B is SIGKILLed
//! there — a recovery half done, its registration live. Then node C (node
//! 3, in this process) recovers A, or A restarts; either way: the recovery
//! completes once (a second attempt finds nothing), the receipts are
//! published exactly for the committed transfers and nothing is left
//! aside, the balances are the committed ones and still add up, the
//! completing node undid all of X's work and made all of Y's final again
//! (never the other way round), and A's retained locks are gone (C writes
//! every account).

mod common;
mod probe;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{child_test, cluster_with_coordinator, member, wait_for};
use harness::ChildGuard;
use probe::{hang, probed_opts, Call, Probe, Stop};
use understudy::admin::lock_client;
use understudy::{FileOutbox, Node, NodeOptions, PeerError, Transaction};

const CHILD_VAR: &str = "UNDERSTUDY_PEER_BACKOUT_CLUSTER";
const STOP_VAR: &str = "UNDERSTUDY_PEER_BACKOUT_STOP";

/// Every account starts with this much; there are four.
const OPENING: u64 = 100;
/// (table, account) of each account.
const ACCOUNTS: [(&str, &str); 4] = [("a", "a0"), ("a", "a1"), ("b", "b0"), ("b", "b1")];

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

fn balance(t: &mut Transaction, table: &str, account: &str) -> u64 {
    let v = t.get(table, account.as_bytes()).unwrap().expect("the account exists");
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

/// Moves `amount` from `from` to `to`, both of `table`, and writes each of
/// `receipts` through the outbox.
fn transfer(
    t: &mut Transaction,
    outbox: &FileOutbox,
    table: &str,
    from: &str,
    to: &str,
    amount: u64,
    receipts: &[&str],
) {
    let (f, g) = (balance(t, table, from), balance(t, table, to));
    t.put(table, from.as_bytes(), (f - amount).to_string().as_bytes())
        .unwrap();
    t.put(table, to.as_bytes(), (g + amount).to_string().as_bytes())
        .unwrap();
    for r in receipts {
        outbox
            .put(t, r, format!("{amount} from {from} to {to}").as_bytes())
            .unwrap();
    }
}

/// Node A: a committed transfer, then X (in flight) and Y (committed,
/// stopped by its probe before its first receipt is published). X and Y
/// use different tables, so neither waits for the other's page locks.
#[test]
fn bank_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let dir = Path::new(&dir);
    // The committed transfer's receipt is the first publish; Y's first is
    // the second.
    let stop = Stop {
        call: Call::Commit,
        n: 1,
        label: "decided".into(),
    };
    let (opts, outbox, _probe) = probed_opts(dir, opts(), Some(stop));
    let node = Node::open(dir, 1, opts).expect("A joins");
    let mut t = node.begin().unwrap();
    transfer(&mut t, &outbox, "a", "a0", "a1", 10, &["paid"]);
    t.commit().unwrap();
    // X's records are durable: each outbox write waits for its record.
    let mut x = node.begin().unwrap();
    transfer(&mut x, &outbox, "a", "a0", "a1", 7, &["x-1", "x-2"]);
    let mut y = node.begin().unwrap();
    transfer(&mut y, &outbox, "b", "b0", "b1", 5, &["y-1", "y-2"]);
    // Stops in the probe, Y decided, X still open (alive until the kill).
    drop(y.commit());
    hang()
}

/// Node B: recovers A, and is stopped by its probe in the middle of the
/// backout's agent calls.
#[test]
fn peer_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let dir = Path::new(&dir);
    let call = match std::env::var(STOP_VAR).unwrap().as_str() {
        "undo" => Call::Undo,
        "publish" => Call::Commit,
        other => panic!("no stop {other}"),
    };
    // The second call of its kind: one file removed (or published)
    // already, one not.
    let stop = Stop {
        call,
        n: 1,
        label: "peer-mid-backout".into(),
    };
    let (opts, _, _probe) = probed_opts(dir, opts(), Some(stop));
    let node = Node::open(dir, 2, opts).expect("B joins");
    // Refused until the coordinator has seen A die; then stops in the probe.
    wait_for("B to start recovering A", || match node.recover_peer(1) {
        Err(PeerError::NotFailed { .. }) => false,
        other => panic!("B's recovery did not stop mid-backout: {other:?}"),
    });
}

/// Who finishes A's recovery after B's death.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Node C, a peer.
    Third,
    /// A's own restart.
    OwnRestart,
}

/// Runs child test `name` with `vars` until it says `AT <label>`.
fn child_at(dir: &Path, name: &str, stop: &str, label: &str) -> ChildGuard {
    let mut child = child_test(name, &[(CHILD_VAR, dir.as_os_str()), (STOP_VAR, stop.as_ref())]);
    let (lines, _) = harness::read_lines(child.take_stdout().unwrap());
    common::said_until(&lines, &format!("AT {label}"), Duration::from_secs(60));
    child
}

/// Every account's balance, read by `node`.
fn balances(node: &Node) -> Vec<u64> {
    let mut t = node.begin().unwrap();
    let out = ACCOUNTS
        .iter()
        .map(|(table, acct)| balance(&mut t, table, acct))
        .collect();
    t.rollback().unwrap();
    out
}

#[test]
fn a_peer_killed_mid_backout_leaves_a_recovery_that_a_third_node_or_the_restart_completes_once() {
    for stop in ["undo", "publish"] {
        for via in [Via::Third, Via::OwnRestart] {
            one_case(stop, via);
        }
    }
}

fn one_case(stop: &str, via: Via) {
    let case = format!("B stopped at its second {stop}, finished by {via:?}");
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = cluster_with_coordinator(dir.path(), &[1, 2, 3]);
    let (o, outbox, probe3) = probed_opts(dir.path(), opts(), None);
    let n3 = Node::open(dir.path(), 3, o).unwrap();
    n3.create_table("a", 4).unwrap();
    n3.create_table("b", 4).unwrap();
    let mut t = n3.begin().unwrap();
    for (table, acct) in ACCOUNTS {
        t.put(table, acct.as_bytes(), OPENING.to_string().as_bytes()).unwrap();
    }
    t.commit().unwrap();

    // A, killed with X in flight and Y decided.
    let mut a = child_at(dir.path(), "bank_child", stop, "decided");
    a.kill().unwrap();
    assert_eq!(outbox.published().unwrap(), ["paid"], "{case}: at A's kill");
    assert_eq!(outbox.aside().unwrap().len(), 4, "{case}: X's and Y's receipts aside");

    // B, A's counterpart, killed half-way through the agents' calls.
    let mut b = child_at(dir.path(), "peer_child", stop, "peer-mid-backout");
    let m1 = member(&n3, 1);
    assert_eq!(
        (m1.recovery, m1.counterpart),
        (2, 2),
        "{case}: B is the active counterpart"
    );
    b.kill().unwrap();
    let aside = outbox.aside().unwrap().len();
    assert!(0 < aside && aside < 4, "{case}: B did part of the work: {aside} aside");
    wait_for("B's registration to be dropped", || member(&n3, 1).recovery == 1);
    assert!(
        !lock_client(&n3).retained(1).unwrap().is_empty(),
        "{case}: nothing released yet"
    );

    // Finished by C or by A's restart; then a second try finds nothing.
    let (n1, finisher): (Node, Arc<Probe>) = match via {
        Via::Third => {
            let tl = n3.recover_peer(1).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!((tl.counterpart, tl.in_flight, tl.committed), (3, 2, 1), "{case}");
            assert_eq!(member(&n3, 1).recovery, 3, "{case}: recovered");
            assert!(
                matches!(n3.recover_peer(1), Err(PeerError::NothingToRecover { .. })),
                "{case}: recovered twice"
            );
            let (o, _, probe1) = probed_opts(dir.path(), opts(), None);
            let n1 = Node::open(dir.path(), 1, o).unwrap_or_else(|e| panic!("{case}: {e}"));
            let report = n1.start_report();
            assert_eq!(
                (report.backed_out, report.agent_work),
                (0, 0),
                "{case}: A's restart after C"
            );
            assert!(probe1.calls().is_empty(), "{case}: A's restart called its agent");
            (n1, probe3.clone())
        }
        Via::OwnRestart => {
            let (o, _, probe1) = probed_opts(dir.path(), opts(), None);
            let n1 = Node::open(dir.path(), 1, o).unwrap_or_else(|e| panic!("{case}: {e}"));
            let report = n1.start_report();
            assert!(report.restarted, "{case}");
            assert_eq!((report.backed_out, report.committed), (1, 1), "{case}");
            assert!(
                matches!(n3.recover_peer(1), Err(PeerError::NotFailed { .. })),
                "{case}: recovered twice"
            );
            assert!(probe3.calls().is_empty(), "{case}: C called its agent");
            (n1, probe1)
        }
    };

    // Receipts published exactly for the committed transfers.
    assert_eq!(outbox.published().unwrap(), ["paid", "y-1", "y-2"], "{case}");
    assert!(outbox.aside().unwrap().is_empty(), "{case}: receipts left aside");
    for (name, says) in [
        ("paid", "10 from a0 to a1"),
        ("y-1", "5 from b0 to b1"),
        ("y-2", "5 from b0 to b1"),
    ] {
        let content = std::fs::read(dir.path().join("outbox").join(name)).unwrap();
        assert_eq!(content, says.as_bytes(), "{case}: {name}");
    }
    // What the finishing node told the agent: everything again (B's part
    // is nowhere in the log, and agents are idempotent), never X's work
    // made final nor Y's undone.
    assert_eq!(finisher.names(Call::Commit), ["y-1", "y-2"], "{case}: made final");
    assert_eq!(finisher.names(Call::Undo), ["x-1", "x-2"], "{case}: undone");

    // The balances are the committed transfers' (X's gone), and add up.
    let bal = balances(&n3);
    assert_eq!(bal, [90, 110, 95, 105], "{case}");
    assert_eq!(bal.iter().sum::<u64>(), OPENING * ACCOUNTS.len() as u64, "{case}");

    // A's retained locks are gone: C writes every account within its lock
    // wait.
    assert!(lock_client(&n3).retained(1).unwrap().is_empty(), "{case}");
    let mut t = n3.begin().unwrap();
    transfer(&mut t, &outbox, "a", "a1", "a0", 1, &[]);
    transfer(&mut t, &outbox, "b", "b1", "b0", 1, &[]);
    t.commit().unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(balances(&n3), [91, 109, 96, 104], "{case}");

    // The node before the coordinator it is connected to.
    n1.close().unwrap();
    drop(n3);
}
