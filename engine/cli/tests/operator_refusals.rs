//! What an operator meets through the `understudy` program when a command
//! cannot do what was asked: each refusal names the real reason and the
//! next step (duplicate node ids, no coordinator, a node id already
//! running, a node that is live, unknown, or never joined); `status` prints
//! what it means and nothing else (no lease warning, no colour codes on a
//! pipe); a running node stops cleanly on SIGTERM, leaving nothing
//! retained; and `inspect-log` of a live node's log says it is live rather
//! than reporting damage.
//!
//! The bugs they guard: refusals of a live node id took 30 to 60 s, one of
//! an unknown node 121 s with a message about another node recovering it;
//! `status` printed a lease warning with colour codes on every call; a
//! running node could only be stopped with SIGKILL.

use std::process::{Command, Output, Stdio};
use std::time::Instant;

use harness::ChildGuard;

const EXE: &str = env!("CARGO_BIN_EXE_understudy");

fn run(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run understudy");
    // Reported, not asserted: timings on a shared machine are noise.
    eprintln!("{args:?}: {} in {:?}", out.status, started.elapsed());
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `o` failed with one line on stderr, `error: ...`, containing
/// every one of `words`.
fn refused(o: &Output, words: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a refusal, got success: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line per problem: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} not in {err:?}");
    }
    assert!(!err.contains('\u{1b}'), "no colour codes on a pipe: {err:?}");
}

/// Starts `understudy <args>` with stdout read on a thread (so the process
/// never blocks on a full pipe) and waits for a line starting with `ready`.
/// The thread returns every line.
fn start(args: &[&str], ready: &str) -> (ChildGuard, std::thread::JoinHandle<Vec<String>>) {
    let mut child = ChildGuard::spawn(Command::new(EXE).args(args).stdout(Stdio::piped())).unwrap();
    let (rx, all) = harness::read_lines(child.take_stdout().unwrap());
    let seen = rx.iter().take(10).any(|l| l.starts_with(ready));
    assert!(seen, "{args:?} printed no {ready:?} line");
    (child, all)
}

#[test]
fn refusals_name_the_reason_and_the_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("c");
    let d = d.to_str().unwrap();

    refused(
        &run(&["cluster-init", "--dir", d, "--nodes", "1,1"]),
        &["distinct", "[1, 1]"],
    );
    assert!(!tmp.path().join("c/cluster.conf").exists(), "nothing written");
    assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2,3"]).status.success());

    // No coordinator yet.
    let none = run(&["node", "--cluster", d, "--id", "1", "--duration-secs", "0"]);
    refused(&none, &["no coordinator answers", "understudy coordinator --cluster"]);
    refused(&run(&["status", "--cluster", d]), &["understudy coordinator --cluster"]);

    let (_coordinator, _) = start(&["coordinator", "--cluster", d], "listening on");
    let (mut node1, lines) = start(
        &["node", "--cluster", d, "--id", "1", "--bank-init", "--workload", "bank"],
        "READY",
    );

    // Node 1 is running.
    for args in [
        &["node", "--cluster", d, "--id", "1", "--duration-secs", "0"][..],
        &["bank-check", "--cluster", d, "--id", "1"][..],
        &["restart-light", "--cluster", d, "--node", "1"][..],
        &["recover", "--cluster", d, "--node", "2", "--as", "1"][..],
    ] {
        refused(&run(args), &["node 1 is running", "stop it first"]);
    }
    refused(
        &run(&["recover", "--cluster", d, "--node", "1", "--as", "2"]),
        &["node 1 is live", "nothing to recover"],
    );
    refused(
        &run(&["recover", "--cluster", d, "--node", "99"]),
        &["node 99 is not one of the cluster's nodes [1, 2, 3]"],
    );
    refused(
        &run(&["recover", "--cluster", d, "--node", "3"]),
        &["node 3", "never joined"],
    );

    // `status` prints the members and nothing on stderr.
    let status = run(&["status", "--cluster", d]);
    assert!(status.status.success());
    assert_eq!(stderr(&status), "", "status prints nothing but its answer");

    // A live log is read up to where its writer is, and said to be live.
    let inspect = run(&["inspect-log", "--dir", &format!("{d}/logs/1")]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("the log is live"), "{text}");
    assert!(!text.contains("corrupt") && !text.contains("torn"), "{text}");

    // SIGTERM: node 1 stops cleanly — it rolls back what is in flight,
    // leaves, and exits 0.
    let pid = node1.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = node1.wait_timeout(std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(exited.map(|s| s.code()), Some(Some(0)), "a clean stop exits 0");
    let status = run(&["status", "--cluster", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let m1 = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == 1)
        .unwrap()
        .clone();
    assert_eq!(m1["recovery"], "recovered", "{m1}");
    assert_eq!(m1["retained_locks"], 0, "{m1}");
    // Every transfer it acknowledged is there.
    let out: Vec<String> = lines.join().unwrap();
    assert!(out.iter().any(|l| l.starts_with("DONE")), "{out:?}");
    let acks = tmp.path().join("acks");
    std::fs::write(&acks, out.join("\n")).unwrap();
    let check = run(&[
        "bank-check",
        "--cluster",
        d,
        "--id",
        "2",
        "--acks",
        acks.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{}", stderr(&check));
}
