//! A connection: a node, and the transaction open on it, if any.

use std::sync::{Mutex, MutexGuard};

use gluesql_core::error::Result;
use understudy::{Node, Transaction};

use crate::error::{from_engine, storage_msg};

pub(crate) struct Conn {
    pub(crate) node: Node,
    /// The transaction of the statement or `BEGIN` block running, if any.
    open: Mutex<Option<Transaction>>,
}

impl Conn {
    pub(crate) fn new(node: Node) -> Conn {
        Conn {
            node,
            open: Mutex::new(None),
        }
    }

    /// The open transaction's slot.
    pub(crate) fn slot(&self) -> Result<MutexGuard<'_, Option<Transaction>>> {
        self.open
            .lock()
            .map_err(|_| storage_msg("the transaction's lock is poisoned".to_owned()))
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
