//! The free list of an ordered table's file: pages the table no longer
//! uses (merged B+tree nodes, deleted large values), taken again before the
//! file grows.
//!
//! The list is a chain of *trunk* pages, each listing free page numbers;
//! the header page (`crate::meta`) names the first trunk. Freeing a page
//! writes its number into the first trunk and leaves the page itself as it
//! is; taking one removes the last number from the first trunk. Either
//! changes a few bytes of one trunk and of the header, which is all their
//! undo holds. A trunk whose numbers are all taken is taken itself; when
//! the first trunk is full, a fresh page past the allocated ones becomes
//! the new first trunk (never a page being freed: its before-image would
//! have to be read first, and a large value's pages are not in the pool).
//!
//! A page taken off the list is fresh (`crate::store`): its old content
//! does not matter, so nothing of it is read or logged. Recovery puts such
//! a page back as never written, which is all a free page must be.
//!
//! ## Trunk page format (kind 8), after the common page header
//! The header's item count is the number of entries and its next-page
//! field the next trunk (0 = last). The body holds `count` page numbers,
//! u64 little-endian; bytes past them mean nothing.

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

use crate::error::Result;
use crate::meta::{Meta, ROOT};
use crate::page::{Kind, Page, HEADER_LEN};
use crate::store::{Access, PageStore};

/// Page numbers a trunk of `page_size` bytes lists at most.
pub fn trunk_capacity(page_size: usize) -> usize {
    (page_size - HEADER_LEN) / 8
}

/// The table's header fields, the header page locked for writing.
pub fn read_meta<S: PageStore>(s: &mut S) -> Result<Meta> {
    let page = s.page(0, Access::Write)?;
    Meta::read(page).map_err(|d| s.corrupt(0, d.into()))
}

/// The table's header fields, the header page locked for reading.
pub fn read_meta_shared<S: PageStore>(s: &mut S) -> Result<Meta> {
    let page = s.page(0, Access::Read)?;
    Meta::read(page).map_err(|d| s.corrupt(0, d.into()))
}

/// The page numbers trunk `page` lists (at most its capacity).
pub fn trunk_entries(page: &Page) -> Vec<u64> {
    let count = page.count().min(trunk_capacity(page.bytes().len()));
    <[U64]>::ref_from_prefix_with_elems(page.body(), count)
        .map(|(l, _)| l.iter().map(|n| n.get()).collect())
        .unwrap_or_default()
}

/// Writes the header fields back.
fn write_meta<S: PageStore>(s: &mut S, meta: &Meta) -> Result<()> {
    s.change(0, |p| meta.write(p))
}

/// The entries of trunk page `no`, checked against the allocated pages.
fn entries<S: PageStore>(s: &mut S, no: u64, meta: &Meta) -> Result<(Vec<u64>, u64)> {
    let cap = trunk_capacity(s.page_size());
    let page = s.page(no, Access::Write)?;
    if page.kind() != Kind::FreeTrunk {
        return Err(s.corrupt(no, "the free list names a page that is not a trunk".into()));
    }
    let (count, next, list) = (page.count(), page.next(), trunk_entries(page));
    let valid = |n: u64| n > ROOT && n < meta.page_count && n != no;
    if count > cap || list.iter().any(|&n| !valid(n)) || (next != 0 && !valid(next)) {
        return Err(s.corrupt(no, "a free-list trunk lists pages outside the table".into()));
    }
    Ok((list, next))
}

/// Takes `n` pages for the table: off the free list first, then past the
/// allocated pages. Each comes back as an empty page this transaction
/// holds (`PageStore::take_fresh`), locked when `locked`.
pub fn allocate<S: PageStore>(s: &mut S, n: usize, locked: bool) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let mut meta = read_meta(s)?;
    // Each turn takes at least one page, so the loop ends within `n`.
    while out.len() < n && meta.free_trunk != 0 {
        let trunk = meta.free_trunk;
        let (list, next) = entries(s, trunk, &meta)?;
        if list.is_empty() {
            // The empty trunk itself: its content was the list's, so it is
            // changed (and logged) like any page, not taken as fresh.
            let (ps, file) = (s.page_size(), s.file_id());
            s.change(trunk, |p| *p = Page::new(ps, Kind::Unwritten, file, trunk))?;
            meta.free_trunk = next;
            out.push(trunk);
            continue;
        }
        let take = (n - out.len()).min(list.len());
        let left = list.len() - take;
        s.change(trunk, |p| p.set_count(left as u16))?;
        for &no in list[left..].iter().rev() {
            s.take_fresh(no, locked)?;
            out.push(no);
        }
    }
    while out.len() < n {
        let no = meta.page_count;
        meta.page_count += 1;
        s.take_fresh(no, locked)?;
        out.push(no);
    }
    write_meta(s, &meta)?;
    Ok(out)
}

/// Puts `pages` on the free list. The pages are not changed.
pub fn free<S: PageStore>(s: &mut S, pages: &[u64]) -> Result<()> {
    if pages.is_empty() {
        return Ok(());
    }
    let mut meta = read_meta(s)?;
    for &no in pages {
        if no <= ROOT || no >= meta.page_count {
            return Err(s.corrupt(no, "freeing a page outside the table".into()));
        }
        s.note_freed(no);
    }
    let (ps, file) = (s.page_size(), s.file_id());
    let cap = trunk_capacity(ps);
    let mut rest = pages;
    // Each turn writes at least one number, or makes an empty trunk the
    // next turn writes into.
    while !rest.is_empty() {
        if meta.free_trunk != 0 {
            let trunk = meta.free_trunk;
            let (list, _) = entries(s, trunk, &meta)?;
            let take = (cap - list.len()).min(rest.len());
            if take > 0 {
                let (now, later) = rest.split_at(take);
                s.change(trunk, |p| {
                    let at = HEADER_LEN + list.len() * 8;
                    for (i, &no) in now.iter().enumerate() {
                        p.bytes_mut()[at + i * 8..at + i * 8 + 8].copy_from_slice(U64::new(no).as_bytes());
                    }
                    p.set_count((list.len() + take) as u16);
                })?;
                rest = later;
                continue;
            }
        }
        let no = meta.page_count;
        meta.page_count += 1;
        s.take_fresh(no, true)?;
        let next = meta.free_trunk;
        s.change(no, |p| {
            *p = Page::new(ps, Kind::FreeTrunk, file, no);
            p.set_next(next);
        })?;
        meta.free_trunk = no;
    }
    write_meta(s, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::MemStore;

    fn store() -> MemStore {
        MemStore::with_header(4096)
    }

    #[test]
    fn freed_pages_are_taken_again_before_the_file_grows() {
        let mut s = store();
        let a = allocate(&mut s, 3000, false).unwrap();
        assert_eq!(a, (2..3002).collect::<Vec<_>>());
        free(&mut s, &a[..1200]).unwrap();
        let meta = read_meta(&mut s).unwrap();
        // 1200 numbers need three trunks of 506, taken past the end.
        assert_eq!(meta.page_count, 3005);
        let b = allocate(&mut s, 1203, true).unwrap();
        let mut sorted = b.clone();
        sorted.sort();
        let mut want: Vec<u64> = a[..1200].to_vec();
        want.extend([3002, 3003, 3004]);
        want.sort();
        assert_eq!(sorted, want, "every freed page and the trunks, nothing new");
        let meta = read_meta(&mut s).unwrap();
        assert_eq!((meta.page_count, meta.free_trunk), (3005, 0));
        assert_eq!(allocate(&mut s, 1, false).unwrap(), vec![3005]);
    }

    #[test]
    fn a_damaged_trunk_is_corruption() {
        let mut s = store();
        let a = allocate(&mut s, 10, false).unwrap();
        free(&mut s, &a).unwrap();
        let trunk = read_meta(&mut s).unwrap().free_trunk;
        s.change(trunk, |p| p.bytes_mut()[HEADER_LEN..HEADER_LEN + 8].fill(0xff))
            .unwrap();
        assert!(allocate(&mut s, 20, false).is_err());
        assert!(free(&mut s, &[0]).is_err(), "the header page is never free");
    }
}
