//! Pages: the fixed-size unit of table files, of locking and of undo.
//!
//! ## Format (version 2, little-endian), 48-byte header then items
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | CRC32C of bytes 4..page_size |
//! | 4  | 2 | kind: 0 never written, 1 table header, 2 bucket, 3 overflow, 4 leaf, 5 branch, 6 value directory, 7 value data, 8 free-list trunk |
//! | 6  | 2 | item count |
//! | 8  | 8 | page number (a page read from elsewhere is caught) |
//! | 16 | 4 | file id (a page of another table is caught) |
//! | 20 | 2 | bytes of the item area in use |
//! | 22 | 2 | reserved, zero |
//! | 24 | 8 | next page: of a bucket's overflow chain, of a leaf's right sibling, of a value's directory or of the free list (0 = none) |
//! | 32 | 4 | stamp: node whose commit last wrote the page (0 = none) |
//! | 36 | 4 | stamp: identity of that node's log (0 = not recorded) |
//! | 40 | 8 | stamp: LSN of that commit's intent record in the node's log |
//!
//! The stamp is what decides, after a crash in the middle of a commit,
//! whether the commit happened: a transaction is committed once every page
//! its `CommitIntent` record lists carries that record's stamp on disk,
//! checksum intact (see `crate::txn`). It is also a witness for the log: a
//! page is written only after its intent is durable, so a page stamped by
//! a log at or past where that log now ends proves durable records of it
//! were lost (see `crate::recovery`). The log's identity tells that log
//! from a later log of the same node, whose LSNs start again from 0.
//!
//! In bucket and overflow pages of hash tables, items follow the header,
//! packed: key length u16, value length u16, key, value. A deleted item's
//! space is reclaimed at once by moving later items down. The other kinds
//! lay out their bodies where they are made: B+tree leaves and branches in
//! `crate::btree::node`, value directory and data pages in
//! `crate::large_value`, free-list trunks in `crate::freelist`. A page of
//! all zeros is one that was never written (a hole in the file, or a page
//! allocated by a transaction that rolled back) and reads as an empty
//! page.
//!
//! The CRC is computed when a page is written ([`Page::seal`]) and checked
//! on every read ([`Page::from_disk`]); a mismatch is
//! [`Error::CorruptPage`] naming file and page, never data.

use std::path::Path;

use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 48;
/// Longest key.
pub const MAX_KEY: usize = 1024;
/// Per-item overhead in the item area.
pub const ITEM_OVERHEAD: usize = 4;

/// What a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unwritten = 0,
    TableHeader = 1,
    Bucket = 2,
    Overflow = 3,
    /// A B+tree leaf (`crate::btree::node`).
    Leaf = 4,
    /// A B+tree branch (`crate::btree::node`).
    Branch = 5,
    /// A large value's directory of data pages (`crate::large_value`).
    ValueDir = 6,
    /// A large value's bytes (`crate::large_value`).
    ValueData = 7,
    /// A free-list trunk (`crate::freelist`).
    FreeTrunk = 8,
}

impl Kind {
    /// The kind a page header's kind field names, if any.
    pub fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            0 => Kind::Unwritten,
            1 => Kind::TableHeader,
            2 => Kind::Bucket,
            3 => Kind::Overflow,
            4 => Kind::Leaf,
            5 => Kind::Branch,
            6 => Kind::ValueDir,
            7 => Kind::ValueData,
            8 => Kind::FreeTrunk,
            _ => return None,
        })
    }
}

/// Which commit last wrote a page: the node, its log's identity, and the
/// LSN of the commit's intent record in that log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The node (0: no commit wrote the page).
    pub node: u32,
    /// The identity of the node's log (0: not recorded).
    pub log: u32,
    /// The intent record's LSN.
    pub lsn: u64,
}

impl Stamp {
    /// The stamp in a page image's header, read without checking the page
    /// (the bytes of a page torn by a crash still carry the stamp of the
    /// write that tore it, or of the one before).
    pub fn of(image: &[u8]) -> Stamp {
        Stamp {
            node: u32::from_le_bytes(image[32..36].try_into().expect("4 bytes")),
            log: u32::from_le_bytes(image[36..40].try_into().expect("4 bytes")),
            lsn: u64_at(image, 40),
        }
    }

    /// The stamp as one number: the value block the lock manager keeps for
    /// the page (`crate::pool`).
    pub fn as_u128(&self) -> u128 {
        (u128::from(self.node) << 96) | (u128::from(self.log) << 64) | u128::from(self.lsn)
    }

    /// Whether this stamp is of node `node`'s log `log`. A log identity of
    /// 0 on either side was not recorded and matches any.
    pub fn of_log(&self, node: u32, log: u32) -> bool {
        self.node == node && (self.log == log || self.log == 0 || log == 0)
    }
}

/// Largest key + value with this page size.
pub fn max_item(page_size: usize) -> usize {
    page_size - HEADER_LEN - ITEM_OVERHEAD
}

/// One page image, owned.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    buf: Box<[u8]>,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Page({:?} #{} items={})", self.kind(), self.page_no(), self.count())
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

impl Page {
    /// An empty page of `kind`.
    pub fn new(page_size: usize, kind: Kind, file_id: u32, page_no: u64) -> Page {
        let mut p = Page {
            buf: vec![0u8; page_size].into_boxed_slice(),
        };
        p.buf[4..6].copy_from_slice(&(kind as u16).to_le_bytes());
        p.buf[8..16].copy_from_slice(&page_no.to_le_bytes());
        p.buf[16..20].copy_from_slice(&file_id.to_le_bytes());
        p
    }

    /// Whether `buf` is page `page_no` of file `file_id` as nobody wrote it:
    /// all zeros, or, put back from before-images, with the header such a
    /// page has in memory ([`Page::new`] with [`Kind::Unwritten`]),
    /// whatever its checksum field holds (an unwritten page is never
    /// sealed) and whatever its body holds: a page taken fresh logs only
    /// its header (`crate::txn`), so its body holds what the transaction
    /// wrote there, which a page never written does not keep.
    pub fn is_unwritten_image(buf: &[u8], file_id: u32, page_no: u64) -> bool {
        if buf.iter().all(|&b| b == 0) {
            return true;
        }
        buf.len() >= HEADER_LEN
            && buf[4..8].iter().all(|&b| b == 0)
            && buf[8..16] == page_no.to_le_bytes()
            && buf[16..20] == file_id.to_le_bytes()
            && buf[20..HEADER_LEN].iter().all(|&b| b == 0)
    }

    /// A page image exactly as `bytes` (a before-image from the log).
    pub fn from_image(bytes: Vec<u8>) -> Page {
        Page {
            buf: bytes.into_boxed_slice(),
        }
    }

    /// Checks a page image as [`Page::from_disk`] does, in place.
    pub fn check_image(image: &[u8], file: &Path, file_id: u32, page_no: u64) -> Result<()> {
        if image.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let corrupt = |detail: String| Error::CorruptPage {
            file: file.to_path_buf(),
            page: page_no,
            detail,
        };
        let stored = u32::from_le_bytes(image[..4].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&image[4..]);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        if u64_at(image, 8) != page_no {
            return Err(corrupt(format!("page claims to be page {}", u64_at(image, 8))));
        }
        let holder = u32::from_le_bytes(image[16..20].try_into().expect("4 bytes"));
        if holder != file_id {
            return Err(corrupt(format!("page belongs to file {holder}")));
        }
        let kind = u16_at(image, 4);
        match Kind::from_u16(kind) {
            None => Err(corrupt(format!("unknown page kind {kind}"))),
            // Hash pages' items are checked here; the other kinds' bodies
            // by the code that reads them, where their layout is defined.
            Some(Kind::Unwritten | Kind::Bucket | Kind::Overflow) => check_items(image).map_err(|d| corrupt(d.into())),
            Some(_) => Ok(()),
        }
    }

    /// Checks a page read from `file` at `page_no`: all zeros is an
    /// unwritten page; otherwise checksum, kind, page number, file id and
    /// item area must all be right.
    pub fn from_disk(buf: Vec<u8>, file: &Path, file_id: u32, page_no: u64) -> Result<Page> {
        Page::check_image(&buf, file, file_id, page_no)?;
        if buf.iter().all(|&b| b == 0) {
            return Ok(Page::new(buf.len(), Kind::Unwritten, file_id, page_no));
        }
        Ok(Page {
            buf: buf.into_boxed_slice(),
        })
    }

    /// Sets the checksum; the page is ready to be written.
    pub fn seal(&mut self) {
        let crc = crc32c::crc32c(&self.buf[4..]);
        self.buf[..4].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn kind(&self) -> Kind {
        Kind::from_u16(u16_at(&self.buf, 4)).unwrap_or(Kind::Unwritten)
    }

    /// The whole page image, to change in place (its header included).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Sets the item count field.
    pub fn set_count(&mut self, count: u16) {
        self.buf[6..8].copy_from_slice(&count.to_le_bytes());
    }

    /// Sets the bytes-in-use field.
    pub fn set_used(&mut self, used: u16) {
        self.buf[20..22].copy_from_slice(&used.to_le_bytes());
    }

    /// The bytes-in-use field.
    pub fn used_field(&self) -> usize {
        self.used()
    }

    pub fn set_kind(&mut self, kind: Kind) {
        self.buf[4..6].copy_from_slice(&(kind as u16).to_le_bytes());
    }

    pub fn page_no(&self) -> u64 {
        u64_at(&self.buf, 8)
    }

    pub fn count(&self) -> usize {
        u16_at(&self.buf, 6) as usize
    }

    fn used(&self) -> usize {
        u16_at(&self.buf, 20) as usize
    }

    pub fn next(&self) -> u64 {
        u64_at(&self.buf, 24)
    }

    pub fn set_next(&mut self, next: u64) {
        self.buf[24..32].copy_from_slice(&next.to_le_bytes());
    }

    /// The stamp of the commit that last wrote the page.
    pub fn stamp(&self) -> Stamp {
        Stamp::of(&self.buf)
    }

    /// Marks the page as written by the commit `stamp` names.
    pub fn set_stamp(&mut self, stamp: Stamp) {
        self.buf[32..36].copy_from_slice(&stamp.node.to_le_bytes());
        self.buf[36..40].copy_from_slice(&stamp.log.to_le_bytes());
        self.buf[40..48].copy_from_slice(&stamp.lsn.to_le_bytes());
    }

    /// Bytes free for items.
    pub fn free(&self) -> usize {
        self.buf.len() - HEADER_LEN - self.used()
    }

    /// The body after the header (table header pages keep their own format
    /// there).
    pub fn body(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER_LEN..]
    }

    /// Items in order: (offset of the item, key, value). The item area was
    /// checked when the page was read, so the walk stays in bounds.
    pub fn items(&self) -> impl Iterator<Item = (usize, &[u8], &[u8])> {
        let mut at = HEADER_LEN;
        let end = HEADER_LEN + self.used();
        (0..self.count()).map_while(move |_| {
            if at + ITEM_OVERHEAD > end {
                return None;
            }
            let kl = u16_at(&self.buf, at) as usize;
            let vl = u16_at(&self.buf, at + 2) as usize;
            let k0 = at + ITEM_OVERHEAD;
            if k0 + kl + vl > end {
                return None;
            }
            let item = (at, &self.buf[k0..k0 + kl], &self.buf[k0 + kl..k0 + kl + vl]);
            at = k0 + kl + vl;
            Some(item)
        })
    }

    pub fn find(&self, key: &[u8]) -> Option<(usize, &[u8])> {
        self.items().find(|(_, k, _)| *k == key).map(|(o, _, v)| (o, v))
    }

    /// Appends an item if it fits; returns whether it did.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> bool {
        let need = ITEM_OVERHEAD + key.len() + value.len();
        if need > self.free() {
            return false;
        }
        let at = HEADER_LEN + self.used();
        self.buf[at..at + 2].copy_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_le_bytes());
        self.buf[at + 4..at + 4 + key.len()].copy_from_slice(key);
        self.buf[at + 4 + key.len()..at + need].copy_from_slice(value);
        let count = self.count() as u16 + 1;
        let used = (self.used() + need) as u16;
        self.buf[6..8].copy_from_slice(&count.to_le_bytes());
        self.buf[20..22].copy_from_slice(&used.to_le_bytes());
        true
    }

    /// Where the item with `key` starts, and its key's and value's lengths.
    fn locate(&self, key: &[u8]) -> Option<(usize, usize, usize)> {
        self.items()
            .find(|(_, k, _)| *k == key)
            .map(|(o, k, v)| (o, k.len(), v.len()))
    }

    /// Overwrites the value of `key` in place when `value` has the length
    /// of the one there; returns whether it did. An update of a fixed-size
    /// value then changes only the value's bytes, which is all its undo
    /// record holds (`crate::undo`), where a remove and insert would move
    /// every later item.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some((at, klen, vlen)) = self.locate(key) else {
            return false;
        };
        if vlen != value.len() {
            return false;
        }
        let from = at + ITEM_OVERHEAD + klen;
        self.buf[from..from + vlen].copy_from_slice(value);
        true
    }

    /// Removes the item with `key`; returns whether there was one.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let Some((at, klen, vlen)) = self.locate(key) else {
            return false;
        };
        let len = ITEM_OVERHEAD + klen + vlen;
        let end = HEADER_LEN + self.used();
        self.buf.copy_within(at + len..end, at);
        self.buf[end - len..end].fill(0);
        let count = self.count() as u16 - 1;
        let used = (self.used() - len) as u16;
        self.buf[6..8].copy_from_slice(&count.to_le_bytes());
        self.buf[20..22].copy_from_slice(&used.to_le_bytes());
        true
    }
}

/// Whether a page image's item area is consistent: every item inside the
/// bytes in use, and the count matching them.
fn check_items(b: &[u8]) -> std::result::Result<(), &'static str> {
    let used = u16_at(b, 20) as usize;
    if HEADER_LEN + used > b.len() {
        return Err("item area runs past the page");
    }
    let mut at = HEADER_LEN;
    for _ in 0..u16_at(b, 6) {
        if at + ITEM_OVERHEAD > HEADER_LEN + used {
            return Err("item header runs past the item area");
        }
        let len = ITEM_OVERHEAD + u16_at(b, at) as usize + u16_at(b, at + 2) as usize;
        if at + len > HEADER_LEN + used {
            return Err("item runs past the item area");
        }
        at += len;
    }
    if at != HEADER_LEN + used {
        return Err("item count disagrees with the bytes in use");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritten_image_is_zeros_or_an_unsealed_empty_header() {
        assert!(Page::is_unwritten_image(&[0u8; 4096], 7, 3));
        let mut fresh = Page::new(4096, Kind::Unwritten, 7, 3).bytes().to_vec();
        assert!(Page::is_unwritten_image(&fresh, 7, 3));
        assert!(!Page::is_unwritten_image(&fresh, 7, 4), "another page's header");
        assert!(!Page::is_unwritten_image(&fresh, 8, 3), "another file's header");
        // The checksum field does not matter; anything else does.
        fresh[0] = 0xAB;
        assert!(Page::is_unwritten_image(&fresh, 7, 3));
        fresh[4000] = 1;
        assert!(Page::is_unwritten_image(&fresh, 7, 3), "the body does not matter");
        fresh[30] = 1;
        assert!(!Page::is_unwritten_image(&fresh, 7, 3), "the header does");
        let bucket = Page::new(4096, Kind::Bucket, 7, 3);
        assert!(!Page::is_unwritten_image(bucket.bytes(), 7, 3));
    }

    #[test]
    fn items_insert_find_remove_and_survive_a_disk_round_trip() {
        let mut p = Page::new(4096, Kind::Bucket, 7, 3);
        assert!(p.insert(b"a", b"1"));
        assert!(p.insert(b"bb", b"22"));
        assert!(p.insert(b"ccc", b"333"));
        assert!(p.remove(b"bb"));
        assert!(!p.remove(b"bb"));
        assert_eq!(p.find(b"ccc").map(|(_, v)| v.to_vec()), Some(b"333".to_vec()));
        p.seal();
        let back = Page::from_disk(p.bytes().to_vec(), "t".as_ref(), 7, 3).unwrap();
        let keys: Vec<_> = back.items().map(|(_, k, _)| k.to_vec()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"ccc".to_vec()]);
        assert!(
            Page::from_disk(p.bytes().to_vec(), "t".as_ref(), 7, 4).is_err(),
            "misplaced page"
        );
        assert!(
            Page::from_disk(p.bytes().to_vec(), "t".as_ref(), 8, 3).is_err(),
            "foreign page"
        );
    }

    #[test]
    fn every_flipped_bit_is_reported_as_corruption() {
        let mut p = Page::new(4096, Kind::Overflow, 1, 9);
        p.insert(b"key", b"value");
        p.seal();
        for bit in (0..4096 * 8).step_by(61) {
            let mut b = p.bytes().to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    Page::from_disk(b, "t".as_ref(), 1, 9),
                    Err(Error::CorruptPage { page: 9, .. })
                ),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_full_page_refuses_more() {
        let mut p = Page::new(4096, Kind::Bucket, 1, 1);
        let v = vec![7u8; max_item(4096) - 1];
        assert!(p.insert(b"k", &v));
        assert!(!p.insert(b"", b""));
        assert_eq!(p.free(), 0);
    }
}
