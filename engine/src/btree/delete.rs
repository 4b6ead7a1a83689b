//! Deleting a key, and merging nodes that fall below a quarter full.
//!
//! A node below a quarter of its space is merged with a sibling under the
//! same parent when both fit in one page: the right one's items move into
//! the left one, the parent loses the separator between them, and the
//! right page goes to the free list. A parent that falls below a quarter
//! in turn is merged the same way, up to the root; a root branch left with
//! one child takes that child's content. Merging only ever asks for its
//! locks without waiting (parent, sibling, the header for the free list):
//! when one is busy, the node stays as it is until a later delete.

use crate::error::Result;
use crate::freelist;
use crate::large_value;
use crate::meta::ROOT;
use crate::store::{Access, PageStore};

use super::node::{self, branch_item, usable};
use super::{descend, release_path, with_node, Descent, Owned, Target};

/// Removes `key`; whether it was there.
pub fn delete<S: PageStore>(s: &mut S, key: &[u8]) -> Result<bool> {
    let d = descend(s, Target::Key(key), Access::Write)?;
    let done = delete_at(s, &d, key);
    release_path(s, &d);
    done
}

fn delete_at<S: PageStore>(s: &mut S, d: &Descent, key: &[u8]) -> Result<bool> {
    let found = with_node(s, d.leaf, Access::Write, |n| {
        n.search(key).ok().map(|i| (i, Owned::of(n.value(i))))
    })?;
    let Some((i, old)) = found else {
        return Ok(false);
    };
    if let Owned::Large(r) = old {
        large_value::free(s, &r)?;
    }
    s.change(d.leaf, |p| node::remove(p, i))?;
    let mut no = d.leaf;
    for &(parent, j) in d.path.iter().rev() {
        if !merge_with_sibling(s, no, parent, j)? {
            return Ok(true);
        }
        no = parent;
    }
    collapse_root(s)?;
    Ok(true)
}

/// Merges node `no`, child `j` of `parent`, with a sibling if it is below
/// a quarter full and the two fit in one page; whether it did.
fn merge_with_sibling<S: PageStore>(s: &mut S, no: u64, parent: u64, j: usize) -> Result<bool> {
    let ps = s.page_size();
    if with_node(s, no, Access::Write, |n| n.live())? >= usable(ps) / 4 {
        return Ok(false);
    }
    if !s.try_write(parent)? || !s.try_write(0)? {
        return Ok(false);
    }
    let count = with_node(s, parent, Access::Write, |n| n.count())?;
    // The right sibling if there is one, else the left.
    let right_j = if j < count {
        j + 1
    } else if j > 0 {
        j
    } else {
        return Ok(false);
    };
    let (left, right, sep) = with_node(s, parent, Access::Write, |n| {
        (n.child(right_j - 1), n.child(right_j), n.key(right_j - 1).to_vec())
    })?;
    let sibling = if left == no { right } else { left };
    if !s.try_write(sibling)? {
        return Ok(false);
    }
    let (leaf, mut items, live) = with_node(s, right, Access::Write, |n| {
        let mut items = Vec::with_capacity(n.count() + 1);
        if !n.is_leaf() {
            // The separator comes down, over the right node's leftmost child.
            items.push(branch_item(&sep, n.child(0)));
        }
        items.extend(n.items());
        (n.is_leaf(), items, n.live())
    })?;
    let next = with_node(s, right, Access::Write, |n| n.next())?;
    let (left_live, left_count) = with_node(s, left, Access::Write, |n| (n.live(), n.count()))?;
    let extra = if leaf { 0 } else { items[0].len() + 2 };
    if left_live + live + extra > usable(ps) {
        return Ok(false);
    }
    let placed = s.change(left, |p| {
        let all = items
            .drain(..)
            .enumerate()
            .all(|(k, item)| node::insert(p, left_count + k, &item));
        if leaf {
            p.set_next(next);
        }
        all
    })?;
    debug_assert!(placed, "merged nodes fit one page");
    s.change(parent, |p| node::remove(p, right_j - 1))?;
    freelist::free(s, &[right])?;
    Ok(true)
}

/// A root branch left without separators takes its only child's content.
fn collapse_root<S: PageStore>(s: &mut S) -> Result<()> {
    let (count, child) = with_node(s, ROOT, Access::Write, |n| {
        (n.count(), (!n.is_leaf()).then(|| n.child(0)))
    })?;
    let Some(child) = child.filter(|_| count == 0) else {
        return Ok(());
    };
    if !s.try_write(child)? || !s.try_write(0)? {
        return Ok(());
    }
    let (level, leftmost, items) = with_node(s, child, Access::Write, |n| {
        let leftmost = if n.is_leaf() { 0 } else { n.child(0) };
        (n.level(), leftmost, n.items())
    })?;
    s.change(ROOT, |p| {
        node::rebuild(p, level, leftmost, &items);
        // The only child at its level has no right sibling.
        p.set_next(0);
    })?;
    freelist::free(s, &[child])
}
