//! The agents' part of a recovery: the failed scope is the node, so every
//! in-flight transaction that logged agent records is examined whole, and
//! its agents are told to make its work final (it committed under its
//! intent) or to undo it (it did not).
//!
//! [`gather`] reads the work back from the log and checks that every
//! resource it names has an agent on this node before recovery writes
//! anything: a log that needs an agent this node lacks stops the recovery
//! with [`crate::Error::MissingAgent`] naming the resource, its retained
//! locks kept, for a node that has the agent to recover. [`finish`] then
//! notifies the agents, after the pages are written back and before the
//! end records: a crash in between leaves the transactions in flight, and
//! the next recovery notifies them again (agents are idempotent).

use wal::LogReader;

use crate::agent::supervisor::{self, Logged};
use crate::agent::Agents;
use crate::error::Result;
use crate::recovery::scan::AgentTxn;

/// One transaction's agent work, newest first, and whether it committed.
pub(super) struct TxnWork {
    committed: bool,
    work: Vec<Logged>,
}

/// Reads back the agent work of `txns` from `reader`'s log and checks that
/// `agents` has an agent for each resource it names.
pub(super) fn gather(reader: &LogReader, agents: &Agents, txns: &[AgentTxn]) -> Result<Vec<TxnWork>> {
    let node = reader.node_id();
    let mut out = Vec::with_capacity(txns.len());
    for t in txns {
        let work = supervisor::registered_within(reader, t.txn, t.last_lsn, None)?;
        supervisor::check_registered(agents, node, &work)?;
        out.push(TxnWork {
            committed: t.committed,
            work,
        });
    }
    Ok(out)
}

/// Has the agents make final or undo the work [`gather`] found; returns
/// how many pieces of work they finished.
pub(super) fn finish(agents: &Agents, node: u32, found: &[TxnWork]) -> Result<usize> {
    let mut done = 0;
    for t in found {
        if t.committed {
            supervisor::commit(agents, node, &t.work)?;
        } else {
            supervisor::undo(agents, node, &t.work)?;
        }
        done += t.work.len();
    }
    Ok(done)
}
