//! A transaction's nested failure scopes — savepoints, scopes whose work
//! may fail or panic, scopes run on a thread of their own — and its
//! actions on external resources through recovery agents.
//!
//! A scope fails when its work returns an error, panics, or (run on a
//! thread of its own) its thread dies; [`Transaction::rollback_to`] fails
//! one on purpose. A failed scope is backed out alone, in this order:
//! 1. its agents' work is undone: the supervisor reads the scope's agent
//!    records back from the log and notifies only their agents, newest
//!    first (`crate::agent::supervisor`);
//! 2. its pages are put back in memory, each as it was before the scope's
//!    first change to it (nothing of a transaction reaches a data file
//!    before commit);
//! 3. a `Compensation` record, carrying the failed scope's token, says
//!    that everything the transaction logged since the scope began is
//!    undone, so neither a later rollback or recovery undoes the agents'
//!    work again nor does a commit make it final.
//!
//! Should step 1 or 3 fail, the node stops: the transaction is then
//! neither backed out in part nor able to commit, and recovery (its
//! restart or a peer) backs it out whole from the log. Locks taken inside
//! a failed scope are kept (strict two-phase locking).

use std::panic::AssertUnwindSafe;

use wal::{AgentId, Lsn, RecordBody, RecordMeta, ScopeToken};

use super::{Savepoint, Transaction};
use crate::agent::{supervisor, Work};
use crate::error::{Error, Result};

impl Transaction {
    /// Marks a point to roll back to: opens a nested scope, which lasts
    /// until a rollback to a savepoint before it, or until a scope around
    /// it ends. Savepoints nest.
    pub fn savepoint(&mut self) -> Result<Savepoint> {
        self.check_open()?;
        self.open_scope(false)
    }

    /// Undoes everything since `sp` — pages, and agents' work (their agents
    /// undo it) — and goes on from there; `sp` stays valid, later
    /// savepoints are gone. Locks taken since are kept (strict two-phase
    /// locking).
    pub fn rollback_to(&mut self, sp: Savepoint) -> Result<()> {
        self.check_open()?;
        if !self.holds_scope(&sp) {
            return Err(Error::InvalidSavepoint);
        }
        self.fail_scope(sp, true)
    }

    /// Ends the scope `sp` began without undoing it, as SQL's `RELEASE
    /// SAVEPOINT` does: its changes (and those of the savepoints after it)
    /// become the enclosing scope's, and `sp` is no longer valid. Keeps a
    /// transaction that takes a savepoint per step (a SQL statement, say)
    /// from nesting ever deeper and keeping images for every step.
    pub fn release(&mut self, sp: Savepoint) -> Result<()> {
        self.check_open()?;
        if !self.holds_scope(&sp) {
            return Err(Error::InvalidSavepoint);
        }
        self.close_level(sp.level);
        Ok(())
    }

    /// Runs `work` in a nested failure scope of this transaction, on this
    /// thread. If `work` returns an error or panics, the scope is backed
    /// out alone — its pages, and its agents' work — and the error (for a
    /// panic, [`Error::ScopePanicked`]) is returned; the transaction goes
    /// on. If `work` succeeds, the scope's changes become the enclosing
    /// scope's. Scopes nest to any depth.
    ///
    /// Should backing the scope out fail, the node stops and that failure
    /// is returned: recovery then backs out the whole transaction.
    pub fn scope<T>(&mut self, work: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let sp = self.open_scope(false)?;
        // The transaction's own state stays whole across a panic in `work`:
        // every change to it is logged before it is kept, and the scope's
        // images put back whatever `work` changed.
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| work(self)));
        self.end_scope(sp, out)
    }

    /// [`Transaction::scope`], with `work` run on a thread of its own that
    /// holds the transaction meanwhile (this thread waits for it). The
    /// thread's death — a panic — fails the scope: it is backed out alone,
    /// even though the thread never returns, and the transaction goes on.
    /// The scope's token marks it as a thread's scope in the log.
    pub fn scope_on_thread<T: Send>(&mut self, work: impl FnOnce(&mut Transaction) -> Result<T> + Send) -> Result<T> {
        self.check_open()?;
        let sp = self.open_scope(true)?;
        let name = format!("txn-{}-scope-{}", self.id, sp.token & !crate::scope::THREAD_SCOPE);
        let txn = &mut *self;
        let out = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name(name)
                .spawn_scoped(s, move || work(txn))
                .map(|thread| thread.join())
        });
        match out {
            Ok(out) => self.end_scope(sp, out),
            Err(e) => {
                // Nothing ran in it.
                self.close_level(sp.level);
                Err(Error::ScopeThread(e))
            }
        }
    }

    /// Acts on external resource `resource` in this transaction: logs the
    /// agent record — `resource`, the innermost scope's token, the work
    /// identifier `id` (at most [`wal::record::MAX_AGENT_WORK`] bytes) —
    /// makes it durable, then runs `act`, which does the action
    /// tentatively (see `crate::agent`). When the transaction commits, the
    /// agent registered for `resource` makes the work final; when a scope
    /// it belongs to fails, the agent undoes it. Should `act` fail, the
    /// work is undone at once and the error returned; the transaction goes
    /// on.
    ///
    /// The node must register an agent for `resource`
    /// ([`crate::NodeOptions::agents`]); otherwise nothing is logged and
    /// the call fails with [`Error::UnknownAgent`].
    pub fn act<T>(&mut self, resource: AgentId, id: &[u8], act: impl FnOnce(&Work<'_>) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let node = self.node.clone();
        if resource == wal::PAGE_AGENT || node.opts.agents.get(resource).is_none() {
            return Err(Error::UnknownAgent { resource });
        }
        if id.len() > wal::record::MAX_AGENT_WORK {
            return Err(Error::WorkTooLarge {
                len: id.len(),
                max: wal::record::MAX_AGENT_WORK,
            });
        }
        self.begun()?;
        let before = self.last_lsn;
        let token = self.scopes.token();
        let meta = RecordMeta {
            scope: token,
            agent: resource,
            ..RecordMeta::txn(self.id, before)
        };
        let lsn = node.logged(node.log.append(meta, &RecordBody::AgentUndo(id.to_vec())))?;
        self.last_lsn = Some(lsn);
        self.scopes.note_agent_work();
        // The WAL rule for the resource: no action the log does not know.
        node.logged(node.log.wait_durable(lsn))?;
        let work = Work {
            resource,
            node: node.node_id,
            txn: self.id,
            scope: token,
            lsn,
            id,
        };
        match act(&work) {
            Ok(v) => Ok(v),
            Err(e) => {
                // The failed action is a failed scope of its own.
                self.compensate(before, token, true)?;
                Err(e)
            }
        }
    }

    fn open_scope(&mut self, on_thread: bool) -> Result<Savepoint> {
        let (level, token) = self.scopes.open(self.last_lsn, on_thread)?;
        Ok(Savepoint {
            txn: self.id,
            level,
            token,
            last_lsn: self.last_lsn,
        })
    }

    /// Whether the scope `sp` begins is still open in this transaction.
    fn holds_scope(&self, sp: &Savepoint) -> bool {
        sp.txn == self.id
            && sp.level > 0
            && self
                .scopes
                .level(sp.level)
                .is_some_and(|l| l.token == sp.token && l.start == sp.last_lsn)
    }

    /// Ends the scope `sp` began, its work having returned `out`.
    fn end_scope<T>(&mut self, sp: Savepoint, out: std::thread::Result<Result<T>>) -> Result<T> {
        let failure = match out {
            Ok(Ok(v)) => {
                // A rollback inside `work` to a savepoint before the scope
                // closed it already.
                if self.holds_scope(&sp) {
                    self.close_level(sp.level);
                }
                return Ok(v);
            }
            Ok(Err(e)) => e,
            Err(panic) => Error::ScopePanicked {
                message: panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into()),
            },
        };
        if self.holds_scope(&sp) {
            self.fail_scope(sp, false)?;
        }
        Err(failure)
    }

    /// Backs out the scope `sp` begins and every scope inside it (module
    /// docs); it opens again, empty, when `reopen`.
    fn fail_scope(&mut self, sp: Savepoint, reopen: bool) -> Result<()> {
        let agent_work = self.scopes.agent_work_from(sp.level) > 0;
        if agent_work {
            self.undo_agent_work(sp.last_lsn)?;
        }
        let images = self.scopes.fail(sp.level, reopen);
        self.restore(images, sp.level);
        self.compensate(sp.last_lsn, sp.token, false)
    }

    /// Has the agents undo the work logged after `after` (module docs,
    /// step 1).
    fn undo_agent_work(&mut self, after: Option<Lsn>) -> Result<()> {
        let node = self.node.clone();
        let last = self.last_lsn.expect("agent work was logged");
        let undone = supervisor::scope_failed(&node.log, &node.opts.agents, node.node_id, self.id, last, after);
        if let Err(e) = undone {
            node.stop(&format!(
                "a failed scope of transaction {} could not have its agents' work undone: {e}",
                self.id
            ));
            return Err(e);
        }
        Ok(())
    }

    /// Logs that everything after `after` is undone, for the scope `token`
    /// (module docs, step 3); first has the agents undo their work there
    /// when `undo_agents`. Nothing logged since `after`: nothing to say.
    fn compensate(&mut self, after: Option<Lsn>, token: ScopeToken, undo_agents: bool) -> Result<()> {
        let Some(last) = self.last_lsn.filter(|&l| Some(l) != after) else {
            return Ok(());
        };
        if undo_agents {
            self.undo_agent_work(after)?;
        }
        let node = self.node.clone();
        let meta = RecordMeta {
            scope: token,
            ..RecordMeta::txn(self.id, Some(last))
        };
        match node.log.append(meta, &RecordBody::Compensation { undo_next: after }) {
            Ok(lsn) => {
                self.last_lsn = Some(lsn);
                Ok(())
            }
            Err(e) => {
                // Without it a commit would make the undone work final.
                node.stop(&format!(
                    "a failed scope of transaction {} could not log its compensation: {e}",
                    self.id
                ));
                Err(e.into())
            }
        }
    }
}
