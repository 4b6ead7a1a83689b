//! Rows of a table of either kind: reading, writing and deleting one key.
//!
//! A call that changes rows runs as a scope of its own
//! (`Transaction::statement`): if it fails — a lock refused halfway through
//! a B+tree split, a damaged page — nothing of it stays, and the
//! transaction may go on.
//!
//! A lock error of any of these calls names the table and key it was for
//! ([`crate::LockSite`]).

use lockmgr::LockMode;

use super::Transaction;
use crate::btree;
use crate::catalog::TableKind;
use crate::error::{Error, Result};
use crate::large_value::MAX_VALUE;
use crate::page::MAX_KEY;
use crate::table;

impl Transaction {
    /// The value of `key` in `table`.
    pub fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_here(table, key).map_err(|e| e.at(table, Some(key)))
    }

    fn get_here(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        let t = self.table(table, false, Some(key), LockMode::S)?;
        match t.kind {
            TableKind::Hash => self.hash_get(&t, key, LockMode::S),
            TableKind::Ordered => btree::get(&mut self.store(&t), key),
        }
    }

    /// The value of `key` in `table`, read for update: the page that holds
    /// the key is locked exclusively at once, as a change of it will be.
    ///
    /// Two transactions that read a key with [`Transaction::get`] and then
    /// write it each hold a shared lock the other's write must wait for: one
    /// of them is a deadlock victim and runs again. Read for update, the
    /// second waits at its read instead, and both commit. (In an ordered
    /// table whose root is its only leaf, the root is locked shared first
    /// and converted, so two such readers can still meet in a deadlock
    /// until the table grows a level.)
    pub fn get_for_update(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_for_update_here(table, key).map_err(|e| e.at(table, Some(key)))
    }

    fn get_for_update_here(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        let t = self.table(table, true, Some(key), LockMode::X)?;
        match t.kind {
            TableKind::Hash => self.hash_get(&t, key, LockMode::X),
            TableKind::Ordered => btree::get_as(&mut self.store(&t), key, crate::store::Access::Write),
        }
    }

    /// Sets `key` to `value` in `table`. Keys are at most
    /// [`MAX_KEY`](crate::MAX_KEY) bytes; values at most
    /// [`MAX_VALUE`](crate::MAX_VALUE) in an ordered table, and what fits a
    /// page with the key in a hash table (`ValueTooLarge` says how much).
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_here(table, key, value).map_err(|e| e.at(table, Some(key)))
    }

    fn put_here(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        if key.len() > MAX_KEY {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY,
            });
        }
        let t = self.table(table, true, Some(key), LockMode::X)?;
        match t.kind {
            TableKind::Hash => {
                table::check_sizes(key, value, self.node.files.page_size())?;
                self.statement(|txn| txn.hash_put(&t, key, value))
            }
            TableKind::Ordered => {
                if value.len() > MAX_VALUE {
                    return Err(Error::ValueTooLarge {
                        len: value.len(),
                        max: MAX_VALUE,
                    });
                }
                self.statement(|txn| btree::put(&mut txn.store(&t), key, value))
            }
        }
    }

    /// Removes `key` from `table`; returns whether it was there.
    pub fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool> {
        self.delete_here(table, key).map_err(|e| e.at(table, Some(key)))
    }

    fn delete_here(&mut self, table: &str, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        let t = self.table(table, true, Some(key), LockMode::X)?;
        match t.kind {
            TableKind::Hash => self.statement(|txn| txn.hash_delete(&t, key)),
            TableKind::Ordered => self.statement(|txn| btree::delete(&mut txn.store(&t), key)),
        }
    }
}
