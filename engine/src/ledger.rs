//! The transaction ledger: a node's record of its transactions' lives —
//! which are active (they logged a `Begin` and have not ended), how many
//! committed ones wait for their `Commit` record to be durable — and the
//! rules that tie those states to the log. It is the node's part of the
//! transaction/commit state machine, free of I/O so loom can check it
//! (`tests/loom_txn_ledger.rs`); the node (`crate::node::state`) passes in
//! what touches the log.
//!
//! A transaction, as the ledger sees it:
//!
//! ```text
//! begun ──(its Begin logged and listed, together)──▶ active
//! active ──rollback: End durable──────────────────▶ ended
//! active ──commit: pages decided, Commit appended─▶ confirming
//! confirming ──the confirmer: Commit durable──────▶ ended, then confirmed
//! confirming ──the log failed──────────────────────▶ confirmed, still active
//! ```
//!
//! The rules:
//! 1. A `Begin` is logged and its transaction listed under the lock a
//!    checkpoint holds while it lists the active transactions and logs its
//!    record, so no `Begin` can fall between the two and be truncated away.
//! 2. A transaction stays active until its end is durable (its `End`, or
//!    its `Commit` once the confirmer has seen it durable), so every
//!    checkpoint in between lists it and the log keeps its records:
//!    recovery may need them to decide its intent or undo its work.
//! 3. The confirmer ends the transactions it took before it counts them
//!    confirmed, so whoever waits for every confirmation ([`Ledger::wait_confirmed`],
//!    closing the node) then finds them ended.
//!
//! This file logs nothing, and releases no lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wal::{ActiveTxn, Lsn, TxnId};

use crate::error::Result;
use crate::sync::{lock_core, Condvar, Mutex};

/// See the module docs.
pub struct Ledger {
    /// Active transactions, with their `Begin` record's LSN.
    active: Mutex<BTreeMap<TxnId, Lsn>>,
    /// The last checkpoint; held while one is taken, so they go one at a
    /// time.
    last_checkpoint: Mutex<Lsn>,
    /// Committed transactions on their way to the confirmer.
    confirming: Mutex<usize>,
    /// `confirming` went down.
    confirmed: Condvar,
}

impl Ledger {
    /// A ledger with no transaction, whose log's last checkpoint is at
    /// `last_checkpoint`.
    pub fn new(last_checkpoint: Lsn) -> Ledger {
        Ledger {
            active: Mutex::new(BTreeMap::new()),
            last_checkpoint: Mutex::new(last_checkpoint),
            confirming: Mutex::new(0),
            confirmed: Condvar::new(),
        }
    }

    /// Transaction `txn` begins: `log_begin` logs its `Begin` record, and
    /// it is listed active with that record's LSN, under the lock a
    /// checkpoint holds (rule 1).
    pub fn begin(&self, txn: TxnId, log_begin: impl FnOnce() -> Result<Lsn>) -> Result<Lsn> {
        let mut active = lock_core(&self.active);
        let lsn = log_begin()?;
        active.insert(txn, lsn);
        Ok(lsn)
    }

    /// Takes a checkpoint: `append` logs one listing the active
    /// transactions (none can begin meanwhile), `complete` makes it durable
    /// and records it — with transactions beginning and ending again, since
    /// the list is fixed by the record's place in the log — then `truncate`
    /// is given the oldest LSN the log must keep: the checkpoint's, or the
    /// `Begin` of a transaction it lists if older. Returns the checkpoint's
    /// LSN.
    pub fn checkpoint(
        &self,
        append: impl FnOnce(&[ActiveTxn]) -> Result<Lsn>,
        complete: impl FnOnce(Lsn) -> Result<()>,
        truncate: impl FnOnce(Lsn) -> Result<()>,
    ) -> Result<Lsn> {
        let mut last = lock_core(&self.last_checkpoint);
        let (active, cp) = {
            let guard = lock_core(&self.active);
            let active: Vec<ActiveTxn> = guard
                .iter()
                .map(|(&txn, &first_lsn)| ActiveTxn { txn, first_lsn })
                .collect();
            let cp = append(&active)?;
            (active, cp)
        };
        complete(cp)?;
        let keep = active.iter().map(|a| a.first_lsn).chain([cp]).min().unwrap_or(cp);
        truncate(keep)?;
        *last = cp;
        Ok(cp)
    }

    /// Where the last checkpoint lies.
    pub fn last_checkpoint(&self) -> Lsn {
        *lock_core(&self.last_checkpoint)
    }

    /// Transaction `txn` ended: its `End`, or its durable `Commit`, says
    /// nothing of it is left to recover.
    pub fn ended(&self, txn: TxnId) {
        lock_core(&self.active).remove(&txn);
    }

    /// A committed transaction is on its way to the confirmer.
    pub fn committing(&self) {
        *lock_core(&self.confirming) += 1;
    }

    /// The confirmer is done with `n` committed transactions: each ended
    /// already if its `Commit` record became durable (rule 3), or left
    /// active if the log failed first.
    pub fn confirmed(&self, n: usize) {
        let mut pending = lock_core(&self.confirming);
        *pending = pending.saturating_sub(n);
        self.confirmed.notify_all();
    }

    /// Waits up to `limit` until no committed transaction waits for its
    /// confirmation, or `running` says the node stopped (its transactions'
    /// locks then stay retained). False if the time ran out first.
    pub fn wait_confirmed(&self, limit: Duration, running: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut pending = lock_core(&self.confirming);
        while *pending > 0 && running() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = self
                .confirmed
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Whether no transaction is active.
    pub fn idle(&self) -> bool {
        lock_core(&self.active).is_empty()
    }

    /// The active transactions, oldest `Begin` first.
    pub fn active(&self) -> Vec<ActiveTxn> {
        let mut out: Vec<ActiveTxn> = lock_core(&self.active)
            .iter()
            .map(|(&txn, &first_lsn)| ActiveTxn { txn, first_lsn })
            .collect();
        out.sort_by_key(|a| a.first_lsn);
        out
    }
}
