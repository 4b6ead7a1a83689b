//! Nested failure scopes and agents in a running transaction: a scope that
//! fails — its work returns an error, panics, or its thread dies — is
//! backed out alone, its rows and its outbox files, at every depth, and
//! the transaction goes on to commit what the other scopes did. Savepoint
//! rollbacks, whole rollbacks and failed actions undo agents' work; commit
//! makes exactly the surviving work final.

mod common;

use std::sync::{Arc, Mutex};

use common::{outbox_cluster, read, OUTBOX};
use understudy::{AgentError, Agents, Cluster, Error, FileOutbox, Node, NodeOptions, RecoveryAgent, Transaction, Work};

/// How a scope fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// Its work returns an error.
    Error,
    /// Its work panics, on the transaction's thread.
    Panic,
    /// Its work runs on a thread of its own, which panics and dies.
    ThreadPanic,
}

const DEPTH: u32 = 3;

fn injected() -> Error {
    Error::NoSuchTable("a failure the test injects".into())
}

/// The work of scope `depth` (0: the transaction itself): a row and an
/// outbox file, then the scope inside it (to `DEPTH`), then another row;
/// the scope at `fail_at` fails `how` after all that.
fn nest(t: &mut Transaction, outbox: &FileOutbox, depth: u32, fail_at: u32, how: How) -> understudy::Result<()> {
    t.put("t", format!("row-{depth}").as_bytes(), b"v")?;
    outbox.put(t, &format!("file-{depth}"), format!("from scope {depth}").as_bytes())?;
    if depth < DEPTH {
        let inner = |t: &mut Transaction| nest(t, outbox, depth + 1, fail_at, how);
        let r = match how {
            How::ThreadPanic => t.scope_on_thread(inner),
            How::Error | How::Panic => t.scope(inner),
        };
        let failed_below = fail_at == depth + 1;
        match (&r, failed_below, how) {
            (Ok(()), false, _) => {}
            (Err(Error::NoSuchTable(_)), true, How::Error) => {}
            (Err(Error::ScopePanicked { message }), true, How::Panic | How::ThreadPanic) => {
                assert!(message.contains("fails on purpose"), "{message}");
            }
            other => panic!("scope {}: {other:?}", depth + 1),
        }
    }
    // Work after the inner scope ended, failed or not, stays this scope's.
    t.put("t", format!("after-{depth}").as_bytes(), b"v")?;
    if depth == fail_at {
        match how {
            How::Error => return Err(injected()),
            How::Panic | How::ThreadPanic => panic!("scope {depth} fails on purpose"),
        }
    }
    Ok(())
}

#[test]
fn nested_scopes_three_deep_fail_alone_at_every_level_and_the_transaction_goes_on() {
    for how in [How::Error, How::Panic, How::ThreadPanic] {
        for fail_at in 1..=DEPTH {
            let dir = tempfile::tempdir().unwrap();
            let (node, outbox) = outbox_cluster(dir.path());
            let mut t = node.begin().unwrap();
            nest(&mut t, &outbox, 0, fail_at, how).unwrap();
            t.put("t", b"last", b"v").unwrap();
            t.commit().unwrap();

            let case = format!("{how:?} at depth {fail_at}");
            for depth in 0..=DEPTH {
                let kept = depth < fail_at;
                for row in [format!("row-{depth}"), format!("after-{depth}")] {
                    assert_eq!(read(&node, row.as_bytes()).is_some(), kept, "{case}: {row}");
                }
            }
            assert!(read(&node, b"last").is_some(), "{case}");
            let published: Vec<String> = (0..fail_at).map(|d| format!("file-{d}")).collect();
            assert_eq!(outbox.published().unwrap(), published, "{case}");
            assert_eq!(
                outbox.aside().unwrap(),
                Vec::<String>::new(),
                "{case}: nothing left aside"
            );
            for d in 0..fail_at {
                let content = std::fs::read(dir.path().join("outbox").join(format!("file-{d}"))).unwrap();
                assert_eq!(content, format!("from scope {d}").as_bytes(), "{case}");
            }
        }
    }
}

#[test]
fn a_savepoint_rollback_removes_its_files_and_the_commit_publishes_only_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (node, outbox) = outbox_cluster(dir.path());
    let mut t = node.begin().unwrap();
    outbox.put(&mut t, "a", b"a").unwrap();
    let sp = t.savepoint().unwrap();
    outbox.put(&mut t, "b", b"b").unwrap();
    t.put("t", b"k", b"in the savepoint").unwrap();
    assert_eq!(outbox.aside().unwrap().len(), 2);
    t.rollback_to(sp).unwrap();
    assert_eq!(outbox.aside().unwrap().len(), 1, "b's file is gone at once");
    outbox.put(&mut t, "c", b"c").unwrap();
    // The savepoint stays valid: roll back to it again, with nothing new.
    t.rollback_to(sp).unwrap();
    outbox.put(&mut t, "d", b"d").unwrap();
    assert!(
        outbox.published().unwrap().is_empty(),
        "nothing shows before the commit"
    );
    t.commit().unwrap();
    assert_eq!(outbox.published().unwrap(), ["a", "d"]);
    assert!(outbox.aside().unwrap().is_empty());
    assert_eq!(read(&node, b"k"), None);
}

#[test]
fn a_rollback_or_a_dropped_transaction_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, outbox) = outbox_cluster(dir.path());
    let mut t = node.begin().unwrap();
    outbox.put(&mut t, "a", b"a").unwrap();
    t.scope(|t| outbox.put(t, "b", b"b")).unwrap();
    t.rollback().unwrap();
    let mut t = node.begin().unwrap();
    outbox.put(&mut t, "c", b"c").unwrap();
    drop(t);
    assert!(outbox.published().unwrap().is_empty());
    assert!(outbox.aside().unwrap().is_empty());
    // A transaction that acted only through an agent commits too.
    let mut t = node.begin().unwrap();
    outbox.put(&mut t, "e", b"e").unwrap();
    t.commit().unwrap();
    assert_eq!(outbox.published().unwrap(), ["e"]);
}

/// Remembers every call it gets, as (step, work identifier).
#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, Vec<u8>)>>);

impl RecoveryAgent for Recorder {
    fn commit(&self, work: &Work<'_>) -> Result<(), AgentError> {
        self.0.lock().unwrap().push(("commit", work.id.to_vec()));
        Ok(())
    }
    fn undo(&self, work: &Work<'_>) -> Result<(), AgentError> {
        self.0.lock().unwrap().push(("undo", work.id.to_vec()));
        Ok(())
    }
}

fn recorder_node(dir: &std::path::Path) -> (Node, Arc<Recorder>) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, &[1], ep.parse().unwrap(), 4096).unwrap();
    let rec = Arc::new(Recorder::default());
    let opts = NodeOptions {
        embed_coordinator: true,
        auto_recovery: false,
        agents: Agents::new().with(7, rec.clone()).unwrap(),
        ..NodeOptions::default()
    };
    (Node::open(dir, 1, opts).unwrap(), rec)
}

#[test]
fn a_failed_action_is_undone_at_once_and_never_made_final() {
    let dir = tempfile::tempdir().unwrap();
    let (node, rec) = recorder_node(dir.path());
    let mut t = node.begin().unwrap();
    t.act(7, b"first", |_| Ok(())).unwrap();
    let failed = t.act(7, b"second", |w| {
        assert_eq!((w.resource, w.node, w.scope), (7, 1, 0));
        Err::<(), _>(injected())
    });
    assert!(matches!(failed, Err(Error::NoSuchTable(_))), "{failed:?}");
    assert_eq!(*rec.0.lock().unwrap(), [("undo", b"second".to_vec())]);
    t.act(7, b"third", |_| Ok(())).unwrap();
    rec.0.lock().unwrap().clear();
    t.commit().unwrap();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [("commit", b"first".to_vec()), ("commit", b"third".to_vec())],
        "oldest first, the failed action left out"
    );
}

#[test]
fn scope_tokens_name_each_scope_and_mark_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _rec) = recorder_node(dir.path());
    let mut t = node.begin().unwrap();
    let mut seen = Vec::new();
    let mut note = |w: &Work<'_>| {
        seen.push(w.scope);
        Ok(())
    };
    t.act(7, b"0", &mut note).unwrap();
    t.scope(|t| {
        t.act(7, b"1", &mut note)?;
        t.scope_on_thread(|t| {
            t.act(7, b"2", |w| {
                assert_eq!(w.scope, 2 | understudy::THREAD_SCOPE);
                Ok(())
            })
        })?;
        t.act(7, b"1 again", &mut note)
    })
    .unwrap();
    t.scope(|t| t.act(7, b"3", &mut note)).unwrap();
    t.rollback().unwrap();
    assert_eq!(seen, [0, 1, 1, 3]);
}

#[test]
fn bad_requests_are_refused_with_typed_errors_and_the_transaction_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (node, outbox) = outbox_cluster(dir.path());
    let mut t = node.begin().unwrap();
    assert!(matches!(
        t.act(9, b"x", |_| Ok(())),
        Err(Error::UnknownAgent { resource: 9 })
    ));
    assert!(matches!(
        t.act(0, b"x", |_| Ok(())),
        Err(Error::UnknownAgent { resource: 0 })
    ));
    let big = vec![0; wal::record::MAX_AGENT_WORK + 1];
    assert!(matches!(
        t.act(OUTBOX, &big, |_| Ok(())),
        Err(Error::WorkTooLarge { .. })
    ));
    for name in ["", ".aside", "a/b", "..", "nul\0"] {
        assert!(
            matches!(outbox.put(&mut t, name, b"x"), Err(Error::InvalidOutboxName { .. })),
            "{name:?}"
        );
    }
    // A savepoint taken in a scope that ended is gone with it.
    let mut inner = None;
    t.scope(|t| {
        inner = Some(t.savepoint()?);
        Ok(())
    })
    .unwrap();
    assert!(matches!(t.rollback_to(inner.unwrap()), Err(Error::InvalidSavepoint)));
    assert!(matches!(
        Agents::new().with(0, Arc::new(Recorder::default())),
        Err(Error::InvalidAgent { resource: 0, .. })
    ));
    outbox.put(&mut t, "fine", b"x").unwrap();
    t.commit().unwrap();
    assert_eq!(outbox.published().unwrap(), ["fine"]);
}

/// A released savepoint's work becomes the enclosing scope's: kept by a
/// commit, undone by a rollback to a savepoint before it; the released one
/// can no longer be rolled back to. Released savepoint after savepoint (one
/// per SQL statement, say), the transaction does not nest deeper.
#[test]
fn a_released_savepoint_merges_its_work_into_the_enclosing_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (node, outbox) = outbox_cluster(dir.path());
    let mut t = node.begin().unwrap();
    t.put("t", b"before", b"v").unwrap();
    let outer = t.savepoint().unwrap();
    for step in 0..1000u32 {
        let sp = t.savepoint().unwrap();
        t.put("t", format!("step-{step}").as_bytes(), b"v").unwrap();
        t.release(sp).unwrap();
        if step == 0 {
            assert!(matches!(t.release(sp), Err(Error::InvalidSavepoint)));
            assert!(matches!(t.rollback_to(sp), Err(Error::InvalidSavepoint)));
        }
    }
    outbox.put(&mut t, "file", b"x").unwrap();
    // Undone through the savepoint around the released ones.
    t.rollback_to(outer).unwrap();
    assert_eq!(t.get("t", b"step-0").unwrap(), None);
    assert_eq!(t.get("t", b"step-999").unwrap(), None);
    let sp = t.savepoint().unwrap();
    t.put("t", b"kept", b"v").unwrap();
    t.release(sp).unwrap();
    t.commit().unwrap();

    assert!(read(&node, b"before").is_some());
    assert!(read(&node, b"kept").is_some());
    assert!(read(&node, b"step-500").is_none());
    assert_eq!(outbox.published().unwrap(), Vec::<String>::new(), "the file was undone");
}
