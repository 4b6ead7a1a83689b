//! Hash-organised tables: the layout of a table file.
//!
//! Page 0 is the table header; pages `1..=buckets` are the buckets; pages
//! past them are overflow pages, chained from a bucket when it fills. A key
//! lives in bucket `1 + crc32c(key) % buckets` or that bucket's chain.
//!
//! ## Header page body (after the common page header, little-endian)
//! magic `UNDSTTBL` (8), version u32, bucket count u32, page count u64
//! (pages allocated: header + buckets + overflow), name length u16, name.
//! The page count changes when a transaction allocates an overflow page, so
//! allocation holds the header page's X lock like any other change.
//!
//! ## Limits
//! A key is at most [`MAX_KEY`] bytes and key + value at most
//! `page_size - 52` (4044 bytes with 4 KiB pages); larger ones are refused
//! with `KeyTooLarge` / `ValueTooLarge`.

use wal::io::Io;

use crate::catalog::TableInfo;
use crate::datafile::{write_pages, DataFiles};
use crate::error::{Error, Result};
pub use crate::page::MAX_KEY;
use crate::page::{max_item, Kind, Page};

const MAGIC: [u8; 8] = *b"UNDSTTBL";
/// Of the table file's format: the page format (`crate::page`) is part of it.
const VERSION: u32 = 2;

/// The page holding `key`'s bucket.
pub fn bucket_page(key: &[u8], buckets: u32) -> u64 {
    1 + (crc32c::crc32c(key) % buckets.max(1)) as u64
}

/// Checks key and value sizes against the page size.
pub fn check_sizes(key: &[u8], value: &[u8], page_size: usize) -> Result<()> {
    if key.len() > MAX_KEY {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY,
        });
    }
    let max_value = max_item(page_size) - key.len();
    if value.len() > max_value {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: max_value,
        });
    }
    Ok(())
}

/// The header page's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub buckets: u32,
    pub page_count: u64,
    pub name: String,
}

impl Header {
    pub fn read(page: &Page) -> std::result::Result<Header, &'static str> {
        let b = page.body();
        if page.kind() != Kind::TableHeader || b.len() < 26 || b[..8] != MAGIC {
            return Err("not a table header page");
        }
        if u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")) != VERSION {
            return Err("unsupported table version");
        }
        let buckets = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let page_count = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        let len = u16::from_le_bytes([b[24], b[25]]) as usize;
        let name = b.get(26..26 + len).ok_or("name runs past the page")?;
        if buckets == 0 || page_count < 1 + buckets as u64 {
            return Err("impossible bucket or page count");
        }
        Ok(Header {
            buckets,
            page_count,
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }

    pub fn write(&self, page: &mut Page) {
        page.set_kind(Kind::TableHeader);
        let b = page.body_mut();
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.buckets.to_le_bytes());
        b[16..24].copy_from_slice(&self.page_count.to_le_bytes());
        b[24..26].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        b[26..26 + self.name.len()].copy_from_slice(self.name.as_bytes());
    }
}

/// Writes a new table file: header and empty buckets, synced.
pub fn create_file(io: &Io, files: &DataFiles, t: &TableInfo) -> Result<()> {
    let ps = files.page_size();
    let f = files.get(t.file_id, true)?;
    let mut pages = Vec::with_capacity(1 + t.buckets as usize);
    let mut header = Page::new(ps, Kind::TableHeader, t.file_id, 0);
    Header {
        buckets: t.buckets,
        page_count: 1 + t.buckets as u64,
        name: t.name.clone(),
    }
    .write(&mut header);
    pages.push(header);
    for b in 1..=t.buckets as u64 {
        pages.push(Page::new(ps, Kind::Bucket, t.file_id, b));
    }
    for p in &mut pages {
        p.seal();
    }
    // Bounded batches keep memory flat for tables with many buckets.
    for chunk in pages.chunks(4096) {
        let batch: Vec<_> = chunk.iter().map(|p| (f.as_ref(), p)).collect();
        write_pages(io, &batch)?;
    }
    io.sync(f.io_file())?;
    Ok(())
}
