//! Rows of hash tables (`crate::table`): a key's bucket page and its chain
//! of overflow pages, each locked S to read and X to change.

use lockmgr::LockMode;

use super::Transaction;
use crate::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::page::{Kind, Page, ITEM_OVERHEAD};
use crate::table::{self, Header};

impl Transaction {
    /// The value of `key`, its chain's pages locked `mode` (X: read for
    /// update, the locks a write of the key takes).
    pub(super) fn hash_get(&mut self, t: &TableInfo, key: &[u8], mode: LockMode) -> Result<Option<Vec<u8>>> {
        let mut no = table::bucket_page(key, t.buckets);
        for _ in 0..u32::MAX {
            self.fetch(t, no, mode)?;
            let p = self.page(t, no);
            if let Some((_, v)) = p.find(key) {
                return Ok(Some(v.to_vec()));
            }
            match p.next() {
                0 => return Ok(None),
                next => no = next,
            }
        }
        Err(self.chain_loop(t, no))
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

    /// Sets `key` to `value` in hash table `t` (sizes checked).
    pub(super) fn hash_put(&mut self, t: &TableInfo, key: &[u8], value: &[u8]) -> Result<()> {
        let chain = self.chain_for_write(t, key)?;
        for &no in &chain {
            if let Some((_, old)) = self.page(t, no).find(key) {
                if old == value {
                    return Ok(());
                }
                // A value of the same length is overwritten in place.
                if old.len() == value.len() {
                    let replaced = self.change(t, no, |p| p.replace(key, value))?;
                    debug_assert!(replaced, "the key was found with a value of this length");
                    return Ok(());
                }
                self.change(t, no, |p| p.remove(key))?;
                break;
            }
        }
        let need = ITEM_OVERHEAD + key.len() + value.len();
        if let Some(&no) = chain.iter().find(|&&no| self.page(t, no).free() >= need) {
            let inserted = self.change(t, no, |p| p.insert(key, value))?;
            debug_assert!(inserted, "the page had room");
            return Ok(());
        }
        // Every page of the chain is full: allocate an overflow page, taken
        // fresh past the allocated ones.
        self.fetch(t, 0, LockMode::X)?;
        let mut header = Header::read(self.page(t, 0)).map_err(|d| Error::CorruptPage {
            file: crate::datafile::table_path(self.node.files.dir(), t.file_id),
            page: 0,
            detail: d.into(),
        })?;
        let new_no = header.page_count;
        header.page_count += 1;
        self.take_fresh(t, new_no, true)?;
        self.change(t, 0, |p| header.write(p))?;
        let (ps, file_id) = (self.node.files.page_size(), t.file_id);
        let inserted = self.change(t, new_no, |fresh| {
            *fresh = Page::new(ps, Kind::Overflow, file_id, new_no);
            fresh.insert(key, value)
        })?;
        debug_assert!(inserted, "an empty page holds any item within the limits");
        let last = *chain.last().expect("a chain has its bucket");
        self.change(t, last, |p| p.set_next(new_no))?;
        Ok(())
    }

    /// Removes `key` from hash table `t`; whether it was there.
    pub(super) fn hash_delete(&mut self, t: &TableInfo, key: &[u8]) -> Result<bool> {
        for no in self.chain_for_write(t, key)? {
            if self.page(t, no).find(key).is_some() {
                self.change(t, no, |p| p.remove(key))?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}
