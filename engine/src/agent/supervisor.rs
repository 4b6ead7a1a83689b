//! The recovery supervisor: when a failure scope fails it examines the log
//! for that scope and notifies only the agents registered within it,
//! passing each its work identifiers; and when a transaction commits, it
//! tells the agents registered in it to make their work final.
//!
//! The log is the only memory: what a scope registered is read back from
//! its transaction's backward chain ([`registered_within`]), from the
//! transaction's last record down to where the scope began (see
//! `crate::scope`). A `Compensation` record met on the way says that
//! everything after its `undo_next` was undone already, by a scope that
//! failed before; the walk jumps there, so work undone once is never
//! undone again nor made final. The same walk serves every kind of scope:
//! a nested scope or savepoint of a running transaction, its rollback, its
//! commit, and the recovery of a failed node's log, where the failed scope
//! is the node and every in-flight transaction is walked whole.
//!
//! This file reads records and calls agents; it writes no page and appends
//! no record.

use wal::{AgentId, Log, LogReader, Lsn, RecordBody, ScopeToken, TxnId};

use crate::agent::{Agents, Work};
use crate::error::{Error, Result};

/// One agent record read back from the log, still in force: neither undone
/// by a failed scope nor finished by a `Commit` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Logged {
    pub(crate) resource: AgentId,
    pub(crate) txn: TxnId,
    pub(crate) scope: ScopeToken,
    pub(crate) lsn: Lsn,
    pub(crate) id: Vec<u8>,
}

impl Logged {
    fn work(&self, node: u32) -> Work<'_> {
        Work {
            resource: self.resource,
            node,
            txn: self.txn,
            scope: self.scope,
            lsn: self.lsn,
            id: &self.id,
        }
    }
}

/// The agent work of transaction `txn` registered within its scope that
/// began after `after` (`None`: the whole transaction), newest first, read
/// back along the transaction's chain from its record at `last` (durable).
/// Work a failed scope undid already (a `Compensation` says so) is passed
/// over.
pub(crate) fn registered_within(reader: &LogReader, txn: TxnId, last: Lsn, after: Option<Lsn>) -> Result<Vec<Logged>> {
    let mut out = Vec::new();
    let mut next = Some(last);
    // LSNs strictly fall along the walk (checked below), so it ends.
    while let Some(lsn) = next {
        if after.is_some_and(|a| lsn <= a) {
            break;
        }
        let rec = reader.read(lsn)?;
        let broken = |what: &'static str| {
            Error::Log(wal::WalError::Corruption {
                lsn,
                kind: wal::CorruptionKind::BadPayload(what),
            })
        };
        if rec.meta.txn != txn {
            return Err(broken("a transaction's chain leads to another transaction's record"));
        }
        let prev = match rec.body {
            RecordBody::Compensation { undo_next } => undo_next,
            RecordBody::AgentUndo(id) => {
                out.push(Logged {
                    resource: rec.meta.agent,
                    txn,
                    scope: rec.meta.scope,
                    lsn,
                    id,
                });
                rec.meta.prev_lsn
            }
            _ => rec.meta.prev_lsn,
        };
        if prev.is_some_and(|p| p >= lsn) {
            return Err(broken("a transaction's chain does not lead backward"));
        }
        next = prev;
    }
    Ok(out)
}

/// Checks that every resource `work` names has an agent here, before
/// anything is done: the first that has none is [`Error::MissingAgent`].
pub(crate) fn check_registered(agents: &Agents, node: u32, work: &[Logged]) -> Result<()> {
    match work.iter().find(|w| agents.get(w.resource).is_none()) {
        Some(w) => Err(Error::MissingAgent {
            resource: w.resource,
            node,
            txn: w.txn,
        }),
        None => Ok(()),
    }
}

/// Tells each work's agent to undo it, in the order given (newest first,
/// as [`registered_within`] returns it). `node` is the log's node.
pub(crate) fn undo(agents: &Agents, node: u32, work: &[Logged]) -> Result<()> {
    check_registered(agents, node, work)?;
    for w in work {
        let agent = agents.get(w.resource).expect("checked above");
        agent.undo(&w.work(node)).map_err(|source| Error::Agent {
            resource: w.resource,
            txn: w.txn,
            step: "undo",
            source,
        })?;
    }
    Ok(())
}

/// Tells each work's agent to make it final, oldest first (`work` newest
/// first, as [`registered_within`] returns it). `node` is the log's node.
pub(crate) fn commit(agents: &Agents, node: u32, work: &[Logged]) -> Result<()> {
    check_registered(agents, node, work)?;
    for w in work.iter().rev() {
        let agent = agents.get(w.resource).expect("checked above");
        agent.commit(&w.work(node)).map_err(|source| Error::Agent {
            resource: w.resource,
            txn: w.txn,
            step: "commit",
            source,
        })?;
    }
    Ok(())
}

/// A scope of running transaction `txn` in `log` (node `node`) failed: the
/// scope that began after `after` (`None`: the transaction itself, rolled
/// back), its last record at `last`. Makes the log durable up to `last`,
/// reads the scope's work back and has it undone. Returns how much work
/// was undone.
pub(crate) fn scope_failed(
    log: &Log,
    agents: &Agents,
    node: u32,
    txn: TxnId,
    last: Lsn,
    after: Option<Lsn>,
) -> Result<usize> {
    log.wait_durable(last)?;
    let work = registered_within(&log.reader()?, txn, last, after)?;
    undo(agents, node, &work)?;
    Ok(work.len())
}

/// Transaction `txn` of `log` (node `node`) is committed under its intent
/// at `intent` (durable): reads its work back and has it made final.
/// Returns how much work was.
pub(crate) fn committed(log: &Log, agents: &Agents, node: u32, txn: TxnId, intent: Lsn) -> Result<usize> {
    let work = registered_within(&log.reader()?, txn, intent, None)?;
    commit(agents, node, &work)?;
    Ok(work.len())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use wal::io::Io;
    use wal::{LogConfig, RecordMeta};

    use super::*;
    use crate::agent::{AgentError, RecoveryAgent};

    /// Remembers every call, as (step, work identifier).
    #[derive(Default)]
    struct Journal(Mutex<Vec<(&'static str, Vec<u8>)>>);

    impl RecoveryAgent for Journal {
        fn commit(&self, work: &Work<'_>) -> std::result::Result<(), AgentError> {
            self.0.lock().unwrap().push(("commit", work.id.to_vec()));
            Ok(())
        }
        fn undo(&self, work: &Work<'_>) -> std::result::Result<(), AgentError> {
            self.0.lock().unwrap().push(("undo", work.id.to_vec()));
            Ok(())
        }
    }

    struct Txn<'a> {
        log: &'a Log,
        last: Option<Lsn>,
    }

    impl Txn<'_> {
        fn append(&mut self, agent: AgentId, scope: ScopeToken, body: RecordBody) -> Lsn {
            let meta = RecordMeta {
                agent,
                scope,
                ..RecordMeta::txn(5, self.last)
            };
            let lsn = self.log.append(meta, &body).unwrap();
            self.last = Some(lsn);
            lsn
        }
        fn work(&mut self, agent: AgentId, scope: ScopeToken, id: u8) -> Lsn {
            self.append(agent, scope, RecordBody::AgentUndo(vec![id]))
        }
    }

    #[test]
    fn a_failed_scope_notifies_only_the_agents_registered_within_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::new(1, Io::fallback())).unwrap();
        let journal = Arc::new(Journal::default());
        let agents = Agents::new().with(7, journal.clone()).unwrap();
        let mut t = Txn { log: &log, last: None };
        t.append(0, 0, RecordBody::Begin);
        t.work(7, 0, 1);
        let scope_1 = t.last;
        t.work(7, 1, 2);
        let scope_2 = t.last;
        t.work(7, 2, 3);
        // Scope 2 failed and was compensated: work 3 is undone already.
        t.append(0, 2, RecordBody::Compensation { undo_next: scope_2 });
        t.work(7, 1, 4);
        let last = t.last.unwrap();

        let n = scope_failed(&log, &agents, 1, 5, last, scope_1).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            *journal.0.lock().unwrap(),
            [("undo", vec![4]), ("undo", vec![2])],
            "newest first, within scope 1 only, work 3 passed over"
        );
        journal.0.lock().unwrap().clear();
        let intent = t.append(0, 0, RecordBody::CommitIntent(Vec::new()));
        log.wait_durable(intent).unwrap();
        committed(&log, &agents, 1, 5, intent).unwrap();
        assert_eq!(
            *journal.0.lock().unwrap(),
            [("commit", vec![1]), ("commit", vec![2]), ("commit", vec![4])],
            "oldest first, the compensated work left out"
        );
    }

    #[test]
    fn work_of_a_resource_without_an_agent_is_refused_before_any_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::new(3, Io::fallback())).unwrap();
        let journal = Arc::new(Journal::default());
        let agents = Agents::new().with(7, journal.clone()).unwrap();
        let mut t = Txn { log: &log, last: None };
        t.work(9, 0, 1);
        t.work(7, 0, 2);
        let err = scope_failed(&log, &agents, 3, 5, t.last.unwrap(), None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingAgent {
                    resource: 9,
                    node: 3,
                    txn: 5
                }
            ),
            "{err}"
        );
        assert!(journal.0.lock().unwrap().is_empty(), "nothing was undone");
    }
}
