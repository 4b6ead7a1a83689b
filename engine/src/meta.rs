//! The header page of an ordered (B+tree) table's file: page 0.
//!
//! ## Format (table header version 4, little-endian), in the page body
//! after the common page header (`crate::page`)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `UNDSTTBL` (as hash tables' headers) |
//! | 8  | 4 | version: 4 |
//! | 12 | 4 | table kind: 2, ordered (where a version 3 header keeps its bucket count) |
//! | 16 | 8 | page count: pages allocated (header, root, every page taken since) |
//! | 24 | 8 | identity (the catalog's; the same offset as in version 3) |
//! | 32 | 8 | first free-list trunk page, 0 = the free list is empty (`crate::freelist`) |
//! | 40 | 8 | root page: always 1 (the root never moves; recorded to be checked) |
//! | 48 | 2 | name length |
//! | 50 | n | name (UTF-8) |
//!
//! The page count and the free list change when a transaction takes or
//! frees pages, so both hold the header page's X lock like any other
//! change; readers of the tree never read this page.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::page::{Kind, Page};

/// Of a table header page: shared with hash tables (`crate::table`).
pub const MAGIC: [u8; 8] = *b"UNDSTTBL";
/// The table header version of ordered tables.
pub const VERSION: u32 = 4;
/// The table kind field of an ordered table.
const KIND_ORDERED: u32 = 2;
/// The root page of every ordered table.
pub const ROOT: u64 = 1;

/// See the module docs.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct MetaBody {
    magic: [u8; 8],
    version: U32,
    kind: U32,
    page_count: U64,
    uid: U64,
    free_trunk: U64,
    root: U64,
    name_len: U16,
}

const BODY_LEN: usize = std::mem::size_of::<MetaBody>();
const _: () = assert!(BODY_LEN == 50);

/// The header page's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Pages allocated: the next page past them is the next fresh one.
    pub page_count: u64,
    /// The table file's identity (see `crate::catalog`).
    pub uid: u64,
    /// The first free-list trunk page, 0 when the list is empty.
    pub free_trunk: u64,
    /// The table's name.
    pub name: String,
}

impl Meta {
    /// Reads an ordered table's header page; what is wrong with it if it is
    /// not one.
    pub fn read(page: &Page) -> Result<Meta, &'static str> {
        if page.kind() != Kind::TableHeader {
            return Err("not a table header page");
        }
        let body = page.body();
        let (m, rest) = MetaBody::ref_from_prefix(body).map_err(|_| "header page too short")?;
        if m.magic != MAGIC || m.version.get() != VERSION || m.kind.get() != KIND_ORDERED {
            return Err("not an ordered table's header");
        }
        if m.root.get() != ROOT {
            return Err("the root is not page 1");
        }
        let page_count = m.page_count.get();
        if page_count < 2 {
            return Err("fewer than two pages allocated");
        }
        let free_trunk = m.free_trunk.get();
        if free_trunk == 1 || (free_trunk != 0 && free_trunk >= page_count) {
            return Err("the free list starts outside the allocated pages");
        }
        let name = rest
            .get(..usize::from(m.name_len.get()))
            .ok_or("name runs past the page")?;
        Ok(Meta {
            page_count,
            uid: m.uid.get(),
            free_trunk,
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }

    /// Writes the fields into `page`, made a table header page.
    pub fn write(&self, page: &mut Page) {
        page.set_kind(Kind::TableHeader);
        let body = MetaBody {
            magic: MAGIC,
            version: VERSION.into(),
            kind: KIND_ORDERED.into(),
            page_count: self.page_count.into(),
            uid: self.uid.into(),
            free_trunk: self.free_trunk.into(),
            root: ROOT.into(),
            name_len: (self.name.len() as u16).into(),
        };
        let b = page.body_mut();
        b[..BODY_LEN].copy_from_slice(body.as_bytes());
        b[BODY_LEN..BODY_LEN + self.name.len()].copy_from_slice(self.name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_one() {
        let m = Meta {
            page_count: 9,
            uid: 0xfeed,
            free_trunk: 4,
            name: "orders".into(),
        };
        let mut p = Page::new(4096, Kind::TableHeader, 3, 0);
        m.write(&mut p);
        assert_eq!(Meta::read(&p).unwrap(), m);
        let mut bad = p.clone();
        bad.body_mut()[40] = 2;
        assert!(Meta::read(&bad).is_err(), "a root elsewhere");
        let mut bad = p.clone();
        bad.body_mut()[32] = 20;
        assert!(Meta::read(&bad).is_err(), "a trunk past the end");
        assert!(Meta::read(&Page::new(4096, Kind::Leaf, 3, 0)).is_err());
    }
}
