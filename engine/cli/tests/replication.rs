//! Replication through the program, with real processes on 127.0.0.1: a
//! one-node primary site runs the bank workload with `--replication-listen`
//! while `understudy replication standby` applies its redo to a seeded
//! copy. The standby is killed with SIGKILL and started again mid-run (it
//! resumes from its durable position), the primary is killed with SIGKILL
//! twice (the second time after restarting from its own crash, its redo's
//! last round checked against its pages). Then the standby's copy must
//! hold a consistent prefix: balances sum to the bank's total (no transfer
//! half there) and, in sync mode, every transfer a primary acknowledged.
//! The primary's own bank is checked too, and a standby with another
//! secret is refused with a clear error.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::ChildGuard;
use support::{run, run_ok, BankNode, ACCOUNTS, EXE, PATIENCE};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn standby(dir: &Path, port: u16, secret: &Path) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(EXE)
            .args(["replication", "standby", "--cluster", dir.to_str().unwrap()])
            .args(["--primary", &format!("127.0.0.1:{port}")])
            .args(["--secret", secret.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn a standby")
}

fn report(dir: &Path) -> serde_json::Value {
    let out = run_ok(&["replication", "status", "--cluster", dir.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn scenario(sync: bool) {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("primary");
    let s = root.path().join("standby");
    let (pd, sd) = (p.to_str().unwrap(), s.to_str().unwrap());
    let secret = root.path().join("repl.secret");
    std::fs::write(&secret, "a replication secret of the group\n").unwrap();
    run_ok(&["cluster-init", "--dir", pd, "--nodes", "1"]);
    run_ok(&[
        "node",
        "--cluster",
        pd,
        "--id",
        "1",
        "--embed-coordinator",
        "--bank-init",
        "--accounts",
        &ACCOUNTS.to_string(),
        "--duration-secs",
        "0",
    ]);
    run_ok(&["replication", "seed", "--primary", pd, "--standby", sd]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut flags = vec![
        "--embed-coordinator",
        "--replication-listen",
        &listen,
        "--replication-secret",
        secret.to_str().unwrap(),
    ];
    if sync {
        flags.extend(["--sync-standbys", "1"]);
    }
    let mut standby_proc = standby(&s, port, &secret);
    let mut acks = Vec::new();
    for round in 0..2 {
        let mut node = BankNode::start(&p, 1, &flags);
        assert!(node.progress(0, 100), "round {round}: the primary made no progress");
        if round == 0 {
            // The standby dies and comes back while the primary commits.
            standby_proc.kill().unwrap();
            standby_proc = standby(&s, port, &secret);
        }
        assert!(node.progress(100, 150), "round {round}: the primary made no progress");
        node.child.kill().unwrap();
        let lines = node.stdout();
        acks.extend(lines.into_iter().filter(|l| l.starts_with("ACK ")));
    }
    // The primary is gone: the standby applies all it holds, and says so.
    let settled = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        let r = report(&s);
        r["connected"] == false && r["applied"] == r["durable"] && r["durable"].as_u64() > Some(0)
    });
    assert!(settled, "the standby did not settle: {}", report(&s));
    let last = report(&s);
    println!("standby after the primary's end: {last}");
    let pid = standby_proc.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let ended = standby_proc
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the standby stops on SIGTERM");
    assert!(ended.success(), "the standby ended with {ended}");

    let ack_file = root.path().join("acks");
    std::fs::write(&ack_file, acks.join("\n") + "\n").unwrap();
    let ack_path = ack_file.to_str().unwrap();
    let accounts = ACCOUNTS.to_string();
    let mut check = vec![
        "bank-check",
        "--cluster",
        sd,
        "--id",
        "1",
        "--embed-coordinator",
        "--accounts",
        &accounts,
    ];
    if sync {
        // Every acknowledged transfer is on the standby.
        check.extend(["--acks", ack_path]);
    }
    let out = run_ok(&check);
    println!("standby: {}", String::from_utf8_lossy(&out.stdout).trim());
    // The primary's own bank, after its own restart: nothing acknowledged
    // lost there either.
    run_ok(&[
        "bank-check",
        "--cluster",
        pd,
        "--id",
        "1",
        "--embed-coordinator",
        "--accounts",
        &accounts,
        "--acks",
        ack_path,
    ]);
}

#[test]
fn async_standby_holds_a_consistent_prefix_after_the_primary_is_killed() {
    scenario(false);
}

#[test]
fn sync_standby_holds_every_acknowledged_transfer_after_the_primary_is_killed() {
    scenario(true);
}

#[test]
fn a_standby_with_another_secret_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("primary");
    let s = root.path().join("standby");
    let (pd, sd) = (p.to_str().unwrap(), s.to_str().unwrap());
    let (good, bad) = (root.path().join("good"), root.path().join("bad"));
    std::fs::write(&good, "a replication secret of the group\n").unwrap();
    std::fs::write(&bad, "another replication secret entirely\n").unwrap();
    run_ok(&["cluster-init", "--dir", pd, "--nodes", "1"]);
    run_ok(&["replication", "seed", "--primary", pd, "--standby", sd]);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut primary = ChildGuard::spawn(
        Command::new(EXE)
            .args(["node", "--cluster", pd, "--id", "1", "--embed-coordinator"])
            .args([
                "--replication-listen",
                &listen,
                "--replication-secret",
                good.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("spawn the primary");
    let (lines, _) = harness::read_lines(primary.take_stdout().unwrap());
    let ready = lines.recv_timeout(PATIENCE).expect("the primary starts");
    assert!(ready.starts_with("READY"), "{ready}");
    let out = run(&[
        "replication",
        "standby",
        "--cluster",
        sd,
        "--primary",
        &listen,
        "--secret",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("different secrets"), "{err}");
    primary.kill().unwrap();
}
