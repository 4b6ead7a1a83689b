//! Recovery honours nested failure scopes after a real crash. A node (this
//! test binary re-run as `scope_child`) runs a transaction three scopes
//! deep, each scope writing a row and an outbox file; the scope at depth 2
//! fails — its work returns an error, or its own thread panics and dies —
//! and is backed out alone, and the transaction goes on with rows after
//! it. The process is then killed with SIGKILL:
//!
//! - **in flight**: everything logged durably, no commit;
//! - **decided**: its pages forced (committed), no file published yet;
//! - **mid-publish**: one surviving file published, the other not;
//! - **mid-scope-backout**: while the failing scope was being backed out,
//!   between its two removals, before its `Compensation` record.
//!
//! Its own restart, or a peer, then recovers it, and what is left is
//! exactly what the scope failure says: the failed scope's rows and files
//! (depths 2 and 3) are gone in every case, never published, and the
//! recovery never made their work final nor, once the scope's backout was
//! logged, undid it again; the rest of the transaction (depths 0 and 1)
//! is kept, files published, exactly when it committed. The log-level
//! unit test of the supervisor shows the walk; this shows it holds across
//! a crash, on both recovery paths, with the outbox on disk.

mod common;
mod probe;

use std::path::Path;
use std::time::Duration;

use common::{child_test, cluster_with_coordinator, read, wait_for};
use harness::ChildGuard;
use probe::{hang, probed_opts, Call, Probe, Stop};
use understudy::admin::lock_client;
use understudy::{Error, FileOutbox, Node, NodeOptions, PeerError, Transaction};

const CHILD_VAR: &str = "UNDERSTUDY_SCOPE_CHILD_CLUSTER";
const STEP_VAR: &str = "UNDERSTUDY_SCOPE_CHILD_STEP";
const HOW_VAR: &str = "UNDERSTUDY_SCOPE_CHILD_HOW";

/// The deepest scope, and the one that fails (it takes depth 3 with it).
const DEPTH: u32 = 3;
const FAIL_AT: u32 = 2;

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

/// How the scope at [`FAIL_AT`] fails.
#[derive(Clone, Copy, Debug)]
enum How {
    /// Its work returns an error.
    Error,
    /// Every scope runs on a thread of its own; the failing one panics,
    /// and its thread dies.
    ThreadPanic,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::Error => "error",
            How::ThreadPanic => "thread-panic",
        }
    }

    fn parse(s: &str) -> How {
        match s {
            "error" => How::Error,
            "thread-panic" => How::ThreadPanic,
            other => panic!("no way to fail called {other}"),
        }
    }
}

/// The work of scope `depth` (0: the transaction itself): a row and an
/// outbox file, the scope inside it (to [`DEPTH`]), then another row; the
/// scope at [`FAIL_AT`] fails `how` after all that.
fn nest(t: &mut Transaction, outbox: &FileOutbox, depth: u32, how: How) -> understudy::Result<()> {
    t.put("t", format!("row-{depth}").as_bytes(), b"v")?;
    outbox.put(t, &format!("file-{depth}"), format!("from scope {depth}").as_bytes())?;
    if depth < DEPTH {
        let inner = |t: &mut Transaction| nest(t, outbox, depth + 1, how);
        let r = match how {
            How::ThreadPanic => t.scope_on_thread(inner),
            How::Error => t.scope(inner),
        };
        assert_eq!(r.is_err(), depth + 1 == FAIL_AT, "scope {}: {r:?}", depth + 1);
    }
    t.put("t", format!("after-{depth}").as_bytes(), b"v")?;
    if depth == FAIL_AT {
        match how {
            How::Error => return Err(Error::NoSuchTable("a failure the test injects".into())),
            How::ThreadPanic => panic!("scope {depth} fails on purpose"),
        }
    }
    Ok(())
}

/// Where the child's probe stops for the kill at `step`: before the first
/// or the second publish of the commit, or between the failing scope's two
/// removals (depth 3's file is removed first, newest first).
fn stop_at(step: &str) -> Option<Stop> {
    let (call, n) = match step {
        "in-flight" => return None,
        "decided" => (Call::Commit, 0),
        "mid-publish" => (Call::Commit, 1),
        "mid-scope-backout" => (Call::Undo, 1),
        other => panic!("no step {other}"),
    };
    Some(Stop {
        call,
        n,
        label: step.into(),
    })
}

/// The child: node 1, running the nested transaction until killed at its
/// step.
#[test]
fn scope_child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let dir = Path::new(&dir);
    let step = std::env::var(STEP_VAR).unwrap();
    let how = How::parse(&std::env::var(HOW_VAR).unwrap());
    let (opts, outbox, _probe) = probed_opts(dir, opts(), stop_at(&step));
    let node = Node::open(dir, 1, opts).expect("child joins");
    let mut t = node.begin().unwrap();
    nest(&mut t, &outbox, 0, how).unwrap();
    t.put("t", b"last", b"v").unwrap();
    if step == "in-flight" {
        // Everything durable — the scope's `Compensation` record too — so
        // the kill leaves the whole transaction, failed scope and all, in
        // the log.
        node.checkpoint().unwrap();
        probe::announce(&step);
        hang();
    }
    // Stops in the probe at "decided" and "mid-publish".
    drop(t.commit());
    hang()
}

/// Who recovers the killed node.
#[derive(Clone, Copy, Debug)]
enum Via {
    OwnRestart,
    Peer,
}

/// A cluster of nodes 1 and 2 with its coordinator in this process; node 2
/// (the outbox registered behind a probe) created table `t`. Fields drop
/// in order: the node before the coordinator, the directory last.
struct Fixture {
    n2: Node,
    outbox: FileOutbox,
    probe2: std::sync::Arc<Probe>,
    _coord: lockmgr::Coordinator,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, coord) = cluster_with_coordinator(dir.path(), &[1, 2]);
    let (o, outbox, probe2) = probed_opts(dir.path(), opts(), None);
    let n2 = Node::open(dir.path(), 2, o).unwrap();
    n2.create_table("t", 4).unwrap();
    Fixture {
        n2,
        outbox,
        probe2,
        _coord: coord,
        dir,
    }
}

impl Fixture {
    /// Runs the child at `step`, failing `how`, until it says `AT <step>`.
    fn child(&self, step: &str, how: How) -> ChildGuard {
        let mut child = child_test(
            "scope_child",
            &[
                (CHILD_VAR, self.dir.path().as_os_str()),
                (STEP_VAR, step.as_ref()),
                (HOW_VAR, how.name().as_ref()),
            ],
        );
        let (lines, _) = harness::read_lines(child.take_stdout().unwrap());
        common::said_until(&lines, &format!("AT {step}"), Duration::from_secs(60));
        child
    }
}

/// The rows and files of scope `depth`.
fn rows(depth: u32) -> [String; 2] {
    [format!("row-{depth}"), format!("after-{depth}")]
}

/// The failed scope's files, and the others'.
fn files(failed: bool) -> Vec<String> {
    let depths = if failed { FAIL_AT..=DEPTH } else { 0..=FAIL_AT - 1 };
    depths.map(|d| format!("file-{d}")).collect()
}

#[test]
fn a_node_killed_after_a_failed_scope_is_recovered_with_exactly_what_the_scope_failure_left() {
    let steps = [
        ("in-flight", false),
        ("decided", true),
        ("mid-publish", true),
        ("mid-scope-backout", false),
    ];
    for via in [Via::OwnRestart, Via::Peer] {
        for how in [How::Error, How::ThreadPanic] {
            for (step, committed) in steps {
                one_case(via, how, step, committed);
            }
        }
    }
}

/// Kills the child at `step`, its scope failed `how`, recovers it `via`,
/// and checks the outcome; the transaction `committed` or not.
fn one_case(via: Via, how: How, step: &str, committed: bool) {
    let case = format!("{step}, failed by {how:?}, recovered by {via:?}");
    let fx = fixture();
    let mut child = fx.child(step, how);
    child.kill().unwrap();

    // The kill came where it was meant to: the failed scope's files already
    // removed (one of them, mid-backout), the surviving ones aside, or one
    // published mid-publish.
    let (aside, published) = match step {
        "mid-publish" => (1, vec!["file-0".to_string()]),
        "mid-scope-backout" => (3, vec![]),
        _ => (2, vec![]),
    };
    assert_eq!(fx.outbox.aside().unwrap().len(), aside, "{case}: aside at the kill");
    assert_eq!(fx.outbox.published().unwrap(), published, "{case}: at the kill");

    // Recover, keeping the recovering node's probe.
    let (n1, probe) = match via {
        Via::OwnRestart => {
            let (o, _, probe1) = probed_opts(fx.dir.path(), opts(), None);
            let n1 = Node::open(fx.dir.path(), 1, o).unwrap_or_else(|e| panic!("{case}: {e}"));
            let report = n1.start_report();
            assert!(report.restarted, "{case}");
            assert_eq!(report.committed, usize::from(committed), "{case}");
            assert_eq!(report.backed_out, usize::from(!committed), "{case}");
            (Some(n1), probe1)
        }
        Via::Peer => {
            // Refused until the coordinator has seen node 1 die.
            let mut tl = None;
            wait_for("node 2 to recover node 1", || match fx.n2.recover_peer(1) {
                Ok(t) => {
                    tl = Some(t);
                    true
                }
                Err(PeerError::NotFailed { .. }) => false,
                Err(e) => panic!("{case}: peer recovery failed: {e}"),
            });
            let tl = tl.unwrap();
            assert_eq!((tl.in_flight, tl.committed), (1, usize::from(committed)), "{case}");
            (None, fx.probe2.clone())
        }
    };

    // Rows: the failed scope's never, the rest exactly when committed.
    for depth in 0..=DEPTH {
        for row in rows(depth) {
            let expect = committed && depth < FAIL_AT;
            assert_eq!(read(&fx.n2, row.as_bytes()).is_some(), expect, "{case}: {row}");
        }
    }
    assert_eq!(read(&fx.n2, b"last").is_some(), committed, "{case}: last");

    // Files: the surviving scopes' published exactly when committed, with
    // their contents; nothing left aside.
    let published = fx.outbox.published().unwrap();
    assert_eq!(published, if committed { files(false) } else { vec![] }, "{case}");
    for file in &published {
        let content = std::fs::read(fx.dir.path().join("outbox").join(file)).unwrap();
        let depth = file.strip_prefix("file-").unwrap();
        assert_eq!(content, format!("from scope {depth}").as_bytes(), "{case}");
    }
    assert!(fx.outbox.aside().unwrap().is_empty(), "{case}: files left aside");

    // What the recovery told the agent — the outbox's directories cannot
    // say it, as publishing a file already removed finds nothing: the
    // failed scope's work is never made final; a committed transaction's
    // surviving work is, and nothing is undone; an uncommitted one's is
    // undone. Once the scope's backout was logged (its `Compensation`
    // record), its work is not undone again; killed before that, the
    // whole transaction is undone, the failed scope's work with it.
    let commits = probe.names(Call::Commit);
    let undos = probe.names(Call::Undo);
    assert!(
        files(true).iter().all(|f| !commits.contains(f)),
        "{case}: failed work made final: {commits:?}"
    );
    let expected_undos = match (committed, step) {
        (true, _) => vec![],
        (false, "mid-scope-backout") => (0..=DEPTH).map(|d| format!("file-{d}")).collect(),
        (false, _) => files(false),
    };
    let expected_commits = if committed { files(false) } else { vec![] };
    assert_eq!((commits, undos), (expected_commits, expected_undos), "{case}");

    // The retained locks are gone: node 2 writes every row the transaction
    // touched, within its lock wait.
    assert!(lock_client(&fx.n2).retained(1).unwrap().is_empty(), "{case}");
    let mut t = fx.n2.begin().unwrap();
    for depth in 0..=DEPTH {
        for row in rows(depth) {
            t.put("t", row.as_bytes(), b"n2")
                .unwrap_or_else(|e| panic!("{case}: {row}: {e}"));
        }
    }
    t.put("t", b"last", b"n2").unwrap();
    t.commit().unwrap();

    // Recovered once: node 1's own restart after a peer's recovery finds
    // nothing left to do.
    let n1 = n1.unwrap_or_else(|| {
        let (o, _, _) = probed_opts(fx.dir.path(), opts(), None);
        let n1 = Node::open(fx.dir.path(), 1, o).unwrap_or_else(|e| panic!("{case}: {e}"));
        let report = n1.start_report();
        assert_eq!((report.backed_out, report.agent_work), (0, 0), "{case}: after the peer");
        n1
    });
    n1.close().unwrap();
}
