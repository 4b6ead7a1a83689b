//! Table files: the layout of a hash table's file, the creation of every
//! table's file, and the check that a file is the one its catalog entry
//! means.
//!
//! In a hash table's file, page 0 is the table header; pages `1..=buckets`
//! are the buckets; pages past them are overflow pages, chained from a
//! bucket when it fills. A key lives in bucket `1 + crc32c(key) % buckets`
//! or that bucket's chain. An ordered table's file has its own header
//! (version 4, `crate::meta`) and a B+tree (`crate::btree`).
//!
//! ## Header page body (after the common page header, little-endian)
//! Version 3: magic `UNDSTTBL` (8), version u32, bucket count u32, page
//! count u64 (pages allocated: header + buckets + overflow), identity u64
//! (the catalog's, `crate::catalog`), name length u16, name. Version 2
//! (still read) has no identity field.
//! The page count changes when a transaction allocates an overflow page, so
//! allocation holds the header page's X lock like any other change; the
//! other fields never change after the file is created.
//!
//! ## A file is checked before it is trusted
//! The first time a node reads a table file for a transaction or a recovery
//! ([`open_checked`]), the file is held against its catalog entry: it must
//! exist, be at least as long as its header and buckets (written when it
//! was created, never cut afterwards), and its header page must be this
//! table's — its file id and the identity the catalog gave it at creation
//! (`crate::catalog`). A file missing, cut short, swapped with another
//! table's or replaced is refused with an error naming it, before anything
//! of it is read as data.
//!
//! ## Limits
//! A key is at most [`MAX_KEY`] bytes and key + value at most
//! `page_size - 52` (4044 bytes with 4 KiB pages); larger ones are refused
//! with `KeyTooLarge` / `ValueTooLarge`.

use std::sync::Arc;

use wal::io::Io;

use crate::aligned::AlignedPages;
use crate::catalog::{TableInfo, TableKind};
use crate::datafile::{write_pages, DataFile, DataFiles};
use crate::error::{Error, Result};
pub use crate::page::MAX_KEY;
use crate::page::{max_item, Kind, Page, HEADER_LEN};

const MAGIC: [u8; 8] = *b"UNDSTTBL";
/// Of the table file's format: the page format (`crate::page`) is part of it.
const VERSION: u32 = 3;
/// The version before identities, still read.
const VERSION_2: u32 = 2;

/// Where the identity lies in a version 3 header page, from the page's
/// start: read without the page's checksum to tell a file's identity even
/// when a crash tore its header page (every sector of a torn page holds the
/// old or the new header, and both carry the same identity).
const UID_AT: std::ops::Range<usize> = HEADER_LEN + 24..HEADER_LEN + 32;

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
    /// 0 in a version 2 header.
    pub uid: u64,
    pub name: String,
}

impl Header {
    pub fn read(page: &Page) -> std::result::Result<Header, &'static str> {
        let b = page.body();
        if page.kind() != Kind::TableHeader || b.len() < 26 || b[..8] != MAGIC {
            return Err("not a table header page");
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        let (uid, name_at) = match version {
            VERSION if b.len() >= 34 => (u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")), 32),
            VERSION_2 => (0, 24),
            _ => return Err("unsupported table version"),
        };
        let buckets = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let page_count = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        let len = u16::from_le_bytes([b[name_at], b[name_at + 1]]) as usize;
        let name = b.get(name_at + 2..name_at + 2 + len).ok_or("name runs past the page")?;
        if buckets == 0 || page_count < 1 + buckets as u64 {
            return Err("impossible bucket or page count");
        }
        Ok(Header {
            buckets,
            page_count,
            uid,
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
        b[24..32].copy_from_slice(&self.uid.to_le_bytes());
        b[32..34].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        b[34..34 + self.name.len()].copy_from_slice(self.name.as_bytes());
    }

    /// The magic and identity a header page's raw bytes carry, unchecked:
    /// what tells whose file this is (see [`UID_AT`]). `None` if the bytes
    /// hold no version 3 table header.
    pub fn identity_of(raw: &[u8]) -> Option<u64> {
        let body = raw.get(HEADER_LEN..)?;
        let version = body.get(8..12)?;
        let known = version == VERSION.to_le_bytes() || version == crate::meta::VERSION.to_le_bytes();
        if body.len() < 34 || body[..8] != MAGIC || !known {
            return None;
        }
        Some(u64::from_le_bytes(raw[UID_AT].try_into().expect("8 bytes")))
    }
}

/// The file of table `info` from `files`, held against its catalog entry
/// the first time (see the module docs): missing, cut short or not this
/// table's, it is refused with an error naming it.
pub fn open_checked(io: &Io, files: &DataFiles, info: &TableInfo) -> Result<Arc<DataFile>> {
    let path = crate::datafile::table_path(files.dir(), info.file_id);
    let file = match files.get(info.file_id, false) {
        Err(Error::Io(e)) if e.source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::TableFileMissing { file: path })
        }
        other => other?,
    };
    if file.is_checked() {
        return Ok(file);
    }
    let len = file.len_now()?;
    let min_len = info.min_len(files.page_size());
    if len < min_len {
        return Err(Error::TableFileTruncated {
            file: path,
            len,
            min_len,
        });
    }
    let raw = file.read_raw_first_page(io)?;
    let mismatch = |detail: String| Error::TableFileMismatch {
        file: path.clone(),
        detail,
    };
    let holder = u32::from_le_bytes(raw[16..20].try_into().expect("4 bytes"));
    if holder != info.file_id {
        return Err(mismatch(format!(
            "its header page belongs to table file {holder}, not {}",
            info.file_id
        )));
    }
    if info.uid != 0 {
        match Header::identity_of(&raw) {
            Some(uid) if uid == info.uid => {}
            Some(uid) => {
                return Err(mismatch(format!(
                    "its identity is {uid:#018x}, the catalog's {:#018x} (another table created under this id, or a \
                     copy from elsewhere)",
                    info.uid
                )))
            }
            None => return Err(mismatch("its first page holds no table header".into())),
        }
    }
    file.mark_checked();
    Ok(file)
}

/// Writes a new table file, synced: a hash table's header and empty
/// buckets, or an ordered table's header and empty root.
pub fn create_file(io: &Io, files: &DataFiles, t: &TableInfo) -> Result<()> {
    let ps = files.page_size();
    let f = files.get(t.file_id, true)?;
    if t.kind == TableKind::Ordered {
        let mut buf = AlignedPages::new(2, ps)?;
        let mut header = Page::new(ps, Kind::TableHeader, t.file_id, 0);
        crate::meta::Meta {
            page_count: 2,
            uid: t.uid,
            free_trunk: 0,
            name: t.name.clone(),
        }
        .write(&mut header);
        header.seal();
        let mut root = Page::new(ps, Kind::Leaf, t.file_id, crate::meta::ROOT);
        crate::btree::init_root(&mut root);
        root.seal();
        buf.page_mut(0).copy_from_slice(header.bytes());
        buf.page_mut(1).copy_from_slice(root.bytes());
        write_pages(io, &[(f.as_ref(), 0, buf.page(0)), (f.as_ref(), 1, buf.page(1))])?;
        io.sync(f.io_file())?;
        return Ok(());
    }
    let mut header = Page::new(ps, Kind::TableHeader, t.file_id, 0);
    Header {
        buckets: t.buckets,
        page_count: 1 + t.buckets as u64,
        uid: t.uid,
        name: t.name.clone(),
    }
    .write(&mut header);
    header.seal();
    // In bounded batches through one aligned buffer: memory stays flat for
    // tables with many buckets.
    const BATCH: u64 = 1024;
    let total = 1 + u64::from(t.buckets);
    let mut buf = AlignedPages::new(BATCH.min(total) as usize, ps)?;
    for first in (0..total).step_by(BATCH as usize) {
        let n = BATCH.min(total - first);
        for (i, slot) in buf.pages_mut(n as usize).enumerate() {
            let no = first + i as u64;
            if no == 0 {
                slot.copy_from_slice(header.bytes());
            } else {
                let mut bucket = Page::new(ps, Kind::Bucket, t.file_id, no);
                bucket.seal();
                slot.copy_from_slice(bucket.bytes());
            }
        }
        let batch: Vec<(&DataFile, u64, &[u8])> =
            (0..n).map(|i| (f.as_ref(), first + i, buf.page(i as usize))).collect();
        write_pages(io, &batch)?;
    }
    io.sync(f.io_file())?;
    Ok(())
}
