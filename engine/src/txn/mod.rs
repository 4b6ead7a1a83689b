//! Transactions: strict two-phase locking on pages, write-ahead undo, FORCE
//! at commit, nested failure scopes, actions on external resources through
//! recovery agents; over hash tables (`hash`) and ordered tables
//! (`ordered`, `crate::btree`) alike.
//!
//! ## Locks
//! A transaction takes IS (reading) or IX (writing) on a table's resource
//! `(0, file id)`, then S to read a page and X to change it, at the
//! coordinator, and holds every lock until it commits or rolls back:
//! serializable. A table cannot be dropped under a transaction (drop takes X
//! on the table resource).
//!
//! ## Coherence across nodes
//! A transaction reads each page from the data file after its lock is
//! granted and keeps that image only until it ends. No image outlives the
//! lock that protects it, and a page changed by another node is only ever
//! read after that node's commit wrote and synced it and released the X
//! lock, so every node sees the last committed image.
//!
//! ## Undo and the write path
//! Each change to a page logs the before-image of every byte range it
//! changed, and the transaction's first change to a page also logs the
//! page's header as it was (`crate::undo`); the records carry the failure
//! scope token of the innermost open scope (`crate::scope`). An update of a value of the same length changes
//! only the value's bytes, so a two-row update logs a few hundred bytes, not
//! two pages. Pages are changed in memory only; nothing reaches a data file
//! before commit, so no page can reach disk before its undo record is
//! durable. [`Transaction::rollback_to`] puts back, in memory, each page as
//! it was when the scope first changed it. Each call that changes rows is
//! a level of its own, too (one the log does not see: its records carry
//! the enclosing scope's token): one that fails (a lock refused halfway through
//! a split, say) leaves every page as it was before the call, so the
//! transaction can go on or roll back.
//!
//! A page the transaction takes fresh — past the table's allocated pages or
//! off its free list (`crate::freelist`) — held nothing that matters, so its
//! undo is one record of its header as a page never written, whatever is
//! later written into it: recovery turns such a page back into zeros.
//!
//! ## Nested scopes and agents
//! A transaction opens nested failure scopes ([`Transaction::scope`],
//! [`Transaction::scope_on_thread`], savepoints), to any depth. A scope
//! that fails — its work returns an error, panics, or its thread dies —
//! is backed out alone, its pages in memory and its agents' actions
//! through the supervisor (`crate::agent::supervisor`, which reads the
//! scope's agent records back from the log), and a `Compensation` record
//! says so; the transaction goes on. [`Transaction::act`] logs an agent
//! record durably before an action on an external resource; the agents'
//! part of commit and rollback is in `crate::agent` (prepare, decide,
//! finish). The module `scoped` holds the scopes' code.
//!
//! ## Commit: two flushes, then the locks
//! 1. A `CommitIntent` record listing the changed pages is appended (several
//!    in a row when the pages do not fit one record: there is no cap on the
//!    pages a transaction changes), and each page is stamped with the (node,
//!    LSN) of the last and sealed.
//! 2. The intent is made durable, and with it every undo record before it
//!    (the WAL rule: no page is written before its before-image is durable).
//! 3. The pages are written as one batch and synced (FORCE). The transaction
//!    is now committed, and `commit` returns. Steps 2 and 3 run in rounds
//!    shared by concurrent commits, one log flush and one data sync per
//!    round, handed to the kernel as one staged submission where the log
//!    allows (`crate::group_force`).
//! 4. If the transaction acted through agents, each is told to make its
//!    work final (`crate::agent`); a failure there stops the node, and
//!    recovery finishes the work ([`Error::CommittedUnfinished`]).
//! 5. A `Commit` record is appended without waiting; once a later flush has
//!    made it durable (one the node makes after a short linger, or anyone's
//!    commit, whichever comes first), the locks are released.
//!
//! Between 2 and 5 the outcome is written in the data files themselves: the
//! transaction is committed exactly when every page its intent lists carries
//! the intent's stamp on disk with a good checksum (one that changed no page
//! — it acted through agents only — exactly when its intent is durable).
//! Recovery decides so
//! ([`crate::recovery`]): all stamped, it keeps the pages and syncs them (a
//! write the crashed process left in the page cache becomes durable before
//! the decision is logged); otherwise it writes the before-images back,
//! which also repairs a page torn by the crash. Until the `Commit` record is
//! durable the pages stay X-locked, so nobody else can have changed a stamp
//! the decision reads — which is why the locks wait for step 5.
//!
//! A commit that fails after its intent logs an `Abort` if the log still
//! works: the caller was told it failed, so recovery backs it out whatever
//! its pages say (after a failed fsync the page cache is no witness). If
//! the log failed, the outcome is what reached the disk
//! ([`Error::CommitFailed`]).
//!
//! The classic order (undo durable, pages forced, commit record durable)
//! costs three device flushes before a commit is acknowledged; this one
//! costs two, and the third rides on later flushes, off the caller's path.
//!
//! Rollback has no page on disk to undo; it has its agents undo their
//! actions (read back from the log), then logs a durable end record before
//! its locks go, so no later recovery of this log can write its
//! before-images over another node's later commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lockmgr::ResourceId;
use wal::{Lsn, PageRef, RecordBody, RecordMeta, TxnId};

use crate::agent::supervisor;
use crate::catalog::TableInfo;
use crate::datafile::Forced;
use crate::error::{Error, Result};
use crate::node::state::{Granted, NodeState};
use crate::page::{Kind, Page, Stamp};
use crate::scope::{PageKey, ScopeImage, Scopes};

mod hash;
mod ordered;
mod pages;
mod rows;
mod scoped;

pub use ordered::Range;

/// A point inside a transaction that [`Transaction::rollback_to`] returns
/// to: the start of a nested scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint {
    txn: TxnId,
    /// The scope's depth and token (`crate::scope`).
    level: u32,
    token: wal::ScopeToken,
    /// The transaction's last record when the scope began.
    last_lsn: Option<Lsn>,
}

/// A page the transaction holds.
struct TxnPage {
    page: Page,
    /// The depth of the scope (or call, `Transaction::statement`) that
    /// first changed it; `None` while unchanged.
    dirty_scope: Option<u32>,
    /// Reached under a lock of its own (false for pages another page's
    /// lock covers, `crate::store`): its new stamp is published, and its
    /// copy cached, when the transaction commits.
    locked: bool,
    /// Taken fresh: its undo is "never written" (see the module docs).
    fresh: bool,
}

/// A transaction. Dropping one that was neither committed nor rolled back
/// rolls it back.
pub struct Transaction {
    node: Arc<NodeState>,
    id: TxnId,
    pages: HashMap<PageKey, TxnPage>,
    /// Each lock held, with the lock value block its (last) grant carried:
    /// for a page, the stamp of the commit that last wrote it, which tells
    /// whether the node's cached copy is current (`crate::pool`).
    locks: HashMap<ResourceId, Granted>,
    tables: HashMap<String, TableInfo>,
    /// Pages this transaction put on a free list: not fresh for it.
    freed: HashSet<PageKey>,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    /// The open failure scopes, innermost last; the transaction's own is
    /// the first.
    scopes: Scopes,
    done: bool,
    /// Pages changed (each listed in the commit intent).
    dirty_pages: usize,
}

impl Transaction {
    pub(crate) fn new(node: Arc<NodeState>, id: TxnId) -> Transaction {
        // Counted down in `drop`: the last `Node` handle's drop waits for no
        // background thread while a transaction holds the node.
        node.transactions.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Transaction {
            node,
            id,
            pages: HashMap::new(),
            locks: HashMap::new(),
            tables: HashMap::new(),
            freed: HashSet::new(),
            first_lsn: None,
            last_lsn: None,
            scopes: Scopes::new(),
            done: false,
            dirty_pages: 0,
        }
    }

    /// The transaction's id in its node's log.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// Puts back, in memory, each page of `images` as it was, the images of
    /// a failed level at `depth` and those inside it: a page first changed
    /// there is unchanged again, and no longer listed for the commit.
    fn restore(&mut self, images: HashMap<PageKey, ScopeImage>, depth: u32) {
        let ps = self.node.files.page_size();
        for ((file_id, no), image) in images {
            if let Some(p) = self.pages.get_mut(&(file_id, no)) {
                p.page = image.unwrap_or_else(|| Page::new(ps, Kind::Unwritten, file_id, no));
                if p.dirty_scope.is_some_and(|d| d >= depth) {
                    p.dirty_scope = None;
                    self.dirty_pages -= 1;
                }
            }
        }
    }

    /// The level at `depth` (a scope or a call) ended well: it folds into
    /// the one around it, and so do the pages it changed first — a later
    /// failure of another level at this depth must not take them for its
    /// own.
    fn close_level(&mut self, depth: u32) {
        for p in self.pages.values_mut() {
            if p.dirty_scope.is_some_and(|d| d >= depth) {
                p.dirty_scope = Some(depth - 1);
            }
        }
        self.scopes.close(depth);
    }

    /// Runs `op` as a level of its own: if it fails, every page it changed
    /// is put back in memory as it was before (pages it changed first are
    /// no longer listed for the commit), and the error is returned; the
    /// locks it took stay. What a failed call must leave: the transaction
    /// as it was. The level is no scope in the log (`crate::scope`).
    fn statement<R>(&mut self, op: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let level = self.scopes.open_statement(self.last_lsn);
        let out = op(self);
        match out {
            Ok(v) => {
                self.close_level(level);
                Ok(v)
            }
            Err(e) => {
                let images = self.scopes.fail(level, false);
                self.restore(images, level);
                Err(e)
            }
        }
    }

    /// Commits: intent (and undo) durable, pages written and synced; then
    /// it returns. The commit record follows on a later flush, and the
    /// locks go once it is durable (see the module docs).
    pub fn commit(mut self) -> Result<()> {
        self.check_open()?;
        self.done = true;
        let node = self.node.clone();
        let Some(last) = self.last_lsn else {
            node.release_all(self.id);
            return Ok(());
        };
        // The pages leave the transaction: the commit round writes them.
        let mut dirty: Vec<(PageKey, TxnPage)> = self.pages.drain().filter(|(_, p)| p.dirty_scope.is_some()).collect();
        dirty.sort_unstable_by_key(|(k, _)| *k);
        let refs: Vec<PageRef> = dirty
            .iter()
            .map(|&((file_id, page_no), _)| PageRef { file_id, page_no })
            .collect();
        // Self-fencing: no page is written once the lease may be gone. Asked
        // before the intent is logged, and again by the commit round right
        // before it writes (a commit may wait a round or two).
        let may_write = || -> Result<()> {
            node.check_running()?;
            Ok(node.client.check_lease()?)
        };
        let mut intent = None;
        // Its place in the commit order, with redo on (`crate::redo`).
        let mut seq = 0;
        // Each written page's new stamp, its lock value block once the
        // locks go (see `crate::pool`).
        let mut published = Vec::with_capacity(dirty.len());
        let result = (|| -> Result<()> {
            may_write()?;
            // As many intent records as the pages need; the pages carry the
            // last one's stamp, and recovery reads the run as one intent.
            let per_record = wal::record::max_intent_pages(node.log.layout().max_record()).max(1);
            let mut prev = last;
            // A transaction that acted through agents only logs one intent
            // listing no page.
            let parts: Vec<&[PageRef]> = if refs.is_empty() {
                vec![&[]]
            } else {
                refs.chunks(per_record).collect()
            };
            for part in parts {
                prev = node.log.append(
                    RecordMeta::txn(self.id, Some(prev)),
                    &RecordBody::CommitIntent(part.to_vec()),
                )?;
                intent = Some(prev);
            }
            let lsn = intent.expect("a transaction that logged changed a page");
            // The files are held (with their fencing locks, `crate::fence`)
            // from before the intent is durable until the writes are done.
            let stamp = Stamp {
                node: node.node_id,
                log: node.log_id,
                lsn: lsn.0,
            };
            let mut pages = Vec::with_capacity(dirty.len());
            for ((file_id, page_no), p) in dirty {
                let mut page = p.page;
                page.set_stamp(stamp);
                page.seal();
                if p.locked {
                    published.push((ResourceId::new(file_id, page_no), stamp.as_u128()));
                }
                pages.push(Forced {
                    file: node.files.get(file_id, false)?,
                    page,
                    cache: p.locked,
                });
            }
            seq = node
                .group_force
                .commit(&node.io, &node.log, lsn, pages, &node.pool, &may_write)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                let intent = intent.expect("a commit that succeeded logged its intent");
                if self.scopes.agent_work_from(0) > 0 {
                    // Committed: the agents make their work final before
                    // the `Commit` record says the transaction is done.
                    let node_id = node.node_id;
                    if let Err(e) = supervisor::committed(&node.log, &node.opts.agents, node_id, self.id, intent) {
                        node.stop(&format!(
                            "finishing the agents' work of transaction {} failed: {e}",
                            self.id
                        ));
                        return Err(Error::CommittedUnfinished {
                            txn: self.id,
                            cause: e.to_string(),
                        });
                    }
                }
                node.confirm_commit(self.id, intent, published);
                // Synchronous replication: committed here, and the locks on
                // their way; the caller hears of it once replicated.
                match (&node.opts.commit_gate, seq) {
                    (Some(gate), seq) if seq > 0 => gate
                        .0
                        .replicated(seq)
                        .map_err(|cause| Error::NotReplicated { seq, cause }),
                    _ => Ok(()),
                }
            }
            Err(e) => {
                // Stopped already: that is the reason to report.
                node.check_running()?;
                // The pages may be partly on disk. If the log still works,
                // an Abort after the intent tells recovery to back the
                // transaction out whatever reached the disk — this commit
                // is reported failed, and a page an fsync failed on cannot
                // be trusted. Then stop, and leave the rest to recovery,
                // which the retained locks protect.
                if let Some(lsn) = intent {
                    let aborted = node
                        .log
                        .append(RecordMeta::txn(self.id, Some(lsn)), &RecordBody::Abort)
                        .and_then(|abort| node.log.wait_durable(abort));
                    if aborted.is_ok() {
                        // A checkpoint after it, named by the control file:
                        // were the Abort damaged later, the log would end
                        // before the checkpoint the control file names, and
                        // recovery would stop (`LogDamaged`) rather than take
                        // the Abort for a torn tail and keep, by its pages'
                        // stamps, a commit reported failed. The transaction
                        // is still active, so nothing of it is truncated.
                        let _ = node.checkpoint();
                    }
                }
                node.stop(&format!("commit of transaction {} failed: {e}", self.id));
                Err(match e {
                    Error::LeaseLost => Error::LeaseLost,
                    other => Error::CommitFailed(other.to_string()),
                })
            }
        }
    }

    /// Rolls back: nothing reached the data files, so the pages are dropped;
    /// a durable end record is logged before the locks go.
    pub fn rollback(mut self) -> Result<()> {
        self.check_open()?;
        self.finish_rollback()
    }

    fn finish_rollback(&mut self) -> Result<()> {
        self.done = true;
        self.pages.clear();
        let node = self.node.clone();
        if let Some(last) = self.last_lsn {
            if self.scopes.agent_work_from(0) > 0 {
                // The transaction's scope failed: its agents undo its
                // work before the end record says nothing is left.
                let undone = supervisor::scope_failed(&node.log, &node.opts.agents, node.node_id, self.id, last, None);
                if let Err(e) = undone {
                    // The work stays in the log, and the locks retained:
                    // recovery has the agents undo it again.
                    node.stop(&format!(
                        "rollback of transaction {} could not undo its agents' work: {e}",
                        self.id
                    ));
                    return Err(e);
                }
            }
            let ended = node
                .log
                .append(RecordMeta::txn(self.id, Some(last)), &RecordBody::End)
                .and_then(|end| node.log.wait_durable(end));
            if let Err(e) = ended {
                // Without a durable end record the locks must stay: recovery
                // will back the transaction out under them.
                node.stop(&format!(
                    "rollback of transaction {} could not log its end: {e}",
                    self.id
                ));
                return Err(e.into());
            }
            node.txn_finished(self.id);
        }
        node.release_all(self.id);
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.done {
            return Err(Error::TransactionEnded);
        }
        self.node.check_running()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.finish_rollback() {
                tracing::warn!(txn = self.id, error = %e, "rollback on drop failed");
            }
        }
        self.node.transactions.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
