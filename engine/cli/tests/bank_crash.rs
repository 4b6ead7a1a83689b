//! Crash test of the whole engine with real processes: a coordinator process,
//! a node process running bank transfers on four threads, killed with
//! SIGKILL at a random moment after its first acknowledged transfer, again
//! and again.
//!
//! After each kill the test opens the killed node in-process through the
//! library. It must come back as a restart and back out its own in-flight
//! transfers; then the balances must sum to what the bank started with (a
//! transfer half on disk would break the sum) and every transfer the
//! process acknowledged must be in the journal with its value (a commit
//! acknowledged but lost would break that). Across the rounds at least one
//! kill must have caught transfers in flight, or the test proved nothing
//! about backing out.
//!
//! No assertion is about time: the time budget only bounds how many rounds
//! run, and every wait has a generous limit that only a hung process hits.
//!
//! Two smaller tests pin down races this one ran into: a node reopened the
//! instant its previous incarnation died must be admitted, and must come
//! back whole — able to lock, its old write locks its own again.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use harness::{read_lines, ChildGuard};
use rand::Rng;
use understudy::{Error, Node, NodeOptions};
use understudy_cli::bank::{self, Ack};
use understudy_cli::CliError;

const BIN: &str = env!("CARGO_BIN_EXE_understudy");

/// The node the test kills and restarts.
const WORKER: u32 = 1;
/// The node that creates the bank, and checks it through the binary at the
/// end.
const BANKER: u32 = 2;
const ACCOUNTS: u32 = 200;
const INIT_BALANCE: u64 = 1000;
const TOTAL: u64 = ACCOUNTS as u64 * INIT_BALANCE;

/// Rounds always run (time permitting), and at most; past the minimum a
/// round only starts while no kill has caught a transfer in flight yet.
const MIN_ROUNDS: usize = 6;
const MAX_ROUNDS: usize = 20;
/// No round starts after this much time.
const BUDGET: Duration = Duration::from_secs(90);
/// Limits only a hung process reaches: a debug build starting on a loaded
/// machine takes well under a second.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// The worker is killed this many milliseconds after its first ACK.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 20..=300;
/// Opening and checking the restarted node is tried this often: a node of
/// the test process may itself lose its lease on a loaded machine, which
/// stops it without saying anything about the data.
const CHECK_ATTEMPTS: usize = 3;
/// The coordinator's lease and failure timeout: long, because this test is
/// not about leases. A killed process is detected by its dropped connection
/// at once, whatever the timeout; but a node (the worker, or the test's
/// own) stops when its heartbeats go unanswered for the lease, and a debug
/// build at low priority on a loaded machine was seen to stall that long
/// with leases of 80 and 250 ms.
const LEASE_MS: &str = "3000";
const FAILURE_TIMEOUT_MS: &str = "5000";
/// The worker's pause between a transfer's first and second write. A
/// transfer's undo records only reach the disk with a sync of the log (its
/// own commit's, or another thread's), so a kill leaves a transfer to back
/// out only if it lands between such a sync and the transfer's commit
/// record. Measured over ten kills each: no pause caught one in 1 kill of
/// 10, 2 ms in 5, 5 ms in 7.
const THINK_MS: &str = "5";

/// A process of the test: killed and reaped on every path, panics
/// included; its stderr goes to a file, read when a round goes wrong.
struct Proc {
    child: ChildGuard,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `understudy <args>` with stdout piped and stderr to a file.
    fn spawn(args: &[&str], stderr: PathBuf) -> (Proc, ChildStdout) {
        let err = File::create(&stderr).expect("create a stderr file");
        let mut child = ChildGuard::spawn(
            Command::new(BIN)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(err),
        )
        .unwrap_or_else(|e| panic!("spawn {BIN} {args:?}: {e}"));
        let stdout = child.take_stdout().expect("stdout is piped");
        (Proc { child, stderr }, stdout)
    }

    /// SIGKILL: no handler, no cleanup.
    fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("kill and reap the child")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Waits for a line starting with `prefix`; `None` if the stream ended first.
fn wait_for(rx: &Receiver<String>, prefix: &str) -> Option<String> {
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return Some(line),
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => panic!("no {prefix:?} line within {STARTUP_LIMIT:?}"),
        }
    }
}

/// Runs `understudy <args>` to completion, without judging the outcome.
fn try_run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {BIN} {args:?}: {e}"))
}

/// Runs `understudy <args>` to completion; it must succeed.
fn run(args: &[&str]) -> Output {
    let out = try_run(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Creates a cluster of the worker and the banker under `root`, starts its
/// coordinator process and has the banker create the bank. Returns the
/// cluster directory and the coordinator.
///
/// The bank is created by one process whose node may lose its lease on a
/// loaded machine; creating it is not idempotent, so then the whole cluster
/// is made afresh.
fn bank_cluster(root: &Path) -> (PathBuf, Proc) {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let dir = root.join(format!("cluster-{attempt}"));
        let d = dir.to_str().expect("a UTF-8 temp path");
        let nodes = format!("{WORKER},{BANKER}");
        run(&["cluster-init", "--dir", d, "--nodes", &nodes]);
        let (coordinator, coord_out) = Proc::spawn(
            &[
                "coordinator",
                "--cluster",
                d,
                "--heartbeat-ms",
                "20",
                "--lease-ms",
                LEASE_MS,
                "--failure-timeout-ms",
                FAILURE_TIMEOUT_MS,
            ],
            root.join(format!("coordinator-{attempt}.err")),
        );
        let (coord_lines, _) = read_lines(coord_out);
        wait_for(&coord_lines, "listening on ").expect("the coordinator exited before listening");
        let init = try_run(&[
            "node",
            "--cluster",
            d,
            "--id",
            &BANKER.to_string(),
            "--bank-init",
            "--accounts",
            &ACCOUNTS.to_string(),
            "--init-balance",
            &INIT_BALANCE.to_string(),
            "--workload",
            "none",
            "--duration-secs",
            "0",
        ]);
        let stdout = String::from_utf8_lossy(&init.stdout);
        let stderr = String::from_utf8_lossy(&init.stderr);
        if init.status.success() {
            assert!(
                stdout.contains(&format!("INIT accounts={ACCOUNTS} total={TOTAL}")),
                "unexpected init output:\n{stdout}"
            );
            return (dir, coordinator);
        }
        assert!(
            stderr.contains("lease") && attempt < ATTEMPTS,
            "creating the bank failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            init.status
        );
        eprintln!("creating the bank lost its lease; starting over with a new cluster");
    }
    unreachable!("the last attempt returns or panics")
}

/// Parses one line of a worker's stdout: `Some` for an `ACK` line, which
/// must be well formed.
fn parse_ack(line: &str) -> Option<Ack> {
    Ack::parse(line).map(|a| a.unwrap_or_else(|e| panic!("{e}")))
}

/// What reopening the killed node found.
struct Reopened {
    restarted: bool,
    backed_out: usize,
}

/// Checks the bank through `node` with the program's own checks: the
/// balances sum to the total, and every acknowledged transfer is in the
/// journal with its value. Engine errors are returned; wrong data panics.
fn check_bank(node: &Node, acks: &[Ack]) -> Result<(), Error> {
    let engine = |e: CliError| match e {
        CliError::Engine(e) => e,
        other => panic!("the bank is wrong: {other}"),
    };
    let sum = bank::total_balance(node, ACCOUNTS).map_err(engine)?;
    assert_eq!(sum, TOTAL, "the balances no longer sum to the bank's total");
    bank::check_acks(node, acks).map_err(engine)
}

/// Opens the worker node in-process, checks the bank through it and closes
/// it, so that the next round's process can join as that node again. Tried
/// again if the test's own node stops (see [`CHECK_ATTEMPTS`]); the first
/// open's report is the one that tells what the killed process left.
fn check_round(dir: &Path, acks: &[Ack]) -> Reopened {
    let mut reopened: Option<Reopened> = None;
    for attempt in 1..=CHECK_ATTEMPTS {
        let result = (|| {
            let node = Node::open(dir, WORKER, NodeOptions::default())?;
            let report = node.start_report();
            // A later attempt restarts a node the earlier one left behind
            // stopped; whatever it backs out still counts.
            let r = reopened.get_or_insert(Reopened {
                restarted: report.restarted,
                backed_out: 0,
            });
            r.backed_out += report.backed_out;
            check_bank(&node, acks)?;
            node.close()
        })();
        match result {
            Ok(()) => return reopened.expect("the node was opened"),
            Err(e @ (Error::LeaseLost | Error::Stopped(_))) if attempt < CHECK_ATTEMPTS => {
                eprintln!("the checking node stopped ({e}); opening it again");
            }
            Err(e) => panic!("checking through node {WORKER} failed: {e}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

#[test]
fn killed_node_restarts_and_keeps_the_bank_whole() {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("bank-crash")
        .tempdir()
        .expect("temp dir");
    let (dir, _coordinator) = bank_cluster(tmp.path());
    let d = dir.to_str().expect("a UTF-8 temp path");
    let accounts = ACCOUNTS.to_string();
    let balance = INIT_BALANCE.to_string();
    let banker = BANKER.to_string();

    let mut rng = rand::rng();
    let mut acks: Vec<Ack> = Vec::new();
    let mut backed_out = Vec::new();
    let worker = WORKER.to_string();
    for round in 1..=MAX_ROUNDS {
        let caught_one = backed_out.iter().any(|&n| n > 0);
        if round > 1 && (started.elapsed() > BUDGET || (round > MIN_ROUNDS && caught_one)) {
            break;
        }
        let (mut proc, out) = Proc::spawn(
            &[
                "node",
                "--cluster",
                d,
                "--id",
                &worker,
                "--workload",
                "bank",
                "--threads",
                "4",
                "--accounts",
                &accounts,
                "--think-ms",
                THINK_MS,
            ],
            tmp.path().join(format!("worker-{round}.err")),
        );
        let (lines, reader) = read_lines(out);
        let ready = wait_for(&lines, "READY ");
        let first_ack = ready.as_ref().and_then(|_| wait_for(&lines, "ACK "));
        // Without a first ACK the process has ended by itself; it is reaped
        // all the same.
        if first_ack.is_some() {
            std::thread::sleep(Duration::from_millis(rng.random_range(KILL_AFTER_MS)));
        }
        let status = proc.kill();
        let output = reader.join().expect("the stdout reader panicked");
        let round_acks: Vec<Ack> = output.iter().filter_map(|l| parse_ack(l)).collect();
        if status.code().is_some() {
            // It exited rather than being killed. Acceptable only if its
            // lease lapsed (a loaded machine can starve its heartbeats for
            // longer than the lease); anything else is a bug.
            let stderr = proc.stderr();
            assert!(
                stderr.contains("lease"),
                "round {round}: the worker exited by itself ({status}):\n{stderr}"
            );
            eprintln!("round {round}: the worker exited by itself: {}", stderr.trim());
        }
        acks.extend(round_acks.iter().cloned());
        let reopened = check_round(&dir, &acks);
        if ready.is_some() {
            assert!(
                reopened.restarted,
                "round {round}: node {WORKER} died as a member, yet reopened without a restart"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged before the kill, restart backed out {}",
            round_acks.len(),
            reopened.backed_out
        );
        backed_out.push(reopened.backed_out);
    }

    let mut ids = HashSet::new();
    for a in &acks {
        assert!(ids.insert(a.id.as_str()), "transfer id {} acknowledged twice", a.id);
    }
    assert!(!acks.is_empty(), "no round acknowledged a transfer");
    assert!(
        backed_out.iter().any(|&n| n > 0),
        "no kill caught a transfer in flight in {} rounds (backed out per round: {backed_out:?})",
        backed_out.len()
    );

    // The binary's own checker agrees, through the other node.
    let acks_file = tmp.path().join("acks.txt");
    let text: String = acks.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(&acks_file, text).expect("write the ACK file");
    let check = run(&[
        "bank-check",
        "--cluster",
        d,
        "--id",
        &banker,
        "--accounts",
        &accounts,
        "--init-balance",
        &balance,
        "--acks",
        acks_file.to_str().expect("a UTF-8 temp path"),
    ]);
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains(&format!("CHECK ok total={TOTAL} acks={}", acks.len())),
        "unexpected bank-check output:\n{check}"
    );

    // Both nodes left cleanly: the coordinator holds nothing of theirs.
    let status = run(&["status", "--cluster", d, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    let members = status["members"].as_array().expect("a member list");
    assert_eq!(members.len(), 2, "{status}");
    for m in members {
        assert_eq!(m["state"], "failed", "{m}");
        assert_eq!(m["recovery"], "recovered", "{m}");
        assert_eq!(m["retained_locks"], 0, "{m}");
    }
    eprintln!(
        "{} rounds, {} transfers acknowledged, in-flight transactions backed out per round: {backed_out:?}, {:?}",
        backed_out.len(),
        acks.len(),
        started.elapsed()
    );
}

/// A node reopened the moment its previous incarnation died must be
/// admitted. The coordinator declares the old incarnation failed and tells
/// every session so; a new session of the same node that is admitted in
/// between must not receive that news before its own welcome.
#[test]
fn node_reopened_right_after_a_crash_is_admitted() {
    const ROUNDS: usize = 20;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let endpoint: lockmgr::Endpoint = format!("unix:{}", dir.join("coordinator.sock").display())
        .parse()
        .expect("an endpoint");
    let cluster = understudy::Cluster::create(dir, &[WORKER], endpoint.clone(), 4096).expect("create the cluster");
    let io = wal::io::Io::new(Default::default()).expect("an I/O backend");
    let mut cfg = lockmgr::CoordinatorConfig::new(
        vec![endpoint],
        cluster.secret().expect("the secret"),
        cluster.coordinator_dir(),
        io,
    );
    // Long leases: this test is about admission, not about leases (see
    // `LEASE_MS`).
    cfg.lease_ms = 3000;
    cfg.failure_timeout_ms = 5000;
    let coordinator = lockmgr::Coordinator::start(cfg).expect("start the coordinator");
    let mut node = Node::open(dir, WORKER, NodeOptions::default()).expect("first open");
    for round in 1..=ROUNDS {
        // Dropped without leaving, as a crash: the coordinator sees the
        // connection end and declares this incarnation failed.
        drop(node);
        node = match Node::open(dir, WORKER, NodeOptions::default()) {
            Ok(n) => n,
            Err(e) => panic!("round {round}: reopening right after the crash failed: {e}"),
        };
        assert!(node.start_report().restarted, "round {round}: not a restart");
    }
    node.close().expect("close");
    coordinator.shutdown();
}

/// A node restarting while the coordinator is still declaring its previous
/// incarnation failed must come back whole: able to lock, and with the dead
/// incarnation's write locks handed to it rather than retained behind its
/// back. The restart reconnects as fast as it can, so that its admission
/// lands inside the coordinator's handling of the old connection's end.
#[test]
fn restart_racing_its_own_failure_is_admitted_whole() {
    use lockmgr::wire::ErrorCode;
    use lockmgr::{Client, ClientConfig, ClientError, LockMode, Purpose, ResourceId};

    const ROUNDS: u64 = 300;
    const OTHER_OWNERS: u64 = 50_000;
    /// Restart attempts refused as "still live" before the round gives up:
    /// far more than the coordinator needs to see a connection end.
    const MAX_ATTEMPTS: u32 = 100_000;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let endpoint: lockmgr::Endpoint = format!("unix:{}", dir.join("coordinator.sock").display())
        .parse()
        .expect("an endpoint");
    let cluster =
        understudy::Cluster::create(dir, &[WORKER, BANKER], endpoint.clone(), 4096).expect("create the cluster");
    let secret = cluster.secret().expect("the secret");
    let io = wal::io::Io::new(Default::default()).expect("an I/O backend");
    let mut cfg =
        lockmgr::CoordinatorConfig::new(vec![endpoint.clone()], secret.clone(), cluster.coordinator_dir(), io);
    cfg.lease_ms = 3000;
    cfg.failure_timeout_ms = 5000;
    let coordinator = lockmgr::Coordinator::start(cfg).expect("start the coordinator");
    let connect = |purpose: Purpose| {
        let mut c = ClientConfig::new(endpoint.clone(), WORKER, secret.clone());
        c.purpose = purpose;
        Client::connect(c)
    };
    // Many lock owners of another node make the coordinator's sweep of a
    // failed node's locks take longer, and with it the moment in which the
    // restart can slip in.
    let other = {
        let mut c = ClientConfig::new(endpoint.clone(), BANKER, secret.clone());
        c.purpose = Purpose::Join;
        Client::connect(c).expect("join the other node")
    };
    for txn in 0..OTHER_OWNERS {
        other
            .lock(txn, ResourceId::new(3, txn), LockMode::S, None)
            .expect("lock for the other node");
    }
    let mut client = connect(Purpose::Join).expect("join");
    for round in 0..ROUNDS {
        let page = ResourceId::new(1, round);
        client.lock(1, page, LockMode::X, None).expect("lock a page");
        // A crash: the connection ends with the X lock held.
        drop(client);
        let mut attempts = 0;
        client = loop {
            match connect(Purpose::Restart) {
                Ok(c) => break c,
                // The coordinator has not seen the old connection end yet.
                Err(ClientError::Refused {
                    code: ErrorCode::AlreadyLive,
                    ..
                }) if attempts < MAX_ATTEMPTS => attempts += 1,
                Err(e) => panic!("round {round}: restart refused after {attempts} attempts: {e}"),
            }
        };
        // The restarted incarnation holds its old lock again (under the
        // restart transaction) and may take new ones.
        let fresh = client.lock(2, ResourceId::new(2, round), LockMode::X, None);
        assert!(
            fresh.is_ok(),
            "round {round}: the restarted node cannot lock: {fresh:?}"
        );
        client.restart_finished().expect("finish the restart");
        let retained = client.retained(WORKER).expect("list retained locks");
        assert!(
            retained.is_empty(),
            "round {round}: after its restart finished, node {WORKER} still has retained locks {retained:?}"
        );
        client.release_all(2).expect("release");
    }
    drop(client);
    other.leave().expect("the other node leaves");
    coordinator.shutdown();
}
