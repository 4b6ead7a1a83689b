//! What the tests of a cluster under coordinator failures share: the
//! `understudy` program run to completion, a coordinator process (active or
//! standing by) and node processes held in [`ChildGuard`]s, each node's
//! `ACK` lines collected with the time they were read, the longest pause
//! between a node's acknowledgements around each failure, and the bank
//! checked at the end through the program.
//!
//! Every wait is bounded in time; every process is killed and reaped on
//! every path out of a test by its guard.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::ChildGuard;

pub const EXE: &str = env!("CARGO_BIN_EXE_understudy");
/// The member that creates and checks the bank; it runs no transfers.
pub const CHECKER: u32 = 4;
pub const ACCOUNTS: u32 = 200;
/// Limits only a hung process reaches.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `understudy <args>` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run understudy {args:?}: {e}"))
}

/// What a finished run said, for a failed assertion's message.
pub fn text(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts the coordinator of the cluster in `dir` as its own process and
/// waits until it listens.
pub fn coordinator(dir: &str) -> ChildGuard {
    let mut c = ChildGuard::spawn(
        Command::new(EXE)
            .args(["coordinator", "--cluster", dir])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("start the coordinator");
    let (rx, _) = harness::read_lines(c.take_stdout().expect("piped"));
    assert!(
        rx.iter().take(4).any(|l| l.starts_with("listening on")),
        "the coordinator did not start"
    );
    c
}

/// Node `node`'s state at the coordinator of the cluster in `dir`, from
/// `status --json`.
pub fn member(dir: &str, node: u32) -> serde_json::Value {
    let out = run(&["status", "--cluster", dir, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("node {node} not in {v}"))
}

/// Runs `understudy <args>`; it must succeed.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "understudy {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A cluster of nodes 1–3 and the checker in `root/cluster`, its bank
/// created (by a coordinator started for that and then stopped).
pub fn bank_cluster(root: &Path) -> PathBuf {
    let dir = root.join("cluster");
    let d = dir.to_str().expect("a UTF-8 temp path");
    run_ok(&["cluster-init", "--dir", d, "--nodes", "1,2,3,4"]);
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();
    run_ok(&[
        "node",
        "--cluster",
        d,
        "--id",
        &CHECKER.to_string(),
        "--bank-init",
        "--accounts",
        &ACCOUNTS.to_string(),
        "--workload",
        "none",
        "--duration-secs",
        "0",
    ]);
    drop(coord);
    dir
}

/// A coordinator process, and the lines it prints.
pub struct Coordinator {
    pub child: ChildGuard,
    lines: Receiver<String>,
}

impl Coordinator {
    /// Starts `understudy coordinator --cluster dir <extra>`.
    pub fn start(dir: &Path, extra: &[&str]) -> Coordinator {
        let mut child = ChildGuard::spawn(
            Command::new(EXE)
                .args(["coordinator", "--cluster", dir.to_str().expect("UTF-8")])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("spawn the coordinator");
        let (lines, _) = harness::read_lines(child.take_stdout().expect("piped"));
        Coordinator { child, lines }
    }

    /// Waits for its `listening on` line: it serves.
    pub fn wait_serving(&mut self) {
        self.wait_line("listening on ");
    }

    /// Waits for a line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("the coordinator printed no {prefix:?} line ({e:?})"),
            }
        }
    }
}

/// A node process running bank transfers, its acknowledgements collected.
pub struct BankNode {
    pub id: u32,
    pub child: ChildGuard,
    /// Every line it printed, with when it was read.
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BankNode {
    /// Starts `understudy node --workload bank` as `id`.
    pub fn start(dir: &Path, id: u32, extra: &[&str]) -> BankNode {
        let mut child = ChildGuard::spawn(
            Command::new(EXE)
                .args([
                    "node",
                    "--cluster",
                    dir.to_str().expect("UTF-8"),
                    "--id",
                    &id.to_string(),
                ])
                .args([
                    "--workload",
                    "bank",
                    "--threads",
                    "2",
                    "--accounts",
                    &ACCOUNTS.to_string(),
                ])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("spawn a node");
        let out = child.take_stdout().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        BankNode {
            id,
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// How many transfers it has acknowledged.
    pub fn acks(&self) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.starts_with("ACK "))
            .count()
    }

    /// When it acknowledged each transfer.
    pub fn ack_times(&self) -> Vec<Instant> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|(_, l)| l.starts_with("ACK "))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Waits until it has acknowledged `more` transfers beyond `seen`;
    /// false if it stopped or did not within [`PATIENCE`].
    pub fn progress(&mut self, seen: usize, more: usize) -> bool {
        harness::wait_for(PATIENCE, Duration::from_millis(2), || self.acks() >= seen + more)
    }

    /// Whether a line starting with `prefix` was printed.
    pub fn printed(&self, prefix: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|(_, l)| l.starts_with(prefix))
    }

    /// Asks it to stop cleanly (SIGTERM) and waits: `Some(exit code)`.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id()?;
        // The guard has not reaped it, so the pid is still this child's.
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = self.child.wait_timeout(PATIENCE).expect("wait for the node")?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status.code()
    }

    /// Every line it printed.
    pub fn stdout(&self) -> Vec<String> {
        self.lines.lock().unwrap().iter().map(|(_, l)| l.clone()).collect()
    }
}

/// The longest gap between two acknowledgements of any of `nodes` around
/// a failure at `at`: from a node's last acknowledgement before `at` to its
/// acknowledgements up to `until`, the longest stretch without one.
pub fn longest_pause(nodes: &[&BankNode], at: Instant, until: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    for n in nodes {
        let times = n.ack_times();
        let before = times.iter().rev().find(|t| **t <= at).copied();
        let mut last = before.unwrap_or(at);
        for &t in times.iter().filter(|t| **t > at && **t <= until) {
            longest = longest.max(t.duration_since(last));
            last = t;
        }
        // Still silent when the window closed.
        longest = longest.max(until.saturating_duration_since(last));
    }
    longest
}

/// The `p`-th percentile (0–100) of `values`, nearest rank.
pub fn percentile(values: &[Duration], p: u32) -> Duration {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p as usize * v.len()).div_ceil(100)).clamp(1, v.len());
    v[rank - 1]
}

/// Writes every node's acknowledgements to `path` and checks the bank
/// through the checker: balances conserved, every acknowledged transfer in
/// the journal.
pub fn check_bank(dir: &Path, nodes: &[&BankNode], path: &Path) {
    let acks: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.stdout())
        .filter(|l| l.starts_with("ACK "))
        .collect();
    std::fs::write(path, acks.join("\n") + "\n").expect("write the acknowledgements");
    let d = dir.to_str().expect("UTF-8");
    let out = run_ok(&[
        "bank-check",
        "--cluster",
        d,
        "--id",
        &CHECKER.to_string(),
        "--accounts",
        &ACCOUNTS.to_string(),
        "--acks",
        path.to_str().expect("UTF-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("acks={}", acks.len())), "{text}");
}
