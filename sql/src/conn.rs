//! A connection: a node, the transaction open on it, if any, and the
//! savepoint where the statement running in it began.

use std::sync::{Mutex, MutexGuard};

use gluesql_core::error::Result;
use understudy::{Node, Savepoint, Transaction};

use crate::error::{from_engine, storage_msg};

pub(crate) struct Conn {
    pub(crate) node: Node,
    /// The transaction of the statement or `BEGIN` block running, if any.
    open: Mutex<Option<Transaction>>,
    /// In a `BEGIN` block, where its running statement began
    /// ([`Conn::begin_statement`]).
    statement: Mutex<Option<Savepoint>>,
    /// Which table the statements planned and the one running write
    /// ([`Conn::planned`]).
    plans: Mutex<Plans>,
}

/// GlueSQL plans every statement of a call (`Glue::execute`) before it runs
/// the first, then runs them in order, each through `begin` (or, for
/// `BEGIN`, `COMMIT` and `ROLLBACK`, straight to `begin(false)`, `commit`
/// or `rollback`). So the tables the plans say are written queue here, and
/// each statement takes its own off the queue as it starts. A plan that
/// comes after a statement ran starts a new call: whatever its
/// predecessor left (statements never run, after one failed) is dropped.
/// Should the queue ever be out of step (plans made and never run, then
/// another call), the cost is the strength of some read locks, never what
/// a transaction sees: every read is locked either way.
#[derive(Default)]
struct Plans {
    queue: std::collections::VecDeque<Option<String>>,
    /// A statement started or ended since the last plan.
    ran_since_plan: bool,
    /// A statement is running (between `begin` and its `commit` or
    /// `rollback`).
    running: bool,
    /// The table the running statement writes.
    writes: Option<String>,
}

impl Conn {
    pub(crate) fn new(node: Node) -> Conn {
        Conn {
            node,
            open: Mutex::new(None),
            statement: Mutex::new(None),
            plans: Mutex::new(Plans::default()),
        }
    }

    fn plans(&self) -> Result<MutexGuard<'_, Plans>> {
        self.plans
            .lock()
            .map_err(|_| storage_msg("the plans' lock is poisoned".to_owned()))
    }

    /// A statement was planned that writes `table` (an `INSERT`, `UPDATE`
    /// or `DELETE`), or nothing. When it runs, its reads of that table's
    /// rows lock them for update (`crate::scan`, `fetch_data`): GlueSQL
    /// reads the rows an `UPDATE` or `DELETE` changes with a scan of the
    /// whole table, and the key an `INSERT` writes before writing it; under
    /// shared locks two such statements would each hold S where the other
    /// wants X, and one would be a deadlock victim. Locked for update, they
    /// queue.
    pub(crate) fn planned(&self, table: Option<String>) -> Result<()> {
        let mut p = self.plans()?;
        if p.ran_since_plan {
            p.queue.clear();
            p.ran_since_plan = false;
        }
        p.queue.push_back(table);
        Ok(())
    }

    /// A statement other than `BEGIN`, `COMMIT` and `ROLLBACK` starts.
    pub(crate) fn statement_starts(&self) -> Result<()> {
        let mut p = self.plans()?;
        p.writes = p.queue.pop_front().flatten();
        p.running = true;
        p.ran_since_plan = true;
        Ok(())
    }

    /// A statement ends (`commit` or `rollback` of it), or `BEGIN`,
    /// `COMMIT` or `ROLLBACK` runs: `true` for the end of a statement that
    /// started with [`Conn::statement_starts`].
    pub(crate) fn statement_ends(&self) -> Result<bool> {
        let mut p = self.plans()?;
        let was_running = std::mem::take(&mut p.running);
        if !was_running {
            // `BEGIN`, `COMMIT` or `ROLLBACK`: its own plan.
            p.queue.pop_front();
        }
        p.writes = None;
        p.ran_since_plan = true;
        Ok(was_running)
    }

    /// Whether the statement running writes `table`.
    pub(crate) fn writes(&self, table: &str) -> Result<bool> {
        Ok(self.plans()?.writes.as_deref() == Some(table))
    }

    /// The open transaction's slot.
    pub(crate) fn slot(&self) -> Result<MutexGuard<'_, Option<Transaction>>> {
        self.open
            .lock()
            .map_err(|_| storage_msg("the transaction's lock is poisoned".to_owned()))
    }

    fn statement(&self) -> Result<MutexGuard<'_, Option<Savepoint>>> {
        self.statement
            .lock()
            .map_err(|_| storage_msg("the statement's lock is poisoned".to_owned()))
    }

    /// A statement begins in the open `BEGIN` block: a savepoint marks
    /// where, until [`Conn::end_statement`]. `false` if no block is open.
    pub(crate) fn begin_statement(&self) -> Result<bool> {
        let mut slot = self.slot()?;
        let Some(txn) = slot.as_mut() else {
            return Ok(false);
        };
        let mut statement = self.statement()?;
        if let Some(stale) = statement.take() {
            // Never left open by GlueSQL, which ends every statement it
            // begins; released all the same rather than nested under.
            txn.release(stale).map_err(from_engine)?;
        }
        *statement = Some(txn.savepoint().map_err(from_engine)?);
        Ok(true)
    }

    /// Ends the statement running in the `BEGIN` block, if one is:
    /// `undo` rolls the block back to where the statement began, else its
    /// work becomes the block's. `false` if no statement was running (the
    /// `COMMIT` or `ROLLBACK` of the block itself).
    pub(crate) fn end_statement(&self, undo: bool) -> Result<bool> {
        let mut slot = self.slot()?;
        let Some(sp) = self.statement()?.take() else {
            return Ok(false);
        };
        let Some(txn) = slot.as_mut() else {
            return Ok(false);
        };
        if undo {
            txn.rollback_to(sp).map_err(from_engine)?;
        }
        txn.release(sp).map_err(from_engine)?;
        Ok(true)
    }

    /// The open transaction ends (its savepoints with it).
    pub(crate) fn take(&self) -> Result<Option<Transaction>> {
        let txn = self.slot()?.take();
        self.statement()?.take();
        Ok(txn)
    }

    /// Runs `work` in the open transaction, or in one of its own, committed
    /// if `work` succeeds.
    pub(crate) fn with_txn<R>(&self, work: impl FnOnce(&mut Transaction) -> Result<R>) -> Result<R> {
        let mut slot = self.slot()?;
        if let Some(txn) = slot.as_mut() {
            return work(txn);
        }
        drop(slot);
        let mut txn = self.node.begin().map_err(from_engine)?;
        let out = work(&mut txn)?;
        txn.commit().map_err(from_engine)?;
        Ok(out)
    }
}
