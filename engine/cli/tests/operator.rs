//! The operator's paths through the binary: with no live peer to recover a
//! killed node automatically, `understudy recover --node N` recovers it from
//! a spare member id, and `understudy restart-light --node N` has a killed
//! node back out its own work; afterwards no lock is retained, the bank's
//! total is unchanged, and the node rejoins normally.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use harness::ChildGuard;
use std::time::{Duration, Instant};

mod support;

use support::{member as status_of, run, EXE};

/// Starts `node --workload bank` for `id` (with `extra` arguments), waits
/// for a few acknowledged transfers, kills it with SIGKILL.
fn kill_busy_node(dir: &str, id: u32, extra: &[&str]) {
    let mut child = ChildGuard::spawn(
        Command::new(EXE)
            .args([
                "node",
                "--cluster",
                dir,
                "--id",
                &id.to_string(),
                "--workload",
                "bank",
                "--threads",
                "2",
            ])
            .args(extra)
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let out = BufReader::new(child.take_stdout().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acks = 0;
    for line in out.lines().map_while(Result::ok) {
        if line.starts_with("ACK ") {
            acks += 1;
        }
        if acks >= 20 || Instant::now() > deadline {
            break;
        }
    }
    assert!(acks >= 20, "node {id} made no progress");
    child.kill().unwrap();
}

fn wait_failed(dir: &str, node: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if status_of(dir, node)["state"] == "failed" {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("node {node} never declared failed");
}

/// A cluster of nodes 1, 2, 3 in `dir` with its coordinator process and
/// the bank created.
fn cluster_with_bank(dir: &str) -> ChildGuard {
    let out = run(&["cluster-init", "--dir", dir, "--nodes", "1,2,3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut coord = ChildGuard::spawn(
        Command::new(EXE)
            .args(["coordinator", "--cluster", dir])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    // A `timing:` line, then the endpoints.
    let mut lines = BufReader::new(coord.take_stdout().unwrap()).lines();
    let listening = lines
        .by_ref()
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
        "--workload",
        "none",
        "--duration-secs",
        "0",
    ]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    coord
}

fn bank_check(dir: &str, id: u32) {
    let check = run(&["bank-check", "--cluster", dir, "--id", &id.to_string()]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn operator_recover_and_restart_light_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let _coord = cluster_with_bank(dir);

    // Operator recovery: node 1 dies, nobody is running to recover it.
    kill_busy_node(dir, 1, &[]);
    wait_failed(dir, 1);
    let out = run(&["recover", "--cluster", dir, "--node", "1", "--json"]);
    assert!(
        out.status.success(),
        "recover failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tl: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tl["failed"], 1);
    assert_eq!(tl["steps"].as_array().unwrap().len(), 8);
    let s1 = status_of(dir, 1);
    assert_eq!(s1["retained_locks"], 0);
    // Recovering it twice is refused with a clear message.
    let again = run(&["recover", "--cluster", dir, "--node", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not recovered"));

    // Restart light: node 2 dies and backs out its own work. Its two
    // threads each keep four transfers in flight, interleaved (the bench's
    // workload shape), so it dies with several of them half done.
    kill_busy_node(dir, 2, &["--txns-per-thread", "4", "--think-ms", "20"]);
    wait_failed(dir, 2);
    let out = run(&["restart-light", "--cluster", dir, "--node", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("restarted=true"));
    assert_eq!(status_of(dir, 2)["retained_locks"], 0);

    // Everything adds up, and node 1 rejoins with nothing to back out.
    bank_check(dir, 1);
    assert!(Path::new(dir).join("logs/1").exists());
}

#[test]
fn a_restart_request_has_a_live_peer_restart_the_failed_node_light() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let _coord = cluster_with_bank(dir);
    // Node 2 is live but recovers nobody by itself: only the restart
    // request can get node 1 recovered.
    let mut peer = ChildGuard::spawn(
        Command::new(EXE)
            .args(["node", "--cluster", dir, "--id", "2", "--no-auto-recovery"])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let ready = BufReader::new(peer.take_stdout().unwrap())
        .lines()
        .take(5)
        .map_while(Result::ok)
        .any(|l| l.starts_with("READY"));
    assert!(ready, "node 2 did not start");

    // Node 1 files its own request when it starts, then dies mid-transfer.
    kill_busy_node(
        dir,
        1,
        &["--no-auto-recovery", "--restart-light-on-failure", "--think-ms", "2"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s1 = status_of(dir, 1);
        if s1["recovery"] == "recovered" && s1["retained_locks"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 was not restarted light: {s1}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(peer);
    bank_check(dir, 1);
}

/// `recover --by N` has live node N recover a failed peer: no spare member
/// id is needed (before, `recover` joined as one, and without `--as` waited
/// up to a minute on every live candidate). Asking a node that is not live,
/// or for a node with nothing to recover, fails at once saying why; so does
/// a restart request no live node could act on.
#[test]
fn recover_by_asks_a_live_node_and_refusals_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let _coord = cluster_with_bank(dir);
    // Nobody launches restarts yet: a request is refused, not filed (node 3
    // created the bank and left).
    let refused = run(&["request-restart", "--cluster", dir, "--node", "3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no live node launches restarts"));

    let mut peer = ChildGuard::spawn(
        Command::new(EXE)
            .args(["node", "--cluster", dir, "--id", "2", "--no-auto-recovery"])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let ready = BufReader::new(peer.take_stdout().unwrap())
        .lines()
        .take(5)
        .map_while(Result::ok)
        .any(|l| l.starts_with("READY"));
    assert!(ready, "node 2 did not start");
    kill_busy_node(dir, 1, &["--no-auto-recovery", "--think-ms", "2"]);
    wait_failed(dir, 1);
    assert_eq!(
        status_of(dir, 1)["recovery"],
        "inactive",
        "nobody recovers node 1 by itself"
    );

    let not_live = run(&["recover", "--cluster", dir, "--node", "1", "--by", "3"]);
    assert!(!not_live.status.success());
    assert!(String::from_utf8_lossy(&not_live.stderr).contains("node 3 is not live"));
    let out = run(&["recover", "--cluster", dir, "--node", "1", "--by", "2"]);
    assert!(
        out.status.success(),
        "recover --by failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node 1 recovered by node 2"));
    assert_eq!(status_of(dir, 1)["retained_locks"], 0);
    let again = run(&["recover", "--cluster", dir, "--node", "1", "--by", "2"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to recover"));
    drop(peer);
    bank_check(dir, 1);
}
