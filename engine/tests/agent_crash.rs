//! Kill -9 at every step of the agent protocol, for the node's own restart
//! and for peer recovery: a transaction changes a row and writes two files
//! through the file outbox, and its process (this test binary re-run as
//! `agent_child`) is killed with SIGKILL at one step:
//!
//! - **before prepare**: its row changed and logged durably, no agent
//!   record yet;
//! - **after prepare**: both files written aside, records durable, no
//!   commit yet;
//! - **decided**: its pages forced (committed), no file published yet;
//! - **mid-publish**: one file published, the other not;
//! - **mid-backout**: rolling back, one file removed, the other not;
//! - **recovery mid-backout**: killed after prepare, then its own restart
//!   killed between the two removals.
//!
//! The child's agent is the file outbox behind a wrapper that stops for
//! the kill at the chosen step. After each kill the node is recovered —
//! by its own restart, or by a peer — and checked: both files published
//! exactly when the row committed, nothing left aside, every time. A last
//! test kills a node at random moments of a stream of such transactions.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{child_test, cluster_with_coordinator, outbox_opts, read, wait_for, OUTBOX};
use harness::ChildGuard;
use rand::Rng;
use understudy::{AgentError, Agents, FileOutbox, Node, NodeOptions, PeerError, RecoveryAgent, Work};

const CHILD_VAR: &str = "UNDERSTUDY_AGENT_CHILD_CLUSTER";
const STEP_VAR: &str = "UNDERSTUDY_AGENT_CHILD_STEP";
const ROUND_VAR: &str = "UNDERSTUDY_AGENT_CHILD_ROUND";

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

/// Says the child reached `step` (the parent kills it on this line).
fn announce(step: &str) {
    println!("AT {step}");
    std::io::stdout().flush().unwrap();
}

/// Waits for the kill. Bounded: the parent kills the child within
/// seconds; a child left over would end here.
fn hang() -> ! {
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3)
}

/// The file outbox, stopping for the kill at `step`: before the first
/// publish (`decided`), between the first and the second (`mid-publish`),
/// between the first and the second removal (`mid-backout`,
/// `restart-mid-backout`).
struct Stepper {
    inner: FileOutbox,
    step: String,
    commits: AtomicU32,
    undos: AtomicU32,
}

impl RecoveryAgent for Stepper {
    fn commit(&self, work: &Work<'_>) -> Result<(), AgentError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        if (self.step == "decided" && n == 0) || (self.step == "mid-publish" && n == 1) {
            announce(&self.step);
            hang();
        }
        self.inner.commit(work)
    }
    fn undo(&self, work: &Work<'_>) -> Result<(), AgentError> {
        let n = self.undos.fetch_add(1, Ordering::SeqCst);
        if (self.step == "mid-backout" || self.step == "restart-mid-backout") && n == 1 {
            announce(&self.step);
            hang();
        }
        self.inner.undo(work)
    }
}

/// The child: node 1, running the step's scenario (or, for `loop`, a
/// stream of transactions) until killed.
#[test]
fn agent_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let dir = Path::new(&dir);
    let step = std::env::var(STEP_VAR).unwrap();
    let (plain, outbox) = outbox_opts(dir, opts());
    let stepper = Arc::new(Stepper {
        inner: outbox.clone(),
        step: step.clone(),
        commits: AtomicU32::new(0),
        undos: AtomicU32::new(0),
    });
    let opts = NodeOptions {
        agents: Agents::new().with(OUTBOX, stepper).unwrap(),
        ..plain
    };
    let node = Node::open(dir, 1, opts).expect("child joins");
    println!("READY");
    std::io::stdout().flush().unwrap();
    if step == "loop" {
        stream(&node, &outbox);
    }
    let mut t = node.begin().unwrap();
    t.put("t", b"k", b"v").unwrap();
    if step == "before-prepare" {
        // The row's undo record durable, so the kill leaves it in flight.
        node.checkpoint().unwrap();
        announce(&step);
        hang();
    }
    outbox.put(&mut t, "a", b"A").unwrap();
    outbox.put(&mut t, "b", b"B").unwrap();
    match step.as_str() {
        "after-prepare" => announce(&step),
        "decided" | "mid-publish" => drop(t.commit()),
        "mid-backout" => drop(t.rollback()),
        other => panic!("no step {other}"),
    }
    hang();
}

/// Transactions of a row and two files each, printing `BEGIN <seq>` before
/// and `ACK <seq>` once the commit returned.
fn stream(node: &Node, outbox: &FileOutbox) -> ! {
    let round = std::env::var(ROUND_VAR).unwrap();
    for seq in 0..100_000u32 {
        println!("BEGIN {seq}");
        std::io::stdout().flush().unwrap();
        let name = format!("{round}-{seq}");
        let mut t = node.begin().unwrap();
        t.put("t", name.as_bytes(), b"v").unwrap();
        outbox.put(&mut t, &format!("{name}-a"), b"A").unwrap();
        std::thread::sleep(Duration::from_micros(500));
        outbox.put(&mut t, &format!("{name}-b"), b"B").unwrap();
        t.commit().unwrap();
        println!("ACK {seq}");
        std::io::stdout().flush().unwrap();
    }
    hang()
}

/// Who recovers the killed node.
#[derive(Clone, Copy, Debug)]
enum Via {
    OwnRestart,
    Peer,
}

/// A cluster of nodes 1 and 2 with its coordinator in this process; node 2
/// (the outbox registered) created table `t`. Fields drop in order: the
/// node before the coordinator it is connected to, the directory last.
struct Fixture {
    n2: Node,
    outbox: FileOutbox,
    _coord: lockmgr::Coordinator,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, coord) = cluster_with_coordinator(dir.path(), &[1, 2]);
    let (o, outbox) = outbox_opts(dir.path(), opts());
    let n2 = Node::open(dir.path(), 2, o).unwrap();
    n2.create_table("t", 4).unwrap();
    Fixture {
        n2,
        outbox,
        _coord: coord,
        dir,
    }
}

impl Fixture {
    /// Runs the child at `step` (`round` for the stream), and returns it
    /// with its lines once it said `until`.
    fn child(&self, step: &str, round: u32, until: &str) -> (ChildGuard, std::sync::mpsc::Receiver<String>) {
        let round = round.to_string();
        let mut child = child_test(
            "agent_child",
            &[
                (CHILD_VAR, self.dir.path().as_os_str()),
                (STEP_VAR, step.as_ref()),
                (ROUND_VAR, round.as_ref()),
            ],
        );
        let (lines, _) = harness::read_lines(child.take_stdout().unwrap());
        // The test harness prints the test's name without a newline before
        // the child's first line, so lines are matched by their end.
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the child did not say {until:?}"));
            if line.ends_with(until) {
                return (child, lines);
            }
        }
    }

    /// Recovers node 1 `via` (in `case`); returns the node that did.
    fn recover(&self, via: Via, case: &str) -> Option<Node> {
        match via {
            Via::OwnRestart => {
                let (o, _) = outbox_opts(self.dir.path(), opts());
                let n1 = Node::open(self.dir.path(), 1, o).unwrap_or_else(|e| panic!("{case}: {e}"));
                assert!(n1.start_report().restarted, "{case}");
                Some(n1)
            }
            Via::Peer => {
                // Refused until the coordinator has seen node 1 die.
                wait_for("node 2 to recover node 1", || match self.n2.recover_peer(1) {
                    Ok(_) => true,
                    Err(PeerError::NotFailed { .. }) => false,
                    Err(e) => panic!("{case}: peer recovery failed: {e}"),
                });
                None
            }
        }
    }

    /// Files published ⇔ transaction committed; nothing left aside.
    fn check(&self, case: &str, committed: bool) {
        let row = read(&self.n2, b"k");
        assert_eq!(row.is_some(), committed, "{case}: the row");
        let published = self.outbox.published().unwrap();
        if committed {
            assert_eq!(published, ["a", "b"], "{case}");
            let out = self.dir.path().join("outbox");
            assert_eq!(std::fs::read(out.join("a")).unwrap(), b"A", "{case}");
            assert_eq!(std::fs::read(out.join("b")).unwrap(), b"B", "{case}");
        } else {
            assert!(published.is_empty(), "{case}: {published:?}");
        }
        assert!(self.outbox.aside().unwrap().is_empty(), "{case}: files left aside");
    }
}

#[test]
fn a_kill_at_every_step_of_the_agent_protocol_publishes_files_exactly_for_a_committed_transaction() {
    let steps = [
        ("before-prepare", false),
        ("after-prepare", false),
        ("decided", true),
        ("mid-publish", true),
        ("mid-backout", false),
        ("restart-mid-backout", false),
    ];
    for via in [Via::OwnRestart, Via::Peer] {
        for (step, committed) in steps {
            let fx = fixture();
            let case = format!("{step}, recovered by {via:?}");
            if step == "restart-mid-backout" {
                let (mut child, _) = fx.child("after-prepare", 0, "AT after-prepare");
                child.kill().unwrap();
                assert_eq!(fx.outbox.aside().unwrap().len(), 2, "{case}");
                // Its own restart, killed between the two removals.
                let (mut restart, _) = fx.child(step, 0, &format!("AT {step}"));
                restart.kill().unwrap();
                assert_eq!(fx.outbox.aside().unwrap().len(), 1, "{case}: one file removed");
            } else {
                let (mut child, _) = fx.child(step, 0, &format!("AT {step}"));
                child.kill().unwrap();
                if step == "mid-publish" {
                    assert_eq!(fx.outbox.published().unwrap(), ["a"], "{case}: killed mid-publish");
                }
            }
            let n1 = fx.recover(via, &case);
            fx.check(&case, committed);
            if let Some(n1) = n1 {
                n1.close().unwrap();
            }
        }
    }
}

#[test]
fn random_kills_of_a_stream_of_transactions_publish_files_exactly_for_the_committed_ones() {
    let fx = fixture();
    let mut rng = rand::rng();
    for round in 0..12u32 {
        let via = if round % 2 == 0 { Via::OwnRestart } else { Via::Peer };
        let (mut child, lines) = fx.child("loop", round, "ACK 0");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        child.kill().unwrap();
        let (mut begun, mut acked) = (0u32, Some(0u32));
        for line in lines.try_iter() {
            if let Some(seq) = line.strip_prefix("BEGIN ") {
                begun = begun.max(seq.parse().unwrap());
            } else if let Some(seq) = line.strip_prefix("ACK ") {
                acked = acked.max(Some(seq.parse().unwrap()));
            }
        }
        let n1 = fx.recover(via, &format!("round {round}"));
        let published = fx.outbox.published().unwrap();
        for seq in 0..=begun {
            let name = format!("{round}-{seq}");
            let committed = read(&fx.n2, name.as_bytes()).is_some();
            let files = [format!("{name}-a"), format!("{name}-b")].map(|f| published.contains(&f));
            assert_eq!(files, [committed; 2], "round {round} ({via:?}), transaction {seq}");
            if acked.is_some_and(|a| seq <= a) {
                assert!(committed, "round {round}: transaction {seq} was acknowledged");
            }
        }
        assert!(fx.outbox.aside().unwrap().is_empty(), "round {round}: files left aside");
        if let Some(n1) = n1 {
            n1.close().unwrap();
        }
    }
}
