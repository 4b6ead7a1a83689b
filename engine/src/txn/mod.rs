//! Transactions: strict two-phase locking on pages, write-ahead undo, FORCE
//! at commit, savepoints as nested scopes; over hash tables (`hash`) and
//! ordered tables (`ordered`, `crate::btree`) alike.
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
//! page's header as it was (`crate::undo`); the records carry the scope
//! token (savepoint level). An update of a value of the same length changes
//! only the value's bytes, so a two-row update logs a few hundred bytes, not
//! two pages. Pages are changed in memory only; nothing reaches a data file
//! before commit, so no page can reach disk before its undo record is
//! durable. [`Transaction::rollback_to`] puts back, in memory, each page as
//! it was when the scope first changed it. Each call that changes rows is
//! a scope of its own, too: one that fails (a lock refused halfway through
//! a split, say) leaves every page as it was before the call, so the
//! transaction can go on or roll back.
//!
//! A page the transaction takes fresh — past the table's allocated pages or
//! off its free list (`crate::freelist`) — held nothing that matters, so its
//! undo is one record of its header as a page never written, whatever is
//! later written into it: recovery turns such a page back into zeros.
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
//! 4. A `Commit` record is appended without waiting; once a later flush has
//!    made it durable (one the node makes after a short linger, or anyone's
//!    commit, whichever comes first), the locks are released.
//!
//! Between 2 and 4 the outcome is written in the data files themselves: the
//! transaction is committed exactly when every page its intent lists carries
//! the intent's stamp on disk with a good checksum. Recovery decides so
//! ([`crate::recovery`]): all stamped, it keeps the pages and syncs them (a
//! write the crashed process left in the page cache becomes durable before
//! the decision is logged); otherwise it writes the before-images back,
//! which also repairs a page torn by the crash. Until the `Commit` record is
//! durable the pages stay X-locked, so nobody else can have changed a stamp
//! the decision reads — which is why the locks wait for step 4.
//!
//! A commit that fails after its intent logs an `Abort` if the log still
//! works: the caller was told it failed, so recovery backs it out whatever
//! its pages say (after a failed fsync the page cache is no witness).
//!
//! The classic order (undo durable, pages forced, commit record durable)
//! costs three device flushes before a commit is acknowledged; this one
//! costs two, and the third rides on later flushes, off the caller's path.
//!
//! Rollback has nothing on disk to undo; it logs a durable end record before
//! its locks go, so no later recovery of this log can write its
//! before-images over another node's later commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lockmgr::ResourceId;
use wal::{Lsn, PageRef, RecordBody, RecordMeta, TxnId};

use crate::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::group_force::Forced;
use crate::node::state::{Granted, NodeState};
use crate::page::{Kind, Page, Stamp};

mod hash;
mod ordered;
mod pages;
mod rows;

pub use ordered::Range;

/// A point inside a transaction that [`Transaction::rollback_to`] returns to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint {
    txn: TxnId,
    level: u32,
    last_lsn: Option<Lsn>,
}

/// A page the transaction holds.
struct TxnPage {
    page: Page,
    /// The scope that first changed it; `None` while unchanged.
    dirty_scope: Option<u32>,
    /// Reached under a lock of its own (false for pages another page's
    /// lock covers, `crate::store`): its new stamp is published, and its
    /// copy cached, when the transaction commits.
    locked: bool,
    /// Taken fresh: its undo is "never written" (see the module docs).
    fresh: bool,
}

type PageKey = (u32, u64);

/// A page as a scope first changed it; `None`: as a page never written
/// (a fresh page's first change).
type ScopeImage = Option<Page>;

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
    /// Current scope level; 0 is the transaction itself.
    scope: u32,
    /// Per level, the image of each page before its first change there.
    scope_images: Vec<HashMap<PageKey, ScopeImage>>,
    done: bool,
    /// Pages changed (each listed in the commit intent).
    dirty_pages: usize,
}

impl Transaction {
    pub(crate) fn new(node: Arc<NodeState>, id: TxnId) -> Transaction {
        Transaction {
            node,
            id,
            pages: HashMap::new(),
            locks: HashMap::new(),
            tables: HashMap::new(),
            freed: HashSet::new(),
            first_lsn: None,
            last_lsn: None,
            scope: 0,
            scope_images: vec![HashMap::new()],
            done: false,
            dirty_pages: 0,
        }
    }

    /// The transaction's id in its node's log.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// Marks a point to roll back to; savepoints nest.
    pub fn savepoint(&mut self) -> Result<Savepoint> {
        self.check_open()?;
        self.scope += 1;
        self.scope_images.push(HashMap::new());
        Ok(Savepoint {
            txn: self.id,
            level: self.scope,
            last_lsn: self.last_lsn,
        })
    }

    /// Puts back, in memory, each page of `images` as it was.
    fn restore(&mut self, images: HashMap<PageKey, ScopeImage>) {
        let ps = self.node.files.page_size();
        for ((file_id, no), image) in images {
            if let Some(p) = self.pages.get_mut(&(file_id, no)) {
                p.page = image.unwrap_or_else(|| Page::new(ps, Kind::Unwritten, file_id, no));
            }
        }
    }

    /// Undoes everything since `sp` (which stays valid); later savepoints
    /// are gone. Locks taken since are kept (strict two-phase locking).
    pub fn rollback_to(&mut self, sp: Savepoint) -> Result<()> {
        self.check_open()?;
        if sp.txn != self.id || sp.level > self.scope || sp.level == 0 {
            return Err(Error::InvalidSavepoint);
        }
        let mut restored: HashMap<PageKey, ScopeImage> = HashMap::new();
        for images in self.scope_images.drain(sp.level as usize..) {
            for (key, image) in images {
                restored.entry(key).or_insert(image);
            }
        }
        self.restore(restored);
        self.scope = sp.level;
        self.scope_images.push(HashMap::new());
        if let Some(last) = self.last_lsn {
            // Says the records after `undo_next` are undone in memory; crash
            // recovery backs out the whole transaction regardless.
            let meta = RecordMeta {
                scope: sp.level,
                ..RecordMeta::txn(self.id, Some(last))
            };
            let body = RecordBody::Compensation { undo_next: sp.last_lsn };
            self.last_lsn = Some(self.node.logged(self.node.log.append(meta, &body))?);
        }
        Ok(())
    }

    /// Runs `op` as a scope of its own: if it fails, every page it changed
    /// is put back in memory as it was before (pages it changed first are
    /// no longer listed for the commit), and the error is returned; the
    /// locks it took stay. What a failed call must leave: the transaction
    /// as it was.
    fn statement<R>(&mut self, op: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        self.scope += 1;
        self.scope_images.push(HashMap::new());
        let level = self.scope;
        let out = op(self);
        let images = self.scope_images.pop().expect("pushed above");
        self.scope -= 1;
        match out {
            Ok(v) => {
                // Every page the scope changed has an image in it.
                for key in images.keys() {
                    if let Some(p) = self.pages.get_mut(key).filter(|p| p.dirty_scope == Some(level)) {
                        p.dirty_scope = Some(level - 1);
                    }
                }
                let parent = self.scope_images.last_mut().expect("level 0 stays");
                for (key, image) in images {
                    parent.entry(key).or_insert(image);
                }
                Ok(v)
            }
            Err(e) => {
                let undirtied: Vec<PageKey> = images
                    .keys()
                    .filter(|k| self.pages.get(k).is_some_and(|p| p.dirty_scope == Some(level)))
                    .copied()
                    .collect();
                self.restore(images);
                for key in undirtied {
                    if let Some(p) = self.pages.get_mut(&key) {
                        p.dirty_scope = None;
                        self.dirty_pages -= 1;
                    }
                }
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
        // Each written page's new stamp, its lock value block once the
        // locks go (see `crate::pool`).
        let mut published = Vec::with_capacity(dirty.len());
        let result = (|| -> Result<()> {
            may_write()?;
            // As many intent records as the pages need; the pages carry the
            // last one's stamp, and recovery reads the run as one intent.
            let per_record = wal::record::max_intent_pages(node.log.layout().max_record()).max(1);
            let mut prev = last;
            for part in refs.chunks(per_record) {
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
            node.group_force
                .commit(&node.io, &node.log, lsn, pages, &node.pool, &may_write)
        })();
        match result {
            Ok(()) => {
                node.confirm_commit(
                    self.id,
                    intent.expect("a commit that succeeded logged its intent"),
                    published,
                );
                Ok(())
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
                    let _ = node
                        .log
                        .append(RecordMeta::txn(self.id, Some(lsn)), &RecordBody::Abort)
                        .and_then(|abort| node.log.wait_durable(abort));
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
    }
}
