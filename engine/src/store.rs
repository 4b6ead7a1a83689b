//! The pages of one table file as a transaction sees them: what the
//! B+tree (`crate::btree`), the free list (`crate::freelist`) and large
//! values (`crate::large_value`) are written against.
//!
//! A transaction implements [`PageStore`] over one table (`crate::txn`):
//! pages are locked at the coordinator before they are read, changed in
//! the transaction's memory and logged as byte-range before-images. The
//! algorithms above never see locks, logs or files; a test store in memory
//! ([`tests::MemStore`]) runs them alone.
//!
//! Two kinds of access:
//! - **Locked pages** (the header, B+tree nodes, free-list trunks) are
//!   read under an S or X lock, through the node's buffer pool, whose
//!   cached copies the lock's value block keeps current (`crate::pool`).
//! - **Pages a lock covers** — a large value's directory and data pages —
//!   are reached only through the leaf item that owns them, whose lock
//!   covers them: they take no lock of their own, are read from the device
//!   (never the pool: nothing would tell a cached copy stale), and a commit
//!   publishes no value block for them.
//!
//! Pages taken from the free list or past the file's allocated pages are
//! *fresh*: what they held before does not matter, so their undo is only
//! their header as a page never written, which recovery turns back into
//! zeros (`crate::recovery`), and nothing of their content is logged.

use crate::error::{Error, Result};
use crate::page::Page;

/// How a locked page is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Under a shared lock.
    Read,
    /// Under an exclusive lock, to change it.
    Write,
}

/// The pages of one table file, as one transaction sees them.
pub trait PageStore {
    /// Bytes per page.
    fn page_size(&self) -> usize;

    /// The table file's id.
    fn file_id(&self) -> u32;

    /// Locked page `no`, under at least `access` (waiting for the lock as
    /// the transaction does). A page committed data refers to must have
    /// been written: one that reads as never written is an error.
    fn page(&mut self, no: u64, access: Access) -> Result<&Page>;

    /// Tries to lock page `no` exclusively without waiting: `Ok(false)`
    /// when another transaction holds it (or a failed node retains it).
    /// Work that may be skipped (merging pages) asks this way, so it never
    /// waits or deadlocks.
    fn try_write(&mut self, no: u64) -> Result<bool>;

    /// Changes page `no`, which this transaction holds for writing already
    /// ([`PageStore::page`] with [`Access::Write`], or
    /// [`PageStore::take_fresh`]).
    fn change<R>(&mut self, no: u64, f: impl FnOnce(&mut Page) -> R) -> Result<R>;

    /// Takes free page `no` (past the allocated pages, or off the free
    /// list) as an empty page ([`Page::new`] of kind `Unwritten`), locked
    /// exclusively when `locked` (pages a lock covers take none).
    fn take_fresh(&mut self, no: u64, locked: bool) -> Result<()>;

    /// Page `no` leaves the table's structure for the free list: a page
    /// freed by a transaction is not fresh for that same transaction (its
    /// content comes back if the transaction does not commit).
    fn note_freed(&mut self, no: u64);

    /// Pages `nos` that a lock covers (see the module docs), checked: the
    /// transaction's own copies where it has them, else read from the
    /// device together.
    fn read_covered(&mut self, nos: &[u64]) -> Result<Vec<Page>>;

    /// The transaction's copy of page `no` may go if it is unchanged (a
    /// scan moved past it); its lock stays, and a later read fetches it
    /// again (`crate::pool` keeps it cheap).
    fn forget_copy(&mut self, no: u64);

    /// The caller is done with branch page `no` it read: if the
    /// transaction holds it only shared and has not changed it, the lock
    /// goes now, with the copy (a later read locks and fetches it again).
    /// Only B+tree branches are released this way: what a transaction read
    /// is covered by its leaf locks, and a branch locked X to be changed
    /// stays locked to the end (see `crate::btree`).
    fn release_read(&mut self, no: u64);

    /// The error for page `no` of this table holding what it must not.
    fn corrupt(&self, no: u64, detail: String) -> Error;
}

#[cfg(test)]
pub mod tests {
    //! A store in memory: no locks, no log; pages as a vector.

    use super::*;
    use crate::page::Kind;

    /// See the module docs.
    pub struct MemStore {
        pub pages: Vec<Page>,
        pub page_size: usize,
        /// Pages taken by `take_fresh` and freed, for tests' accounting.
        pub freed: Vec<u64>,
        /// `try_write` refuses these.
        pub busy: Vec<u64>,
    }

    impl MemStore {
        pub fn new(page_size: usize) -> MemStore {
            MemStore {
                pages: Vec::new(),
                page_size,
                freed: Vec::new(),
                busy: Vec::new(),
            }
        }

        /// A store whose header page says: table "t", two pages, no free
        /// list — what an ordered table's file holds before its root.
        pub fn with_header(page_size: usize) -> MemStore {
            let mut s = MemStore::new(page_size);
            s.change(0, |p| {
                crate::meta::Meta {
                    page_count: 2,
                    uid: 1,
                    free_trunk: 0,
                    name: "t".into(),
                }
                .write(p)
            })
            .expect("a page in memory takes any change");
            s
        }

        fn slot(&mut self, no: u64) -> &mut Page {
            let ps = self.page_size;
            while self.pages.len() as u64 <= no {
                let n = self.pages.len() as u64;
                self.pages.push(Page::new(ps, Kind::Unwritten, 1, n));
            }
            &mut self.pages[no as usize]
        }
    }

    impl PageStore for MemStore {
        fn page_size(&self) -> usize {
            self.page_size
        }

        fn file_id(&self) -> u32 {
            1
        }

        fn page(&mut self, no: u64, _: Access) -> Result<&Page> {
            let p = self.slot(no);
            if p.kind() == Kind::Unwritten {
                return Err(Error::MissingPage {
                    file: "mem".into(),
                    page: no,
                });
            }
            Ok(p)
        }

        fn try_write(&mut self, no: u64) -> Result<bool> {
            Ok(!self.busy.contains(&no))
        }

        fn change<R>(&mut self, no: u64, f: impl FnOnce(&mut Page) -> R) -> Result<R> {
            Ok(f(self.slot(no)))
        }

        fn take_fresh(&mut self, no: u64, _: bool) -> Result<()> {
            let ps = self.page_size;
            *self.slot(no) = Page::new(ps, Kind::Unwritten, 1, no);
            self.freed.retain(|&f| f != no);
            Ok(())
        }

        fn note_freed(&mut self, no: u64) {
            self.freed.push(no);
        }

        fn read_covered(&mut self, nos: &[u64]) -> Result<Vec<Page>> {
            Ok(nos.iter().map(|&no| self.slot(no).clone()).collect())
        }

        fn forget_copy(&mut self, _: u64) {}

        fn release_read(&mut self, _: u64) {}

        fn corrupt(&self, no: u64, detail: String) -> Error {
            Error::CorruptPage {
                file: "mem".into(),
                page: no,
                detail,
            }
        }
    }
}
