//! Stateless recovery agents: the code that makes a transaction's actions on
//! an external resource (a directory of files, a message outbox, a second
//! store) final when it commits, and undoes them when a scope they belong
//! to fails — the transaction's own rollback, a failed nested scope, the
//! node's restart after a crash, or a peer's recovery of the node.
//!
//! An embedder registers one agent per resource id when a node opens
//! ([`Agents`], in [`crate::NodeOptions::agents`]), the same code on every
//! node. A transaction acts through [`crate::Transaction::act`]: the
//! engine logs an agent record — the resource, the failure scope token, the
//! work identifier — and makes it durable *before* the action runs, so no
//! action can happen that the log does not know. From then on the record
//! alone tells any node what to do: agents keep no state between calls.
//!
//! ## The protocol (prepare, decide, finish)
//! 1. **Prepare.** The transaction logs the agent record durably, then acts
//!    tentatively (the file outbox writes the file aside and syncs it); the
//!    action is not visible yet. A failed action is undone at once.
//! 2. **Decide.** Commit logs its intent and forces its pages
//!    ([`crate::txn`]); the transaction is committed exactly when every page
//!    the intent lists carries the intent's stamp on disk — and one that
//!    changed no page, exactly when the intent is durable. Every agent
//!    record lies before the intent, so a decided transaction's actions
//!    were all prepared.
//! 3. **Finish.** Only then is each agent told to [`RecoveryAgent::commit`]
//!    its work (oldest first), and only after that is the `Commit` record
//!    appended: a `Commit` record in the log means the agents finished.
//!
//! A crash anywhere is recovered from the log by whoever recovers it: a
//! transaction without a `Commit` or `End` record whose intent its pages
//! confirm has its agents' work committed again (idempotently: some of it
//! may be final already); any other has it undone, newest first
//! ([`RecoveryAgent::undo`], idempotent too: the action may have happened in
//! part or not at all). Work a failed scope undid while the transaction ran
//! is passed over by both, as its `Compensation` record says
//! ([`supervisor`]). So after any crash an action is final exactly when its
//! transaction committed.
//!
//! What the order costs: one log flush per action (before it runs), and the
//! agents' finishing work before the locks go.

pub mod outbox;
pub(crate) mod supervisor;

use std::collections::BTreeMap;
use std::sync::Arc;

use wal::{AgentId, Lsn, ScopeToken, TxnId, PAGE_AGENT};

use crate::error::{Error, Result};

/// What an agent returns when it cannot do what it is told.
pub type AgentError = Box<dyn std::error::Error + Send + Sync>;

/// One action on an external resource, as its agent record in the log
/// describes it: everything an agent gets, and all it may rely on.
#[derive(Clone, Copy, Debug)]
pub struct Work<'a> {
    /// The resource (the id the agent is registered under).
    pub resource: AgentId,
    /// The node whose log holds the record (not necessarily the node
    /// calling: a peer recovers a failed node's log).
    pub node: u32,
    /// The transaction the action belongs to, in that node's log.
    pub txn: TxnId,
    /// The failure scope the action belongs to (see `crate::scope`).
    pub scope: ScopeToken,
    /// Where the agent record lies in that node's log.
    pub lsn: Lsn,
    /// The work identifier the transaction logged: what the agent needs to
    /// make the action final or undo it (at most
    /// [`wal::record::MAX_AGENT_WORK`] bytes).
    pub id: &'a [u8],
}

/// A stateless recovery agent: owns one external resource and makes the
/// actions transactions took on it final or undoes them, from their work
/// identifiers alone. Every node registers the same agents, so that any of
/// them can recover any node's log.
///
/// Both calls must be idempotent: after a crash either may be made again
/// for work it already finished, by another process, on another node.
pub trait RecoveryAgent: Send + Sync {
    /// The transaction committed: make `work` final (the file outbox
    /// publishes its file). Called after the transaction's pages are
    /// durable and before its locks go, and again by recovery when a crash
    /// came in between; the action was prepared (its record was durable and
    /// the transaction's action returned before the commit began). Return
    /// only once the result is durable.
    fn commit(&self, work: &Work<'_>) -> std::result::Result<(), AgentError>;

    /// A scope `work` belongs to failed: undo it. The action may have
    /// happened in full, in part or not at all (the record is made durable
    /// before the action runs), and it was never made final. Return only
    /// once the result is durable.
    fn undo(&self, work: &Work<'_>) -> std::result::Result<(), AgentError>;
}

/// The recovery agents a node registers, by resource id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Agents {
    by_resource: BTreeMap<AgentId, Arc<dyn RecoveryAgent>>,
}

impl Agents {
    /// No agents: the node's transactions act on no external resource, and
    /// its recoveries stop at a log that holds agent work
    /// ([`Error::MissingAgent`]).
    pub fn new() -> Agents {
        Agents::default()
    }

    /// Registers `agent` for `resource`. Resource 0 is the data pages' own
    /// agent and cannot be taken; each resource has one agent.
    pub fn register(&mut self, resource: AgentId, agent: Arc<dyn RecoveryAgent>) -> Result<()> {
        if resource == PAGE_AGENT {
            return Err(Error::InvalidAgent {
                resource,
                reason: "resource 0 is the data pages' own agent",
            });
        }
        if self.by_resource.contains_key(&resource) {
            return Err(Error::InvalidAgent {
                resource,
                reason: "an agent is registered for it already",
            });
        }
        self.by_resource.insert(resource, agent);
        Ok(())
    }

    /// [`Agents::register`], by value.
    pub fn with(mut self, resource: AgentId, agent: Arc<dyn RecoveryAgent>) -> Result<Agents> {
        self.register(resource, agent)?;
        Ok(self)
    }

    /// The agent registered for `resource`.
    pub fn get(&self, resource: AgentId) -> Option<&Arc<dyn RecoveryAgent>> {
        self.by_resource.get(&resource)
    }

    /// The resources with an agent, in order.
    pub fn resources(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.by_resource.keys().copied()
    }
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_resource.keys()).finish()
    }
}
