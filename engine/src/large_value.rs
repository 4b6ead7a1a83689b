//! Large values: a value too long to sit in its leaf lives in pages of its
//! own, and the leaf item holds a reference to them ([`ValueRef`]).
//!
//! A large value's pages are its data pages, each holding the next
//! `page_size - 48` bytes of the value, and directory pages listing the
//! data pages in order, chained. Reading a value reads a directory page,
//! then all the data pages it lists in one batch (one submission through
//! the ring), then the next directory: a 64 MiB value with 4 KiB pages is
//! 34 batches of about 2 MiB.
//!
//! The pages take no locks of their own: they are reached only through the
//! leaf item that refers to them, whose lock covers them (`crate::store`).
//! They are written once, when the value is, and never changed afterwards;
//! replacing or deleting the value frees them (`crate::freelist`). Being
//! taken fresh, writing them logs only their headers, so a transaction
//! writing a 64 MiB value logs some 2 MiB of undo, not 64.
//!
//! ## Formats (little-endian), after the common page header
//! - **Directory page** (kind 6): the item count is the number of data
//!   pages listed, the next-page field the next directory page (0 = the
//!   last); the body lists the data pages' numbers, u64 each.
//! - **Data page** (kind 7): the bytes-in-use field is the number of the
//!   value's bytes the page holds, the body those bytes.
//! - **Reference** ([`ValueRef`], 16 bytes, in the owning item): the
//!   value's length u64, its first directory page u64.

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::Result;
use crate::freelist;
use crate::page::{Kind, Page, HEADER_LEN};
use crate::store::PageStore;

/// The longest value, in bytes: a transaction holds what it writes in
/// memory until it commits, so the bound is what a process can hold.
pub const MAX_VALUE: usize = 256 << 20;

/// Where a large value lives; see the module docs.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ValueRef {
    /// The value's length in bytes.
    pub len: U64,
    /// Its first directory page.
    pub dir: U64,
}

/// Bytes of a reference.
pub const REF_LEN: usize = std::mem::size_of::<ValueRef>();

/// Value bytes a data page holds.
fn data_capacity(page_size: usize) -> usize {
    page_size - HEADER_LEN
}

/// Data pages a directory page lists.
fn dir_capacity(page_size: usize) -> usize {
    (page_size - HEADER_LEN) / 8
}

/// Writes `value` into fresh pages of the table and returns the reference
/// to it.
pub fn write<S: PageStore>(s: &mut S, value: &[u8]) -> Result<ValueRef> {
    let (ps, file) = (s.page_size(), s.file_id());
    let data_pages = value.len().div_ceil(data_capacity(ps)).max(1);
    let dir_pages = data_pages.div_ceil(dir_capacity(ps));
    let pages = freelist::allocate(s, dir_pages + data_pages, false)?;
    let (dirs, data) = pages.split_at(dir_pages);
    for (chunk, &no) in value.chunks(data_capacity(ps)).zip(data) {
        s.change(no, |p| {
            *p = Page::new(ps, Kind::ValueData, file, no);
            p.body_mut()[..chunk.len()].copy_from_slice(chunk);
            p.set_used(chunk.len() as u16);
        })?;
    }
    for (i, (&no, listed)) in dirs.iter().zip(data.chunks(dir_capacity(ps))).enumerate() {
        let next = dirs.get(i + 1).copied().unwrap_or(0);
        s.change(no, |p| {
            *p = Page::new(ps, Kind::ValueDir, file, no);
            p.set_next(next);
            p.set_count(listed.len() as u16);
            for (j, &d) in listed.iter().enumerate() {
                p.body_mut()[j * 8..j * 8 + 8].copy_from_slice(U64::new(d).as_bytes());
            }
        })?;
    }
    Ok(ValueRef {
        len: U64::new(value.len() as u64),
        dir: U64::new(dirs[0]),
    })
}

/// The directory page `no`: the data pages it lists, and the next one.
fn directory<S: PageStore>(s: &mut S, no: u64) -> Result<(Vec<u64>, u64)> {
    let page = s.read_covered(&[no])?.pop().expect("one page asked, one read");
    let count = page.count();
    if page.kind() != Kind::ValueDir || count > dir_capacity(page.bytes().len()) {
        return Err(s.corrupt(no, "a large value's directory page is not one".into()));
    }
    let (list, _) = <[U64]>::ref_from_prefix_with_elems(page.body(), count)
        .map_err(|_| s.corrupt(no, "a directory page's list runs past the page".into()))?;
    Ok((list.iter().map(|n| n.get()).collect(), page.next()))
}

/// Visits the directory pages of the value `r` refers to, each with the
/// data pages it lists; stops with corruption at a chain longer than any
/// value of `r`'s length has.
fn walk<S: PageStore>(
    s: &mut S,
    r: &ValueRef,
    mut visit: impl FnMut(&mut S, u64, Vec<u64>) -> Result<()>,
) -> Result<()> {
    let ps = s.page_size();
    let len = r.len.get();
    if len > MAX_VALUE as u64 {
        return Err(s.corrupt(r.dir.get(), format!("a large value claims {len} bytes")));
    }
    let dirs = (len as usize)
        .div_ceil(data_capacity(ps))
        .max(1)
        .div_ceil(dir_capacity(ps));
    let mut no = r.dir.get();
    for _ in 0..dirs {
        let (data, next) = directory(s, no)?;
        visit(s, no, data)?;
        if next == 0 {
            return Ok(());
        }
        no = next;
    }
    Err(s.corrupt(
        no,
        "a large value's directory chain is longer than its length allows".into(),
    ))
}

/// The value `r` refers to.
pub fn read<S: PageStore>(s: &mut S, r: &ValueRef) -> Result<Vec<u8>> {
    let len = r.len.get() as usize;
    let cap = data_capacity(s.page_size());
    let mut out = Vec::new();
    walk(s, r, |s, _, data| {
        for page in s.read_covered(&data)? {
            let used = page.used_field();
            if page.kind() != Kind::ValueData || used > cap || out.len() + used > len.min(MAX_VALUE) {
                return Err(s.corrupt(page.page_no(), "a large value's data page is not one of it".into()));
            }
            if out.is_empty() {
                out.reserve_exact(len);
            }
            out.extend_from_slice(&page.body()[..used]);
        }
        Ok(())
    })?;
    if out.len() != len {
        return Err(s.corrupt(
            r.dir.get(),
            format!("a large value of {len} bytes holds {} in its pages", out.len()),
        ));
    }
    Ok(out)
}

/// The pages of the value `r` refers to: its directory and data pages.
pub fn pages<S: PageStore>(s: &mut S, r: &ValueRef) -> Result<Vec<u64>> {
    let mut pages = Vec::new();
    walk(s, r, |_, dir, data| {
        pages.push(dir);
        pages.extend(data);
        Ok(())
    })?;
    Ok(pages)
}

/// Frees the pages of the value `r` refers to.
pub fn free<S: PageStore>(s: &mut S, r: &ValueRef) -> Result<()> {
    let pages = pages(s, r)?;
    freelist::free(s, &pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::MemStore;

    #[test]
    fn values_of_every_length_round_trip_and_free_their_pages() {
        let mut s = MemStore::with_header(4096);
        let cap = data_capacity(4096);
        for len in [1, cap - 1, cap, cap + 1, cap * 506, cap * 506 + 1, 3 << 20] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let r = write(&mut s, &value).unwrap();
            assert_eq!(read(&mut s, &r).unwrap(), value, "length {len}");
            let before = freelist::read_meta(&mut s).unwrap().page_count;
            free(&mut s, &r).unwrap();
            // Written again from the pages freed (and the trunks they needed).
            let r = write(&mut s, &value).unwrap();
            assert_eq!(read(&mut s, &r).unwrap(), value);
            let after = freelist::read_meta(&mut s).unwrap().page_count;
            assert!(after <= before + 2, "length {len}: {before} → {after} pages");
            free(&mut s, &r).unwrap();
        }
    }

    #[test]
    fn a_reference_to_the_wrong_pages_is_corruption() {
        let mut s = MemStore::with_header(4096);
        let r = write(&mut s, &[7u8; 10_000]).unwrap();
        let longer = ValueRef {
            len: U64::new(20_000),
            ..r
        };
        assert!(read(&mut s, &longer).is_err());
        let elsewhere = ValueRef { dir: U64::new(0), ..r };
        assert!(read(&mut s, &elsewhere).is_err());
        let huge = ValueRef {
            len: U64::new(u64::MAX),
            ..r
        };
        assert!(read(&mut s, &huge).is_err());
    }
}
