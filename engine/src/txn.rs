//! Transactions: strict two-phase locking on pages, write-ahead undo, FORCE
//! at commit, nested failure scopes, actions on external resources through
//! recovery agents.
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
//! it was when the scope first changed it.
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
//! finish). This file's module `scoped` holds the scopes' code.
//!
//! ## Commit: two flushes, then the locks
//! 1. A `CommitIntent` record listing the changed pages is appended, and each
//!    page is stamped with that record's (node, LSN) and sealed.
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
//! — it acted through agents only — exactly when its intent is durable). Recovery decides so
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

use std::collections::HashMap;
use std::sync::Arc;

use lockmgr::{LockMode, ResourceId};
use wal::{Lsn, PageRef, PageUndo, RecordBody, RecordMeta, TxnId};

use crate::agent::supervisor;
use crate::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::node::state::{Granted, NodeState};
use crate::page::{Kind, Page, Stamp, HEADER_LEN, ITEM_OVERHEAD};
use crate::scope::{PageKey, Scopes};
use crate::table::{self, Header};

mod scoped;

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

struct TxnPage {
    page: Page,
    dirty: bool,
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
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    /// The open failure scopes, innermost last; the transaction's own is
    /// the first.
    scopes: Scopes,
    done: bool,
    /// Pages marked dirty (each listed in the commit intent).
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

    fn lock(&mut self, resource: ResourceId, mode: LockMode) -> Result<()> {
        if self.locks.get(&resource).is_some_and(|held| held.0.covers(mode)) {
            return Ok(());
        }
        let granted = self.node.lock(self.id, resource, mode)?;
        self.granted(resource, granted);
        Ok(())
    }

    /// Records a grant: the strongest mode held, and the value the latest
    /// grant carried.
    fn granted(&mut self, resource: ResourceId, (held, value): Granted) {
        let merged = self.locks.get(&resource).map_or(held, |h| h.0.supremum(held));
        self.locks.insert(resource, (merged, value));
    }

    /// The table `name`, locked IS or IX, and with it the page `first` of
    /// it (when given) locked in `first_mode`: both requests go out together.
    fn table(&mut self, name: &str, write: bool, first: Option<(&[u8], LockMode)>) -> Result<TableInfo> {
        let mode = if write { LockMode::IX } else { LockMode::IS };
        if let Some(t) = self.tables.get(name).cloned() {
            self.lock(ResourceId::new(0, u64::from(t.file_id)), mode)?;
            return Ok(t);
        }
        // Looked up unlocked in the catalog as last read (or as it is now,
        // if that one lacks the table), then confirmed against the catalog
        // file once the table lock is held (a drop needs X on it, so the
        // entry cannot change after that). A stale entry fails the
        // confirmation, which rereads the catalog for the next try.
        for _ in 0..8 {
            let hint = self.node.catalog_hint()?.find(name).cloned();
            let t = match hint {
                Some(t) => t,
                None => self
                    .node
                    .catalog()?
                    .find(name)
                    .cloned()
                    .ok_or_else(|| Error::NoSuchTable(name.into()))?,
            };
            let table_res = ResourceId::new(0, u64::from(t.file_id));
            let mut requests = vec![(table_res, mode)];
            if let Some((key, page_mode)) = first {
                requests.push((
                    ResourceId::new(t.file_id, table::bucket_page(key, t.buckets)),
                    page_mode,
                ));
            }
            let granted = self.node.lock_many(self.id, &requests);
            // Record what was granted even when one request was refused:
            // those locks are held until the transaction ends all the same.
            if let Ok(grants) = &granted {
                for (&(res, _), &grant) in requests.iter().zip(grants) {
                    self.granted(res, grant);
                }
            }
            granted?;
            if self.node.catalog()?.find(name) == Some(&t) {
                self.tables.insert(name.into(), t.clone());
                return Ok(t);
            }
        }
        Err(Error::NoSuchTable(name.into()))
    }

    /// Makes page `no` of `t` available under at least `mode`. The page is
    /// one that committed data refers to (the header, a bucket, a page of a
    /// chain), so it must have been written: one that reads as never
    /// written — a hole, or past the end of a truncated file — is
    /// [`Error::MissingPage`], never an empty page.
    fn fetch(&mut self, t: &TableInfo, no: u64, mode: LockMode) -> Result<()> {
        self.fetch_page(t, no, mode, false)
    }

    /// [`Self::fetch`] for the page an allocation is about to take: the
    /// first past the table's allocated pages, which may be unwritten.
    fn fetch_new(&mut self, t: &TableInfo, no: u64) -> Result<()> {
        self.fetch_page(t, no, LockMode::X, true)
    }

    fn fetch_page(&mut self, t: &TableInfo, no: u64, mode: LockMode, allocating: bool) -> Result<()> {
        self.lock(ResourceId::new(t.file_id, no), mode)?;
        if let std::collections::hash_map::Entry::Vacant(v) = self.pages.entry((t.file_id, no)) {
            let file = table::open_checked(&self.node.io, &self.node.files, t)?;
            let value = self.locks.get(&ResourceId::new(t.file_id, no)).and_then(|g| g.1);
            let page = self.node.pool.get(&self.node.io, &file, no, value)?;
            if page.kind() == Kind::Unwritten && !allocating {
                return Err(Error::MissingPage {
                    file: file.path().to_path_buf(),
                    page: no,
                });
            }
            v.insert(TxnPage { page, dirty: false });
        }
        Ok(())
    }

    fn page(&self, t: &TableInfo, no: u64) -> &Page {
        &self.pages[&(t.file_id, no)].page
    }

    /// Changes page `no` of `t` (X-locked) with `change`, then logs the
    /// before-image of every byte range the change made (`crate::undo`),
    /// the page's header too on the transaction's first change to it; the
    /// records carry the current scope. The page changes in the
    /// transaction's memory only, so the records are in the log before
    /// anything of the change can reach a data file. The page as it was
    /// when the scope first changed it is kept for [`Self::rollback_to`].
    fn change<R>(&mut self, t: &TableInfo, no: u64, change: impl FnOnce(&mut Page) -> R) -> Result<R> {
        self.node.check_running()?;
        self.fetch(t, no, LockMode::X)?;
        let key = (t.file_id, no);
        let first = !self.pages[&key].dirty;
        if first {
            // The commit intent lists every changed page in one record.
            let max = wal::record::max_intent_pages(self.node.log.layout().max_record());
            if self.dirty_pages >= max {
                return Err(Error::TransactionTooLarge { max });
            }
        }
        let before = self.pages[&key].page.clone();
        let p = self.pages.get_mut(&key).expect("fetched above");
        let out = change(&mut p.page);
        let ranges = crate::undo::changed_ranges(before.bytes(), p.page.bytes(), first.then_some(0..HEADER_LEN));
        for r in ranges {
            let logged = self.log_undo(t.file_id, no, r.start as u32, before.bytes()[r].to_vec());
            if let Err(e) = logged {
                // Not logged, so not kept: the page goes back to what it was.
                self.pages.get_mut(&key).expect("fetched above").page = before;
                return Err(e);
            }
        }
        self.scopes.remember(key, &before);
        let p = self.pages.get_mut(&key).expect("fetched above");
        if !p.dirty {
            self.dirty_pages += 1;
        }
        p.dirty = true;
        Ok(out)
    }

    /// Logs the transaction's `Begin` record, unless it did already.
    fn begun(&mut self) -> Result<()> {
        if self.first_lsn.is_none() {
            let lsn = self.node.log_begin(self.id)?;
            self.first_lsn = Some(lsn);
            self.last_lsn = Some(lsn);
        }
        Ok(())
    }

    fn log_undo(&mut self, file_id: u32, page_no: u64, offset_in_page: u32, before: Vec<u8>) -> Result<()> {
        self.begun()?;
        let meta = RecordMeta {
            scope: self.scopes.token(),
            ..RecordMeta::txn(self.id, self.last_lsn)
        };
        let body = RecordBody::Undo(PageUndo {
            file_id,
            page_no,
            offset_in_page,
            before,
            after: None,
        });
        self.last_lsn = Some(self.node.logged(self.node.log.append(meta, &body))?);
        Ok(())
    }

    /// The value of `key` in `table`.
    pub fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        let t = self.table(table, false, Some((key, LockMode::S)))?;
        let mut no = table::bucket_page(key, t.buckets);
        for _ in 0..u32::MAX {
            self.fetch(&t, no, LockMode::S)?;
            let p = self.page(&t, no);
            if let Some((_, v)) = p.find(key) {
                return Ok(Some(v.to_vec()));
            }
            match p.next() {
                0 => return Ok(None),
                next => no = next,
            }
        }
        Err(self.chain_loop(&t, no))
    }

    fn chain_loop(&self, t: &TableInfo, no: u64) -> Error {
        Error::CorruptPage {
            file: crate::datafile::table_path(self.node.files.dir(), t.file_id),
            page: no,
            detail: "overflow chain does not end".into(),
        }
    }

    /// The pages of `key`'s chain, X-locked.
    fn chain_for_write(&mut self, t: &TableInfo, key: &[u8]) -> Result<Vec<u64>> {
        let mut chain = Vec::new();
        let mut no = table::bucket_page(key, t.buckets);
        loop {
            self.fetch(t, no, LockMode::X)?;
            chain.push(no);
            match self.page(t, no).next() {
                0 => return Ok(chain),
                next if chain.contains(&next) || chain.len() > 1 << 20 => return Err(self.chain_loop(t, next)),
                next => no = next,
            }
        }
    }

    /// Sets `key` to `value` in `table`.
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        table::check_sizes(key, value, self.node.files.page_size())?;
        let t = self.table(table, true, Some((key, LockMode::X)))?;
        let chain = self.chain_for_write(&t, key)?;
        for &no in &chain {
            if let Some((_, old)) = self.page(&t, no).find(key) {
                if old == value {
                    return Ok(());
                }
                // A value of the same length is overwritten in place.
                if old.len() == value.len() {
                    let replaced = self.change(&t, no, |p| p.replace(key, value))?;
                    debug_assert!(replaced, "the key was found with a value of this length");
                    return Ok(());
                }
                self.change(&t, no, |p| p.remove(key))?;
                break;
            }
        }
        let need = ITEM_OVERHEAD + key.len() + value.len();
        if let Some(&no) = chain.iter().find(|&&no| self.page(&t, no).free() >= need) {
            let inserted = self.change(&t, no, |p| p.insert(key, value))?;
            debug_assert!(inserted, "the page had room");
            return Ok(());
        }
        // Every page of the chain is full: allocate an overflow page.
        self.fetch(&t, 0, LockMode::X)?;
        let mut header = Header::read(self.page(&t, 0)).map_err(|d| Error::CorruptPage {
            file: crate::datafile::table_path(self.node.files.dir(), t.file_id),
            page: 0,
            detail: d.into(),
        })?;
        let new_no = header.page_count;
        header.page_count += 1;
        self.fetch_new(&t, new_no)?;
        self.change(&t, 0, |p| header.write(p))?;
        let (ps, file_id) = (self.node.files.page_size(), t.file_id);
        let inserted = self.change(&t, new_no, |fresh| {
            *fresh = Page::new(ps, Kind::Overflow, file_id, new_no);
            fresh.insert(key, value)
        })?;
        debug_assert!(inserted, "an empty page holds any item within the limits");
        let last = *chain.last().expect("a chain has its bucket");
        self.change(&t, last, |p| p.set_next(new_no))?;
        Ok(())
    }

    /// Removes `key` from `table`; returns whether it was there.
    pub fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        let t = self.table(table, true, Some((key, LockMode::X)))?;
        for no in self.chain_for_write(&t, key)? {
            if self.page(&t, no).find(key).is_some() {
                self.change(&t, no, |p| p.remove(key))?;
                return Ok(true);
            }
        }
        Ok(false)
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
        let mut dirty: Vec<(PageKey, Page)> = self
            .pages
            .drain()
            .filter(|(_, p)| p.dirty)
            .map(|(k, p)| (k, p.page))
            .collect();
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
            let lsn = node
                .log
                .append(RecordMeta::txn(self.id, Some(last)), &RecordBody::CommitIntent(refs))?;
            intent = Some(lsn);
            // The files are held (with their fencing locks, `crate::fence`)
            // from before the intent is durable until the writes are done.
            let stamp = Stamp {
                node: node.node_id,
                log: node.log_id,
                lsn: lsn.0,
            };
            let mut pages = Vec::with_capacity(dirty.len());
            for ((file_id, page_no), mut page) in dirty {
                page.set_stamp(stamp);
                page.seal();
                published.push((ResourceId::new(file_id, page_no), stamp.as_u128()));
                pages.push((node.files.get(file_id, false)?, page));
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
    }
}
