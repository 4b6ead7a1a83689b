//! The file outbox through the program: node 1 runs bank transfers that
//! each write a receipt through the outbox (`--outbox DIR --receipts`), and
//! is killed with SIGKILL while transfers are in flight with their receipts
//! aside. `recover` and `restart-light` without `--outbox` stop, naming
//! resource 1 and the flag, and leave node 1's locks retained and its
//! receipts aside; `restart-light --outbox DIR` completes. Then the bank
//! checks, every acknowledged transfer has its receipt, every published
//! receipt belongs to a committed transfer, and nothing is left aside.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use understudy::{FileOutbox, Node, NodeOptions};
use understudy_cli::bank::Ack;
use understudy_cli::cluster::outbox::{check_receipts, OUTBOX_RESOURCE};

const EXE: &str = env!("CARGO_BIN_EXE_understudy");

fn run(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("run understudy")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Node `node`'s retained locks, once the coordinator declared it failed
/// (`None` before).
fn retained(dir: &str, node: u32) -> Option<u64> {
    let out = run(&["status", "--cluster", dir, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let member = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("node {node} not in {v}"));
    (member["state"] == "failed").then(|| member["retained_locks"].as_u64().unwrap())
}

/// Runs node 1 with receipts until it acknowledged a few transfers, kills
/// it, and returns its acknowledgements.
fn kill_node_1_with_receipts(dir: &str, outbox: &str) -> Vec<Ack> {
    let mut child = ChildGuard::spawn(
        Command::new(EXE)
            .args(["node", "--cluster", dir, "--id", "1", "--workload", "bank"])
            .args(["--threads", "2", "--think-ms", "50", "--outbox", outbox, "--receipts"])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let out = BufReader::new(child.take_stdout().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acks = Vec::new();
    for line in out.lines().map_while(Result::ok) {
        if let Some(a) = Ack::parse(&line) {
            acks.push(a.unwrap());
        }
        if acks.len() >= 5 || Instant::now() > deadline {
            break;
        }
    }
    assert!(acks.len() >= 5, "node 1 made no progress");
    // Each transfer pauses 50 ms with its receipt aside: the kill almost
    // always finds one so (checked by the caller).
    child.kill().unwrap();
    acks
}

#[test]
fn a_recovery_without_the_outbox_stops_naming_it_and_one_with_it_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let outbox_dir = tmp.path().join("outbox");
    let outbox = outbox_dir.to_str().unwrap();
    let out = run(&["cluster-init", "--dir", dir, "--nodes", "1,2,3"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut coord = ChildGuard::spawn(
        Command::new(EXE)
            .args(["coordinator", "--cluster", dir])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let listening = BufReader::new(coord.take_stdout().unwrap())
        .lines()
        .take(4)
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on"));
    assert!(listening, "the coordinator did not start");
    let init = run(&[
        "node",
        "--cluster",
        dir,
        "--id",
        "3",
        "--bank-init",
        "--duration-secs",
        "0",
    ]);
    assert!(init.status.success(), "{}", text(&init));

    // Killed with receipts aside (tried again, boundedly, should a kill
    // land between transfers on both threads).
    let reader = FileOutbox::open(OUTBOX_RESOURCE, &outbox_dir).unwrap();
    let mut acks = Vec::new();
    for attempt in 0..5 {
        acks.extend(kill_node_1_with_receipts(dir, outbox));
        let deadline = Instant::now() + Duration::from_secs(20);
        while retained(dir, 1).is_none() {
            assert!(Instant::now() < deadline, "node 1 was never declared failed");
            std::thread::sleep(Duration::from_millis(20));
        }
        if !reader.aside().unwrap().is_empty() {
            break;
        }
        let out = run(&["restart-light", "--cluster", dir, "--node", "1", "--outbox", outbox]);
        assert!(out.status.success(), "attempt {attempt}: {}", text(&out));
    }
    let aside = reader.aside().unwrap();
    assert!(!aside.is_empty(), "no kill found a receipt aside");
    assert!(retained(dir, 1) > Some(0), "transfers in flight hold locks");

    // Without the agent: refused, naming the resource and the flag; the
    // locks and the receipts stay.
    for cmd in [
        vec!["recover", "--cluster", dir, "--node", "1", "--as", "2"],
        vec!["restart-light", "--cluster", dir, "--node", "1"],
    ] {
        let out = run(&cmd);
        assert!(!out.status.success(), "{cmd:?} succeeded without the agent");
        let said = text(&out);
        assert!(
            said.contains("resource 1") && said.contains("--outbox"),
            "{cmd:?}: {said}"
        );
        assert!(retained(dir, 1) > Some(0), "{cmd:?} let the locks go");
        assert_eq!(reader.aside().unwrap(), aside, "{cmd:?} touched the outbox");
    }

    // With it: done.
    let out = run(&["restart-light", "--cluster", dir, "--node", "1", "--outbox", outbox]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("agent_work=0"), "{}", text(&out));
    let check = run(&["bank-check", "--cluster", dir, "--id", "2"]);
    assert!(check.status.success(), "{}", text(&check));
    let opts = NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let node = Node::open(tmp.path(), 2, opts).unwrap();
    let receipts = check_receipts(&node, &outbox_dir, &acks, "1-").unwrap();
    node.close().unwrap();
    assert_eq!(receipts.acknowledged, acks.len());
    assert!(receipts.published >= acks.len());
}
