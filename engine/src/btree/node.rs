//! B+tree nodes: the layout of leaf and branch pages, the checked view of
//! one ([`Node`]), and the changes made to one.
//!
//! ## Format (little-endian), a slotted page
//!
//! The common page header (48 bytes, `crate::page`): kind 4 (leaf) or 5
//! (branch), the item count, and for a leaf its right sibling in the
//! next-page field (0 = the last leaf). Then the node header:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 48 | 2 | level: 0 for a leaf, the height above the leaves for a branch |
//! | 50 | 2 | heap start: where the item heap begins, from the page's start |
//! | 52 | 2 | garbage: bytes in the heap no live item uses (left by removals) |
//! | 54 | 2 | reserved, zero |
//! | 56 | 8 | leftmost child (a branch: the child for keys below its first separator; a leaf: 0) |
//!
//! From byte 64, one u16 slot per item, in key order: the item's offset in
//! the page. Items lie in the heap, from the heap start to the page's end,
//! in any order:
//!
//! - leaf item: key length u16, value length u32, key, value. Bit 31 of the
//!   value length set: the value is large, and the 16 bytes that follow the
//!   key are its reference (`crate::large_value::ValueRef`).
//! - branch item: key length u16, child page u64, key (the separator: the
//!   child holds the keys from it up to the next separator).
//!
//! Inserting writes the item below the heap start and moves the slots
//! after it by two bytes; removing moves them back and leaves the item's
//! bytes as garbage, reclaimed when the page is compacted. So a change
//! touches few bytes, and its undo (`crate::undo`) holds about the item and
//! the moved slots, not the page.
//!
//! An item with its slot takes at most a third of the space after the node
//! header ([`max_item`]), so a full node always splits into two that hold
//! the new item.

use std::cmp::Ordering;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::large_value::{ValueRef, REF_LEN};
use crate::page::{Kind, Page, HEADER_LEN};

/// The node header; see the module docs.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct NodeHeader {
    level: U16,
    heap_start: U16,
    garbage: U16,
    reserved: U16,
    leftmost: U64,
}

/// Where the slots begin.
pub const SLOTS_AT: usize = HEADER_LEN + std::mem::size_of::<NodeHeader>();
/// A leaf item's fixed part: key length and value length.
const LEAF_FIXED: usize = 6;
/// A branch item's fixed part: key length and child.
const BRANCH_FIXED: usize = 10;
/// Bit of a leaf item's value length that marks a large value.
const LARGE: u32 = 1 << 31;
/// Deepest tree a decoder follows; a deeper one is corrupt (a tree of
/// nodes of three items at least reaches 2^64 keys well before this).
pub const MAX_LEVEL: u16 = 48;

/// Most bytes one item and its slot take in a node of `page_size`.
pub fn max_item(page_size: usize) -> usize {
    (page_size - SLOTS_AT) / 3
}

/// Bytes a node of `page_size` has for slots and items.
pub fn usable(page_size: usize) -> usize {
    page_size - SLOTS_AT
}

/// A leaf item's value as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored<'a> {
    /// The value's bytes, in the leaf.
    Inline(&'a [u8]),
    /// A large value, elsewhere.
    Large(ValueRef),
}

/// A leaf item's bytes for `key` and `value`.
pub fn leaf_item(key: &[u8], value: Stored<'_>) -> Vec<u8> {
    let mut item = Vec::with_capacity(LEAF_FIXED + key.len() + REF_LEN);
    item.extend_from_slice(U16::new(key.len() as u16).as_bytes());
    match value {
        Stored::Inline(v) => {
            item.extend_from_slice(U32::new(v.len() as u32).as_bytes());
            item.extend_from_slice(key);
            item.extend_from_slice(v);
        }
        Stored::Large(r) => {
            item.extend_from_slice(U32::new(REF_LEN as u32 | LARGE).as_bytes());
            item.extend_from_slice(key);
            item.extend_from_slice(r.as_bytes());
        }
    }
    item
}

/// A branch item's bytes: separator `key` and the child holding keys from it.
pub fn branch_item(key: &[u8], child: u64) -> Vec<u8> {
    let mut item = Vec::with_capacity(BRANCH_FIXED + key.len());
    item.extend_from_slice(U16::new(key.len() as u16).as_bytes());
    item.extend_from_slice(U64::new(child).as_bytes());
    item.extend_from_slice(key);
    item
}

/// Bytes a leaf item of this key and inline value takes with its slot.
pub fn inline_size(key_len: usize, value_len: usize) -> usize {
    2 + LEAF_FIXED + key_len + value_len
}

/// A checked view of a node's page. Every offset was checked when the view
/// was made ([`Node::parse`]), so reading it cannot go out of bounds.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    b: &'a [u8],
    count: usize,
    leaf: bool,
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn header(b: &[u8]) -> &NodeHeader {
    NodeHeader::ref_from_prefix(&b[HEADER_LEN..])
        .expect("a page holds a node header")
        .0
}

fn header_mut(b: &mut [u8]) -> &mut NodeHeader {
    NodeHeader::mut_from_prefix(&mut b[HEADER_LEN..])
        .expect("a page holds a node header")
        .0
}

impl<'a> Node<'a> {
    /// Checks `b` (a whole page image, its common header checked) as a
    /// node: kind, level, heap, every slot and item in bounds, sizes adding
    /// up, keys strictly ascending, children plausible. What is wrong, if
    /// anything.
    pub fn parse(b: &'a [u8]) -> Result<Node<'a>, &'static str> {
        if b.len() < SLOTS_AT + 16 {
            return Err("page too small for a node");
        }
        let leaf = match Kind::from_u16(u16_at(b, 4) as u16) {
            Some(Kind::Leaf) => true,
            Some(Kind::Branch) => false,
            _ => return Err("not a B+tree node"),
        };
        let h = header(b);
        let (level, heap, garbage) = (
            h.level.get(),
            usize::from(h.heap_start.get()),
            usize::from(h.garbage.get()),
        );
        if leaf != (level == 0) || level > MAX_LEVEL {
            return Err("level does not match the node's kind");
        }
        let leftmost = h.leftmost.get();
        if leaf && leftmost != 0 || !leaf && leftmost <= 1 {
            return Err("impossible leftmost child");
        }
        if h.reserved.get() != 0 {
            return Err("reserved bytes are not zero");
        }
        let count = u16_at(b, 6);
        if SLOTS_AT + 2 * count > heap || heap > b.len() {
            return Err("slots and heap overlap or run past the page");
        }
        let node = Node { b, count, leaf };
        let mut live = 0usize;
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            let at = u16_at(b, SLOTS_AT + 2 * i);
            let len = node.item_len_checked(at, heap)?;
            live += len;
            let key = node.key(i);
            if prev.is_some_and(|p| p >= key) {
                return Err("keys out of order");
            }
            prev = Some(key);
            if !leaf && node.child(i + 1) <= 1 {
                return Err("impossible child");
            }
        }
        if live + garbage != b.len() - heap {
            return Err("items and garbage do not fill the heap");
        }
        if leaf && (1..=1).contains(&node.next()) {
            return Err("impossible right sibling");
        }
        Ok(node)
    }

    /// The length of the item at `at`, which must lie in the heap.
    fn item_len_checked(&self, at: usize, heap: usize) -> Result<usize, &'static str> {
        let fixed = if self.leaf { LEAF_FIXED } else { BRANCH_FIXED };
        if at < heap || at + fixed > self.b.len() {
            return Err("slot points outside the heap");
        }
        let key = u16_at(self.b, at);
        let len = if self.leaf {
            let v = u32::from_le_bytes(self.b[at + 2..at + 6].try_into().expect("4 bytes"));
            let vlen = if v & LARGE != 0 {
                if v & !LARGE != REF_LEN as u32 {
                    return Err("a large value's reference has the wrong length");
                }
                REF_LEN
            } else {
                v as usize
            };
            fixed + key + vlen
        } else {
            fixed + key
        };
        if at + len > self.b.len() {
            return Err("item runs past the page");
        }
        Ok(len)
    }

    /// Whether this is a leaf.
    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    /// Items (a branch's separators).
    pub fn count(&self) -> usize {
        self.count
    }

    /// 0 for a leaf, the height above the leaves for a branch.
    pub fn level(&self) -> u16 {
        header(self.b).level.get()
    }

    /// A leaf's right sibling (0 = none).
    pub fn next(&self) -> u64 {
        u64::from_le_bytes(self.b[24..32].try_into().expect("8 bytes"))
    }

    fn at(&self, i: usize) -> usize {
        u16_at(self.b, SLOTS_AT + 2 * i)
    }

    /// Item `i`'s bytes.
    pub fn item(&self, i: usize) -> &'a [u8] {
        let at = self.at(i);
        let len = self.item_len_checked(at, SLOTS_AT).expect("checked by parse");
        &self.b[at..at + len]
    }

    /// Item `i`'s key (a branch's separator).
    pub fn key(&self, i: usize) -> &'a [u8] {
        let at = self.at(i);
        let fixed = if self.leaf { LEAF_FIXED } else { BRANCH_FIXED };
        &self.b[at + fixed..at + fixed + u16_at(self.b, at)]
    }

    /// Leaf item `i`'s value as stored.
    pub fn value(&self, i: usize) -> Stored<'a> {
        let at = self.at(i);
        let klen = u16_at(self.b, at);
        let v = u32::from_le_bytes(self.b[at + 2..at + 6].try_into().expect("4 bytes"));
        let from = at + LEAF_FIXED + klen;
        if v & LARGE != 0 {
            let r = ValueRef::read_from_bytes(&self.b[from..from + REF_LEN]).expect("16 bytes");
            Stored::Large(r)
        } else {
            Stored::Inline(&self.b[from..from + v as usize])
        }
    }

    /// A branch's child `j`: 0 the leftmost, `j` ≥ 1 that of item `j - 1`.
    pub fn child(&self, j: usize) -> u64 {
        if j == 0 {
            return header(self.b).leftmost.get();
        }
        let at = self.at(j - 1);
        u64::from_le_bytes(self.b[at + 2..at + 10].try_into().expect("8 bytes"))
    }

    /// Where `key` is (`Ok`) or would go (`Err`) among the items.
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// A branch's child holding `key`: the number of separators ≤ `key`.
    pub fn route(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// A branch's child holding the keys just below `key`: the number of
    /// separators < `key`.
    pub fn route_below(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(i) | Err(i) => i,
        }
    }

    /// Bytes the live items and their slots take.
    pub fn live(&self) -> usize {
        let h = header(self.b);
        self.b.len() - usize::from(h.heap_start.get()) - usize::from(h.garbage.get()) + 2 * self.count
    }

    /// Bytes free for one more item and its slot, after compacting.
    pub fn room(&self) -> usize {
        usable(self.b.len()) - self.live()
    }

    /// Every item's bytes, in order.
    pub fn items(&self) -> Vec<Vec<u8>> {
        (0..self.count).map(|i| self.item(i).to_vec()).collect()
    }
}

/// Makes `page` an empty node: a leaf (`level` 0) or a branch whose only
/// child is `leftmost`. Only the header and node header are written; the
/// rest of the page may hold anything (it is heap-free space).
pub fn init(page: &mut Page, level: u16, leftmost: u64) {
    let ps = page.bytes().len();
    page.set_kind(if level == 0 { Kind::Leaf } else { Kind::Branch });
    page.set_count(0);
    page.set_used(0);
    if level != 0 {
        page.set_next(0);
    }
    let h = header_mut(page.bytes_mut());
    h.level = level.into();
    h.heap_start = (ps as u16).into();
    h.garbage = 0.into();
    h.reserved = 0.into();
    h.leftmost = leftmost.into();
}

/// Rewrites `page` as a node of `level` (its leftmost child `leftmost`)
/// holding `items` in order, packed at the page's end. A leaf keeps its
/// right sibling.
pub fn rebuild(page: &mut Page, level: u16, leftmost: u64, items: &[Vec<u8>]) {
    init(page, level, leftmost);
    for (i, item) in items.iter().enumerate() {
        let placed = insert(page, i, item);
        debug_assert!(placed, "rebuilt items fit the page");
    }
}

/// Inserts `item` as item `i`, compacting the heap if that makes room;
/// `false` (the page unchanged) if it does not fit.
pub fn insert(page: &mut Page, i: usize, item: &[u8]) -> bool {
    let b = page.bytes();
    let count = u16_at(b, 6);
    let h = header(b);
    let heap = usize::from(h.heap_start.get());
    let need = item.len() + 2;
    let free_run = heap - (SLOTS_AT + 2 * count);
    if free_run < need {
        if free_run + usize::from(h.garbage.get()) < need {
            return false;
        }
        compact(page);
        return insert(page, i, item);
    }
    let at = heap - item.len();
    let b = page.bytes_mut();
    b[at..heap].copy_from_slice(item);
    let slot = SLOTS_AT + 2 * i;
    b.copy_within(slot..SLOTS_AT + 2 * count, slot + 2);
    b[slot..slot + 2].copy_from_slice(&(at as u16).to_le_bytes());
    header_mut(b).heap_start = (at as u16).into();
    page.set_count(count as u16 + 1);
    true
}

/// Removes item `i`; its bytes become garbage (or leave the heap, when it
/// was the lowest item).
pub fn remove(page: &mut Page, i: usize) {
    let (at, len, count) = {
        let node = Node::parse(page.bytes()).expect("a node this transaction holds is whole");
        (node.at(i), node.item(i).len(), node.count())
    };
    let b = page.bytes_mut();
    let slot = SLOTS_AT + 2 * i;
    b.copy_within(slot + 2..SLOTS_AT + 2 * count, slot);
    let h = header_mut(b);
    if at == usize::from(h.heap_start.get()) {
        h.heap_start = ((at + len) as u16).into();
    } else {
        h.garbage = (h.garbage.get() + len as u16).into();
    }
    page.set_count(count as u16 - 1);
}

/// Keeps items `..keep`; the others' bytes become garbage.
pub fn truncate(page: &mut Page, keep: usize) {
    let removed: usize = {
        let node = Node::parse(page.bytes()).expect("a node this transaction holds is whole");
        (keep..node.count()).map(|i| node.item(i).len()).sum()
    };
    let h = header_mut(page.bytes_mut());
    h.garbage = ((usize::from(h.garbage.get()) + removed) as u16).into();
    page.set_count(keep as u16);
}

/// Overwrites the value bytes of leaf item `i` with `value`, of the same
/// length as the value there (an update that touches nothing else).
pub fn overwrite_value(page: &mut Page, i: usize, value: &[u8]) {
    let (from, len) = {
        let node = Node::parse(page.bytes()).expect("a node this transaction holds is whole");
        let item = node.item(i);
        (
            node.at(i) + LEAF_FIXED + node.key(i).len(),
            item.len() - LEAF_FIXED - node.key(i).len(),
        )
    };
    debug_assert_eq!(len, value.len(), "an overwrite keeps the value's length");
    page.bytes_mut()[from..from + len].copy_from_slice(value);
}

/// Packs the live items at the page's end, dropping the garbage.
fn compact(page: &mut Page) {
    let (level, leftmost, items) = {
        let node = Node::parse(page.bytes()).expect("a node this transaction holds is whole");
        (node.level(), header(page.bytes()).leftmost.get(), node.items())
    };
    rebuild(page, level, leftmost, &items);
}

/// The key of a leaf item's or branch item's bytes.
pub fn item_key(item: &[u8], leaf: bool) -> &[u8] {
    let fixed = if leaf { LEAF_FIXED } else { BRANCH_FIXED };
    &item[fixed..fixed + u16_at(item, 0)]
}

/// A branch item's child.
pub fn item_child(item: &[u8]) -> u64 {
    u64::from_le_bytes(item[2..10].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> Page {
        let mut p = Page::new(4096, Kind::Leaf, 1, 5);
        init(&mut p, 0, 0);
        p
    }

    #[test]
    fn items_go_in_order_come_out_and_survive_compaction() {
        let mut p = leaf();
        for (i, k) in [b"b", b"d", b"a", b"c"].iter().enumerate() {
            let node = Node::parse(p.bytes()).unwrap();
            let at = node.search(&k[..]).unwrap_err();
            assert!(insert(&mut p, at, &leaf_item(&k[..], Stored::Inline(&[i as u8; 10]))));
        }
        let node = Node::parse(p.bytes()).unwrap();
        let keys: Vec<&[u8]> = (0..4).map(|i| node.key(i)).collect();
        assert_eq!(keys, [b"a", b"b", b"c", b"d"]);
        assert_eq!(node.value(0), Stored::Inline(&[2; 10]));
        remove(&mut p, 1);
        let node = Node::parse(p.bytes()).unwrap();
        assert_eq!(node.search(b"b"), Err(1));
        // Fill until full; compaction reclaims the removed item's bytes.
        let mut n = 0u32;
        loop {
            let at = Node::parse(p.bytes()).unwrap().count();
            if !insert(
                &mut p,
                at,
                &leaf_item(format!("z{n:05}").as_bytes(), Stored::Inline(&[1; 30])),
            ) {
                break;
            }
            n += 1;
        }
        let node = Node::parse(p.bytes()).unwrap();
        assert!(node.room() < 2 + LEAF_FIXED + 6 + 30);
        assert_eq!(node.count(), 3 + n as usize);
    }

    #[test]
    fn branches_route_keys_to_children() {
        let mut p = Page::new(4096, Kind::Branch, 1, 5);
        init(&mut p, 1, 10);
        assert!(insert(&mut p, 0, &branch_item(b"m", 11)));
        assert!(insert(&mut p, 1, &branch_item(b"t", 12)));
        let node = Node::parse(p.bytes()).unwrap();
        assert_eq!(node.child(node.route(b"a")), 10);
        assert_eq!(node.child(node.route(b"m")), 11);
        assert_eq!(node.child(node.route_below(b"m")), 10);
        assert_eq!(node.child(node.route(b"zz")), 12);
    }

    #[test]
    fn damaged_nodes_are_refused_not_read() {
        let mut p = leaf();
        assert!(insert(&mut p, 0, &leaf_item(b"a", Stored::Inline(b"1"))));
        assert!(insert(&mut p, 1, &leaf_item(b"b", Stored::Inline(b"2"))));
        let good = p.bytes().to_vec();
        for (at, byte) in [(64, 0xff), (65, 0x00), (50, 0x00), (52, 0x05), (6, 9), (48, 1)] {
            let mut b = good.clone();
            b[at] = byte;
            assert!(Node::parse(&b).is_err(), "byte {at} set to {byte:#x}");
        }
        // Keys out of order: swap the slots.
        let mut b = good.clone();
        b.swap(64, 66);
        b.swap(65, 67);
        assert!(Node::parse(&b).is_err());
    }
}
