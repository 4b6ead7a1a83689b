//! A transaction's pages: its locks, the table lookup, reading pages under
//! their locks, changing them with their before-images logged, taking
//! fresh ones, and the [`PageStore`] the B+tree, free list and large values
//! are written against.

use std::collections::hash_map::Entry;

use lockmgr::{LockMode, ResourceId};
use wal::{PageUndo, RecordBody, RecordMeta};

use super::{PageKey, Transaction, TxnPage};
use crate::catalog::{TableInfo, TableKind};
use crate::error::{Error, Result};
use crate::node::state::Granted;
use crate::page::{Kind, Page, HEADER_LEN};
use crate::store::{Access, PageStore};
use crate::table;

impl Transaction {
    pub(super) fn lock(&mut self, resource: ResourceId, mode: LockMode) -> Result<()> {
        if self.holds(resource, mode) {
            return Ok(());
        }
        let granted = self.node.lock(self.id, resource, mode)?;
        self.granted(resource, granted);
        Ok(())
    }

    fn holds(&self, resource: ResourceId, mode: LockMode) -> bool {
        self.locks.get(&resource).is_some_and(|held| held.0.covers(mode))
    }

    /// Records a grant: the strongest mode held, and the value the latest
    /// grant carried.
    fn granted(&mut self, resource: ResourceId, (held, value): Granted) {
        let merged = self.locks.get(&resource).map_or(held, |h| h.0.supremum(held));
        self.locks.insert(resource, (merged, value));
    }

    /// The first page a call on `t` locks with the table: `key`'s bucket,
    /// or an ordered table's root (shared: a writer's descent converts it
    /// only if the root is the one leaf).
    fn first_page(t: &TableInfo, key: Option<&[u8]>, mode: LockMode) -> Option<(u64, LockMode)> {
        match t.kind {
            TableKind::Hash => key.map(|k| (table::bucket_page(k, t.buckets), mode)),
            TableKind::Ordered => Some((crate::meta::ROOT, LockMode::S)),
        }
    }

    /// The table `name`, locked IS or IX, and with it its first page
    /// ([`Self::first_page`]) locked: both requests go out together.
    pub(super) fn table(&mut self, name: &str, write: bool, key: Option<&[u8]>, mode: LockMode) -> Result<TableInfo> {
        let table_mode = if write { LockMode::IX } else { LockMode::IS };
        if let Some(t) = self.tables.get(name).cloned() {
            self.lock(ResourceId::new(0, u64::from(t.file_id)), table_mode)?;
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
            let mut requests = vec![(table_res, table_mode)];
            if let Some((no, page_mode)) = Self::first_page(&t, key, mode) {
                requests.push((ResourceId::new(t.file_id, no), page_mode));
            }
            requests.retain(|&(res, mode)| !self.holds(res, mode));
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
    /// one that committed data refers to, so it must have been written: one
    /// that reads as never written — a hole, or past the end of a
    /// truncated file — is [`Error::MissingPage`], never an empty page.
    pub(super) fn fetch(&mut self, t: &TableInfo, no: u64, mode: LockMode) -> Result<()> {
        self.lock(ResourceId::new(t.file_id, no), mode)?;
        match self.pages.entry((t.file_id, no)) {
            Entry::Occupied(mut o) => o.get_mut().locked = true,
            Entry::Vacant(v) => {
                let file = table::open_checked(&self.node.io, &self.node.files, t)?;
                let value = self.locks.get(&ResourceId::new(t.file_id, no)).and_then(|g| g.1);
                let page = self.node.pool.get(&self.node.io, &file, no, value)?;
                if page.kind() == Kind::Unwritten {
                    return Err(Error::MissingPage {
                        file: file.path().to_path_buf(),
                        page: no,
                    });
                }
                v.insert(TxnPage {
                    page,
                    dirty_scope: None,
                    locked: true,
                    fresh: false,
                });
            }
        }
        Ok(())
    }

    pub(super) fn page(&self, t: &TableInfo, no: u64) -> &Page {
        &self.pages[&(t.file_id, no)].page
    }

    /// Changes page `no` of `t` with `change` (X-locked first, unless a
    /// lock of another page covers it and the transaction holds it
    /// already), then logs the before-image of every byte range the change
    /// made (`crate::undo`), the page's header too on the transaction's
    /// first change to it; a fresh page logs only that header, as a page
    /// never written. The records carry the current scope. The page changes
    /// in the transaction's memory only, so the records are in the log
    /// before anything of the change can reach a data file. The page as it
    /// was when the scope first changed it is kept for rolling the scope
    /// back.
    pub(super) fn change<R>(&mut self, t: &TableInfo, no: u64, change: impl FnOnce(&mut Page) -> R) -> Result<R> {
        self.node.check_running()?;
        let key = (t.file_id, no);
        let res = ResourceId::new(t.file_id, no);
        let writable = self.pages.get(&key).is_some_and(|p| !p.locked) || self.holds(res, LockMode::X);
        if !writable || !self.pages.contains_key(&key) {
            self.fetch(t, no, LockMode::X)?;
        }
        let need_image = self.scopes.needs_image(key);
        let p = self.pages.get_mut(&key).expect("fetched above");
        let first = p.dirty_scope.is_none();
        let fresh = p.fresh;
        // A fresh page's first image is "never written", no copy needed.
        let before = (!fresh || (need_image && !first)).then(|| p.page.clone());
        let out = change(&mut p.page);
        let logged = if fresh {
            if first {
                let unwritten = Page::new(p.page.bytes().len(), Kind::Unwritten, t.file_id, no);
                self.log_undo(t.file_id, no, 0, unwritten.bytes()[..HEADER_LEN].to_vec())
            } else {
                Ok(())
            }
        } else {
            let before = before.as_ref().expect("kept for a page not fresh");
            let ranges = crate::undo::changed_ranges(before.bytes(), p.page.bytes(), first.then_some(0..HEADER_LEN));
            ranges
                .into_iter()
                .try_for_each(|r| self.log_undo(t.file_id, no, r.start as u32, before.bytes()[r].to_vec()))
        };
        if let Err(e) = logged {
            // Not logged, so not kept: the page goes back to what it was.
            let ps = self.node.files.page_size();
            let p = self.pages.get_mut(&key).expect("fetched above");
            p.page = before.unwrap_or_else(|| Page::new(ps, Kind::Unwritten, t.file_id, no));
            return Err(e);
        }
        if need_image {
            self.scopes.remember(key, if fresh && first { None } else { before });
        }
        if first {
            self.pages.get_mut(&key).expect("fetched above").dirty_scope = Some(self.scopes.depth());
            self.dirty_pages += 1;
        }
        Ok(out)
    }

    /// Logs the transaction's `Begin` record, unless it did already.
    pub(super) fn begun(&mut self) -> Result<()> {
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

    /// Takes page `no` of `t`, free, as an empty page: fresh (nothing read,
    /// nothing of it logged but its header as never written) unless this
    /// transaction read or freed it already — then its content comes back
    /// if the transaction does not commit, and emptying it is logged like
    /// any change.
    pub(super) fn take_fresh(&mut self, t: &TableInfo, no: u64, locked: bool) -> Result<()> {
        let key = (t.file_id, no);
        if locked {
            self.lock(ResourceId::new(t.file_id, no), LockMode::X)?;
        }
        let ps = self.node.files.page_size();
        if !self.pages.contains_key(&key) && !self.freed.contains(&key) {
            self.pages.insert(
                key,
                TxnPage {
                    page: Page::new(ps, Kind::Unwritten, t.file_id, no),
                    dirty_scope: None,
                    locked,
                    fresh: true,
                },
            );
            return Ok(());
        }
        if !self.pages.contains_key(&key) {
            // A large value's page freed by this transaction.
            let page = self.read_covered(t, &[no])?.pop().expect("one page asked, one read");
            self.pages.insert(
                key,
                TxnPage {
                    page,
                    dirty_scope: None,
                    locked,
                    fresh: false,
                },
            );
        } else if locked {
            self.pages.get_mut(&key).expect("present").locked = true;
        }
        self.change(t, no, |p| *p = Page::new(ps, Kind::Unwritten, t.file_id, no))
    }

    /// Pages `nos` of `t` covered by another page's lock, checked: this
    /// transaction's copies where it has them, the others read from the
    /// device in one batch (never the pool, `crate::store`).
    pub(super) fn read_covered(&mut self, t: &TableInfo, nos: &[u64]) -> Result<Vec<Page>> {
        let mut out: Vec<Option<Page>> = nos
            .iter()
            .map(|&no| self.pages.get(&(t.file_id, no)).map(|p| p.page.clone()))
            .collect();
        let missing: Vec<usize> = (0..nos.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let file = table::open_checked(&self.node.io, &self.node.files, t)?;
            let mut buf = crate::aligned::AlignedPages::new(missing.len(), self.node.files.page_size())?;
            let targets: Vec<(&crate::datafile::DataFile, u64)> = missing.iter().map(|&i| (&*file, nos[i])).collect();
            crate::datafile::read_raw_pages(&self.node.io, &targets, &mut buf)?;
            for (j, &i) in missing.iter().enumerate() {
                out[i] = Some(Page::from_disk(buf.page(j).to_vec(), file.path(), t.file_id, nos[i])?);
            }
        }
        Ok(out.into_iter().map(|p| p.expect("every page read")).collect())
    }

    /// A store over table `t` for the B+tree, free list and large values.
    pub(super) fn store<'a>(&'a mut self, t: &'a TableInfo) -> TableStore<'a> {
        TableStore { txn: self, t }
    }
}

/// One table's pages through a transaction (see `crate::store`).
pub(super) struct TableStore<'a> {
    txn: &'a mut Transaction,
    t: &'a TableInfo,
}

impl PageStore for TableStore<'_> {
    fn page_size(&self) -> usize {
        self.txn.node.files.page_size()
    }

    fn file_id(&self) -> u32 {
        self.t.file_id
    }

    fn page(&mut self, no: u64, access: Access) -> Result<&Page> {
        let mode = match access {
            Access::Read => LockMode::S,
            Access::Write => LockMode::X,
        };
        self.txn.fetch(self.t, no, mode)?;
        Ok(self.txn.page(self.t, no))
    }

    fn try_write(&mut self, no: u64) -> Result<bool> {
        let res = ResourceId::new(self.t.file_id, no);
        if self.txn.holds(res, LockMode::X) {
            return Ok(true);
        }
        match self.txn.node.try_lock(self.txn.id, res, LockMode::X)? {
            Some(granted) => {
                self.txn.granted(res, granted);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn change<R>(&mut self, no: u64, f: impl FnOnce(&mut Page) -> R) -> Result<R> {
        self.txn.change(self.t, no, f)
    }

    fn take_fresh(&mut self, no: u64, locked: bool) -> Result<()> {
        self.txn.take_fresh(self.t, no, locked)
    }

    fn note_freed(&mut self, no: u64) {
        self.txn.freed.insert((self.t.file_id, no));
    }

    fn read_covered(&mut self, nos: &[u64]) -> Result<Vec<Page>> {
        self.txn.read_covered(self.t, nos)
    }

    fn forget_copy(&mut self, no: u64) {
        let key: PageKey = (self.t.file_id, no);
        if self
            .txn
            .pages
            .get(&key)
            .is_some_and(|p| p.dirty_scope.is_none() && !p.fresh)
        {
            self.txn.pages.remove(&key);
        }
    }

    fn release_read(&mut self, no: u64) {
        let res = ResourceId::new(self.t.file_id, no);
        let key: PageKey = (self.t.file_id, no);
        let shared_only = self.txn.locks.get(&res).is_some_and(|held| held.0 == LockMode::S);
        let unchanged = self
            .txn
            .pages
            .get(&key)
            .is_none_or(|p| p.dirty_scope.is_none() && !p.fresh);
        if shared_only && unchanged {
            // The copy goes with the lock: kept, it would be used again
            // without the value block of the next grant saying it is current.
            self.txn.locks.remove(&res);
            self.txn.pages.remove(&key);
            self.txn.node.release_one(self.txn.id, res);
        }
    }

    fn corrupt(&self, no: u64, detail: String) -> Error {
        Error::CorruptPage {
            file: crate::datafile::table_path(self.txn.node.files.dir(), self.t.file_id),
            page: no,
            detail,
        }
    }
}
