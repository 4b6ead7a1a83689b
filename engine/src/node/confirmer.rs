//! The confirmer: the thread that releases committed transactions' locks
//! once their `Commit` records are durable.
//!
//! A commit returns to its caller once its pages are durable (see
//! [`crate::txn`]); its `Commit` record is appended without waiting and made
//! durable by a later flush. Until then the transaction's pages stay
//! X-locked, so nobody can change a stamp a recovery's decision would read.
//! This thread waits for those flushes and lets the locks go in batches. It
//! never writes a page.

use std::sync::mpsc::Receiver;
use std::sync::Weak;
use std::time::Duration;

use wal::TxnId;

use crate::node::state::{Confirm, NodeState};

/// How long the confirmer lets a `Commit` record wait for a flush someone
/// else makes before making one itself. A committer's next intent flush
/// usually carries it; a flush of its own would instead delay that next
/// commit by a whole device flush. On an idle node, locks are released
/// this much later.
const CONFIRM_PATIENCE: Duration = Duration::from_millis(1);

/// Waits for committed transactions' `Commit` records to become durable,
/// then lets each transaction's locks go and ends it. Runs until the node's
/// last handle is gone. A log that fails on the way stops the node, and the
/// transactions' locks stay retained: recovery finds their intents, sees
/// every page stamped, and keeps them committed.
pub(super) fn confirmer(node: Weak<NodeState>, queue: Receiver<Confirm>) {
    // Woken when the log becomes durable, by a round's leader that has its
    // committers to wake next.
    wal::background::run_in_background();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let Some(inner) = node.upgrade() else {
            return;
        };
        let upto = batch
            .iter()
            .map(|(_, lsn, _)| *lsn)
            .max()
            .expect("a batch is never empty");
        let durable = match inner.log.wait_durable_within(upto, CONFIRM_PATIENCE) {
            Some(r) => r,
            None => inner.log.wait_durable(upto),
        };
        if inner.logged(durable).is_ok() {
            let txns: Vec<TxnId> = batch.iter().map(|(txn, _, _)| *txn).collect();
            for &txn in &txns {
                inner.txn_finished(txn);
            }
            let values: Vec<_> = batch.iter_mut().flat_map(|(_, _, v)| std::mem::take(v)).collect();
            let pages: Vec<_> = values.iter().map(|&(resource, _)| resource).collect();
            inner.publish_and_release(values, &txns);
            inner.confirmed_pages(pages.into_iter(), upto);
            inner.maybe_checkpoint();
        }
        inner.confirmed(batch.len());
    }
}
