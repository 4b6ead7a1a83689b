//! Putting a key: into its leaf, splitting nodes up the path when full.
//!
//! A split keeps the left half of a node in its page and moves the right
//! half to a fresh page; the parent gets a separator for the new page. A
//! leaf split by an insert at its end (keys arriving in order) keeps every
//! old item and moves only the new one, so loading in order fills leaves
//! and changes each old leaf's next-page field only. The separator between
//! two leaves is the shortest prefix of the right one's first key that
//! sorts above the left one's last key. A root that splits keeps its page:
//! both halves move to fresh pages below it.

use crate::error::Result;
use crate::freelist;
use crate::large_value;
use crate::meta::ROOT;
use crate::store::{Access, PageStore};

use super::node::{self, branch_item, item_child, item_key, leaf_item, max_item, usable, Stored};
use super::{descend, release_path, with_node, Descent, Owned, Target};

/// Sets `key` to `value` (sizes checked by the caller).
pub fn put<S: PageStore>(s: &mut S, key: &[u8], value: &[u8]) -> Result<()> {
    let d = descend(s, Target::Key(key), Access::Write)?;
    let done = put_at(s, &d, key, value);
    release_path(s, &d);
    done
}

fn put_at<S: PageStore>(s: &mut S, d: &Descent, key: &[u8], value: &[u8]) -> Result<()> {
    let ps = s.page_size();
    let (pos, old) = with_node(s, d.leaf, Access::Write, |n| match n.search(key) {
        Ok(i) => (i, Some(Owned::of(n.value(i)))),
        Err(i) => (i, None),
    })?;
    let inline = node::inline_size(key.len(), value.len()) <= max_item(ps);
    if let (Some(Owned::Inline(old)), true) = (&old, inline) {
        if old == value {
            return Ok(());
        }
        if old.len() == value.len() {
            // In place: only the value's bytes change, and are logged.
            return s.change(d.leaf, |p| node::overwrite_value(p, pos, value));
        }
    }
    let item = if inline {
        leaf_item(key, Stored::Inline(value))
    } else {
        leaf_item(key, Stored::Large(large_value::write(s, value)?))
    };
    if let Some(old) = old {
        if let Owned::Large(r) = old {
            large_value::free(s, &r)?;
        }
        s.change(d.leaf, |p| node::remove(p, pos))?;
    }
    insert_item(s, d, pos, item)
}

/// Inserts `item` as item `pos` of the leaf `d` ends at, splitting up the
/// path as needed.
fn insert_item<S: PageStore>(s: &mut S, d: &Descent, pos: usize, item: Vec<u8>) -> Result<()> {
    if s.change(d.leaf, |p| node::insert(p, pos, &item))? {
        return Ok(());
    }
    // Every branch the split may reach is locked for writing before
    // anything changes: up from the parent while a node lacks room for a
    // separator of the largest size.
    let worst = max_item(s.page_size());
    for &(no, _) in d.path.iter().rev() {
        if with_node(s, no, Access::Write, |n| n.room())? >= worst {
            break;
        }
    }
    let mut carry = split(s, d.leaf, pos, item, d.path.is_empty())?;
    for (k, &(no, j)) in d.path.iter().enumerate().rev() {
        let Some((sep, right)) = carry else { break };
        let item = branch_item(&sep, right);
        if s.change(no, |p| node::insert(p, j, &item))? {
            return Ok(());
        }
        carry = split(s, no, j, item, k == 0)?;
    }
    debug_assert!(carry.is_none(), "a split that reached the root ended there");
    Ok(())
}

/// The shortest key `s` with `left < s <= right` (`left < right`).
fn separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    right[..(common + 1).min(right.len())].to_vec()
}

/// Where to split `items` (a full node's, with the new one in place): the
/// index of the first item of the right half (a branch's middle item goes
/// up), balancing bytes; for a leaf whose new item is its last, only that.
fn split_point(items: &[Vec<u8>], leaf: bool, appended: bool, page_size: usize) -> usize {
    let size = |i: &Vec<u8>| i.len() + 2;
    let total: usize = items.iter().map(size).sum();
    let fits = |left: usize, right: usize| left <= usable(page_size) && right <= usable(page_size);
    if leaf && appended && fits(total - size(&items[items.len() - 1]), size(&items[items.len() - 1])) {
        return items.len() - 1;
    }
    let mut best = (usize::MAX, 1);
    let mut before = 0;
    for (m, item) in items.iter().enumerate() {
        // A leaf's right half starts at `m`; a branch's at `m + 1`, item
        // `m` going up. Each half keeps one item at least.
        let (left, right) = if leaf {
            (before, total - before)
        } else {
            (before, total - before - size(item))
        };
        let ok = if leaf { m >= 1 } else { m >= 1 && m + 1 < items.len() };
        if ok && fits(left, right) && left.max(right) < best.0 {
            best = (left.max(right), m);
        }
        before += size(item);
    }
    best.1
}

/// Splits node `no`, full, inserting `item` at `pos`. A node below the
/// root keeps its left half, the right half going to a fresh page:
/// returns the separator and that page for the parent. The root's halves
/// both go to fresh pages and the root becomes their parent: `None`.
fn split<S: PageStore>(s: &mut S, no: u64, pos: usize, item: Vec<u8>, root: bool) -> Result<Option<(Vec<u8>, u64)>> {
    let ps = s.page_size();
    let (leaf, level, leftmost, next, mut items) = with_node(s, no, Access::Write, |n| {
        let leftmost = if n.is_leaf() { 0 } else { n.child(0) };
        (n.is_leaf(), n.level(), leftmost, n.next(), n.items())
    })?;
    let appended = pos == items.len();
    items.insert(pos, item);
    let m = split_point(&items, leaf, appended, ps);
    let (sep, right_leftmost, right_from) = if leaf {
        (
            separator(item_key(&items[m - 1], true), item_key(&items[m], true)),
            0,
            m,
        )
    } else {
        (item_key(&items[m], false).to_vec(), item_child(&items[m]), m + 1)
    };
    let (left, right) = (&items[..m], &items[right_from..]);
    if root {
        debug_assert_eq!(no, ROOT);
        let pages = freelist::allocate(s, 2, true)?;
        let (l, r) = (pages[0], pages[1]);
        s.change(l, |p| {
            node::rebuild(p, level, leftmost, left);
            p.set_next(if leaf { r } else { 0 });
        })?;
        s.change(r, |p| {
            node::rebuild(p, level, right_leftmost, right);
            p.set_next(if leaf { next } else { 0 });
        })?;
        s.change(ROOT, |p| node::rebuild(p, level + 1, l, &[branch_item(&sep, r)]))?;
        return Ok(None);
    }
    let r = freelist::allocate(s, 1, true)?[0];
    s.change(r, |p| {
        node::rebuild(p, level, right_leftmost, right);
        p.set_next(if leaf { next } else { 0 });
    })?;
    // The left half stays where it is: the moved items' bytes become
    // garbage, so only the slots and header change (and the new item, if
    // it stays on the left).
    let kept_old = if pos < m { m - 1 } else { m };
    let new_left = pos < m;
    let placed = s.change(no, |p| {
        node::truncate(p, kept_old);
        let placed = !new_left || node::insert(p, pos, &items[pos]);
        if leaf {
            p.set_next(r);
        }
        placed
    })?;
    debug_assert!(placed, "the left half of a split fits its page");
    Ok(Some((sep, r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_short_and_between() {
        assert_eq!(separator(b"apple", b"apricot"), b"apr");
        assert_eq!(separator(b"ab", b"abc"), b"abc");
        assert_eq!(separator(b"a", b"b"), b"b");
        assert_eq!(separator(b"", b"\0"), b"\0");
    }
}
